//! Request errors: every one answers `{"error": {"code", "message"}}` with
//! the right status — unknown fields, oversized bodies, wrong content types,
//! unknown ids, malformed cursors and query parameters, unknown endpoints.

use axum::http::Method;
use serde_json::json;

use crate::fixtures::{apply_policy, login, reason, Login};
use crate::harness::{TestApp, MAX_BODY_BYTES};

api_tests!(
    unknown_fields_are_422_naming_the_field,
    oversized_bodies_are_413,
    unknown_ids_are_404,
    malformed_queries_are_400,
    unknown_endpoints_and_methods
);

async fn unknown_fields_are_422_naming_the_field(t: TestApp) {
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    let cases = [
        (format!("/api/v1/sessions/{session}/terminate"), json!({ "reason": "x", "bogus_field": 1 }), "bogus_field"),
        (
            "/api/v1/users/terminate".to_owned(),
            json!({ "email": "ada@test.example", "reason": "x", "colour": 1 }),
            "colour",
        ),
        (
            "/api/v1/users/lock".to_owned(),
            json!({ "email": "ada@test.example", "reason": "x", "forever": true }),
            "forever",
        ),
        ("/api/v1/policy/rollback".to_owned(), json!({ "version": 1, "force": true }), "force"),
        ("/api/v1/admin-tokens".to_owned(), json!({ "name": "n", "scopes": ["admin"], "owner": "me" }), "owner"),
        ("/api/v1/service-tokens".to_owned(), json!({ "name": "n", "ttl": 3 }), "ttl"),
    ];
    for (path, body, field) in cases {
        let message = t.post(&path).json(body).send().await.error(422, "invalid_body");
        assert!(message.contains(&format!("`{field}`")), "{path}: the message names `{field}`: {message}");
    }
    let view = t.get(&format!("/api/v1/sessions/{session}")).send().await.ok();
    assert_eq!(view["state"], "active", "a refused body changes nothing");

    // Unknown query parameters are refused too (400: the query, not the body).
    let wait = t.post(&format!("/api/v1/sessions/{session}/terminate?wiat=true")).json(reason("x")).send().await;
    assert!(wait.error(400, "bad_request").contains("wiat"));

    // The edge channel shares the format.
    let report = t.edge(Method::POST, "/edge/v1/report").json(json!({ "applied_seq": 1, "extra": true })).send().await;
    assert!(report.error(422, "invalid_body").contains("`extra`"));
    let mut body = Login::new("bob@test.example").body();
    body["admin"] = json!(true);
    let login = t.edge(Method::POST, "/edge/v1/sessions").json(body).send().await;
    assert!(login.error(422, "invalid_body").contains("`admin`"));

    // Not JSON at all, JSON of the wrong shape, and no content type.
    let path = format!("/api/v1/sessions/{session}/terminate");
    t.post(&path).raw("application/json", "{\"reason\": ").send().await.error(422, "invalid_body");
    let wrong_type = t.post(&path).json(json!({ "reason": 7 })).send().await.error(422, "invalid_body");
    assert!(wrong_type.contains("reason"), "{wrong_type}");
    t.post(&path).json(json!({})).send().await.error(422, "invalid_body");
    t.post(&path).json(json!({ "reason": "   " })).send().await.error(422, "invalid_body");
    t.post(&path).raw("text/plain", "{\"reason\":\"x\"}").send().await.error(415, "unsupported_media_type");
    t.post(&path).send().await.error(415, "unsupported_media_type");
}

async fn oversized_bodies_are_413(t: TestApp) {
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    let long = "x".repeat(MAX_BODY_BYTES + 1);
    let terminate = t.post(&format!("/api/v1/sessions/{session}/terminate")).json(reason(&long)).send().await;
    terminate.error(413, "body_too_large");
    let user = json!({ "email": "ada@test.example", "reason": long });
    t.post("/api/v1/users/terminate").json(user).send().await.error(413, "body_too_large");
    let token = json!({ "name": "n", "scopes": ["admin"], "subject": long });
    t.post("/api/v1/admin-tokens").json(token).send().await.error(413, "body_too_large");

    // Policy documents are YAML, not JSON: the same limit, the same answer.
    let document = format!("# {long}\n{}", crate::fixtures::POLICY_V2);
    let put = t.api(Method::PUT, "/api/v1/policy").yaml(&document).send().await;
    put.error(413, "body_too_large");
    t.post("/api/v1/policy/validate").yaml(&document).send().await.error(413, "body_too_large");
    let current = t.get("/api/v1/policy").send().await.ok();
    assert_eq!(current["version"], 1, "the oversized document was not applied");

    // The edge channel has the same limit.
    let mut body = Login::new("bob@test.example").body();
    body["user_agent"] = json!(long);
    t.edge(Method::POST, "/edge/v1/sessions").json(body).send().await.error(413, "body_too_large");

    // Under the body limit, the reason's own limit (500 characters) applies.
    let fits = "y".repeat(501);
    let message = t
        .post(&format!("/api/v1/sessions/{session}/terminate"))
        .json(reason(&fits))
        .send()
        .await
        .error(422, "invalid_body");
    assert!(message.contains("reason"), "{message}");
    let view = t.get(&format!("/api/v1/sessions/{session}")).send().await.ok();
    assert_eq!(view["state"], "active");
}

