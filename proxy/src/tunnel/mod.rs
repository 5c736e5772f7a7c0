//! TCP flows through the edge: `CONNECT name:port` on the edge's own HTTP
//! and HTTPS listeners, checked like a request and then piped to the
//! upstream of the TCP route the name picks.
//!
//! ```text
//! Killable::process_new ── sniff (head.rs) ──▶ not CONNECT: pingora, bytes put back (prefixed.rs)
//!                                   │
//!                                   ▼ CONNECT
//!  the admission gate (crate::gate): credential (Proxy-Authorization /
//!   Authorization: Bearer, or the route's cookie) → identify (cached)
//!   → evaluate(Target::Tcp) → address check → bind in the ConnRegistry
//!   → connect the upstream → check again → 200 → relay both ways (flow.rs,
//!   relay.rs: copied while light, spliced once bulk)
//! ```
//!
//! The flow runs inside the accept wrapper's `select!`, so the kill path
//! (session or user terminated, lock, a policy that no longer allows it)
//! drops it like any other connection. Refusals are one line of text
//! (answer.rs): 404 unknown route, 407 not logged in or a dead credential,
//! 403 denied (with the denial's reference, never the policy's reason), 502
//! upstream unreachable.

pub mod answer;
mod copy;
pub mod flow;
pub mod head;
pub mod prefixed;
pub mod relay;
mod splice;
pub mod tally;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pingora_core::protocols::Stream;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_now_ms;
use crate::gate::{Admission, Arrival, Destination, Gate, Refusal as GateRefusal};
use crate::registry::ConnKey;
use answer::{refuse, Refusal, ESTABLISHED};
use flow::{FlowMeters, OpenFlow};
use head::{ConnectHead, HeadError};

/// How long connecting to an upstream may take before the client gets a 502.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the tunnel handler needs: the gate it shares with the HTTP proxy.
pub struct TunnelService {
    /// The admission gate.
    pub gate: Arc<Gate>,
}

/// A refusal with its code and one-line reason.
struct Refused {
    refusal: Refusal,
    route: String,
    code: &'static str,
    message: String,
    reference: Option<portcullis_policy::edge_channel::DenialReference>,
}

impl Refused {
    fn new(refusal: Refusal, code: &'static str, message: impl Into<String>) -> Self {
        Self { refusal, route: String::new(), code, message: message.into(), reference: None }
    }

    /// The CONNECT rendering of a gate refusal for a flow to `name`.
    fn from_gate(refusal: &GateRefusal, name: &str) -> Self {
        let answer = match refusal {
            GateRefusal::NoSnapshot | GateRefusal::Stale | GateRefusal::CredentialUnavailable => Refusal::Unavailable,
            GateRefusal::BadTarget(_) | GateRefusal::PathParameters | GateRefusal::BadUpgrade(_) => Refusal::BadRequest,
            GateRefusal::Misdirected => Refusal::BadRequest,
            GateRefusal::LoginRequired(_) | GateRefusal::Reauthenticate { .. } => Refusal::LoginRequired,
            GateRefusal::RateLimited => Refusal::RateLimited,
            GateRefusal::Forbidden(_) => Refusal::Forbidden,
            GateRefusal::NoRoute(_) => Refusal::NoRoute,
        };
        let message = match refusal {
            GateRefusal::LoginRequired(why) | GateRefusal::Reauthenticate { why, .. } => {
                format!("{why} Log in: send Proxy-Authorization: Bearer <session token for this route>.")
            }
            GateRefusal::Forbidden(reference) => {
                format!("Access to `{name}` denied. Your administrator can look it up by reference {reference}.")
            }
            other => other.message().into_owned(),
        };
        Self { reference: refusal.reference(), ..Self::new(answer, refusal.code(), message) }
    }
}

impl TunnelService {
    /// Answers a CONNECT that could not be parsed.
    pub async fn refuse_head(&self, mut stream: Stream, error: HeadError) {
        let (refusal, code, message) = match error {
            HeadError::TooLarge => {
                (Refusal::HeadTooLarge, "head_too_large", "The CONNECT request head is larger than 16 KiB.")
            }
            HeadError::Malformed => {
                (Refusal::BadRequest, "bad_connect", "Expected `CONNECT host:port HTTP/1.1` followed by headers.")
            }
        };
        self.gate.metrics.tunnel_flows.with_label_values(&["", refusal.outcome()]).inc();
        refuse(&mut stream, refusal, code, message, None).await;
    }

