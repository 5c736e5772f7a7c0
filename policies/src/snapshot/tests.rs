//! Unit tests for [`Snapshot::apply`]: every [`Change`] kind, the [`Affected`]
//! value each returns, sequence checking, rejected policies leaving the
//! snapshot untouched, `ExpireBefore`, lock expiry, `revoked_before_ms`
//! semantics (`issued_at_ms <= revoked_before_ms` is dead; a token that only
//! knows its second counts from the start of it) and locks by email.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;
use crate::evaluate::{evaluate, Outcome, Reason};
use crate::facts::{CredentialKind, Facts, Identity, IdentityParts, Target};

const START_SEQ: u64 = 10;
const NOW: i64 = 1_800_000_000;

const POLICY: &str = "\
version: 1
routes:
  - name: app
    host: app.corp.example
    upstream: http://10.0.0.2:8080
    rules:
      - name: everyone
        allow: {}
";

fn source(name: &str, text: &str) -> PolicySource {
    PolicySource { name: name.into(), text: text.into() }
}

fn snapshot() -> Snapshot {
    Snapshot::new(START_SEQ, Arc::new(Policy::compile(source("p.yaml", POLICY)).unwrap()))
}

fn session(n: u8) -> SessionId {
    SessionId::from_bytes([n; 16])
}

fn lock(until: Option<i64>, reason: &str) -> Lock {
    Lock { until, reason: reason.into() }
}

/// Applies `change` as the next delta, panicking if it is refused.
fn apply(snapshot: &mut Snapshot, change: Change) -> Affected {
    let delta = Delta { seq: snapshot.seq() + 1, change };
    snapshot.apply(&delta).unwrap_or_else(|e| panic!("{delta:?} refused: {e}"))
}

struct Who {
    subject: &'static str,
    email: &'static str,
    session: Option<SessionId>,
    token: Option<&'static str>,
    /// Seconds (`iat`).
    issued_at: i64,
    /// Milliseconds (a session token's `iat_ms`), if the token has them.
    issued_at_ms: Option<i64>,
    /// The control-plane key that signed the token (`kid`), if it did.
    signing_key: Option<&'static str>,
}

const ADA: Who = Who {
    subject: "sub-ada",
    email: "ada@corp.example",
    session: None,
    token: None,
    issued_at: NOW - 3600,
    issued_at_ms: None,
    signing_key: None,
};

/// Ada with a token issued at `ms` (Unix milliseconds) that says so.
fn ada_at_ms(ms: i64) -> Who {
    Who { issued_at: ms.div_euclid(1000), issued_at_ms: Some(ms), ..ADA }
}

fn identity(who: &Who) -> Identity {
    Identity::new(IdentityParts {
        subject: who.subject.into(),
        email: who.email.into(),
        credential: Some(CredentialKind::Browser),
        session_id: who.session,
        signing_key: who.signing_key.map(str::to_owned),
        token_id: who.token.map(TokenId::new),
        issued_at: who.issued_at,
        issued_at_ms: who.issued_at_ms,
        auth_time: who.issued_at,
        session_started_at: who.issued_at,
        ..IdentityParts::default()
    })
}

/// The outcome and reason for `who` requesting `/` of the app at `now`.
fn decide(snapshot: &Snapshot, who: &Who, now: i64) -> (Outcome, Reason) {
    let identity = identity(who);
    let facts = Facts {
        target: Target::Http { host: "app.corp.example", path: "/", method: "GET" },
        source_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        now,
        identity: Some(&identity),
    };
    let decision = evaluate(snapshot, &facts);
    (decision.outcome, decision.reason)
}

const ALLOWED: (Outcome, Reason) = (Outcome::Allow, Reason::RuleMatched);

#[test]
fn the_fixture_allows_everyone_before_any_change() {
    assert_eq!(decide(&snapshot(), &ADA, NOW), ALLOWED);
}

