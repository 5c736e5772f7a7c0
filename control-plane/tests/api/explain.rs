//! `POST /api/v1/policy/explain` (the edge's evaluator on the policy in
//! force and the user's lock) and `GET /api/v1/users/lock`.

use serde_json::{json, Value};

use crate::fixtures::{apply_policy, text};
use crate::harness::TestApp;

api_tests!(explain_decides_like_the_edge, explain_sees_locks_and_validates_its_body);

async fn explain(t: &TestApp, request: Value) -> Value {
    t.post("/api/v1/policy/explain").json(request).send().await.ok()
}

async fn explain_decides_like_the_edge(t: TestApp) {
    let before = explain(&t, json!({ "host": "admin.test.example", "ip": "203.0.113.7" })).await;
    assert_eq!((before["decision"].as_str(), before["reason_code"].as_str()), (Some("deny"), Some("no_route")));
    assert_eq!(before["policy_version"], 0);

    let version = apply_policy(&t).await;
    let admin =
        json!({ "email": "ada@test.example", "groups": ["admins"], "host": "admin.test.example", "ip": "203.0.113.7" });
    let allowed = explain(&t, admin.clone()).await;
    assert_eq!(allowed["decision"], "allow", "{allowed}");
    assert_eq!(allowed["reason_code"], "rule_matched");
    assert_eq!(allowed["reason"], "allowed by rule `admins` of route `admin`");
    assert_eq!(allowed["policy_version"], version);
    assert_eq!(allowed["route"], json!({ "name": "admin", "line": 10, "column": 5, "detail": "http://127.0.0.1:9" }));
    assert_eq!((allowed["rule"]["name"].as_str(), allowed["rule"]["line"].as_u64()), (Some("admins"), Some(18)));
    assert_eq!(allowed["rule"]["detail"], "allow");

    let mut staff = admin.clone();
    staff["groups"] = json!(["staff"]);
    let denied = explain(&t, staff).await;
    assert_eq!((denied["decision"].as_str(), denied["reason_code"].as_str()), (Some("deny"), Some("no_rule_matched")));
    assert!(denied["rule"].is_null());
    let anonymous = explain(&t, json!({ "host": "wiki.test.example", "path": "/docs", "ip": "198.51.100.1" })).await;
    assert_eq!(anonymous["decision"], "login-required");
    let at = explain(&t, json!({ "host": "wiki.test.example", "ip": "::1", "at": "2026-11-23T10:00:00+01:00" })).await;
    assert_eq!(at["at"], "2026-11-23T09:00:00.000Z", "evaluated at the time asked for");
    let dots = explain(
        &t,
        json!({ "email": "ada@test.example", "host": "wiki.test.example", "path": "/a/../b", "ip": "::1" }),
    )
    .await;
    assert_eq!(dots["reason_code"], "path_not_normalized");
}

async fn explain_sees_locks_and_validates_its_body(t: TestApp) {
    apply_policy(&t).await;
    let status = t.get("/api/v1/users/lock?email=ada@test.example").send().await.ok();
    assert_eq!(status, json!({ "user": "email:ada@test.example", "locked": false, "reason": null }));
    t.post("/api/v1/users/lock")
        .json(json!({ "email": "ada@test.example", "reason": "investigation" }))
        .send()
        .await
        .ok();
    let status = t.get("/api/v1/users/lock?email=ADA@test.example").send().await.ok();
    assert_eq!((status["locked"].as_bool(), status["reason"].as_str()), (Some(true), Some("investigation")));
    let request =
        json!({ "email": "ada@test.example", "groups": ["admins"], "host": "admin.test.example", "ip": "203.0.113.7" });
    let locked = explain(&t, request.clone()).await;
    assert_eq!((locked["decision"].as_str(), locked["reason_code"].as_str()), (Some("deny"), Some("user_locked")));
    assert!(text(&locked["reason"]).contains("investigation"), "{locked}");
    t.post("/api/v1/users/unlock").json(json!({ "email": "ada@test.example" })).send().await.ok();
    assert_eq!(explain(&t, request).await["decision"], "allow");
    assert_eq!(t.get("/api/v1/users/lock?email=ada@test.example").send().await.ok()["locked"], false);
    t.get("/api/v1/users/lock").send().await.error(422, "invalid_body");

    for (body, code) in [
        (json!({ "host": "a.example", "ip": "nowhere" }), "invalid_body"),
        (json!({ "host": "a.example", "tcp": "ssh.internal:22", "ip": "::1" }), "invalid_body"),
        (json!({ "ip": "::1" }), "invalid_body"),
        (json!({ "host": "a.example", "ip": "::1", "credential": "password" }), "invalid_body"),
        (json!({ "host": "a.example", "ip": "::1", "session_age": "forever" }), "invalid_body"),
        (json!({ "host": "a.example", "ip": "::1", "colour": "blue" }), "invalid_body"),
    ] {
        t.post("/api/v1/policy/explain").json(body.clone()).send().await.error(422, code);
    }
    t.post("/api/v1/policy/explain")
        .json(json!({ "host": "a", "ip": "::1", "at": "tuesday" }))
        .send()
        .await
        .error(400, "bad_request");
    let viewer = t.post("/api/v1/admin-tokens").json(json!({ "name": "v", "scopes": ["sessions:read"] })).send().await;
    let viewer = text(&viewer.expect(201)["token"]);
    let refused =
        t.post("/api/v1/policy/explain").bearer(&viewer).json(json!({ "host": "a", "ip": "::1" })).send().await;
    refused.error(403, "insufficient_scope");
}
