//! TCP flows through the edge: `CONNECT name:port` on the edge's own HTTP
//! and HTTPS listeners, checked like a request and then piped to the
//! upstream of the TCP route the name picks.
//!
//! ```text
//! Killable::process_new ── sniff (head.rs) ──▶ not CONNECT: pingora, bytes put back (prefixed.rs)
//!                                   │
//!                                   ▼ CONNECT
//!  credential (Proxy-Authorization / Authorization: Bearer, or the cookie)
//!   → identify (cached) → evaluate(Target::Tcp) → bind in the ConnRegistry
//!   → connect the upstream → check again → 200 → pipe both ways (flow.rs)
//! ```
//!
//! The flow runs inside the accept wrapper's `select!`, so the kill path
//! (session or user terminated, lock, a policy that no longer allows it)
//! drops it like any other connection. Refusals are one line of text
//! (answer.rs): 404 unknown route, 407 not logged in or a dead credential,
//! 403 denied, 502 upstream unreachable.

pub mod answer;
pub mod flow;
pub mod head;
pub mod prefixed;
pub mod tally;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora_core::protocols::Stream;
use pingora_http::RequestHeader;
use portcullis_policy::{evaluate, Facts, Identity, Outcome, Reason, RouteTarget, Snapshot, Target};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::activity::ActivityLog;
use crate::credentials::{cookie, CredentialError, Credentials, Presented};
use crate::forwarded::TrustedProxies;
use crate::metrics::EdgeMetrics;
use crate::registry::{Binding, BoundTarget, ConnKey, ConnRegistry};
use crate::subscriber::SyncStatus;
use crate::SnapshotStore;
use answer::{refuse, Refusal, ESTABLISHED};
use flow::{FlowMeters, OpenFlow};
use head::{ConnectHead, HeadError};

/// How long connecting to an upstream may take before the client gets a 502.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the tunnel handler needs; shares its parts with the HTTP proxy.
pub struct TunnelService {
    /// The snapshot in force.
    pub snapshots: Arc<SnapshotStore>,
    /// Live connections.
    pub registry: Arc<ConnRegistry>,
    /// Credential verification and caches.
    pub credentials: Arc<Credentials>,
    /// Session cookie name.
    pub cookie_name: String,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Freshness of the snapshot.
    pub status: Arc<SyncStatus>,
    /// With `stale_mode = deny`: refuse flows once the snapshot is older than this.
    pub stale_deny: Option<Duration>,
    /// Activity for the control plane.
    pub activity: Arc<ActivityLog>,
    /// Metrics.
    pub metrics: Arc<EdgeMetrics>,
}

/// A refusal with its code and one-line reason.
struct Refused {
    refusal: Refusal,
    route: String,
    code: &'static str,
    message: String,
}

impl Refused {
    fn new(refusal: Refusal, code: &'static str, message: impl Into<String>) -> Self {
        Self { refusal, route: String::new(), code, message: message.into() }
    }
}

