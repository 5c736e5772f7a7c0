//! The stream-signing key: made once, by one replica even when several
//! start at the same moment, and the same key on every later start; its
//! private half stays out of the audit log and is stored sealed by the
//! key-encryption key.

use portcullis_control_plane::key_vault::KeyVault;
use portcullis_control_plane::store::{SqlStore, StreamKeyStore};
use portcullis_control_plane::stream_key::load_or_create;

use crate::fixtures::audit_all;

fn vault() -> KeyVault {
    KeyVault::from_secret("store-suite-key-encryption-key-0123456789").expect("a valid KEK")
}

async fn the_stream_key_is_made_once_and_kept(store: SqlStore) {
    assert!(store.current_stream_key().await.unwrap().is_none(), "a new database has none");
    let first = load_or_create(&store, &vault()).await.unwrap().public_key();
    let again = load_or_create(&store, &vault()).await.unwrap().public_key();
    assert_eq!(first, again, "a restart signs with the same key");
    let record = store.current_stream_key().await.unwrap().expect("stored");
    assert_eq!((record.algorithm.as_str(), record.public_key.as_str()), ("Ed25519", first.to_string().as_str()));
    assert_eq!(record.kid, first.key_id().to_string());
    assert!(!format!("{record:?}").contains("PRIVATE"), "Debug leaves the private key out: {record:?}");
    assert!(KeyVault::is_sealed(&record.private_pem) && !record.private_pem.contains("PRIVATE"), "stored sealed");
    let other = KeyVault::from_secret("another-key-encryption-key-0123456789abc").unwrap();
    let refused = load_or_create(&store, &other).await.expect_err("another KEK does not open it");
    assert!(refused.to_string().contains("key-encryption key"), "{refused}");
    let created: Vec<_> = audit_all(&store).await.into_iter().filter(|e| e.action == "stream_key.create").collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].target, format!("key:{}", record.kid));
    assert!(created[0].reason.contains(&first.to_string()) && !created[0].reason.contains("PRIVATE"));
}

async fn replicas_starting_at_once_share_one_stream_key(store: SqlStore) {
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { load_or_create(&store, &vault()).await.map(|k| k.public_key()) })
        })
        .collect();
    let mut keys = Vec::new();
    for handle in handles {
        keys.push(handle.await.expect("task").expect("load or create"));
    }
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "every replica signs with the one stored key: {keys:?}");
    let created = audit_all(&store).await.into_iter().filter(|e| e.action == "stream_key.create").count();
    assert_eq!(created, 1, "exactly one replica made it");
}

store_tests!(the_stream_key_is_made_once_and_kept, replicas_starting_at_once_share_one_stream_key);
