//! Prometheus metrics of the control plane, served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::Millis;
use crate::store::Backlog;

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
    /// Relying-party deliveries.
    pub outbox: OutboxMetrics,
    /// Signals in: Security Event Tokens and API signals.
    pub signals: SignalMetrics,
    /// Security events out, per SIEM sink.
    pub siem: SiemMetrics,
}

/// The SIEM sinks' metrics.
#[derive(Clone)]
pub struct SiemMetrics {
    /// Events delivered, and failed batches, by sink.
    pub events: IntCounterVec,
    /// Audit entries not yet delivered, by sink (the alarm: it should stay small).
    pub backlog: IntGaugeVec,
    /// Age of the oldest of them, seconds.
    pub oldest_age: IntGaugeVec,
}

/// Signals received, by source.
#[derive(Clone)]
pub struct SignalMetrics {
    /// Events by source, event type and outcome (applied, ignored,
    /// duplicate, rejected:<code>).
    pub events: IntCounterVec,
    /// Seconds from the SET's `iat` (whole seconds) to every connected
    /// edge having applied what it did.
    pub iat_to_edges: HistogramVec,
    /// Seconds from receiving the SET to every connected edge having applied it.
    pub received_to_edges: HistogramVec,
}

/// The outbox worker's metrics, per relying party.
#[derive(Clone)]
pub struct OutboxMetrics {
    /// Attempts by relying party and outcome (applied, retry, failed, dead).
    pub deliveries: IntCounterVec,
    /// Seconds per attempt.
    pub latency: HistogramVec,
    /// Jobs waiting (pending or retrying).
    pub pending: IntGaugeVec,
    /// Age of the oldest waiting job, seconds.
    pub oldest_age: IntGaugeVec,
}

impl OutboxMetrics {
    /// Sets the backlog gauges (sinks without a backlog read 0).
    pub fn record_backlog(&self, backlog: &[Backlog], now: Millis) {
        self.pending.reset();
        self.oldest_age.reset();
        for sink in backlog {
            self.pending.with_label_values(&[&sink.sink]).set(sink.pending as i64);
            let age = sink.oldest_ms.map_or(0, |oldest| (now - oldest).max(0) / 1000);
            self.oldest_age.with_label_values(&[&sink.sink]).set(age);
        }
    }
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
        let outbox = OutboxMetrics {
            deliveries: IntCounterVec::new(
                Opts::new("relying_party_deliveries_total", "relying-party delivery attempts by outcome"),
                &["relying_party", "outcome"],
            )
            .expect("valid metric"),
            latency: HistogramVec::new(
                HistogramOpts::new("relying_party_delivery_seconds", "seconds per relying-party delivery attempt")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["relying_party"],
            )
            .expect("valid metric"),
            pending: IntGaugeVec::new(Opts::new("outbox_pending", "outbox jobs waiting"), &["relying_party"])
                .expect("valid metric"),
            oldest_age: IntGaugeVec::new(
                Opts::new("outbox_oldest_pending_age_seconds", "age of the oldest waiting outbox job"),
                &["relying_party"],
            )
            .expect("valid metric"),
        };
        let signals = SignalMetrics {
            events: IntCounterVec::new(
                Opts::new("signal_events_total", "signals received by source, event type and outcome"),
                &["source", "event", "outcome"],
            )
            .expect("valid metric"),
            iat_to_edges: HistogramVec::new(
                HistogramOpts::new("signal_iat_to_edges_seconds", "seconds from a SET's iat to every edge applied")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0]),
                &["source"],
            )
            .expect("valid metric"),
            received_to_edges: HistogramVec::new(
                HistogramOpts::new(
                    "signal_received_to_edges_seconds",
                    "seconds from receiving a signal to every edge applied",
                )
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
                &["source"],
            )
            .expect("valid metric"),
        };
        let siem = SiemMetrics {
            events: IntCounterVec::new(
                Opts::new("siem_events_total", "security events delivered (and failed batches) by sink"),
                &["sink", "outcome"],
            )
            .expect("valid metric"),
            backlog: IntGaugeVec::new(Opts::new("siem_backlog", "audit entries a sink has not delivered"), &["sink"])
                .expect("valid metric"),
            oldest_age: IntGaugeVec::new(
                Opts::new("siem_backlog_oldest_age_seconds", "age of the oldest undelivered entry"),
                &["sink"],
            )
            .expect("valid metric"),
        };
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(changes.clone()),
            Box::new(streams.clone()),
            Box::new(streams_cut.clone()),
            Box::new(head_seq.clone()),
            Box::new(outbox.deliveries.clone()),
            Box::new(outbox.latency.clone()),
            Box::new(outbox.pending.clone()),
            Box::new(outbox.oldest_age.clone()),
            Box::new(signals.events.clone()),
            Box::new(signals.iat_to_edges.clone()),
            Box::new(signals.received_to_edges.clone()),
            Box::new(siem.events.clone()),
            Box::new(siem.backlog.clone()),
            Box::new(siem.oldest_age.clone()),
        ] {
            registry.register(collector).expect("metrics register once");
        }
        Self { registry, requests, changes, streams, streams_cut, head_seq, outbox, signals, siem }
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
