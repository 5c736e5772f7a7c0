//! Registry behaviour: binding, the kill lookups, re-evaluation, cleanup.

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_policy::snapshot::Affected;
use portcullis_policy::{CredentialKind, Identity, IdentityParts, Policy, PolicySource, SessionId, Snapshot, UserRef};

use super::*;

fn key(port: u16) -> ConnKey {
    ConnKey { peer: SocketAddr::from(([127, 0, 0, 1], port)), local: SocketAddr::from(([127, 0, 0, 1], 8080)) }
}

fn identity(email: &str, session: u8, groups: &[&str]) -> Arc<Identity> {
    Arc::new(Identity::new(IdentityParts {
        subject: format!("sub-{email}"),
        email: email.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        credential: Some(CredentialKind::Browser),
        session_id: Some(SessionId::from_bytes([session; 16])),
        ..IdentityParts::default()
    }))
}

fn binding(identity: Arc<Identity>) -> Binding {
    Binding {
        identity: Some(identity),
        target: BoundTarget::Http { host: "app.example".into(), path: "/".into(), method: "GET".into() },
        client_ip: "127.0.0.1".parse().unwrap(),
        until: None,
    }
}

fn anonymous(path: &str) -> Binding {
    Binding {
        identity: None,
        target: BoundTarget::Http { host: "app.example".into(), path: path.into(), method: "GET".into() },
        client_ip: "127.0.0.1".parse().unwrap(),
        until: None,
    }
}

fn snapshot(yaml: &str) -> Snapshot {
    let policy = Policy::compile(PolicySource { name: "t".into(), text: yaml.into() }).expect("compiles");
    Snapshot::new(1, Arc::new(policy))
}

const ALLOW_DEV: &str = "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:1\n    rules:\n      - allow: { groups_any: [dev] }\n";
const ALLOW_OPS: &str = "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:1\n    rules:\n      - allow: { groups_any: [ops] }\n";

#[test]
fn terminating_a_session_cancels_only_its_connections() {
    let registry = ConnRegistry::new();
    let (a1, a2, b) = (registry.register(key(1)), registry.register(key(2)), registry.register(key(3)));
    assert_eq!(BindOutcome::Bound, registry.bind(key(1), binding(identity("ada@x.example", 1, &[])), false));
    assert_eq!(BindOutcome::Bound, registry.bind(key(2), binding(identity("ada@x.example", 1, &[])), false));
    assert_eq!(BindOutcome::Bound, registry.bind(key(3), binding(identity("bob@x.example", 2, &[])), false));
    let (closed, reason) =
        registry.close_affected(&Affected::Session(SessionId::from_bytes([1; 16])), &snapshot(ALLOW_DEV), 0);
    assert_eq!((closed, reason), (2, KillReason::SessionTerminated));
    assert!(a1.cancelled.is_cancelled() && a2.cancelled.is_cancelled() && !b.cancelled.is_cancelled());
    let (record, lost) = registry.take_closed();
    let named: Vec<_> = record.iter().map(|c| (c.binding.identity.as_ref().unwrap().email(), c.reason)).collect();
    assert_eq!(named, [("ada@x.example", KillReason::SessionTerminated); 2], "the report names what was closed");
    assert_eq!(lost, 0);
    registry.close_affected(&Affected::Session(SessionId::from_bytes([1; 16])), &snapshot(ALLOW_DEV), 0);
    assert!(registry.take_closed().0.is_empty(), "closing them again closes and records nothing");
}

#[test]
fn terminating_a_user_by_email_or_subject_cancels_every_session_of_theirs() {
    let registry = ConnRegistry::new();
    let (one, two) = (registry.register(key(1)), registry.register(key(2)));
    registry.bind(key(1), binding(identity("ada@x.example", 1, &[])), false);
    registry.bind(key(2), binding(identity("ada@x.example", 2, &[])), false);
    let snapshot = snapshot(ALLOW_DEV);
    assert_eq!(registry.close_affected(&Affected::User(UserRef::email("ADA@x.example")), &snapshot, 0).0, 2);
    assert!(one.cancelled.is_cancelled() && two.cancelled.is_cancelled());
    let three = registry.register(key(3));
    registry.bind(key(3), binding(identity("ada@x.example", 3, &[])), false);
    assert_eq!(registry.close_affected(&Affected::User(UserRef::subject("sub-ada@x.example")), &snapshot, 0).0, 1);
    assert!(three.cancelled.is_cancelled());
}

