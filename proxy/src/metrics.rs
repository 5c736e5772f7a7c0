//! The edge's Prometheus metrics: requests by route and decision, the
//! latency of the authentication and authorisation step, live connections,
//! kills by reason, snapshot sequence, lag and staleness, whether a
//! control-plane stream is open and how often it was lost, frames refused
//! (unsigned, wrongly signed, replayed) by reason, the
//! verified-token cache hit ratio, and TCP flows (opened or refused by
//! route and outcome, closed, open now, bytes each way), credential
//! checks refused before they cost a lookup, and activity events dropped by
//! the bounded report queue.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every edge metric.
pub struct EdgeMetrics {
    registry: Registry,
    /// Requests by route and outcome (`allow`, `deny`, `login-required`, `no-route`, `unavailable`).
    pub requests: IntCounterVec,
    /// Seconds spent from request head to decision.
    pub decision_seconds: Histogram,
    /// Connections closed from outside, by reason.
    pub kills: IntCounterVec,
    /// Verified-token cache hits.
    pub token_cache_hits: IntCounter,
    /// Verified-token cache misses (signature checked).
    pub token_cache_misses: IntCounter,
    /// Live downstream connections.
    pub live_connections: IntGauge,
    /// Sequence of the snapshot in force.
    pub snapshot_seq: IntGauge,
    /// Changes the control plane has that this edge has not applied.
    pub snapshot_lag: IntGauge,
    /// Milliseconds since the last frame from the control plane.
    pub staleness_ms: IntGauge,
    /// 1 while a stream from a control-plane replica is open, else 0.
    pub control_plane_connected: IntGauge,
    /// Streams from the control plane that ended (each is followed by a reconnection).
    pub stream_reconnects: IntCounter,
    /// Stream frames refused and not applied, by reason (`unsigned`,
    /// `wrong_key`, `bad_signature`, `replayed`, `out_of_order`).
    pub stream_frames_refused: IntCounterVec,
    /// CONNECT requests by route and outcome (`allow`, `deny`, `login-required`, `no-route`, …).
    pub tunnel_flows: IntCounterVec,
    /// Flows closed, by route.
    pub tunnel_flows_closed: IntCounterVec,
    /// Bytes through flows by route and direction (`up`: client to upstream, `down`).
    pub tunnel_bytes: IntCounterVec,
    /// Flows open now.
    pub tunnel_open_flows: IntGauge,
    /// Flows that moved from copying to `splice(2)` (plain TCP with bulk data).
    pub tunnel_flows_spliced: IntCounter,
    /// Credential checks refused before a verifier or the control plane saw
    /// them, by reason (`format`, `negative_cache`, `rate_limit`); the same
    /// counter as [`credential_lookups_refused`].
    pub credential_lookups_refused: IntCounterVec,
    /// Activity events not reported because the queue waiting for the
    /// control plane was full, by kind (`seen`, `denied`, `address_changed`,
    /// `flow_opened`, `flow_closed`); see [`crate::activity`].
    pub activity_events_dropped: IntCounterVec,
}

