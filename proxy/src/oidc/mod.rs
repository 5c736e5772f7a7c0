//! The edge's OpenID provider: discovered lazily (an IdP that is down when
//! the edge starts must not stop the edge), with its JWKS refetched when a
//! token names a key the edge does not know, at most once per
//! [`KEY_REFETCH_INTERVAL`] so forged `kid`s cannot make the edge hammer
//! the IdP. Used by browser login, the CLI's device flow, IdP-issued bearer
//! tokens and back-channel logout.

pub mod access_token;
pub mod logout_token;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet};

use tokio::sync::Mutex;

pub use portcullis_oidc_discovery::{KeySet, VerificationKey};

/// Shortest interval between two JWKS fetches caused by unknown keys.
pub const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest interval between two discovery attempts after a failure.
const DISCOVERY_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// The OpenID provider settings of an edge.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// Client id registered at the IdP.
    pub client_id: String,
    /// Client secret (confidential client), if any.
    pub client_secret: Option<String>,
    /// Scopes requested at login (`openid` is always included).
    pub scopes: Vec<String>,
    /// The claim that carries groups.
    pub groups_claim: String,
    /// Accepted `aud` values of IdP access tokens.
    pub bearer_audiences: Vec<String>,
    /// Whether `bearer_audiences` was configured (rather than defaulted to
    /// the client id): only then may an access token's `aud` hold the login
    /// client id, which every ID token of this client carries.
    pub bearer_audiences_explicit: bool,
    /// Accepted signature algorithms of IdP tokens (never `none` or HS*).
    pub algorithms: Vec<Algorithm>,
    /// Accepted `typ` headers of IdP access tokens (compared case-insensitively).
    pub bearer_token_types: Vec<String>,
    /// Where the IdP sends the browser after logout, if anywhere.
    pub post_logout_redirect_url: Option<String>,
    /// Tolerated clock difference for `exp`, `nbf` and `iat`, seconds.
    pub clock_skew_s: u64,
}

/// Why the IdP could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Discovery or the JWKS could not be fetched.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
}

/// What discovery found.
pub struct Discovered {
    /// Provider metadata (endpoints, supported algorithms).
    pub metadata: CoreProviderMetadata,
    /// RP-initiated logout endpoint, if the IdP has one.
    pub end_session_endpoint: Option<String>,
    /// Device authorization endpoint (RFC 8628), if the IdP offers the device flow.
    pub device_authorization_endpoint: Option<String>,
}

/// The configured IdP, discovered on first use.
pub struct IdentityProvider {
    /// Settings.
    pub settings: OidcSettings,
    http: reqwest::Client,
    discovered: ArcSwapOption<Discovered>,
    keys: ArcSwapOption<KeySet>,
    last_discovery: Mutex<Option<Instant>>,
    last_key_fetch: Mutex<Option<Instant>>,
}

impl IdentityProvider {
    /// A provider for `settings`; nothing is fetched until first use.
    pub fn new(settings: OidcSettings) -> Self {
        let http = portcullis_oidc_discovery::http_client();
        Self {
            settings,
            http,
            discovered: ArcSwapOption::empty(),
            keys: ArcSwapOption::empty(),
            last_discovery: Mutex::new(None),
            last_key_fetch: Mutex::new(None),
        }
    }

    /// The OpenID client of this edge at the provider (its client id and
    /// secret) for `metadata`, the one way every flow builds it.
    pub fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>
    {
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
    }

    /// The HTTP client for calls to the IdP (no redirects followed).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn fetch_json(&self, url: &str) -> Result<bytes::Bytes, ProviderError> {
        portcullis_oidc_discovery::fetch_bounded(&self.http, url).await.map_err(ProviderError::Unavailable)
    }

    /// Discovery, fetched once and then kept; retried after a failure.
    pub async fn discovered(&self) -> Result<Arc<Discovered>, ProviderError> {
        if let Some(found) = self.discovered.load_full() {
            return Ok(found);
        }
        let mut last = self.last_discovery.lock().await;
        if let Some(found) = self.discovered.load_full() {
            return Ok(found);
        }
        if last.is_some_and(|at| at.elapsed() < DISCOVERY_RETRY_INTERVAL) {
            return Err(ProviderError::Unavailable("discovery failed moments ago; retrying shortly".into()));
        }
        *last = Some(Instant::now());
        let issuer = self.settings.issuer.trim_end_matches('/');
        let found =
            portcullis_oidc_discovery::discover(&self.http, issuer).await.map_err(ProviderError::Unavailable)?;
        let jwks_uri = found.metadata.jwks_uri().as_str();
        let keys = KeySet::parse(&found.jwks).map_err(|e| ProviderError::Unavailable(format!("{jwks_uri}: {e}")))?;
        self.keys.store(Some(Arc::new(keys)));
        *self.last_key_fetch.lock().await = Some(Instant::now());
        let found = Arc::new(Discovered {
            metadata: found.metadata,
            end_session_endpoint: found.end_session_endpoint,
            device_authorization_endpoint: found.device_authorization_endpoint,
        });
        self.discovered.store(Some(Arc::clone(&found)));
        tracing::info!(issuer, "identity provider discovered");
        Ok(found)
    }

    /// The current key set (discovering first if needed).
    pub async fn keys(&self) -> Result<Arc<KeySet>, ProviderError> {
        self.discovered().await?;
        self.keys.load_full().ok_or_else(|| ProviderError::Unavailable("no key set".into()))
    }

    /// Refetches the JWKS because a token named an unknown key, unless that
    /// happened less than [`KEY_REFETCH_INTERVAL`] ago. Returns the key set
    /// in force afterwards.
    pub async fn refresh_keys(&self) -> Result<Arc<KeySet>, ProviderError> {
        let discovered = self.discovered().await?;
        let mut last = self.last_key_fetch.lock().await;
        if last.is_none_or(|at| at.elapsed() >= KEY_REFETCH_INTERVAL) {
            *last = Some(Instant::now());
            let url = discovered.metadata.jwks_uri().as_str();
            match KeySet::parse(&self.fetch_json(url).await?) {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "identity provider keys refetched");
                    self.keys.store(Some(Arc::new(keys)));
                }
                Err(e) => tracing::warn!(error = %e, "identity provider key set refused"),
            }
        }
        self.keys.load_full().ok_or_else(|| ProviderError::Unavailable("no key set".into()))
    }

    /// The key for `kid`, refetching the JWKS (rate-limited) when it is unknown.
    pub async fn key(&self, kid: Option<&str>) -> Result<Option<Arc<VerificationKey>>, ProviderError> {
        if let Some(key) = self.keys().await?.find(kid) {
            return Ok(Some(key));
        }
        Ok(self.refresh_keys().await?.find(kid))
    }
}

/// The payload of a compact JWS whose signature was already verified.
pub(crate) fn jwt_payload(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A claim as a list of strings: an array of strings, or one string
/// (space- or comma-separated values are not split: groups are names).
pub(crate) fn string_list(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}