#[test]
fn a_policy_change_closes_connections_it_no_longer_allows() {
    let registry = ConnRegistry::new();
    let (dev, ops) = (registry.register(key(1)), registry.register(key(2)));
    registry.bind(key(1), binding(identity("dev@x.example", 1, &["dev"])), false);
    registry.bind(key(2), binding(identity("ops@x.example", 2, &["ops"])), false);
    assert_eq!(registry.close_affected(&Affected::All, &snapshot(ALLOW_DEV), 0), (1, KillReason::PolicyChanged));
    assert!(!dev.cancelled.is_cancelled() && ops.cancelled.is_cancelled());
    assert_eq!(registry.reevaluate(&snapshot(ALLOW_OPS), 0), 1);
    assert!(dev.cancelled.is_cancelled());
}

#[test]
fn closed_connections_leave_no_trace() {
    let registry = ConnRegistry::new();
    let registration = registry.register(key(1));
    registry.bind(key(1), binding(identity("ada@x.example", 1, &[])), false);
    drop(registration);
    assert!(registry.is_empty());
    assert!(registry.by_session.is_empty() && registry.by_subject.is_empty() && registry.by_email.is_empty());
    assert_eq!(
        registry.bind(key(1), binding(identity("ada@x.example", 1, &[])), false),
        BindOutcome::Closed,
        "a closed connection cannot be bound"
    );
}

#[test]
fn rebinding_to_another_session_moves_the_index() {
    let registry = ConnRegistry::new();
    let conn = registry.register(key(1));
    registry.bind(key(1), binding(identity("ada@x.example", 1, &[])), false);
    registry.bind(key(1), binding(identity("bob@x.example", 2, &[])), false);
    let snapshot = snapshot(ALLOW_DEV);
    assert_eq!(registry.close_affected(&Affected::Session(SessionId::from_bytes([1; 16])), &snapshot, 0).0, 0);
    assert_eq!(registry.close_affected(&Affected::Session(SessionId::from_bytes([2; 16])), &snapshot, 0).0, 1);
    assert!(conn.cancelled.is_cancelled());
}

#[test]
fn an_http2_connection_binds_each_identity_and_dies_with_any_of_them() {
    let registry = ConnRegistry::new();
    let conn = registry.register(key(1));
    assert_eq!(registry.bind(key(1), binding(identity("ada@x.example", 1, &[])), true), BindOutcome::Bound);
    assert_eq!(registry.bind(key(1), binding(identity("bob@x.example", 2, &[])), true), BindOutcome::Bound);
    for n in 3..=MAX_IDENTITIES_PER_CONNECTION as u8 {
        assert_eq!(registry.bind(key(1), binding(identity("c@x.example", n, &[])), true), BindOutcome::Bound);
    }
    let one_too_many = registry.bind(key(1), binding(identity("eve@x.example", 99, &[])), true);
    assert_eq!(one_too_many, BindOutcome::TooManyIdentities);
    // Ada's stream is still bound although Bob's came after it.
    let snapshot = snapshot(ALLOW_DEV);
    assert_eq!(registry.close_affected(&Affected::Session(SessionId::from_bytes([1; 16])), &snapshot, 0).0, 1);
    assert!(conn.cancelled.is_cancelled());
}

#[test]
fn anonymous_connections_are_rechecked_when_the_policy_changes() {
    const PUBLIC: &str = "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:1\n    rules:\n      - public: true\n        allow: { paths: [/public/**] }\n";
    let registry = ConnRegistry::new();
    let conn = registry.register(key(1));
    assert_eq!(registry.bind(key(1), anonymous("/public/feed"), false), BindOutcome::Bound);
    assert_eq!(registry.reevaluate(&snapshot(PUBLIC), 0), 0, "still public");
    assert_eq!(registry.reevaluate(&snapshot(ALLOW_DEV), 0), 1, "anonymous access withdrawn");
    assert!(conn.cancelled.is_cancelled());
}

