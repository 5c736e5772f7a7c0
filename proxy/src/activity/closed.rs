//! Live connections the edge closed, as the report names them: the
//! registry remembers each closed binding on the kill path; at report time
//! they are summed per session (or user), route, source and reason into
//! `connections_closed` events, so the audit log says whose connections
//! were cut, where and why, without one row per connection of a burst.

use std::collections::HashMap;
use std::net::IpAddr;

use portcullis_policy::edge_channel::ActivityEvent;
use portcullis_policy::{SessionId, Snapshot};

use crate::registry::{BoundTarget, ClosedConnection, KillReason};

#[derive(PartialEq, Eq, Hash)]
struct Key {
    session: Option<SessionId>,
    user: String,
    route: String,
    source: IpAddr,
    reason: KillReason,
}

/// The route name of a closed binding: the route of `snapshot` serving its
/// target, or (a route removed by the change that closed it) the target.
fn route_of(closed: &ClosedConnection, snapshot: Option<&Snapshot>) -> String {
    if let Some(route) = snapshot.and_then(|s| closed.binding.route(s)) {
        return route.name().to_owned();
    }
    match &closed.binding.target {
        BoundTarget::Http { host, .. } => host.clone(),
        BoundTarget::Tcp { name } => name.clone(),
    }
}

/// `closed`, summed into events in the order each sum first appeared.
pub(super) fn summarise(closed: Vec<ClosedConnection>, snapshot: Option<&Snapshot>) -> Vec<ActivityEvent> {
    let mut order: Vec<Key> = Vec::new();
    let mut sums: HashMap<Key, (u64, i64, i64)> = HashMap::new();
    for conn in closed {
        let identity = conn.binding.identity.as_deref();
        let user = identity.map_or("", |i| if i.email().is_empty() { i.subject() } else { i.email() });
        let key = Key {
            session: identity.and_then(|i| i.session_id()),
            user: user.to_owned(),
            route: route_of(&conn, snapshot),
            source: conn.binding.client_ip,
            reason: conn.reason,
        };
        match sums.get_mut(&key) {
            Some((count, first, last)) => {
                *count += 1;
                *first = (*first).min(conn.at_ms);
                *last = (*last).max(conn.at_ms);
            }
            None => {
                sums.insert(
                    Key { user: key.user.clone(), route: key.route.clone(), ..key },
                    (1, conn.at_ms, conn.at_ms),
                );
                order.push(key);
            }
        }
    }
    order
        .into_iter()
        .map(|key| {
            let (connections, first_at_ms, at_ms) = sums[&key];
            ActivityEvent::ConnectionsClosed {
                session_id: key.session.map(|s| s.to_string()),
                user: key.user,
                route: key.route,
                source_address: key.source.to_string(),
                reason: key.reason.as_str().to_owned(),
                connections,
                first_at_ms,
                at_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_policy::{CredentialKind, Identity, IdentityParts, Policy, PolicySource};

    use super::*;
    use crate::registry::Binding;

    fn closed(path: &str, ip: [u8; 4], at_ms: i64) -> ClosedConnection {
        let identity = Identity::new(IdentityParts {
            subject: "sub-bob".into(),
            email: "bob@corp.example".into(),
            credential: Some(CredentialKind::Browser),
            session_id: Some(SessionId::from_bytes([7; 16])),
            ..IdentityParts::default()
        });
        let binding = Binding {
            identity: Some(Arc::new(identity)),
            target: BoundTarget::Http { host: "chat.example".into(), path: path.into(), method: "GET".into() },
            client_ip: IpAddr::from(ip),
            until: None,
        };
        ClosedConnection { binding, reason: KillReason::SessionTerminated, at_ms }
    }

    #[test]
    fn closes_are_summed_per_session_route_and_source_and_name_the_route() {
        let yaml = "version: 1\nroutes:\n  - name: chat\n    host: chat.example\n    upstream: http://127.0.0.1:1\n    rules:\n      - allow: { email_domain: corp.example }\n";
        let policy = Policy::compile(PolicySource { name: "t".into(), text: yaml.into() }).expect("compiles");
        let snapshot = Snapshot::new(1, Arc::new(policy));
        let all =
            vec![closed("/ws", [10, 0, 0, 1], 5), closed("/dl", [10, 0, 0, 1], 3), closed("/ws", [10, 0, 0, 2], 4)];
        let events: Vec<_> =
            summarise(all.clone(), Some(&snapshot)).iter().map(|e| serde_json::to_value(e).unwrap()).collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0]["route"], "chat");
        assert_eq!(events[0]["user"], "bob@corp.example");
        assert_eq!((events[0]["connections"].as_u64(), events[0]["first_at_ms"].as_i64()), (Some(2), Some(3)));
        assert_eq!(events[0]["at_ms"], 5);
        assert_eq!(
            (events[1]["source_address"].as_str(), events[1]["connections"].as_u64()),
            (Some("10.0.0.2"), Some(1))
        );
        assert_eq!(events[0]["reason"], "session_terminated");
        let without_route = serde_json::to_value(&summarise(all, None)[0]).unwrap();
        assert_eq!(without_route["route"], "chat.example", "a route gone with the change is named by its host");
    }
}