/// The process's counter of credential checks refused before a lookup, by
/// reason: shared by every credential path, and registered with each
/// [`EdgeMetrics`].
pub fn credential_lookups_refused() -> &'static IntCounterVec {
    static COUNTER: std::sync::LazyLock<IntCounterVec> = std::sync::LazyLock::new(|| {
        let counter = IntCounterVec::new(
            Opts::new(
                "credential_lookups_refused_total",
                "credential checks refused before a verifier or the control plane saw them",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in ["format", "negative_cache", "rate_limit"] {
            counter.with_label_values(&[reason]);
        }
        counter
    });
    &COUNTER
}

/// A new counter of activity events dropped, by kind, every kind at 0.
pub fn activity_events_dropped() -> IntCounterVec {
    let counter = IntCounterVec::new(
        Opts::new(
            "activity_events_dropped_total",
            "activity events not reported to the control plane because the queue waiting for it was full",
        ),
        &["kind"],
    )
    .expect("valid metric");
    for kind in ["seen", "denied", "address_changed", "flow_opened", "flow_closed", "connections_closed"] {
        counter.with_label_values(&[kind]);
    }
    counter
}

impl EdgeMetrics {
    /// Registers every metric under the `portcullis_edge_` prefix.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("portcullis_edge".into()), None).expect("valid prefix");
        let requests =
            IntCounterVec::new(Opts::new("requests_total", "requests by route and decision"), &["route", "decision"])
                .expect("valid metric");
        let buckets = vec![1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 1e-2];
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new("decision_seconds", "authentication and authorisation time per request")
                .buckets(buckets),
        )
        .expect("valid metric");
        let kills = IntCounterVec::new(Opts::new("kills_total", "connections closed from outside"), &["reason"])
            .expect("valid metric");
        let token_cache_hits = IntCounter::new("token_cache_hits_total", "verified-token cache hits").expect("valid");
        let token_cache_misses =
            IntCounter::new("token_cache_misses_total", "tokens whose signature was checked").expect("valid");
        let live_connections = IntGauge::new("live_connections", "downstream connections open now").expect("valid");
        let snapshot_seq =
            IntGauge::new("snapshot_seq", "change-log sequence of the snapshot in force").expect("valid");
        let snapshot_lag = IntGauge::new("snapshot_lag", "changes not yet applied").expect("valid");
        let staleness_ms =
            IntGauge::new("snapshot_staleness_ms", "time since the last frame from the control plane").expect("valid");
        let control_plane_connected =
            IntGauge::new("control_plane_connected", "1 while a stream from a control-plane replica is open")
                .expect("valid");
        let stream_reconnects =
            IntCounter::new("stream_reconnects_total", "streams from the control plane that ended").expect("valid");
        let stream_frames_refused = IntCounterVec::new(
            Opts::new("stream_frames_refused_total", "control-plane stream frames refused and not applied"),
            &["reason"],
        )
        .expect("valid metric");
        for reason in portcullis_policy::signed_frame::REFUSAL_REASONS {
            stream_frames_refused.with_label_values(&[reason]);
        }
        let tunnel_flows = IntCounterVec::new(
            Opts::new("tunnel_flows_total", "CONNECT requests by route and outcome"),
            &["route", "outcome"],
        )
        .expect("valid metric");
        let tunnel_flows_closed =
            IntCounterVec::new(Opts::new("tunnel_flows_closed_total", "TCP flows closed"), &["route"])
                .expect("valid metric");
        let tunnel_bytes = IntCounterVec::new(
            Opts::new("tunnel_bytes_total", "bytes through TCP flows (up: client to upstream)"),
            &["route", "direction"],
        )
        .expect("valid metric");
        let tunnel_open_flows = IntGauge::new("tunnel_open_flows", "TCP flows open now").expect("valid");
        let tunnel_flows_spliced =
            IntCounter::new("tunnel_flows_spliced_total", "TCP flows moved to splice(2)").expect("valid");
        let credential_lookups_refused = credential_lookups_refused().clone();
        let activity_events_dropped = activity_events_dropped();
        let collectors: [Box<dyn prometheus::core::Collector>; 19] = [
            Box::new(requests.clone()),
            Box::new(decision_seconds.clone()),
            Box::new(kills.clone()),
            Box::new(token_cache_hits.clone()),
            Box::new(token_cache_misses.clone()),
            Box::new(live_connections.clone()),
            Box::new(snapshot_seq.clone()),
            Box::new(snapshot_lag.clone()),
            Box::new(staleness_ms.clone()),
            Box::new(control_plane_connected.clone()),
            Box::new(stream_reconnects.clone()),
            Box::new(stream_frames_refused.clone()),
            Box::new(tunnel_flows.clone()),
            Box::new(tunnel_flows_closed.clone()),
            Box::new(tunnel_bytes.clone()),
            Box::new(tunnel_open_flows.clone()),
            Box::new(tunnel_flows_spliced.clone()),
            Box::new(credential_lookups_refused.clone()),
            Box::new(activity_events_dropped.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("metrics register once");
        }
        Self {
            registry,
            requests,
            decision_seconds,
            kills,
            token_cache_hits,
            token_cache_misses,
            live_connections,
            snapshot_seq,
            snapshot_lag,
            staleness_ms,
            control_plane_connected,
            stream_reconnects,
            stream_frames_refused,
            tunnel_flows,
            tunnel_flows_closed,
            tunnel_bytes,
            tunnel_open_flows,
            tunnel_flows_spliced,
            credential_lookups_refused,
            activity_events_dropped,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}
