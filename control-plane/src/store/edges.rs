//! Edges' reports (applied sequence, connections closed per change) and the
//! audit log.

use async_trait::async_trait;
use sqlx::Row;

use super::changes::insert_audit;
use super::rows::{audit_entry, contains, seq_param, Params};
use super::{AuditFilter, EdgeReport, EdgeStore, Propagation, SqlStore, StoreResult};
use crate::model::{Actor, AuditEntry, Millis};

#[async_trait]
impl EdgeStore for SqlStore {
    async fn record_edge_report(&self, report: &EdgeReport, now: Millis) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO edges (id, name, applied_seq, last_heartbeat_ms, live_connections) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, applied_seq = excluded.applied_seq, \
             last_heartbeat_ms = excluded.last_heartbeat_ms, live_connections = excluded.live_connections",
        )
        .bind(&report.edge_id)
        .bind(&report.name)
        .bind(seq_param(report.applied_seq))
        .bind(now)
        .bind(report.live_connections)
        .execute(&mut *tx)
        .await?;
        for (seq, closed) in &report.closed {
            sqlx::query(
                "INSERT INTO change_acks (seq, edge_id, closed_connections) VALUES ($1, $2, $3) \
                 ON CONFLICT (seq, edge_id) DO UPDATE SET closed_connections = change_acks.closed_connections + excluded.closed_connections",
            )
            .bind(seq_param(*seq))
            .bind(&report.edge_id)
            .bind(*closed)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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
        let mut sql = String::from("SELECT * FROM audit_log WHERE 1 = 1");
        let mut params = Params::default();
        if let Some(actor) = &filter.actor {
            sql.push_str(&format!(" AND actor = {}", params.text(actor)));
        }
        if let Some(action) = &filter.action {
            sql.push_str(&format!(" AND action = {}", params.text(action)));
        }
        if let Some(target) = &filter.target {
            sql.push_str(&format!(" AND {}", contains(self.backend, "target", &params.text(target))));
        }
        if let Some(user) = &filter.user {
            let (email, subject) = (params.text(user.to_ascii_lowercase()), params.text(user));
            sql.push_str(&format!(" AND (user_email = {email} OR user_subject = {subject})"));
        }
        if let Some(session) = &filter.session {
            sql.push_str(&format!(" AND session_id = {}", params.text(session)));
        }
        if let Some(since) = filter.since_ms {
            sql.push_str(&format!(" AND at_ms >= {}", params.int(since)));
        }
        if let Some(before) = filter.before_id {
            sql.push_str(&format!(" AND id < {}", params.int(before)));
        }
        if let Some(after) = filter.after_id {
            sql.push_str(&format!(" AND id > {}", params.int(after)));
        }
        let limit = params.int(i64::from(filter.limit.clamp(1, 1000)));
        let order = if filter.after_id.is_some() { "ASC" } else { "DESC" };
        sql.push_str(&format!(" ORDER BY id {order} LIMIT {limit}"));
        params.bind(sqlx::query(&sql)).fetch_all(&self.reader).await?.iter().map(audit_entry).collect()
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
