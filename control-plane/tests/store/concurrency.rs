//! Concurrent writers: sequence numbers stay distinct and gap-free, and the
//! read-then-write actions (terminations, session limits, policy versions,
//! key rotation, activity) behave as if they ran one after another.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use portcullis_control_plane::model::SigningKeyRecord;
use portcullis_control_plane::store::{
    Activity, ChangeStore, PolicyStore, SessionFilter, SessionLimit, SessionStore, SqlStore, StoreError, TokenStore,
};
use portcullis_policy::policy::SessionLimitAction;
use portcullis_policy::Change;

use crate::fixtures::{actor, all_changes, audit_all, create, login, sid, POLICY_A, T0};

/// Runs `task(i)` for every `i` in `0..n` at once, on the runtime's threads.
async fn all_at_once<T, F, Fut>(n: u64, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(task(i))).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("task panicked"));
    }
    results
}

async fn concurrent_terminations_are_gap_free(store: SqlStore) {
    for n in 1..=50 {
        create(&store, login(&sid(n), &format!("sub-{n}"), "u@corp.example", "wiki"), T0).await;
    }
    let seqs = all_at_once(50, |i| {
        let store = store.clone();
        async move { store.terminate_session(&sid(i + 1), "burst", &actor(), T0 + 1).await }
    })
    .await;
    let seqs: Vec<u64> = seqs.into_iter().map(|r| r.expect("terminate").expect("was active")).collect();
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct, (1..=50).collect(), "50 distinct sequences without gaps: {seqs:?}");
    assert_eq!(store.head_seq().await.unwrap(), 50);

    // The log holds each termination once, at the sequence its caller got.
    let by_seq: HashMap<u64, String> = (1..=50).zip(seqs.iter()).map(|(n, seq)| (*seq, sid(n))).collect();
    let changes = all_changes(&store).await;
    assert_eq!(changes.iter().map(|d| d.seq).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
    for delta in &changes {
        let Change::TerminateSession { session, .. } = &delta.change else { panic!("{delta:?}") };
        assert_eq!(session.to_string(), by_seq[&delta.seq], "change {}", delta.seq);
    }
    for entry in audit_all(&store).await.iter().filter(|e| e.action == "session.terminate") {
        let seq = entry.seq.expect("terminations have a sequence") as u64;
        assert_eq!(entry.target, format!("session:{}", by_seq[&seq]));
    }
}

async fn concurrent_terminations_of_one_session(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    let results = all_at_once(20, |i| {
        let store = store.clone();
        async move { store.terminate_session(&sid(1), &format!("admin {i}"), &actor(), T0 + 1).await }
    })
    .await;
    let results: Vec<Option<u64>> = results.into_iter().map(|r| r.expect("terminate")).collect();
    assert_eq!(results.iter().flatten().collect::<Vec<_>>(), [&1], "exactly one caller ends it: {results:?}");
    assert_eq!(store.head_seq().await.unwrap(), 1);
    let audited = audit_all(&store).await.into_iter().filter(|e| e.action == "session.terminate").count();
    assert_eq!(audited, 1);
    let winner = results.iter().position(Option::is_some).unwrap();
    let reason = store.get_session(&sid(1)).await.unwrap().unwrap().end_reason;
    assert_eq!(reason, Some(format!("admin {winner}")), "the recorded reason is the winner's");
}

async fn concurrent_policy_versions(store: SqlStore) {
    let results = all_at_once(10, |i| {
        let store = store.clone();
        async move { store.put_policy(POLICY_A, &format!("change {i}"), &actor(), T0 + i as i64).await }
    })
    .await;
    let results: Vec<(i64, u64)> = results.into_iter().map(|r| r.expect("put_policy")).collect();
    let versions: BTreeSet<i64> = results.iter().map(|r| r.0).collect();
    let seqs: BTreeSet<u64> = results.iter().map(|r| r.1).collect();
    assert_eq!(versions, (1..=10).collect(), "{results:?}");
    assert_eq!(seqs, (1..=10).collect(), "{results:?}");
    assert_eq!(store.policy_history(100).await.unwrap().len(), 10);
    // Each version's change names that version.
    for (version, seq) in results {
        let Change::ReplacePolicy { policy } = &all_changes(&store).await[seq as usize - 1].change else { panic!() };
        assert_eq!(policy.name, format!("policy v{version}"));
    }
}

