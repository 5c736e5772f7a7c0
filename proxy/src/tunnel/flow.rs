//! One open flow: bytes piped both ways between the client and the
//! upstream, counted as they pass (for `/metrics` while the flow lives, and
//! for the activity report when it ends). The [`OpenFlow`] guard reports
//! the close when it is dropped — also when the kill path drops the task
//! serving the flow in the middle of a copy, which is how most long flows
//! end.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pingora_core::protocols::Stream;
use portcullis_policy::Identity;
use prometheus::{IntCounter, IntGauge};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::relay::{relay, Tally};
use crate::activity::{ActivityLog, FlowFacts};

/// Bytes that went through a flow.
#[derive(Debug, Default)]
pub struct FlowCounters {
    /// Client → upstream.
    pub up: AtomicU64,
    /// Upstream → client.
    pub down: AtomicU64,
    /// The flow moved from copying to `splice(2)`.
    pub spliced: AtomicBool,
}

/// The live metrics of one route's flows.
#[derive(Clone)]
pub struct FlowMeters {
    /// `tunnel_bytes_total{direction="up"}` of the route.
    pub up: IntCounter,
    /// `tunnel_bytes_total{direction="down"}` of the route.
    pub down: IntCounter,
    /// `tunnel_flows_closed_total` of the route.
    pub closed: IntCounter,
    /// `tunnel_open_flows`.
    pub open: IntGauge,
    /// `tunnel_flows_spliced_total`: flows that moved to `splice(2)`.
    pub spliced: IntCounter,
}

/// How a flow ended, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    /// Both sides closed.
    Closed,
    /// A socket error on either side.
    Error,
    /// Portcullis closed it: the session, user or policy no longer allows it.
    Revoked,
    /// The edge shut down.
    Shutdown,
}

impl FlowEnd {
    /// The report's `ended_by` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Error => "error",
            Self::Revoked => "access_ended",
            Self::Shutdown => "edge_shutdown",
        }
    }
}

/// A flow between its `200` and its end; reports the end when dropped.
pub struct OpenFlow {
    /// Who, what, from where.
    pub facts: FlowFacts,
    /// Bytes so far.
    pub counters: FlowCounters,
    /// The route's meters.
    pub meters: FlowMeters,
    /// Cancelled when the kill path closes the connection.
    pub killed: CancellationToken,
    /// Where the report goes.
    pub activity: Arc<ActivityLog>,
    /// Set when the copy returned by itself.
    pub end: Option<FlowEnd>,
    opened: Instant,
    opened_ms: i64,
}

impl OpenFlow {
    /// Records the opening (activity and the open-flows gauge).
    pub fn open(
        facts: FlowFacts,
        meters: FlowMeters,
        killed: CancellationToken,
        activity: Arc<ActivityLog>,
        now_ms: i64,
    ) -> Self {
        activity.flow_opened(&facts, now_ms);
        meters.open.inc();
        Self {
            facts,
            counters: FlowCounters::default(),
            meters,
            killed,
            activity,
            end: None,
            opened: Instant::now(),
            opened_ms: now_ms,
        }
    }

    /// Relays bytes both ways until both sides are done (or the task is
    /// dropped): copied while light, spliced once bulk (`relay.rs`).
    pub async fn pipe(&mut self, client: Stream, upstream: TcpStream, early: &[u8]) {
        let tally = Tally { counters: &self.counters, meters: &self.meters };
        let relayed = relay(client, upstream, early, &tally).await;
        self.end = Some(if relayed.is_ok() { FlowEnd::Closed } else { FlowEnd::Error });
    }
}

impl Drop for OpenFlow {
    fn drop(&mut self) {
        let end = if self.killed.is_cancelled() { FlowEnd::Revoked } else { self.end.unwrap_or(FlowEnd::Shutdown) };
        self.meters.open.dec();
        self.meters.closed.inc();
        if self.counters.spliced.load(Ordering::Relaxed) {
            self.meters.spliced.inc();
        }
        let now_ms = self.opened_ms + self.opened.elapsed().as_millis() as i64;
        let up = self.counters.up.load(Ordering::Relaxed);
        let down = self.counters.down.load(Ordering::Relaxed);
        self.activity.flow_closed(&self.facts, up, down, self.opened_ms, now_ms, end.as_str());
    }
}

/// Facts about a flow for the report.
pub fn facts(identity: Option<&Identity>, route: &str, target: &str, source: IpAddr) -> FlowFacts {
    let user =
        identity.map_or(String::new(), |i| if i.email().is_empty() { i.subject() } else { i.email() }.to_owned());
    FlowFacts {
        session: identity.and_then(Identity::session_id),
        user,
        route: route.to_owned(),
        target: target.to_owned(),
        source,
    }
}