#[test]
fn a_connection_closes_when_its_token_expires_and_not_before() {
    let registry = ConnRegistry::new();
    let conn = registry.register(key(1));
    let expiring = Arc::new(
        Identity::new(IdentityParts {
            subject: "sub-dev".into(),
            email: "dev@x.example".into(),
            groups: vec!["dev".into()],
            credential: Some(CredentialKind::Browser),
            session_id: Some(SessionId::from_bytes([7; 16])),
            ..IdentityParts::default()
        })
        .with_expires_at(Some(1_000)),
    );
    let mut bound = binding(expiring);
    bound.until = Some(1_000);
    registry.bind(key(1), bound, false);
    let snapshot = snapshot(ALLOW_DEV);
    registry.expire(&snapshot, 990);
    assert_eq!(registry.expire(&snapshot, 999), 0);
    assert!(!conn.cancelled.is_cancelled());
    assert_eq!(registry.expire(&snapshot, 1_000), 1);
    assert!(conn.cancelled.is_cancelled());
}

#[test]
fn a_repeat_request_refreshes_its_binding_without_a_new_one() {
    let registry = ConnRegistry::new();
    let _conn = registry.register(key(1));
    let ada = identity("ada@x.example", 1, &[]);
    registry.bind(key(1), binding(Arc::clone(&ada)), false);
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let same = |t: &BoundTarget| matches!(t, BoundTarget::Http { path, .. } if path == "/");
    let other = |t: &BoundTarget| matches!(t, BoundTarget::Http { path, .. } if path == "/other");
    assert!(registry.refresh(key(1), Some(&ada), same, ip, Some(50), false), "same identity, target, address");
    assert!(!registry.refresh(key(1), Some(&ada), other, ip, None, false), "another path needs a binding");
    assert!(!registry.refresh(key(1), None, same, ip, None, false), "anonymous is another identity");
    assert!(!registry.refresh(key(1), Some(&ada), same, "10.0.0.1".parse().unwrap(), None, false), "another address");
    // The refreshed deadline is the one that counts.
    assert_eq!(registry.expire(&snapshot(ALLOW_DEV), 49), 0);
    assert_eq!(registry.expire(&snapshot(ALLOW_DEV), 50), 1, "no dev group: closed when its deadline came");
}

