//! The snapshot subscriber: streams from the control plane's edge channel,
//! verifies every frame's signature and binding ([`FrameVerifier`]) before
//! anything of it is used, applies the full snapshot and every delta into
//! the [`SnapshotStore`], closes the live connections each change affects,
//! and reports what it applied and closed.
//!
//! A refused frame (unsigned, signed with another key, altered, replayed or
//! out of order) is not applied: the edge keeps its last good snapshot,
//! counts the refusal, says so on `/readyz`, drops the stream and tries the
//! next replica. Only verified frames that were applied count as contact,
//! so a stream of refused (or unusable) frames makes the edge stale like a
//! silent one.
//!
//! The stream is never left down longer than it must be: when a stream
//! that delivered frames ends, the edge reconnects at once, to the next
//! replica of [`ControlPlanes`], resuming by sequence; only attempts that
//! deliver nothing back off (each other replica first, then jittered
//! doubling up to [`MAX_BACKOFF`]). A stream silent for [`SILENCE_LIMIT`]
//! (heartbeats come every second) is lost, but only once frames that had
//! already arrived are read: after this process was paused, the timer
//! fires before the socket is looked at.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use portcullis_policy::edge_channel::{
    next_frame, stream_path, ClosedConnections, ReportBody, FRAME_HEADER_BYTES, REPORT_PATH,
};
use portcullis_policy::signed_frame::{FrameRefusal, FrameVerifier};
use portcullis_policy::wire::{decode, Message};
use portcullis_policy::Snapshot;
use tokio::sync::Notify;

use crate::activity::ActivityLog;
use crate::clock::unix_now_ms;
use crate::control_planes::ControlPlanes;
use crate::registry::ConnRegistry;
use crate::stream_trust::StreamTrust;
use crate::{SnapshotStore, StoreError};

/// A stream with no frame for this long is lost (heartbeats come every second).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// After the silence timer fires, how long frames already on their way get.
const SILENCE_GRACE: Duration = Duration::from_millis(500);
/// First wait after an attempt that delivered nothing, once every replica was tried.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts (plus up to half of it as jitter).
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A stream that lasted this long and delivered frames was healthy: retry at once.
const HEALTHY_FOR: Duration = Duration::from_secs(1);
/// A report unanswered for this long is retried (a paused replica never answers).
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Freshness of the snapshot, for `/readyz`, metrics and `stale_mode`.
#[derive(Debug, Default)]
pub struct SyncStatus {
    /// Unix ms of the last frame from any control-plane replica.
    pub last_contact_ms: AtomicI64,
    /// The control plane's head sequence, from heartbeats.
    pub head_seq: AtomicI64,
    /// A stream is open.
    pub connected: AtomicBool,
    /// The last refused frame: when (Unix ms) and why.
    refusal: Mutex<Option<(i64, String)>>,
}

impl SyncStatus {
    /// Records a refused frame.
    pub fn refused(&self, why: String) {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some((unix_now_ms(), why));
    }

    /// Why the last frame was refused, if no verified frame arrived since.
    pub fn refusal(&self) -> Option<String> {
        let refusal = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        let (at, why) = refusal.as_ref()?;
        (*at >= self.last_contact_ms.load(Ordering::Relaxed)).then(|| why.clone())
    }

    /// Milliseconds since the last frame (`i64::MAX` if never).
    pub fn staleness_ms(&self) -> i64 {
        match self.last_contact_ms.load(Ordering::Relaxed) {
            0 => i64::MAX,
            at => unix_now_ms() - at,
        }
    }

    /// No frame for longer than `limit`.
    pub fn older_than(&self, limit: Duration) -> bool {
        self.staleness_ms() > limit.as_millis() as i64
    }
}

/// How one stream attempt ended.
#[derive(Debug)]
struct StreamEnd {
    /// Frames were applied before it ended.
    delivered: bool,
    /// How long it was open.
    lasted: Duration,
    /// Why it ended (`None`: the control plane closed it cleanly).
    error: Option<String>,
}

