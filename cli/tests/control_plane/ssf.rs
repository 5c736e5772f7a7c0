//! The Shared Signals transmitter (issue 15) against an independent
//! receiver written in Python with PyJWT (`cli/tests/receivers/ssf_receiver.py`):
//! discovery, push (RFC 8935) and poll (RFC 8936) streams, verification
//! events, and the CAEP/RISC events of an admin's terminations, every SET
//! checked by the receiver against the published JWKS and the specs. Here:
//! what a hostile or careless receiver meets.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{free_port, ControlPlane, TempDir, ADMIN_TOKEN, POLICY};

async fn receiver_token(plane: &ControlPlane, name: &str) -> String {
    let (status, created) = plane.api_post("/admin-tokens", &json!({ "name": name, "scopes": ["ssf"] })).await.unwrap();
    assert_eq!(status, 201, "{created}");
    created["token"].as_str().unwrap().to_owned()
}

async fn call(
    plane: &ControlPlane,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = plane.http().request(method, format!("{}{path}", plane.url)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_receiver_gets_verified_caep_and_risc_events_by_push_and_poll() {
    let dir = TempDir::new("ssf");
    let database = dir.path().join("cp.db");
    // The Python receiver listens on loopback: allowed by this setting only.
    let settings = [("ssf_push_private_networks", "true".to_owned())];
    let plane = ControlPlane::start_on_with(
        &format!("sqlite://{}", database.display()),
        dir.path(),
        free_port(),
        free_port(),
        &settings,
    )
    .await
    .unwrap_or_else(|log| panic!("the control plane did not start:\n{log}"));
    plane.apply_policy(POLICY).await;
    plane.create_session("alice@corp.example", "wiki").await;
    plane.create_session("bob@corp.example", "wiki").await;
    let token = receiver_token(&plane, "python-rx").await;
    let report = dir.path().join("ssf-report.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receivers/ssf_receiver.py");
    let (url, token2, report2) = (plane.url.clone(), token.clone(), report.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).args([&url, &token2, ADMIN_TOKEN]).arg(&report2).output()
    })
    .await
    .unwrap()
    .expect("run the Python SSF receiver (scripts/setup.sh installs PyJWT)");
    assert!(
        output.status.success(),
        "the receiver's checks failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        plane.log_text()
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let received = report["received"].as_array().unwrap();
    assert_eq!(received.len(), 7, "2 verifications, 3 pushed and 2 polled events: {report}");
    let push_stream = report["push_stream"].as_str().unwrap();

    // The receiver's push secret is stored sealed, never in the clear.
    let bytes = std::fs::read(&database).unwrap();
    let wal = std::fs::read(database.with_extension("db-wal")).unwrap_or_default();
    let needle = b"rx-push-secret-0c5e";
    assert!(!bytes.windows(needle.len()).chain(wal.windows(needle.len())).any(|w| w == needle), "sealed at rest");

    // Another receiver cannot see, change, verify or poll it.
    let other = receiver_token(&plane, "other-rx").await;
    let get = reqwest::Method::GET;
    let (status, _) = call(&plane, get.clone(), &format!("/ssf/streams?stream_id={push_stream}"), &other, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&plane, get.clone(), "/ssf/streams", &other, None).await;
    assert_eq!(status, 200);
    let (_, mine) = call(&plane, get.clone(), "/ssf/streams", &other, None).await;
    assert_eq!(mine, json!([]), "a receiver lists only its own streams");
    let patch = json!({ "stream_id": push_stream, "delivery": { "method": "urn:ietf:rfc:8935",
        "endpoint_url": "http://127.0.0.1:9/steal" } });
    let (status, _) = call(&plane, reqwest::Method::PATCH, "/ssf/streams", &other, Some(patch)).await;
    assert_eq!(status, 404, "no redirecting another receiver's events");
    let poll = format!("/ssf/poll/{push_stream}");
    let (status, _) = call(&plane, reqwest::Method::POST, &poll, &other, Some(json!({}))).await;
    assert_eq!(status, 404);

    // Careless configurations get clear refusals.
    let post = reqwest::Method::POST;
    for (body, expected) in [
        (
            json!({ "delivery": { "method": "urn:ietf:rfc:8935", "endpoint_url": "http://rx.example/events" } }),
            "plain HTTP",
        ),
        (json!({ "delivery": { "method": "urn:example:smoke-signals" } }), "not supported"),
        (json!({ "delivery": { "method": "urn:ietf:rfc:8936" }, "stream_id": "mine" }), "chosen by the transmitter"),
        (json!({ "delivery": { "method": "urn:ietf:rfc:8936" }, "colour": "red" }), "colour"),
        (
            json!({ "delivery": { "method": "urn:ietf:rfc:8935", "endpoint_url": "https://rx.example",
            "authorization_header": "Bearer x\r\nX-Injected: 1" } }),
            "one line",
        ),
        (
            json!({ "delivery": { "method": "urn:ietf:rfc:8935",
            "endpoint_url": "http://169.254.169.254/latest/meta-data/iam/security-credentials" } }),
            "link-local",
        ),
        (
            json!({ "delivery": { "method": "urn:ietf:rfc:8935", "endpoint_url": "http://[::ffff:0:0]:7400/" } }),
            "never pushed",
        ),
    ] {
        let (status, answer) = call(&plane, post.clone(), "/ssf/streams", &other, Some(body.clone())).await;
        assert!((400..500).contains(&status), "{body} → {status} {answer}");
        assert!(answer.to_string().contains(expected), "{body} → {answer}");
    }
    // A token without the `ssf` scope manages no streams.
    let (status, created) =
        plane.api_post("/admin-tokens", &json!({ "name": "reader", "scopes": ["sessions:read"] })).await.unwrap();
    assert_eq!(status, 201);
    let reader = created["token"].as_str().unwrap();
    let (status, _) = call(&plane, get, "/ssf/streams", reader, None).await;
    assert_eq!(status, 403);
    // Discovery and keys are public; nothing else is.
    let anonymous = plane.http().get(format!("{}/ssf/jwks", plane.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    let keys: Value = anonymous.json().await.unwrap();
    assert!(keys["keys"][0].get("d").is_none(), "only the public half: {keys}");
    let anonymous = plane.http().get(format!("{}/ssf/streams", plane.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}
