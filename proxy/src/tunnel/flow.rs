//! One open flow: bytes piped both ways between the client and the
//! upstream, counted as they pass (for `/metrics` while the flow lives, and
//! for the activity report when it ends). The [`OpenFlow`] guard reports
//! the close when it is dropped — also when the kill path drops the task
//! serving the flow in the middle of a copy, which is how most long flows
//! end.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use portcullis_policy::Identity;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::activity::{ActivityLog, FlowFacts};

/// Copy buffer per direction: large enough that bulk transfers cost few
/// system calls.
const COPY_BUFFER_BYTES: usize = 256 * 1024;

/// Bytes that went through a flow.
#[derive(Debug, Default)]
pub struct FlowCounters {
    /// Client → upstream.
    pub up: AtomicU64,
    /// Upstream → client.
    pub down: AtomicU64,
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
}

/// The client side of a flow, counting what it reads (up) and writes (down).
struct Counted<'f, S> {
    inner: S,
    counters: &'f FlowCounters,
    meters: &'f FlowMeters,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.counters.up.fetch_add(n, Ordering::Relaxed);
            self.meters.up.inc_by(n);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.counters.down.fetch_add(n as u64, Ordering::Relaxed);
            self.meters.down.inc_by(n as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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

    /// Pipes bytes both ways until both sides are done (or the task is dropped).
    pub async fn pipe<C, U>(&mut self, client: C, mut upstream: U, early: &[u8])
    where
        C: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        if !early.is_empty() {
            // What the client sent right after its CONNECT head.
            if upstream.write_all(early).await.is_err() {
                self.end = Some(FlowEnd::Error);
                return;
            }
            self.counters.up.fetch_add(early.len() as u64, Ordering::Relaxed);
            self.meters.up.inc_by(early.len() as u64);
        }
        let mut client = Counted { inner: client, counters: &self.counters, meters: &self.meters };
        let copied =
            tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, COPY_BUFFER_BYTES, COPY_BUFFER_BYTES)
                .await;
        self.end = Some(if copied.is_ok() { FlowEnd::Closed } else { FlowEnd::Error });
    }
}

impl Drop for OpenFlow {
    fn drop(&mut self) {
        let end = if self.killed.is_cancelled() { FlowEnd::Revoked } else { self.end.unwrap_or(FlowEnd::Shutdown) };
        self.meters.open.dec();
        self.meters.closed.inc();
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
