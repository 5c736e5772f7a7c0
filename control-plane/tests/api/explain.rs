//! `POST /api/v1/policy/explain` (the edge's evaluator on the policy in
//! force and the user's lock) and `GET /api/v1/users/lock`.

use axum::http::Method;
use serde_json::{json, Value};

use crate::fixtures::{apply_policy, text};
use crate::harness::TestApp;

api_tests!(
    explain_decides_like_the_edge,
    explain_sees_locks_and_validates_its_body,
    explain_judges_the_canonical_path_like_the_edge,
    explain_asks_a_stale_login_to_log_in_again
);

/// Routes with the path options of issue 11, and a login-age limit.
const PATH_POLICY: &str = "\
version: 1
routes:
  - name: root
    host: app.test.example
    upstream: http://127.0.0.1:9
    rules:
      - name: no-admin
        deny:
          paths: [/admin/**]
      - name: everyone
        public: true
        allow: {}
  - name: api
    host: app.test.example
    path: /api
    upstream: http://127.0.0.1:9
    options:
      allow_path_parameters: true
    rules:
      - name: no-export
        deny:
          paths: [/api/export/**]
      - name: anyone
        public: true
        allow: {}
  - name: legacy
    host: app.test.example
    path: /legacy
    upstream: http://127.0.0.1:9
    options:
      case_insensitive_paths: true
    rules:
      - name: no-legacy-admin
        deny:
          paths: [/legacy/admin/**]
      - name: anyone
        public: true
        allow: {}
  - name: vault
    host: vault.test.example
    upstream: http://127.0.0.1:9
    rules:
      - name: fresh-admins
        allow:
          groups_any: [admins]
          logged_in_within: 1h
";

async fn apply(t: &TestApp, policy: &str) {
    t.api(Method::PUT, "/api/v1/policy?message=paths").yaml(policy).send().await.ok();
}

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
    // It says which condition of each rule failed.
    assert_eq!(
        denied["rules"],
        json!([{
            "rule": { "name": "admins", "line": 18, "column": 9, "detail": "allow" },
            "matched": false,
            "failed": "`groups_any` [admins] — the user is in [staff]",
        }]),
        "{denied}"
    );
    assert_eq!(allowed["rules"][0]["matched"], true, "{allowed}");
    let anonymous = explain(&t, json!({ "host": "wiki.test.example", "path": "/docs", "ip": "198.51.100.1" })).await;
    assert_eq!(anonymous["decision"], "login-required");
    let at = explain(&t, json!({ "host": "wiki.test.example", "ip": "::1", "at": "2026-11-23T10:00:00+01:00" })).await;
    assert_eq!(at["at"], "2026-11-23T09:00:00.000Z", "evaluated at the time asked for");
    // Dot segments are resolved as the edge resolves them, then judged.
    let dots = explain(
        &t,
        json!({ "email": "ada@test.example", "host": "wiki.test.example", "path": "/a/../b", "ip": "::1" }),
    )
    .await;
    assert_eq!((dots["decision"].as_str(), dots["path"].as_str()), (Some("allow"), Some("/b")), "{dots}");
}

async fn explain_judges_the_canonical_path_like_the_edge(t: TestApp) {
    apply(&t, PATH_POLICY).await;
    let at = |path: &str| json!({ "host": "app.test.example", "path": path, "ip": "198.51.100.1" });
    // Hostile first: encodings, dot segments, parameters and absolute forms
    // that once slipped past `/admin/**` are judged on the canonical path.
    for path in [
        "/%61dmin/users",
        "/adm%69n/users",
        "/t/../admin/users",
        "//admin//users",
        "http://app.test.example/%61dmin/users",
    ] {
        let answer = explain(&t, at(path)).await;
        let got = (answer["decision"].as_str(), answer["rule"]["name"].as_str(), answer["path"].as_str());
        assert_eq!(got, (Some("deny"), Some("no-admin"), Some("/admin/users")), "{path}: {answer}");
    }
    // Targets the edge answers with 400 are explained as that refusal.
    for (path, code) in [
        ("/admin%2fusers", "bad_request_target"),
        ("/admin\\users", "bad_request_target"),
        ("/%00", "bad_request_target"),
        ("/%G1", "bad_request_target"),
        ("/../admin", "bad_request_target"),
        ("http://other.example/admin", "bad_request_target"),
        ("/admin;x/users", "path_parameters"),
        ("/t/..;/admin/users", "bad_request_target"),
    ] {
        let answer = explain(&t, at(path)).await;
        assert_eq!(
            (answer["decision"].as_str(), answer["reason_code"].as_str()),
            (Some("deny"), Some(code)),
            "{path}: {answer}"
        );
        assert!(text(&answer["reason"]).starts_with("the edge answers 400"), "{path}: {answer}");
        assert!(answer["route"].is_null() && answer["path"].is_null(), "{path}: {answer}");
    }
    // `/%61pi/x` is the api route's, not the host's `/` route.
    let api = explain(&t, at("/%61pi/x")).await;
    assert_eq!((api["route"]["name"].as_str(), api["path"].as_str()), (Some("api"), Some("/api/x")), "{api}");
    // allow_path_parameters: rules judge the path without parameters.
    let params = explain(&t, at("/api;v=1/export;x=2/all.csv")).await;
    let got = (params["decision"].as_str(), params["rule"]["name"].as_str(), params["judged_path"].as_str());
    assert_eq!(got, (Some("deny"), Some("no-export"), Some("/api/export/all.csv")), "{params}");
    assert_eq!(params["path"], "/api;v=1/export;x=2/all.csv");
    // case_insensitive_paths: rules judge (and the upstream gets) the lowercased path.
    let legacy = explain(&t, at("/LEGACY/Admin/x")).await;
    let got = (legacy["rule"]["name"].as_str(), legacy["judged_path"].as_str(), legacy["path"].as_str());
    assert_eq!(got, (Some("no-legacy-admin"), Some("/legacy/admin/x"), Some("/legacy/admin/x")), "{legacy}");
}

async fn explain_asks_a_stale_login_to_log_in_again(t: TestApp) {
    apply(&t, PATH_POLICY).await;
    let admin = |auth_age: &str| json!({ "email": "ada@test.example", "groups": ["admins"], "host": "vault.test.example", "ip": "::1", "auth_age": auth_age });
    assert_eq!(explain(&t, admin("59m")).await["decision"], "allow");
    let stale = explain(&t, admin("2h")).await;
    let got = (stale["decision"].as_str(), stale["reason_code"].as_str(), stale["rule"]["name"].as_str());
    assert_eq!(got, (Some("login-required"), Some("login_too_old"), Some("fresh-admins")), "{stale}");
    assert_eq!(stale["reason"], "log in again: route `vault` requires a login within the last 1h");
    // A fresh login would not help someone outside the group.
    let mut outsider = admin("2h");
    outsider["groups"] = json!(["staff"]);
    let denied = explain(&t, outsider).await;
    assert_eq!((denied["decision"].as_str(), denied["reason_code"].as_str()), (Some("deny"), Some("no_rule_matched")));
}

async fn explain_sees_locks_and_validates_its_body(t: TestApp) {
    apply_policy(&t).await;
    let status = t.get("/api/v1/users/lock?email=ada@test.example").send().await.ok();
    assert_eq!(status, json!({ "user": "email:ada@test.example", "locked": false, "reason": null, "until": null }));
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
