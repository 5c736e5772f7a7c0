//! The per-request check, as pingora's `ProxyHttp`: load the snapshot once,
//! read the credential, verify it (cached), `evaluate` (revocations, route,
//! rules), bind the connection to the identity for the kill path, then
//! forward with identity headers — client-supplied ones are always removed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session};
use portcullis_policy::policy::{IpChangeAction, Upstream};
use portcullis_policy::{evaluate, ClaimValue, Facts, Identity, Outcome, Reason, RouteTarget, Target};

use crate::assertion::{AssertionSigner, ASSERTION_HEADER};
use crate::credentials::{presented, CredentialError, Credentials, LOGIN_IP_CLAIM};
use crate::forwarded::TrustedProxies;
use crate::login::{LoginService, RequestInfo};
use crate::registry::{Binding, BoundTarget, ConnKey, ConnRegistry};
use crate::responses::{respond, wants_html};
use crate::SnapshotStore;

/// Headers the edge sets; whatever a client sends under these names is dropped.
const IDENTITY_HEADERS: [&str; 4] =
    ["x-portcullis-user", "x-portcullis-email", "x-portcullis-groups", "x-portcullis-session"];
/// Prefix of every header the edge owns.
const OWN_PREFIX: &str = "x-portcullis-";

/// Shared state of the HTTP proxy.
pub struct EdgeHttp {
    /// The snapshot in force.
    pub snapshots: Arc<SnapshotStore>,
    /// Live connections.
    pub registry: Arc<ConnRegistry>,
    /// Credential verification and caches.
    pub credentials: Arc<Credentials>,
    /// Session cookie name.
    pub cookie_name: String,
    /// The reserved `/.portcullis/` paths.
    pub login: Arc<LoginService>,
    /// Identity assertions for upstreams.
    pub assertions: Arc<AssertionSigner>,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Freshness of the snapshot.
    pub status: Arc<crate::subscriber::SyncStatus>,
    /// With `stale_mode = deny`: refuse requests once the snapshot is older than this.
    pub stale_deny: Option<std::time::Duration>,
    /// Session activity for the control plane.
    pub activity: Arc<crate::activity::ActivityLog>,
    /// Metrics.
    pub metrics: Arc<crate::metrics::EdgeMetrics>,
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    upstream: Option<Upstream>,
    identity: Option<Arc<Identity>>,
    forwarded_for: String,
    proto: &'static str,
    host: String,
    assertion: Option<Arc<str>>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The request host, lowercase, without port or trailing dot.
fn request_host(req: &RequestHeader) -> String {
    let raw = req
        .uri
        .host()
        .or_else(|| req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or_default();
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => raw,
        },
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The login address of a browser session used from elsewhere.
fn address_change(identity: &Identity, now_from: IpAddr) -> Option<&str> {
    match identity.claim(LOGIN_IP_CLAIM)? {
        ClaimValue::One(text) if !text.is_empty() => {
            let login: IpAddr = text.parse().ok()?;
            (login != now_from).then_some(&**text)
        }
        _ => None,
    }
}

/// The request as the upstream gets it: every `X-Portcullis-*` and
/// forwarding header a client sent is replaced by the edge's own.
fn prepare_upstream_request(upstream_request: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    let own: Vec<http::HeaderName> =
        upstream_request.headers.keys().filter(|name| name.as_str().starts_with(OWN_PREFIX)).cloned().collect();
    for name in own {
        upstream_request.remove_header(&name);
    }
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"] {
        upstream_request.remove_header(name);
    }
    if let Some(identity) = &ctx.identity {
        let [user, email, groups, session] = IDENTITY_HEADERS;
        upstream_request.insert_header(user, identity.subject())?;
        upstream_request.insert_header(email, identity.email())?;
        upstream_request.insert_header(groups, identity.groups().join(","))?;
        if let Some(sid) = identity.session_id() {
            upstream_request.insert_header(session, sid.to_string())?;
        }
    }
    if let Some(assertion) = &ctx.assertion {
        upstream_request.insert_header(ASSERTION_HEADER, &**assertion)?;
    }
    upstream_request.insert_header("x-forwarded-for", ctx.forwarded_for.as_str())?;
    upstream_request.insert_header("x-forwarded-proto", ctx.proto)?;
    upstream_request.insert_header("x-forwarded-host", ctx.host.as_str())?;
    Ok(())
}

/// The socket address of an upstream.
async fn resolve(upstream: &Upstream) -> Result<SocketAddr> {
    tokio::net::lookup_host((upstream.host.as_ref(), upstream.port))
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, format!("cannot resolve upstream {}", upstream.host)))
}

