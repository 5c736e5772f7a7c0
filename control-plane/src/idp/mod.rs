//! The identity providers the control plane trusts, and the check of the
//! ID token an edge must present to create a session: the control plane
//! verifies it itself, so an edge cannot assert an identity it did not get
//! from a provider.
//!
//! ```text
//! edge: POST /edge/v1/sessions {id_token, nonce, flow, route, …}
//!   └─ header: alg in the asymmetric allow-list (never `none`, never HS*)
//!   └─ payload `iss` exactly a configured issuer (login_idps)
//!   └─ key by `kid` from the provider's JWKS (discovery; refetched on an unknown kid, rate-limited)
//!   └─ signature, `iss`, `aud` ∋ a configured client id, `exp`/`nbf` with bounded skew
//!   └─ claims::check: iat, azp, nonce (device flow: none), auth_time, email_verified, sub, email, groups
//!   └─ replay key = SHA-256(header.payload): the signed bytes, immune to signature malleability
//! ```
//!
//! [`discovery`] is shared with the portal's login.

pub mod claims;
pub mod discovery;
pub mod portal;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::core::CoreProviderMetadata;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use claims::{Expected, LoginFlow, VerifiedLogin};
pub use discovery::{Discovery, DiscoveryError};
pub use portal::{PortalIdp, PortalState};

use crate::config::{LoginIdpSettings, LoginSettings};

/// Signature algorithms accepted on ID tokens: asymmetric only.
pub const ALLOWED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
/// Longest ID token looked at, bytes.
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

/// Why an ID token creates no session.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    /// `login_idps` is empty: no login can be verified.
    #[error(
        "this control plane trusts no identity provider for logins: configure `login_idps` \
         (see `portcullis control-plane --help-config`)"
    )]
    NotConfigured,
    /// Not a compact JWS.
    #[error("the ID token is malformed: {0}")]
    Malformed(String),
    /// Signed (or claiming to be) by a provider that is not configured.
    #[error("the ID token's issuer `{0}` is not an identity provider this control plane trusts")]
    UnknownIssuer(String),
    /// The signature or a claim does not check out.
    #[error("the ID token is invalid: {0}")]
    Invalid(String),
    /// The provider's keys cannot be fetched.
    #[error(transparent)]
    Unavailable(#[from] DiscoveryError),
}

/// A verified ID token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Who logged in.
    pub login: VerifiedLogin,
    /// Hex SHA-256 of the signed part: one session per value.
    pub replay_key: String,
}

struct LoginIdp {
    settings: LoginIdpSettings,
    discovery: Discovery,
}

/// The providers of `login_idps`, discovered on first use.
pub struct LoginIdps {
    idps: Vec<LoginIdp>,
    skew_s: u64,
}

fn decode_part(part: &str) -> Result<Map<String, Value>, IdTokenError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| IdTokenError::Malformed("a part is not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| IdTokenError::Malformed("a part is not a JSON object".into()))
}

/// The usable signing key for `kid` (or the only one, for a token without
/// `kid`) in the provider's JWKS, if its `alg` (when it pins one) is `alg`.
fn find_key(metadata: &CoreProviderMetadata, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let set = serde_json::to_value(metadata.jwks()).ok()?;
    let usable: Vec<Jwk> = set["keys"]
        .as_array()?
        .iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key.clone()).ok())
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
        .collect();
    let jwk = match kid {
        Some(kid) => usable.iter().find(|jwk| jwk.common.key_id.as_deref() == Some(kid)),
        None if usable.len() == 1 => usable.first(),
        None => None,
    }?;
    if jwk.common.key_algorithm.is_some_and(|pinned| pinned.to_string() != format!("{alg:?}")) {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok()
}

impl LoginIdp {
    /// The key, fetching the JWKS again (rate-limited) when it is not known.
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<DecodingKey>, DiscoveryError> {
        if let Some(key) = find_key(&*self.discovery.metadata().await?, kid, alg) {
            return Ok(Some(key));
        }
        Ok(find_key(&*self.discovery.refreshed().await?, kid, alg))
    }
}