/// The wait before the next attempt, after `failures` attempts in a row
/// that delivered nothing (0: the last stream delivered frames), with
/// `replicas` replicas to try and `jitter` in `[0, 1)`.
fn retry_delay(failures: u32, last_lasted: Duration, replicas: usize, jitter: f64) -> Duration {
    let base = match failures {
        0 if last_lasted >= HEALTHY_FOR => return Duration::ZERO,
        0 => MIN_BACKOFF,
        // Each other replica is tried at once before anyone waits.
        n if (n as usize) < replicas => return Duration::ZERO,
        n => {
            let doublings = (n as usize - replicas).min(16) as u32;
            MIN_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
        }
    };
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// Changes whose closes wait for a report at most (receipts count closes
/// per change; past this, while the control plane cannot be reached, the
/// oldest are dropped and counted as `connections_closed`).
const MAX_PENDING_CLOSES: usize = 10_000;

/// Connections closed per change, not yet reported.
#[derive(Default)]
struct Pending {
    closed: std::collections::VecDeque<(u64, usize)>,
}

impl Pending {
    /// Queues `(seq, closed)` (a change that closed nothing needs no
    /// report entry); returns how many old entries were dropped for room.
    fn push(&mut self, seq: u64, closed: usize) -> usize {
        if closed > 0 {
            self.closed.push_back((seq, closed));
        }
        self.trim()
    }

    /// Puts entries a failed report carried back in front of newer ones.
    fn restore(&mut self, older: Vec<(u64, usize)>) -> usize {
        for entry in older.into_iter().rev() {
            self.closed.push_front(entry);
        }
        self.trim()
    }

    fn trim(&mut self) -> usize {
        let excess = self.closed.len().saturating_sub(MAX_PENDING_CLOSES);
        self.closed.drain(..excess);
        excess
    }
}

/// Streams changes in and reports back.
pub struct Subscriber {
    planes: Arc<ControlPlanes>,
    snapshots: Arc<SnapshotStore>,
    registry: Arc<ConnRegistry>,
    status: Arc<SyncStatus>,
    pending: Mutex<Pending>,
    wake_reporter: Notify,
    client: reqwest::Client,
    activity: Arc<ActivityLog>,
    metrics: Arc<crate::metrics::EdgeMetrics>,
    trust: StreamTrust,
}

/// What the subscriber feeds and reports from.
pub struct SubscriberParts {
    /// The snapshot holder.
    pub snapshots: Arc<SnapshotStore>,
    /// Live connections.
    pub registry: Arc<ConnRegistry>,
    /// Freshness.
    pub status: Arc<SyncStatus>,
    /// Session activity.
    pub activity: Arc<ActivityLog>,
    /// Metrics.
    pub metrics: Arc<crate::metrics::EdgeMetrics>,
    /// The stream key (pinned, or fetched once).
    pub trust: StreamTrust,
}

impl Subscriber {
    /// A subscriber streaming from `planes`, feeding `snapshots` and closing
    /// connections in `registry`.
    pub fn new(planes: Arc<ControlPlanes>, parts: SubscriberParts) -> Arc<Self> {
        let SubscriberParts { snapshots, registry, status, activity, metrics, trust } = parts;
        let client = planes.client(Duration::from_secs(2), None);
        Arc::new(Self {
            planes,
            snapshots,
            registry,
            status,
            pending: Mutex::default(),
            wake_reporter: Notify::new(),
            client,
            activity,
            metrics,
            trust,
        })
    }

    /// Runs the stream and the reporter until the process ends.
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(Arc::clone(&self).report_loop());
        let mut failures = 0u32;
        loop {
            let (index, _) = self.planes.current();
            let ended = self.stream_once(index).await;
            self.status.connected.store(false, Ordering::Relaxed);
            self.metrics.stream_reconnects.inc();
            let url = self.planes.url_at(index, "");
            match &ended.error {
                Some(error) => tracing::warn!(%url, %error, delivered = ended.delivered, "control-plane stream lost"),
                None => tracing::info!(%url, "the control plane ended the stream"),
            }
            failures = if ended.delivered { 0 } else { failures.saturating_add(1) };
            let next = self.planes.failed(index);
            let delay = retry_delay(failures, ended.lasted, self.planes.len(), rand::random::<f64>());
            tracing::debug!(next = %self.planes.url_at(next, ""), ?delay, failures, "reconnecting");
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    async fn stream_once(&self, index: usize) -> StreamEnd {
        let opened = Instant::now();
        let mut delivered = false;
        let error = self.stream_frames(index, &mut delivered).await.err();
        StreamEnd { delivered, lasted: opened.elapsed(), error }
    }

    /// Reads frames from replica `index` until the stream ends (`Ok` when
    /// the control plane ended it cleanly), setting `delivered` once one
    /// was applied (and clearing it when a frame is refused, so a replica
    /// that sends refused frames backs off like one that sends nothing).
    async fn stream_frames(&self, index: usize, delivered: &mut bool) -> Result<(), String> {
        self.planes.establish(index, &self.client).await.map_err(|e| e.to_string())?;
        let key = self.trust.key(&self.planes, &self.client, index).await?;
        let binding = StreamTrust::binding(self.snapshots.seq());
        let url = self.planes.url_at(index, &stream_path(&binding));
        let mut verifier = FrameVerifier::new(key, binding);
        // A paused replica accepts the connection and never answers: give up
        // on it like on a silent stream.
        let request = self.planes.authorize(self.client.get(&url)).send();
        let response = match tokio::time::timeout(SILENCE_LIMIT, request).await {
            Ok(sent) => sent.map_err(|e| format!("{url}: {e}"))?,
            Err(_) => return Err(format!("{url}: no answer within {} s", SILENCE_LIMIT.as_secs())),
        };
        if !response.status().is_success() {
            let status = response.status();
            self.planes.check_refusal(status, None);
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{url}: {status} {body}"));
        }
        self.planes.answered(index);
        self.status.connected.store(true, Ordering::Relaxed);
        tracing::info!(%url, "streaming from the control plane");
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let next = match tokio::time::timeout(SILENCE_LIMIT, body.next()).await {
                Ok(next) => next,
                Err(_) => match tokio::time::timeout(SILENCE_GRACE, body.next()).await {
                    Ok(next) => next,
                    Err(_) => return Err(format!("no frame for {} s", SILENCE_LIMIT.as_secs())),
                },
            };
            let chunk = match next {
                None => return Ok(()),
                Some(chunk) => chunk.map_err(|e| e.to_string())?,
            };
            buffer.extend_from_slice(&chunk);
            let mut consumed = 0;
            while let Some(frame) = next_frame(&buffer[consumed..]).map_err(|e| e.to_string())? {
                let message = match verifier.open(frame) {
                    Ok(message) => message,
                    Err(refusal) => {
                        *delivered = false;
                        return Err(self.refuse(&url, &refusal));
                    }
                };
                let message = decode(message).map_err(|e| e.to_string())?;
                consumed += FRAME_HEADER_BYTES + frame.len();
                self.handle(message)?;
                // Contact only once the frame is in force: a verified frame
                // this edge cannot apply (a policy it cannot compile, a gap)
                // must leave it going stale, not look like a healthy stream.
                self.status.last_contact_ms.store(unix_now_ms(), Ordering::Relaxed);
                *delivered = true;
            }
            buffer.drain(..consumed);
        }
    }

    /// Counts and reports a refused frame; the error that ends the stream.
    fn refuse(&self, url: &str, refusal: &FrameRefusal) -> String {
        self.metrics.stream_frames_refused.with_label_values(&[refusal.reason()]).inc();
        let kept = self.snapshots.seq().map_or_else(|| "no snapshot yet".to_owned(), |s| format!("snapshot {s}"));
        let url = url.split('?').next().unwrap_or_default();
        tracing::error!(
            %url,
            reason = refusal.reason(),
            "refused a frame from the control plane: {refusal}; nothing of it applied, keeping {kept}, dropping \
             this stream"
        );
        self.status.refused(format!("{url}: {refusal}"));
        format!("refused frame: {refusal}")
    }

    /// Applies one message; returns an error when the stream must restart.
    fn handle(&self, message: Message) -> Result<(), String> {
        let now = unix_now_ms() / 1000;
        match message {
            Message::Snapshot(body) => {
                let snapshot =
                    Snapshot::from_body(body).map_err(|e| format!("snapshot policy does not compile: {e}"))?;
                let seq = snapshot.seq();
                self.snapshots.replace(snapshot);
                let current = self.snapshots.load_full().ok_or("snapshot vanished")?;
                let closed = self.registry.reevaluate(&current, now);
                self.metrics
                    .kills
                    .with_label_values(&[crate::registry::KillReason::PolicyChanged.as_str()])
                    .inc_by(closed as u64);
                tracing::info!(seq, closed, "applied a full snapshot");
                self.queue_report(seq, closed);
            }
            Message::Delta(delta) => {
                let seq = delta.seq;
                match self.snapshots.apply(&delta) {
                    Ok(affected) => {
                        let current = self.snapshots.load_full().ok_or("snapshot vanished")?;
                        let (closed, reason) = self.registry.close_affected(&affected, &current, now);
                        if closed > 0 {
                            tracing::info!(seq, closed, reason = reason.as_str(), "closed live connections");
                            self.metrics.kills.with_label_values(&[reason.as_str()]).inc_by(closed as u64);
                        }
                        self.queue_report(seq, closed);
                    }
                    Err(StoreError::Apply(portcullis_policy::snapshot::ApplyError::OutOfSequence { current, got }))
                        if got <= current =>
                    {
                        // Already applied (a replayed delta after a reconnect).
                    }
                    Err(error) => return Err(format!("delta {seq}: {error}")),
                }
            }
            Message::Heartbeat { head_seq, .. } => {
                self.status.head_seq.store(head_seq as i64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn queue_report(&self, seq: u64, closed: usize) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = pending.push(seq, closed);
        drop(pending);
        self.count_dropped(dropped);
        self.wake_reporter.notify_one();
    }

    fn count_dropped(&self, dropped: usize) {
        if dropped > 0 {
            self.metrics.activity_events_dropped.with_label_values(&["connections_closed"]).inc_by(dropped as u64);
        }
    }

    /// Reports applied sequence and closes: at once after a change (receipts
    /// wait for it), otherwise every second as a heartbeat.
    async fn report_loop(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake_reporter.notified()).await;
            let Some(applied) = self.snapshots.seq() else { continue };
            let closed = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                Vec::from(std::mem::take(&mut pending.closed))
            };
            self.activity.closed_connections(&self.registry, self.snapshots.load_full().as_deref());
            let mut activity = self.activity.batch(&self.registry, unix_now_ms());
            let mut body = ReportBody {
                applied_seq: applied,
                live_connections: self.registry.len() as i64,
                closed: closed
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|&(seq, n)| ClosedConnections { seq, connections: n as i64 })
                    .collect(),
                activity: std::mem::take(&mut activity.events),
                connections_complete: activity.connections_complete(),
            };
            let url = self.planes.url(REPORT_PATH);
            let request = self.planes.authorize(self.client.post(&url)).timeout(REPORT_TIMEOUT);
            let sent = request.json(&body).send().await;
            // The events go back to their batch: committed, or kept for the next report.
            activity.events = std::mem::take(&mut body.activity);
            match sent {
                Ok(response) if response.status().is_success() => {
                    if activity.more {
                        // A burst (many short flows): send the rest now.
                        self.wake_reporter.notify_one();
                    }
                    self.activity.commit(activity);
                }
                Ok(response) => {
                    tracing::warn!(status = %response.status(), "report refused");
                    self.planes.check_refusal(response.status(), None);
                    self.keep_for_retry(closed, activity);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot report to the control plane");
                    self.keep_for_retry(closed, activity);
                }
            }
        }
    }

    /// Keeps the closes and sightings of a report that did not land for the
    /// next attempt: a replica that answers 503 (its database briefly gone)
    /// has recorded nothing, and receipts wait for those closes.
    fn keep_for_retry(&self, closed: Vec<(u64, usize)>, activity: crate::activity::ActivityBatch) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = pending.restore(closed);
        drop(pending);
        self.count_dropped(dropped);
        self.activity.restore(activity);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{retry_delay, Pending, MAX_BACKOFF, MAX_PENDING_CLOSES, MIN_BACKOFF};

    #[test]
    fn closes_waiting_for_a_report_are_bounded_oldest_first() {
        let mut pending = Pending::default();
        assert_eq!(pending.push(1, 0), 0);
        assert!(pending.closed.is_empty(), "a change that closed nothing waits for nothing");
        for seq in 0..MAX_PENDING_CLOSES as u64 {
            assert_eq!(pending.push(seq, 1), 0);
        }
        assert_eq!(pending.push(u64::MAX, 3), 1, "full: the oldest goes");
        assert_eq!(pending.closed.front(), Some(&(1, 1)));
        let failed: Vec<_> = pending.closed.drain(..2).collect();
        pending.push(7, 7);
        assert_eq!(pending.restore(failed), 1, "a failed report's entries go back in front, trimmed");
        assert_eq!(pending.closed.len(), MAX_PENDING_CLOSES);
        assert_eq!(pending.closed.back(), Some(&(7, 7)));
    }

    #[test]
    fn a_healthy_stream_is_retried_at_once_and_resets_the_backoff() {
        assert_eq!(retry_delay(0, Duration::from_secs(600), 1, 0.99), Duration::ZERO);
        // Delivered, but died within a second: a short pause, never growing.
        assert_eq!(retry_delay(0, Duration::from_millis(10), 1, 0.0), MIN_BACKOFF);
    }

    #[test]
    fn failures_double_up_to_the_cap_after_every_replica_was_tried() {
        assert_eq!(retry_delay(1, Duration::ZERO, 2, 0.5), Duration::ZERO, "the other replica at once");
        let delays: Vec<_> = (1..12).map(|n| retry_delay(n, Duration::ZERO, 1, 0.0)).collect();
        assert_eq!(delays[0], MIN_BACKOFF);
        assert_eq!(delays[1], MIN_BACKOFF * 2);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), MAX_BACKOFF);
        assert_eq!(retry_delay(u32::MAX, Duration::ZERO, 3, 1.0), MAX_BACKOFF + MAX_BACKOFF / 2);
    }
}