async fn concurrent_logins_respect_the_limit(store: SqlStore) {
    let refuse = Some(SessionLimit { max: 1, action: SessionLimitAction::Refuse });
    let results = all_at_once(10, |i| {
        let store = store.clone();
        let new = login(&sid(i + 1), "sub-ada", "ada@corp.example", "admin");
        async move { store.create_session(new, refuse, &actor(), T0).await }
    })
    .await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 1, "one login fits under a limit of one: {results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(_) | Err(StoreError::SessionLimit(1)))));

    let end_oldest = Some(SessionLimit { max: 2, action: SessionLimitAction::EndOldest });
    let results = all_at_once(10, |i| {
        let store = store.clone();
        let new = login(&sid(100 + i), "sub-bob", "bob@corp.example", "admin");
        async move { store.create_session(new, end_oldest, &actor(), T0 + i as i64).await }
    })
    .await;
    let replaced: Vec<(String, u64)> =
        results.into_iter().flat_map(|r| r.expect("end_oldest never refuses").replaced).collect();
    assert_eq!(replaced.len(), 8, "each login beyond two ends one session: {replaced:?}");
    let ended: BTreeSet<&String> = replaced.iter().map(|(id, _)| id).collect();
    assert_eq!(ended.len(), 8, "no session is ended twice");
    let seqs: BTreeSet<u64> = replaced.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, (1..=8).collect());
    let filter =
        SessionFilter { email: Some("bob@corp.example".into()), active: Some(true), limit: 100, ..Default::default() };
    assert_eq!(store.list_sessions(&filter, T0 + 100).await.unwrap().len(), 2, "two stay active");
}

async fn concurrent_activity_from_many_edges(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    all_at_once(20, |i| {
        let store = store.clone();
        let events = vec![
            Activity::Seen { session_id: sid(1), source_address: format!("192.0.2.{i}"), at_ms: T0 + i as i64 },
            Activity::Connections { session_id: sid(1), delta: 1 },
        ];
        async move { store.apply_activity(&format!("e{i}"), &events, false).await.expect("apply_activity") }
    })
    .await;
    let s = store.get_session(&sid(1)).await.unwrap().unwrap();
    assert_eq!(s.edges.len(), 21, "no edge lost to a concurrent report: {:?}", s.edges);
    assert_eq!(s.source_addresses.len(), 21, "no address lost: {:?}", s.source_addresses);
    assert_eq!((s.live_connections, s.last_seen_ms), (20, T0 + 19));
}

