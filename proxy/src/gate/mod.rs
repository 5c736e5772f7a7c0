//! The admission gate: the one path every HTTP request and every CONNECT
//! flow takes before anything reaches an upstream.
//!
//! ```text
//! snapshot (fail closed) → canonical target (HTTP) → route → staleness
//!   (the route's `stale_mode`) → credential for that route (route-bound session tokens) → revocations
//!   + evaluate (the policy crate) → address check → bind in the registry
//!   with the instant the admission stops holding → Admission
//! ```
//!
//! Every step either moves on or returns a [`Refusal`] value; the HTTP proxy
//! and the CONNECT tunnel render refusals in their own way and otherwise
//! only route and forward. Routing, the policy and the upstream all see the
//! same canonical path, and the admission says which of the client's
//! credentials the upstream must not see.

mod credential;
mod refusal;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_http::RequestHeader;
use portcullis_policy::policy::{IpChangeAction, StaleMode, Upstream};
use portcullis_policy::{
    canonicalize, evaluate, holds_until, lowercase_path, CanonicalTarget, ClaimValue, Facts, Identity, Outcome, Reason,
    Route, RouteTarget, Snapshot, Target,
};

pub use credential::presented_authorization;
pub use refusal::Refusal;

use crate::activity::ActivityLog;
use crate::clock::unix_now_s;
use crate::credentials::{Credentials, SessionCookies, LOGIN_IP_CLAIM};
use crate::forwarded::{ClientAddress, TrustedProxies};
use crate::metrics::EdgeMetrics;
use crate::registry::{BindOutcome, Binding, BoundTarget, ConnKey, ConnRegistry};
use crate::subscriber::SyncStatus;
use crate::upstream_headers::AuthorizationUse;
use crate::SnapshotStore;

/// Everything the gate consults.
pub struct Gate {
    /// The snapshot in force.
    pub snapshots: Arc<SnapshotStore>,
    /// Live connections.
    pub registry: Arc<ConnRegistry>,
    /// Credential verification and caches.
    pub credentials: Arc<Credentials>,
    /// The edge's cookies.
    pub cookies: SessionCookies,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Freshness of the snapshot.
    pub status: Arc<SyncStatus>,
    /// How stale the snapshot may get before `stale_mode` applies.
    pub max_staleness: Duration,
    /// `stale_mode` of routes that do not set their own.
    pub stale_mode: StaleMode,
    /// Activity for the control plane.
    pub activity: Arc<ActivityLog>,
    /// Metrics.
    pub metrics: Arc<EdgeMetrics>,
}

/// What arrives at the gate.
pub enum Arrival<'r> {
    /// An HTTP request whose target is already canonical.
    Http {
        /// Host, lowercase, without port.
        host: &'r str,
        /// The canonical target.
        target: &'r CanonicalTarget,
        /// The request method.
        method: &'r str,
        /// HTTP/2: several identities may share the connection.
        multiplexed: bool,
    },
    /// A CONNECT to `name` (`host:port`, lowercase).
    Connect {
        /// The CONNECT target.
        name: &'r str,
    },
}

/// Where an admitted request or flow goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// An HTTP upstream.
    Http(Upstream),
    /// A TCP upstream, `host:port`.
    Tcp(Arc<str>),
}

/// A request or flow the gate let through, with what forwarding needs.
pub struct Admission {
    /// The identity, when the request carried a credential valid on this route.
    pub identity: Option<Arc<Identity>>,
    /// The route's name.
    pub route: Arc<str>,
    /// The upstream.
    pub destination: Destination,
    /// The client, as trusted hops tell.
    pub client: ClientAddress,
    /// What the `Authorization` header carried.
    pub authorization: AuthorizationUse,
    /// The route forwards IdP access tokens upstream.
    pub forward_bearer: bool,
    /// Override headers the route passes on.
    pub pass_client_headers: Box<[Box<str>]>,
    /// Lowercase the path sent upstream (`case_insensitive_paths`).
    pub lowercase_upstream_path: bool,
}

