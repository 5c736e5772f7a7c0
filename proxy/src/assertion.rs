//! The signed identity assertion every allowed request carries to its
//! upstream (`X-Portcullis-Assertion`): a short-lived ES256 JWT with the
//! user, email, groups, session and route, so an upstream need not trust
//! plain headers. Its public key is published at `/.portcullis/jwks.json`.
//! Edges sharing `assertion_key_file` share one key; without it each edge
//! makes its own at start. Signing costs tens of microseconds, so an
//! assertion is reused for the same identity and route until it is half
//! way to expiry.

use std::hash::BuildHasher;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dashmap::DashMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use portcullis_policy::Identity;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Header carrying the assertion.
pub const ASSERTION_HEADER: &str = "x-portcullis-assertion";
/// `typ` of assertions.
pub const ASSERTION_TYPE: &str = "portcullis-assertion+jwt";
/// Lifetime of an assertion, seconds.
pub const ASSERTION_LIFETIME_S: i64 = 60;
/// Cached assertions kept at most.
const CACHE_CAPACITY: usize = 100_000;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    email: &'a str,
    groups: &'a [Box<str>],
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    credential: &'a str,
    iat: i64,
    exp: i64,
}

struct Cached {
    identity: Arc<Identity>,
    audience: Box<str>,
    token: Arc<str>,
    refresh_at: i64,
}

/// Why the assertion key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// Signs identity assertions.
pub struct AssertionSigner {
    key: EncodingKey,
    header: Header,
    issuer: String,
    jwks: String,
    cache: DashMap<u64, Cached>,
    hasher: foldhash::fast::RandomState,
}

impl AssertionSigner {
    /// A signer with the P-256 key in `pem` (PKCS#8), or a fresh key.
    pub fn new(pem: Option<&str>, issuer: &str) -> Result<Self, KeyError> {
        let secret = match pem {
            Some(pem) => p256::SecretKey::from_pkcs8_pem(pem)
                .map_err(|e| KeyError(format!("not a PKCS#8 PEM P-256 private key: {e}")))?,
            None => p256::SecretKey::random(&mut rand::rngs::OsRng),
        };
        let pkcs8 = secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError(e.to_string()))?;
        let key = EncodingKey::from_ec_pem(pkcs8.as_bytes()).map_err(|e| KeyError(e.to_string()))?;
        let point = secret.public_key().to_encoded_point(false);
        let (x, y) =
            (point.x().map(|x| x.to_vec()).unwrap_or_default(), point.y().map(|y| y.to_vec()).unwrap_or_default());
        let kid: String =
            Sha256::digest([x.as_slice(), y.as_slice()].concat()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        let jwks = serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&x), "y": URL_SAFE_NO_PAD.encode(&y),
        }]})
        .to_string();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(ASSERTION_TYPE.into());
        header.kid = Some(kid);
        Ok(Self {
            key,
            header,
            issuer: issuer.to_owned(),
            jwks,
            cache: DashMap::new(),
            hasher: foldhash::fast::RandomState::default(),
        })
    }

    /// The public key set, as served at `/.portcullis/jwks.json`.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion for `identity` on route `audience` at `now` (Unix seconds).
    pub fn assertion(&self, identity: &Arc<Identity>, audience: &str, now: i64) -> Option<Arc<str>> {
        let slot = self.hasher.hash_one((Arc::as_ptr(identity) as usize, audience));
        if let Some(hit) = self.cache.get(&slot) {
            if Arc::ptr_eq(&hit.identity, identity) && &*hit.audience == audience && hit.refresh_at > now {
                return Some(Arc::clone(&hit.token));
            }
        }
        let claims = Claims {
            iss: &self.issuer,
            aud: audience,
            sub: identity.subject(),
            email: identity.email(),
            groups: identity.groups(),
            sid: identity.session_id().map(|s| s.to_string()),
            credential: identity.credential().as_str(),
            iat: now,
            exp: now + ASSERTION_LIFETIME_S,
        };
        let token: Arc<str> = jsonwebtoken::encode(&self.header, &claims, &self.key).ok()?.into();
        if self.cache.len() >= CACHE_CAPACITY {
            self.cache.clear();
        }
        let cached = Cached {
            identity: Arc::clone(identity),
            audience: audience.into(),
            token: Arc::clone(&token),
            refresh_at: now + ASSERTION_LIFETIME_S / 2,
        };
        self.cache.insert(slot, cached);
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use portcullis_policy::{CredentialKind, IdentityParts};

    #[test]
    fn assertions_verify_with_the_published_key_and_are_reused() {
        let signer = AssertionSigner::new(None, "portcullis").unwrap();
        let identity = Arc::new(Identity::new(IdentityParts {
            subject: "alice".into(),
            email: "alice@corp.example".into(),
            groups: vec!["dev".into()],
            credential: Some(CredentialKind::Browser),
            ..IdentityParts::default()
        }));
        let token = signer.assertion(&identity, "wiki", 1_000_000_000).unwrap();
        assert!(Arc::ptr_eq(&token, &signer.assertion(&identity, "wiki", 1_000_000_010).unwrap()), "reused");
        assert!(!Arc::ptr_eq(&token, &signer.assertion(&identity, "wiki", 1_000_000_031).unwrap()), "renewed");
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(signer.jwks()).unwrap();
        let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["wiki"]);
        validation.set_issuer(&["portcullis"]);
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap().claims;
        assert_eq!(claims["email"], "alice@corp.example");
        assert_eq!(claims["groups"], serde_json::json!(["dev"]));
    }

    #[test]
    fn refuses_a_key_file_that_is_not_a_p256_key() {
        assert!(
            AssertionSigner::new(Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "x").is_err()
        );
    }
}
