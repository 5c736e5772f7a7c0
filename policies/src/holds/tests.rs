//! Deadlines against re-evaluation: at the deadline the answer may change,
//! before it the answer is the same.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::evaluate::{evaluate, Outcome};
use crate::facts::{Identity, IdentityParts, Target};
use crate::ids::UserRef;
use crate::policy::{Policy, PolicySource};
use crate::snapshot::{Change, Delta, Lock};

/// 2026-11-23 10:00 Europe/Berlin, a Monday.
const MONDAY_10: i64 = 1_795_424_400;
const HOUR: i64 = 3600;

fn snapshot(rules: &str) -> Snapshot {
    let text = format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:9\n    rules:\n{rules}"
    );
    Snapshot::new(1, Arc::new(Policy::compile(PolicySource { name: "t".into(), text }).unwrap()))
}

fn user(groups: &[&str], auth_age: i64, expires_at: Option<i64>) -> Identity {
    Identity::new(IdentityParts {
        subject: "u1".into(),
        email: "u@corp.example".into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        auth_time: MONDAY_10 - auth_age,
        session_started_at: MONDAY_10 - auth_age,
        ..IdentityParts::default()
    })
    .with_expires_at(expires_at)
}

fn facts<'a>(path: &'a str, now: i64, identity: Option<&'a Identity>) -> Facts<'a> {
    Facts {
        target: Target::Http { host: "app.example", path, method: "GET" },
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now,
        identity,
    }
}

fn deadline(snapshot: &Snapshot, facts: &Facts<'_>) -> Option<i64> {
    holds_until(snapshot, facts, &evaluate(snapshot, facts))
}

const OFFICE_HOURS: &str = "{days: [weekdays], hours: \"08:00-19:00\", timezone: Europe/Berlin}";

#[test]
fn an_expired_identity_holds_nothing() {
    let snapshot = snapshot("      - allow: {}\n");
    let expired = user(&[], HOUR, Some(MONDAY_10));
    assert_eq!(deadline(&snapshot, &facts("/", MONDAY_10, Some(&expired))), Some(MONDAY_10));
    let later = user(&[], HOUR, Some(MONDAY_10 + 60));
    assert_eq!(deadline(&snapshot, &facts("/", MONDAY_10, Some(&later))), Some(MONDAY_10 + 60));
    let forever = user(&[], HOUR, None);
    assert_eq!(deadline(&snapshot, &facts("/", MONDAY_10, Some(&forever))), None);
}

#[test]
fn a_time_window_ends_the_admission() {
    let snapshot = snapshot(&format!("      - name: office\n        allow: {{time: {OFFICE_HOURS}}}\n"));
    let who = user(&[], HOUR, Some(MONDAY_10 + 12 * HOUR));
    let now = facts("/", MONDAY_10, Some(&who));
    assert!(evaluate(&snapshot, &now).is_allowed());
    // 19:00 Berlin is 18:00 UTC, nine hours after 10:00 Berlin; earlier than the expiry.
    let end = MONDAY_10 + 9 * HOUR;
    assert_eq!(deadline(&snapshot, &now), Some(end));
    assert!(evaluate(&snapshot, &facts("/", end - 1, Some(&who))).is_allowed());
    assert!(!evaluate(&snapshot, &facts("/", end, Some(&who))).is_allowed());
    // The expiry wins when it comes first.
    let soon = user(&[], HOUR, Some(MONDAY_10 + 60));
    assert_eq!(deadline(&snapshot, &facts("/", MONDAY_10, Some(&soon))), Some(MONDAY_10 + 60));
}

#[test]
fn login_age_limits_run_out() {
    let snapshot = snapshot(
        "      - name: fresh\n        allow: {logged_in_within: 12h}\n\
         \x20     - name: young-session\n        allow: {max_session_age: 20h}\n",
    );
    let who = user(&[], 11 * HOUR, None);
    let now = facts("/", MONDAY_10, Some(&who));
    let lapse = MONDAY_10 + HOUR + 1;
    assert_eq!(deadline(&snapshot, &now), Some(lapse));
    assert_eq!(evaluate(&snapshot, &facts("/", lapse - 1, Some(&who))).rule.map(Rule::name), Some("fresh"));
    assert_eq!(evaluate(&snapshot, &facts("/", lapse, Some(&who))).rule.map(Rule::name), Some("young-session"));
    // Once past the first limit, the second one is the deadline.
    let later = facts("/", lapse, Some(&who));
    assert_eq!(deadline(&snapshot, &later), Some(MONDAY_10 + 9 * HOUR + 1));
}

