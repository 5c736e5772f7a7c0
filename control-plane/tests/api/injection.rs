//! SQL metacharacters in every filter of the API are data: the answer is 200
//! with no rows, and every table is intact afterwards. Values that really
//! contain metacharacters are found exactly.

use portcullis_control_plane::store::Backend;
use serde_json::{json, Value};

use crate::fixtures::{apply_policy, ids, login, reason, text, Login};
use crate::harness::TestApp;

api_tests!(sql_metacharacters_in_filters_are_harmless);

/// Texts that would change a query if they were spliced into it.
const HOSTILE: &[&str] = &[
    "' OR '1'='1",
    "' OR 1=1 --",
    "x'; DROP TABLE sessions; --",
    "x'; DROP TABLE audit_log; --",
    "\"; DELETE FROM api_tokens; --",
    "%",
    "%'--",
    "_%_",
    "\\' OR TRUE --",
    "') OR ('a'='a",
    "1; UPDATE sessions SET ended_ms = 1",
    "$1",
    "🙂' UNION SELECT * FROM api_tokens --",
];

fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn state_of_the_world(t: &TestApp) -> (Vec<String>, usize, usize, i64) {
    let sessions = ids(&t.get("/api/v1/sessions?limit=1000").send().await.ok());
    let audit = t.get("/api/v1/audit?limit=1000").send().await.ok()["entries"].as_array().unwrap().len();
    let admins = t.get("/api/v1/admin-tokens").send().await.ok().as_array().unwrap().len();
    let policy = t.get("/api/v1/policy").send().await.ok()["version"].as_i64().unwrap();
    (sessions, audit, admins, policy)
}

fn rows(page: &Value, key: &str) -> usize {
    page[key].as_array().unwrap_or_else(|| panic!("`{key}` in {page}")).len()
}

async fn sql_metacharacters_in_filters_are_harmless(t: TestApp) {
    apply_policy(&t).await;
    let ada = login(&t, "ada@test.example").await;
    login(&t, "bob@test.example").await;
    t.post(&format!("/api/v1/sessions/{ada}/terminate")).json(reason("setup")).send().await.ok();
    let before = state_of_the_world(&t).await;
    assert_eq!(before.0.len(), 2);

    for hostile in HOSTILE {
        let v = query_value(hostile);
        for filter in ["email", "route", "edge"] {
            let page = t.get(&format!("/api/v1/sessions?{filter}={v}")).send().await.ok();
            assert_eq!(rows(&page, "sessions"), 0, "sessions {filter}={hostile:?}: {page}");
            assert!(page["next_cursor"].is_null());
        }
        // Combined with other filters, and with every state.
        let page = t.get(&format!("/api/v1/sessions?email={v}&route={v}&edge={v}&state=ended")).send().await.ok();
        assert_eq!(rows(&page, "sessions"), 0, "{hostile:?}");
        for filter in ["actor", "action", "target"] {
            let page = t.get(&format!("/api/v1/audit?{filter}={v}")).send().await.ok();
            assert_eq!(rows(&page, "entries"), 0, "audit {filter}={hostile:?}: {page}");
        }
    }
    // Hostile text as a path parameter, a user and an edge id is data too.
    for hostile in HOSTILE {
        let v = query_value(hostile);
        t.get(&format!("/api/v1/sessions/{v}")).send().await.error(404, "not_found");
        let user = json!({ "sub": hostile, "reason": hostile });
        t.post("/api/v1/users/lock").json(user.clone()).send().await.ok();
        t.post("/api/v1/users/unlock").json(user).send().await.ok();
    }
    let (_, public) = crate::edge_auth::new_key();
    let hostile_edge = t.edges.enroll("e' OR '1'='1", crate::harness::EDGE_SECRET, &public).await;
    hostile_edge.error(422, "invalid_body");

    let after = state_of_the_world(&t).await;
    assert_eq!(after.0, before.0, "sessions are intact");
    assert_eq!(after.2, before.2, "admin tokens are intact");
    assert_eq!(after.3, before.3, "the policy is intact");
    // Each unlock is a terminate-all and the unlock.
    assert_eq!(after.1, before.1 + 3 * HOSTILE.len(), "the audit log only grew by the locks and unlocks");
    let ada_view = t.get(&format!("/api/v1/sessions/{ada}")).send().await.ok();
    assert_eq!((ada_view["state"].as_str(), ada_view["end_reason"].as_str()), (Some("ended"), Some("setup")));
    let active = ids(&t.get("/api/v1/sessions?state=active").send().await.ok());
    assert_eq!(active.len(), 1, "bob's session is still active");

    // The locks and unlocks were recorded with their targets exactly as given.
    let target = query_value("sub:x'; DROP TABLE sessions; --");
    let locks = t.get(&format!("/api/v1/audit?target={target}&action=user.lock")).send().await.ok();
    assert_eq!(rows(&locks, "entries"), 1, "{locks}");
    assert_eq!(locks["entries"][0]["reason"], "x'; DROP TABLE sessions; --");

    // A real value with metacharacters is found exactly, and only it.
    let quoted = text(&Login::new("o'brien%_@test.example").ok(&t).await["session_id"]);
    let page = t.get(&format!("/api/v1/sessions?email={}", query_value("O'Brien%_@test.example"))).send().await.ok();
    assert_eq!(ids(&page), vec![quoted.clone()], "email filters are exact and case-insensitive");
    let page = t.get(&format!("/api/v1/sessions?email={}", query_value("o'brien__@test.example"))).send().await.ok();
    assert_eq!(rows(&page, "sessions"), 0, "`_` is not a wildcard");
    let page = t.get(&format!("/api/v1/audit?target={}", query_value(&format!("session:{quoted}")))).send().await.ok();
    assert_eq!(rows(&page, "entries"), 1, "{page}");

    // Now that targets with metacharacters exist, each filter finds exactly
    // what a plain comparison finds.
    let all = t.get("/api/v1/audit?limit=1000").send().await.ok();
    let all = all["entries"].as_array().unwrap();
    for hostile in HOSTILE.iter().chain(&["sub:%", "_", "sub:_%_"]) {
        let v = query_value(hostile);
        for (filter, exact) in [("actor", true), ("action", true), ("target", false)] {
            let page = t.get(&format!("/api/v1/audit?limit=1000&{filter}={v}")).send().await.ok();
            let found: Vec<i64> =
                page["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
            let expected: Vec<i64> = all
                .iter()
                .filter(|e| {
                    let value = e[filter].as_str().unwrap();
                    if exact {
                        value == *hostile
                    } else {
                        value.contains(hostile)
                    }
                })
                .map(|e| e["id"].as_i64().unwrap())
                .collect();
            assert_eq!(found, expected, "audit {filter}={hostile:?}");
        }
    }

    // NUL: SQLite stores and compares it like any character; PostgreSQL text
    // cannot hold it, and the API says so instead of failing internally.
    for path in [
        "/api/v1/sessions?email=%00",
        "/api/v1/sessions?route=a%00",
        "/api/v1/audit?target=%00",
        "/api/v1/sessions/%00",
    ] {
        let answer = t.get(path).send().await;
        match t.app.store.backend() {
            Backend::Sqlite if path.ends_with("/%00") => drop(answer.error(404, "not_found")),
            Backend::Sqlite => assert!(answer.ok().to_string().contains("[]"), "{path}: {}", answer.text()),
            Backend::Postgres => assert!(answer.error(400, "bad_request").contains("NUL"), "{path}"),
        }
    }
    assert_eq!(state_of_the_world(&t).await.0.len(), 3);
}
