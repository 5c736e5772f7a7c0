//! Unit tests for group overrides (`Change::OverrideGroups`): what `apply`
//! returns, which tokens `evaluate` judges with the new groups (those issued
//! at or before `since_ms`, matched by subject or by email), that a later
//! override replaces an earlier one, that `ExpireBefore` forgets it, and that
//! `holds_until` agrees with the decision.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;
use crate::evaluate::{evaluate, Outcome, Reason};
use crate::facts::{CredentialKind, Facts, Identity, IdentityParts, Target};
use crate::holds_until;

const NOW: i64 = 1_800_000_000;
/// The instant of the override, Unix milliseconds.
const SINCE_MS: i64 = (NOW - 600) * 1000 + 250;

const POLICY: &str = "\
version: 1
routes:
  - name: app
    host: app.corp.example
    upstream: http://10.0.0.2:8080
    rules:
      - name: dev
        allow: {paths: [/dev/**], groups_any: [dev]}
      - name: ops
        allow: {paths: [/ops/**], groups_any: [ops], logged_in_within: 2h}
";

fn snapshot() -> Snapshot {
    let source = PolicySource { name: "p.yaml".into(), text: POLICY.into() };
    Snapshot::new(1, Arc::new(Policy::compile(source).unwrap()))
}

fn apply(snapshot: &mut Snapshot, change: Change) -> Affected {
    let delta = Delta { seq: snapshot.seq() + 1, change };
    snapshot.apply(&delta).unwrap_or_else(|e| panic!("{delta:?} refused: {e}"))
}

fn override_groups(user: UserRef, groups: &[&str], since_ms: i64, expires_at: i64) -> Change {
    Change::OverrideGroups { user, groups: groups.iter().map(|g| (*g).to_owned()).collect(), since_ms, expires_at }
}

/// Ada (in `dev` and `ops`) with a session token issued at `issued_ms`.
fn ada(issued_ms: i64) -> Identity {
    Identity::new(IdentityParts {
        subject: "sub-ada".into(),
        email: "Ada@Corp.Example".into(),
        groups: vec!["ops".into(), "dev".into()],
        credential: Some(CredentialKind::Browser),
        issued_at: issued_ms.div_euclid(1000),
        issued_at_ms: Some(issued_ms),
        auth_time: issued_ms.div_euclid(1000),
        session_started_at: issued_ms.div_euclid(1000),
        ..IdentityParts::default()
    })
    .with_expires_at(Some(NOW + 86_400))
}

fn facts<'a>(path: &'a str, identity: &'a Identity) -> Facts<'a> {
    Facts {
        target: Target::Http { host: "app.corp.example", path, method: "GET" },
        source_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        now: NOW,
        identity: Some(identity),
    }
}

/// The outcome and deciding rule for `identity` requesting `path`.
fn decide(snapshot: &Snapshot, path: &str, identity: &Identity) -> (Outcome, Option<String>) {
    let decision = evaluate(snapshot, &facts(path, identity));
    (decision.outcome, decision.rule.map(|r| r.name().to_owned()))
}

fn allowed_by(rule: &str) -> (Outcome, Option<String>) {
    (Outcome::Allow, Some(rule.to_owned()))
}

const DENIED: (Outcome, Option<String>) = (Outcome::Deny, None);

#[test]
fn an_override_re_judges_the_users_older_tokens_with_the_new_groups() {
    let mut s = snapshot();
    let old = ada(SINCE_MS - 60_000);
    assert_eq!(decide(&s, "/ops/x", &old), allowed_by("ops"));
    let affected = apply(&mut s, override_groups(UserRef::subject("sub-ada"), &["dev"], SINCE_MS, NOW + 86_400));
    assert_eq!(affected, Affected::UserClaims(UserRef::subject("sub-ada")), "re-check, not close all");
    assert_eq!(decide(&s, "/ops/x", &old), DENIED);
    assert_eq!(decide(&s, "/dev/x", &old), allowed_by("dev"));
    assert_eq!(evaluate(&s, &facts("/ops/x", &old)).reason, Reason::NoRuleMatched);
    // A token issued at the override's very millisecond is judged with it too.
    assert_eq!(decide(&s, "/ops/x", &ada(SINCE_MS)), DENIED);
    // Another user is not touched.
    let bob = Identity::new(IdentityParts {
        subject: "sub-bob".into(),
        email: "bob@corp.example".into(),
        groups: vec!["ops".into()],
        issued_at: NOW - 3600,
        auth_time: NOW - 3600,
        ..IdentityParts::default()
    });
    assert_eq!(decide(&s, "/ops/x", &bob), allowed_by("ops"));
}

#[test]
fn a_token_issued_after_the_override_keeps_its_own_groups() {
    let mut s = snapshot();
    apply(&mut s, override_groups(UserRef::subject("sub-ada"), &["dev"], SINCE_MS, NOW + 86_400));
    // A fresh login carries the IdP's fresh groups.
    assert_eq!(decide(&s, "/ops/x", &ada(SINCE_MS + 1)), allowed_by("ops"));
    // A token that only knows its second counts from the start of it: in
    // the override's second it is overridden (the earlier reading).
    let bearer = |issued_at: i64| {
        Identity::new(IdentityParts {
            subject: "sub-ada".into(),
            groups: vec!["ops".into()],
            issued_at,
            auth_time: issued_at,
            ..IdentityParts::default()
        })
    };
    assert_eq!(decide(&s, "/ops/x", &bearer(SINCE_MS / 1000)), DENIED);
    assert_eq!(decide(&s, "/ops/x", &bearer(SINCE_MS / 1000 + 1)), allowed_by("ops"));
}

#[test]
fn an_override_by_email_matches_whatever_the_case() {
    let mut s = snapshot();
    let user = UserRef::Email(Arc::from("ADA@corp.example"));
    apply(&mut s, override_groups(user, &[], SINCE_MS, NOW + 86_400));
    let old = ada(SINCE_MS - 1);
    assert_eq!(decide(&s, "/ops/x", &old), DENIED);
    assert_eq!(decide(&s, "/dev/x", &old), DENIED, "no groups at all");
    assert!(s.users().get(&UserRef::email("ada@corp.example")).is_some_and(|u| u.groups.is_some()));
}

#[test]
fn a_later_override_replaces_an_earlier_one() {
    let mut s = snapshot();
    let sub = UserRef::subject("sub-ada");
    apply(&mut s, override_groups(sub.clone(), &["dev"], SINCE_MS, NOW + 100));
    apply(&mut s, override_groups(sub.clone(), &["ops", "ops"], SINCE_MS + 5_000, NOW + 200));
    let old = ada(SINCE_MS - 1);
    assert_eq!(decide(&s, "/ops/x", &old), allowed_by("ops"));
    assert_eq!(decide(&s, "/dev/x", &old), DENIED);
    let state = s.users().get(&sub).unwrap();
    assert_eq!(
        state.groups,
        Some(GroupsOverride { groups: vec!["ops".into()], since_ms: SINCE_MS + 5_000, expires_at: NOW + 200 })
    );
    // Overrides under the subject and the email both apply: the later wins.
    apply(&mut s, override_groups(UserRef::email("ada@corp.example"), &["dev"], SINCE_MS + 9_000, NOW + 200));
    assert_eq!(decide(&s, "/dev/x", &old), allowed_by("dev"));
    assert_eq!(decide(&s, "/ops/x", &old), DENIED);
    // A token issued between the two instants only meets the email's.
    assert_eq!(decide(&s, "/dev/x", &ada(SINCE_MS + 7_000)), allowed_by("dev"));
}

#[test]
fn expire_before_forgets_an_override_once_no_token_it_covers_can_live() {
    let mut s = snapshot();
    let (ada_sub, other) = (UserRef::subject("sub-ada"), UserRef::subject("sub-other"));
    apply(&mut s, override_groups(ada_sub.clone(), &["dev"], SINCE_MS, NOW));
    apply(&mut s, override_groups(other.clone(), &["dev"], SINCE_MS, NOW + 1));
    apply(&mut s, Change::LockUser { user: other.clone(), lock: Lock { until: Some(NOW), reason: "x".into() } });
    assert_eq!(apply(&mut s, Change::ExpireBefore { cutoff: NOW }), Affected::Nothing);
    assert_eq!(s.users().get(&ada_sub), None, "expired at the cutoff: the user's state is gone");
    assert_eq!(s.users().get(&other).and_then(|u| u.groups.as_ref()).map(|g| g.expires_at), Some(NOW + 1));
    assert_eq!(s.users().get(&other).and_then(|u| u.lock.as_ref()), None, "the lock lifted, the override stays");
    assert_eq!(decide(&s, "/ops/x", &ada(SINCE_MS - 1)), allowed_by("ops"));
}

#[test]
fn an_override_survives_a_full_snapshot() {
    let mut s = snapshot();
    apply(&mut s, override_groups(UserRef::subject("sub-ada"), &["dev", "qa"], SINCE_MS, NOW + 86_400));
    let rebuilt = Snapshot::from_body(s.to_body()).unwrap();
    assert_eq!(rebuilt.to_body(), s.to_body());
    assert_eq!(decide(&rebuilt, "/ops/x", &ada(SINCE_MS - 1)), DENIED);
}

#[test]
fn holds_until_agrees_with_the_overridden_decision() {
    let mut s = snapshot();
    let old = ada(SINCE_MS - 60_000);
    // Allowed by `ops`, whose login-age limit is a deadline.
    let f = facts("/dev/x", &old);
    let before = holds_until(&s, &f, &evaluate(&s, &f));
    apply(&mut s, override_groups(UserRef::subject("sub-ada"), &["dev"], SINCE_MS, NOW + 86_400));
    let decision = evaluate(&s, &f);
    assert_eq!(decision.rule.map(|r| r.name()), Some("dev"));
    // `dev` decides first either way: only the token's expiry bounds it.
    assert_eq!(holds_until(&s, &f, &decision), before);
    assert_eq!(before, Some(NOW + 86_400));
    let ops = facts("/ops/x", &old);
    let denied = evaluate(&s, &ops);
    assert!(!denied.is_allowed());
    // No rule decided: every rule's limits count, as without an override.
    let auth_time = (SINCE_MS - 60_000).div_euclid(1000);
    assert_eq!(holds_until(&s, &ops, &denied), Some(auth_time + 2 * 3600 + 1));
}