    /// Serves one CONNECT on the connection `key`; returns when the flow
    /// ends. `killed` is the connection's cancellation token.
    pub async fn serve(
        &self,
        mut stream: Stream,
        head: Box<ConnectHead>,
        rest: BytesMut,
        key: ConnKey,
        killed: CancellationToken,
    ) {
        let name = head.authority.to_ascii_lowercase();
        let checked = match self.check(&head, &name, key).await {
            Ok(admission) => self.connect(&name, admission).await,
            Err(refused) => Err(refused),
        };
        let (admission, upstream) = match checked {
            Ok(ready) => ready,
            Err(refused) => {
                let metrics = &self.gate.metrics;
                metrics.tunnel_flows.with_label_values(&[&refused.route, refused.refusal.outcome()]).inc();
                refuse(&mut stream, refused.refusal, refused.code, &refused.message, refused.reference).await;
                return;
            }
        };
        let metrics = &self.gate.metrics;
        metrics.tunnel_flows.with_label_values(&[&admission.route, "allow"]).inc();
        // Pingora's streams buffer writes: the 200 must go out before any upstream byte arrives.
        let established = async {
            stream.write_all(ESTABLISHED).await?;
            stream.flush().await
        };
        if established.await.is_err() {
            return;
        }
        let now_ms = unix_now_ms();
        let meters = FlowMeters {
            up: metrics.tunnel_bytes.with_label_values(&[&admission.route, "up"]),
            down: metrics.tunnel_bytes.with_label_values(&[&admission.route, "down"]),
            closed: metrics.tunnel_flows_closed.with_label_values(&[&admission.route]),
            open: metrics.tunnel_open_flows.clone(),
            spliced: metrics.tunnel_flows_spliced.clone(),
        };
        let facts = flow::facts(admission.identity.as_deref(), &admission.route, &name, admission.client.ip);
        let mut flow = OpenFlow::open(facts, meters, killed, Arc::clone(&self.gate.activity), now_ms);
        flow.pipe(stream, upstream, &rest).await;
    }

    /// The gate's answer for this flow.
    async fn check(&self, head: &ConnectHead, name: &str, key: ConnKey) -> Result<Admission, Refused> {
        let snapshot = self.gate.snapshot().map_err(|r| Refused::from_gate(&r, name))?;
        let arrival = Arrival::Connect { name };
        let admitted = self.gate.admit(&snapshot, arrival, &head.header, key.peer.ip(), Some(key)).await;
        admitted.map_err(|refusal| {
            let route = snapshot.policy().tcp_route(name).map_or(String::new(), |r| r.name().to_owned());
            Refused { route, ..Refused::from_gate(&refusal, name) }
        })
    }

    /// Connects the upstream, then checks the flow once more against the
    /// snapshot in force: a change applied between the first check and the
    /// binding would otherwise let it through.
    async fn connect(&self, name: &str, admission: Admission) -> Result<(Admission, TcpStream), Refused> {
        let Destination::Tcp(address) = &admission.destination else {
            let message = format!("`{name}` is an HTTP route: send HTTP requests, not CONNECT.");
            return Err(Refused::new(Refusal::NoRoute, "no_route", message));
        };
        let connected = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(&**address))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
            .and_then(|r| r);
        let upstream = match connected {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(route = %admission.route, upstream = %address, %error, "tunnel upstream unreachable");
                let message = format!("The upstream of `{name}` cannot be reached ({error}).");
                return Err(Refused {
                    route: admission.route.to_string(),
                    ..Refused::new(Refusal::BadGateway, "upstream_unreachable", message)
                });
            }
        };
        let _ = upstream.set_nodelay(true);
        if !self.gate.still_allowed(&admission, name) {
            let message = format!("Access to `{name}` ended while the flow was being opened.");
            return Err(Refused {
                route: admission.route.to_string(),
                ..Refused::new(Refusal::Forbidden, "forbidden", message)
            });
        }
        // A kill after the binding cancels this connection's token, and the
        // accept wrapper drops this task at its next await.
        Ok((admission, upstream))
    }
}
