//! Prometheus metrics of the control plane, served at `/metrics`.

use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The control plane's metrics.
pub struct Metrics {
    registry: Registry,
    /// API requests by matched route and status.
    pub requests: IntCounterVec,
    /// Admin actions that made a change, by action.
    pub changes: IntCounterVec,
    /// Edges streaming from this replica.
    pub streams: IntGauge,
    /// Edge streams this replica ended, by reason (`revoked`).
    pub streams_cut: IntCounterVec,
    /// Latest change-log sequence seen here.
    pub head_seq: IntGauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("portcullis_control_plane".into()), None).expect("valid prefix");
        let requests = IntCounterVec::new(Opts::new("http_requests_total", "API requests"), &["route", "status"])
            .expect("valid metric");
        let changes = IntCounterVec::new(Opts::new("changes_total", "committed changes by action"), &["action"])
            .expect("valid metric");
        let streams = IntGauge::new("edge_streams", "edges streaming from this replica").expect("valid metric");
        let streams_cut =
            IntCounterVec::new(Opts::new("edge_streams_cut_total", "edge streams ended by this replica"), &["reason"])
                .expect("valid metric");
        let head_seq = IntGauge::new("change_log_head_seq", "latest change-log sequence").expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(changes.clone()),
            Box::new(streams.clone()),
            Box::new(streams_cut.clone()),
            Box::new(head_seq.clone()),
        ] {
            registry.register(collector).expect("metrics register once");
        }
        Self { registry, requests, changes, streams, streams_cut, head_seq }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
