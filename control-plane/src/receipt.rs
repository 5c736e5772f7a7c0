//! Termination receipts: how far a committed change has reached the edges
//! and the relying parties. With `?wait=true` the API waits (bounded) until
//! every edge that reported recently has applied the change and every
//! relying party's job has had its first answer, then says how many edges
//! applied it, how many live connections they closed for it, what each
//! relying party answered, and how long it took.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::feed::ChangeFeed;
use crate::model::{now_ms, rfc3339};
use crate::store::{JobState, OutboxJob, Propagation, Store, StoreResult};

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
    /// One line per relying party the change signs the user out of.
    pub relying_parties: Vec<RelyingPartyOutcome>,
}

/// Where one relying party's sign-out stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RelyingPartyOutcome {
    /// The relying party's configured name.
    pub relying_party: String,
    /// The outbox job (its id is the idempotency key the relying party sees).
    pub job: String,
    /// `pending` (not answered yet), `retrying`, `applied`, `failed` (refused;
    /// an admin may retry) or `dead` (not delivered before its deadline).
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// The relying party's last error.
    pub error: Option<String>,
    /// What it said on success.
    pub detail: Option<String>,
    /// When it was applied, failed or given up (RFC 3339).
    pub finished_at: Option<String>,
    /// When it is tried again (RFC 3339), while retrying.
    pub next_attempt_at: Option<String>,
}

impl RelyingPartyOutcome {
    /// The outcome of `job`.
    pub fn of(job: &OutboxJob) -> Self {
        let state = match job.state {
            JobState::Pending if job.attempts > 0 && !job.in_flight && job.last_error.is_some() => "retrying",
            JobState::Pending => "pending",
            JobState::Applied => "applied",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        };
        Self {
            relying_party: job.sink.clone(),
            job: job.id.clone(),
            state: state.to_owned(),
            attempts: job.attempts,
            error: job.last_error.clone(),
            detail: job.detail.clone(),
            finished_at: job.finished_ms.map(rfc3339),
            next_attempt_at: (state == "retrying").then(|| rfc3339(job.next_attempt_ms)),
        }
    }

    /// The relying party has answered at least once.
    fn answered(&self) -> bool {
        self.state != "pending"
    }
}

/// Builds the receipt for `seq`, waiting up to `wait` for every connected edge.
pub async fn receipt(
    store: &dyn Store,
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
            relying_parties: Vec::new(),
        });
    };
    let deadline = wait.map(|w| committed_at + w);
    let mut progress: Propagation;
    let mut relying_parties: Vec<RelyingPartyOutcome>;
    loop {
        progress = store.propagation(seq, now_ms() - EDGE_ALIVE_MS).await?;
        relying_parties = store.jobs_of_change(seq).await?.iter().map(RelyingPartyOutcome::of).collect();
        let complete =
            progress.edges_applied >= progress.edges_total && relying_parties.iter().all(RelyingPartyOutcome::answered);
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
        relying_parties,
    })
}
