//! The stream-signing key's row: made once by whichever replica starts
//! first (`INSERT … ON CONFLICT DO NOTHING` on the one-current-key-per-purpose
//! index), read by every replica after that, so a PostgreSQL cluster signs
//! its edge streams with one key.

use async_trait::async_trait;
use sqlx::Row;

use super::audit::insert_audit;
use super::{SqlStore, StoreResult, StreamKeyStore};
use crate::model::{Actor, Millis, StreamKeyRecord};

/// The `purpose` of the key that signs the edge stream.
const STREAM: &str = "stream";

#[async_trait]
impl StreamKeyStore for SqlStore {
    async fn current_stream_key(&self) -> StoreResult<Option<StreamKeyRecord>> {
        self.current_key_for(STREAM).await
    }

    async fn create_stream_key(&self, key: &StreamKeyRecord, actor: &Actor, now: Millis) -> StoreResult<bool> {
        self.create_key_for(STREAM, key, actor, now).await
    }

    async fn current_key_for(&self, purpose: &str) -> StoreResult<Option<StreamKeyRecord>> {
        let row = sqlx::query(
            "SELECT kid, algorithm, private_pem, public_key, created_ms FROM stream_signing_keys \
             WHERE purpose = $1 AND retired_ms IS NULL",
        )
        .bind(purpose)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|row| {
            Ok(StreamKeyRecord {
                kid: row.try_get("kid")?,
                algorithm: row.try_get("algorithm")?,
                private_pem: row.try_get("private_pem")?,
                public_key: row.try_get("public_key")?,
                created_ms: row.try_get("created_ms")?,
            })
        })
        .transpose()
    }

    async fn create_key_for(
        &self,
        purpose: &str,
        key: &StreamKeyRecord,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO stream_signing_keys (kid, purpose, algorithm, private_pem, public_key, created_ms, retired_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(purpose)
        .bind(&key.algorithm)
        .bind(&key.private_pem)
        .bind(&key.public_key)
        .bind(key.created_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            let reason = format!("public key {}", key.public_key);
            let action =
                if purpose == STREAM { "stream_key.create".to_owned() } else { format!("{purpose}_key.create") };
            insert_audit(&mut tx, &action, &format!("key:{}", key.kid), &reason, actor, now, None).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }
}
