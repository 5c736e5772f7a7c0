//! Property tests: (a) the wire encoding round-trips every message and a
//! snapshot body survives `from_body` → `to_body`; (b) a terminated session,
//! a locked user, a user whose tokens were revoked, or a revoked token id is
//! never allowed, whatever the (generated, compiling) policy; (c) applying a
//! random sequence of deltas matches a simple `BTreeMap` model, is
//! deterministic, and survives a resynchronisation through a full snapshot,
//! including runs long enough to trigger the revocation set's internal merge;
//! (f) a group override judges a token issued at or before it as if the
//! token carried the override's groups, and a later token as it is. (d) and
//! (e), the rule index and shadowing, are in `rule_properties.rs`.

// Shared with `rule_properties.rs`, which uses other parts of it.
#[allow(dead_code)]
mod policy_gen;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use policy_gen::{compile, compiling_policy, facts_spec, routes_spec, FactsSpec, EMAILS, GROUPS};
use portcullis_policy::snapshot::{GroupsOverride, KeyAlgorithm, Lock, PublicKey, UserState};
use portcullis_policy::wire::{decode, encode, Message, SnapshotBody, WIRE_VERSION};
use portcullis_policy::{
    evaluate, Change, Delta, Facts, Identity, Outcome, Policy, PolicySource, Reason, SessionId, Snapshot, TokenId,
    UserRef,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

// ---------------------------------------------------------------- (a) wire

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

fn user_ref() -> impl Strategy<Value = UserRef> {
    prop_oneof![text().prop_map(|s| UserRef::Subject(s.into())), text().prop_map(|s| UserRef::Email(s.into()))]
}

fn lock() -> impl Strategy<Value = Lock> {
    (any::<Option<i64>>(), text()).prop_map(|(until, reason)| Lock { until, reason })
}

/// Groups as `UserStates::override_groups` keeps them: sorted, distinct.
fn groups_override() -> impl Strategy<Value = GroupsOverride> {
    (prop::collection::btree_set(text(), 0..4), any::<i64>(), any::<i64>()).prop_map(
        |(groups, since_ms, expires_at)| GroupsOverride { groups: groups.into_iter().collect(), since_ms, expires_at },
    )
}

fn user_state() -> impl Strategy<Value = UserState> {
    (prop::option::of(lock()), any::<Option<i64>>(), prop::option::of(groups_override()))
        .prop_map(|(lock, revoked_before_ms, groups)| UserState { lock, revoked_before_ms, groups })
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    let alg = prop_oneof![Just(KeyAlgorithm::ES256), Just(KeyAlgorithm::EdDSA)];
    (text(), alg, text(), prop::option::of(text())).prop_map(|(kid, alg, x, y)| PublicKey { kid, alg, x, y })
}

fn change() -> impl Strategy<Value = Change> {
    let session = any::<[u8; 16]>().prop_map(SessionId::from_bytes);
    let token = text().prop_map(|t| TokenId::new(&t));
    prop_oneof![
        (session, any::<i64>()).prop_map(|(session, expires_at)| Change::TerminateSession { session, expires_at }),
        (user_ref(), any::<i64>())
            .prop_map(|(user, revoked_before_ms)| Change::TerminateUser { user, revoked_before_ms }),
        (user_ref(), lock()).prop_map(|(user, lock)| Change::LockUser { user, lock }),
        user_ref().prop_map(|user| Change::UnlockUser { user }),
        (token, any::<i64>()).prop_map(|(token, expires_at)| Change::RevokeToken { token, expires_at }),
        (text(), text()).prop_map(|(name, text)| Change::ReplacePolicy { policy: PolicySource { name, text } }),
        prop::collection::vec(public_key(), 0..3).prop_map(|keys| Change::RotateKeys { keys }),
        any::<i64>().prop_map(|cutoff| Change::ExpireBefore { cutoff }),
        (user_ref(), prop::collection::vec(text(), 0..4), any::<i64>(), any::<i64>()).prop_map(
            |(user, groups, since_ms, expires_at)| Change::OverrideGroups { user, groups, since_ms, expires_at }
        ),
    ]
}

/// A snapshot body with distinct keys (as `to_body` writes them) and a policy
/// that compiles.
fn snapshot_body() -> impl Strategy<Value = SnapshotBody> {
    let sessions = prop::collection::btree_map(any::<[u8; 16]>().prop_map(SessionId::from_bytes), any::<i64>(), 0..20);
    let tokens = prop::collection::btree_map(text().prop_map(|t| TokenId::new(&t)), any::<i64>(), 0..20);
    let users = prop::collection::btree_map(user_ref(), user_state(), 0..12);
    let keys = prop::collection::vec(public_key(), 0..3);
    (any::<u64>(), routes_spec(4), sessions, tokens, users, keys).prop_map(
        |(seq, routes, sessions, tokens, users, signing_keys)| SnapshotBody {
            seq,
            policy: PolicySource { name: "policy v7".into(), text: compiling_policy(&routes).0 },
            terminated_sessions: sessions.into_iter().collect(),
            revoked_tokens: tokens.into_iter().collect(),
            users: users.into_iter().collect(),
            signing_keys,
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        snapshot_body().prop_map(Message::Snapshot),
        (any::<u64>(), change()).prop_map(|(seq, change)| Message::Delta(Delta { seq, change })),
        (any::<u64>(), any::<i64>()).prop_map(|(head_seq, sent_at_ms)| Message::Heartbeat { head_seq, sent_at_ms }),
    ]
}

proptest! {
    #[test]
    fn wire_round_trips_every_message(message in message()) {
        let bytes = encode(&message);
        prop_assert_eq!(&bytes[..2], &WIRE_VERSION.to_le_bytes()[..]);
        prop_assert_eq!(decode(&bytes).unwrap(), message);
        // Every strict prefix is refused, never misread.
        for len in [0, 1, 2, bytes.len() / 2, bytes.len() - 1] {
            prop_assert!(decode(&bytes[..len]).is_err(), "a {}-byte prefix decoded", len);
        }
    }

    #[test]
    fn snapshot_bodies_survive_from_body_and_to_body(body in snapshot_body()) {
        let snapshot = Snapshot::from_body(body.clone()).unwrap();
        prop_assert_eq!(snapshot.seq(), body.seq);
        // `to_body` drops users with nothing recorded and lowercases emails
        // (emails compare case-insensitively); everything else is kept as is.
        let mut expected = body;
        expected.users.retain(|(_, state)| *state != UserState::default());
        for (user, _) in &mut expected.users {
            if let UserRef::Email(email) = user {
                *user = UserRef::email(email);
            }
        }
        expected.users.sort_by(|a, b| a.0.cmp(&b.0));
        let distinct = expected.users.windows(2).all(|w| w[0].0 != w[1].0);
        prop_assume!(distinct, "two emails differing only in case merge into one user");
        prop_assert_eq!(snapshot.to_body(), expected);
    }
}

// ------------------------------------------- (b) revocations beat any policy

/// How the identity of a request is revoked before it is evaluated.
#[derive(Debug, Clone)]
enum Revocation {
    Session { expires_in: i64 },
    Lock { by_email: bool, until_in: Option<i64> },
    TerminateUser { by_email: bool, after_issue_ms: i64 },
    Token { expires_in: i64 },
}

fn revocation() -> impl Strategy<Value = Revocation> {
    prop_oneof![
        (-100_000..100_000i64).prop_map(|expires_in| Revocation::Session { expires_in }),
        // The edges matter: a lock until `now + 1` still holds at `now`, and
        // a token issued exactly at `revoked_before_ms` is dead, and so is one
        // that only knows its second when the termination fell in it.
        (any::<bool>(), prop::option::of(prop_oneof![Just(1), 1..1_000_000i64]))
            .prop_map(|(by_email, until_in)| Revocation::Lock { by_email, until_in }),
        (any::<bool>(), prop_oneof![Just(0), 0..1000i64, 0..1_000_000_000i64])
            .prop_map(|(by_email, after_issue_ms)| Revocation::TerminateUser { by_email, after_issue_ms }),
        (-100_000..100_000i64).prop_map(|expires_in| Revocation::Token { expires_in }),
    ]
}

impl Revocation {
    fn change(&self, facts: &FactsSpec) -> (Change, Reason) {
        let identity = facts.identity();
        let user = |by_email: bool| {
            // Admins type emails in any case; the lock must still apply.
            if by_email {
                UserRef::email(&EMAILS[facts.email].to_uppercase())
            } else {
                UserRef::subject(identity.subject())
            }
        };
        let session = identity.session_id().unwrap();
        match *self {
            Self::Session { expires_in } => {
                (Change::TerminateSession { session, expires_at: facts.now + expires_in }, Reason::SessionTerminated)
            }
            Self::Lock { by_email, until_in } => {
                let lock = Lock { until: until_in.map(|d| facts.now + d), reason: "generated".into() };
                (Change::LockUser { user: user(by_email), lock }, Reason::UserLocked)
            }
            Self::TerminateUser { by_email, after_issue_ms } => {
                let revoked_before_ms = (facts.now - facts.session_age) * 1000 + after_issue_ms;
                (Change::TerminateUser { user: user(by_email), revoked_before_ms }, Reason::UserTokensRevoked)
            }
            Self::Token { expires_in } => {
                let token = TokenId::new(&format!("jti-{}", facts.session[0]));
                (Change::RevokeToken { token, expires_at: facts.now + expires_in }, Reason::TokenRevoked)
            }
        }
    }
}

#[test]
fn revoked_identities_are_never_allowed_whatever_the_policy() {
    const CASES: u32 = 512;
    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    let allowed_before_revocation = AtomicUsize::new(0);
    let strategy = (routes_spec(10), facts_spec(), revocation());
    TestRunner::new(config)
        .run(&strategy, |(routes, facts, revocation)| {
            let (text, _) = compiling_policy(&routes);
            let policy = Policy::compile(PolicySource { name: "generated.yaml".into(), text }).unwrap();
            let before = Snapshot::new(1, Arc::new(policy));
            let identity = facts.identity();
            let (name, tcp) = facts.target_name(&routes);
            let request = Facts {
                target: facts.target(&name, tcp),
                source_ip: facts.source_ip(),
                now: facts.now,
                identity: Some(&identity),
            };
            if evaluate(&before, &request).is_allowed() {
                allowed_before_revocation.fetch_add(1, Ordering::Relaxed);
            }
            let (change, reason) = revocation.change(&facts);
            let mut after = before.clone();
            after.apply(&Delta { seq: 2, change }).unwrap();
            let decision = evaluate(&after, &request);
            prop_assert_ne!(decision.outcome, Outcome::Allow);
            prop_assert_eq!((decision.outcome, decision.reason), (Outcome::Deny, reason));
            Ok(())
        })
        .unwrap();
    // Guard against a vacuous test: many of these requests were allowed
    // before their identity was revoked.
    let allowed = allowed_before_revocation.into_inner();
    assert!(allowed >= CASES as usize / 50, "only {allowed} of {CASES} generated requests were ever allowed");
}

// --------------------------------------------- (f) group overrides

proptest! {
    #![proptest_config(Config::with_cases(256))]

    #[test]
    fn an_override_judges_older_tokens_with_its_groups_and_newer_ones_as_they_are(
        routes in routes_spec(10),
        facts in facts_spec(),
        groups in prop::collection::vec(prop::sample::select(&GROUPS[..]), 0..4),
        by_email in any::<bool>(),
        since_after_issue_ms in prop_oneof![Just(0), Just(-1), -5_000..5_000i64],
    ) {
        let (text, _) = compiling_policy(&routes);
        let before = Snapshot::new(1, Arc::new(compile(&text).unwrap()));
        let identity = facts.identity();
        let user = if by_email { UserRef::email(identity.email()) } else { UserRef::subject(identity.subject()) };
        let groups: Vec<String> = groups.into_iter().map(str::to_owned).collect();
        let since_ms = identity.issued_at_ms() + since_after_issue_ms;
        let change = Change::OverrideGroups { user, groups: groups.clone(), since_ms, expires_at: facts.now + 60 };
        let mut after = before.clone();
        after.apply(&Delta { seq: 2, change }).unwrap();
        let (name, tcp) = facts.target_name(&routes);
        let judged = |snapshot: &Snapshot, identity: &Identity| {
            let request = Facts {
                target: facts.target(&name, tcp),
                source_ip: facts.source_ip(),
                now: facts.now,
                identity: Some(identity),
            };
            let d = evaluate(snapshot, &request);
            (d.outcome, d.reason, d.route.map(|r| r.name().to_owned()), d.rule.map(|r| r.name().to_owned()))
        };
        let expected = if since_after_issue_ms >= 0 {
            judged(&before, &identity.with_groups(&groups))
        } else {
            judged(&before, &identity)
        };
        prop_assert_eq!(judged(&after, &identity), expected);
    }
}

// ------------------------------------------------- (c) deltas against a model

const USERS: usize = 6;

fn user(i: usize) -> UserRef {
    if i < USERS / 2 {
        UserRef::subject(&format!("sub-{i}"))
    } else {
        UserRef::email(&format!("user{i}@corp.example"))
    }
}

fn session_id(n: u16) -> SessionId {
    let mut bytes = [0u8; 16];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    bytes[15] = 0x5a;
    SessionId::from_bytes(bytes)
}

/// The delta kinds that touch revocation state, over small id pools so that
/// keys repeat.
fn revocation_change(sessions: u16, session_weight: u32, expire_weight: u32) -> impl Strategy<Value = Change> {
    let time = 0..1_000i64;
    prop_oneof![
        session_weight => (0..sessions, time.clone())
            .prop_map(|(n, expires_at)| Change::TerminateSession { session: session_id(n), expires_at }),
        4 => (0..40u8, time.clone())
            .prop_map(|(n, expires_at)| Change::RevokeToken { token: TokenId::new(&format!("t{n}")), expires_at }),
        3 => (0..USERS, prop::option::of(time.clone()), 0..3u8).prop_map(|(u, until, r)| Change::LockUser {
            user: user(u),
            lock: Lock { until, reason: format!("reason {r}") },
        }),
        2 => (0..USERS).prop_map(|u| Change::UnlockUser { user: user(u) }),
        2 => (0..USERS, time.clone())
            .prop_map(|(u, revoked_before_ms)| Change::TerminateUser { user: user(u), revoked_before_ms }),
        2 => (0..USERS, prop::collection::vec(prop::sample::select(&["dev", "ops", "qa"][..]), 0..4), time.clone(), time.clone())
            .prop_map(|(u, groups, since_ms, expires_at)| Change::OverrideGroups {
                user: user(u),
                groups: groups.into_iter().map(str::to_owned).collect(),
                since_ms,
                expires_at,
            }),
        expire_weight => time.prop_map(|cutoff| Change::ExpireBefore { cutoff }),
    ]
}

/// What the snapshot should hold, written the obvious way.
#[derive(Default)]
struct Model {
    sessions: BTreeMap<SessionId, i64>,
    tokens: BTreeMap<TokenId, i64>,
    users: BTreeMap<UserRef, UserState>,
}

impl Model {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::TerminateSession { session, expires_at } => {
                let slot = self.sessions.entry(*session).or_insert(*expires_at);
                *slot = (*slot).max(*expires_at);
            }
            Change::RevokeToken { token, expires_at } => {
                let slot = self.tokens.entry(token.clone()).or_insert(*expires_at);
                *slot = (*slot).max(*expires_at);
            }
            Change::LockUser { user, lock } => self.users.entry(user.clone()).or_default().lock = Some(lock.clone()),
            Change::UnlockUser { user } => {
                if let Some(state) = self.users.get_mut(user) {
                    state.lock = None;
                }
            }
            Change::TerminateUser { user, revoked_before_ms } => {
                let state = self.users.entry(user.clone()).or_default();
                let t = *revoked_before_ms;
                state.revoked_before_ms = Some(state.revoked_before_ms.map_or(t, |old| old.max(t)));
            }
            Change::ExpireBefore { cutoff } => {
                self.sessions.retain(|_, expires_at| *expires_at > *cutoff);
                self.tokens.retain(|_, expires_at| *expires_at > *cutoff);
                for state in self.users.values_mut() {
                    if state.lock.as_ref().is_some_and(|l| l.until.is_some_and(|u| u <= *cutoff)) {
                        state.lock = None;
                    }
                    if state.groups.as_ref().is_some_and(|g| g.expires_at <= *cutoff) {
                        state.groups = None;
                    }
                }
            }
            Change::OverrideGroups { user, groups, since_ms, expires_at } => {
                let groups: std::collections::BTreeSet<String> = groups.iter().cloned().collect();
                self.users.entry(user.clone()).or_default().groups = Some(GroupsOverride {
                    groups: groups.into_iter().collect(),
                    since_ms: *since_ms,
                    expires_at: *expires_at,
                });
            }
            Change::ReplacePolicy { .. } | Change::RotateKeys { .. } => unreachable!("not generated"),
        }
        self.users.retain(|_, state| *state != UserState::default());
    }
}

