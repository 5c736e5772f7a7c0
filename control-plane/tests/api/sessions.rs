//! `/api/v1/sessions`: filters, cursor pagination, one session, and
//! terminate with its receipt.

use std::collections::BTreeSet;

use axum::http::Method;
use serde_json::{json, Value};

use crate::client::CLIENT_IP;
use crate::fixtures::{apply_policy, ids, login, reason, text, Login};
use crate::harness::TestApp;

api_tests!(list_filters, cursor_pagination_visits_every_session_once, terminate_answers_a_receipt_once);

async fn list(t: &TestApp, query: &str) -> Vec<String> {
    ids(&t.get(&format!("/api/v1/sessions?{query}")).send().await.ok())
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

async fn list_filters(t: TestApp) {
    apply_policy(&t).await;
    let ada_wiki = login(&t, "Ada@Test.Example").await;
    let ada_admin = text(&Login::new("ada@test.example").route("admin").ok(&t).await["session_id"]);
    let bob_wiki = text(&Login::new("bob@test.example").edge("edge-b").ok(&t).await["session_id"]);
    let carol_console =
        text(&Login::new("carol@test.example").route("console").edge("edge-b").ok(&t).await["session_id"]);
    t.post(&format!("/api/v1/sessions/{bob_wiki}/terminate")).json(reason("lost laptop")).send().await.ok();

    let all = list(&t, "").await;
    assert_eq!(all.len(), 4);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 4);
    let by = |query: &'static str| {
        let t = &t;
        async move { list(t, query).await.into_iter().collect::<BTreeSet<_>>() }
    };
    // Emails are stored lowercased and matched case-insensitively.
    assert_eq!(by("email=ada@test.example").await, set(&[&ada_wiki, &ada_admin]));
    assert_eq!(by("email=ADA@test.EXAMPLE").await, set(&[&ada_wiki, &ada_admin]));
    assert_eq!(by("email=ada").await, set(&[]), "email is an exact match");
    assert_eq!(by("route=wiki").await, set(&[&ada_wiki, &bob_wiki]));
    assert_eq!(by("route=console").await, set(&[&carol_console]));
    assert_eq!(by("route=Wiki").await, set(&[]), "routes are case-sensitive names");
    assert_eq!(by("edge=edge-b").await, set(&[&bob_wiki, &carol_console]));
    assert_eq!(by("edge=edge").await, set(&[]), "edge ids match exactly, not as substrings");
    assert_eq!(by("state=ended").await, set(&[&bob_wiki]));
    assert_eq!(by("state=active").await, set(&[&ada_wiki, &ada_admin, &carol_console]));
    assert_eq!(by("state=active&route=wiki&edge=edge-a").await, set(&[&ada_wiki]));
    assert_eq!(by("email=bob@test.example&state=active").await, set(&[]));
    assert_eq!(by("since=2999-01-01T00:00:00Z").await, set(&[]));
    assert_eq!(by("since=2000-01-01T00:00:00%2B02:00").await.len(), 4);

    // The view of one session.
    let view = t.get(&format!("/api/v1/sessions/{ada_admin}")).send().await.ok();
    assert_eq!(view["email"], "ada@test.example");
    assert_eq!(view["subject"], "sub-ada@test.example");
    assert_eq!(view["route"], "admin");
    assert_eq!(view["state"], "active");
    assert_eq!(view["groups"], json!(["admins", "staff"]));
    assert_eq!(view["edges"], json!(["edge-a"]));
    assert_eq!(view["source_addresses"], json!(["198.51.100.20"]));
    assert_eq!(view["user_agent"], "suite/1.0");
    let issuer = portcullis_dev_idp::test_issuer::TestIssuer::shared().issuer();
    assert_eq!(view["idp_issuer"], issuer, "the issuer of the verified ID token");
    assert!(view["ended_at"].is_null() && view["end_reason"].is_null(), "{view}");
    let created = chrono::DateTime::parse_from_rfc3339(view["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(view["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 2 * 3600, "the route's session_lifetime: 2h");

    // The session list is newest first.
    let full = t.get("/api/v1/sessions").send().await.ok();
    let created: Vec<&str> =
        full["sessions"].as_array().unwrap().iter().map(|s| s["created_at"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    assert_eq!(full["next_cursor"], Value::Null, "one page holds them all");
}

async fn cursor_pagination_visits_every_session_once(t: TestApp) {
    apply_policy(&t).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(login(&t, &format!("user{i}@test.example")).await);
    }
    let everything = list(&t, "limit=1000").await;
    assert_eq!(everything.len(), 7);
    assert_eq!(everything.iter().collect::<BTreeSet<_>>(), created.iter().collect::<BTreeSet<_>>());

    for limit in [1, 2, 3, 7] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &cursor {
                Some(c) => format!("/api/v1/sessions?limit={limit}&cursor={c}"),
                None => format!("/api/v1/sessions?limit={limit}"),
            };
            let page = t.get(&query).send().await.ok();
            pages += 1;
            assert!(pages <= 8, "pagination does not end (limit {limit})");
            let page_ids = ids(&page);
            assert!(page_ids.len() <= limit);
            seen.extend(page_ids);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, everything, "limit {limit}: the pages, in order, are the full list");
        // A full last page still has a cursor, which leads to an empty page.
        assert_eq!(pages, 7 / limit + 1, "limit {limit}");
    }

    // Filters combine with the cursor.
    let first = t.get("/api/v1/sessions?limit=2&route=wiki&state=active").send().await.ok();
    let cursor = text(&first["next_cursor"]);
    let second = list(&t, &format!("limit=10&route=wiki&state=active&cursor={cursor}")).await;
    assert_eq!(second, everything[2..].to_vec());
    let none = list(&t, &format!("route=admin&cursor={cursor}")).await;
    assert!(none.is_empty());
}

