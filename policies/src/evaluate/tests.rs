//! The evaluator's unit tests: rule order, anonymous callers, case-insensitive
//! routes, login-age limits and the path normal form.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;
use crate::facts::{Identity, IdentityParts};
use crate::policy::{Policy, PolicySource};

fn snapshot(rules: &str) -> Snapshot {
    let text = format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:9\n    rules:\n{rules}"
    );
    compiled(text)
}

fn compiled(text: String) -> Snapshot {
    let policy = Policy::compile(PolicySource { name: "t".into(), text }).unwrap_or_else(|e| panic!("{e}"));
    Snapshot::new(1, Arc::new(policy))
}

fn decide(snapshot: &Snapshot, path: &str, method: &str, identity: Option<&Identity>) -> (Outcome, Option<String>) {
    let facts = Facts {
        target: Target::Http { host: "app.example", path, method },
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now: 1_800_000_000,
        identity,
    };
    let decision = evaluate(snapshot, &facts);
    (decision.outcome, decision.rule.map(|r| r.name().to_owned()))
}

#[test]
fn identity_free_deny_rules_apply_to_anonymous_requests() {
    // Issue 11: `deny /export/**` then a public allow let anonymous users in.
    let snapshot = snapshot(
        "      - name: no-export\n        deny: {paths: [/export/**]}\n\
         \x20     - name: admins-only\n        deny: {paths: [/admin/**], groups_any: [staff]}\n\
         \x20     - name: anyone\n        public: true\n        allow: {}\n",
    );
    let user = Identity::new(IdentityParts { email: "u@x.example".into(), ..IdentityParts::default() });
    assert_eq!(decide(&snapshot, "/export/all.csv", "GET", None), (Outcome::Deny, Some("no-export".into())));
    assert_eq!(decide(&snapshot, "/export/all.csv", "GET", Some(&user)), (Outcome::Deny, Some("no-export".into())));
    assert_eq!(decide(&snapshot, "/page", "GET", None), (Outcome::Allow, Some("anyone".into())));
    // A deny rule that tests the user cannot match an anonymous request.
    assert_eq!(decide(&snapshot, "/admin/x", "GET", None), (Outcome::Allow, Some("anyone".into())));
}

#[test]
fn anonymous_requests_meet_deny_rules_in_order_past_the_linear_scan_limit() {
    let mut rules = String::new();
    for i in 0..20 {
        rules.push_str(&format!("      - name: user{i}\n        allow: {{email: [u{i}@x.example]}}\n"));
    }
    rules.push_str("      - name: no-delete\n        deny: {methods: [DELETE]}\n");
    rules.push_str("      - name: health\n        public: true\n        allow: {paths: [/healthz]}\n");
    let snapshot = snapshot(&rules);
    assert_eq!(decide(&snapshot, "/healthz", "DELETE", None), (Outcome::Deny, Some("no-delete".into())));
    assert_eq!(decide(&snapshot, "/healthz", "GET", None), (Outcome::Allow, Some("health".into())));
    assert_eq!(decide(&snapshot, "/other", "GET", None), (Outcome::LoginRequired, None));
    // A deny rule that needs no login is not a reason to ask for one.
    assert_eq!(decide(&snapshot, "/other", "DELETE", None), (Outcome::Deny, Some("no-delete".into())));
}

#[test]
fn case_insensitive_routes_judge_the_lowercased_path() {
    let snapshot = compiled(
        "version: 1\nroutes:\n\
         \x20 - name: root\n    host: app.example\n    upstream: http://127.0.0.1:9\n    rules:\n\
         \x20     - public: true\n        allow: {}\n\
         \x20 - name: iis\n    host: app.example\n    path: /legacy\n    upstream: http://127.0.0.1:9\n\
         \x20   options: {case_insensitive_paths: true}\n    rules:\n\
         \x20     - name: no-admin\n        deny: {paths: [/legacy/admin/**]}\n\
         \x20     - name: anyone\n        public: true\n        allow: {}\n"
            .to_owned(),
    );
    for path in ["/legacy/admin/x", "/LEGACY/Admin/x", "/Legacy/ADMIN/%C3%A9"] {
        let facts = Facts {
            target: Target::Http { host: "app.example", path, method: "GET" },
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            now: 0,
            identity: None,
        };
        let decision = evaluate(&snapshot, &facts);
        assert_eq!(decision.route.map(Route::name), Some("iis"), "{path}");
        assert_eq!(decision.rule.map(Rule::name), Some("no-admin"), "{path}");
    }
    // Other routes keep matching case-sensitively.
    assert_eq!(decide(&snapshot, "/legacyx", "GET", None), (Outcome::Allow, Some("rule-1".into())));
}