async fn concurrent_overlapping_activity_batches(store: SqlStore) {
    for n in 1..=10 {
        create(&store, login(&sid(n), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    }
    // Every batch touches every session, half of them in the reverse order.
    all_at_once(16, |i| {
        let store = store.clone();
        let mut events: Vec<Activity> = (1..=10)
            .flat_map(|n| {
                [
                    Activity::Connections { session_id: sid(n), delta: 1 },
                    Activity::Seen { session_id: sid(n), source_address: format!("192.0.2.{i}"), at_ms: T0 + i as i64 },
                ]
            })
            .collect();
        if i % 2 == 1 {
            events.reverse();
        }
        async move { store.apply_activity(&format!("e{i}"), &events, false).await.expect("apply_activity") }
    })
    .await;
    for n in 1..=10 {
        let s = store.get_session(&sid(n)).await.unwrap().unwrap();
        assert_eq!((s.live_connections, s.edges.len(), s.source_addresses.len()), (16, 17, 17), "session {n}");
    }
}

async fn concurrent_key_rotations(store: SqlStore) {
    let seqs = all_at_once(6, |i| {
        let store = store.clone();
        let key = SigningKeyRecord {
            kid: format!("k{i}"),
            alg: "ES256".into(),
            private_pem: "pem".into(),
            x: format!("x{i}"),
            y: Some(format!("y{i}")),
            created_ms: T0 + i as i64,
            retired_ms: None,
            revoked_ms: None,
        };
        async move { store.add_signing_key(&key, &actor(), T0 + 10).await.expect("add_signing_key") }
    })
    .await;
    assert_eq!(seqs.iter().copied().collect::<BTreeSet<_>>(), (1..=6).collect());
    let current: Vec<String> =
        store.signing_keys().await.unwrap().into_iter().filter(|k| k.retired_ms.is_none()).map(|k| k.kid).collect();
    assert_eq!(current.len(), 1, "exactly one key signs: {current:?}");
    let Change::RotateKeys { keys } = &all_changes(&store).await[5].change else { panic!("not a rotation") };
    assert_eq!(keys.len(), 6, "the last rotation publishes every key");
}

/// Logins racing terminate-alls of the same user, in rounds: whichever
/// order they commit in, a session left active was created after every
/// termination (its token is alive at the edges); one created before was
/// ended, and the terminate-all that ended it revokes its token. At least
/// forty rounds, and more (up to 400) until some round
/// ends on a login (else there is nothing active to check, which the last
/// assertion rules out): ten rounds once all ended on a termination on a
/// loaded machine, and forty did about one run in five once terminations
/// also wrote their outbox jobs.
async fn concurrent_logins_and_terminate_alls(store: SqlStore) {
    let ada = portcullis_policy::UserRef::email("ada@corp.example");
    let mut checked = 0;
    for round in 0..400u64 {
        if round >= 40 && checked > 0 {
            break;
        }
        let terminations = all_at_once(20, |i| {
            let (store, ada) = (store.clone(), ada.clone());
            async move {
                // Every call of a round in the same few milliseconds, half of them terminations.
                let now = T0 + (round * 10 + i % 3) as i64;
                if i % 2 == 0 {
                    store.terminate_user(&ada, "burst", &actor(), now).await.map(Some)
                } else {
                    create(&store, login(&sid(round * 100 + i), "sub-ada", "ada@corp.example", "wiki"), now).await;
                    Ok(None)
                }
            }
        })
        .await
        .into_iter()
        .collect::<Result<Vec<_>, StoreError>>()
        .expect("every call succeeds");
        // Each session a terminate-all ended is revoked by that very change
        // at the edges (they learn of it only through `revoked_before_ms`).
        let revoked_at: HashMap<u64, i64> = all_changes(&store)
            .await
            .into_iter()
            .filter_map(|d| match d.change {
                Change::TerminateUser { revoked_before_ms, .. } => Some((d.seq, revoked_before_ms)),
                _ => None,
            })
            .collect();
        for (seq, ended) in terminations.into_iter().flatten() {
            for id in ended {
                let created = store.get_session(&id).await.unwrap().expect("ended session").created_ms;
                assert!(
                    created <= revoked_at[&seq],
                    "round {round}: session {id} (issued {created}) was ended by change {seq}, which revokes only up to {}",
                    revoked_at[&seq]
                );
            }
        }
        if round % 4 == 3 {
            // With terminations grouped, a burst often commits its logins
            // first and its terminations last; every fourth round also has a
            // login right after the burst, in the same milliseconds, which
            // must be left active (it starts after every termination).
            let now = T0 + (round * 10) as i64;
            create(&store, login(&sid(round * 100 + 99), "sub-ada", "ada@corp.example", "wiki"), now).await;
        }
        let body = store.snapshot_body(T0).await.unwrap();
        let revoked_before_ms = body.users.iter().find_map(|(u, s)| (*u == ada).then_some(s.revoked_before_ms));
        let revoked_before_ms = revoked_before_ms.flatten().expect("ada was terminated");
        let filter = SessionFilter { active: Some(true), limit: 1000, ..SessionFilter::default() };
        for session in store.list_sessions(&filter, T0).await.unwrap() {
            assert!(
                session.created_ms > revoked_before_ms,
                "round {round}: session {} is listed active but its token (issued {}) is revoked (up to {revoked_before_ms})",
                session.id,
                session.created_ms
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no round ended with an active session to check");
}

store_tests!(
    concurrent_logins_and_terminate_alls,
    concurrent_terminations_are_gap_free,
    concurrent_terminations_of_one_session,
    concurrent_policy_versions,
    concurrent_logins_respect_the_limit,
    concurrent_activity_from_many_edges,
    concurrent_overlapping_activity_batches,
    concurrent_key_rotations,
);
