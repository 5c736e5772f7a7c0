//! Portcullis session tokens (the cookie, or `Authorization: Bearer` from
//! the CLI), verified against the control plane's public keys in the
//! snapshot: ES256 only; `iss`, `aud`, `exp`, `nbf` and `typ` checked.
//! Verified tokens are cached ([`TokenCache`]); revocation is never cached:
//! `evaluate` checks the snapshot on every request.

use std::sync::Arc;

use dashmap::DashMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_policy::snapshot::{KeyAlgorithm, PublicKey};
use portcullis_policy::{ClaimValue, CredentialKind, Identity, IdentityParts, SessionId};
use serde::Deserialize;

use super::{CredentialError, TokenCache};

/// `typ` of Portcullis session tokens.
pub const SESSION_TOKEN_TYPE: &str = "portcullis-session+jwt";
/// Claim of a session token holding the client address at login.
pub const LOGIN_IP_CLAIM: &str = "login_ip";
/// Claim of a session token naming the route it was issued for.
pub const ROUTE_CLAIM: &str = "route";
/// `aud` of Portcullis session tokens.
pub const SESSION_TOKEN_AUDIENCE: &str = "portcullis-edge";

#[derive(Debug, Deserialize)]
struct SessionClaims {
    sub: String,
    email: String,
    #[serde(default)]
    groups: Vec<String>,
    sid: String,
    iat: i64,
    /// Milliseconds (tokens of older control planes have only `iat`).
    #[serde(default)]
    iat_ms: Option<i64>,
    exp: i64,
    auth_time: i64,
    #[serde(default)]
    route: String,
    #[serde(default)]
    login_ip: String,
}

/// Verifies session tokens and caches the verified ones.
pub struct SessionVerifier {
    issuer: String,
    cache: TokenCache,
    keys: DashMap<String, (PublicKey, Arc<DecodingKey>)>,
}

impl SessionVerifier {
    /// A verifier accepting tokens from `issuer`, caching up to `capacity` tokens.
    pub fn new(issuer: &str, capacity: usize) -> Self {
        Self { issuer: issuer.to_owned(), cache: TokenCache::new(capacity), keys: DashMap::new() }
    }

    /// Number of cached tokens.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The identity a still-valid cached token proves, without verifying anything.
    pub fn cache_hit(&self, token: &str, credential: CredentialKind, now: i64) -> Option<Arc<Identity>> {
        self.cache.get(token, now).filter(|i| i.credential() == credential)
    }

    /// The identity a token proves, from the cache or by verifying it.
    /// `keys` are the snapshot's published keys; `now` is Unix seconds.
    /// Returns whether it was a cache hit.
    pub fn verify(
        &self,
        token: &str,
        credential: CredentialKind,
        keys: &[PublicKey],
        now: i64,
    ) -> Result<(Arc<Identity>, bool), CredentialError> {
        // A cached token whose key is no longer published is verified again
        // (and refused): a revoked key takes its cached tokens with it.
        if let Some(identity) = self
            .cache_hit(token, credential, now)
            .filter(|i| i.signing_key().is_some_and(|kid| keys.iter().any(|k| *k.kid == *kid)))
        {
            return Ok((identity, true));
        }
        let (identity, exp) = self.verify_signature(token, credential, keys)?;
        self.cache.insert(token, Arc::clone(&identity), exp);
        Ok((identity, false))
    }

    fn decoding_key(&self, kid: &str, keys: &[PublicKey]) -> Result<Arc<DecodingKey>, CredentialError> {
        let published =
            keys.iter().find(|k| k.kid == kid && k.alg == KeyAlgorithm::ES256).ok_or(CredentialError::UnknownKey)?;
        if let Some(cached) = self.keys.get(kid).filter(|c| c.0 == *published) {
            return Ok(Arc::clone(&cached.1));
        }
        let y = published.y.as_deref().ok_or(CredentialError::UnknownKey)?;
        let key = Arc::new(DecodingKey::from_ec_components(&published.x, y).map_err(|_| CredentialError::UnknownKey)?);
        self.keys.insert(kid.to_owned(), (published.clone(), Arc::clone(&key)));
        Ok(key)
    }

