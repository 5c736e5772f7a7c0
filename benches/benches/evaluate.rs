//! The per-request decision: `evaluate(&Snapshot, &Facts)` with 10, 1,000 and
//! 10,000 rules in three shapes (see `RuleShape`), plus the full per-request
//! check (revocation lookups against 100k terminated sessions + evaluate).
//! Target: ≤ 1 µs median at 1,000 rules.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis_benches::{identity, policy, snapshot, Rng, RuleShape};
use portcullis_policy::{evaluate, Facts, Outcome, Snapshot, Target};

const NOW: i64 = 1_795_000_000;
const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

fn bench_evaluate(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate");
    for rules in [10usize, 1_000, 10_000] {
        let last = rules - 1;
        let session = Rng::new(7).session_id();
        let cases: [(RuleShape, String, String, String); 3] = [
            (RuleShape::PerUserOneRoute, format!("user{last}@corp.example"), "app.corp.example".into(), "/x".into()),
            (RuleShape::PerPathOneRoute, "dev@corp.example".into(), "app.corp.example".into(), format!("/p{last}/x")),
            (
                RuleShape::TenPerRoute,
                "dev@corp.example".into(),
                format!("app{}.corp.example", rules / 10 - 1),
                "/p9/x".into(),
            ),
        ];
        for (shape, email, host, path) in cases {
            let snapshot = Snapshot::new(1, policy(rules, shape));
            let who = identity(&email, &["dev", "team9"], session, NOW);
            let facts = Facts {
                target: Target::Http { host: &host, path: &path, method: "GET" },
                source_ip: IP,
                now: NOW,
                identity: Some(&who),
            };
            assert_eq!(evaluate(&snapshot, &facts).outcome, Outcome::Allow, "{shape:?} {rules}");
            group.bench_with_input(BenchmarkId::new(format!("{shape:?}"), rules), &facts, |b, facts| {
                b.iter(|| evaluate(black_box(&snapshot), black_box(facts)).outcome)
            });
        }
    }
    group.finish();
}

fn bench_per_request_check(c: &mut Criterion) {
    let mut base = snapshot(100_000, 11);
    let policy = policy(1_000, RuleShape::TenPerRoute);
    base = {
        let mut body = base.to_body();
        body.policy = policy.source().clone();
        Snapshot::from_body(body).expect("compiles")
    };
    let who = identity("dev@corp.example", &["dev", "team3"], Rng::new(99).session_id(), NOW);
    let facts = Facts {
        target: Target::Http { host: "app42.corp.example", path: "/p3/reports", method: "GET" },
        source_ip: IP,
        now: NOW,
        identity: Some(&who),
    };
    assert_eq!(evaluate(&base, &facts).outcome, Outcome::Allow);
    c.bench_function("per_request_check/100k_terminated_1000_rules", |b| {
        b.iter(|| evaluate(black_box(&base), black_box(&facts)).outcome)
    });
}

criterion_group!(benches, bench_evaluate, bench_per_request_check);
criterion_main!(benches);
