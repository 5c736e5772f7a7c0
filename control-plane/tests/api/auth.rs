//! Health, readiness and metrics; admin-token authentication and scopes.

use axum::http::Method;
use serde_json::json;

use crate::fixtures::{apply_policy, login, reason, text};
use crate::harness::{TestApp, EDGE_SECRET};

api_tests!(health_readiness_and_metrics, missing_or_unknown_tokens_are_401, scopes_are_enforced);

async fn health_readiness_and_metrics(t: TestApp) {
    let health = t.get("/healthz").no_auth().send().await;
    assert_eq!((health.status.as_u16(), health.text().as_str()), (200, "ok\n"));
    let edge_health = t.edge(Method::GET, "/healthz").no_auth().send().await;
    assert_eq!((edge_health.status.as_u16(), edge_health.text().as_str()), (200, "ok\n"));

    let head = t.head().await;
    assert!(head >= 1, "the first signing key is published as change 1");
    let ready = t.get("/readyz").no_auth().send().await;
    assert_eq!(ready.status.as_u16(), 200, "{}", ready.text());
    assert_eq!(ready.text(), format!("ready: change log at {head}\n"));

    // A change and an error, so the counters have something to show.
    apply_policy(&t).await;
    t.get("/api/v1/sessions").no_auth().send().await.error(401, "unauthorized");
    let metrics = t.get("/metrics").no_auth().send().await;
    assert_eq!(metrics.status.as_u16(), 200);
    let text = metrics.text();
    for expected in [
        r#"portcullis_control_plane_http_requests_total{route="/healthz",status="200"} 1"#,
        r#"portcullis_control_plane_http_requests_total{route="/readyz",status="200"} 1"#,
        r#"portcullis_control_plane_http_requests_total{route="/api/v1/policy",status="200"} 1"#,
        r#"portcullis_control_plane_http_requests_total{route="/api/v1/sessions",status="401"} 1"#,
        r#"portcullis_control_plane_changes_total{action="policy.apply"} 1"#,
        "portcullis_control_plane_edge_streams 0",
        "# TYPE portcullis_control_plane_change_log_head_seq gauge",
    ] {
        assert!(text.contains(expected), "/metrics lacks `{expected}`:\n{text}");
    }
}