/// The canonical target of an HTTP request, from the bytes the client sent.
pub fn canonical_target(head: &RequestHeader) -> Result<CanonicalTarget, Refusal> {
    let raw = std::str::from_utf8(head.raw_path())
        .map_err(|_| Refusal::BadTarget(portcullis_policy::TargetError::NotUtf8 { at: 0 }))?;
    let host = head.headers.get(http::header::HOST).map(|h| h.to_str()).transpose();
    let host = host.map_err(|_| Refusal::BadTarget(portcullis_policy::TargetError::BadAuthority))?;
    if head.headers.get_all(http::header::HOST).iter().count() > 1 {
        return Err(Refusal::BadTarget(portcullis_policy::TargetError::AuthorityMismatch));
    }
    // HTTP/2 carries the authority apart from the path: it must agree with any `Host`.
    if let (Some(authority), Some(host)) = (head.uri.authority(), host) {
        if !authority.as_str().eq_ignore_ascii_case(host) {
            return Err(Refusal::BadTarget(portcullis_policy::TargetError::AuthorityMismatch));
        }
    }
    canonicalize(raw, host).map_err(Refusal::BadTarget)
}

/// The login address of a browser session used from elsewhere.
fn address_change(identity: &Identity, now_from: IpAddr) -> Option<&str> {
    match identity.claim(LOGIN_IP_CLAIM)? {
        ClaimValue::One(text) if !text.is_empty() => {
            let login: IpAddr = text.parse().ok()?;
            (crate::forwarded::canonical_ip(login) != now_from).then_some(&**text)
        }
        _ => None,
    }
}

/// Methods the policy must allow: the request's, and an override the route passes on.
fn judged_methods<'h>(head: &'h RequestHeader, method: &'h str, route: &Route) -> [Option<&'h str>; 2] {
    let passed = &route.options().pass_client_headers;
    let overridden = ["x-http-method-override", "x-http-method", "x-method-override"]
        .into_iter()
        .filter(|name| passed.iter().any(|p| &**p == *name))
        .find_map(|name| head.headers.get(name).and_then(|v| v.to_str().ok()))
        .map(str::trim);
    [Some(method), overridden]
}

