//! A provider's signing keys (its JWKS), in the two forms callers need: as
//! `jsonwebtoken` keys (the edge's access and logout tokens, the control
//! plane's Security Event Tokens) and as the `openidconnect` key set for ID
//! tokens. Keys nobody can use (other key types, encryption keys, symmetric
//! keys) are skipped, never fatal.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use openidconnect::core::CoreJsonWebKeySet;

/// One usable verification key.
pub struct VerificationKey {
    /// The key.
    pub key: DecodingKey,
    /// The algorithm the JWK pins, if it names one.
    pub alg: Option<Algorithm>,
}

/// A fetched JWKS.
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerificationKey>>,
    /// Keys without a `kid` (usable only when the set has exactly one key).
    anonymous: Vec<Arc<VerificationKey>>,
    /// The same document for `openidconnect`'s ID-token verifier.
    pub for_id_tokens: CoreJsonWebKeySet,
}

impl KeySet {
    /// Parses a JWKS document.
    pub fn parse(document: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(document).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        let keys = value.get("keys").and_then(|k| k.as_array()).ok_or("the JWKS has no `keys` array")?;
        let mut by_kid = HashMap::new();
        let mut anonymous = Vec::new();
        for raw in keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else { continue };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            if matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)) {
                continue; // symmetric keys never verify IdP tokens
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
            let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let key = Arc::new(VerificationKey { key, alg });
            match jwk.common.key_id {
                Some(kid) => {
                    by_kid.insert(kid, key);
                }
                None => anonymous.push(key),
            }
        }
        let for_id_tokens =
            serde_json::from_value(value.clone()).unwrap_or_else(|_| CoreJsonWebKeySet::new(Vec::new()));
        Ok(Self { by_kid, anonymous, for_id_tokens })
    }

    /// The key for a token's `kid` (or the only key, for tokens without one).
    pub fn find(&self, kid: Option<&str>) -> Option<Arc<VerificationKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None if self.by_kid.len() + self.anonymous.len() == 1 => {
                self.by_kid.values().chain(&self.anonymous).next().cloned()
            }
            None => None,
        }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_KEY: &str = r#"{"kty":"EC","crv":"P-256","kid":"ec1","alg":"ES256","use":"sig",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn keeps_signing_keys_and_skips_the_rest() {
        let document = format!(
            r#"{{"keys":[{EC_KEY},{{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}},{{"kty":"XYZ","kid":"odd"}},
              {{"kty":"EC","crv":"P-256","kid":"enc","use":"enc",
                "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}]}}"#
        );
        let set = KeySet::parse(document.as_bytes()).expect("parses");
        assert_eq!(set.len(), 1, "only the EC signing key is usable");
        assert_eq!(set.find(Some("ec1")).and_then(|k| k.alg), Some(Algorithm::ES256));
        assert!(set.find(Some("hmac")).is_none(), "a symmetric key is never a verification key");
        assert!(set.find(None).is_some(), "a single key serves tokens without kid");
    }

    #[test]
    fn refuses_documents_that_are_not_key_sets() {
        assert!(KeySet::parse(b"not json").is_err());
        assert!(KeySet::parse(b"{\"issuer\":\"x\"}").is_err());
    }
}
