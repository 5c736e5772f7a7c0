//! The snapshot subscriber: streams from the control plane's edge channel,
//! applies the full snapshot and every delta into the [`SnapshotStore`],
//! closes the live connections each change affects, and reports what it
//! applied and closed. Reconnects resume by sequence, with exponential
//! backoff and jitter; a silent stream (no heartbeat) is treated as lost.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use portcullis_policy::wire::{decode, Message};
use portcullis_policy::Snapshot;
use tokio::sync::Notify;

use crate::activity::ActivityLog;
use crate::registry::ConnRegistry;
use crate::{SnapshotStore, StoreError};

/// A stream with no frame for this long is considered dead (heartbeats come every second).
const SILENCE_LIMIT: Duration = Duration::from_secs(5);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Largest frame accepted (a snapshot with millions of entries fits).
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// Where and how to reach the control plane.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Base URL of the edge channel, e.g. `http://127.0.0.1:7401`.
    pub url: String,
    /// Enrollment secret.
    pub secret: String,
    /// This edge's id.
    pub edge_id: String,
    /// This edge's display name.
    pub edge_name: String,
}

/// Freshness of the snapshot, for `/readyz`, metrics and `stale_mode`.
#[derive(Debug, Default)]
pub struct SyncStatus {
    /// Unix ms of the last frame from the control plane.
    pub last_contact_ms: AtomicI64,
    /// The control plane's head sequence, from heartbeats.
    pub head_seq: AtomicI64,
    /// A stream is open.
    pub connected: AtomicBool,
}

impl SyncStatus {
    /// Milliseconds since the last frame (`i64::MAX` if never).
    pub fn staleness_ms(&self) -> i64 {
        match self.last_contact_ms.load(Ordering::Relaxed) {
            0 => i64::MAX,
            at => now_ms() - at,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Connections closed per change, not yet reported.
#[derive(Default)]
struct Pending {
    closed: Vec<(u64, usize)>,
}

/// Streams changes in and reports back.
pub struct Subscriber {
    config: ChannelConfig,
    snapshots: Arc<SnapshotStore>,
    registry: Arc<ConnRegistry>,
    status: Arc<SyncStatus>,
    pending: Mutex<Pending>,
    wake_reporter: Notify,
    client: reqwest::Client,
    activity: Arc<ActivityLog>,
    metrics: Arc<crate::metrics::EdgeMetrics>,
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
}

impl Subscriber {
    /// A subscriber feeding `snapshots` and closing connections in `registry`.
    pub fn new(config: ChannelConfig, parts: SubscriberParts) -> Arc<Self> {
        let SubscriberParts { snapshots, registry, status, activity, metrics } = parts;
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Arc::new(Self {
            config,
            snapshots,
            registry,
            status,
            pending: Mutex::default(),
            wake_reporter: Notify::new(),
            client,
            activity,
            metrics,
        })
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        builder
            .bearer_auth(&self.config.secret)
            .header("x-portcullis-edge-id", &self.config.edge_id)
            .header("x-portcullis-edge-name", &self.config.edge_name)
    }

    /// Runs the stream and the reporter until the process ends.
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(Arc::clone(&self).report_loop());
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.stream_once().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => tracing::warn!(%error, "control-plane stream lost"),
            }
            self.status.connected.store(false, Ordering::Relaxed);
            let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn stream_once(&self) -> Result<(), String> {
        let since = self.snapshots.seq().map(|s| format!("?since={s}")).unwrap_or_default();
        let url = format!("{}/edge/v1/stream{since}", self.config.url.trim_end_matches('/'));
        let response = self.request(self.client.get(&url)).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{url}: {status} {body}"));
        }
        self.status.connected.store(true, Ordering::Relaxed);
        tracing::info!(%url, "streaming from the control plane");
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(SILENCE_LIMIT, body.next()).await {
                Err(_) => return Err("no heartbeat for 5 s".into()),
                Ok(None) => return Ok(()),
                Ok(Some(chunk)) => chunk.map_err(|e| e.to_string())?,
            };
            buffer.extend_from_slice(&chunk);
            while buffer.len() >= 4 {
                let len = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
                if len > MAX_FRAME_BYTES {
                    return Err(format!("frame of {len} bytes is too large"));
                }
                if buffer.len() < 4 + len {
                    break;
                }
                let message = decode(&buffer[4..4 + len]).map_err(|e| e.to_string())?;
                buffer.drain(..4 + len);
                self.status.last_contact_ms.store(now_ms(), Ordering::Relaxed);
                self.handle(message)?;
            }
        }
    }

    /// Applies one message; returns an error when the stream must restart.
    fn handle(&self, message: Message) -> Result<(), String> {
        let now = now_ms() / 1000;
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
        pending.closed.push((seq, closed));
        drop(pending);
        self.wake_reporter.notify_one();
    }

    /// Reports applied sequence and closes: at once after a change (receipts
    /// wait for it), otherwise every second as a heartbeat.
    async fn report_loop(self: Arc<Self>) {
        let url = format!("{}/edge/v1/report", self.config.url.trim_end_matches('/'));
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake_reporter.notified()).await;
            let Some(applied) = self.snapshots.seq() else { continue };
            let closed = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut pending.closed)
            };
            let activity = self.activity.batch(&self.registry, now_ms());
            let body = serde_json::json!({
                "applied_seq": applied,
                "live_connections": self.registry.len(),
                "closed": closed.iter().filter(|(_, n)| *n > 0).map(|(seq, n)| serde_json::json!({"seq": seq, "connections": n})).collect::<Vec<_>>(),
                "activity": activity.events,
            });
            let sent = self.request(self.client.post(&url)).json(&body).send().await;
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
                    self.activity.restore(activity);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot report to the control plane");
                    // Keep the closes and sightings for the next attempt.
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    pending.closed.extend(closed);
                    drop(pending);
                    self.activity.restore(activity);
                }
            }
        }
    }
}
