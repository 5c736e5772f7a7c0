//! The key Security Event Tokens are signed with: ES256, made by the first
//! replica to start, stored sealed by the key-encryption key beside the
//! stream key (purpose `ssf`), published at `/ssf/jwks`. Separate from the
//! session keys, so a SET can never pass for a session token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{json, Value};

use crate::key_vault::KeyVault;
use crate::model::{now_ms, Actor, StreamKeyRecord};
use crate::store::{StoreError, StoreResult, StreamKeyStore};

/// The key's `purpose` in the key table and its sealing context.
const PURPOSE: &str = "ssf";
/// RFC 8417 §2.3: the `typ` of a SET.
pub const SET_TYPE: &str = "secevent+jwt";

/// Signs SETs.
pub struct SetSigner {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SetSigner {
    /// Loads the key, making it on the first start.
    pub async fn load_or_create(store: &dyn StreamKeyStore, vault: &KeyVault) -> StoreResult<Self> {
        if let Some(record) = store.current_key_for(PURPOSE).await? {
            return Self::from_record(&record, vault);
        }
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| corrupt(&e.to_string()))?;
        let mut kid = [0u8; 9];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut kid);
        let kid = URL_SAFE_NO_PAD.encode(kid);
        let record = StreamKeyRecord {
            private_pem: vault.seal(PURPOSE, &kid, &pem),
            public_key: jwk(&kid, &key).to_string(),
            kid,
            algorithm: "ES256".into(),
            created_ms: now_ms(),
        };
        if !store.create_key_for(PURPOSE, &record, &Actor::system(), now_ms()).await? {
            let winner = store.current_key_for(PURPOSE).await?.ok_or_else(|| corrupt("vanished after a conflict"))?;
            return Self::from_record(&winner, vault);
        }
        Self::from_record(&record, vault)
    }

    fn from_record(record: &StreamKeyRecord, vault: &KeyVault) -> StoreResult<Self> {
        let pem = vault.open(PURPOSE, &record.kid, &record.private_pem).map_err(|e| corrupt(&e.to_string()))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| corrupt(&e.to_string()))?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| corrupt(&e.to_string()))?;
        Ok(Self { kid: record.kid.clone(), encoding, jwk: jwk(&record.kid, &key) })
    }

    /// `{"keys": [the public key]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs `claims` as a SET (`typ: secevent+jwt`, ES256, `kid`).
    pub fn sign(&self, claims: &Value) -> StoreResult<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(SET_TYPE.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| corrupt(&format!("signing: {e}")))
    }
}

fn jwk(kid: &str, key: &SigningKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    let coordinate = |c: Option<&p256::FieldBytes>| c.map(|c| URL_SAFE_NO_PAD.encode(c)).unwrap_or_default();
    json!({ "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": coordinate(point.x()), "y": coordinate(point.y()) })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("SSF signing key: {what}"))
}