#[test]
fn terminate_session_denies_that_session_only() {
    let mut s = snapshot();
    let affected = apply(&mut s, Change::TerminateSession { session: session(1), expires_at: NOW + 60 });
    assert_eq!(affected, Affected::Session(session(1)));
    assert_eq!(s.seq(), START_SEQ + 1);
    assert_eq!(s.terminated_sessions().get(&session(1)), Some(NOW + 60));
    assert_eq!(s.terminated_sessions().len(), 1);

    let terminated = Who { session: Some(session(1)), ..ADA };
    assert_eq!(decide(&s, &terminated, NOW), (Outcome::Deny, Reason::SessionTerminated));
    let other = Who { session: Some(session(2)), ..ADA };
    assert_eq!(decide(&s, &other, NOW), ALLOWED);
}

#[test]
fn terminating_a_session_twice_keeps_the_later_expiry() {
    let mut s = snapshot();
    apply(&mut s, Change::TerminateSession { session: session(1), expires_at: NOW + 60 });
    apply(&mut s, Change::TerminateSession { session: session(1), expires_at: NOW + 30 });
    assert_eq!(s.terminated_sessions().get(&session(1)), Some(NOW + 60));
    apply(&mut s, Change::TerminateSession { session: session(1), expires_at: NOW + 90 });
    assert_eq!(s.terminated_sessions().get(&session(1)), Some(NOW + 90));
    assert_eq!(s.terminated_sessions().len(), 1);
}

#[test]
fn revoke_token_denies_requests_carrying_it() {
    let mut s = snapshot();
    let affected = apply(&mut s, Change::RevokeToken { token: TokenId::new("jti-1"), expires_at: NOW + 600 });
    assert_eq!(affected, Affected::Token(TokenId::new("jti-1")));
    assert_eq!(s.revoked_tokens().get("jti-1"), Some(NOW + 600));

    assert_eq!(decide(&s, &Who { token: Some("jti-1"), ..ADA }, NOW), (Outcome::Deny, Reason::TokenRevoked));
    assert_eq!(decide(&s, &Who { token: Some("jti-2"), ..ADA }, NOW), ALLOWED);
    assert_eq!(decide(&s, &ADA, NOW), ALLOWED, "no token id, nothing to revoke");
}

#[test]
fn terminate_user_revokes_tokens_issued_at_or_before_the_cutoff() {
    let mut s = snapshot();
    let cutoff = (NOW - 100) * 1000 + 250;
    let affected =
        apply(&mut s, Change::TerminateUser { user: UserRef::subject("sub-ada"), revoked_before_ms: cutoff });
    assert_eq!(affected, Affected::User(UserRef::subject("sub-ada")));
    let state = s.users().get(&UserRef::subject("sub-ada")).unwrap();
    assert_eq!((state.revoked_before_ms, &state.lock), (Some(cutoff), &None));

    let revoked = (Outcome::Deny, Reason::UserTokensRevoked);
    assert_eq!(decide(&s, &ada_at_ms(cutoff - 1), NOW), revoked);
    assert_eq!(decide(&s, &ada_at_ms(cutoff), NOW), revoked, "issued in the very millisecond of the termination");
    assert_eq!(decide(&s, &ada_at_ms(cutoff + 1), NOW), ALLOWED, "a login 1 ms later, in the same second");
    assert_eq!(decide(&s, &Who { subject: "sub-bob", ..ada_at_ms(cutoff - 1) }, NOW), ALLOWED);
}

#[test]
fn a_token_that_only_knows_its_second_is_revoked_by_a_termination_in_that_second() {
    let mut s = snapshot();
    let second = NOW - 100;
    apply(&mut s, Change::TerminateUser { user: UserRef::subject("sub-ada"), revoked_before_ms: second * 1000 + 1 });
    let revoked = (Outcome::Deny, Reason::UserTokensRevoked);
    // Issued somewhere in `second`, maybe after the termination: fail closed.
    assert_eq!(decide(&s, &Who { issued_at: second, ..ADA }, NOW), revoked, "an old-format token of that second");
    assert_eq!(decide(&s, &Who { issued_at: second + 1, ..ADA }, NOW), ALLOWED, "of the next second");
    // Claims that disagree count as the earlier of the two.
    let later_ms = Who { issued_at: second, issued_at_ms: Some((second + 1) * 1000), ..ADA };
    assert_eq!(decide(&s, &later_ms, NOW), revoked, "`iat_ms` past `iat`'s second: `iat`'s start");
    let earlier_ms = Who { issued_at: second + 1, issued_at_ms: Some(second * 1000), ..ADA };
    assert_eq!(decide(&s, &earlier_ms, NOW), revoked, "`iat_ms` before `iat`'s second: `iat_ms`");
}