impl LoginIdps {
    /// The providers of `settings`; nothing is fetched yet.
    pub fn new(settings: &LoginSettings) -> Self {
        let idps = settings
            .idps
            .iter()
            .map(|idp| LoginIdp { settings: idp.clone(), discovery: Discovery::new(&idp.issuer) })
            .collect();
        Self { idps, skew_s: settings.clock_skew_s }
    }

    /// True when no provider is configured (every login is refused).
    pub fn is_empty(&self) -> bool {
        self.idps.is_empty()
    }

    /// Verifies `token` for a login made with `flow` whose authorization
    /// request carried `nonce`, at Unix time `now`.
    pub async fn verify(
        &self,
        token: &str,
        nonce: Option<&str>,
        flow: LoginFlow,
        now: i64,
    ) -> Result<VerifiedToken, IdTokenError> {
        if self.idps.is_empty() {
            return Err(IdTokenError::NotConfigured);
        }
        if token.len() > MAX_ID_TOKEN_BYTES {
            return Err(IdTokenError::Malformed(format!("longer than {MAX_ID_TOKEN_BYTES} bytes")));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, _signature] = parts[..] else {
            return Err(IdTokenError::Malformed("not three dot-separated parts".into()));
        };
        let alg = match decode_part(header)?.get("alg").and_then(Value::as_str) {
            Some(name) => {
                name.parse::<Algorithm>().ok().filter(|alg| ALLOWED_ALGORITHMS.contains(alg)).ok_or_else(|| {
                    IdTokenError::Invalid(format!(
                        "its algorithm `{name}` is not accepted (asymmetric algorithms only)"
                    ))
                })?
            }
            None => return Err(IdTokenError::Invalid("its header names no algorithm".into())),
        };
        let kid = jsonwebtoken::decode_header(token).map_err(|e| IdTokenError::Malformed(e.to_string()))?.kid;
        let unverified = decode_part(payload)?;
        let issuer =
            unverified.get("iss").and_then(Value::as_str).ok_or(IdTokenError::Invalid("it has no `iss`".into()))?;
        let idp = self
            .idps
            .iter()
            .find(|idp| idp.settings.issuer == issuer)
            .ok_or_else(|| IdTokenError::UnknownIssuer(issuer.chars().take(200).collect()))?;
        let key = idp.key(kid.as_deref(), alg).await?.ok_or_else(|| {
            IdTokenError::Invalid("it is signed with a key the identity provider does not publish".into())
        })?;
        let mut validation = Validation::new(alg);
        validation.leeway = self.skew_s;
        validation.validate_nbf = true;
        validation.set_issuer(&[&idp.settings.issuer]);
        validation.set_audience(&idp.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let verified = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            IdTokenError::Invalid(match e.kind() {
                ErrorKind::InvalidSignature => "its signature does not verify".to_owned(),
                ErrorKind::ExpiredSignature => "it has expired (`exp`)".to_owned(),
                ErrorKind::ImmatureSignature => "it is not valid yet (`nbf`)".to_owned(),
                ErrorKind::InvalidAudience => "it was issued to another client (`aud`)".to_owned(),
                ErrorKind::InvalidIssuer => "its issuer does not match (`iss`)".to_owned(),
                ErrorKind::MissingRequiredClaim(claim) => format!("it has no `{claim}`"),
                other => format!("{other:?}"),
            })
        })?;
        let expected = Expected { nonce, flow, now, skew: self.skew_s as i64 };
        let login = claims::check(&verified.claims, &idp.settings, &expected).map_err(IdTokenError::Invalid)?;
        let signed = &token[..header.len() + 1 + payload.len()];
        let replay_key = Sha256::digest(signed.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        Ok(VerifiedToken { login, replay_key })
    }
}
