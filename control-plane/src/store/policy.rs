//! Policy versions: every applied document is kept with its author and
//! message; the newest is in force. Rollback stores an old document again as
//! a new version, so history only grows.

use async_trait::async_trait;
use portcullis_policy::{Change, PolicySource};

use super::audit::insert_audit;
use super::changes::append_change;
use super::rows::policy_version;
use super::{PolicyStore, SqlStore, StoreResult};
use crate::model::{Actor, Millis, PolicyVersion};

#[async_trait]
impl PolicyStore for SqlStore {
    async fn current_policy(&self) -> StoreResult<Option<PolicyVersion>> {
        let row = sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(policy_version).transpose()
    }

    async fn policy_version(&self, version: i64) -> StoreResult<Option<PolicyVersion>> {
        let row = sqlx::query("SELECT * FROM policy_versions WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(policy_version).transpose()
    }

    async fn policy_history(&self, limit: u32) -> StoreResult<Vec<PolicyVersion>> {
        let rows = sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT $1")
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(policy_version).collect()
    }

    async fn put_policy(&self, document: &str, message: &str, actor: &Actor, now: Millis) -> StoreResult<(i64, u64)> {
        // The change-log lock (taken first) also serialises version numbers.
        let mut tx = self.begin_change().await?;
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions").fetch_one(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO policy_versions (version, document, author, message, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(version)
        .bind(document)
        .bind(&actor.name)
        .bind(message)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let policy = PolicySource { name: format!("policy v{version}"), text: document.to_owned() };
        let seq = append_change(&mut tx, self.backend, Change::ReplacePolicy { policy }, now).await?;
        insert_audit(&mut tx, "policy.apply", &format!("policy:v{version}"), message, actor, now, Some(seq)).await?;
        self.commit_change(tx, Some(seq)).await?;
        Ok((version, seq))
    }
}