#[test]
fn identities_say_when_their_token_was_issued_in_milliseconds() {
    assert_eq!(identity(&ada_at_ms(1_700_000_000_123)).issued_at_ms(), 1_700_000_000_123);
    assert_eq!(identity(&Who { issued_at: 1_700_000_000, ..ADA }).issued_at_ms(), 1_700_000_000_000);
    assert_eq!(identity(&Who { issued_at: -1, ..ADA }).issued_at_ms(), -1000);
    assert_eq!(identity(&Who { issued_at: i64::MIN, ..ADA }).issued_at_ms(), i64::MIN, "saturates, no overflow");
}

#[test]
fn an_earlier_terminate_user_never_replaces_a_later_one() {
    let mut s = snapshot();
    let user = UserRef::email("ada@corp.example");
    apply(&mut s, Change::TerminateUser { user: user.clone(), revoked_before_ms: (NOW - 10) * 1000 });
    apply(&mut s, Change::TerminateUser { user: user.clone(), revoked_before_ms: (NOW - 500) * 1000 });
    assert_eq!(s.users().get(&user).unwrap().revoked_before_ms, Some((NOW - 10) * 1000));
    assert_eq!(decide(&s, &Who { issued_at: NOW - 10, ..ADA }, NOW), (Outcome::Deny, Reason::UserTokensRevoked));
}

#[test]
fn lock_by_subject_denies_the_user_with_the_lock() {
    let mut s = snapshot();
    let affected =
        apply(&mut s, Change::LockUser { user: UserRef::subject("sub-ada"), lock: lock(None, "offboarding") });
    assert_eq!(affected, Affected::User(UserRef::subject("sub-ada")));

    let identity = identity(&ADA);
    let facts = Facts {
        target: Target::Http { host: "app.corp.example", path: "/", method: "GET" },
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now: NOW,
        identity: Some(&identity),
    };
    let decision = evaluate(&s, &facts);
    assert_eq!((decision.outcome, decision.reason), (Outcome::Deny, Reason::UserLocked));
    assert_eq!(decision.lock.map(|l| l.reason.as_str()), Some("offboarding"));
    assert_eq!(decision.to_string(), "the user is locked: offboarding");
    assert_eq!(decide(&s, &Who { subject: "sub-bob", email: "bob@corp.example", ..ADA }, NOW), ALLOWED);
}

#[test]
fn lock_by_email_denies_an_identity_with_that_email() {
    let mut s = snapshot();
    // Written in mixed case by the admin and by the IdP: both are lowercased.
    apply(&mut s, Change::LockUser { user: UserRef::email("Ada@Corp.Example"), lock: lock(None, "lost laptop") });
    assert!(s.users().get(&UserRef::email("ada@corp.example")).is_some_and(|u| u.lock.is_some()));
    let mixed_case = Who { subject: "never-seen-before", email: "ADA@corp.EXAMPLE", ..ADA };
    assert_eq!(decide(&s, &mixed_case, NOW), (Outcome::Deny, Reason::UserLocked));
    assert_eq!(decide(&s, &Who { email: "bob@corp.example", ..ADA }, NOW), ALLOWED);
}

#[test]
fn locks_with_until_lift_by_themselves() {
    let mut s = snapshot();
    let until = NOW + 300;
    apply(&mut s, Change::LockUser { user: UserRef::subject("sub-ada"), lock: lock(Some(until), "cool-off") });
    assert_eq!(decide(&s, &ADA, NOW), (Outcome::Deny, Reason::UserLocked));
    assert_eq!(decide(&s, &ADA, until - 1), (Outcome::Deny, Reason::UserLocked));
    assert_eq!(decide(&s, &ADA, until), ALLOWED, "the lock lifts at `until`");
    assert_eq!(decide(&s, &ADA, until + 1000), ALLOWED);
}

