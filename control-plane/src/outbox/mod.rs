//! The outbox worker: delivers the jobs actions committed (see
//! `store::OutboxStore`) to their sinks — each configured relying party,
//! and the SSF transmitter's push streams — one task per sink with at most
//! `concurrency` deliveries in flight on this replica.
//!
//! A job is claimed under a lease longer than a delivery can take; the
//! result is recorded with the lease's token. A replica killed mid-delivery
//! leaves its lease to expire and the job is delivered again, with the same
//! id as its idempotency key: at least once, never lost. Failures are
//! retried with backoff ([`backoff`]) or the receiver's `Retry-After`, until
//! the job's deadline makes it dead; a refusal fails it at once. Both wait
//! for an admin's retry. A receiver's `Retry-After` (429, 503) is about us,
//! not one job: the whole sink pauses on this replica until it has passed,
//! instead of spending the receiver's limit on attempts it will refuse.

pub mod backoff;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use crate::metrics::OutboxMetrics;
use crate::model::{now_ms, Millis};
use async_trait::async_trait;

use crate::relying_parties::{Delivery, RelyingParty};
use crate::store::{Finish, OutboxJob, OutboxStore, SqlStore, Subscription};
use crate::termination::Termination;

/// Delivers one kind of outbox job.
#[async_trait]
pub trait Sink: Send + Sync {
    /// One attempt at `job` (its id is the idempotency key).
    async fn deliver(&self, job: &OutboxJob) -> Delivery;
}

/// A sink and how this replica drives it.
#[derive(Clone)]
pub struct SinkWorker {
    /// The jobs' `sink`.
    pub name: String,
    /// Deliveries in flight at most.
    pub concurrency: u32,
    /// The longest one delivery can take (its lease is longer).
    pub longest: Duration,
    /// The deliverer.
    pub sink: Arc<dyn Sink>,
}

/// A relying party's connector as a sink: the job's event is the termination.
struct RelyingPartySink(RelyingParty);

#[async_trait]
impl Sink for RelyingPartySink {
    async fn deliver(&self, job: &OutboxJob) -> Delivery {
        match serde_json::from_str::<Termination>(&job.event) {
            Ok(event) => self.0.connector.deliver(&event, &job.id).await,
            Err(error) => Delivery::Failed { error: format!("the job's event does not decode: {error}") },
        }
    }
}

impl SinkWorker {
    /// The worker of a configured relying party.
    pub fn relying_party(rp: RelyingParty) -> Self {
        Self {
            name: rp.settings.name.clone(),
            concurrency: rp.settings.concurrency,
            longest: rp.settings.timeout * REQUESTS_PER_DELIVERY,
            sink: Arc::new(RelyingPartySink(rp)),
        }
    }
}

/// How often a worker looks for due jobs when nothing woke it (jobs
/// committed by other replicas, retries coming due).
pub const POLL: Duration = Duration::from_millis(500);
/// Added to the longest a delivery can take to make its lease (covers clock
/// differences between replicas, which compare leases with their own clocks).
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Requests a connector makes at most for one job (token, lookup, sign-out).
const REQUESTS_PER_DELIVERY: u32 = 3;
/// How often the backlog gauges are refreshed.
const BACKLOG_PERIOD: Duration = Duration::from_secs(5);

/// The subscriptions the store routes actions with.
pub fn subscriptions(parties: &[RelyingParty]) -> Vec<Subscription> {
    parties
        .iter()
        .map(|rp| Subscription {
            sink: rp.settings.name.clone(),
            actions: rp.settings.on.clone(),
            deadline_ms: Millis::try_from(rp.settings.deadline.as_millis()).unwrap_or(Millis::MAX),
        })
        .collect()
}

/// Starts one delivery task per sink, and the backlog gauges.
pub fn spawn(store: Arc<SqlStore>, sinks: Vec<SinkWorker>, metrics: OutboxMetrics) {
    for sink in sinks {
        tokio::spawn(deliver_forever(Arc::clone(&store), sink, metrics.clone()));
    }
    tokio::spawn(async move {
        loop {
            match store.expire_jobs(now_ms()).await {
                Ok(0) => {}
                Ok(expired) => tracing::warn!(expired, "outbox jobs past their deadline given up"),
                Err(error) => tracing::warn!(%error, "outbox deadlines could not be applied"),
            }
            match store.backlog().await {
                Ok(backlog) => metrics.record_backlog(&backlog, now_ms()),
                Err(error) => tracing::warn!(%error, "outbox backlog unreadable"),
            }
            tokio::time::sleep(BACKLOG_PERIOD).await;
        }
    });
}