async fn unknown_ids_are_404(t: TestApp) {
    apply_policy(&t).await;
    let unknown = "0123456789abcdef0123456789abcdef";
    for id in [unknown, "not-a-session-id", "%27%3B%20DROP%20TABLE%20sessions%3B--"] {
        t.get(&format!("/api/v1/sessions/{id}")).send().await.error(404, "not_found");
        let terminate = t.post(&format!("/api/v1/sessions/{id}/terminate")).json(reason("r")).send().await;
        terminate.error(404, "not_found");
    }
    let message = t.get(&format!("/api/v1/sessions/{unknown}")).send().await.error(404, "not_found");
    assert!(message.contains(unknown), "{message}");
    t.api(Method::DELETE, "/api/v1/service-tokens/nope").send().await.error(404, "not_found");
    t.api(Method::DELETE, "/api/v1/admin-tokens/nope").send().await.error(404, "not_found");
    let rollback = t.post("/api/v1/policy/rollback").json(json!({ "version": 99 })).send().await;
    assert!(rollback.error(404, "not_found").contains("99"));
    // An admin token id is not a service token id, and the other way round.
    let admins = t.get("/api/v1/admin-tokens").send().await.ok();
    let bootstrap = admins[0]["id"].as_str().expect("the bootstrap token is listed").to_owned();
    t.api(Method::DELETE, &format!("/api/v1/service-tokens/{bootstrap}")).send().await.error(404, "not_found");
    t.get("/api/v1/sessions").send().await.ok();
    // Logging out an unknown session on the edge channel.
    t.edge(Method::POST, &format!("/edge/v1/sessions/{unknown}/logout")).send().await.error(404, "not_found");
}

async fn malformed_queries_are_400(t: TestApp) {
    apply_policy(&t).await;
    login(&t, "ada@test.example").await;
    let hex = "0123456789abcdef0123456789abcdef";
    for cursor in [
        "abc".to_owned(),
        "12345".to_owned(),
        format!("x.{hex}"),
        format!("12.{}", &hex[..31]),
        format!("12.{hex}0"),
        "12.0123456789abcdef0123456789abcdeg".to_owned(),
        format!("12.{hex}.1"),
        format!("%27%20OR%201%3D1.{hex}"),
    ] {
        let answer = t.get(&format!("/api/v1/sessions?cursor={cursor}")).send().await;
        assert!(answer.error(400, "bad_request").contains("cursor"), "cursor {cursor}");
    }
    for query in ["state=gone", "limit=0", "limit=1001", "limit=-1", "limit=many", "since=yesterday", "colour=red"] {
        t.get(&format!("/api/v1/sessions?{query}")).send().await.error(400, "bad_request");
    }
    for query in ["cursor=abc", "limit=0", "since=2026-13-01", "actor=a&actor=b&who=c"] {
        t.get(&format!("/api/v1/audit?{query}")).send().await.error(400, "bad_request");
    }
    t.get("/api/v1/policy/history?limit=ten").send().await.error(400, "bad_request");
    t.post("/api/v1/users/terminate?wait=perhaps")
        .json(json!({ "email": "ada@test.example", "reason": "r" }))
        .send()
        .await
        .error(400, "bad_request");
    let stream = t.edge(Method::GET, "/edge/v1/stream?since=latest").send().await;
    stream.error(400, "bad_request");
    // The valid forms still work.
    t.get("/api/v1/sessions?state=active&limit=1000&since=2020-01-01T00:00:00Z").send().await.ok();
    t.get(&format!("/api/v1/sessions?cursor=1.{hex}")).send().await.ok();
}

async fn unknown_endpoints_and_methods(t: TestApp) {
    for path in ["/api/v1/nothing", "/api/v1/sessions/a/b/c", "/api/v1/sessions/"] {
        let answer = t.get(path).send().await;
        assert!(answer.error(404, "not_found").contains("no such API endpoint"), "{path}");
    }
    for path in ["/api/v2/sessions", "/api/v1/", "/favicon.ico", "/"] {
        t.get(path).send().await.error(404, "not_found");
    }
    // Unknown endpoints are 404 before authentication says anything.
    t.get("/api/v1/nothing").no_auth().send().await.error(404, "not_found");
    let edge = t.edge(Method::GET, "/edge/v1/nothing").send().await;
    assert!(edge.error(404, "not_found").contains("no such edge-channel endpoint"));
    // A served path with a method it does not serve.
    for (method, path) in [
        (Method::DELETE, "/api/v1/sessions"),
        (Method::GET, "/api/v1/users/terminate"),
        (Method::POST, "/api/v1/audit"),
        (Method::PATCH, "/api/v1/policy"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/metrics"),
    ] {
        let answer = t.api(method.clone(), path).send().await;
        answer.error(405, "method_not_allowed");
        assert!(answer.headers.contains_key("allow"), "{method} {path}: 405 names the allowed methods");
    }
    t.edge(Method::POST, "/edge/v1/stream").send().await.error(405, "method_not_allowed");
}
