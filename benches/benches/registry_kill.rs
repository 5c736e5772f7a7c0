//! The edge's kill path with the closed-connection record (issue 17): a
//! user with 1,000 live connections among 10,000 is terminated —
//! `close_affected` finds them, cancels each token, and remembers each
//! closed binding for the report (one lock per kill). Then the report side:
//! `ActivityLog::closed_connections` sums them per session, route, source
//! and reason (off the kill path, once a second), and the steady report of
//! an edge with 11,000 live connections. Figures in `benches/RESULTS.md`.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use portcullis_edge::activity::ActivityLog;
use portcullis_edge::registry::{Binding, BoundTarget, ConnKey, ConnRegistry, Registration};
use portcullis_policy::snapshot::Affected;
use portcullis_policy::{CredentialKind, Identity, IdentityParts, Policy, PolicySource, SessionId, Snapshot, UserRef};

const OTHERS: usize = 10_000;
const VICTIM_CONNECTIONS: usize = 1_000;

fn identity(user: usize, session: u128) -> Arc<Identity> {
    Arc::new(Identity::new(IdentityParts {
        subject: format!("sub-{user}"),
        email: format!("user{user}@corp.example"),
        credential: Some(CredentialKind::Browser),
        session_id: Some(SessionId::from_bytes(session.to_be_bytes())),
        ..IdentityParts::default()
    }))
}

fn key(n: usize) -> ConnKey {
    let ip = IpAddr::from(((10u32 << 24) | n as u32).to_be_bytes());
    ConnKey { peer: SocketAddr::new(ip, 40_000), local: SocketAddr::from(([127, 0, 0, 1], 8080)) }
}

fn bind(registry: &Arc<ConnRegistry>, n: usize, identity: Arc<Identity>) -> Registration {
    let registration = registry.register(key(n));
    let binding = Binding {
        identity: Some(identity),
        target: BoundTarget::Http { host: "chat.corp.example".into(), path: "/ws".into(), method: "GET".into() },
        client_ip: key(n).peer.ip(),
        until: None,
    };
    registry.bind(key(n), binding, false);
    registration
}

/// 10,000 other users' connections, and the victim's 1,000 (10 sessions).
fn world() -> (Arc<ConnRegistry>, Vec<Registration>) {
    let registry = ConnRegistry::new();
    let mut held = Vec::new();
    for n in 0..OTHERS {
        held.push(bind(&registry, n, identity(n, n as u128)));
    }
    let sessions: Vec<Arc<Identity>> = (0..10).map(|s| identity(999_999, 1_000_000 + s)).collect();
    for n in 0..VICTIM_CONNECTIONS {
        held.push(bind(&registry, OTHERS + n, Arc::clone(&sessions[n % 10])));
    }
    (registry, held)
}

fn snapshot() -> Snapshot {
    let yaml = "version: 1\nroutes:\n  - name: chat\n    host: chat.corp.example\n    upstream: http://127.0.0.1:1\n    rules:\n      - allow: { email_domain: corp.example }\n";
    Snapshot::new(1, Arc::new(Policy::compile(PolicySource { name: "b".into(), text: yaml.into() }).expect("policy")))
}

fn kill(c: &mut Criterion) {
    let snapshot = snapshot();
    let victim = Affected::User(UserRef::subject("sub-999999"));
    let mut group = c.benchmark_group("registry_kill");
    group.sample_size(20);
    group.bench_function("terminate_user_1000_of_11000", |b| {
        b.iter_batched(
            world,
            |(registry, held)| {
                let closed = registry.close_affected(&victim, &snapshot, 0);
                assert_eq!(closed.0, VICTIM_CONNECTIONS);
                (registry, held)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("report_sums_1000_closed", |b| {
        let log = ActivityLog::default();
        b.iter_batched(
            || {
                let (registry, held) = world();
                registry.close_affected(&victim, &snapshot, 0);
                (registry, held)
            },
            |(registry, held)| {
                log.closed_connections(&registry, Some(&snapshot));
                (registry, held)
            },
            BatchSize::PerIteration,
        )
    });
    // A steady report of an edge with 11,000 live connections in 10,010
    // sessions: live counts compared with the last report, sightings of
    // sessions with live connections due every 30 s (none here).
    group.bench_function("report_batch_10010_live_sessions", |b| {
        let (registry, _held) = world();
        let log = ActivityLog::default();
        log.commit(log.batch(&registry, 1_000));
        b.iter(|| black_box(log.batch(&registry, 2_000)))
    });
    group.finish();
}

criterion_group!(benches, kill);
criterion_main!(benches);