async fn terminate_answers_a_receipt_once(t: TestApp) {
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    let other = login(&t, "bob@test.example").await;
    let head = t.head().await;

    let done = t.post(&format!("/api/v1/sessions/{session}/terminate")).json(reason("stolen cookie")).send().await.ok();
    let receipt = &done["receipt"];
    assert_eq!(receipt["seq"].as_u64(), Some(head + 1), "{done}");
    assert_eq!(receipt["durable"], true);
    assert_eq!(receipt["waited"], false);
    assert_eq!((receipt["edges_applied"].as_u64(), receipt["edges_total"].as_u64()), (Some(0), Some(0)));
    assert_eq!(done["session"]["id"], session.as_str());
    assert_eq!(done["session"]["state"], "ended");
    assert_eq!(done["session"]["end_reason"], "stolen cookie");
    assert!(done["session"]["ended_at"].is_string());
    assert_eq!(t.head().await, head + 1, "one change");

    let view = t.get(&format!("/api/v1/sessions/{session}")).send().await.ok();
    assert_eq!((view["state"].as_str(), view["end_reason"].as_str()), (Some("ended"), Some("stolen cookie")));
    let other_view = t.get(&format!("/api/v1/sessions/{other}")).send().await.ok();
    assert_eq!(other_view["state"], "active", "only the named session ends");

    // Again: nothing to do, no change, `seq` null; the first reason stays.
    let again = t.post(&format!("/api/v1/sessions/{session}/terminate")).json(reason("again")).send().await.ok();
    assert!(again["receipt"]["seq"].is_null(), "{again}");
    assert_eq!(again["receipt"]["durable"], true);
    assert_eq!(again["session"]["end_reason"], "stolen cookie");
    assert_eq!(t.head().await, head + 1);

    // The audit log has who, what, why, from where, and the change.
    let audit = t.get("/api/v1/audit?action=session.terminate").send().await.ok();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    let entry = &entries[0];
    assert_eq!(entry["actor"], "token:bootstrap");
    assert_eq!(entry["target"], format!("session:{session}"));
    assert_eq!(entry["reason"], "stolen cookie");
    assert_eq!(entry["source_address"], CLIENT_IP);
    assert_eq!(entry["seq"].as_u64(), Some(head + 1));

    // Logging out at the edge ends a session the same way, with the edge as actor.
    let logout = t.edge(Method::POST, &format!("/edge/v1/sessions/{other}/logout")).send().await.ok();
    assert_eq!(logout["seq"].as_u64(), Some(head + 2));
    let other_view = t.get(&format!("/api/v1/sessions/{other}")).send().await.ok();
    assert_eq!((other_view["state"].as_str(), other_view["end_reason"].as_str()), (Some("ended"), Some("logged out")));
    let audit = t.get(&format!("/api/v1/audit?target=session:{other}")).send().await.ok();
    assert_eq!(audit["entries"][0]["actor"], "edge:edge-a");
}
