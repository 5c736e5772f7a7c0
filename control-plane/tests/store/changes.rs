//! The change log and snapshots: migrations that apply twice, reading and
//! pruning the log, and a full snapshot that agrees both with what the
//! actions should have done and with replaying every delta from scratch.

use std::sync::Arc;

use portcullis_control_plane::model::{ApiTokenRecord, SigningKeyRecord};
use portcullis_control_plane::store::{
    Backend, ChangeStore, PolicyStore, SessionStore, SqlStore, TokenStore, UserStore,
};
use portcullis_policy::snapshot::{KeyAlgorithm, Lock, PublicKey, UserState};
use portcullis_policy::wire::{decode, encode, Message};
use portcullis_policy::{Policy, PolicySource, Snapshot, TokenId, UserRef};

use crate::fixtures::{actor, all_changes, ceil_s, create, login, sid, HOUR, LIFETIME, POLICY_A, POLICY_B, T0};

/// Every kind of committed change moves the change feed's head by itself,
/// at commit, with no handler publishing it: edge streams on this replica
/// wake at once, not on the next poll.
async fn a_commit_wakes_the_change_feed_by_itself(store: SqlStore) {
    let feed = portcullis_control_plane::feed::ChangeFeed::of_store(&store, 0);
    let mut woken = feed.subscribe();
    let eve = UserRef::email("eve@corp.example");
    let seq = store.lock_user(&eve, "x", None, &actor(), T0).await.unwrap();
    assert!(woken.has_changed().unwrap(), "a lock woke the feed");
    assert_eq!((*woken.borrow_and_update(), feed.head()), (seq, seq));
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    let ended = store.terminate_session(&sid(1), "x", &actor(), T0 + 1).await.unwrap().expect("ended");
    assert_eq!(feed.head(), ended, "a group-committed termination woke it");
    let (_, policy) = store.put_policy(POLICY_A, "m", &actor(), T0 + 2).await.unwrap();
    assert_eq!(feed.head(), policy, "a policy change woke it");
    let terminated = store.terminate_user(&eve, "x", &actor(), T0 + 3).await.unwrap().0;
    assert_eq!(feed.head(), terminated, "terminating a user woke it");
    assert!(woken.has_changed().unwrap());
}

async fn migrations_apply_twice(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    store.terminate_session(&sid(1), "x", &actor(), T0 + 1).await.unwrap();
    // A second process (or a restart) opens the same database while the
    // first is still connected: migrations are already there, data is kept.
    let again = SqlStore::connect(store.url()).await.expect("connecting a second time");
    assert_eq!(again.backend(), store.backend());
    assert_eq!(again.head_seq().await.unwrap(), 1);
    assert!(again.get_session(&sid(1)).await.unwrap().is_some());
    again.close().await;
    let third = SqlStore::connect(store.url()).await.expect("connecting a third time");
    create(&third, login(&sid(2), "sub-bob", "bob@corp.example", "wiki"), T0 + 2).await;
    third.close().await;
    assert!(store.get_session(&sid(2)).await.unwrap().is_some(), "both stores share one database");
    let expected = if store.url().starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
    assert_eq!(store.backend(), expected);
}

async fn changes_after_in_order(store: SqlStore) {
    assert_eq!(store.head_seq().await.unwrap(), 0);
    assert_eq!(store.oldest_retained_seq().await.unwrap(), None);
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());
    for n in 1..=12 {
        create(&store, login(&sid(n), "sub", "u@corp.example", "wiki"), T0 + n as i64).await;
    }
    for n in 1..=12 {
        assert_eq!(store.terminate_session(&sid(n), "x", &actor(), T0 + HOUR).await.unwrap(), Some(n));
    }
    assert_eq!(store.head_seq().await.unwrap(), 12);
    assert_eq!(store.oldest_retained_seq().await.unwrap(), Some(1));
    let seqs = |rows: Vec<(u64, Vec<u8>)>| rows.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(seqs(store.changes_after(0, 100).await.unwrap()), (1..=12).collect::<Vec<_>>());
    assert_eq!(seqs(store.changes_after(0, 5).await.unwrap()), [1, 2, 3, 4, 5], "limit");
    assert_eq!(seqs(store.changes_after(5, 3).await.unwrap()), [6, 7, 8]);
    assert_eq!(seqs(store.changes_after(10, 100).await.unwrap()), [11, 12]);
    assert!(store.changes_after(12, 100).await.unwrap().is_empty());
    assert!(store.changes_after(u64::MAX / 2, 100).await.unwrap().is_empty());
    assert!(store.changes_after(u64::MAX, 100).await.unwrap().is_empty(), "beyond the SQL integer range");
    let deltas = all_changes(&store).await;
    for (delta, n) in deltas.iter().zip(1..) {
        let expected = portcullis_policy::Change::TerminateSession {
            session: sid(n).parse().unwrap(),
            expires_at: ceil_s(T0 + n as i64 + LIFETIME),
        };
        assert_eq!(delta.change, expected, "change {n} in commit order");
    }
    // Rows hold exactly the bytes of the encoded message.
    let (seq, bytes) = store.changes_after(2, 1).await.unwrap().remove(0);
    let Message::Delta(delta) = decode(&bytes).unwrap() else { panic!("not a delta") };
    assert_eq!((seq, encode(&Message::Delta(delta))), (3, bytes));
}

