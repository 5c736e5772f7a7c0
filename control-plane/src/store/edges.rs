//! Edges' reports (applied sequence, connections closed per change) and the
//! audit log's trait methods (see [`super::audit`]).

use async_trait::async_trait;
use sqlx::Row;

use super::audit::insert_audit;
use super::rows::seq_param;
use super::{AuditFilter, EdgeReport, EdgeStore, Propagation, SqlStore, StoreResult};
use crate::model::{Actor, AuditEntry, Millis};

#[async_trait]
impl EdgeStore for SqlStore {
    async fn record_edge_report(&self, report: &EdgeReport, now: Millis) -> StoreResult<()> {
        self.record_report_grouped(report.clone(), now).await
    }

    async fn list_edges(&self) -> StoreResult<Vec<(String, String, i64, Millis, i64)>> {
        let rows = sqlx::query(
            "SELECT id, name, applied_seq, last_heartbeat_ms, live_connections FROM edges ORDER BY name, id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("name")?,
                    r.try_get("applied_seq")?,
                    r.try_get("last_heartbeat_ms")?,
                    r.try_get("live_connections")?,
                ))
            })
            .collect()
    }

    async fn propagation(&self, seq: u64, alive_since: Millis) -> StoreResult<Propagation> {
        // One round trip: receipts ask this after every change.
        let row = sqlx::query(
            "SELECT (SELECT CAST(COALESCE(SUM(closed_connections), 0) AS BIGINT) FROM change_acks WHERE seq = $1) \
             AS closed, COUNT(*) AS total, COALESCE(SUM(CASE WHEN applied_seq >= $1 THEN 1 ELSE 0 END), 0) AS applied \
             FROM edges WHERE last_heartbeat_ms >= $2 \
             AND id NOT IN (SELECT edge_id FROM edge_credentials WHERE revoked_ms IS NOT NULL)",
        )
        .bind(seq_param(seq))
        .bind(alive_since)
        .fetch_one(&self.reader)
        .await?;
        let closed: i64 = row.try_get("closed")?;
        Ok(Propagation {
            edges_total: u32::try_from(row.try_get::<i64, _>("total")?).unwrap_or(u32::MAX),
            edges_applied: u32::try_from(row.try_get::<i64, _>("applied")?).unwrap_or(u32::MAX),
            connections_closed: closed,
        })
    }

    async fn audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        self.query_audit(filter).await
    }

    async fn record_audit(
        &self,
        action: &str,
        target: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        insert_audit(&mut tx, action, target, reason, actor, now, None).await?;
        tx.commit().await?;
        Ok(())
    }
}