#[test]
fn a_new_lock_replaces_the_old_one() {
    let mut s = snapshot();
    let user = UserRef::subject("sub-ada");
    apply(&mut s, Change::LockUser { user: user.clone(), lock: lock(None, "first") });
    apply(&mut s, Change::LockUser { user: user.clone(), lock: lock(Some(NOW + 5), "second") });
    assert_eq!(s.users().get(&user).unwrap().lock, Some(lock(Some(NOW + 5), "second")));
    assert_eq!(decide(&s, &ADA, NOW + 5), ALLOWED);
}

#[test]
fn unlock_lifts_the_lock_and_forgets_an_empty_user() {
    let mut s = snapshot();
    let user = UserRef::email("ada@corp.example");
    apply(&mut s, Change::LockUser { user: user.clone(), lock: lock(None, "x") });
    assert_eq!(apply(&mut s, Change::UnlockUser { user: user.clone() }), Affected::Nothing);
    assert_eq!(s.seq(), START_SEQ + 2);
    assert_eq!(s.users().get(&user), None);
    assert!(s.users().is_empty());
    assert_eq!(decide(&s, &ADA, NOW), ALLOWED);
}

#[test]
fn unlock_keeps_revoked_before_ms() {
    let mut s = snapshot();
    let user = UserRef::subject("sub-ada");
    apply(&mut s, Change::TerminateUser { user: user.clone(), revoked_before_ms: (NOW - 10) * 1000 });
    apply(&mut s, Change::LockUser { user: user.clone(), lock: lock(None, "x") });
    apply(&mut s, Change::UnlockUser { user: user.clone() });
    assert_eq!(
        s.users().get(&user),
        Some(&UserState { lock: None, revoked_before_ms: Some((NOW - 10) * 1000), groups: None })
    );
    assert_eq!(decide(&s, &Who { issued_at: NOW - 20, ..ADA }, NOW), (Outcome::Deny, Reason::UserTokensRevoked));
    assert_eq!(decide(&s, &Who { issued_at: NOW - 5, ..ADA }, NOW), ALLOWED);
}

#[test]
fn unlocking_an_unknown_user_records_nothing() {
    let mut s = snapshot();
    assert_eq!(apply(&mut s, Change::UnlockUser { user: UserRef::subject("nobody") }), Affected::Nothing);
    assert!(s.users().is_empty());
}

#[test]
fn replace_policy_compiles_and_affects_everything() {
    let mut s = snapshot();
    let text = POLICY.replace("allow: {}", "deny: {}");
    let affected = apply(&mut s, Change::ReplacePolicy { policy: source("policy v2", &text) });
    assert_eq!(affected, Affected::All);
    assert_eq!(s.policy().source().name, "policy v2");
    assert_eq!(decide(&s, &ADA, NOW), (Outcome::Deny, Reason::RuleMatched));
}

#[test]
fn replace_policy_with_a_broken_policy_is_rejected_and_keeps_the_old_one() {
    let mut s = snapshot();
    apply(&mut s, Change::LockUser { user: UserRef::subject("sub-bob"), lock: lock(None, "x") });
    let before = s.to_body();
    let old_policy = s.policy().clone();
    let broken = POLICY.replace("rules:", "rulez:");
    let delta = Delta { seq: s.seq() + 1, change: Change::ReplacePolicy { policy: source("policy v2", &broken) } };
    let Err(ApplyError::Policy(errors)) = s.apply(&delta) else { panic!("a broken policy was accepted") };
    assert!(errors.to_string().contains("policy v2:6:5: error: unknown key `rulez`"), "{errors}");
    assert!(Arc::ptr_eq(s.policy(), &old_policy));
    assert_eq!(s.to_body(), before);
    assert_eq!(s.seq(), START_SEQ + 1, "the sequence does not advance");
    assert_eq!(decide(&s, &ADA, NOW), ALLOWED);
    // The same sequence number is still the next one to apply.
    assert_eq!(
        s.apply(&Delta { seq: delta.seq, change: Change::UnlockUser { user: UserRef::subject("x") } }),
        Ok(Affected::Nothing)
    );
}