#[test]
fn only_rules_up_to_the_deciding_one_count() {
    let snapshot = snapshot(&format!(
        "      - name: admins\n        allow: {{groups_any: [admins]}}\n\
         \x20     - name: office\n        allow: {{time: {OFFICE_HOURS}}}\n"
    ));
    let admin = user(&["admins"], HOUR, None);
    assert_eq!(deadline(&snapshot, &facts("/", MONDAY_10, Some(&admin))), None);
    let other = user(&[], HOUR, None);
    assert_eq!(deadline(&snapshot, &facts("/", MONDAY_10, Some(&other))), Some(MONDAY_10 + 9 * HOUR));
    // Default deny at 20:00: every rule counts, so the window's opening is the deadline.
    let evening = MONDAY_10 + 10 * HOUR;
    let denied = facts("/", evening, Some(&other));
    assert_eq!(evaluate(&snapshot, &denied).outcome, Outcome::Deny);
    assert_eq!(deadline(&snapshot, &denied), Some(MONDAY_10 + 22 * HOUR));
}

#[test]
fn anonymous_requests_count_only_rules_they_can_meet() {
    let snapshot = snapshot(&format!(
        "      - name: night-freeze\n        deny: {{time: {{hours: \"22:00-06:00\", timezone: UTC}}}}\n\
         \x20     - name: staff-office\n        allow: {{groups_any: [staff], time: {OFFICE_HOURS}}}\n\
         \x20     - name: status\n        public: true\n        allow: {{paths: [/status]}}\n"
    ));
    let anonymous = facts("/status", MONDAY_10, None);
    assert!(evaluate(&snapshot, &anonymous).is_allowed());
    // 10:00 Berlin is 09:00 UTC; the freeze starts at 22:00 UTC.
    assert_eq!(deadline(&snapshot, &anonymous), Some(MONDAY_10 + 13 * HOUR));
}

#[test]
fn a_lock_lifts_by_itself() {
    let mut snapshot = snapshot("      - allow: {}\n");
    let lock = Lock { until: Some(MONDAY_10 + 300), reason: "audit".into() };
    snapshot.apply(&Delta { seq: 2, change: Change::LockUser { user: UserRef::subject("u1"), lock } }).unwrap();
    let who = user(&[], HOUR, None);
    let now = facts("/", MONDAY_10, Some(&who));
    assert!(!evaluate(&snapshot, &now).is_allowed());
    assert_eq!(deadline(&snapshot, &now), Some(MONDAY_10 + 300));
}

#[test]
fn no_route_never_changes_by_time() {
    let snapshot = snapshot(&format!("      - allow: {{time: {OFFICE_HOURS}}}\n"));
    let who = user(&[], HOUR, None);
    let mut other_host = facts("/", MONDAY_10, Some(&who));
    other_host.target = Target::Http { host: "other.example", path: "/", method: "GET" };
    assert_eq!(deadline(&snapshot, &other_host), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Before the deadline the decision is the same; with no deadline it
    /// stays the same for (at least) the next nine days.
    #[test]
    fn the_decision_holds_until_the_deadline(
        now_offset in 0i64..(14 * 24 * HOUR),
        auth_age in 0i64..(30 * HOUR),
        expiry in prop::option::of(1i64..(3 * 24 * HOUR)),
        groups in prop::sample::subsequence(vec!["admins", "staff"], 0..=2),
        anonymous in prop::bool::weighted(0.2),
    ) {
        let snapshot = snapshot(&format!(
            "      - name: night-freeze\n        deny: {{time: {{hours: \"22:00-06:00\", timezone: UTC}}, paths: [/admin/**]}}\n\
             \x20     - name: admins\n        allow: {{groups_any: [admins], logged_in_within: 12h}}\n\
             \x20     - name: staff\n        allow: {{groups_any: [staff], max_session_age: 20h, time: {OFFICE_HOURS}}}\n\
             \x20     - name: status\n        public: true\n        allow: {{paths: [/admin/status], time: {{days: [sat, sun], timezone: America/New_York}}}}\n"
        ));
        let now = MONDAY_10 + now_offset;
        let who = user(&groups, auth_age - now_offset, expiry.map(|e| now + e));
        let identity = (!anonymous).then_some(&who);
        let at = |t: i64| {
            let decision = evaluate(&snapshot, &facts("/admin/status", t, identity));
            (decision.outcome, decision.rule.map(Rule::name))
        };
        let first = at(now);
        let until = deadline(&snapshot, &facts("/admin/status", now, identity));
        let horizon = until.unwrap_or(now + 9 * 24 * HOUR);
        prop_assert!(horizon > now);
        let mut t = now;
        while t < horizon {
            prop_assert_eq!(at(t), first, "changed at {} before the deadline {:?}", t, until);
            t = (t + 599).min(horizon - 1).max(t + 1);
        }
    }
}
