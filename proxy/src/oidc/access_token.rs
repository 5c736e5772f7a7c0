//! IdP-issued JWT access tokens presented as `Authorization: Bearer`
//! (RFC 9068): the algorithm must be on the allow-list and match the key
//! (so `none`, HS256-signed-with-the-public-key and RS/ES confusion are all
//! refused); `typ`, `iss`, `aud`, `exp` and `nbf` are checked. Verified
//! tokens are cached like session tokens; revocation (the token's `jti`,
//! the user's `revoked_before`, a lock) is checked on every request by
//! `evaluate`.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use portcullis_policy::{ClaimValue, CredentialKind, Identity, IdentityParts, TokenId};
use serde_json::Value;

use super::{string_list, IdentityProvider};
use crate::credentials::{CredentialError, TokenCache};

/// Claims copied into the identity for `claims:` conditions, besides these.
const SKIPPED_CLAIMS: [&str; 3] = ["aud", "iss", "exp"];

/// Verifies IdP access tokens and caches the verified ones.
pub struct AccessTokenVerifier {
    provider: Arc<IdentityProvider>,
    cache: TokenCache,
}

impl AccessTokenVerifier {
    /// A verifier for `provider`'s tokens caching up to `capacity` of them.
    pub fn new(provider: Arc<IdentityProvider>, capacity: usize) -> Self {
        Self { provider, cache: TokenCache::new(capacity) }
    }

    /// The identity a still-valid cached token proves, without verifying anything.
    pub fn cache_hit(&self, token: &str, now: i64) -> Option<Arc<Identity>> {
        self.cache.get(token, now)
    }

    /// The identity a bearer token proves; `now` is Unix seconds.
    pub async fn verify(&self, token: &str, now: i64) -> Result<(Arc<Identity>, bool), CredentialError> {
        if let Some(identity) = self.cache.get(token, now) {
            return Ok((identity, true));
        }
        let settings = &self.provider.settings;
        let header = jsonwebtoken::decode_header(token).map_err(|_| CredentialError::Malformed)?;
        if !settings.algorithms.contains(&header.alg) {
            return Err(CredentialError::WrongType);
        }
        let typ = header.typ.as_deref().unwrap_or("");
        if !settings.bearer_token_types.iter().any(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(CredentialError::WrongType);
        }
        let key = self
            .provider
            .key(header.kid.as_deref())
            .await
            .map_err(|_| CredentialError::Unavailable)?
            .ok_or(CredentialError::UnknownKey)?;
        if key.alg.is_some_and(|pinned| pinned != header.alg) {
            return Err(CredentialError::WrongType);
        }
        let claims = decode_claims(token, &key.key, header.alg, settings)?;
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or(CredentialError::Malformed)?;
        let identity = Arc::new(identity_from_claims(&claims, &settings.groups_claim, CredentialKind::Bearer)?);
        self.cache.insert(token, Arc::clone(&identity), exp);
        Ok((identity, false))
    }
}

/// Checks signature, `iss`, `aud`, `exp` and `nbf`, and returns the claims.
pub(crate) fn decode_claims(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    alg: Algorithm,
    settings: &super::OidcSettings,
) -> Result<serde_json::Map<String, Value>, CredentialError> {
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.set_audience(&settings.bearer_audiences);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = settings.clock_skew_s;
    jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation).map(|data| data.claims).map_err(
        |e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidToken | jsonwebtoken::errors::ErrorKind::Json(_) => {
                CredentialError::Malformed
            }
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => CredentialError::WrongType,
            _ => CredentialError::Invalid,
        },
    )
}

/// The identity verified claims describe.
pub(crate) fn identity_from_claims(
    claims: &serde_json::Map<String, Value>,
    groups_claim: &str,
    credential: CredentialKind,
) -> Result<Identity, CredentialError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let subject = text("sub").filter(|s| !s.is_empty()).ok_or(CredentialError::Malformed)?;
    let issued_at = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    let mut copied = Vec::new();
    for (name, value) in claims {
        if SKIPPED_CLAIMS.contains(&name.as_str()) {
            continue;
        }
        let value = match value {
            Value::String(s) => ClaimValue::One(s.as_str().into()),
            Value::Number(n) => ClaimValue::One(n.to_string().into()),
            Value::Bool(b) => ClaimValue::One(b.to_string().into()),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                ClaimValue::Many(items.iter().filter_map(Value::as_str).map(Box::from).collect())
            }
            _ => continue,
        };
        copied.push((name.clone(), value));
    }
    Ok(Identity::new(IdentityParts {
        subject: subject.to_owned(),
        email: text("email").unwrap_or_default().to_owned(),
        groups: string_list(claims.get(groups_claim)),
        claims: copied,
        credential: Some(credential),
        session_id: None,
        token_id: text("jti").map(TokenId::new),
        issued_at,
        auth_time: claims.get("auth_time").and_then(Value::as_i64).unwrap_or(issued_at),
        session_started_at: issued_at,
    }))
}