#[test]
fn rotate_keys_replaces_the_key_set() {
    let mut s = snapshot();
    let key = |kid: &str| PublicKey { kid: kid.into(), alg: KeyAlgorithm::EdDSA, x: "AAAA".into(), y: None };
    assert_eq!(apply(&mut s, Change::RotateKeys { keys: vec![key("k1"), key("k2")] }), Affected::Nothing);
    assert_eq!(s.signing_keys(), &[key("k1"), key("k2")]);
    assert_eq!(apply(&mut s, Change::RotateKeys { keys: vec![key("k3")] }), Affected::KeysWithdrawn);
    assert_eq!(s.signing_keys(), &[key("k3")]);
}

#[test]
fn a_token_dies_with_its_signing_key() {
    let mut s = snapshot();
    let key = |kid: &str| PublicKey { kid: kid.into(), alg: KeyAlgorithm::ES256, x: "AAAA".into(), y: None };
    apply(&mut s, Change::RotateKeys { keys: vec![key("old"), key("new")] });
    let signed_by_old = Who { signing_key: Some("old"), ..ADA };
    let signed_by_new = Who { signing_key: Some("new"), ..ADA };
    assert_eq!(decide(&s, &signed_by_old, NOW), ALLOWED);
    // Emergency revocation of `old`: only `new` stays published.
    assert_eq!(apply(&mut s, Change::RotateKeys { keys: vec![key("new")] }), Affected::KeysWithdrawn);
    assert_eq!(decide(&s, &signed_by_old, NOW), (Outcome::Deny, Reason::SigningKeyRevoked));
    assert_eq!(decide(&s, &signed_by_new, NOW), ALLOWED);
    // Credentials the control plane did not sign are not affected.
    assert_eq!(decide(&s, &ADA, NOW), ALLOWED);
}

#[test]
fn expire_before_drops_only_entries_that_ended_at_or_before_the_cutoff() {
    let mut s = snapshot();
    let cutoff = NOW;
    for (n, expires_at) in [(1, cutoff - 1), (2, cutoff), (3, cutoff + 1)] {
        apply(&mut s, Change::TerminateSession { session: session(n), expires_at });
        apply(&mut s, Change::RevokeToken { token: TokenId::new(&format!("t{n}")), expires_at });
    }
    let (past, at, later, forever, revoked) = (
        UserRef::subject("past"),
        UserRef::subject("at-cutoff"),
        UserRef::subject("later"),
        UserRef::email("forever@corp.example"),
        UserRef::subject("revoked"),
    );
    apply(&mut s, Change::LockUser { user: past.clone(), lock: lock(Some(cutoff - 1), "a") });
    apply(&mut s, Change::LockUser { user: at.clone(), lock: lock(Some(cutoff), "b") });
    apply(&mut s, Change::LockUser { user: later.clone(), lock: lock(Some(cutoff + 1), "c") });
    apply(&mut s, Change::LockUser { user: forever.clone(), lock: lock(None, "d") });
    apply(&mut s, Change::TerminateUser { user: revoked.clone(), revoked_before_ms: (cutoff - 1000) * 1000 });
    apply(&mut s, Change::LockUser { user: revoked.clone(), lock: lock(Some(cutoff - 1), "e") });

    let seq = s.seq();
    assert_eq!(apply(&mut s, Change::ExpireBefore { cutoff }), Affected::Nothing);
    assert_eq!(s.seq(), seq + 1);
    assert_eq!(s.terminated_sessions().to_sorted_vec(), vec![(session(3), cutoff + 1)]);
    assert_eq!(s.revoked_tokens().to_sorted_vec(), vec![(TokenId::new("t3"), cutoff + 1)]);
    assert_eq!(s.users().get(&past), None);
    assert_eq!(s.users().get(&at), None);
    assert_eq!(s.users().get(&later).and_then(|u| u.lock.clone()), Some(lock(Some(cutoff + 1), "c")));
    assert_eq!(s.users().get(&forever).and_then(|u| u.lock.clone()), Some(lock(None, "d")));
    assert_eq!(
        s.users().get(&revoked),
        Some(&UserState { lock: None, revoked_before_ms: Some((cutoff - 1000) * 1000), groups: None }),
        "an expired lock goes, the terminate-all stays"
    );
    assert_eq!(s.users().len(), 3);
}

