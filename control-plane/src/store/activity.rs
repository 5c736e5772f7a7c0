//! Session activity from edges' reports: where and when a session was last
//! seen (addresses, edges), and its live connections, kept per edge
//! (`session_connections`, migration 0020) and summed into the session's
//! `live_connections`. Edges report each session's current count when it
//! changes, and now and then all of them at once (`complete`): then this
//! edge's counts of sessions it did not name are forgotten, so a restarted
//! edge, or a count that drifted, is put right within a report.
//!
//! Rows are locked in session-id order, whatever order the edge reported
//! in, so two reports touching the same sessions cannot deadlock on
//! PostgreSQL; each session's events keep their order.

use std::collections::BTreeMap;

use sqlx::{Any, Row, Transaction};

use super::rows::{json_list, to_json};
use super::{Activity, Backend, SqlStore, StoreResult};

impl SqlStore {
    /// Applies one report's activity from `edge_id`; `complete`: the report
    /// names every session with live connections on that edge.
    pub(crate) async fn record_activity(&self, edge_id: &str, events: &[Activity], complete: bool) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let mut by_session: BTreeMap<&str, Vec<&Activity>> = BTreeMap::new();
        for event in events {
            let session = match event {
                Activity::Seen { session_id, .. }
                | Activity::Connections { session_id, .. }
                | Activity::LiveConnections { session_id, .. } => session_id.as_str(),
            };
            by_session.entry(session).or_default().push(event);
        }
        let forgotten: Vec<String> = if complete {
            sqlx::query_scalar("SELECT session_id FROM session_connections WHERE edge_id = $1")
                .bind(edge_id)
                .fetch_all(&mut *tx)
                .await?
        } else {
            Vec::new()
        };
        for session in &forgotten {
            by_session.entry(session.as_str()).or_default();
        }
        for (session, events) in by_session {
            let mut recount = false;
            if complete && !events.iter().any(|e| matches!(e, Activity::LiveConnections { .. })) {
                set_connections(&mut tx, session, edge_id, 0).await?;
                recount = true;
            }
            for event in events {
                match event {
                    Activity::Seen { source_address, at_ms, .. } => {
                        self.seen(&mut tx, session, edge_id, source_address, *at_ms).await?;
                    }
                    Activity::Connections { delta, .. } => {
                        let now: Option<i64> = sqlx::query_scalar(
                            "SELECT connections FROM session_connections WHERE session_id = $1 AND edge_id = $2",
                        )
                        .bind(session)
                        .bind(edge_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        set_connections(&mut tx, session, edge_id, (now.unwrap_or(0) + delta).max(0)).await?;
                        recount = true;
                    }
                    Activity::LiveConnections { connections, .. } => {
                        set_connections(&mut tx, session, edge_id, (*connections).max(0)).await?;
                        recount = true;
                    }
                }
            }
            if recount {
                sqlx::query(
                    "UPDATE sessions SET live_connections = (SELECT CAST(COALESCE(SUM(connections), 0) AS BIGINT) \
                     FROM session_connections WHERE session_id = $1) WHERE id = $1",
                )
                .bind(session)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a sighting: the address and edge join the session's lists,
    /// and `last_seen` moves forward (never back).
    async fn seen(
        &self,
        tx: &mut Transaction<'static, Any>,
        session: &str,
        edge_id: &str,
        source_address: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        // Locked until commit on PostgreSQL: another edge's report on the
        // same session would otherwise overwrite this read-modify-write.
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let Some(row) =
            sqlx::query(&format!("SELECT source_addresses_json, edges_json FROM sessions WHERE id = $1{lock}"))
                .bind(session)
                .fetch_optional(&mut **tx)
                .await?
        else {
            return Ok(());
        };
        let mut addresses = json_list(&row.try_get::<String, _>("source_addresses_json")?)?;
        let mut edges = json_list(&row.try_get::<String, _>("edges_json")?)?;
        if !addresses.iter().any(|a| a == source_address) && addresses.len() < 32 {
            addresses.push(source_address.to_owned());
        }
        if !edges.iter().any(|e| e == edge_id) {
            edges.push(edge_id.to_owned());
        }
        sqlx::query(
            "UPDATE sessions SET last_seen_ms = CASE WHEN last_seen_ms < $1 THEN $1 ELSE last_seen_ms END, \
             source_addresses_json = $2, edges_json = $3 WHERE id = $4",
        )
        .bind(at_ms)
        .bind(to_json(&addresses))
        .bind(to_json(&edges))
        .bind(session)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Sets the session's live connections on one edge (no row for none).
async fn set_connections(
    tx: &mut Transaction<'static, Any>,
    session: &str,
    edge_id: &str,
    connections: i64,
) -> StoreResult<()> {
    if connections == 0 {
        sqlx::query("DELETE FROM session_connections WHERE session_id = $1 AND edge_id = $2")
            .bind(session)
            .bind(edge_id)
            .execute(&mut **tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO session_connections (session_id, edge_id, connections) VALUES ($1, $2, $3) \
             ON CONFLICT (session_id, edge_id) DO UPDATE SET connections = excluded.connections",
        )
        .bind(session)
        .bind(edge_id)
        .bind(connections)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
