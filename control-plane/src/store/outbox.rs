//! The durable outbox: jobs for something outside the control plane (a
//! relying party's sign-out API; later the SIEM sinks), written in the
//! transaction of the action that causes them and delivered by
//! `crate::outbox`. A job is claimed under a lease; a delivery's result is
//! recorded only by the holder of the current lease, so a worker that
//! stalled past its lease cannot overwrite the next one's result.

use std::sync::OnceLock;

use async_trait::async_trait;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tokio::sync::watch;

use super::audit::insert_audit;
use super::rows::seq_param;
use super::{Backend, SqlStore, StoreError, StoreResult};
use crate::model::{Actor, Millis};
use crate::termination::{Action, Termination};

pub(crate) const JOB_COLUMNS: &str =
    "id, sink, target, event, user_key, seq, state, attempts, next_attempt_ms, deadline_ms, \
     lease_token, last_error, detail, created_ms, updated_ms, finished_ms";

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its first or next attempt (or being delivered).
    Pending,
    /// Delivered.
    Applied,
    /// Refused for good by the receiver; an admin may retry it.
    Failed,
    /// Not delivered before its deadline; an admin may retry it.
    Dead,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    fn parse(text: &str) -> StoreResult<Self> {
        Ok(match text {
            "pending" => Self::Pending,
            "applied" => Self::Applied,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            other => return Err(StoreError::Corrupt(format!("outbox state {other}"))),
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The sink (relying party) that delivers it.
    pub sink: String,
    /// What within the sink (an SSF stream).
    pub target: Option<String>,
    /// The event, JSON.
    pub event: String,
    /// The user it concerns (`email:…` / `sub:…`), for the user's page.
    pub user_key: Option<String>,
    /// Give up after this long, milliseconds.
    pub deadline_ms: Millis,
}

/// A stored job.
#[derive(Debug, Clone)]
pub struct OutboxJob {
    /// Id; also the idempotency key receivers see.
    pub id: String,
    /// Sink.
    pub sink: String,
    /// What within the sink (an SSF stream).
    pub target: Option<String>,
    /// Event, JSON.
    pub event: String,
    /// User.
    pub user_key: Option<String>,
    /// The change that caused it.
    pub seq: Option<u64>,
    /// State.
    pub state: JobState,
    /// Attempts started.
    pub attempts: u32,
    /// Earliest next attempt.
    pub next_attempt_ms: Millis,
    /// Dead after.
    pub deadline_ms: Millis,
    /// Being delivered now (a lease is held).
    pub in_flight: bool,
    /// The last failure.
    pub last_error: Option<String>,
    /// What the receiver said on success.
    pub detail: Option<String>,
    /// Enqueued.
    pub created_ms: Millis,
    /// Last change.
    pub updated_ms: Millis,
    /// Applied, failed or dead at.
    pub finished_ms: Option<Millis>,
    /// The lease of this claim (set on claimed jobs only).
    pub lease_token: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Delivered.
    Applied {
        /// Receiver's remark.
        detail: Option<String>,
    },
    /// Try again at `at_ms`.
    Retry {
        /// Why.
        error: String,
        /// When.
        at_ms: Millis,
    },
    /// Refused for good.
    Failed {
        /// Why.
        error: String,
    },
    /// Deadline passed.
    Dead {
        /// The last failure.
        error: String,
    },
}

impl Finish {
    fn state(&self) -> JobState {
        match self {
            Self::Applied { .. } => JobState::Applied,
            Self::Retry { .. } => JobState::Pending,
            Self::Failed { .. } => JobState::Failed,
            Self::Dead { .. } => JobState::Dead,
        }
    }

    /// One line for the audit log.
    pub fn summary(&self) -> String {
        match self {
            Self::Applied { detail: None } => "applied".into(),
            Self::Applied { detail: Some(detail) } => format!("applied: {detail}"),
            Self::Retry { error, .. } => format!("retrying: {error}"),
            Self::Failed { error } => format!("failed: {error}"),
            Self::Dead { error } => format!("dead (deadline passed): {error}"),
        }
    }
}

/// The pending backlog of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// Sink.
    pub sink: String,
    /// Pending jobs.
    pub pending: u64,
    /// When the oldest pending job was enqueued.
    pub oldest_ms: Option<Millis>,
}

/// Outbox jobs.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` due jobs of `sink` for `lease_ms`; each returned
    /// job carries the lease token its result must be recorded with. Jobs
    /// of a paused SSF stream are held (not claimed) until it is enabled.
    async fn claim_jobs(&self, sink: &str, limit: u32, lease_ms: Millis, now: Millis) -> StoreResult<Vec<OutboxJob>>;
    /// Records an attempt's end (and its audit row); `false` when the lease
    /// was lost to another worker, and nothing was recorded.
    async fn finish_job(&self, job: &OutboxJob, finish: &Finish, now: Millis) -> StoreResult<bool>;
    /// The jobs a change caused.
    async fn jobs_of_change(&self, seq: u64) -> StoreResult<Vec<OutboxJob>>;
    /// Jobs, newest first: of a user, in a state.
    async fn list_jobs(
        &self,
        user_key: Option<&str>,
        state: Option<JobState>,
        limit: u32,
    ) -> StoreResult<Vec<OutboxJob>>;
    /// One job.
    async fn get_job(&self, id: &str) -> StoreResult<Option<OutboxJob>>;
    /// Puts a failed or dead job back in the queue with a new deadline;
    /// `None` when there is no such job, `Err(NotFound)` never.
    async fn retry_job(&self, id: &str, actor: &Actor, now: Millis) -> StoreResult<Option<OutboxJob>>;
    /// Pending jobs per sink.
    async fn backlog(&self) -> StoreResult<Vec<Backlog>>;
    /// Gives up (`dead`) the pending jobs past their deadline that no
    /// worker holds: events of SSF poll streams nobody acknowledged, held
    /// events of paused streams, jobs of a sink no longer configured.
    /// Returns how many.
    async fn expire_jobs(&self, now: Millis) -> StoreResult<u64>;
}

