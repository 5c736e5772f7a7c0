//! Ending sessions: one session, every session of a user (by email or by
//! subject), and the activity edges report about live sessions.

use std::sync::Arc;

use portcullis_control_plane::store::{Activity, ChangeStore, NewSession, SessionStore, SqlStore, StoreError};
use portcullis_policy::snapshot::UserState;
use portcullis_policy::{Change, SessionId, UserRef};

use crate::fixtures::{actor, audit_all, ceil_s, change_at, create, last_audit, login, sid, HOUR, LIFETIME, T0};

async fn terminate_session_records_change_and_audit(store: SqlStore) {
    let record = create(&store, login(&sid(7), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    create(&store, login(&sid(8), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    let now = T0 + 5_000;
    let seq = store.terminate_session(&sid(7), "stolen laptop", &actor(), now).await.unwrap();
    assert_eq!(seq, Some(1));
    assert_eq!(store.head_seq().await.unwrap(), 1);
    let session: SessionId = sid(7).parse().unwrap();
    let expires_at = ceil_s(record.expires_ms);
    assert_eq!(expires_at, (T0 + LIFETIME) / 1000 + 1, "expiry rounds up to the next second");
    assert_eq!(change_at(&store, 1).await, Change::TerminateSession { session, expires_at });

    let ended = store.get_session(&sid(7)).await.unwrap().unwrap();
    assert_eq!((ended.ended_ms, ended.end_reason.as_deref()), (Some(now), Some("stolen laptop")));
    assert!(!ended.is_active(now));
    assert!(store.get_session(&sid(8)).await.unwrap().unwrap().is_active(now), "other sessions are untouched");

    let entry = last_audit(&store, "session.terminate").await;
    assert_eq!(entry.actor, "token:ops");
    assert_eq!(entry.source_address, "198.51.100.7");
    assert_eq!(entry.reason, "stolen laptop");
    assert_eq!(entry.target, format!("session:{}", sid(7)));
    assert_eq!(entry.seq, Some(1));
    assert_eq!(entry.at, "2025-06-15T15:06:45.000Z");

    // Already ended: nothing new anywhere.
    let audit_before = audit_all(&store).await.len();
    assert_eq!(store.terminate_session(&sid(7), "again", &actor(), now + 1).await.unwrap(), None);
    assert_eq!(store.head_seq().await.unwrap(), 1);
    assert_eq!(audit_all(&store).await.len(), audit_before);
    let still = store.get_session(&sid(7)).await.unwrap().unwrap();
    assert_eq!((still.ended_ms, still.end_reason.as_deref()), (Some(now), Some("stolen laptop")), "first end stays");

    for unknown in [sid(9), "not-a-session".to_owned(), String::new()] {
        let err = store.terminate_session(&unknown, "x", &actor(), now).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{unknown:?}: {err:?}");
    }
    assert_eq!(store.head_seq().await.unwrap(), 1);
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn user_state(store: &SqlStore, user: &UserRef, now: i64) -> Option<UserState> {
    let body = store.snapshot_body(now).await.unwrap();
    body.users.into_iter().find(|(u, _)| u == user).map(|(_, s)| s)
}

async fn terminate_user_by_email(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "Ada@Corp.Example", "wiki"), T0).await;
    create(&store, login(&sid(2), "sub-ada-2", "ada@corp.example", "admin"), T0 + 1).await;
    create(&store, login(&sid(3), "sub-ada", "ada@corp.example", "admin"), T0 + 2).await;
    create(&store, login(&sid(4), "sub-bob", "bob@corp.example", "wiki"), T0 + 3).await;
    store.terminate_session(&sid(3), "earlier", &actor(), T0 + 10).await.unwrap();

    let now = T0 + HOUR + 500;
    let user = UserRef::email("ADA@corp.example");
    let (seq, ended) = store.terminate_user(&user, "offboarded", &actor(), now).await.unwrap();
    assert_eq!(seq, 2);
    assert_eq!(sorted(ended), [sid(1), sid(2)], "every active session of the email, on every route");
    for n in [1, 2] {
        let s = store.get_session(&sid(n)).await.unwrap().unwrap();
        assert_eq!((s.ended_ms, s.end_reason.as_deref()), (Some(now), Some("offboarded")));
    }
    assert_eq!(store.get_session(&sid(3)).await.unwrap().unwrap().end_reason.as_deref(), Some("earlier"));
    assert!(store.get_session(&sid(4)).await.unwrap().unwrap().is_active(now), "other users are untouched");

    let revoked_before_ms = now;
    let ada = UserRef::email("ada@corp.example");
    assert_eq!(change_at(&store, seq).await, Change::TerminateUser { user: ada.clone(), revoked_before_ms });
    let state = UserState { lock: None, revoked_before_ms: Some(revoked_before_ms), groups: None };
    assert_eq!(user_state(&store, &ada, now).await, Some(state.clone()));
    let entry = last_audit(&store, "user.terminate").await;
    assert_eq!(
        (entry.target.as_str(), entry.reason.as_str(), entry.seq),
        ("email:ada@corp.example", "offboarded", Some(2))
    );

    // A reference built without lowercasing still names the same user; an
    // earlier time never moves `revoked_before_ms` back.
    create(&store, login(&sid(5), "sub-ada", "ada@corp.example", "wiki"), now + 1000).await;
    let shouting = UserRef::Email(Arc::from("ADA@CORP.EXAMPLE"));
    let (seq, ended) = store.terminate_user(&shouting, "again", &actor(), now - HOUR).await.unwrap();
    assert_eq!((seq, ended), (3, vec![sid(5)]));
    // It revokes the token of the session it ended, issued after its caller's clock.
    let covering = UserState { revoked_before_ms: Some(now + 1000), ..state };
    assert_eq!(user_state(&store, &ada, now).await, Some(covering.clone()));
    store.terminate_user(&shouting, "again", &actor(), now - HOUR).await.unwrap();
    assert_eq!(user_state(&store, &ada, now).await, Some(covering), "revoked_before_ms only moves forward");
    let later = now + 60_000;
    store.terminate_user(&user, "third", &actor(), later).await.unwrap();
    let newer = UserState { lock: None, revoked_before_ms: Some(later), groups: None };
    assert_eq!(user_state(&store, &ada, later).await, Some(newer));
    let body = store.snapshot_body(later).await.unwrap();
    assert_eq!(body.users.len(), 1, "one user row for every spelling: {:?}", body.users);
}

async fn terminate_user_by_subject(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    create(&store, login(&sid(2), "sub-ada", "ada@home.example", "admin"), T0 + 1).await;
    create(&store, login(&sid(3), "SUB-ADA", "ada@corp.example", "wiki"), T0 + 2).await;
    let now = T0 + 1999;
    let user = UserRef::subject("sub-ada");
    let (seq, ended) = store.terminate_user(&user, "compromised", &actor(), now).await.unwrap();
    assert_eq!(sorted(ended), [sid(1), sid(2)], "every session of the subject, whatever the email");
    assert!(store.get_session(&sid(3)).await.unwrap().unwrap().is_active(now), "subjects are case-sensitive");
    assert_eq!(change_at(&store, seq).await, Change::TerminateUser { user: user.clone(), revoked_before_ms: now });
    let state = UserState { lock: None, revoked_before_ms: Some(now), groups: None };
    assert_eq!(user_state(&store, &user, now).await, Some(state));
    assert_eq!(user_state(&store, &UserRef::email("ada@corp.example"), now).await, None);
    assert_eq!(last_audit(&store, "user.terminate").await.target, "sub:sub-ada");

    // A user with no sessions can still be terminated (tokens not yet seen).
    let (seq, ended) = store.terminate_user(&UserRef::subject("sub-nobody"), "", &actor(), now).await.unwrap();
    assert_eq!((seq, ended.len()), (2, 0));
}

async fn a_login_after_a_terminate_all_starts_after_it(store: SqlStore) {
    let now = T0 + 250;
    store.terminate_user(&UserRef::email("ada@corp.example"), "offboarded", &actor(), now).await.unwrap();
    // In the very millisecond of the termination: the session (and its
    // token's `iat_ms`) starts 1 ms later, so the edges admit it.
    let same = create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), now).await;
    assert_eq!((same.created_ms, same.expires_ms), (now + 1, now + 1 + LIFETIME));
    // A clock behind the termination (another replica's, or one stepped back).
    // (The IdP's clock, which dates the sign-in, is right.)
    let signed_in_now = NewSession { auth_time_s: now / 1000, ..login(&sid(2), "sub-ada", "Ada@Corp.Example", "wiki") };
    let behind = create(&store, signed_in_now, now - 5_000).await;
    assert_eq!(behind.created_ms, now + 1, "the email in any case");
    store.terminate_user(&UserRef::subject("sub-bob"), "x", &actor(), now + 10).await.unwrap();
    let bob = create(&store, login(&sid(3), "sub-bob", "bob@home.example", "wiki"), now + 10).await;
    assert_eq!(bob.created_ms, now + 11, "by subject, whatever the email");
    // After the termination, and other users: the time as given.
    let later = create(&store, login(&sid(4), "sub-ada", "ada@corp.example", "wiki"), now + 500).await;
    assert_eq!(later.created_ms, now + 500);
    let eve = create(&store, login(&sid(5), "sub-eve", "eve@corp.example", "wiki"), now - 5_000).await;
    assert_eq!(eve.created_ms, now - 5_000);
    assert!(store.get_session(&sid(1)).await.unwrap().unwrap().is_active(now + 1));
}

async fn apply_activity(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    let seen = |address: &str, at_ms| Activity::Seen { session_id: sid(1), source_address: address.into(), at_ms };
    let connections = |delta| Activity::Connections { session_id: sid(1), delta };
    let events = [
        seen("198.51.100.1", T0 + 5000),
        seen("203.0.113.7", T0 + 3000),
        seen("198.51.100.1", T0 + 4000),
        Activity::Seen { session_id: sid(2), source_address: "192.0.2.1".into(), at_ms: T0 },
        Activity::Connections { session_id: sid(2), delta: 5 },
        connections(3),
        connections(-1),
    ];
    store.apply_activity("edge-2", &events, false).await.unwrap();
    let s = store.get_session(&sid(1)).await.unwrap().unwrap();
    assert_eq!(s.source_addresses, ["203.0.113.7", "198.51.100.1"], "each address once, first first");
    assert_eq!(s.edges, ["edge-1", "edge-2"]);
    assert_eq!((s.last_seen_ms, s.live_connections), (T0 + 5000, 2));
    assert_eq!(store.get_session(&sid(2)).await.unwrap(), None, "unknown sessions are ignored");

    store.apply_activity("edge-1", &[seen("203.0.113.7", T0 + 1000), connections(-10)], false).await.unwrap();
    let s = store.get_session(&sid(1)).await.unwrap().unwrap();
    assert_eq!(s.edges, ["edge-1", "edge-2"]);
    assert_eq!(s.last_seen_ms, T0 + 5000, "last_seen never goes back");
    assert_eq!(s.live_connections, 2, "edge-1's count never goes below zero, and edge-2's 2 are its own");
    store.apply_activity("edge-1", &[connections(1), seen("192.0.2.9", T0 + 9000)], false).await.unwrap();
    store.apply_activity("edge-3", &[], false).await.unwrap();
    let s = store.get_session(&sid(1)).await.unwrap().unwrap();
    assert_eq!((s.live_connections, s.last_seen_ms, s.source_addresses.len()), (3, T0 + 9000, 3));
    assert_eq!(store.head_seq().await.unwrap(), 0, "activity is not a change for edges");
}

/// Edges report each session's live connections as counts, now and then all
/// of them at once: a restarted edge's old counts are forgotten, not added to.
async fn live_connections_are_counts_per_edge(store: SqlStore) {
    for n in 1..=2 {
        create(&store, login(&sid(n), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    }
    let live = |n, connections| Activity::LiveConnections { session_id: sid(n), connections };
    let count = |n| {
        let store = store.clone();
        async move { store.get_session(&sid(n)).await.unwrap().unwrap().live_connections }
    };
    store.apply_activity("edge-1", &[live(1, 3), live(2, 1)], true).await.unwrap();
    store.apply_activity("edge-2", &[live(1, 2)], false).await.unwrap();
    assert_eq!((count(1).await, count(2).await), (5, 1), "summed over edges");
    store.apply_activity("edge-1", &[live(1, 3)], false).await.unwrap();
    assert_eq!(count(1).await, 5, "the same count again adds nothing");
    // edge-1 restarts: its first report names what it has now (session 1, once).
    store.apply_activity("edge-1", &[live(1, 1)], true).await.unwrap();
    assert_eq!((count(1).await, count(2).await), (3, 0), "edge-1's old counts are gone, edge-2's stay");
    store.apply_activity("edge-2", &[], true).await.unwrap();
    assert_eq!(count(1).await, 1, "an edge with nothing live forgets everything");
    store.apply_activity("edge-1", &[live(1, 0)], false).await.unwrap();
    assert_eq!(count(1).await, 0);
}

/// A login that commits after a terminate-all's caller read the clock, but
/// before the termination's transaction (it waited for the change-log lock,
/// or in the group commit's queue): the termination ends it, and the edges,
/// which learn of a terminate-all only through `revoked_before_ms`, must
/// refuse its token (issued at its `created_ms`), or the session would be
/// listed as ended yet still let in.
async fn a_terminate_all_revokes_a_login_that_committed_after_its_clock(store: SqlStore) {
    let ada = UserRef::email("ada@corp.example");
    let asked = T0 + 100;
    let racing = create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), asked + 100).await;
    let (seq, ended) = store.terminate_user(&ada, "offboarded", &actor(), asked).await.unwrap();
    assert_eq!(ended, vec![sid(1)], "the racing login is ended");
    let Change::TerminateUser { revoked_before_ms, .. } = change_at(&store, seq).await else {
        panic!("not a terminate-all")
    };
    assert!(
        revoked_before_ms >= racing.created_ms,
        "its token (issued {}) is revoked at the edges (up to {revoked_before_ms})",
        racing.created_ms
    );
    assert_eq!(user_state(&store, &ada, asked).await.and_then(|s| s.revoked_before_ms), Some(revoked_before_ms));
    // A login after the termination still starts after it, and lives.
    let after = create(&store, login(&sid(2), "sub-ada", "ada@corp.example", "wiki"), asked + 150).await;
    assert!(after.created_ms > revoked_before_ms);
    assert!(store.get_session(&sid(2)).await.unwrap().unwrap().is_active(after.created_ms));
}

store_tests!(
    a_terminate_all_revokes_a_login_that_committed_after_its_clock,
    terminate_session_records_change_and_audit,
    terminate_user_by_email,
    terminate_user_by_subject,
    a_login_after_a_terminate_all_starts_after_it,
    apply_activity,
    live_connections_are_counts_per_edge,
);
