//! The HTTP side of the edge, as pingora's `ProxyHttp`: canonicalise the
//! target, hand reserved `/.portcullis/` paths to the login service, put
//! everything else through the admission [`Gate`], render its refusals, and
//! forward what it admits with the upstream head built by
//! [`upstream_headers`](crate::upstream_headers) (the same for websocket
//! upgrades, which the edge proxies itself).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};
use portcullis_policy::policy::Upstream;
use portcullis_policy::{lowercase_path, CanonicalTarget};

use crate::assertion::AssertionSigner;
use crate::clock::unix_now_s;
use crate::gate::{canonical_target, Admission, Arrival, Destination, Gate, Refusal};
use crate::login::{LoginService, RequestInfo};
use crate::registry::ConnKey;
use crate::responses::{respond, respond_with_reference, wants_html};
use crate::upgrade::{classify, strip_upgrade, UpgradeRequest};
use crate::upstream_headers::{prepare, UpstreamHead};

/// Shared state of the HTTP proxy.
pub struct EdgeHttp {
    /// The admission gate (shared with the CONNECT tunnel).
    pub gate: Arc<Gate>,
    /// The reserved `/.portcullis/` paths.
    pub login: Arc<LoginService>,
    /// Identity assertions for upstreams.
    pub assertions: Arc<AssertionSigner>,
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    admission: Option<Admission>,
    upstream_target: String,
    proto: &'static str,
    host: String,
    assertion: Option<Arc<str>>,
    websocket: bool,
    /// The `Sec-WebSocket-Accept` a 101 must carry (websocket upgrades).
    websocket_accept: Option<String>,
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

/// Percent-encodes everything but unreserved characters and `/` (for `rd=`).
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The path and query the upstream's request line carries.
fn upstream_target(target: &CanonicalTarget, lowercase: bool) -> String {
    let path = if lowercase { lowercase_path(&target.path) } else { target.path.as_str().into() };
    match &target.query {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    }
}

impl EdgeHttp {
    /// Counts a refusal made before the gate (no route known yet) and renders it.
    async fn refuse_early(&self, session: &mut Session, refusal: &Refusal) -> Result<bool> {
        self.gate.metrics.requests.with_label_values(&["", refusal.outcome()]).inc();
        self.refuse(session, refusal).await
    }

