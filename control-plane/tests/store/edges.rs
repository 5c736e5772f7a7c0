//! Edges' reports and how far a change has propagated, and the audit log's
//! filters and cursor.

use std::collections::HashSet;

use portcullis_control_plane::model::{rfc3339, Actor};
use portcullis_control_plane::store::{AuditFilter, EdgeAuditRow, EdgeReport, EdgeStore, Propagation, SqlStore};

use crate::fixtures::{audit_all, HOUR, T0};

fn report(edge_id: &str, applied_seq: u64, live_connections: i64, closed: &[(u64, i64)]) -> EdgeReport {
    EdgeReport {
        edge_id: edge_id.into(),
        name: format!("{edge_id} (eu-west)"),
        applied_seq,
        live_connections,
        closed: closed.to_vec(),
    }
}

fn propagation(edges_total: u32, edges_applied: u32, connections_closed: i64) -> Propagation {
    Propagation { edges_total, edges_applied, connections_closed }
}

async fn edge_reports_and_propagation(store: SqlStore) {
    assert_eq!(store.list_edges().await.unwrap(), []);
    assert_eq!(store.propagation(1, T0).await.unwrap(), Propagation::default());

    store.record_edge_report(&report("e1", 2, 10, &[(1, 3)]), T0).await.unwrap();
    store.record_edge_report(&report("e2", 1, 4, &[(1, 2)]), T0 + 1000).await.unwrap();
    store.record_edge_report(&report("e3", 2, 0, &[(2, 7)]), T0 - HOUR).await.unwrap();
    // e1 again: closes add up per change; the rest is replaced.
    let mut again = report("e1", 3, 8, &[(1, 1), (2, 4)]);
    again.name = "e1 renamed".into();
    store.record_edge_report(&again, T0 + 2000).await.unwrap();

    let alive_since = T0 - 60_000;
    assert_eq!(store.propagation(1, alive_since).await.unwrap(), propagation(2, 2, 6), "e3 is stale");
    assert_eq!(store.propagation(2, alive_since).await.unwrap(), propagation(2, 1, 11));
    assert_eq!(store.propagation(3, alive_since).await.unwrap(), propagation(2, 1, 0));
    assert_eq!(store.propagation(4, alive_since).await.unwrap(), propagation(2, 0, 0));
    assert_eq!(store.propagation(u64::MAX, alive_since).await.unwrap(), propagation(2, 0, 0), "no edge is that far");
    assert_eq!(store.propagation(2, T0 - 2 * HOUR).await.unwrap(), propagation(3, 2, 11), "all alive");
    assert_eq!(store.propagation(2, T0 + 1000).await.unwrap(), propagation(2, 1, 11), "the cutoff is inclusive");
    assert_eq!(store.propagation(1, T0 + 3000).await.unwrap(), propagation(0, 0, 6));

    let edges = store.list_edges().await.unwrap();
    let expected = [
        ("e1".to_owned(), "e1 renamed".to_owned(), 3, T0 + 2000, 8),
        ("e2".to_owned(), "e2 (eu-west)".to_owned(), 1, T0 + 1000, 4),
        ("e3".to_owned(), "e3 (eu-west)".to_owned(), 2, T0 - HOUR, 0),
    ];
    assert_eq!(edges, expected);
    assert!(audit_all(&store).await.is_empty(), "reports are not audited");
}

fn who(name: &str) -> Actor {
    Actor { name: name.into(), source_address: format!("addr-of-{name}") }
}