const NOW: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

fn logged_in(groups: &[&str], auth_age: i64, session_age: i64) -> Identity {
    Identity::new(IdentityParts {
        email: "u@x.example".into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        auth_time: NOW - auth_age,
        session_started_at: NOW - session_age,
        issued_at: NOW - session_age,
        ..IdentityParts::default()
    })
}

fn judged(snapshot: &Snapshot, path: &str, identity: Option<&Identity>) -> (Outcome, Reason, Option<String>, String) {
    let facts = Facts {
        target: Target::Http { host: "app.example", path, method: "GET" },
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now: NOW,
        identity,
    };
    let decision = evaluate(snapshot, &facts);
    (decision.outcome, decision.reason, decision.rule.map(|r| r.name().to_owned()), decision.to_string())
}

#[test]
fn a_stale_login_is_not_asked_to_log_in_again_when_a_fresh_one_would_not_help() {
    // Hostile first: the relaxation must not turn a default deny into a
    // login prompt when the caller would still be refused after logging in.
    let snapshot = snapshot(
        "      - name: admins\n        allow: {groups_any: [admins], logged_in_within: 1h}\n\
         \x20     - name: young\n        allow: {groups_any: [staff], max_session_age: 2h, paths: [/staff/**]}\n",
    );
    let stale_outsider = logged_in(&["staff"], 5 * HOUR, 5 * HOUR);
    let (outcome, reason, rule, _) = judged(&snapshot, "/admin", Some(&stale_outsider));
    assert_eq!((outcome, reason, rule), (Outcome::Deny, Reason::NoRuleMatched, None));
    // A deny rule that matches once login age is left out comes first: no prompt.
    let snapshot = self::snapshot(
        "      - name: odd-deny\n        deny: {groups_any: [admins], logged_in_within: 30m}\n\
         \x20     - name: admins\n        allow: {groups_any: [admins], logged_in_within: 1h}\n",
    );
    let stale_admin = logged_in(&["admins"], 2 * HOUR, 2 * HOUR);
    let (outcome, reason, rule, _) = judged(&snapshot, "/", Some(&stale_admin));
    assert_eq!((outcome, reason, rule), (Outcome::Deny, Reason::NoRuleMatched, None));
    // A deny rule that matches as is still decides.
    let snapshot = self::snapshot(
        "      - name: admins\n        allow: {groups_any: [admins], logged_in_within: 1h}\n\
         \x20     - name: no-admin\n        deny: {paths: [/admin/**]}\n",
    );
    let (outcome, reason, rule, _) = judged(&snapshot, "/admin/x", Some(&stale_admin));
    assert_eq!((outcome, reason, rule.as_deref()), (Outcome::Deny, Reason::RuleMatched, Some("no-admin")));
    // Anonymous callers keep the plain login prompt.
    let (outcome, reason, rule, _) = judged(&snapshot, "/x", None);
    assert_eq!((outcome, reason, rule), (Outcome::LoginRequired, Reason::LoginRequired, None));
}

#[test]
fn a_lapsed_login_age_limit_asks_for_a_fresh_login() {
    let snapshot = snapshot(
        "      - name: admins\n        allow: {groups_any: [admins], logged_in_within: 12h}\n\
         \x20     - name: staff\n        allow: {groups_any: [staff], max_session_age: 1h30m}\n",
    );
    let fresh = logged_in(&["admins"], 12 * HOUR, 13 * HOUR);
    assert_eq!(judged(&snapshot, "/", Some(&fresh)).0, Outcome::Allow, "the limit itself still holds");
    let stale = logged_in(&["admins"], 12 * HOUR + 1, 13 * HOUR);
    let (outcome, reason, rule, message) = judged(&snapshot, "/", Some(&stale));
    assert_eq!((outcome, reason, rule.as_deref()), (Outcome::LoginRequired, Reason::LoginTooOld, Some("admins")));
    assert_eq!(message, "log in again: route `app` requires a login within the last 12h");
    let facts = Facts {
        target: Target::Http { host: "app.example", path: "/", method: "GET" },
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now: NOW,
        identity: Some(&stale),
    };
    assert_eq!(evaluate(&snapshot, &facts).login_max_age(), Some(12 * 3600));
    assert_eq!(evaluate(&snapshot, &Facts { identity: None, ..facts }).login_max_age(), None);
    let old_session = logged_in(&["staff"], 0, 2 * HOUR);
    let (outcome, reason, rule, message) = judged(&snapshot, "/", Some(&old_session));
    assert_eq!((outcome, reason, rule.as_deref()), (Outcome::LoginRequired, Reason::LoginTooOld, Some("staff")));
    assert_eq!(message, "log in again: route `app` requires a login within the last 1h30m");
}

