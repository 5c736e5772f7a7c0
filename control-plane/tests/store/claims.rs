//! Group overrides (`SqlStore::override_groups`): the row, its change and
//! its audit row in one transaction; a full snapshot carries the live
//! override, joined to the user's other state; a second override replaces
//! the first; `expire_before` forgets it in the table as edges do; and the
//! snapshot agrees with replaying the change log.

use std::sync::Arc;

use portcullis_control_plane::store::{ChangeStore, SessionStore, SqlStore, UserStore};
use portcullis_policy::snapshot::{GroupsOverride, Lock, UserState};
use portcullis_policy::{Change, Policy, Snapshot, UserRef};

use crate::fixtures::{actor, all_changes, change_at, create, last_audit, login, sid, HOUR, T0};

async fn users(store: &SqlStore, now: i64) -> Vec<(UserRef, UserState)> {
    let mut users = store.snapshot_body(now).await.unwrap().users;
    users.sort_by(|a, b| a.0.cmp(&b.0));
    users
}

fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|g| (*g).to_owned()).collect()
}

/// Eight hours after `T0`, in seconds: how long the tests' sessions live.
const EXPIRES_S: i64 = (T0 + 8 * HOUR) / 1000;

async fn an_override_is_a_change_and_in_the_snapshot(store: SqlStore) {
    let ada = UserRef::subject("sub-ada");
    let seq = store.override_groups(&ada, &groups(&["qa", "dev", "dev"]), EXPIRES_S, "caep", &actor(), T0).await;
    assert_eq!(seq.unwrap(), 1);
    let change = Change::OverrideGroups {
        user: ada.clone(),
        groups: groups(&["dev", "qa"]),
        since_ms: T0,
        expires_at: EXPIRES_S,
    };
    assert_eq!(change_at(&store, 1).await, change, "sorted and de-duplicated, as edges keep them");
    let expected = GroupsOverride { groups: groups(&["dev", "qa"]), since_ms: T0, expires_at: EXPIRES_S };
    assert_eq!(users(&store, T0).await, [(ada.clone(), UserState { groups: Some(expected), ..UserState::default() })]);
    let entry = last_audit(&store, "user.groups_overridden").await;
    assert_eq!(
        (entry.target.as_str(), entry.reason.as_str(), entry.seq),
        ("sub:sub-ada", "caep; groups now [\"dev\",\"qa\"]", Some(1))
    );
    assert_eq!(store.head_seq().await.unwrap(), 1);
}

async fn a_second_override_replaces_the_first(store: SqlStore) {
    let ada = UserRef::email("Ada@Corp.Example");
    store.override_groups(&ada, &groups(&["dev", "ops"]), EXPIRES_S, "first", &actor(), T0).await.unwrap();
    let seq = store.override_groups(&ada, &groups(&["dev"]), EXPIRES_S + 60, "second", &actor(), T0 + 5).await.unwrap();
    assert_eq!(seq, 2);
    let ada = UserRef::email("ada@corp.example");
    let expected = GroupsOverride { groups: groups(&["dev"]), since_ms: T0 + 5, expires_at: EXPIRES_S + 60 };
    assert_eq!(users(&store, T0).await, [(ada.clone(), UserState { groups: Some(expected), ..UserState::default() })]);
    match change_at(&store, 2).await {
        Change::OverrideGroups { user, groups: g, since_ms, .. } => {
            assert_eq!((user, g, since_ms), (ada, groups(&["dev"]), T0 + 5));
        }
        other => panic!("expected OverrideGroups, got {other:?}"),
    }
}

async fn an_override_joins_the_users_lock_and_the_snapshot_matches_the_log(store: SqlStore) {
    let eve = UserRef::subject("sub-eve");
    store.lock_user(&eve, "investigation", None, &actor(), T0).await.unwrap();
    store.override_groups(&eve, &groups(&["dev"]), EXPIRES_S, "caep", &actor(), T0 + 1).await.unwrap();
    store.terminate_user(&eve, "x", &actor(), T0 + 2).await.unwrap();
    store.override_groups(&UserRef::subject("sub-bob"), &[], EXPIRES_S, "caep", &actor(), T0 + 3).await.unwrap();
    let body = store.snapshot_body(T0 + 4).await.unwrap();
    let users = {
        let mut users = body.users.clone();
        users.sort_by(|a, b| a.0.cmp(&b.0));
        users
    };
    let eve_state = UserState {
        lock: Some(Lock { until: None, reason: "investigation".into() }),
        revoked_before_ms: Some(T0 + 2),
        groups: Some(GroupsOverride { groups: groups(&["dev"]), since_ms: T0 + 1, expires_at: EXPIRES_S }),
    };
    let bob_state = GroupsOverride { groups: vec![], since_ms: T0 + 3, expires_at: EXPIRES_S };
    assert_eq!(
        users,
        [
            (UserRef::subject("sub-bob"), UserState { groups: Some(bob_state), ..UserState::default() }),
            (eve, eve_state),
        ]
    );
    let mut replayed = Snapshot::new(0, Arc::new(Policy::empty()));
    for delta in all_changes(&store).await {
        replayed.apply(&delta).unwrap_or_else(|e| panic!("delta {}: {e:?}", delta.seq));
    }
    let from_store = Snapshot::from_body(body).unwrap();
    assert_eq!(from_store.to_body().users, replayed.to_body().users, "snapshot and change log agree");
}

async fn expire_before_forgets_overrides_that_ended(store: SqlStore) {
    let (ada, bob) = (UserRef::subject("sub-ada"), UserRef::subject("sub-bob"));
    store.override_groups(&ada, &groups(&["dev"]), EXPIRES_S, "caep", &actor(), T0).await.unwrap();
    store.override_groups(&bob, &groups(&["dev"]), EXPIRES_S + 1, "caep", &actor(), T0).await.unwrap();
    let seq = store.expire_before(EXPIRES_S, T0 + 8 * HOUR).await.unwrap();
    assert_eq!(change_at(&store, seq).await, Change::ExpireBefore { cutoff: EXPIRES_S });
    // Read as of T0, when both were live: the expired row is gone from the table.
    let left = users(&store, T0).await;
    assert_eq!(left.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(), [bob]);
    // And the clock alone hides an override past its end from a snapshot.
    assert_eq!(users(&store, (EXPIRES_S + 1) * 1000).await, []);
}

async fn an_override_ends_no_session(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    let ada = UserRef::subject("sub-ada");
    store.override_groups(&ada, &groups(&["dev"]), EXPIRES_S, "caep", &actor(), T0 + 1).await.unwrap();
    let session = store.get_session(&sid(1)).await.unwrap().expect("the session");
    assert!(session.is_active(T0 + 2), "a claims change re-checks connections, it terminates nothing");
}

store_tests!(
    an_override_is_a_change_and_in_the_snapshot,
    a_second_override_replaces_the_first,
    an_override_joins_the_users_lock_and_the_snapshot_matches_the_log,
    expire_before_forgets_overrides_that_ended,
    an_override_ends_no_session,
);
