//! The stream-signing key (see `portcullis_policy::stream_key` for the
//! algorithm and its text forms): made on the first start of the first
//! replica from the operating system's CSPRNG, stored in the database so
//! every replica of a PostgreSQL cluster signs with the same key, and loaded
//! on every start after that. It is separate from the session-signing keys:
//! it signs what edges enforce, not who a user is.
//!
//! The private key is stored sealed by the key-encryption key (see
//! `crate::key_vault`), like the session-signing keys.
//!
//! Only the public half is ever logged or served (`GET /edge/v1/stream-key`
//! to edges, `GET /api/v1/stream-key` to admins). Rotation is not offered
//! yet: edges pin the key for the life of their process.

use portcullis_policy::stream_key::{StreamSigningKey, ALGORITHM};

use crate::key_vault::KeyVault;
use crate::model::{now_ms, Actor, StreamKeyRecord};
use crate::store::{StoreError, StoreResult, StreamKeyStore};

/// The key-vault purpose of the stream-signing key (its sealing context).
pub const STREAM_KEY_PURPOSE: &str = "stream-signing";

/// Loads the current stream-signing key, making it if there is none yet.
pub async fn load_or_create(store: &dyn StreamKeyStore, vault: &KeyVault) -> StoreResult<StreamSigningKey> {
    if let Some(record) = store.current_stream_key().await? {
        return from_record(&record, vault);
    }
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed);
    let key = StreamSigningKey::from_seed(seed);
    seed.fill(0);
    let public = key.public_key();
    let kid = public.key_id().to_string();
    let record = StreamKeyRecord {
        private_pem: vault.seal(STREAM_KEY_PURPOSE, &kid, &key.to_pkcs8_pem()),
        kid,
        algorithm: ALGORITHM.into(),
        public_key: public.to_string(),
        created_ms: now_ms(),
    };
    if store.create_stream_key(&record, &Actor::system(), now_ms()).await? {
        tracing::info!(public_key = %public, "created the stream-signing key");
        return Ok(key);
    }
    // Another replica made one at the same moment: sign with that one.
    let winner = store.current_stream_key().await?.ok_or_else(|| corrupt("vanished after a conflict"))?;
    from_record(&winner, vault)
}

fn from_record(record: &StreamKeyRecord, vault: &KeyVault) -> StoreResult<StreamSigningKey> {
    if record.algorithm != ALGORITHM {
        return Err(corrupt(&format!("algorithm {}", record.algorithm)));
    }
    let pem = vault
        .open(STREAM_KEY_PURPOSE, &record.kid, &record.private_pem)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let key = StreamSigningKey::from_pkcs8_pem(&pem).map_err(|e| corrupt(&e.to_string()))?;
    if key.public_key().to_string() != record.public_key {
        return Err(corrupt("its public key does not match its private key"));
    }
    Ok(key)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stream-signing key: {what}"))
}