impl Gate {
    /// The snapshot in force, or the fail-closed refusal.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, Refusal> {
        self.snapshots.load_full().ok_or(Refusal::NoSnapshot)
    }

    /// Is the snapshot older than `max_staleness`?
    pub fn is_stale(&self) -> bool {
        self.status.older_than(self.max_staleness)
    }

    /// Does `route` fail closed once the snapshot is stale (its own
    /// `stale_mode`, else the edge's, is `deny`)?
    pub fn fails_closed_when_stale(&self, route: &Route) -> bool {
        route.options().stale_mode.unwrap_or(self.stale_mode) == StaleMode::Deny
    }

    /// Does `route` fail closed now? (The clock is read only for such routes.)
    pub fn stale_for(&self, route: &Route) -> bool {
        self.fails_closed_when_stale(route) && self.is_stale()
    }

    /// The route serving the arrival, and the path the policy judges
    /// (borrowed from the target unless parameters or case change it).
    fn route<'s, 'a>(
        &self,
        snapshot: &'s Snapshot,
        arrival: &Arrival<'a>,
    ) -> Result<(&'s Route, Cow<'a, str>), Refusal> {
        match arrival {
            Arrival::Http { host, target, .. } => {
                let target: &'a CanonicalTarget = target;
                let policy = snapshot.policy();
                let plain = target.path_without_params();
                let route = policy
                    .http_route(host, &plain)
                    .ok_or_else(|| Refusal::NoRoute("No application is served at this address.".into()))?;
                let options = route.options();
                if target.has_params && !options.allow_path_parameters {
                    return Err(Refusal::PathParameters);
                }
                let judged = match plain {
                    Cow::Borrowed(plain) if options.case_insensitive_paths => lowercase_path(plain),
                    Cow::Owned(plain) if options.case_insensitive_paths => {
                        Cow::Owned(lowercase_path(&plain).into_owned())
                    }
                    plain => plain,
                };
                Ok((route, judged))
            }
            Arrival::Connect { name } => snapshot
                .policy()
                .tcp_route(name)
                .map(|route| (route, Cow::Borrowed("")))
                .ok_or_else(|| Refusal::NoRoute(format!("No TCP route is named `{name}`."))),
        }
    }

    /// Admits or refuses `arrival` on connection `conn`, `head` being the
    /// request (headers carry the credential and forwarding hops).
    pub async fn admit(
        &self,
        snapshot: &Snapshot,
        arrival: Arrival<'_>,
        head: &RequestHeader,
        peer: IpAddr,
        conn: Option<ConnKey>,
    ) -> Result<Admission, Refusal> {
        let (route, judged_path) = match self.route(snapshot, &arrival) {
            Ok(found) => found,
            Err(refusal) => {
                self.count(&arrival, "", refusal.outcome());
                return Err(refusal);
            }
        };
        let admitted = if self.stale_for(route) {
            Err(Refusal::Stale)
        } else {
            self.admit_on(snapshot, route, judged_path, &arrival, head, peer, conn).await
        };
        let outcome = admitted.as_ref().map_or_else(Refusal::outcome, |_| "allow");
        self.count(&arrival, route.name(), outcome);
        admitted
    }

    /// HTTP requests are counted per route and outcome here; CONNECT flows
    /// by the tunnel, once it knows whether the upstream answered.
    fn count(&self, arrival: &Arrival<'_>, route: &str, outcome: &str) {
        if let Arrival::Http { .. } = arrival {
            self.metrics.requests.with_label_values(&[route, outcome]).inc();
        }
    }

    /// [`Gate::admit`] once the route is known.
    #[allow(clippy::too_many_arguments)]
    async fn admit_on(
        &self,
        snapshot: &Snapshot,
        route: &Route,
        judged_path: Cow<'_, str>,
        arrival: &Arrival<'_>,
        head: &RequestHeader,
        peer: IpAddr,
        conn: Option<ConnKey>,
    ) -> Result<Admission, Refusal> {
        let started = Instant::now();
        let now = unix_now_s();
        let client = self.trusted_proxies.client(peer, head);
        let found = credential::identify(self, head, arrival, route.name(), client.ip, snapshot, now).await?;
        let identity = found.identity;
        let (target, methods) = match arrival {
            Arrival::Http { host, method, .. } => {
                (Target::Http { host, path: &judged_path, method }, judged_methods(head, method, route))
            }
            Arrival::Connect { name } => (Target::Tcp { name }, [Some("CONNECT"), None]),
        };
        let mut until = None;
        for method in methods.into_iter().flatten() {
            let target = match target {
                Target::Http { host, path, .. } => Target::Http { host, path, method },
                tcp => tcp,
            };
            let facts = Facts { target, source_ip: client.ip, now, identity: identity.as_deref() };
            let decision = evaluate(snapshot, &facts);
            self.decided(&decision, identity.as_deref(), client.ip, now)?;
            until = min_deadline(until, holds_until(snapshot, &facts, &decision));
        }
        self.metrics.decision_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(identity) = &identity {
            self.check_address(identity, route, client.ip, now)?;
            if let Some(sid) = identity.session_id() {
                self.activity.seen(sid, client.ip, now * 1000);
            }
        }
        if let Some(key) = conn {
            let multiplexed = matches!(arrival, Arrival::Http { multiplexed: true, .. });
            let same_target = |bound: &BoundTarget| match (bound, arrival) {
                (BoundTarget::Http { host: h, path: p, method: m }, Arrival::Http { host, method, .. }) => {
                    h == host && *p == judged_path && m == method
                }
                (BoundTarget::Tcp { name: n }, Arrival::Connect { name }) => n == name,
                _ => false,
            };
            let fresh = self.registry.refresh(key, identity.as_ref(), same_target, client.ip, until, multiplexed);
            if !fresh {
                let bound_target = match arrival {
                    Arrival::Http { host, method, .. } => BoundTarget::Http {
                        host: (*host).to_owned(),
                        path: judged_path.into_owned(),
                        method: (*method).to_owned(),
                    },
                    Arrival::Connect { name } => BoundTarget::Tcp { name: (*name).to_owned() },
                };
                let binding = Binding { identity: identity.clone(), target: bound_target, client_ip: client.ip, until };
                if self.registry.bind(key, binding, multiplexed) == BindOutcome::TooManyIdentities {
                    return Err(Refusal::Misdirected);
                }
            }
        }
        let destination = match route.target() {
            RouteTarget::Http { upstream, .. } => Destination::Http(upstream.clone()),
            RouteTarget::Tcp { upstream, .. } => Destination::Tcp(Arc::from(&**upstream)),
        };
        let options = route.options();
        // The upstream hears the groups the policy judged with: after a
        // claims change (an IdP's token-claims-change), the new ones.
        let identity = match identity {
            Some(found) => match snapshot.users().groups_override(&found) {
                Some(groups) => Some(Arc::new(found.with_groups(&groups.groups))),
                None => Some(found),
            },
            None => None,
        };
        Ok(Admission {
            identity,
            route: Arc::clone(route.shared_name()),
            destination,
            client,
            authorization: found.authorization,
            forward_bearer: options.forward_bearer,
            pass_client_headers: options.pass_client_headers.clone(),
            lowercase_upstream_path: options.case_insensitive_paths,
        })
    }

    /// Turns a decision other than allow into its refusal (and reports denials).
    fn decided(
        &self,
        decision: &portcullis_policy::Decision<'_>,
        identity: Option<&Identity>,
        client_ip: IpAddr,
        now: i64,
    ) -> Result<(), Refusal> {
        match decision.outcome {
            Outcome::Allow => Ok(()),
            // The person hears what to do, not the route's name (the decision's text names it).
            Outcome::LoginRequired => match decision.login_max_age() {
                Some(max_age) => Err(Refusal::Reauthenticate {
                    why: "This application requires a recent login: log in again.".into(),
                    max_age,
                }),
                None => Err(Refusal::LoginRequired("This application requires you to log in.".into())),
            },
            Outcome::Deny => match decision.reason {
                Reason::SessionTerminated
                | Reason::UserTokensRevoked
                | Reason::TokenRevoked
                | Reason::SigningKeyRevoked => Err(Refusal::LoginRequired(format!("{decision}."))),
                Reason::NoRoute => Err(Refusal::NoRoute(format!("{decision}."))),
                _ => {
                    // The reason (rule, route, a lock's reason) goes to the
                    // audit log only; the client gets the reference of its row.
                    let reason = decision.to_string();
                    let (user, session) = match identity {
                        Some(identity) if identity.email().is_empty() => (identity.subject(), identity.session_id()),
                        Some(identity) => (identity.email(), identity.session_id()),
                        None => ("", None),
                    };
                    let route = decision.route.map_or("", |r| r.name());
                    let reference = self.activity.denied(user, session, route, &reason, client_ip, now * 1000);
                    Err(Refusal::Forbidden(reference))
                }
            },
        }
    }

    /// `on_ip_change` of the route, for HTTP requests and CONNECT flows alike.
    fn check_address(&self, identity: &Identity, route: &Route, client_ip: IpAddr, now: i64) -> Result<(), Refusal> {
        let action = route.options().on_ip_change;
        if action == IpChangeAction::Allow {
            return Ok(());
        }
        let Some(from) = address_change(identity, client_ip) else { return Ok(()) };
        let denied = action == IpChangeAction::Deny;
        if let Some(sid) = identity.session_id() {
            self.activity.address_changed(sid, from, client_ip, denied, now * 1000);
        }
        if denied {
            return Err(Refusal::LoginRequired(format!(
                "Your network address changed since you logged in (from {from} to {client_ip}), and this \
                 application requires you to log in again."
            )));
        }
        Ok(())
    }

    /// Is `admission` still allowed by the snapshot in force now? (A flow
    /// checks again once its upstream is connected: a change applied in
    /// between would otherwise slip past the binding.)
    pub fn still_allowed(&self, admission: &Admission, name: &str) -> bool {
        let Some(snapshot) = self.snapshots.load_full() else { return false };
        let facts = Facts {
            target: Target::Tcp { name },
            source_ip: admission.client.ip,
            now: unix_now_s(),
            identity: admission.identity.as_deref(),
        };
        evaluate(&snapshot, &facts).is_allowed()
    }
}

fn min_deadline(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
