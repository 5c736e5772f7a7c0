//! Termination receipts: how far a committed change has reached the edges.
//! With `?wait=true` the API waits (bounded) until every edge that reported
//! recently has applied the change, then says how many edges applied it, how
//! many live connections they closed for it, and how long it took.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::feed::ChangeFeed;
use crate::model::now_ms;
use crate::store::{EdgeStore, Propagation, StoreResult};

/// An edge counts as connected when it reported within this window.
pub const EDGE_ALIVE_MS: i64 = 10_000;

/// What a change reached.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// Change-log sequence of the change (absent when nothing changed).
    pub seq: Option<u64>,
    /// The change is committed to the database.
    pub durable: bool,
    /// The answer waited for edges (`?wait=true`).
    pub waited: bool,
    /// Every connected edge applied the change.
    pub complete: bool,
    /// Connected edges that applied it.
    pub edges_applied: u32,
    /// Connected edges.
    pub edges_total: u32,
    /// Live connections the edges closed for it.
    pub connections_closed: i64,
    /// Milliseconds from commit to this answer.
    pub elapsed_ms: u64,
}

/// Builds the receipt for `seq`, waiting up to `wait` for every connected edge.
pub async fn receipt(
    store: &dyn EdgeStore,
    feed: &ChangeFeed,
    seq: Option<u64>,
    wait: Option<Duration>,
    committed_at: Instant,
) -> StoreResult<Receipt> {
    let Some(seq) = seq else {
        return Ok(Receipt {
            seq: None,
            durable: true,
            waited: false,
            complete: true,
            edges_applied: 0,
            edges_total: 0,
            connections_closed: 0,
            elapsed_ms: 0,
        });
    };
    let deadline = wait.map(|w| committed_at + w);
    let mut progress: Propagation;
    loop {
        progress = store.propagation(seq, now_ms() - EDGE_ALIVE_MS).await?;
        let complete = progress.edges_applied >= progress.edges_total;
        match deadline {
            Some(deadline) if !complete && Instant::now() < deadline => {
                // Woken by any edge report on this replica; polls for reports
                // that arrive at other replicas.
                feed.next_report(Duration::from_millis(20).min(deadline - Instant::now())).await;
            }
            _ => break,
        }
    }
    Ok(Receipt {
        seq: Some(seq),
        durable: true,
        waited: wait.is_some(),
        complete: progress.edges_applied >= progress.edges_total,
        edges_applied: progress.edges_applied,
        edges_total: progress.edges_total,
        connections_closed: progress.connections_closed,
        elapsed_ms: u64::try_from(committed_at.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
