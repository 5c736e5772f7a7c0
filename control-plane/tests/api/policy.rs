//! `/api/v1/policy`: apply, read back, refuse invalid documents with
//! positioned problems (leaving the policy in force alone), validate,
//! history and rollback.

use axum::http::Method;
use serde_json::{json, Value};

use crate::fixtures::{snapshot, text, POLICY, POLICY_V2};
use crate::harness::TestApp;

api_tests!(apply_and_read_back, invalid_documents_change_nothing, validate_history_and_rollback);

/// Two problems: line 7 (`0` sessions) and line 8 (unknown action).
const INVALID: &str = "\
version: 1
routes:
  - name: wiki
    host: wiki.test.example
    upstream: http://127.0.0.1:9
    options:
      max_sessions_per_user: 0
      on_session_limit: sometimes
    rules:
      - name: r
        allow:
          groups_any: [x]
";

async fn put(t: &TestApp, document: &str, message: &str) -> Value {
    t.api(Method::PUT, &format!("/api/v1/policy?message={message}")).yaml(document).send().await.ok()
}

async fn apply_and_read_back(t: TestApp) {
    let initial = t.get("/api/v1/policy").send().await.ok();
    assert_eq!(initial["version"], 0, "no policy yet: the built-in deny-everything one");

    let head = t.head().await;
    let applied = put(&t, POLICY, "first").await;
    assert_eq!((applied["version"].as_i64(), applied["seq"].as_u64()), (Some(1), Some(head + 1)), "{applied}");
    // A receipt, as for terminations: no edge is connected here.
    let receipt = &applied["receipt"];
    assert_eq!((receipt["seq"].as_u64(), receipt["durable"].as_bool()), (Some(head + 1), Some(true)), "{receipt}");
    assert_eq!((receipt["edges_total"].as_u64(), receipt["connections_closed"].as_i64()), (Some(0), Some(0)));
    assert_eq!(receipt["waited"], false);
    let current = t.get("/api/v1/policy").send().await.ok();
    assert_eq!(current["version"], 1);
    assert_eq!(current["document"], POLICY);
    assert_eq!(current["author"], "token:bootstrap");
    assert_eq!(current["message"], "first");
    assert!(chrono::DateTime::parse_from_rfc3339(current["created_at"].as_str().unwrap()).is_ok());

    // The message may also come as a header; none gives a placeholder.
    let second = t.api(Method::PUT, "/api/v1/policy").header("x-portcullis-message", "from header").yaml(POLICY_V2);
    assert_eq!(second.send().await.ok()["version"], 2);
    assert_eq!(t.get("/api/v1/policy").send().await.ok()["message"], "from header");
    let third = t.api(Method::PUT, "/api/v1/policy").yaml(POLICY).send().await.ok();
    assert_eq!(third["version"], 3, "the same document again is a new version");
    assert_eq!(t.get("/api/v1/policy").send().await.ok()["message"], "(no message)");

    // Edges load the document in force.
    let body = snapshot(&t).await;
    assert_eq!(body.policy.text, POLICY);
    assert_eq!(body.policy.name, "policy v3");
    let audit = t.get("/api/v1/audit?action=policy.apply").send().await.ok();
    let targets: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["policy:v3", "policy:v2", "policy:v1"]);
}