    fn verify_signature(
        &self,
        token: &str,
        credential: CredentialKind,
        keys: &[PublicKey],
    ) -> Result<(Arc<Identity>, i64), CredentialError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| CredentialError::Malformed)?;
        // Algorithm allow-list: session tokens are ES256 only, so `none`,
        // HS256-with-the-public-key and RS/ES confusion are all refused here.
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(SESSION_TOKEN_TYPE) {
            return Err(CredentialError::WrongType);
        }
        let kid = header.kid.ok_or(CredentialError::UnknownKey)?;
        let key = self.decoding_key(&kid, keys)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[SESSION_TOKEN_AUDIENCE]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<SessionClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidToken | jsonwebtoken::errors::ErrorKind::Json(_) => {
                    CredentialError::Malformed
                }
                _ => CredentialError::Invalid,
            })?
            .claims;
        let session: SessionId = claims.sid.parse().map_err(|_| CredentialError::Malformed)?;
        let identity = Identity::new(IdentityParts {
            subject: claims.sub,
            email: claims.email,
            groups: claims.groups,
            claims: vec![
                (LOGIN_IP_CLAIM.to_owned(), ClaimValue::One(claims.login_ip.into())),
                (ROUTE_CLAIM.to_owned(), ClaimValue::One(claims.route.into())),
            ],
            credential: Some(credential),
            session_id: Some(session),
            issued_at: claims.iat,
            issued_at_ms: claims.iat_ms,
            auth_time: claims.auth_time,
            session_started_at: claims.iat,
            signing_key: Some(kid),
            ..IdentityParts::default()
        })
        .with_expires_at(Some(claims.exp));
        Ok((Arc::new(identity), claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use serde_json::json;

    const ISSUER: &str = "https://portcullis.example";

    /// A control-plane signing key: the encoding half and the snapshot's public key.
    fn signing_key(kid: &str) -> (EncodingKey, PublicKey) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let (mut x, mut y, mut ctx) = (BigNum::new().unwrap(), BigNum::new().unwrap(), BigNumContext::new().unwrap());
        ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).unwrap();
        let public = PublicKey {
            kid: kid.into(),
            alg: KeyAlgorithm::ES256,
            x: URL_SAFE_NO_PAD.encode(x.to_vec_padded(32).unwrap()),
            y: Some(URL_SAFE_NO_PAD.encode(y.to_vec_padded(32).unwrap())),
        };
        let pem = PKey::from_ec_key(ec).unwrap().private_key_to_pem_pkcs8().unwrap();
        (EncodingKey::from_ec_pem(&pem).unwrap(), public)
    }

    fn token(key: &EncodingKey, kid: &str, typ: &str, exp: i64) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.into());
        header.kid = Some(kid.into());
        let claims = json!({
            "iss": ISSUER, "aud": SESSION_TOKEN_AUDIENCE, "sub": "u1", "email": "Ann@Example.com",
            "sid": "0123456789abcdef0123456789abcdef", "iat": 1_000, "exp": exp, "auth_time": 1_000,
            "route": "wiki", "login_ip": "192.0.2.1",
        });
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    #[test]
    fn foreign_keys_and_wrong_types_are_refused() {
        let (key, public) = signing_key("k1");
        let (foreign, _) = signing_key("k1");
        let verifier = SessionVerifier::new(ISSUER, 16);
        let now = 2_000;
        let keys = [public];
        let refused = |token: &str| verifier.verify(token, CredentialKind::Browser, &keys, now).err();
        assert_eq!(refused(&token(&foreign, "k1", SESSION_TOKEN_TYPE, 4_000_000_000)), Some(CredentialError::Invalid));
        assert_eq!(refused(&token(&key, "k2", SESSION_TOKEN_TYPE, 4_000_000_000)), Some(CredentialError::UnknownKey));
        assert_eq!(refused(&token(&key, "k1", "JWT", 4_000_000_000)), Some(CredentialError::WrongType));
        assert_eq!(
            refused(&token(&key, "k1", SESSION_TOKEN_TYPE, 1_500)),
            Some(CredentialError::Invalid),
            "expired (jsonwebtoken checks exp against the clock)"
        );
    }

    #[test]
    fn a_verified_session_says_its_route_and_when_it_expires() {
        let (key, public) = signing_key("k1");
        let verifier = SessionVerifier::new(ISSUER, 16);
        let signed = token(&key, "k1", SESSION_TOKEN_TYPE, 4_000_000_000);
        let (identity, hit) = verifier.verify(&signed, CredentialKind::Browser, &[public], 2_000).unwrap();
        assert!(!hit);
        assert_eq!(identity.expires_at(), Some(4_000_000_000));
        assert_eq!(crate::credentials::session_route(&identity), Some("wiki"));
        assert_eq!(identity.email(), "ann@example.com");
        assert_eq!(identity.issued_at_ms(), 1_000_000, "no `iat_ms`: the start of the `iat` second (fail closed)");
        assert_eq!(identity.signing_key(), Some("k1"));
    }

    #[test]
    fn a_cached_token_is_refused_once_its_key_is_withdrawn() {
        let (key, public) = signing_key("k1");
        let (_, other) = signing_key("k2");
        let verifier = SessionVerifier::new(ISSUER, 16);
        let signed = token(&key, "k1", SESSION_TOKEN_TYPE, 4_000_000_000);
        let both = [public.clone(), other.clone()];
        assert!(!verifier.verify(&signed, CredentialKind::Browser, &both, 2_000).unwrap().1);
        assert!(verifier.verify(&signed, CredentialKind::Browser, &both, 2_000).unwrap().1, "cached");
        let refused = verifier.verify(&signed, CredentialKind::Browser, &[other], 2_000).err();
        assert_eq!(refused, Some(CredentialError::UnknownKey), "the cache does not outlive the key");
    }

    #[test]
    fn a_session_token_says_when_it_was_issued_to_the_millisecond() {
        let (key, public) = signing_key("k1");
        let verifier = SessionVerifier::new(ISSUER, 16);
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.typ = Some(SESSION_TOKEN_TYPE.into());
        header.kid = Some("k1".into());
        let claims = json!({
            "iss": ISSUER, "aud": SESSION_TOKEN_AUDIENCE, "sub": "u1", "email": "ann@example.com",
            "sid": "0123456789abcdef0123456789abcdef", "iat": 1_000, "iat_ms": 1_000_999, "exp": 4_000_000_000_i64,
            "auth_time": 1_000, "route": "wiki",
        });
        let signed = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let (identity, _) = verifier.verify(&signed, CredentialKind::Browser, &[public], 2_000).unwrap();
        assert_eq!(identity.issued_at_ms(), 1_000_999);
    }
}