fn conn_key(session: &Session) -> Option<ConnKey> {
    Some(ConnKey { peer: *session.client_addr()?.as_inet()?, local: *session.server_addr()?.as_inet()? })
}

impl EdgeHttp {
    /// Proxies an allowed HTTP/1.1 upgrade itself (see [`crate::upgrade`]).
    async fn proxy_upgrade(&self, session: &mut Session, ctx: &RequestCtx, upstream: &Upstream) -> Result<()> {
        let mut head = session.req_header().clone();
        prepare_upstream_request(&mut head, ctx)?;
        let outcome = match resolve(upstream).await {
            Ok(address) => crate::upgrade::proxy(session, address, &head).await,
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, upstream = %upstream.host, "upgrade failed");
            if session.response_written().is_none() {
                let message = "The application behind this address cannot be reached.";
                respond(session, 502, "bad_gateway", "Bad gateway", message, &[]).await?;
            }
        }
        Ok(())
    }

    async fn refuse_login(&self, session: &mut Session, message: &str) -> Result<bool> {
        if wants_html(session) {
            let target = session.req_header().uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            let location = format!("/.portcullis/login?rd={}", percent_encode(&target));
            respond(session, 302, "login_required", "Login required", message, &[("location", location)]).await?;
        } else {
            let challenge = ("www-authenticate", "Bearer realm=\"portcullis\"".to_owned());
            respond(session, 401, "unauthorized", "Login required", message, &[challenge]).await?;
        }
        Ok(true)
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl ProxyHttp for EdgeHttp {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let started = Instant::now();
        let Some(snapshot) = self.snapshots.load_full() else {
            self.metrics.requests.with_label_values(&["", "unavailable"]).inc();
            let message = "This edge has not received its policy from the control plane yet. Try again in a moment.";
            respond(session, 503, "no_snapshot", "Temporarily unavailable", message, &[("retry-after", "5".into())])
                .await?;
            return Ok(true);
        };
        if self.stale_deny.is_some_and(|limit| self.status.staleness_ms() > limit.as_millis() as i64) {
            let message = "This edge has lost contact with the control plane and is configured to refuse requests until it is back.";
            respond(session, 503, "stale_snapshot", "Temporarily unavailable", message, &[("retry-after", "5".into())])
                .await?;
            return Ok(true);
        }
        let now = unix_now();
        let req = session.req_header();
        let host = request_host(req);
        let path = req.uri.path().to_owned();
        let method = req.method.as_str().to_owned();
        let peer = session.client_addr().and_then(|a| a.as_inet()).map_or(IpAddr::from([0, 0, 0, 0]), SocketAddr::ip);
        let client = self.trusted_proxies.client(peer, req);
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let proto = match client.proto.as_deref() {
            Some("https") => "https",
            Some(_) => "http",
            None if tls => "https",
            None => "http",
        };
        if path.starts_with("/.portcullis/") {
            let authority = req
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri.authority().map(|a| a.as_str()))
                .unwrap_or(&host)
                .to_owned();
            let info = RequestInfo {
                host: &host,
                authority: &authority,
                scheme: proto,
                client_ip: client.ip.to_string(),
                now,
            };
            return self.login.handle(session, &snapshot, info).await;
        }
        let identity = match presented(req, &self.cookie_name) {
            Some(credential) => match self.credentials.identify(credential, snapshot.signing_keys(), now).await {
                Ok((identity, hit)) => {
                    if hit { &self.metrics.token_cache_hits } else { &self.metrics.token_cache_misses }.inc();
                    Some(identity)
                }
                Err(CredentialError::Unavailable) => {
                    let message = "Your credential cannot be checked right now because the party that issued it \
                                   cannot be reached. Try again in a moment.";
                    let retry = ("retry-after", "5".to_owned());
                    respond(session, 503, "credential_unavailable", "Temporarily unavailable", message, &[retry])
                        .await?;
                    return Ok(true);
                }
                Err(error) => {
                    return self.refuse_login(session, &format!("Your credential was refused: {error}.")).await
                }
            },
            None => None,
        };
        let client_ip = client.ip;
        let facts = Facts {
            target: Target::Http { host: &host, path: &path, method: &method },
            source_ip: client_ip,
            now,
            identity: identity.as_deref(),
        };
        let decision = evaluate(&snapshot, &facts);
        self.metrics.decision_seconds.observe(started.elapsed().as_secs_f64());
        let outcome = if decision.reason == Reason::NoRoute { "no-route" } else { decision.outcome.as_str() };
        self.metrics.requests.with_label_values(&[decision.route.map_or("", |r| r.name()), outcome]).inc();
        match decision.outcome {
            Outcome::Allow => {
                if let (Some(identity), Some(route)) = (&identity, decision.route) {
                    let action = route.options().on_ip_change;
                    if action != IpChangeAction::Allow {
                        if let Some(from) = address_change(identity, client_ip) {
                            let denied = action == IpChangeAction::Deny;
                            if let Some(sid) = identity.session_id() {
                                self.activity.address_changed(sid, from, client_ip, denied, now * 1000);
                            }
                            if denied {
                                let message = format!(
                                    "Your network address changed since you logged in (from {from} to {client_ip}), \
                                     and this application requires you to log in again."
                                );
                                return self.refuse_login(session, &message).await;
                            }
                        }
                    }
                }
                if let (Some(identity), Some(key)) = (&identity, conn_key(session)) {
                    let target = BoundTarget::Http { host: host.clone(), path, method };
                    self.registry.bind(key, Binding { identity: Arc::clone(identity), target });
                    if let Some(sid) = identity.session_id() {
                        self.activity.seen(sid, client_ip, now * 1000);
                    }
                }
                if let (Some(identity), Some(route)) = (&identity, decision.route) {
                    ctx.assertion = self.assertions.assertion(identity, route.name(), now);
                }
                ctx.upstream = decision.route.and_then(|r| match r.target() {
                    RouteTarget::Http { upstream, .. } => Some(upstream.clone()),
                    RouteTarget::Tcp { .. } => None,
                });
                ctx.identity = identity;
                ctx.forwarded_for = client.forwarded_for;
                ctx.proto = proto;
                ctx.host = host;
                match ctx.upstream.clone() {
                    None => Ok(true),
                    Some(upstream) if !upstream.tls && session.is_upgrade_req() => {
                        self.proxy_upgrade(session, ctx, &upstream).await?;
                        Ok(true)
                    }
                    Some(_) => Ok(false),
                }
            }
            Outcome::LoginRequired => self.refuse_login(session, &decision.to_string()).await,
            Outcome::Deny => match decision.reason {
                Reason::SessionTerminated | Reason::UserTokensRevoked | Reason::TokenRevoked => {
                    self.refuse_login(session, &format!("{decision}.")).await
                }
                Reason::NoRoute => {
                    respond(session, 404, "no_route", "Not found", &decision.to_string(), &[]).await?;
                    Ok(true)
                }
                _ => {
                    if let Some(identity) = &identity {
                        let user = if identity.email().is_empty() { identity.subject() } else { identity.email() };
                        let route = decision.route.map_or("", |r| r.name());
                        let reason = decision.to_string();
                        self.activity.denied(user, identity.session_id(), route, &reason, client_ip, now * 1000);
                    }
                    respond(session, 403, "forbidden", "Access denied", &decision.to_string(), &[]).await?;
                    Ok(true)
                }
            },
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        let upstream = ctx.upstream.as_ref().ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream"))?;
        let address = resolve(upstream).await?;
        Ok(Box::new(HttpPeer::new(address, upstream.tls, upstream.host.to_string())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        prepare_upstream_request(upstream_request, ctx)
    }
}
