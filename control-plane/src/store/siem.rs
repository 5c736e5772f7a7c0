//! SIEM sink cursors (`siem_cursors`): each sink reads the audit log in id
//! order after its cursor and moves the cursor only once the sink has
//! acknowledged a batch. The cursor row carries a lease: one replica
//! delivers for a sink at a time, and a replica whose lease lapsed (it
//! stalled, or was killed) cannot move the cursor afterwards.

use sqlx::Row;

use super::rows::audit_entry;
use super::{SqlStore, StoreResult};
use crate::model::{AuditEntry, Millis};

/// Where a new sink starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkStart {
    /// With the oldest audit entry still kept.
    Beginning,
    /// With the entries written after the sink was first configured.
    Now,
}

/// A sink's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkBacklog {
    /// Entries not yet delivered.
    pub pending: i64,
    /// When the oldest of them was recorded.
    pub oldest_ms: Option<Millis>,
}

impl SqlStore {
    /// Takes (or renews) `sink`'s lease as `token` until `now + lease_ms`;
    /// the cursor if this replica holds the lease now, `None` if another does.
    pub async fn claim_sink(
        &self,
        sink: &str,
        token: &str,
        start: SinkStart,
        now: Millis,
        lease_ms: Millis,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.writer.begin().await?;
        let first = match start {
            SinkStart::Beginning => 0,
            SinkStart::Now => {
                sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(id), 0) FROM audit_log").fetch_one(&mut *tx).await?
            }
        };
        sqlx::query(
            "INSERT INTO siem_cursors (sink, last_id, lease_token, lease_until_ms, updated_ms) VALUES ($1, $2, NULL, 0, $3) \
             ON CONFLICT (sink) DO NOTHING",
        )
        .bind(sink)
        .bind(first)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let taken = sqlx::query(
            "UPDATE siem_cursors SET lease_token = $1, lease_until_ms = $2 \
             WHERE sink = $3 AND (lease_token = $1 OR lease_until_ms < $4)",
        )
        .bind(token)
        .bind(now + lease_ms)
        .bind(sink)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let cursor = if taken == 1 {
            Some(
                sqlx::query_scalar("SELECT last_id FROM siem_cursors WHERE sink = $1")
                    .bind(sink)
                    .fetch_one(&mut *tx)
                    .await?,
            )
        } else {
            None
        };
        tx.commit().await?;
        Ok(cursor)
    }

    /// Moves `sink`'s cursor to `last_id` if `token` still holds the lease at
    /// `now`; false otherwise (the batch will be delivered again: at least once).
    pub async fn advance_sink(&self, sink: &str, token: &str, last_id: i64, now: Millis) -> StoreResult<bool> {
        let moved = sqlx::query(
            "UPDATE siem_cursors SET last_id = $1, updated_ms = $2 \
             WHERE sink = $3 AND lease_token = $4 AND lease_until_ms >= $2 AND last_id < $1",
        )
        .bind(last_id)
        .bind(now)
        .bind(sink)
        .bind(token)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }

    /// Up to `limit` audit entries after `after_id`, in id order.
    pub async fn audit_after(&self, after_id: i64, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        sqlx::query("SELECT * FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(i64::from(limit.clamp(1, 10_000)))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(audit_entry)
            .collect()
    }

    /// What `sink` has not delivered yet.
    pub async fn sink_backlog(&self, sink: &str) -> StoreResult<SinkBacklog> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, MIN(at_ms) AS oldest FROM audit_log \
             WHERE id > COALESCE((SELECT last_id FROM siem_cursors WHERE sink = $1), 0)",
        )
        .bind(sink)
        .fetch_one(&self.reader)
        .await?;
        Ok(SinkBacklog { pending: row.try_get("pending")?, oldest_ms: row.try_get("oldest")? })
    }
}
