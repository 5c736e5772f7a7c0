//! Group commit for edge reports. Every edge reports once a second, and
//! every edge reports at once after each change (receipts wait for those
//! reports), so a fleet of N edges sends N reports in the same few
//! milliseconds after every termination. Written one transaction each they
//! queue on the writer (SQLite's single connection; PostgreSQL's commits)
//! in front of the next termination; here the reports waiting when the
//! writer is free are written together: one transaction, one multi-row
//! upsert of the `edges` rows and one of the `change_acks` rows. Each
//! caller is answered after the commit that holds its report, so an edge's
//! `204` still means "recorded". A lone report is written at once:
//! batching never waits for company.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use super::group_commit::next_batch;
use super::rows::{seq_param, value_rows, ROWS_PER_STATEMENT};
use super::{EdgeReport, SqlStore, StoreError, StoreResult};
use crate::model::Millis;

/// Most reports written together (5 parameters each in one statement).
const MAX_BATCH: usize = 512;

struct Queued {
    report: EdgeReport,
    now: Millis,
    answer: oneshot::Sender<StoreResult<()>>,
}

/// The queue in front of the writing task (started on first use).
#[derive(Clone, Default)]
pub(crate) struct ReportQueue(Arc<OnceLock<mpsc::UnboundedSender<Queued>>>);

impl SqlStore {
    /// Records `report` through the group commit.
    pub(crate) async fn record_report_grouped(&self, report: EdgeReport, now: Millis) -> StoreResult<()> {
        let queue = self.reports.0.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(write_loop(self.clone(), receiver));
            sender
        });
        let (answer, answered) = oneshot::channel();
        queue
            .send(Queued { report, now, answer })
            .map_err(|_| StoreError::NotCommitted("the report queue is closed".into()))?;
        answered.await.map_err(|_| StoreError::NotCommitted("the report was dropped before its commit".into()))?
    }
}

async fn write_loop(store: SqlStore, mut queue: mpsc::UnboundedReceiver<Queued>) {
    while let Some(batch) = next_batch(&mut queue, MAX_BATCH).await {
        let (reports, answers): (Vec<_>, Vec<_>) = batch.into_iter().map(|q| ((q.report, q.now), q.answer)).unzip();
        let result = write(&store, &reports).await;
        if let Err(error) = &result {
            tracing::warn!(%error, reports = reports.len(), "a group of edge reports failed to commit");
        }
        for answer in answers {
            let _ = answer.send(result.as_ref().map(|_| ()).map_err(|e| StoreError::NotCommitted(e.to_string())));
        }
    }
}

/// One transaction for the batch. An edge that reported twice in it keeps
/// its later report's row, as if they had been written one after the
/// other; closes add up per (change, edge).
async fn write(store: &SqlStore, reports: &[(EdgeReport, Millis)]) -> StoreResult<()> {
    let mut latest: HashMap<&str, usize> = HashMap::with_capacity(reports.len());
    let mut closed: BTreeMap<(u64, &str), i64> = BTreeMap::new();
    for (index, (report, _)) in reports.iter().enumerate() {
        latest.insert(&report.edge_id, index);
        for &(seq, connections) in &report.closed {
            *closed.entry((seq, &report.edge_id)).or_default() += connections;
        }
    }
    let mut rows: Vec<usize> = latest.into_values().collect();
    rows.sort_unstable();
    let mut tx = store.writer.begin().await?;
    let values = value_rows(rows.len(), 5);
    let sql = format!(
        "INSERT INTO edges (id, name, applied_seq, last_heartbeat_ms, live_connections) VALUES {values} \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, applied_seq = excluded.applied_seq, \
         last_heartbeat_ms = excluded.last_heartbeat_ms, live_connections = excluded.live_connections"
    );
    let mut upsert = sqlx::query(&sql);
    for (report, now) in rows.iter().map(|&i| &reports[i]) {
        upsert = upsert
            .bind(&report.edge_id)
            .bind(&report.name)
            .bind(seq_param(report.applied_seq))
            .bind(*now)
            .bind(report.live_connections);
    }
    upsert.execute(&mut *tx).await?;
    let closed: Vec<_> = closed.into_iter().collect();
    // An edge may carry many changes' closes (up to its bound in
    // `proxy/src/subscriber.rs`): chunks keep every statement far below
    // SQLite's and PostgreSQL's parameter limits.
    for chunk in closed.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO change_acks (seq, edge_id, closed_connections) VALUES {} \
             ON CONFLICT (seq, edge_id) DO UPDATE SET \
             closed_connections = change_acks.closed_connections + excluded.closed_connections",
            value_rows(chunk.len(), 3)
        );
        let mut acks = sqlx::query(&sql);
        for ((seq, edge), connections) in chunk {
            acks = acks.bind(seq_param(*seq)).bind(*edge).bind(*connections);
        }
        acks.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