async fn missing_or_unknown_tokens_are_401(t: TestApp) {
    let routes = [
        (Method::GET, "/api/v1/sessions"),
        (Method::GET, "/api/v1/policy"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/api/v1/admin-tokens"),
        (Method::POST, "/api/v1/signing-keys/rotate"),
    ];
    for (method, path) in routes {
        let missing = t.api(method.clone(), path).no_auth().send().await;
        assert!(missing.error(401, "unauthorized").contains("Authorization"), "{path}");
        let unknown = t.api(method.clone(), path).bearer("pcat_no-such-token-anywhere").send().await;
        assert!(unknown.error(401, "unauthorized").contains("unknown"), "{path}");
        t.api(method.clone(), path)
            .header("authorization", "Basic YWRtaW46YWRtaW4=")
            .send()
            .await
            .error(401, "unauthorized");
        t.api(method.clone(), path).header("authorization", "Bearer ").send().await.error(401, "unauthorized");
        let huge = format!("pcat_{}", "x".repeat(300));
        t.api(method.clone(), path).bearer(&huge).send().await.error(401, "unauthorized");
        // The edge enrollment secret is not an admin token.
        t.api(method, path).bearer(EDGE_SECRET).send().await.error(401, "unauthorized");
    }
    // A POST with a valid body is still refused before anything happens.
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    t.post(&format!("/api/v1/sessions/{session}/terminate"))
        .bearer("pcat_wrong")
        .json(reason("should not happen"))
        .send()
        .await
        .error(401, "unauthorized");
    let view = t.get(&format!("/api/v1/sessions/{session}")).send().await.ok();
    assert_eq!(view["state"], "active");
    // The bootstrap token still works.
    t.get("/api/v1/sessions").send().await.ok();
}

async fn scopes_are_enforced(t: TestApp) {
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    let created = t
        .post("/api/v1/admin-tokens")
        .json(json!({ "name": "reader", "scopes": ["sessions:read"] }))
        .send()
        .await
        .expect(201);
    let reader = text(&created["token"]);
    assert!(reader.starts_with("pcat_"), "{reader}");
    assert_eq!(created["info"]["scopes"], json!(["sessions:read"]));
    assert_eq!(created["info"]["created_by"], "token:bootstrap");

    // What the scope allows.
    t.get("/api/v1/sessions").bearer(&reader).send().await.ok();
    t.get(&format!("/api/v1/sessions/{session}")).bearer(&reader).send().await.ok();
    t.get("/api/v1/edges").bearer(&reader).send().await.ok();

    // What it does not: 403 naming the missing scope, and nothing changes.
    let terminate = t.post(&format!("/api/v1/sessions/{session}/terminate")).bearer(&reader).json(reason("nope"));
    assert!(terminate.send().await.error(403, "insufficient_scope").contains("sessions:write"));
    let view = t.get(&format!("/api/v1/sessions/{session}")).send().await.ok();
    assert_eq!(view["state"], "active", "a 403 terminates nothing");
    let user = json!({ "email": "ada@test.example", "reason": "nope" });
    for path in ["/api/v1/users/terminate", "/api/v1/users/lock", "/api/v1/users/unlock"] {
        t.post(path).bearer(&reader).json(user.clone()).send().await.error(403, "insufficient_scope");
    }
    let forbidden = [
        (Method::GET, "/api/v1/policy", "policy:read"),
        (Method::GET, "/api/v1/policy/history", "policy:read"),
        (Method::GET, "/api/v1/audit", "audit:read"),
        (Method::GET, "/api/v1/admin-tokens", "admin"),
        (Method::GET, "/api/v1/service-tokens", "admin"),
        (Method::POST, "/api/v1/signing-keys/rotate", "admin"),
    ];
    for (method, path, scope) in forbidden {
        let message = t.api(method, path).bearer(&reader).send().await.error(403, "insufficient_scope");
        assert!(message.contains(scope), "{path}: {message}");
    }
    let put = t.api(Method::PUT, "/api/v1/policy").bearer(&reader).yaml(crate::fixtures::POLICY_V2).send().await;
    assert!(put.error(403, "insufficient_scope").contains("policy:write"));
    t.post("/api/v1/admin-tokens")
        .bearer(&reader)
        .json(json!({ "name": "escalate", "scopes": ["admin"] }))
        .send()
        .await
        .error(403, "insufficient_scope");

    // A token with `sessions:write` can terminate; its name is the audit actor.
    let writer = t
        .post("/api/v1/admin-tokens")
        .json(json!({ "name": "oncall", "scopes": ["sessions:read", "sessions:write"] }))
        .send()
        .await
        .expect(201);
    let done = t
        .post(&format!("/api/v1/sessions/{session}/terminate"))
        .bearer(&text(&writer["token"]))
        .json(reason("incident 7"))
        .send()
        .await
        .ok();
    assert_eq!(done["session"]["state"], "ended");
    let audit = t.get("/api/v1/audit?action=session.terminate").send().await.ok();
    assert_eq!(audit["entries"][0]["actor"], "token:oncall");

    // Bad scope lists are refused with 422.
    let unknown = t.post("/api/v1/admin-tokens").json(json!({ "name": "x", "scopes": ["root"] })).send().await;
    assert!(unknown.error(422, "invalid_body").contains("root"));
    t.post("/api/v1/admin-tokens").json(json!({ "name": "x", "scopes": [] })).send().await.error(422, "invalid_body");

    // Revoked, the reader token stops working.
    let id = text(&created["id"]);
    let revoked = t.api(Method::DELETE, &format!("/api/v1/admin-tokens/{id}")).send().await;
    assert_eq!(revoked.status.as_u16(), 204, "{}", revoked.text());
    t.get("/api/v1/sessions").bearer(&reader).send().await.error(401, "unauthorized");
    let listed = t.get("/api/v1/admin-tokens").send().await.ok();
    let entry = listed.as_array().unwrap().iter().find(|e| e["id"] == id.as_str()).cloned().expect("still listed");
    assert!(entry["revoked_at"].is_string(), "{entry}");
}