/// `/dev/**` for group `dev`, `/ops/**` for group `ops`; `options` is the
/// route's options block (YAML flow mapping).
fn dev_and_ops(options: &str) -> String {
    format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:1\n    \
         options: {options}\n    rules:\n      - allow: {{ groups_any: [dev], paths: [/dev/**] }}\n      \
         - allow: {{ groups_any: [ops], paths: [/ops/**] }}\n"
    )
}

fn at(identity: Arc<Identity>, path: &str) -> Binding {
    Binding {
        target: BoundTarget::Http { host: "app.example".into(), path: path.into(), method: "GET".into() },
        ..binding(identity)
    }
}

/// `snapshot` after the next delta `OverrideGroups { user, groups }`, and
/// what it affects. The test identities' tokens say they were issued at 0.
fn with_override(mut snapshot: Snapshot, user: UserRef, groups: &[&str]) -> (Snapshot, Affected) {
    let change = portcullis_policy::Change::OverrideGroups {
        user,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        since_ms: 1_000,
        expires_at: 86_400,
    };
    let affected = snapshot.apply(&portcullis_policy::Delta { seq: snapshot.seq() + 1, change }).unwrap();
    (snapshot, affected)
}

#[test]
fn a_claims_change_closes_only_the_users_connections_the_new_groups_refuse() {
    let registry = ConnRegistry::new();
    let (dev, ops, bob_ops) = (registry.register(key(1)), registry.register(key(2)), registry.register(key(3)));
    let ada = identity("ada@x.example", 1, &["dev", "ops"]);
    registry.bind(key(1), at(Arc::clone(&ada), "/dev/socket"), false);
    registry.bind(key(2), at(ada, "/ops/socket"), false);
    registry.bind(key(3), at(identity("bob@x.example", 2, &["ops"]), "/ops/socket"), false);
    let (snapshot, affected) =
        with_override(snapshot(&dev_and_ops("{}")), UserRef::subject("sub-ada@x.example"), &["dev"]);
    assert_eq!(registry.close_affected(&affected, &snapshot, 0), (1, KillReason::ClaimsChanged));
    assert!(!dev.cancelled.is_cancelled(), "still allowed by dev");
    assert!(ops.cancelled.is_cancelled(), "allowed only by ops");
    assert!(!bob_ops.cancelled.is_cancelled(), "another user in ops is untouched");
    assert_eq!(KillReason::ClaimsChanged.as_str(), "claims_changed");
}

#[test]
fn a_claims_change_by_email_finds_the_users_connections_in_any_case() {
    let registry = ConnRegistry::new();
    let (dev, ops) = (registry.register(key(1)), registry.register(key(2)));
    let ada = identity("ada@x.example", 1, &["dev", "ops"]);
    registry.bind(key(1), at(Arc::clone(&ada), "/dev/x"), false);
    registry.bind(key(2), at(ada, "/ops/x"), false);
    let user = UserRef::Email(Arc::from("Ada@X.Example"));
    let (snapshot, affected) = with_override(snapshot(&dev_and_ops("{}")), user, &["ops"]);
    assert_eq!(registry.close_affected(&affected, &snapshot, 0), (1, KillReason::ClaimsChanged));
    assert!(dev.cancelled.is_cancelled() && !ops.cancelled.is_cancelled());
}

#[test]
fn a_route_that_keeps_live_connections_through_policy_changes_does_not_keep_them_through_claims_changes() {
    let keep = dev_and_ops("{ reevaluate_live_connections: false }");
    let registry = ConnRegistry::new();
    let (ops, other) = (registry.register(key(1)), registry.register(key(2)));
    let ada = identity("ada@x.example", 1, &["dev", "ops"]);
    registry.bind(key(1), at(Arc::clone(&ada), "/ops/x"), false);
    // An HTTP/2 connection: Ada and Bob, whom a policy change refused on a
    // route that keeps live connections.
    registry.bind(key(2), at(ada, "/dev/x"), true);
    registry.bind(key(2), at(identity("bob@x.example", 2, &["qa"]), "/ops/x"), true);
    assert_eq!(registry.reevaluate(&snapshot(&keep), 0), 0, "the route keeps Bob's stream");
    let (snapshot, affected) = with_override(snapshot(&keep), UserRef::subject("sub-ada@x.example"), &["dev"]);
    assert_eq!(registry.close_affected(&affected, &snapshot, 0), (1, KillReason::ClaimsChanged));
    assert!(ops.cancelled.is_cancelled(), "claims changes always re-check");
    assert!(!other.cancelled.is_cancelled(), "Ada is still allowed there, and Bob's binding was not re-judged");
}

#[test]
fn a_claims_change_refiles_the_deadlines_of_the_connections_it_keeps() {
    let timed = "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:1\n    \
                 rules:\n      - allow: { groups_any: [ops], paths: [/x/**] }\n      \
                 - allow: { groups_any: [dev], paths: [/x/**], logged_in_within: 1h }\n";
    let registry = ConnRegistry::new();
    let conn = registry.register(key(1));
    registry.bind(key(1), at(identity("ada@x.example", 1, &["ops"]), "/x/feed"), false);
    let (snapshot, affected) = with_override(snapshot(timed), UserRef::subject("sub-ada@x.example"), &["dev"]);
    assert_eq!(registry.close_affected(&affected, &snapshot, 0).0, 0, "dev allows it, for an hour after login");
    // auth_time 0: `logged_in_within: 1h` lapses at 3601.
    assert_eq!(registry.expire(&snapshot, 3_600), 0);
    assert!(!conn.cancelled.is_cancelled());
    assert_eq!(registry.expire(&snapshot, 3_601), 1, "the deadline the re-check filed");
    assert!(conn.cancelled.is_cancelled());
}