async fn audit_filters(store: SqlStore) {
    let rows = [
        ("login.denied", "session:0001", "no group", "edge:e1", T0),
        ("policy.check", "policy:v1", "", "token:ci", T0 + 1000),
        ("token.use", "token:Admin-1", "dashboard", "token:ci", T0 + 2000),
        ("login.denied", "session:0002", "locked", "edge:e2", T0 + 3000),
        ("policy.check", "policy:v2", "", "token:ci", T0 + 4000),
    ];
    for (action, target, reason, actor, at) in rows {
        store.record_audit(action, target, reason, &who(actor), at).await.unwrap();
    }
    let all = audit_all(&store).await;
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let newest = &all[0];
    assert_eq!(
        (newest.action.as_str(), newest.target.as_str(), newest.reason.as_str()),
        ("policy.check", "policy:v2", "")
    );
    assert_eq!((newest.actor.as_str(), newest.source_address.as_str()), ("token:ci", "addr-of-token:ci"));
    assert_eq!((newest.at.clone(), newest.seq), (rfc3339(T0 + 4000), None));

    let targets = |filter: AuditFilter| {
        let store = store.clone();
        async move {
            let filter = AuditFilter { limit: filter.limit.max(100), ..filter };
            store.audit(&filter).await.unwrap().into_iter().map(|e| e.target).collect::<Vec<_>>()
        }
    };
    let f = AuditFilter::default;
    assert_eq!(
        targets(AuditFilter { actor: Some("token:ci".into()), ..f() }).await,
        ["policy:v2", "token:Admin-1", "policy:v1"]
    );
    assert_eq!(
        targets(AuditFilter { actor: Some("token".into()), ..f() }).await,
        Vec::<String>::new(),
        "actors match whole"
    );
    assert_eq!(
        targets(AuditFilter { action: Some("login.denied".into()), ..f() }).await,
        ["session:0002", "session:0001"]
    );
    assert_eq!(targets(AuditFilter { action: Some("login".into()), ..f() }).await, Vec::<String>::new());
    assert_eq!(targets(AuditFilter { target: Some("policy:".into()), ..f() }).await, ["policy:v2", "policy:v1"]);
    assert_eq!(targets(AuditFilter { target: Some("0001".into()), ..f() }).await, ["session:0001"], "contains");
    assert_eq!(targets(AuditFilter { target: Some("Admin".into()), ..f() }).await, ["token:Admin-1"]);
    assert_eq!(
        targets(AuditFilter { target: Some("admin".into()), ..f() }).await,
        Vec::<String>::new(),
        "case-sensitive"
    );
    assert_eq!(
        targets(AuditFilter { target: Some(String::new()), ..f() }).await.len(),
        5,
        "empty text is in every target"
    );
    assert_eq!(targets(AuditFilter { since_ms: Some(T0 + 3000), ..f() }).await, ["policy:v2", "session:0002"]);
    let combined = AuditFilter {
        actor: Some("token:ci".into()),
        action: Some("policy.check".into()),
        since_ms: Some(T0 + 1000),
        target: Some("v1".into()),
        ..f()
    };
    assert_eq!(targets(combined).await, ["policy:v1"]);

    // Cursor pages of two: every entry once.
    let mut seen = Vec::new();
    let mut before_id = None;
    loop {
        let page = store.audit(&AuditFilter { before_id, limit: 2, ..f() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        before_id = page.last().map(|e| e.id);
        seen.extend(page);
    }
    assert_eq!(seen, all);
    assert_eq!(seen.iter().map(|e| e.id).collect::<HashSet<_>>().len(), 5);
    let filtered = AuditFilter { before_id: Some(all[1].id), action: Some("policy.check".into()), ..f() };
    assert_eq!(targets(filtered).await, ["policy:v1"]);

    // Following: entries after an id, oldest first, in pages.
    let mut followed = Vec::new();
    let mut after_id = Some(0);
    loop {
        let page = store.audit(&AuditFilter { after_id, limit: 2, ..f() }).await.unwrap();
        let Some(last) = page.last() else { break };
        after_id = Some(last.id);
        followed.extend(page);
    }
    followed.reverse();
    assert_eq!(followed, all, "every entry once, in id order");
}

/// The rows of an edge's report name the edge, the route and the session's
/// user (email and subject, read from the session), and carry their count;
/// the trail filters by route and by edge.
async fn edge_audit_rows(store: SqlStore) {
    let session = crate::fixtures::create(
        &store,
        crate::fixtures::login(&crate::fixtures::sid(7), "sub-bob", "Bob@Corp.example", "chat"),
        T0,
    )
    .await;
    let row = |action: &'static str, session: Option<&str>, user: Option<&str>, route: &str, n: u64| EdgeAuditRow {
        action,
        target: session.map_or_else(|| format!("user:{}", user.unwrap_or("anonymous")), |s| format!("session:{s}")),
        reason: format!("{n} on {route}"),
        source_address: "198.51.100.7".into(),
        at_ms: T0 + 10,
        user: user.map(str::to_owned),
        session: session.map(str::to_owned),
        route: Some(route.to_owned()),
        occurrences: n,
    };
    let rows = [
        row("connection.closed", Some(&session.id), Some("bob@corp.example"), "chat", 3),
        row("access.denied", None, Some("ci@corp.example"), "db", 412),
        row("flow.open", None, Some("svc-subject"), "db", 1),
    ];
    store.record_edge_audit("e1", &rows[..1]).await.unwrap();
    store.record_edge_audit("e2", &rows[1..]).await.unwrap();
    store.record_edge_audit("e2", &[]).await.unwrap();
    let query = |filter: AuditFilter| {
        let store = store.clone();
        async move { store.audit(&AuditFilter { limit: 100, ..filter }).await.unwrap() }
    };
    let bob = query(AuditFilter { user: Some("sub-bob".into()), ..AuditFilter::default() }).await;
    assert_eq!(bob.len(), 2, "the login and the closed connections: {bob:?}");
    let closed = &bob[0];
    assert_eq!((closed.action.as_str(), closed.count), ("connection.closed", 3));
    assert_eq!(
        (closed.user_email.as_deref(), closed.session_id.as_deref()),
        (Some("bob@corp.example"), Some(session.id.as_str()))
    );
    assert_eq!(
        (closed.route.as_deref(), closed.edge.as_deref(), closed.actor.as_str()),
        (Some("chat"), Some("e1"), "edge:e1")
    );
    let on_db = query(AuditFilter { route: Some("db".into()), ..AuditFilter::default() }).await;
    assert_eq!(on_db.iter().map(|e| e.count).collect::<Vec<_>>(), [1, 412]);
    assert_eq!(on_db[1].user_email.as_deref(), Some("ci@corp.example"), "an email names the user");
    assert_eq!(on_db[0].user_subject.as_deref(), Some("svc-subject"), "anything else is a subject");
    let from_e2 = query(AuditFilter { edge: Some("e2".into()), route: Some("chat".into()), ..AuditFilter::default() });
    assert!(from_e2.await.is_empty(), "filters combine");
    assert_eq!(query(AuditFilter { edge: Some("e1".into()), ..AuditFilter::default() }).await.len(), 1);
}

store_tests!(edge_reports_and_propagation, audit_filters, edge_audit_rows);