async fn prune_keeps_the_newest(store: SqlStore) {
    assert_eq!(store.prune_changes_before(100).await.unwrap(), 0, "pruning an empty log");
    for n in 1..=5 {
        create(&store, login(&sid(n), "sub", "u@corp.example", "wiki"), T0).await;
        store.terminate_session(&sid(n), "x", &actor(), T0 + 1).await.unwrap();
    }
    assert_eq!(store.prune_changes_before(3).await.unwrap(), 2);
    assert_eq!(store.oldest_retained_seq().await.unwrap(), Some(3));
    assert_eq!(store.prune_changes_before(3).await.unwrap(), 0);
    assert_eq!(store.prune_changes_before(1000).await.unwrap(), 2, "everything but the newest");
    assert_eq!(store.oldest_retained_seq().await.unwrap(), Some(5));
    assert_eq!(store.head_seq().await.unwrap(), 5);
    assert_eq!(store.changes_after(0, 10).await.unwrap().len(), 1);
    // Numbering continues after the retained row: sequences are never reused.
    create(&store, login(&sid(6), "sub", "u@corp.example", "wiki"), T0).await;
    assert_eq!(store.terminate_session(&sid(6), "x", &actor(), T0 + 1).await.unwrap(), Some(6));
    assert_eq!(store.prune_changes_before(6).await.unwrap(), 1);
    assert_eq!(store.oldest_retained_seq().await.unwrap(), Some(6));
    create(&store, login(&sid(7), "sub", "u@corp.example", "wiki"), T0).await;
    store.terminate_session(&sid(7), "x", &actor(), T0 + 1).await.unwrap();
    assert_eq!(store.prune_changes_before(u64::MAX).await.unwrap(), 1, "beyond the SQL integer range");
    assert_eq!(store.oldest_retained_seq().await.unwrap(), Some(7));
}

async fn expire_before_is_a_change(store: SqlStore) {
    create(&store, login(&sid(1), "sub", "u@corp.example", "wiki"), T0).await;
    store.terminate_session(&sid(1), "x", &actor(), T0 + 1).await.unwrap();
    let cutoff = (T0 + LIFETIME) / 1000 + 1;
    assert_eq!(store.expire_before(cutoff, T0 + LIFETIME + 2000).await.unwrap(), 2);
    assert_eq!(store.head_seq().await.unwrap(), 2);
    let changes = all_changes(&store).await;
    assert_eq!(changes[1].change, portcullis_policy::Change::ExpireBefore { cutoff });
    let body = store.snapshot_body(T0 + LIFETIME + 2000).await.unwrap();
    assert_eq!((body.seq, body.terminated_sessions.len()), (2, 0));
}

async fn empty_snapshot(store: SqlStore) {
    let body = store.snapshot_body(T0).await.unwrap();
    assert_eq!(body.seq, 0);
    assert_eq!(body.policy, Policy::empty().source().clone());
    assert!(body.terminated_sessions.is_empty() && body.revoked_tokens.is_empty());
    assert!(body.users.is_empty() && body.signing_keys.is_empty());
    let snapshot = Snapshot::from_body(body.clone()).expect("an empty snapshot compiles");
    assert_eq!(snapshot.to_body(), body);
}