/// A sink that wants to hear of some actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The sink (relying party name).
    pub sink: String,
    /// The actions it follows.
    pub actions: Vec<Action>,
    /// Its jobs die after this long, milliseconds.
    pub deadline_ms: Millis,
}

/// Which sinks hear of which actions (set once at start), and the signal
/// that wakes this replica's workers when jobs are committed.
#[derive(Debug, Default)]
pub(crate) struct OutboxRouting {
    subscriptions: OnceLock<Vec<Subscription>>,
    committed: watch::Sender<u64>,
}

impl OutboxRouting {
    /// Wakes the workers.
    pub(crate) fn wake(&self) {
        self.committed.send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

impl SqlStore {
    /// Sets which sinks hear of which actions; the first call wins (once
    /// at start, before any action).
    pub fn subscribe(&self, subscriptions: Vec<Subscription>) {
        let _ = self.outbox.subscriptions.set(subscriptions);
    }

    /// A receiver that changes whenever this replica commits outbox jobs.
    pub fn outbox_signal(&self) -> watch::Receiver<u64> {
        self.outbox.committed.subscribe()
    }

    /// Enqueues, in `tx`, one job per sink that follows `termination`'s
    /// action; true when any was.
    pub(crate) async fn enqueue_termination(
        &self,
        tx: &mut Transaction<'static, Any>,
        termination: &Termination,
        seq: u64,
    ) -> StoreResult<bool> {
        self.enqueue_terminations(tx, &[(termination.clone(), seq)]).await
    }

    /// [`Self::enqueue_termination`] for each `(termination, seq)`, reading
    /// the Shared Signals streams once for all of them.
    pub(crate) async fn enqueue_terminations(
        &self,
        tx: &mut Transaction<'static, Any>,
        terminations: &[(Termination, u64)],
    ) -> StoreResult<bool> {
        if terminations.is_empty() {
            return Ok(false);
        }
        let mut enqueued = Self::enqueue_ssf_events(tx, terminations).await?;
        let Some(subscriptions) = self.outbox.subscriptions.get() else {
            return Ok(enqueued);
        };
        for (termination, seq) in terminations {
            let event = serde_json::to_string(termination).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let jobs: Vec<NewJob> = subscriptions
                .iter()
                .filter(|s| s.actions.contains(&termination.action))
                .map(|s| NewJob {
                    sink: s.sink.clone(),
                    target: None,
                    event: event.clone(),
                    user_key: Some(termination.user.clone()),
                    deadline_ms: s.deadline_ms,
                })
                .collect();
            enqueue_in(tx, &jobs, Some(*seq), termination.at_ms).await?;
            enqueued |= !jobs.is_empty();
        }
        Ok(enqueued)
    }
}

/// Enqueues `jobs` inside an action's transaction, caused by change `seq`.
pub(crate) async fn enqueue_in(
    tx: &mut Transaction<'static, Any>,
    jobs: &[NewJob],
    seq: Option<u64>,
    now: Millis,
) -> StoreResult<()> {
    for job in jobs {
        sqlx::query(
            "INSERT INTO outbox (id, sink, target, event, user_key, seq, state, attempts, next_attempt_ms, \
             deadline_ms, created_ms, updated_ms) VALUES ($1, $2, $8, $3, $4, $5, 'pending', 0, $6, $7, $6, $6)",
        )
        .bind(crate::secrets::new_id())
        .bind(&job.sink)
        .bind(&job.event)
        .bind(&job.user_key)
        .bind(seq.map(seq_param))
        .bind(now)
        .bind(now.saturating_add(job.deadline_ms))
        .bind(&job.target)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(crate) fn job(row: &AnyRow) -> StoreResult<OutboxJob> {
    let lease_token: Option<String> = row.try_get("lease_token")?;
    Ok(OutboxJob {
        id: row.try_get("id")?,
        sink: row.try_get("sink")?,
        target: row.try_get("target")?,
        event: row.try_get("event")?,
        user_key: row.try_get("user_key")?,
        seq: row.try_get::<Option<i64>, _>("seq")?.map(|s| s as u64),
        state: JobState::parse(&row.try_get::<String, _>("state")?)?,
        attempts: u32::try_from(
            row.try_get::<i32, _>("attempts")
                .or_else(|_| row.try_get::<i64, _>("attempts").map(|a| i32::try_from(a).unwrap_or(i32::MAX)))?,
        )
        .unwrap_or(0),
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        deadline_ms: row.try_get("deadline_ms")?,
        in_flight: lease_token.is_some(),
        last_error: row.try_get("last_error")?,
        detail: row.try_get("detail")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        lease_token,
    })
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn claim_jobs(&self, sink: &str, limit: u32, lease_ms: Millis, now: Millis) -> StoreResult<Vec<OutboxJob>> {
        // SKIP LOCKED: replicas claiming at once take different rows instead
        // of queueing behind each other; SQLite has one writer anyway.
        let skip_locked = if self.backend == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let token = crate::secrets::new_id();
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET lease_token = $1, lease_until_ms = $2, attempts = attempts + 1, updated_ms = $3 \
             WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND sink = $4 AND next_attempt_ms <= $3 \
             AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
             AND (target IS NULL OR target NOT IN (SELECT id FROM ssf_streams WHERE status = 'paused')) \
             ORDER BY next_attempt_ms, created_ms LIMIT $5{skip_locked}) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(&token)
        .bind(now.saturating_add(lease_ms))
        .bind(now)
        .bind(sink)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(job).collect()
    }

    async fn finish_job(&self, claimed: &OutboxJob, finish: &Finish, now: Millis) -> StoreResult<bool> {
        let Some(token) = claimed.lease_token.as_deref() else {
            return Ok(false);
        };
        let (error, detail, next_attempt, finished) = match finish {
            Finish::Applied { detail } => (None, detail.clone(), claimed.next_attempt_ms, Some(now)),
            Finish::Retry { error, at_ms } => (Some(error.clone()), None, *at_ms, None),
            Finish::Failed { error } | Finish::Dead { error } => {
                (Some(error.clone()), None, claimed.next_attempt_ms, Some(now))
            }
        };
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE outbox SET state = $1, last_error = COALESCE($2, last_error), detail = $3, next_attempt_ms = $4, \
             finished_ms = $5, updated_ms = $6, lease_token = NULL, lease_until_ms = NULL \
             WHERE id = $7 AND lease_token = $8",
        )
        .bind(finish.state().as_str())
        .bind(error)
        .bind(detail)
        .bind(next_attempt)
        .bind(finished)
        .bind(now)
        .bind(&claimed.id)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        let target = format!("{} {}", claimed.sink, claimed.user_key.as_deref().unwrap_or("-"));
        let reason = format!("attempt {} of job {}: {}", claimed.attempts, claimed.id, finish.summary());
        let actor = Actor { name: "outbox".into(), source_address: String::new() };
        insert_audit(&mut tx, "relying_party.delivery", &target, &reason, &actor, now, claimed.seq).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn jobs_of_change(&self, seq: u64) -> StoreResult<Vec<OutboxJob>> {
        let rows = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM outbox WHERE seq = $1 ORDER BY sink"))
            .bind(seq_param(seq))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(job).collect()
    }

    async fn list_jobs(
        &self,
        user_key: Option<&str>,
        state: Option<JobState>,
        limit: u32,
    ) -> StoreResult<Vec<OutboxJob>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM outbox WHERE ($1 IS NULL OR user_key = $1) AND ($2 IS NULL OR state = $2) \
             ORDER BY created_ms DESC, id LIMIT $3"
        ))
        .bind(user_key)
        .bind(state.map(JobState::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(job).collect()
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<OutboxJob>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM outbox WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(job).transpose()
    }

    async fn retry_job(&self, id: &str, actor: &Actor, now: Millis) -> StoreResult<Option<OutboxJob>> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE outbox SET state = 'pending', next_attempt_ms = $1, deadline_ms = $1 + (deadline_ms - created_ms), \
             finished_ms = NULL, updated_ms = $1 WHERE id = $2 AND state IN ('failed', 'dead') RETURNING {JOB_COLUMNS}"
        ))
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let retried = job(&row)?;
        let target = format!("{} {}", retried.sink, retried.user_key.as_deref().unwrap_or("-"));
        insert_audit(&mut tx, "relying_party.retry", &target, &format!("job {id}"), actor, now, retried.seq).await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(Some(retried))
    }

    async fn expire_jobs(&self, now: Millis) -> StoreResult<u64> {
        let expired = sqlx::query(
            "UPDATE outbox SET state = 'dead', \
             last_error = COALESCE(last_error, 'not delivered or acknowledged before its deadline'), \
             finished_ms = $1, updated_ms = $1 \
             WHERE state = 'pending' AND deadline_ms <= $1 AND (lease_until_ms IS NULL OR lease_until_ms <= $1)",
        )
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(expired.rows_affected())
    }

    async fn backlog(&self) -> StoreResult<Vec<Backlog>> {
        let rows = sqlx::query(
            "SELECT sink, COUNT(*) AS pending, MIN(created_ms) AS oldest FROM outbox WHERE state = 'pending' GROUP BY sink",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Backlog {
                    sink: row.try_get("sink")?,
                    pending: row.try_get::<i64, _>("pending")? as u64,
                    oldest_ms: row.try_get("oldest")?,
                })
            })
            .collect()
    }
}
