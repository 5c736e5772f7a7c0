//! SQL metacharacters in every value a caller can filter or act on: they are
//! bound, never spliced, and `LIKE` wildcards in them match only themselves.
//! Expected results come from plain Rust string comparisons over the data.

use portcullis_control_plane::model::Actor;
use portcullis_control_plane::store::{
    AuditFilter, ChangeStore, EdgeStore, PolicyStore, SessionFilter, SessionStore, SqlStore, StoreError, TokenStore,
    UserStore,
};
use portcullis_policy::UserRef;

use crate::fixtures::{actor, create, login, sid, POLICY_A, T0};

/// Values that break naive SQL, plus decoys that naive `LIKE` would match.
const VALUES: &[&str] = &[
    "'; DROP TABLE sessions; --",
    "%",
    "_",
    "\\",
    "a%b",
    "a_b",
    "\\%",
    "\\_",
    "\"quoted\"",
    "O'Brien",
    "axb",
    "ab",
    "a\\b",
    "[x]*?",
    "ünïcödé",
];

async fn metacharacters_are_literal(store: SqlStore) {
    for (i, v) in VALUES.iter().enumerate() {
        let mut new = login(&sid(i as u64 + 1), v, &format!("{v}@Corp.Example"), v);
        new.edge_id = (*v).to_owned();
        new.source_address = (*v).to_owned();
        create(&store, new, T0 + i as i64).await;
        let who = Actor { name: (*v).to_owned(), source_address: (*v).to_owned() };
        store.record_audit(v, &format!("x{v}y"), v, &who, T0).await.unwrap();
    }
    let now = T0 + 1000;
    for (i, v) in VALUES.iter().enumerate() {
        let only_me = vec![sid(i as u64 + 1)];
        let list = |filter: SessionFilter| {
            let store = store.clone();
            async move {
                let filter = SessionFilter { limit: 100, ..filter };
                store.list_sessions(&filter, now).await.unwrap().into_iter().map(|s| s.id).collect::<Vec<_>>()
            }
        };
        let email = format!("{v}@corp.example");
        assert_eq!(list(SessionFilter { email: Some(email), ..Default::default() }).await, only_me, "email {v:?}");
        assert_eq!(
            list(SessionFilter { route: Some((*v).into()), ..Default::default() }).await,
            only_me,
            "route {v:?}"
        );
        assert_eq!(list(SessionFilter { edge: Some((*v).into()), ..Default::default() }).await, only_me, "edge {v:?}");
        // As a cursor id: everything created earlier, and this session or
        // not depending on how the server collates `v` against hex digits.
        let cursor = Some((T0 + i as i64, (*v).to_owned()));
        let page = list(SessionFilter { before: cursor, ..Default::default() }).await;
        let older: Vec<String> = (1..=i as u64).rev().map(sid).collect();
        assert!(page == older || (page[0] == only_me[0] && page[1..] == older), "cursor id {v:?}: {page:?}");

        let audit = |filter: AuditFilter| {
            let store = store.clone();
            async move {
                let filter = AuditFilter { limit: 100, ..filter };
                let mut targets: Vec<String> =
                    store.audit(&filter).await.unwrap().into_iter().map(|e| e.target).collect();
                targets.sort();
                targets
            }
        };
        let mine = vec![format!("x{v}y")];
        assert_eq!(audit(AuditFilter { actor: Some((*v).into()), ..Default::default() }).await, mine, "actor {v:?}");
        assert_eq!(audit(AuditFilter { action: Some((*v).into()), ..Default::default() }).await, mine, "action {v:?}");
        let mut containing: Vec<String> = VALUES.iter().map(|w| format!("x{w}y")).filter(|t| t.contains(v)).collect();
        containing.sort();
        assert_eq!(
            audit(AuditFilter { target: Some((*v).into()), ..Default::default() }).await,
            containing,
            "target {v:?}"
        );

        assert_eq!(store.get_session(v).await.unwrap(), None);
        assert!(matches!(store.terminate_session(v, v, &actor(), now).await, Err(StoreError::NotFound)));
        assert_eq!(store.api_token_by_hash(v).await.unwrap(), None);
        assert!(store.list_api_tokens(v).await.unwrap().is_empty());
        assert!(matches!(store.revoke_api_token(v, &actor(), now).await, Err(StoreError::NotFound)));
    }

    // Actions keyed by the values touch exactly their own rows.
    for (i, v) in VALUES.iter().enumerate() {
        let (_, ended) = store.terminate_user(&UserRef::subject(v), v, &actor(), now).await.unwrap();
        assert_eq!(ended, [sid(i as u64 + 1)], "terminate subject {v:?}");
        store.lock_user(&UserRef::email(v), v, None, &actor(), now).await.unwrap();
        store.put_policy(POLICY_A, v, &actor(), now).await.unwrap();
    }
    let all = store.list_sessions(&SessionFilter { limit: 100, ..Default::default() }, now).await.unwrap();
    assert_eq!(all.len(), VALUES.len(), "the sessions table is intact");
    for (s, v) in all.iter().rev().zip(VALUES) {
        assert_eq!((s.subject.as_str(), s.route.as_str(), s.user_agent.as_str()), (*v, *v, "Mozilla/5.0 (test)"));
        assert_eq!(
            (s.source_addresses.as_slice(), s.edges.as_slice()),
            ([v.to_string()].as_slice(), [v.to_string()].as_slice())
        );
        assert_eq!(s.email, format!("{v}@corp.example").to_ascii_lowercase());
    }
    let body = store.snapshot_body(now).await.unwrap();
    assert_eq!(body.users.len(), 2 * VALUES.len(), "one revoked subject and one locked email per value");
    assert_eq!(body.seq, 3 * VALUES.len() as u64);
    assert_eq!(store.policy_history(100).await.unwrap().len(), VALUES.len());
    let history = store.policy_history(100).await.unwrap();
    assert!(history.iter().rev().zip(VALUES).all(|(p, v)| p.message == *v));
}

store_tests!(metacharacters_are_literal);
