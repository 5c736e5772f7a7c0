//! One OpenID provider's discovery document and keys (OpenID Connect
//! Discovery 1.0 through `portcullis_oidc_discovery`, shared with the edge:
//! it checks that the document names the configured issuer, bounds every
//! document's size and fetches the JWKS), kept for
//! [`DISCOVERY_TTL`]. A token signed by a key not in the cached set may
//! fetch them again, at most once per [`KEY_REFETCH_INTERVAL`], so forged
//! `kid`s cannot make the control plane hammer the provider; after a failed
//! fetch the next attempt waits [`RETRY_INTERVAL`]. Used by the portal's
//! login and by session creation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use tokio::sync::Mutex;

/// How long discovery (and the JWKS) is kept before it is fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// Shortest interval between two fetches caused by unknown keys.
pub const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest interval between two attempts after a failed fetch.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// The provider cannot be reached, or answered something unusable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the identity provider {issuer} is unavailable: {reason}")]
pub struct DiscoveryError {
    /// The issuer.
    pub issuer: String,
    /// What failed.
    pub reason: String,
}

#[derive(Default)]
struct Cached {
    metadata: Option<(Instant, Arc<CoreProviderMetadata>)>,
    failed_at: Option<Instant>,
}

/// A provider's discovery document and JWKS, fetched on first use.
pub struct Discovery {
    issuer: String,
    http: reqwest::Client,
    cached: Mutex<Cached>,
}

impl Discovery {
    /// Discovery of `issuer`; nothing is fetched yet.
    pub fn new(issuer: &str) -> Self {
        let http = portcullis_oidc_discovery::http_client();
        Self { issuer: issuer.to_owned(), http, cached: Mutex::new(Cached::default()) }
    }

    /// The issuer, as configured.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The HTTP client for calls to the provider (no redirects followed).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The document and keys, fetched when older than [`DISCOVERY_TTL`].
    pub async fn metadata(&self) -> Result<Arc<CoreProviderMetadata>, DiscoveryError> {
        self.fetch(|at| at.elapsed() < DISCOVERY_TTL).await
    }

    /// The document and keys after a token named a key the cached set does
    /// not hold: fetched again unless that happened less than
    /// [`KEY_REFETCH_INTERVAL`] ago.
    pub async fn refreshed(&self) -> Result<Arc<CoreProviderMetadata>, DiscoveryError> {
        self.fetch(|at| at.elapsed() < KEY_REFETCH_INTERVAL).await
    }

    async fn fetch(&self, fresh: impl Fn(Instant) -> bool) -> Result<Arc<CoreProviderMetadata>, DiscoveryError> {
        let mut cached = self.cached.lock().await;
        if let Some((_, metadata)) = cached.metadata.as_ref().filter(|(at, _)| fresh(*at)) {
            return Ok(Arc::clone(metadata));
        }
        let unavailable = |reason: String| DiscoveryError { issuer: self.issuer.clone(), reason };
        if cached.failed_at.is_some_and(|at| at.elapsed() < RETRY_INTERVAL) {
            return Err(unavailable("fetching its discovery document failed moments ago".into()));
        }
        let discovered = portcullis_oidc_discovery::discover(&self.http, &self.issuer).await.and_then(|found| {
            let keys: CoreJsonWebKeySet = serde_json::from_slice(&found.jwks)
                .map_err(|e| format!("{}: {e}", found.metadata.jwks_uri().as_str()))?;
            Ok(found.metadata.set_jwks(keys))
        });
        match discovered {
            Ok(metadata) => {
                let metadata = Arc::new(metadata);
                *cached = Cached { metadata: Some((Instant::now(), Arc::clone(&metadata))), failed_at: None };
                Ok(metadata)
            }
            Err(reason) => {
                cached.failed_at = Some(Instant::now());
                Err(unavailable(reason))
            }
        }
    }
}
