//! What a live connection was admitted as ([`Binding`]), and how it is
//! re-checked against a newer snapshot or a later time.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_policy::{evaluate, holds_until, Facts, Identity, Snapshot, Target, UserRef};

/// What a connection was last authorised for, so it can be re-checked.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The verified identity; `None` for an anonymous request.
    pub identity: Option<Arc<Identity>>,
    /// HTTP host or CONNECT name.
    pub target: BoundTarget,
    /// The client's address as the policy saw it (trusted hops applied).
    pub client_ip: IpAddr,
    /// Unix second at which the admission stops holding by time alone.
    pub until: Option<i64>,
}

/// The target of a bound connection.
#[derive(Debug, Clone)]
pub enum BoundTarget {
    /// HTTP: host, canonical path and method of the request that bound it.
    Http {
        /// Host.
        host: String,
        /// Path.
        path: String,
        /// Method.
        method: String,
    },
    /// A CONNECT tunnel.
    Tcp {
        /// CONNECT name.
        name: String,
    },
}

/// Whether two bindings are for the same identity (anonymous is one identity).
pub(super) fn same_identity(a: Option<&Arc<Identity>>, b: Option<&Arc<Identity>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            Arc::ptr_eq(a, b)
                || (a.session_id() == b.session_id() && a.subject() == b.subject() && a.credential() == b.credential())
        }
        _ => false,
    }
}

impl Binding {
    /// The route of `snapshot` serving this binding's target.
    pub fn route<'s>(&self, snapshot: &'s Snapshot) -> Option<&'s portcullis_policy::Route> {
        match &self.target {
            BoundTarget::Http { host, path, .. } => snapshot.policy().http_route(host, path),
            BoundTarget::Tcp { name } => snapshot.policy().tcp_route(name),
        }
    }

    /// Is this binding of `user` (by subject, or by email in any case)?
    pub(super) fn is_of(&self, user: &UserRef) -> bool {
        self.identity.as_deref().is_some_and(|identity| match user {
            UserRef::Subject(sub) => identity.subject() == &**sub,
            UserRef::Email(email) => identity.email().eq_ignore_ascii_case(email),
        })
    }

    /// Does the admission still hold at `now`? `Some(until)` when it does.
    /// `policy_change`: a route with `reevaluate_live_connections: false`
    /// keeps the connection although the new answer is no.
    pub(super) fn recheck(&self, snapshot: &Snapshot, now: i64, policy_change: bool) -> Option<Option<i64>> {
        let identity = self.identity.as_deref();
        if identity.and_then(Identity::expires_at).is_some_and(|exp| exp <= now) {
            return None;
        }
        let target = match &self.target {
            BoundTarget::Http { host, path, method } => Target::Http { host, path, method },
            BoundTarget::Tcp { name } => Target::Tcp { name },
        };
        let facts = Facts { target, source_ip: self.client_ip, now, identity };
        let decision = evaluate(snapshot, &facts);
        if !decision.is_allowed() {
            let keep_live = policy_change && decision.route.is_some_and(|r| !r.options().reevaluate_live_connections);
            return keep_live.then_some(self.until);
        }
        Some(holds_until(snapshot, &facts, &decision))
    }
}
