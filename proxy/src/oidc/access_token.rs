//! IdP-issued JWT access tokens presented as `Authorization: Bearer`
//! (RFC 9068): the algorithm must be on the allow-list and match the key
//! (so `none`, HS256-signed-with-the-public-key and RS/ES confusion are all
//! refused); `typ`, `iss`, `aud`, `exp` and `nbf` are checked, and ID
//! tokens are refused even when their `typ` is an accepted one (Keycloak,
//! Auth0 and Okta label both kinds `JWT`): a token carrying `nonce` or
//! `at_hash`, or whose `aud` holds the login client id while
//! `bearer_audiences` was not set to name it, is an ID token. Verified
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
        refuse_id_token(&claims, settings)?;
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

/// Refuses an ID token presented as a bearer token: one carrying `nonce`
/// or `at_hash` (only ID tokens do), or whose `aud` holds the login client
/// id, unless `bearer_audiences` was configured and names that id.
pub(crate) fn refuse_id_token(
    claims: &serde_json::Map<String, Value>,
    settings: &super::OidcSettings,
) -> Result<(), CredentialError> {
    if claims.contains_key("nonce") || claims.contains_key("at_hash") {
        return Err(CredentialError::IdToken);
    }
    let client = settings.client_id.as_str();
    let for_client = match claims.get("aud") {
        Some(Value::String(aud)) => aud == client,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client)),
        _ => false,
    };
    let client_allowed = settings.bearer_audiences_explicit && settings.bearer_audiences.iter().any(|a| a == client);
    if for_client && !client_allowed {
        return Err(CredentialError::IdToken);
    }
    Ok(())
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
        // An IdP's token knows only its second: it counts from the start of
        // it, so a terminate-all in that second revokes it (fail closed).
        issued_at_ms: None,
        auth_time: claims.get("auth_time").and_then(Value::as_i64).unwrap_or(issued_at),
        session_started_at: issued_at,
        // Signed by the IdP, not the control plane: its revocation is the IdP's.
        signing_key: None,
    })
    .with_expires_at(claims.get("exp").and_then(Value::as_i64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::OidcSettings;
    use jsonwebtoken::{DecodingKey, EncodingKey, Header};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    /// A fresh P-256 key pair, as the IdP would hold it.
    fn key_pair() -> (EncodingKey, DecodingKey) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        (
            EncodingKey::from_ec_pem(&key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
            DecodingKey::from_ec_pem(&key.public_key_to_pem().unwrap()).unwrap(),
        )
    }

    fn settings(audiences: Option<&[&str]>) -> OidcSettings {
        OidcSettings {
            issuer: "https://idp.example".into(),
            client_id: "edge".into(),
            client_secret: None,
            scopes: Vec::new(),
            groups_claim: "groups".into(),
            bearer_audiences: audiences
                .map_or_else(|| vec!["edge".into()], |a| a.iter().map(|s| s.to_string()).collect()),
            bearer_audiences_explicit: audiences.is_some(),
            algorithms: vec![Algorithm::ES256],
            bearer_token_types: vec!["JWT".into()],
            post_logout_redirect_url: None,
            clock_skew_s: 30,
        }
    }

    fn sign(key: &EncodingKey, extra: Value) -> String {
        let mut claims = json!({ "iss": "https://idp.example", "sub": "u1", "exp": NOW + 300, "iat": NOW });
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    /// The verdict on a token signed by the IdP's key: decode, then the ID-token check.
    fn judge(token: &str, key: &DecodingKey, settings: &OidcSettings) -> Result<(), CredentialError> {
        let claims = decode_claims(token, key, Algorithm::ES256, settings)?;
        refuse_id_token(&claims, settings)
    }

    #[test]
    fn id_tokens_are_refused_even_when_properly_signed() {
        let (sign_key, verify_key) = key_pair();
        let api = settings(Some(&["api"]));
        for (what, extra) in [
            ("nonce", json!({ "aud": "api", "nonce": "n-0" })),
            ("at_hash", json!({ "aud": "api", "at_hash": "abc" })),
            ("the client id among the audiences", json!({ "aud": ["api", "edge"] })),
        ] {
            let token = sign(&sign_key, extra);
            assert_eq!(judge(&token, &verify_key, &api), Err(CredentialError::IdToken), "{what}");
        }
        let id_token = sign(&sign_key, json!({ "aud": "edge", "azp": "edge" }));
        assert_eq!(
            judge(&id_token, &verify_key, &settings(None)),
            Err(CredentialError::IdToken),
            "the client id is the default audience, never an accepted one"
        );
        assert_eq!(judge(&id_token, &verify_key, &settings(Some(&["edge"]))), Ok(()), "named explicitly");
        let nonce_for_edge = sign(&sign_key, json!({ "aud": "edge", "nonce": "n" }));
        assert_eq!(
            judge(&nonce_for_edge, &verify_key, &settings(Some(&["edge"]))),
            Err(CredentialError::IdToken),
            "a nonce is never an access token's"
        );
    }

    #[test]
    fn access_tokens_for_the_api_pass_and_foreign_keys_do_not() {
        let (sign_key, verify_key) = key_pair();
        let api = settings(Some(&["api"]));
        let token = sign(&sign_key, json!({ "aud": "api", "scope": "read" }));
        assert_eq!(judge(&token, &verify_key, &api), Ok(()));
        let (foreign, _) = key_pair();
        let forged = sign(&foreign, json!({ "aud": "api" }));
        assert_eq!(judge(&forged, &verify_key, &api), Err(CredentialError::Invalid), "another key");
        let other_audience = sign(&sign_key, json!({ "aud": "another-api" }));
        assert_eq!(judge(&other_audience, &verify_key, &api), Err(CredentialError::Invalid));
        let claims = decode_claims(&token, &verify_key, Algorithm::ES256, &api).unwrap();
        let identity = identity_from_claims(&claims, "groups", CredentialKind::Bearer).unwrap();
        assert_eq!(identity.expires_at(), Some(NOW + 300), "the token's exp bounds what it admits");
        assert_eq!(crate::credentials::session_route(&identity), None, "IdP tokens are not route-bound");
    }
}
