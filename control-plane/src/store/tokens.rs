//! API tokens (admin tokens with scopes, service tokens for machines reaching
//! protected apps) stored as SHA-256 hashes, and session-signing keys.

use async_trait::async_trait;
use portcullis_policy::{Change, TokenId};
use sqlx::Row;

use super::audit::insert_audit;
use super::changes::{append_change, ceil_seconds, published_keys};
use super::rows::{api_token, to_json};
use super::{SqlStore, StoreError, StoreResult, TokenStore};
use crate::model::{Actor, ApiTokenRecord, Millis, SigningKeyRecord};

/// A token's last use is written at most this often, milliseconds.
const TOKEN_USE_RESOLUTION_MS: Millis = 60_000;

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert_api_token(&self, record: &ApiTokenRecord, actor: &Actor, now: Millis) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, kind, name, token_hash, scopes, subject, groups_json, created_ms, expires_ms, \
             revoked_ms, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&record.id)
        .bind(&record.kind)
        .bind(&record.name)
        .bind(&record.token_hash)
        .bind(record.scopes.join(" "))
        .bind(&record.subject)
        .bind(to_json(&record.groups))
        .bind(record.created_ms)
        .bind(record.expires_ms)
        .bind(record.revoked_ms)
        .bind(&record.created_by)
        .execute(&mut *tx)
        .await?;
        let action = format!("{}_token.create", record.kind);
        insert_audit(&mut tx, &action, &format!("token:{}", record.id), &record.name, actor, now, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(api_token).transpose()
    }

    async fn list_api_tokens(&self, kind: &str) -> StoreResult<Vec<ApiTokenRecord>> {
        let rows = sqlx::query("SELECT * FROM api_tokens WHERE kind = $1 ORDER BY created_ms DESC, id DESC")
            .bind(kind)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(api_token).collect()
    }

    async fn revoke_api_token(&self, id: &str, actor: &Actor, now: Millis) -> StoreResult<Option<u64>> {
        let mut tx = self.begin_change().await?;
        let row = sqlx::query("SELECT kind, revoked_ms, expires_ms FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        if row.try_get::<Option<i64>, _>("revoked_ms")?.is_some() {
            return Ok(None);
        }
        sqlx::query("UPDATE api_tokens SET revoked_ms = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
        let kind: String = row.try_get("kind")?;
        let seq = if kind == "service" {
            let expires: Option<Millis> = row.try_get("expires_ms")?;
            let change =
                Change::RevokeToken { token: TokenId::new(id), expires_at: expires.map_or(i64::MAX, ceil_seconds) };
            Some(append_change(&mut tx, self.backend, change, now).await?)
        } else {
            None
        };
        insert_audit(&mut tx, &format!("{kind}_token.revoke"), &format!("token:{id}"), "", actor, now, seq).await?;
        self.commit_change(tx, seq).await?;
        Ok(seq)
    }

    async fn record_token_use(&self, id: &str, now: Millis) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_ms = $1 WHERE id = $2 AND (last_used_ms IS NULL OR last_used_ms < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - TOKEN_USE_RESOLUTION_MS)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_ms, kid").fetch_all(&self.reader).await?;
        rows.iter()
            .map(|row| {
                Ok(SigningKeyRecord {
                    kid: row.try_get("kid")?,
                    alg: row.try_get("alg")?,
                    private_pem: row.try_get("private_pem")?,
                    x: row.try_get("x")?,
                    y: row.try_get("y")?,
                    created_ms: row.try_get("created_ms")?,
                    retired_ms: row.try_get("retired_ms")?,
                    revoked_ms: row.try_get("revoked_ms")?,
                })
            })
            .collect()
    }

    async fn add_signing_key(&self, key: &SigningKeyRecord, actor: &Actor, now: Millis) -> StoreResult<u64> {
        let mut tx = self.begin_change().await?;
        insert_signing_key(&mut tx, key, now).await?;
        let keys = published_keys(&mut tx, now).await?;
        let seq = append_change(&mut tx, self.backend, Change::RotateKeys { keys }, now).await?;
        insert_audit(&mut tx, "signing_key.rotate", &format!("key:{}", key.kid), "", actor, now, Some(seq)).await?;
        self.commit_change(tx, Some(seq)).await?;
        Ok(seq)
    }

    async fn reseal_signing_key(&self, kid: &str, private_pem: &str) -> StoreResult<()> {
        sqlx::query("UPDATE signing_keys SET private_pem = $1 WHERE kid = $2")
            .bind(private_pem)
            .bind(kid)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn revoke_signing_key(
        &self,
        kid: &str,
        replacement: Option<&SigningKeyRecord>,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Option<u64>> {
        let mut tx = self.begin_change().await?;
        let current: Option<Option<Millis>> =
            sqlx::query_scalar("SELECT retired_ms FROM signing_keys WHERE kid = $1 AND revoked_ms IS NULL")
                .bind(kid)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(retired_ms) = current else { return Ok(None) };
        match (retired_ms, replacement) {
            (None, None) => {
                return Err(StoreError::Corrupt(format!(
                    "signing key {kid} is the current key: it needs a replacement"
                )))
            }
            (_, Some(key)) => insert_signing_key(&mut tx, key, now).await?,
            (Some(_), None) => {}
        }
        sqlx::query("UPDATE signing_keys SET revoked_ms = $1, retired_ms = COALESCE(retired_ms, $1) WHERE kid = $2")
            .bind(now)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        let keys = published_keys(&mut tx, now).await?;
        let seq = append_change(&mut tx, self.backend, Change::RotateKeys { keys }, now).await?;
        insert_audit(&mut tx, "signing_key.revoke", &format!("key:{kid}"), reason, actor, now, Some(seq)).await?;
        self.commit_change(tx, Some(seq)).await?;
        Ok(Some(seq))
    }
}

/// Retires the current key and inserts `key` as the new current one.
async fn insert_signing_key(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    key: &SigningKeyRecord,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query("UPDATE signing_keys SET retired_ms = $1 WHERE retired_ms IS NULL")
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_pem, x, y, created_ms, retired_ms) VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(&key.private_pem)
    .bind(&key.x)
    .bind(&key.y)
    .bind(key.created_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
