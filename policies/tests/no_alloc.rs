//! `evaluate` allocates nothing for a lowercase host: on the allow path, and
//! on the paths that end in a default deny or in "log in again" (the extra
//! scan for `logged_in_within` / `max_session_age` reuses the rule index).
//! A group override costs nothing to the identities it does not cover; only
//! a covered identity is copied with its new groups.
//! An instrumented global allocator watches one evaluation at a time; this binary
//! holds a single test so no other thread allocates meanwhile.

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use portcullis_policy::{
    evaluate, Change, Delta, Facts, Identity, IdentityParts, Outcome, Policy, PolicySource, Reason, Snapshot, Target,
    UserRef,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations made while `f` runs.
fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let region = Region::new(GLOBAL);
    let value = f();
    (value, region.change().allocations + region.change().reallocations)
}

const NOW: i64 = 1_800_000_000;

#[test]
fn evaluate_allocates_nothing_allowing_denying_or_asking_for_a_fresh_login() {
    let mut rules = String::new();
    for i in 0..40 {
        rules.push_str(&format!("      - name: user{i}\n        allow: {{email: [u{i}@x.example]}}\n"));
    }
    rules.push_str("      - name: fresh\n        allow: {groups_any: [staff], logged_in_within: 1h}\n");
    let text = format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:9\n    rules:\n{rules}"
    );
    let policy = Policy::compile(PolicySource { name: "t".into(), text }).unwrap_or_else(|e| panic!("{e}"));
    let mut snapshot = Snapshot::new(1, Arc::new(policy));
    // Another user's groups are overridden: every lookup below meets a
    // non-empty user map.
    let other = Change::OverrideGroups {
        user: UserRef::email("other@x.example"),
        groups: vec![],
        since_ms: NOW * 1000,
        expires_at: NOW + 3600,
    };
    snapshot.apply(&Delta { seq: 2, change: other }).unwrap();
    let who = |email: &str, auth_age: i64| {
        Identity::new(IdentityParts {
            email: email.into(),
            groups: vec!["staff".into()],
            auth_time: NOW - auth_age,
            session_started_at: NOW - auth_age,
            ..IdentityParts::default()
        })
    };
    let cases = [
        (who("u39@x.example", 7200), Outcome::Allow, Reason::RuleMatched),
        (who("z@x.example", 60), Outcome::Allow, Reason::RuleMatched),
        (who("z@x.example", 7200), Outcome::LoginRequired, Reason::LoginTooOld),
    ];
    for (identity, outcome, reason) in &cases {
        let facts = Facts {
            target: Target::Http { host: "app.example", path: "/reports/q3", method: "GET" },
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            now: NOW,
            identity: Some(identity),
        };
        let (decision, allocated) = allocations(|| evaluate(&snapshot, &facts));
        assert_eq!((decision.outcome, decision.reason), (*outcome, *reason));
        assert_eq!(allocated, 0, "{outcome:?} / {reason:?} allocated");
    }
    // A default deny that a fresh login would not change (not in `staff`).
    let stranger = Identity::new(IdentityParts { email: "s@y.example".into(), ..IdentityParts::default() });
    let facts = Facts {
        target: Target::Http { host: "app.example", path: "/", method: "GET" },
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now: NOW,
        identity: Some(&stranger),
    };
    let (decision, allocated) = allocations(|| evaluate(&snapshot, &facts));
    assert_eq!(allocated, 0);
    assert_eq!(decision.reason, Reason::NoRuleMatched);
    // The counter sees allocations: an upper-case host is lowercased.
    let upper = Facts { target: Target::Http { host: "App.Example", path: "/", method: "GET" }, ..facts };
    assert!(allocations(|| evaluate(&snapshot, &upper)).1 > 0);
    // An identity whose groups are overridden is judged on a copy.
    let z = Change::OverrideGroups {
        user: UserRef::email("z@x.example"),
        groups: vec![],
        since_ms: NOW * 1000,
        expires_at: NOW + 3600,
    };
    snapshot.apply(&Delta { seq: 3, change: z }).unwrap();
    let facts = Facts {
        target: Target::Http { host: "app.example", path: "/reports/q3", method: "GET" },
        identity: Some(&cases[1].0),
        ..facts
    };
    let (decision, allocated) = allocations(|| evaluate(&snapshot, &facts));
    assert_eq!(decision.reason, Reason::NoRuleMatched, "no longer in staff");
    assert!(allocated > 0);
}