async fn invalid_documents_change_nothing(t: TestApp) {
    put(&t, POLICY, "good").await;
    let head = t.head().await;
    for document in [INVALID, "version: 1\nroutes: [\n", "", "version: 2\nroutes: []\n", "\u{feff}\t- x"] {
        let answer = t.api(Method::PUT, "/api/v1/policy").yaml(document).send().await;
        let body = answer.expect(422);
        assert_eq!(body["error"]["code"], "invalid_policy", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("unchanged"), "{message}");
        let problems = body["problems"].as_array().unwrap_or_else(|| panic!("problems: {body}"));
        assert!(!problems.is_empty(), "{document:?}: {body}");
        for problem in problems {
            assert!(problem["line"].as_u64().is_some_and(|l| l >= 1), "{problem}");
            assert!(problem["column"].as_u64().is_some_and(|c| c >= 1), "{problem}");
            assert!(!problem["message"].as_str().unwrap_or_default().is_empty(), "{problem}");
        }
    }
    let body = t.api(Method::PUT, "/api/v1/policy").yaml(INVALID).send().await.expect(422);
    let lines: Vec<u64> = body["problems"].as_array().unwrap().iter().map(|p| p["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [7, 8], "{body}");
    let first = &body["problems"][0];
    assert_eq!(first["column"].as_u64(), Some(30), "points at the value `0`: {first}");
    assert!(first["message"].as_str().unwrap().contains("max_sessions_per_user"), "{first}");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 7:30"), "{body}");

    // Not UTF-8 at all.
    let binary = t.api(Method::PUT, "/api/v1/policy").raw("application/yaml", vec![0xff, 0xfe, b'\n']).send().await;
    binary.error(400, "bad_request");
    t.post("/api/v1/policy/validate").raw("application/yaml", vec![0xc3]).send().await.error(400, "bad_request");

    let current = t.get("/api/v1/policy").send().await.ok();
    assert_eq!((current["version"].as_i64(), current["document"].as_str()), (Some(1), Some(POLICY)));
    assert_eq!(t.head().await, head, "no change reached the log");
    assert_eq!(t.get("/api/v1/policy/history").send().await.ok().as_array().unwrap().len(), 1);
}

async fn validate_history_and_rollback(t: TestApp) {
    let valid = t.post("/api/v1/policy/validate").yaml(POLICY).send().await.ok();
    assert_eq!(valid, json!({ "valid": true, "problems": [], "routes": 3 }));
    let invalid = t.post("/api/v1/policy/validate").yaml(INVALID).send().await.ok();
    assert_eq!(invalid["valid"], false);
    assert_eq!(invalid["routes"], 0);
    assert_eq!(invalid["problems"][0]["line"], 7);
    assert_eq!(invalid["problems"][1]["line"], 8);
    assert_eq!(t.get("/api/v1/policy").send().await.ok()["version"], 0, "validating applies nothing");

    put(&t, POLICY, "one").await;
    put(&t, POLICY_V2, "two").await;
    let history = t.get("/api/v1/policy/history").send().await.ok();
    let versions: Vec<(i64, String)> =
        history.as_array().unwrap().iter().map(|v| (v["version"].as_i64().unwrap(), text(&v["message"]))).collect();
    assert_eq!(versions, [(2, "two".to_owned()), (1, "one".to_owned())], "newest first");
    assert_eq!(history[0]["document"], POLICY_V2);
    let limited = t.get("/api/v1/policy/history?limit=1").send().await.ok();
    assert_eq!(limited.as_array().unwrap().len(), 1);
    assert_eq!(limited[0]["version"], 2);

    // Rollback stores the old document again, as a new version.
    let head = t.head().await;
    let rolled =
        t.post("/api/v1/policy/rollback").json(json!({ "version": 1, "message": "v2 broke sso" })).send().await;
    let rolled = rolled.ok();
    assert_eq!((rolled["version"].as_i64(), rolled["seq"].as_u64()), (Some(3), Some(head + 1)), "{rolled}");
    assert_eq!(rolled["receipt"]["seq"].as_u64(), Some(head + 1), "{rolled}");
    let current = t.get("/api/v1/policy").send().await.ok();
    assert_eq!((current["version"].as_i64(), current["document"].as_str()), (Some(3), Some(POLICY)));
    assert_eq!(current["message"], "v2 broke sso");
    let again = t.post("/api/v1/policy/rollback").json(json!({ "version": 2 })).send().await.ok();
    assert_eq!(again["version"], 4);
    let current = t.get("/api/v1/policy").send().await.ok();
    assert_eq!(
        (current["document"].as_str(), current["message"].as_str()),
        (Some(POLICY_V2), Some("rollback to version 2"))
    );
    let history = t.get("/api/v1/policy/history").send().await.ok();
    let versions: Vec<i64> = history.as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [4, 3, 2, 1]);
    assert_eq!(snapshot(&t).await.policy.text, POLICY_V2);
}