/// A flow the policy allows, not yet connected.
struct Allowed {
    identity: Option<Arc<Identity>>,
    route: String,
    upstream: String,
    client_ip: IpAddr,
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The bearer token of header `name`, if it carries one.
fn bearer(header: &RequestHeader, name: http::header::HeaderName) -> Option<&str> {
    header
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
}

/// The credential of a CONNECT: `Proxy-Authorization: Bearer`, else
/// `Authorization: Bearer`, else the session cookie.
pub fn connect_credential<'r>(header: &'r RequestHeader, cookie_name: &str) -> Option<Presented<'r>> {
    bearer(header, http::header::PROXY_AUTHORIZATION)
        .or_else(|| bearer(header, http::header::AUTHORIZATION))
        .map(Presented::Bearer)
        .or_else(|| cookie(header, cookie_name).map(Presented::Cookie))
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
        self.metrics.tunnel_flows.with_label_values(&["", refusal.outcome()]).inc();
        refuse(&mut stream, refusal, code, message).await;
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
            Ok(allowed) => self.connect(&name, allowed).await,
            Err(refused) => Err(refused),
        };
        let (allowed, upstream) = match checked {
            Ok(ready) => ready,
            Err(refused) => {
                self.metrics.tunnel_flows.with_label_values(&[&refused.route, refused.refusal.outcome()]).inc();
                refuse(&mut stream, refused.refusal, refused.code, &refused.message).await;
                return;
            }
        };
        self.metrics.tunnel_flows.with_label_values(&[&allowed.route, "allow"]).inc();
        // Pingora's streams buffer writes: the 200 must go out before any upstream byte arrives.
        let established = async {
            stream.write_all(ESTABLISHED).await?;
            stream.flush().await
        };
        if established.await.is_err() {
            return;
        }
        let now_ms = unix_now_ms();
        if let Some(sid) = allowed.identity.as_ref().and_then(|i| i.session_id()) {
            self.activity.seen(sid, allowed.client_ip, now_ms);
        }
        let meters = FlowMeters {
            up: self.metrics.tunnel_bytes.with_label_values(&[&allowed.route, "up"]),
            down: self.metrics.tunnel_bytes.with_label_values(&[&allowed.route, "down"]),
            closed: self.metrics.tunnel_flows_closed.with_label_values(&[&allowed.route]),
            open: self.metrics.tunnel_open_flows.clone(),
        };
        let facts = flow::facts(allowed.identity.as_deref(), &allowed.route, &name, allowed.client_ip);
        let mut flow = OpenFlow::open(facts, meters, killed, Arc::clone(&self.activity), now_ms);
        flow.pipe(stream, upstream, &rest).await;
    }

    /// Identity, revocations and policy: the flow's route and upstream, or why not.
    async fn check(&self, head: &ConnectHead, name: &str, key: ConnKey) -> Result<Allowed, Refused> {
        let started = Instant::now();
        let snapshot = self.snapshots.load_full().ok_or_else(|| {
            Refused::new(
                Refusal::Unavailable,
                "no_snapshot",
                "This edge has not received its policy from the control plane yet; try again in a moment.",
            )
        })?;
        if self.stale_deny.is_some_and(|limit| self.status.staleness_ms() > limit.as_millis() as i64) {
            let message = "This edge has lost contact with the control plane and refuses new flows until it is back.";
            return Err(Refused::new(Refusal::Unavailable, "stale_snapshot", message));
        }
        let now = unix_now_ms() / 1000;
        let client_ip = self.trusted_proxies.client(key.peer.ip(), &head.header).ip;
        let identity = match connect_credential(&head.header, &self.cookie_name) {
            Some(credential) => match self.credentials.identify(credential, snapshot.signing_keys(), now).await {
                Ok((identity, hit)) => {
                    if hit { &self.metrics.token_cache_hits } else { &self.metrics.token_cache_misses }.inc();
                    Some(identity)
                }
                Err(CredentialError::Unavailable) => {
                    let message = "Your credential cannot be checked right now; try again in a moment.";
                    return Err(Refused::new(Refusal::Unavailable, "credential_unavailable", message));
                }
                Err(error) => {
                    let message = format!("Your credential was refused: {error}. Log in again.");
                    return Err(Refused::new(Refusal::LoginRequired, "credential_refused", message));
                }
            },
            None => None,
        };
        let allowed = match decide(&snapshot, name, client_ip, now, identity.as_ref()) {
            Ok(allowed) => allowed,
            Err(refused) => {
                if let (Refusal::Forbidden, Some(identity)) = (refused.refusal, &identity) {
                    let user = if identity.email().is_empty() { identity.subject() } else { identity.email() };
                    let session = identity.session_id();
                    self.activity.denied(user, session, &refused.route, &refused.message, client_ip, now * 1000);
                }
                return Err(refused);
            }
        };
        self.metrics.decision_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(identity) = &allowed.identity {
            let target = BoundTarget::Tcp { name: name.to_owned() };
            self.registry.bind(key, Binding { identity: Arc::clone(identity), target });
        }
        Ok(allowed)
    }

    /// Connects the upstream, then checks the flow once more against the
    /// snapshot in force: a change applied between the first check and the
    /// binding would otherwise let it through.
    async fn connect(&self, name: &str, allowed: Allowed) -> Result<(Allowed, TcpStream), Refused> {
        let connected = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(allowed.upstream.as_str()))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
            .and_then(|r| r);
        let upstream = match connected {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(route = allowed.route, upstream = allowed.upstream, %error, "tunnel upstream unreachable");
                let message = format!("The upstream of `{name}` cannot be reached ({error}).");
                return Err(Refused {
                    route: allowed.route,
                    ..Refused::new(Refusal::BadGateway, "upstream_unreachable", message)
                });
            }
        };
        let _ = upstream.set_nodelay(true);
        if let Some(snapshot) = self.snapshots.load_full() {
            let now = unix_now_ms() / 1000;
            decide(&snapshot, name, allowed.client_ip, now, allowed.identity.as_ref())?;
        }
        // A kill after the binding cancels this connection's token, and the
        // accept wrapper drops this task at its next await.
        Ok((allowed, upstream))
    }
}

/// The policy's answer for a flow to `name`.
fn decide(
    snapshot: &Snapshot,
    name: &str,
    client_ip: IpAddr,
    now: i64,
    identity: Option<&Arc<Identity>>,
) -> Result<Allowed, Refused> {
    let facts = Facts { target: Target::Tcp { name }, source_ip: client_ip, now, identity: identity.map(|i| &**i) };
    let decision = evaluate(snapshot, &facts);
    let route = decision.route.map_or(String::new(), |r| r.name().to_owned());
    let refused = |refusal, code, message: String| Err(Refused { refusal, route: route.clone(), code, message });
    match decision.outcome {
        Outcome::Allow => match decision.route.map(|r| r.target()) {
            Some(RouteTarget::Tcp { upstream, .. }) => Ok(Allowed {
                identity: identity.cloned(),
                route: route.clone(),
                upstream: upstream.to_string(),
                client_ip,
            }),
            _ => refused(Refusal::NoRoute, "no_route", format!("No TCP route is named `{name}`.")),
        },
        Outcome::LoginRequired => refused(
            Refusal::LoginRequired,
            "login_required",
            format!("Log in to reach `{name}`: send Proxy-Authorization: Bearer <session token>."),
        ),
        Outcome::Deny => match decision.reason {
            Reason::NoRoute => refused(Refusal::NoRoute, "no_route", format!("No TCP route is named `{name}`.")),
            Reason::SessionTerminated | Reason::UserTokensRevoked | Reason::TokenRevoked => {
                refused(Refusal::LoginRequired, "credential_revoked", format!("{decision}. Log in again."))
            }
            _ => refused(Refusal::Forbidden, "forbidden", format!("Access to `{name}` denied: {decision}.")),
        },
    }
}