    /// Renders a refusal as an HTTP answer.
    async fn refuse(&self, session: &mut Session, refusal: &Refusal) -> Result<bool> {
        match refusal {
            Refusal::LoginRequired(_) => return self.refuse_login(session, &refusal.message(), None).await,
            Refusal::Reauthenticate { max_age, .. } => {
                return self.refuse_login(session, &refusal.message(), Some(*max_age)).await
            }
            _ => {}
        }
        let retry = refusal.retry_after().map(|after| ("retry-after", after.to_owned()));
        let extra: &[(&'static str, String)] = match &retry {
            Some(header) => std::slice::from_ref(header),
            None => &[],
        };
        let (status, code, title, message) = (refusal.status(), refusal.code(), refusal.title(), refusal.message());
        respond_with_reference(session, status, code, title, &message, refusal.reference(), extra).await?;
        Ok(true)
    }

    /// Browsers go to the login (asking the IdP for a login at most
    /// `max_age` seconds old when the route wants one); API clients get 401
    /// with a Bearer challenge (RFC 9470's `insufficient_user_authentication`
    /// and `max_age` for a stale login).
    /// A session a login set moments ago, refused again, gets a page
    /// instead of another login ([`crate::login::loop_guard`]).
    async fn refuse_login(&self, session: &mut Session, message: &str, max_age: Option<u32>) -> Result<bool> {
        if wants_html(session) {
            let target = canonical_target(session.req_header()).ok();
            let path_and_query = target.as_ref().map_or_else(|| "/".to_owned(), |t| t.path_and_query().into_owned());
            let mut location = format!("/.portcullis/login?rd={}", percent_encode(&path_and_query));
            if let Some(max_age) = max_age {
                location.push_str(&format!("&max_age={max_age}"));
            }
            let fresh = target.filter(|_| max_age.is_none()).and_then(|t| self.fresh_login_route(session, &t));
            if let Some(route) = fresh {
                return self.login.refused_right_after_login(session, &route, message, &location).await;
            }
            respond(session, 302, "login_required", "Login required", message, &[("location", location)]).await?;
        } else {
            let challenge = match max_age {
                Some(max_age) => {
                    format!(
                        "Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\", max_age={max_age}"
                    )
                }
                None => "Bearer realm=\"portcullis\"".to_owned(),
            };
            let code = if max_age.is_some() { "login_too_old" } else { "unauthorized" };
            respond(session, 401, code, "Login required", message, &[("www-authenticate", challenge)]).await?;
        }
        Ok(true)
    }

    /// The route of this request, when it presents the session a login of
    /// that route set less than a few seconds ago.
    fn fresh_login_route(&self, session: &Session, target: &CanonicalTarget) -> Option<String> {
        let snapshot = self.gate.snapshots.load_full()?;
        let head = session.req_header();
        let route = snapshot.policy().http_route(&request_host(head), &target.path_without_params())?;
        self.login.presents_fresh_login(head, route.name(), unix_now_s()).then(|| route.name().to_owned())
    }

    /// The upstream head for this request: the client's, rewritten.
    fn upstream_head(&self, head: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
        let admission =
            ctx.admission.as_ref().ok_or_else(|| Error::explain(ErrorType::InternalError, "not admitted"))?;
        let forwarded_for = admission.client.forwarded_for();
        let plan = UpstreamHead {
            path_and_query: &ctx.upstream_target,
            identity: admission.identity.as_deref(),
            assertion: ctx.assertion.as_deref(),
            forwarded_for: &forwarded_for,
            client_ip: admission.client.ip,
            proto: ctx.proto,
            host: &ctx.host,
            pass_client_headers: &admission.pass_client_headers,
            authorization: admission.authorization,
            forward_bearer: admission.forward_bearer,
            websocket: ctx.websocket,
            cookies: &self.gate.cookies,
        };
        prepare(head, &plan)
    }

    /// Proxies an allowed websocket upgrade itself (see [`crate::upgrade`]).
    async fn proxy_upgrade(&self, session: &mut Session, ctx: &RequestCtx, upstream: &Upstream) -> Result<()> {
        let mut head = session.req_header().clone();
        self.upstream_head(&mut head, ctx)?;
        let watch = conn_key(session).map(|key| crate::upgrade::Watch { registry: &self.gate.registry, key });
        let outcome = match resolve(upstream).await {
            Ok(address) => crate::upgrade::proxy(session, address, &head, &self.gate.cookies, watch).await,
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
}

#[async_trait]
impl ProxyHttp for EdgeHttp {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let snapshot = match self.gate.snapshot() {
            Ok(snapshot) => snapshot,
            Err(refusal) => return self.refuse_early(session, &refusal).await,
        };
        let target = match canonical_target(session.req_header()) {
            Ok(target) => target,
            Err(refusal) => return self.refuse_early(session, &refusal).await,
        };
        let req = session.req_header();
        let host = request_host(req);
        let peer = session.client_addr().and_then(|a| a.as_inet()).map_or(IpAddr::from([0, 0, 0, 0]), SocketAddr::ip);
        let client = self.gate.trusted_proxies.client(peer, req);
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.proto = match client.proto.as_deref() {
            Some("https") => "https",
            Some(_) => "http",
            None if tls => "https",
            None => "http",
        };
        if target.path.starts_with("/.portcullis/") {
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
                scheme: ctx.proto,
                client_ip: client.ip.to_string(),
                now: unix_now_s(),
            };
            return self.login.handle(session, &snapshot, info).await;
        }
        match classify(req) {
            UpgradeRequest::None => {}
            UpgradeRequest::WebSocket => {
                ctx.websocket = true;
                let key = req.headers.get(http::header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes()).unwrap_or_default();
                ctx.websocket_accept = Some(crate::upgrade::accept_for(key));
            }
            UpgradeRequest::BadWebSocket(why) => return self.refuse_early(session, &Refusal::BadUpgrade(why)).await,
            UpgradeRequest::Other => strip_upgrade(session.req_header_mut()),
        }
        let req = session.req_header();
        let method = req.method.as_str().to_owned();
        let arrival = Arrival::Http { host: &host, target: &target, method: &method, multiplexed: session.is_http2() };
        let admission = match self.gate.admit(&snapshot, arrival, req, peer, conn_key(session)).await {
            Ok(admission) => admission,
            Err(refusal) => return self.refuse(session, &refusal).await,
        };
        if let Some(identity) = &admission.identity {
            ctx.assertion = self.assertions.assertion(identity, &admission.route, unix_now_s());
        }
        ctx.upstream_target = upstream_target(&target, admission.lowercase_upstream_path);
        ctx.host = host;
        let upstream = match &admission.destination {
            Destination::Http(upstream) => upstream.clone(),
            Destination::Tcp(_) => {
                let refusal = Refusal::NoRoute("This address is a TCP route: reach it with CONNECT.".into());
                return self.refuse(session, &refusal).await;
            }
        };
        ctx.admission = Some(admission);
        if ctx.websocket && !upstream.tls {
            self.proxy_upgrade(session, ctx, &upstream).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        let upstream = match ctx.admission.as_ref().map(|a| &a.destination) {
            Some(Destination::Http(upstream)) => upstream,
            _ => return Err(Error::explain(ErrorType::InternalError, "no upstream")),
        };
        let address = resolve(upstream).await?;
        Ok(Box::new(HttpPeer::new(address, upstream.tls, upstream.host.to_string())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.upstream_head(upstream_request, ctx)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        crate::upstream_headers::drop_edge_set_cookies(upstream_response, &self.gate.cookies);
        // Upgrades to TLS upstreams go through pingora: the 101 must still answer the key.
        if upstream_response.status.as_u16() == 101 {
            let accept =
                upstream_response.headers.get(http::header::SEC_WEBSOCKET_ACCEPT).map(|a| a.as_bytes().trim_ascii());
            let expected = ctx.websocket_accept.as_deref().map(str::as_bytes);
            if expected.is_none() || accept != expected {
                return Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "the upstream's 101 does not answer the websocket key",
                ));
            }
        }
        Ok(())
    }

    /// A client that goes away mid-response (a closed tab, a cancelled
    /// download) is not the edge's failure: logged at INFO here instead of
    /// pingora's ERROR. Upstream and internal failures keep their ERROR.
    fn suppress_error_log(&self, session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        if !client_went_away(error) {
            return false;
        }
        let req = session.req_header();
        tracing::info!(%error, method = %req.method, path = %req.uri.path(), "the client closed the connection mid-response");
        true
    }
}

/// True for the errors of a downstream connection the client closed or
/// broke: reading from or writing to it failed, or it was already closed.
fn client_went_away(error: &Error) -> bool {
    *error.esource() == ErrorSource::Downstream
        && matches!(error.etype(), ErrorType::ConnectionClosed | ErrorType::WriteError | ErrorType::ReadError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_client_that_went_away_is_not_an_error() {
        for etype in [ErrorType::ConnectionClosed, ErrorType::WriteError, ErrorType::ReadError] {
            let mut error = Error::explain(etype.clone(), "Broken pipe (os error 32)");
            error.esource = ErrorSource::Downstream;
            assert!(client_went_away(&error), "{error}");
            let upstream = Error::explain(etype, "Connection reset by peer").into_up();
            assert!(!client_went_away(&upstream), "an upstream failure stays an error: {upstream}");
        }
        let mut bad_request = Error::explain(ErrorType::InvalidHTTPHeader, "bad header");
        bad_request.esource = ErrorSource::Downstream;
        assert!(!client_went_away(&bad_request));
        assert!(!client_went_away(&Error::explain(ErrorType::InternalError, "no upstream")));
    }
}