#[test]
fn out_of_sequence_deltas_are_rejected_and_change_nothing() {
    let mut s = snapshot();
    apply(&mut s, Change::TerminateSession { session: session(9), expires_at: NOW });
    let before = s.to_body();
    let current = s.seq();
    let change = Change::LockUser { user: UserRef::subject("sub-ada"), lock: lock(None, "x") };
    for got in [0, current - 1, current, current + 2, u64::MAX] {
        let result = s.apply(&Delta { seq: got, change: change.clone() });
        assert_eq!(result, Err(ApplyError::OutOfSequence { current, got }));
        assert_eq!(s.to_body(), before, "delta {got} changed the snapshot");
    }
    assert_eq!(decide(&s, &ADA, NOW), ALLOWED);
    let message = s.apply(&Delta { seq: current + 5, change }).unwrap_err().to_string();
    assert_eq!(message, format!("delta {} does not follow snapshot {current}; a full snapshot is needed", current + 5));
}

#[test]
fn nothing_follows_the_last_sequence_number() {
    let mut s = Snapshot::new(u64::MAX, snapshot().policy().clone());
    for got in [0, 1, u64::MAX] {
        let delta = Delta { seq: got, change: Change::ExpireBefore { cutoff: NOW } };
        assert_eq!(s.apply(&delta), Err(ApplyError::OutOfSequence { current: u64::MAX, got }));
    }
    assert_eq!(s.seq(), u64::MAX);
}

#[test]
fn applying_to_a_clone_leaves_the_original_alone() {
    let original = snapshot();
    let mut next = original.clone();
    apply(&mut next, Change::TerminateSession { session: session(1), expires_at: NOW });
    apply(&mut next, Change::LockUser { user: UserRef::subject("sub-ada"), lock: lock(None, "x") });
    apply(&mut next, Change::RevokeToken { token: TokenId::new("t"), expires_at: NOW });
    assert_eq!(original.seq(), START_SEQ);
    assert!(original.terminated_sessions().is_empty());
    assert!(original.revoked_tokens().is_empty());
    assert!(original.users().is_empty());
    assert_eq!(decide(&original, &ADA, NOW), ALLOWED);
    assert_eq!(decide(&next, &ADA, NOW), (Outcome::Deny, Reason::UserLocked));
}

#[test]
fn revocation_checks_come_before_policy_and_in_a_fixed_order() {
    let mut s = snapshot();
    apply(&mut s, Change::TerminateSession { session: session(1), expires_at: NOW + 60 });
    apply(&mut s, Change::LockUser { user: UserRef::subject("sub-ada"), lock: lock(None, "x") });
    apply(&mut s, Change::RevokeToken { token: TokenId::new("jti"), expires_at: NOW + 60 });
    let everything = Who { session: Some(session(1)), token: Some("jti"), ..ADA };
    assert_eq!(decide(&s, &everything, NOW), (Outcome::Deny, Reason::SessionTerminated));
    let locked_with_token = Who { token: Some("jti"), ..ADA };
    assert_eq!(decide(&s, &locked_with_token, NOW), (Outcome::Deny, Reason::UserLocked));
    let only_token = Who { subject: "sub-bob", email: "bob@corp.example", token: Some("jti"), ..ADA };
    assert_eq!(decide(&s, &only_token, NOW), (Outcome::Deny, Reason::TokenRevoked));
}

#[test]
fn an_email_ref_from_the_wire_matches_whatever_its_case() {
    use std::sync::Arc;
    let mut snapshot = Snapshot::new(0, Arc::new(crate::Policy::empty()));
    let user = UserRef::Email(Arc::from("Ada@Corp.Example"));
    let lock = crate::snapshot::Lock { until: None, reason: "stolen laptop".into() };
    snapshot.apply(&Delta { seq: 1, change: Change::LockUser { user: user.clone(), lock } }).unwrap();
    assert!(snapshot.users().get(&UserRef::email("ada@corp.example")).is_some_and(|s| s.lock.is_some()));
    snapshot.apply(&Delta { seq: 2, change: Change::UnlockUser { user } }).unwrap();
    assert!(snapshot.users().is_empty());
}