async fn deliver_forever(store: Arc<SqlStore>, worker: SinkWorker, metrics: OutboxMetrics) {
    let name = worker.name.clone();
    let permits = Arc::new(Semaphore::new(worker.concurrency as usize));
    let finished = Arc::new(Notify::new());
    let mut committed = store.outbox_signal();
    let lease = worker.longest + LEASE_MARGIN;
    let lease_ms = Millis::try_from(lease.as_millis()).unwrap_or(Millis::MAX);
    let pause = Arc::new(Pause::default());
    tracing::info!(sink = %name, concurrency = worker.concurrency, "outbox worker started");
    loop {
        if let Some(until) = pause.until() {
            tokio::time::sleep_until(until).await;
        }
        let free = permits.available_permits();
        let mut claimed = 0;
        if free > 0 {
            match store.claim_jobs(&name, free as u32, lease_ms, now_ms()).await {
                Ok(jobs) => {
                    claimed = jobs.len();
                    for job in jobs {
                        let permit = Arc::clone(&permits).acquire_owned().await.expect("the semaphore is never closed");
                        let (store, worker, metrics, finished, pause) = (
                            Arc::clone(&store),
                            worker.clone(),
                            metrics.clone(),
                            Arc::clone(&finished),
                            Arc::clone(&pause),
                        );
                        tokio::spawn(async move {
                            if let Some(wait) = attempt(&*store, &worker, job, &metrics).await {
                                pause.at_least(wait);
                            }
                            drop(permit);
                            finished.notify_one();
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(sink = %name, %error, "outbox jobs could not be claimed; trying again");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        if free > 0 && claimed == free {
            continue; // every slot was filled: more may be due
        }
        tokio::select! {
            _ = committed.changed() => {}
            _ = finished.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Until when a sink sends nothing (the latest `Retry-After` it was given).
#[derive(Default)]
struct Pause(std::sync::Mutex<Option<tokio::time::Instant>>);

impl Pause {
    fn until(&self) -> Option<tokio::time::Instant> {
        let until = *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        until.filter(|until| *until > tokio::time::Instant::now())
    }

    fn at_least(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut current = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Some(current.map_or(until, |c| c.max(until)));
    }
}

/// One delivery attempt of `job`, recorded with its lease; the wait the
/// receiver asked for, if it asked for one.
pub async fn attempt(
    store: &dyn OutboxStore,
    worker: &SinkWorker,
    job: OutboxJob,
    metrics: &OutboxMetrics,
) -> Option<Duration> {
    let name = worker.name.as_str();
    let started = Instant::now();
    let delivery = worker.sink.deliver(&job).await;
    metrics.latency.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
    let now = now_ms();
    let asked = match &delivery {
        Delivery::Retry { after, .. } => *after,
        _ => None,
    };
    let finish = match delivery {
        Delivery::Applied { detail } => Finish::Applied { detail },
        Delivery::Failed { error } => Finish::Failed { error },
        Delivery::Retry { error, after } => {
            let wait = backoff::delay(job.attempts, after, &mut rand::thread_rng());
            let at_ms = now.saturating_add(Millis::try_from(wait.as_millis()).unwrap_or(Millis::MAX));
            if at_ms > job.deadline_ms {
                Finish::Dead { error }
            } else {
                Finish::Retry { error, at_ms }
            }
        }
    };
    let outcome = match &finish {
        Finish::Applied { .. } => "applied",
        Finish::Retry { .. } => "retry",
        Finish::Failed { .. } => "failed",
        Finish::Dead { .. } => "dead",
    };
    metrics.deliveries.with_label_values(&[name, outcome]).inc();
    match store.finish_job(&job, &finish, now).await {
        Ok(true) => {
            tracing::info!(sink = name, job = %job.id, attempt = job.attempts, result = %finish.summary(), "outbox delivery")
        }
        Ok(false) => {
            tracing::warn!(sink = name, job = %job.id, "outbox delivery outlived its lease; another attempt owns the job")
        }
        Err(error) => {
            tracing::error!(sink = name, job = %job.id, %error, "outbox result not recorded; the job is delivered again when its lease ends")
        }
    }
    asked
}
