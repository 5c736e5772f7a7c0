//! The route option `reauth_after`: every allow rule of the route that needs
//! a login behaves as if it said `logged_in_within: <reauth_after>`, keeping
//! its own limit when that is smaller; deny rules and `public: true` rules are
//! left as written. The first test pins the promise as an equivalence: every
//! decision on a route with the option is the decision on the same route with
//! the limits written into its rules by hand. The others name the cases.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use portcullis_policy::{
    evaluate, holds_until, ClaimValue, CredentialKind, Facts, Identity, IdentityParts, Outcome, Policy, PolicySource,
    Reason, Snapshot, Target,
};

const NOW: i64 = 1_800_000_000;
const MINUTE: i64 = 60;
const HOUR: i64 = 3600;

/// `payroll` (HTTP) with `reauth_after: 15m` and `db` (TCP) with `10m`.
const WITH_OPTION: &str = "\
version: 1
condition_sets:
  fresh: { logged_in_within: 5m }
  lax: { logged_in_within: 1h }
routes:
  - name: payroll
    host: payroll.corp.example
    upstream: http://10.0.0.9:8080
    options: { reauth_after: 15m }
    rules:
      - name: health
        public: true
        allow: { paths: [/healthz] }
      - name: no-interns
        deny: { groups_any: [interns], paths: [/salaries/**] }
      - name: approvals
        allow: { groups_any: [approvers], paths: [/approve/**], logged_in_within: 5m }
      - name: audit
        allow: { groups_any: [auditors], logged_in_within: 8h }
      - name: admins
        allow: { groups_any: [payroll-admins], use: [fresh] }
      - name: viewers
        allow: { groups_any: [viewers], use: [lax] }
      - name: sync
        allow: { credential: [service], claims: { client_id: { equals: payroll-sync } } }
      - name: finance
        allow: { groups_any: [finance, interns] }
  - name: db
    tcp: db.internal:5432
    upstream: 10.0.0.10:5432
    options: { reauth_after: 10m }
    rules:
      - name: dba
        allow: { groups_any: [dba] }
";

/// The same routes with the option's limit written into each allow rule
/// that needs a login (the smaller one where the rule has its own).
const WRITTEN_OUT: &str = "\
version: 1
condition_sets:
  fresh: { logged_in_within: 5m }
  lax: { logged_in_within: 1h }
routes:
  - name: payroll
    host: payroll.corp.example
    upstream: http://10.0.0.9:8080
    rules:
      - name: health
        public: true
        allow: { paths: [/healthz] }
      - name: no-interns
        deny: { groups_any: [interns], paths: [/salaries/**] }
      - name: approvals
        allow: { groups_any: [approvers], paths: [/approve/**], logged_in_within: 5m }
      - name: audit
        allow: { groups_any: [auditors], logged_in_within: 15m }
      - name: admins
        allow: { groups_any: [payroll-admins], use: [fresh], logged_in_within: 15m }
      - name: viewers
        allow: { groups_any: [viewers], use: [lax], logged_in_within: 15m }
      - name: sync
        allow: { credential: [service], claims: { client_id: { equals: payroll-sync } }, logged_in_within: 15m }
      - name: finance
        allow: { groups_any: [finance, interns], logged_in_within: 15m }
  - name: db
    tcp: db.internal:5432
    upstream: 10.0.0.10:5432
    rules:
      - name: dba
        allow: { groups_any: [dba], logged_in_within: 10m }
";

fn snapshot(text: &str) -> Snapshot {
    let policy =
        Policy::compile(PolicySource { name: "p.yaml".into(), text: text.into() }).unwrap_or_else(|e| panic!("{e}"));
    Snapshot::new(1, Arc::new(policy))
}

/// A user in `groups` who logged in at the IdP `auth_age` seconds ago (the
/// session started then too).
fn user(groups: &[&str], auth_age: i64) -> Identity {
    Identity::new(IdentityParts {
        email: "u@corp.example".into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        credential: Some(CredentialKind::Browser),
        auth_time: NOW - auth_age,
        session_started_at: NOW - auth_age,
        issued_at: NOW - auth_age,
        ..IdentityParts::default()
    })
}

/// A service token issued `age` seconds ago: no IdP login, so the edge gives
/// it the token's issue time as `auth_time`.
fn service(age: i64) -> Identity {
    Identity::new(IdentityParts {
        subject: "svc-payroll-sync".into(),
        claims: vec![("client_id".into(), ClaimValue::One("payroll-sync".into()))],
        credential: Some(CredentialKind::Service),
        auth_time: NOW - age,
        session_started_at: NOW - age,
        issued_at: NOW - age,
        ..IdentityParts::default()
    })
}

/// Everything a decision says: outcome, reason, rule, the `max_age` a fresh
/// login is asked for, the message, and until when it holds.
type Judged = (Outcome, Reason, Option<String>, Option<u32>, String, Option<i64>);

fn judge(snapshot: &Snapshot, target: Target<'_>, identity: Option<&Identity>) -> Judged {
    let facts = Facts { target, source_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), now: NOW, identity };
    let decision = evaluate(snapshot, &facts);
    (
        decision.outcome,
        decision.reason,
        decision.rule.map(|r| r.name().to_owned()),
        decision.login_max_age(),
        decision.to_string(),
        holds_until(snapshot, &facts, &decision),
    )
}

fn get(path: &str) -> Target<'_> {
    Target::Http { host: "payroll.corp.example", path, method: "GET" }
}

#[test]
fn the_option_decides_exactly_like_the_limits_written_into_the_allow_rules() {
    let (with_option, written_out) = (snapshot(WITH_OPTION), snapshot(WRITTEN_OUT));
    let groups: &[&[&str]] =
        &[&[], &["finance"], &["interns"], &["approvers"], &["auditors"], &["payroll-admins"], &["viewers"], &["dba"]];
    let ages = [0, MINUTE, 4 * MINUTE, 5 * MINUTE + 1, 10 * MINUTE, 15 * MINUTE, 15 * MINUTE + 1, 2 * HOUR, 9 * HOUR];
    let mut identities: Vec<Option<Identity>> = vec![None];
    for age in ages {
        identities.extend(groups.iter().map(|g| Some(user(g, age))));
        identities.push(Some(service(age)));
    }
    let targets =
        [get("/"), get("/healthz"), get("/salaries/x"), get("/approve/7"), Target::Tcp { name: "db.internal:5432" }];
    let mut login_too_old = 0;
    for identity in &identities {
        for target in targets {
            let expected = judge(&written_out, target, identity.as_ref());
            assert_eq!(judge(&with_option, target, identity.as_ref()), expected, "{target:?} {identity:?}");
            login_too_old += usize::from(expected.1 == Reason::LoginTooOld);
        }
    }
    assert!(login_too_old > 20, "the matrix reaches stale logins ({login_too_old})");
}

#[test]
fn an_old_login_is_asked_to_log_in_again_with_the_options_max_age() {
    let snapshot = snapshot(WITH_OPTION);
    let (outcome, reason, rule, max_age, message, _) = judge(&snapshot, get("/"), Some(&user(&["finance"], HOUR)));
    assert_eq!(
        (outcome, reason, rule.as_deref(), max_age),
        (Outcome::LoginRequired, Reason::LoginTooOld, Some("finance"), Some(900))
    );
    assert_eq!(message, "log in again: route `payroll` requires a login within the last 15m");
    // The limit itself still holds, and the admission lasts until it lapses.
    let fresh = judge(&snapshot, get("/"), Some(&user(&["finance"], 15 * MINUTE)));
    assert_eq!((fresh.0, fresh.2.as_deref()), (Outcome::Allow, Some("finance")));
    let recent = judge(&snapshot, get("/"), Some(&user(&["finance"], 10 * MINUTE)));
    assert_eq!(recent.5, Some(NOW - 10 * MINUTE + 15 * MINUTE + 1), "the connection is re-checked when 15m pass");
    // TCP routes too.
    let tcp = judge(&snapshot, Target::Tcp { name: "db.internal:5432" }, Some(&user(&["dba"], 11 * MINUTE)));
    assert_eq!((tcp.0, tcp.1, tcp.3), (Outcome::LoginRequired, Reason::LoginTooOld, Some(600)));
    assert_eq!(
        judge(&snapshot, Target::Tcp { name: "db.internal:5432" }, Some(&user(&["dba"], 9 * MINUTE))).0,
        Outcome::Allow
    );
}

#[test]
fn a_rule_keeps_the_stricter_of_its_own_limit_and_the_option() {
    let snapshot = snapshot(WITH_OPTION);
    let max_age = |path, groups, age| {
        let (outcome, reason, rule, max_age, ..) = judge(&snapshot, get(path), Some(&user(groups, age)));
        (outcome, reason, rule, max_age)
    };
    let stale = |rule: &str, secs| (Outcome::LoginRequired, Reason::LoginTooOld, Some(rule.to_owned()), Some(secs));
    // Its own `logged_in_within: 5m` is smaller: kept.
    assert_eq!(max_age("/approve/7", &["approvers"], 10 * MINUTE), stale("approvals", 300));
    assert_eq!(max_age("/approve/7", &["approvers"], 4 * MINUTE).0, Outcome::Allow);
    // Its own `logged_in_within: 8h` is larger: capped at 15m.
    assert_eq!(max_age("/", &["auditors"], HOUR), stale("audit", 900));
    assert_eq!(max_age("/", &["auditors"], 10 * MINUTE).0, Outcome::Allow);
    // The same through a condition set: 5m kept, 1h capped.
    assert_eq!(max_age("/", &["payroll-admins"], 10 * MINUTE), stale("admins", 300));
    assert_eq!(max_age("/", &["viewers"], 30 * MINUTE), stale("viewers", 900));
}

#[test]
fn deny_rules_are_left_as_written() {
    let snapshot = snapshot(WITH_OPTION);
    // An old login still meets the deny rule (were the limit added to it,
    // the deny would no longer match and the answer would be a default deny).
    for age in [MINUTE, 9 * HOUR] {
        let (outcome, reason, rule, ..) = judge(&snapshot, get("/salaries/x"), Some(&user(&["interns"], age)));
        assert_eq!((outcome, reason, rule.as_deref()), (Outcome::Deny, Reason::RuleMatched, Some("no-interns")));
    }
    let route = &snapshot.policy().routes()[0];
    assert!(route.rules().iter().any(|r| r.name() == "no-interns" && !r.applies_to_anonymous()));
}

#[test]
fn public_rules_stay_public() {
    // A public allow needs no login, so the option must not make it ask for
    // one: anonymous callers and old logins alike are let through.
    let snapshot = snapshot(WITH_OPTION);
    let health = snapshot.policy().routes()[0].rules().iter().find(|r| r.name() == "health").unwrap();
    assert!(health.is_public() && health.applies_to_anonymous());
    for identity in [None, Some(user(&["finance"], 9 * HOUR)), Some(user(&[], 9 * HOUR))] {
        let (outcome, reason, rule, max_age, ..) = judge(&snapshot, get("/healthz"), identity.as_ref());
        assert_eq!(
            (outcome, reason, rule.as_deref(), max_age),
            (Outcome::Allow, Reason::RuleMatched, Some("health"), None)
        );
    }
    // Elsewhere an anonymous caller gets the plain login prompt, no `max_age`.
    let (outcome, reason, _, max_age, ..) = judge(&snapshot, get("/"), None);
    assert_eq!((outcome, reason, max_age), (Outcome::LoginRequired, Reason::LoginRequired, None));
}

#[test]
fn service_tokens_are_judged_like_with_logged_in_within() {
    // A service token has no IdP login; its issue time stands in for one, as
    // it does for `logged_in_within`: an older token is told to log in again.
    let snapshot = snapshot(WITH_OPTION);
    let (outcome, reason, rule, max_age, ..) = judge(&snapshot, get("/"), Some(&service(HOUR)));
    assert_eq!(
        (outcome, reason, rule.as_deref(), max_age),
        (Outcome::LoginRequired, Reason::LoginTooOld, Some("sync"), Some(900))
    );
    let (outcome, _, rule, ..) = judge(&snapshot, get("/"), Some(&service(MINUTE)));
    assert_eq!((outcome, rule.as_deref()), (Outcome::Allow, Some("sync")));
}

#[test]
fn a_rule_the_option_makes_redundant_is_reported() {
    // Without the option the second rule lets in logins up to 1h old that
    // the first refuses; with it both need a login within 15m, so the second
    // can never match and `policy check` says so, as for any shadowed rule.
    let rules = "    rules:\n      - name: quick\n        allow: { groups_any: [finance], logged_in_within: 30m }\n\
                 \x20     - name: slow\n        allow: { groups_any: [finance], logged_in_within: 1h }\n";
    let text = |options: &str| {
        format!("version: 1\nroutes:\n  - name: payroll\n    host: payroll.corp.example\n    upstream: http://10.0.0.9:8080\n{options}{rules}")
    };
    let compile =
        |text: String| Policy::compile(PolicySource { name: "p.yaml".into(), text }).map_err(|e| e.to_string());
    assert!(compile(text("")).is_ok());
    assert_eq!(
        compile(text("    options: { reauth_after: 15m }\n")).unwrap_err(),
        "p.yaml:10:9: error: rule `slow` can never match: rule `quick` at line 8 comes first and matches every \
         request it would; move it above rule `quick`, or remove it"
    );
}
