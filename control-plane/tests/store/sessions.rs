//! Sessions: creating and reading them, every list filter, cursor pagination,
//! and the routes' concurrent-session limits (refuse, end the oldest).

use std::collections::HashSet;

use portcullis_control_plane::model::SessionRecord;
use portcullis_control_plane::store::{
    Activity, ChangeStore, NewSession, SessionFilter, SessionLimit, SessionStore, SqlStore, StoreError,
};
use portcullis_policy::policy::SessionLimitAction;
use portcullis_policy::Change;

use crate::fixtures::{
    actor, all_changes, audit_all, ceil_s, change_at, create, last_audit, login, sid, HOUR, LIFETIME, T0,
};

fn ids(records: &[SessionRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

async fn list(store: &SqlStore, filter: SessionFilter, now: i64) -> Vec<String> {
    ids(&store.list_sessions(&SessionFilter { limit: filter.limit.max(100), ..filter }, now).await.expect("list"))
}

async fn create_and_get_session(store: SqlStore) {
    let mut new = login(&sid(1), "sub-ada", "Ada@Corp.Example", "wiki");
    new.idp_session_id = None;
    let record = create(&store, new, T0).await;
    assert_eq!(record.email, "ada@corp.example", "emails are stored lowercased");
    assert_eq!((record.created_ms, record.last_seen_ms, record.expires_ms), (T0, T0, T0 + LIFETIME));
    assert_eq!(record.source_addresses, ["203.0.113.7"]);
    assert_eq!(record.edges, ["edge-1"]);
    assert_eq!((record.ended_ms, record.end_reason.as_deref(), record.live_connections), (None, None, 0));
    assert_eq!(store.get_session(&sid(1)).await.unwrap(), Some(record.clone()), "get returns what create returned");
    assert_eq!(store.get_session(&sid(2)).await.unwrap(), None);

    let with_sid = create(&store, login(&sid(2), "sub-bob", "bob@corp.example", "admin"), T0 + 1).await;
    assert_eq!(with_sid.idp_session_id.as_deref(), Some(format!("idp-{}", sid(2)).as_str()));
    assert_eq!(store.get_session(&sid(2)).await.unwrap(), Some(with_sid));

    assert_eq!(store.head_seq().await.unwrap(), 0, "a login is not a change for edges");
    let entry = last_audit(&store, "session.create").await;
    assert_eq!((entry.target.as_str(), entry.seq), (format!("session:{}", sid(2)).as_str(), None));
    assert_eq!(audit_all(&store).await.len(), 2);
}

async fn list_sessions_filters(store: SqlStore) {
    let now = T0 + HOUR;
    let mut expired = login(&sid(5), "sub-carol", "carol@corp.example", "wiki");
    expired.lifetime_ms = HOUR;
    create(&store, expired, T0 - 2 * HOUR).await;
    create(&store, login(&sid(1), "sub-ada", "Ada@Corp.Example", "wiki"), T0).await;
    let mut on_edge_2 = login(&sid(2), "sub-ada", "ada@corp.example", "admin");
    on_edge_2.edge_id = "edge-2".into();
    create(&store, on_edge_2, T0 + 1000).await;
    let mut on_edge_10 = login(&sid(3), "sub-bob", "bob@corp.example", "wiki");
    on_edge_10.edge_id = "edge-10".into();
    create(&store, on_edge_10, T0 + 2000).await;
    create(&store, login(&sid(4), "sub-bob", "bob@corp.example", "admin"), T0 + 3000).await;
    store.terminate_session(&sid(4), "test", &actor(), T0 + 4000).await.unwrap();
    let seen = Activity::Seen { session_id: sid(1), source_address: "203.0.113.8".into(), at_ms: T0 + 5000 };
    store.apply_activity("edge-2", &[seen], false).await.unwrap();

    let f = SessionFilter::default;
    let s = |ns: &[u64]| ns.iter().map(|&n| sid(n)).collect::<Vec<_>>();
    assert_eq!(list(&store, f(), now).await, s(&[4, 3, 2, 1, 5]), "newest first");
    for email in ["ada@corp.example", "ADA@corp.EXAMPLE"] {
        assert_eq!(list(&store, SessionFilter { email: Some(email.into()), ..f() }, now).await, s(&[2, 1]), "{email}");
    }
    assert_eq!(list(&store, SessionFilter { email: Some("ada".into()), ..f() }, now).await, s(&[]));
    assert_eq!(list(&store, SessionFilter { route: Some("wiki".into()), ..f() }, now).await, s(&[3, 1, 5]));
    assert_eq!(list(&store, SessionFilter { route: Some("WIKI".into()), ..f() }, now).await, s(&[]));
    assert_eq!(list(&store, SessionFilter { active: Some(true), ..f() }, now).await, s(&[3, 2, 1]));
    assert_eq!(list(&store, SessionFilter { active: Some(false), ..f() }, now).await, s(&[4, 5]));
    let edge = |e: &str| SessionFilter { edge: Some(e.into()), ..f() };
    assert_eq!(list(&store, edge("edge-1"), now).await, s(&[4, 1, 5]), "edge-10 is not edge-1");
    assert_eq!(list(&store, edge("edge-2"), now).await, s(&[2, 1]), "edges seen later count");
    assert_eq!(list(&store, edge("edge-10"), now).await, s(&[3]));
    assert_eq!(list(&store, edge("edge"), now).await, s(&[]), "edge ids match whole");
    assert_eq!(list(&store, edge("EDGE-1"), now).await, s(&[]), "edge ids are case-sensitive");
    assert_eq!(list(&store, SessionFilter { since_ms: Some(T0 + 1000), ..f() }, now).await, s(&[4, 3, 2]));
    assert_eq!(list(&store, SessionFilter { since_ms: Some(T0 + 3001), ..f() }, now).await, s(&[]));
    let combined = SessionFilter {
        email: Some("BOB@corp.example".into()),
        route: Some("wiki".into()),
        active: Some(true),
        edge: Some("edge-10".into()),
        since_ms: Some(T0),
        ..f()
    };
    assert_eq!(list(&store, combined, now).await, s(&[3]));
    let page = store.list_sessions(&SessionFilter { limit: 2, ..f() }, now).await.unwrap();
    assert_eq!(ids(&page), s(&[4, 3]), "limit");
    let later = T0 + 3000 + LIFETIME;
    assert_eq!(list(&store, SessionFilter { active: Some(true), ..f() }, later).await, s(&[]), "all expired by then");
}

async fn list_sessions_pagination(store: SqlStore) {
    // 250 sessions, ten per millisecond, ids not in creation order: ties on
    // created_ms must be broken by id for the cursor to be exact.
    let mut all = HashSet::new();
    for i in 0..250u64 {
        let id = sid((i * 7919) % 1009 + 1);
        let route = if i % 2 == 0 { "wiki" } else { "admin" };
        create(&store, login(&id, &format!("sub-{i}"), "user@corp.example", route), T0 + (i / 10) as i64).await;
        assert!(all.insert(id));
    }
    for (route, expected) in [(None, 250), (Some("wiki"), 125)] {
        let mut seen: Vec<SessionRecord> = Vec::new();
        let mut pages = Vec::new();
        loop {
            let before = seen.last().map(|r| (r.created_ms, r.id.clone()));
            let filter = SessionFilter { route: route.map(str::to_owned), before, limit: 100, ..Default::default() };
            let page = store.list_sessions(&filter, T0).await.unwrap();
            if page.is_empty() {
                break;
            }
            pages.push(page.len());
            seen.extend(page);
        }
        let expected_pages: Vec<usize> = if expected == 250 { vec![100, 100, 50] } else { vec![100, 25] };
        assert_eq!(pages, expected_pages, "page sizes for route {route:?}");
        let unique: HashSet<&str> = seen.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(unique.len(), expected, "no duplicates");
        assert!(seen.iter().all(|r| route.is_none_or(|want| r.route == want)));
        for pair in seen.windows(2) {
            let (a, b) = ((pair[0].created_ms, &pair[0].id), (pair[1].created_ms, &pair[1].id));
            assert!(a > b, "not strictly newest first: {a:?} then {b:?}");
        }
        if route.is_none() {
            assert_eq!(unique, all.iter().map(String::as_str).collect(), "no gaps");
        }
    }
}

fn limit(max: u32, action: SessionLimitAction) -> Option<SessionLimit> {
    Some(SessionLimit { max, action })
}

async fn session_limit_refuse(store: SqlStore) {
    let refuse = limit(2, SessionLimitAction::Refuse);
    for (n, at) in [(1, T0), (2, T0 + 1000)] {
        let new = login(&sid(n), "sub-ada", "ada@corp.example", "admin");
        store.create_session(new, refuse, &actor(), at).await.unwrap();
    }
    let audit_before = audit_all(&store).await.len();
    let third = login(&sid(3), "sub-ada", "ada@corp.example", "admin");
    let err = store.create_session(third.clone(), refuse, &actor(), T0 + 2000).await.unwrap_err();
    assert!(matches!(err, StoreError::SessionLimit(2)), "{err:?}");
    assert_eq!(store.get_session(&sid(3)).await.unwrap(), None, "a refused login leaves nothing behind");
    assert_eq!(store.head_seq().await.unwrap(), 0);
    assert_eq!(audit_all(&store).await.len(), audit_before);
    assert!(store.get_session(&sid(1)).await.unwrap().unwrap().ended_ms.is_none(), "nothing was ended");

    // The limit is per subject and per route.
    let other_route = login(&sid(4), "sub-ada", "ada@corp.example", "wiki");
    store.create_session(other_route, refuse, &actor(), T0 + 2000).await.unwrap();
    let other_user = login(&sid(5), "sub-bob", "ada@corp.example", "admin");
    store.create_session(other_user, refuse, &actor(), T0 + 2000).await.unwrap();

    // Ended sessions no longer count; nor do expired ones.
    store.terminate_session(&sid(1), "test", &actor(), T0 + 3000).await.unwrap();
    // An admin ended one of ada's sessions: her next logins are new sign-ins.
    let stale = store.create_session(third.clone(), refuse, &actor(), T0 + 3000).await.map(drop).unwrap_err();
    assert!(matches!(stale, StoreError::ReauthenticationRequired), "{stale:?}");
    let third = NewSession { auth_time_s: (T0 + 3000) / 1000 + 1, ..third };
    store.create_session(third, refuse, &actor(), T0 + 3000).await.unwrap();
    let fourth =
        NewSession { auth_time_s: (T0 + 3000) / 1000 + 1, ..login(&sid(6), "sub-ada", "ada@corp.example", "admin") };
    store.create_session(fourth, refuse, &actor(), T0 + LIFETIME + 1000).await.unwrap();
}

async fn session_limit_end_oldest(store: SqlStore) {
    let end_oldest = limit(2, SessionLimitAction::EndOldest);
    let mut records = Vec::new();
    for (n, at) in [(1, T0), (2, T0 + 1000)] {
        let new = login(&sid(n), "sub-ada", "ada@corp.example", "admin");
        records.push(store.create_session(new, end_oldest, &actor(), at).await.unwrap().record);
    }
    let third = login(&sid(3), "sub-ada", "ada@corp.example", "admin");
    let created = store.create_session(third, end_oldest, &actor(), T0 + 2000).await.unwrap();
    assert_eq!(created.replaced, [(sid(1), 1)]);
    let ended = store.get_session(&sid(1)).await.unwrap().unwrap();
    assert_eq!(ended.ended_ms, Some(T0 + 2000));
    assert!(ended.end_reason.is_some_and(|r| !r.is_empty()));
    let expected =
        Change::TerminateSession { session: sid(1).parse().unwrap(), expires_at: ceil_s(records[0].expires_ms) };
    assert_eq!(change_at(&store, 1).await, expected);
    let entry = last_audit(&store, "session.replace").await;
    assert_eq!((entry.target, entry.seq, entry.actor), (format!("session:{}", sid(1)), Some(1), actor().name));

    // Equal creation times: the smaller id counts as older, whatever the
    // order the rows were written in.
    let fourth = login(&sid(0), "sub-ada", "ada@corp.example", "admin");
    store.create_session(fourth, None, &actor(), T0 + 2000).await.unwrap();
    let fifth = login(&sid(5), "sub-ada", "ada@corp.example", "admin");
    let created = store.create_session(fifth, limit(1, SessionLimitAction::EndOldest), &actor(), T0 + 3000).await;
    let replaced = created.unwrap().replaced;
    assert_eq!(replaced, [(sid(2), 2), (sid(0), 3), (sid(3), 4)], "oldest first, one change each");
    for (id, seq) in &replaced {
        assert!(
            matches!(change_at(&store, *seq).await, Change::TerminateSession { session, .. } if session.to_string() == *id)
        );
    }
    assert_eq!(all_changes(&store).await.len(), 4);
    let active = SessionFilter { active: Some(true), route: Some("admin".into()), limit: 10, ..Default::default() };
    assert_eq!(ids(&store.list_sessions(&active, T0 + 3000).await.unwrap()), [sid(5)]);
}

store_tests!(
    create_and_get_session,
    list_sessions_filters,
    list_sessions_pagination,
    session_limit_refuse,
    session_limit_end_oldest,
);