fn empty_snapshot() -> Snapshot {
    Snapshot::new(0, Arc::new(Policy::empty()))
}

/// Applies `changes` as deltas 1, 2, …; when `resync_at` is given, the
/// snapshot is rebuilt from its own wire form after that many deltas, as an
/// edge does when it reconnects.
fn apply_all(changes: &[Change], resync_at: Option<usize>) -> Snapshot {
    let mut snapshot = empty_snapshot();
    for (i, change) in changes.iter().enumerate() {
        if resync_at == Some(i) {
            snapshot = Snapshot::from_body(snapshot.to_body()).unwrap();
        }
        snapshot.apply(&Delta { seq: i as u64 + 1, change: change.clone() }).unwrap();
    }
    snapshot
}

fn check_against_model(changes: &[Change], sessions: u16, resync_at: usize) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    changes.iter().for_each(|change| model.apply(change));
    let snapshot = apply_all(changes, None);
    let body = snapshot.to_body();
    prop_assert_eq!(body.seq, changes.len() as u64);
    prop_assert_eq!(&body.terminated_sessions, &model.sessions.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
    prop_assert_eq!(&body.revoked_tokens, &model.tokens.clone().into_iter().collect::<Vec<_>>());
    prop_assert_eq!(&body.users, &model.users.clone().into_iter().collect::<Vec<_>>());
    // Lookups and sizes agree too (they use the set's internals, not `iter`).
    prop_assert_eq!(snapshot.terminated_sessions().len(), model.sessions.len());
    prop_assert_eq!(snapshot.revoked_tokens().len(), model.tokens.len());
    prop_assert_eq!(snapshot.users().len(), model.users.len());
    for n in 0..sessions {
        prop_assert_eq!(
            snapshot.terminated_sessions().get(&session_id(n)),
            model.sessions.get(&session_id(n)).copied()
        );
    }
    for u in 0..USERS {
        prop_assert_eq!(snapshot.users().get(&user(u)), model.users.get(&user(u)));
    }
    // Deterministic: a second, independent run gives the same snapshot, and
    // so does a run that resynchronises through a full snapshot midway.
    prop_assert_eq!(&apply_all(changes, None).to_body(), &body);
    prop_assert_eq!(&apply_all(changes, Some(resync_at.min(changes.len()))).to_body(), &body);
    Ok(())
}

proptest! {
    #[test]
    fn deltas_match_a_model(
        changes in prop::collection::vec(revocation_change(64, 6, 1), 0..200),
        resync_at in 0..200usize,
    ) {
        check_against_model(&changes, 64, resync_at)?;
    }
}

proptest! {
    #![proptest_config(Config::with_cases(12))]

    /// Thousands of terminations push the set's recent part past its merge
    /// threshold (1024 keys) more than once, with expiries in between.
    #[test]
    fn long_delta_runs_match_a_model(
        changes in prop::collection::vec(revocation_change(6000, 400, 1), 3000..4500),
        resync_at in 0..4500usize,
    ) {
        let mut distinct = std::collections::BTreeSet::new();
        for change in &changes {
            if let Change::TerminateSession { session, .. } = change {
                distinct.insert(*session);
            }
        }
        prop_assert!(distinct.len() > 2 * 1024, "only {} distinct sessions", distinct.len());
        check_against_model(&changes, 6000, resync_at)?;
    }
}
