//! Hostile policy documents against the real control plane (issue 13): one
//! `POST /api/v1/policy/validate` with 200,000 nested `- ` used to overflow a
//! worker's stack and abort the process. Now it is refused like any policy
//! that does not compile (validate: `valid: false` with the problem's line
//! and column; apply: 422 `invalid_policy`, the policy in force unchanged),
//! and the same process answers the next request.

use serde_json::Value;

use crate::harness::{ControlPlane, TempDir, ADMIN_TOKEN, POLICY};

/// Sends `document` to `{method} /api/v1{path}`; status and JSON answer.
async fn send(plane: &ControlPlane, method: reqwest::Method, path: &str, document: &str) -> (u16, Value) {
    let response = plane
        .http()
        .request(method, format!("{}/api/v1{path}", plane.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "application/yaml")
        .body(document.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: no answer ({e}); the control plane's log:\n{}", plane.log_text()));
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

const DEPTH_LIMIT: &str = "lists and mappings nest deeper than the limit of 64 levels here";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_policy_is_refused_and_the_control_plane_keeps_serving() {
    let dir = TempDir::new("policy-limits");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let hostile = "- ".repeat(200_000);

    let (status, body) = send(&plane, reqwest::Method::POST, "/policy/validate", &hostile).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], false, "{body}");
    let problems = body["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{body}");
    assert_eq!((&problems[0]["line"], &problems[0]["column"]), (&Value::from(1), &Value::from(129)), "{body}");
    assert!(problems[0]["message"].as_str().is_some_and(|m| m.starts_with(DEPTH_LIMIT)), "{body}");

    // The same process answers the next request, and a good document validates.
    let (status, body) = send(&plane, reqwest::Method::POST, "/policy/validate", POLICY).await;
    assert_eq!((status, &body["valid"], &body["routes"]), (200, &Value::from(true), &Value::from(2)), "{body}");

    // Apply: refused with the limit named, and nothing stored.
    let (status, body) = send(&plane, reqwest::Method::PUT, "/policy?message=hostile", &hostile).await;
    assert_eq!((status, &body["error"]["code"]), (422, &Value::from("invalid_policy")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(DEPTH_LIMIT)), "{body}");
    assert_eq!(plane.api_get("/policy").await["version"], 0);
    assert_eq!(plane.apply_policy(POLICY).await, 1);

    // `portcullis policy apply` of the file says the same.
    let file = dir.write("hostile.yaml", &hostile);
    let out = plane.cli(&["policy", "apply", file.to_str().expect("UTF-8 path"), "-m", "hostile"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains(&format!("hostile.yaml:1:129: error: {DEPTH_LIMIT}")), "{out:?}");
    assert_eq!(plane.api_get("/policy").await["version"], 1);
    assert!(!plane.log_text().contains("overflow"), "{}", plane.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_over_a_limit_is_refused_with_its_position() {
    let dir = TempDir::new("policy-limits-size");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let rule = |i: usize| format!("      - allow: {{email: [u{i}@corp.example]}}\n");
    let crowded = format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.corp.example\n    upstream: http://10.0.0.1\n    rules:\n{}",
        (0..1_001).map(rule).collect::<String>()
    );
    let (status, body) = send(&plane, reqwest::Method::POST, "/policy/validate", &crowded).await;
    assert_eq!(status, 200, "{body}");
    let problems = body["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{body}");
    assert_eq!((&problems[0]["line"], &problems[0]["column"]), (&Value::from(1_007), &Value::from(9)), "{body}");
    assert_eq!(problems[0]["message"], "more than 1000 rules in one route (the limit)", "{body}");
}