#[test]
fn login_too_old_is_found_through_the_rule_index_and_on_tcp_routes() {
    let mut rules = String::new();
    for i in 0..20 {
        rules.push_str(&format!("      - name: user{i}\n        allow: {{email: [u{i}@x.example]}}\n"));
    }
    rules.push_str(
        "      - name: reports\n        allow: {paths: [/reports/**], groups_any: [staff], logged_in_within: 1h}\n",
    );
    let snapshot = snapshot(&rules);
    let stale = logged_in(&["staff"], 2 * HOUR, 2 * HOUR);
    let (outcome, reason, rule, _) = judged(&snapshot, "/reports/q3", Some(&stale));
    assert_eq!((outcome, reason, rule.as_deref()), (Outcome::LoginRequired, Reason::LoginTooOld, Some("reports")));
    assert_eq!(judged(&snapshot, "/other", Some(&stale)).1, Reason::NoRuleMatched);

    let tcp = compiled(
        "version: 1\nroutes:\n  - name: ssh\n    tcp: ssh.internal:22\n    upstream: 127.0.0.1:22\n    rules:\n\
         \x20     - name: fresh\n        allow: {groups_any: [staff], logged_in_within: 10m}\n"
            .to_owned(),
    );
    let facts = Facts {
        target: Target::Tcp { name: "ssh.internal:22" },
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now: NOW,
        identity: Some(&stale),
    };
    let decision = evaluate(&tcp, &facts);
    assert_eq!((decision.outcome, decision.reason), (Outcome::LoginRequired, Reason::LoginTooOld));
    assert_eq!(decision.to_string(), "log in again: route `ssh` requires a login within the last 10m");
}

#[test]
fn path_normal_form() {
    for ok in ["/", "/a", "/a/b/", "/a.b/c..d", "/%41", "/x%20y"] {
        assert!(is_normalized_path(ok), "{ok}");
    }
    for bad in ["", "a", "//", "/a//b", "/a/./b", "/a/..", "/..", "/a%2fb", "/%2E%2E/x", "/a\\b", "/%5C"] {
        assert!(!is_normalized_path(bad), "{bad}");
    }
}

#[test]
fn rule_checks_name_the_condition_each_rule_failed() {
    let snapshot = snapshot(
        "      - name: admins\n        allow: {groups_any: [admins]}\n\
         \x20     - name: writers\n        allow: {methods: [POST], groups_all: [eng, writers]}\n\
         \x20     - name: office\n        allow: {source_ip: [10.0.0.0/8]}\n\
         \x20     - name: fresh\n        allow: {groups_any: [eng], logged_in_within: 1h}\n\
         \x20     - name: docs\n        allow: {paths: [/docs/**]}\n",
    );
    let eng = logged_in(&["eng"], 2 * HOUR, 2 * HOUR);
    let facts = Facts {
        target: Target::Http { host: "app.example", path: "/docs/a?x=1", method: "GET" },
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now: NOW,
        identity: Some(&eng),
    };
    let checks = rule_checks(&snapshot, &facts);
    let seen: Vec<(&str, Option<&str>)> = checks.iter().map(|c| (c.rule.name(), c.failed.as_deref())).collect();
    assert_eq!(
        seen,
        [
            ("admins", Some("`groups_any` [admins] — the user is in [eng]")),
            ("writers", Some("`methods` [POST] — the request is GET")),
            ("office", Some("`source_ip` [10.0.0.0/8] — the client is 127.0.0.1")),
            ("fresh", Some("`logged_in_within` 1h — the user logged in 2h ago")),
            ("docs", None),
        ]
    );
    assert_eq!(evaluate(&snapshot, &facts).rule.map(Rule::name), Some("docs"));

    // Past the deciding rule nothing is listed; with none deciding, all are.
    let post = Facts { target: Target::Http { host: "app.example", path: "/x", method: "POST" }, ..facts };
    let checks = rule_checks(&snapshot, &post);
    assert_eq!(checks.len(), 5);
    assert_eq!(checks[1].failed.as_deref(), Some("`groups_all` [eng, writers] — the user is not in [writers]"));
    assert_eq!(checks[4].failed.as_deref(), Some("`paths` [/docs/**] — the path is /x"));

    // Anonymous callers meet only public rules; no route, no checks.
    let anonymous = rule_checks(&snapshot, &Facts { identity: None, ..facts });
    assert_eq!(anonymous[0].failed.as_deref(), Some("the rule is not `public` — no login was presented"));
    let elsewhere = Facts { target: Target::Http { host: "other.example", path: "/", method: "GET" }, ..facts };
    assert!(rule_checks(&snapshot, &elsewhere).is_empty());
}