async fn snapshot_after_a_mix_of_actions(store: SqlStore) {
    let now = T0 + HOUR;
    for n in 1..=4 {
        create(&store, login(&sid(n), &format!("sub-{n}"), &format!("U{n}@corp.example"), "wiki"), T0).await;
    }
    let mut short = login(&sid(5), "sub-5", "u5@corp.example", "wiki");
    short.lifetime_ms = 30 * 60 * 1000;
    create(&store, short, T0).await;
    store.put_policy(POLICY_B, "company", &actor(), T0 + 1).await.unwrap();
    store.terminate_session(&sid(1), "x", &actor(), T0 + 2).await.unwrap();
    store.terminate_session(&sid(5), "expires before the snapshot", &actor(), T0 + 3).await.unwrap();
    let (_, ended_by_user) =
        store.terminate_user(&UserRef::email("u2@CORP.example"), "x", &actor(), T0 + 4000).await.unwrap();
    assert_eq!(ended_by_user, [sid(2)]);
    store.lock_user(&UserRef::subject("sub-3"), "hold", Some(T0 / 1000 + 7200), &actor(), T0 + 5000).await.unwrap();
    store.lock_user(&UserRef::email("gone@corp.example"), "x", None, &actor(), T0 + 6000).await.unwrap();
    store.unlock_user(&UserRef::email("gone@corp.example"), "x", false, &actor(), T0 + 7000).await.unwrap();
    let service = ApiTokenRecord {
        id: "svc-1".into(),
        kind: "service".into(),
        name: "backup job".into(),
        token_hash: "ab".repeat(32),
        scopes: vec![],
        subject: "svc:backup".into(),
        groups: vec!["machines".into()],
        created_ms: T0,
        expires_ms: Some(T0 + 24 * HOUR),
        revoked_ms: None,
        last_used_ms: None,
        created_by: "token:ops".into(),
    };
    store.insert_api_token(&service, &actor(), T0).await.unwrap();
    store.revoke_api_token("svc-1", &actor(), T0 + 8000).await.unwrap();
    let key = |kid: &str, at| SigningKeyRecord {
        kid: kid.into(),
        alg: "ES256".into(),
        private_pem: "pem".into(),
        x: format!("x-{kid}"),
        y: Some(format!("y-{kid}")),
        created_ms: at,
        retired_ms: None,
        revoked_ms: None,
    };
    store.add_signing_key(&key("k1", T0), &actor(), T0 + 9000).await.unwrap();
    store.add_signing_key(&key("k2", T0 + 10_000), &actor(), T0 + 10_000).await.unwrap();
    store.put_policy(POLICY_A, "back to basics", &actor(), T0 + 11_000).await.unwrap();
    store.terminate_session(&sid(4), "x", &actor(), T0 + 12_000).await.unwrap();

    let mut body = store.snapshot_body(now).await.unwrap();
    assert_eq!(body.seq, 12);
    assert_eq!(body.policy, PolicySource { name: "policy v2".into(), text: POLICY_A.into() });
    body.terminated_sessions.sort();
    let ended = |n: u64| (sid(n).parse().unwrap(), ceil_s(T0 + LIFETIME));
    assert_eq!(body.terminated_sessions, [ended(1), ended(2), ended(4)], "sid 5 had expired by then");
    assert_eq!(body.revoked_tokens, [(TokenId::new("svc-1"), ceil_s(T0 + 24 * HOUR))]);
    body.users.sort_by(|a, b| a.0.cmp(&b.0));
    let hold = Lock { until: Some(T0 / 1000 + 7200), reason: "hold".into() };
    let expected_users = vec![
        (UserRef::subject("sub-3"), UserState { lock: Some(hold), revoked_before_ms: None, groups: None }),
        (
            UserRef::Email(Arc::from("u2@corp.example")),
            UserState { lock: None, revoked_before_ms: Some(T0 + 4000), groups: None },
        ),
    ];
    assert_eq!(body.users, expected_users);
    let public = |kid: &str| PublicKey {
        kid: kid.into(),
        alg: KeyAlgorithm::ES256,
        x: format!("x-{kid}"),
        y: Some(format!("y-{kid}")),
    };
    assert_eq!(body.signing_keys, [public("k1"), public("k2")]);

    // Edges accept it, and it is what replaying the whole log gives.
    let from_store = Snapshot::from_body(body.clone()).expect("the snapshot's policy compiles");
    let mut replayed = Snapshot::new(0, Arc::new(Policy::empty()));
    for delta in all_changes(&store).await {
        replayed.apply(&delta).unwrap_or_else(|e| panic!("delta {}: {e:?}", delta.seq));
    }
    let mut replayed = replayed.to_body();
    replayed.terminated_sessions.retain(|(_, expires)| *expires > now / 1000);
    // A terminate-all travels as one `TerminateUser` (the user's
    // `revoked_before_ms` kills those sessions' tokens), while the tables mark
    // each of its sessions ended, so the snapshot also lists them.
    replayed.terminated_sessions.push(ended(2));
    replayed.terminated_sessions.sort();
    assert_eq!(from_store.to_body(), replayed, "snapshot and change log disagree");
    let wire = encode(&Message::Snapshot(body.clone()));
    assert_eq!(decode(&wire).unwrap(), Message::Snapshot(body), "the snapshot survives the wire");
}

store_tests!(
    a_commit_wakes_the_change_feed_by_itself,
    migrations_apply_twice,
    changes_after_in_order,
    prune_keeps_the_newest,
    expire_before_is_a_change,
    empty_snapshot,
    snapshot_after_a_mix_of_actions,
);
