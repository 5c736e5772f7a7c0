//! The edge beyond browser cookies, end to end with real processes: service
//! tokens allowed, denied and revoked by policy; the signed identity
//! assertion upstreams receive (and the client-supplied identity headers
//! they never see); `X-Forwarded-For` believed only from trusted proxies;
//! the HTTPS listener speaking HTTP/2 whose connections are killed like any
//! other; and an edge that outlives its control plane.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::edge_node::{certificate, login, login_to, EdgeNode};
use crate::harness::{ControlPlane, TempDir, ADMIN_TOKEN};
use crate::upstream::Upstream;

/// Bound for a change to show at the edge (milliseconds in practice).
const WITHIN: Duration = Duration::from_secs(5);

fn policy(upstream: u16) -> String {
    format!(
        "version: 1
routes:
  - name: app
    host: app.corp.example
    upstream: http://127.0.0.1:{upstream}
    rules:
      - name: staff
        allow: {{ email_domain: [corp.example], groups_any: [staff] }}
      - name: reports
        allow:
          credential: [service]
          claims:
            client_id: {{ equals: reports-bot }}
  - name: office
    host: office.corp.example
    upstream: http://127.0.0.1:{upstream}
    rules:
      - name: from-the-office
        allow: {{ email_domain: [corp.example], source_ip: [198.51.100.0/24] }}
  - name: pinned
    host: pinned.corp.example
    upstream: http://127.0.0.1:{upstream}
    options:
      on_ip_change: deny
    rules:
      - name: staff
        allow: {{ email_domain: [corp.example] }}
"
    )
}

async fn start(dir: &TempDir) -> (ControlPlane, Upstream) {
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    (plane, upstream)
}

/// GET `path` on `host` through `edge` with extra headers: (status, JSON body).
async fn get(edge: &EdgeNode, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(edge.url(path)).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request through the edge");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls until `check` holds, failing with `what` after [`WITHIN`].
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WITHIN;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_are_allowed_and_denied_by_policy_and_revoked_at_once() {
    let dir = TempDir::new("edge-service-tokens");
    let (plane, _upstream) = start(&dir).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (status, reports) = plane.api_post("/service-tokens", &json!({ "name": "reports-bot" })).await.unwrap();
    assert_eq!(status, 201, "{reports}");
    let (_, other) = plane.api_post("/service-tokens", &json!({ "name": "other-bot" })).await.unwrap();
    let bearer = |token: &Value| format!("Bearer {}", token["token"].as_str().expect("token"));

    let (status, seen) = get(&edge, "app.corp.example", "/hello", &[("authorization", &bearer(&reports))]).await;
    assert_eq!(status, 200, "the reports-bot rule allows it: {seen}");
    assert_eq!(seen["x-portcullis-user"], "service:reports-bot");
    let (status, body) = get(&edge, "app.corp.example", "/hello", &[("authorization", &bearer(&other))]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "no rule allows other-bot");
    let (status, _) = get(&edge, "app.corp.example", "/hello", &[("authorization", "Bearer pcst_made-up")]).await;
    assert_eq!(status, 401, "an unknown service token");

    let id = reports["id"].as_str().expect("id");
    let revoked = plane
        .http()
        .delete(format!("{}/api/v1/service-tokens/{id}", plane.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success(), "revoke: {}", revoked.status());
    eventually("the revoked token is refused although the edge cached it", || async {
        get(&edge, "app.corp.example", "/hello", &[("authorization", &bearer(&reports))]).await.0 == 401
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_get_a_verifiable_assertion_and_forwarding_only_from_trusted_proxies() {
    let dir = TempDir::new("edge-assertion");
    let (plane, _upstream) = start(&dir).await;
    let direct = EdgeNode::start(&plane, "edge-direct", dir.path()).await;
    let behind_lb =
        EdgeNode::start_with(&plane, "edge-lb", dir.path(), &[("trusted_proxies", "127.0.0.1".into())]).await;
    let (_, token) = login(&plane, "ann@corp.example").await;
    let cookie = format!("__Host-portcullis_session.app={token}");

    let forged = [
        ("cookie", cookie.as_str()),
        ("x-portcullis-user", "root"),
        ("x-portcullis-email", "ceo@corp.example"),
        ("x-portcullis-assertion", "forged"),
        ("x-forwarded-for", "198.51.100.4"),
    ];
    let (status, seen) = get(&direct, "app.corp.example", "/hello", &forged).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["x-portcullis-email"], "ann@corp.example", "client identity headers are replaced");
    assert_eq!(seen["x-portcullis-user"], "sub-ann@corp.example");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "an untrusted peer cannot claim another address");
    assert_eq!(seen["x-forwarded-proto"], "http");

    let assertion = seen["x-portcullis-assertion"].as_str().expect("an assertion");
    let jwks = reqwest::Client::new()
        .get(direct.url("/.portcullis/jwks.json"))
        .header("host", "app.corp.example")
        .send()
        .await
        .expect("JWKS")
        .json::<jsonwebtoken::jwk::JwkSet>()
        .await
        .expect("a JWK set");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).expect("key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["app"]);
    validation.set_issuer(&["portcullis"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation).expect("the assertion verifies").claims;
    assert_eq!((claims["email"].as_str(), claims["groups"].clone()), (Some("ann@corp.example"), json!(["staff"])));
    let wrong_audience = {
        let mut v = validation.clone();
        v.set_audience(&["another-app"]);
        jsonwebtoken::decode::<Value>(assertion, &key, &v)
    };
    assert!(wrong_audience.is_err(), "an assertion is for one route");

    let (_, office_token) = login_to(&plane, "ann@corp.example", "office").await;
    let office_cookie = format!("__Host-portcullis_session.office={office_token}");
    let forged: Vec<(&str, &str)> = forged
        .iter()
        .map(|&(name, value)| if name == "cookie" { (name, office_cookie.as_str()) } else { (name, value) })
        .collect();
    let (status, _) = get(&direct, "office.corp.example", "/hello", &forged).await;
    assert_eq!(status, 403, "a forged X-Forwarded-For does not make a client an office address");
    let (status, seen) = get(&behind_lb, "office.corp.example", "/hello", &forged).await;
    assert_eq!(status, 200, "the trusted proxy's word counts: {seen}");
    assert_eq!(seen["x-forwarded-for"], "198.51.100.4, 127.0.0.1");

    // The session was created from 127.0.0.1 and is now used from
    // 198.51.100.4: a warning by default, a new login where the route says so.
    let (_, pinned_token) = login_to(&plane, "ann@corp.example", "pinned").await;
    let pinned_cookie = format!("__Host-portcullis_session.pinned={pinned_token}");
    let pinned: Vec<(&str, &str)> = forged
        .iter()
        .map(|&(name, value)| if name == "cookie" { (name, pinned_cookie.as_str()) } else { (name, value) })
        .collect();
    let (status, _) = get(&behind_lb, "pinned.corp.example", "/hello", &pinned).await;
    assert_eq!(status, 401, "on_ip_change: deny sends the user back to login");
    let (status, _) = get(&direct, "pinned.corp.example", "/hello", &[("cookie", pinned_cookie.as_str())]).await;
    assert_eq!(status, 200, "from the login address it is allowed");
    let audit = |action: &'static str| {
        let plane = &plane;
        async move {
            plane.api_get(&format!("/audit?action={action}")).await["entries"].as_array().cloned().unwrap_or_default()
        }
    };
    eventually("the address change is in the audit log", || async {
        audit("session.address_changed").await.iter().any(|e| {
            let reason = e["reason"].as_str().unwrap_or("");
            reason.contains("from 127.0.0.1 to 198.51.100.4") && e["source_address"] == "198.51.100.4"
        })
    })
    .await;
    eventually("the denial is in the audit log", || async {
        audit("access.denied").await.iter().any(|e| {
            // Filed under the session (response rules count a session's denials), naming its user.
            e["target"].as_str().is_some_and(|t| t.starts_with("session:"))
                && e["user_email"] == "ann@corp.example"
                && e["reason"].as_str().is_some_and(|r| r.contains("route `office`"))
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_listener_speaks_http2_and_its_connections_are_killed_too() {
    let dir = TempDir::new("edge-https");
    let (plane, _upstream) = start(&dir).await;
    let (cert, key, pem) = certificate(&dir);
    let https_port = crate::harness::free_port();
    let settings = [("https_listen", format!("127.0.0.1:{https_port}")), ("tls_cert", cert), ("tls_key", key)];
    let edge = EdgeNode::start_with(&plane, "edge-tls", dir.path(), &settings).await;
    let (session_id, token) = login(&plane, "tom@corp.example").await;
    let client = |http2: bool| {
        let builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
            .resolve("app.corp.example", ([127, 0, 0, 1], https_port).into());
        if http2 { builder } else { builder.http1_only() }.build().expect("client")
    };
    let url = |path: &str| format!("https://app.corp.example:{https_port}{path}");
    let cookie = format!("__Host-portcullis_session.app={token}");

    let response = client(false).get(url("/hello")).header("cookie", &cookie).send().await.expect("HTTP/1.1 over TLS");
    assert_eq!((response.version(), response.status().as_u16()), (reqwest::Version::HTTP_11, 200));
    let response = client(true).get(url("/hello")).header("cookie", &cookie).send().await.expect("HTTP/2 over TLS");
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    let seen: Value = response.json().await.expect("JSON");
    assert_eq!(seen["x-forwarded-proto"], "https");

    let h2 = client(true);
    let download = h2.get(url("/stream")).header("cookie", &cookie).send().await.expect("h2 download");
    assert_eq!(download.version(), reqwest::Version::HTTP_2);
    let mut body = download.bytes_stream();
    assert!(body.next().await.is_some_and(|c| c.is_ok()), "the download starts");
    let (status, _) =
        plane.api_post(&format!("/sessions/{session_id}/terminate"), &json!({ "reason": "test" })).await.unwrap();
    assert_eq!(status, 200);
    let cut = tokio::time::timeout(WITHIN, async {
        let mut chunks = 0;
        while let Some(Ok(_)) = body.next().await {
            chunks += 1;
        }
        chunks
    })
    .await
    .expect("the HTTP/2 download is cut after the termination");
    assert!(cut < 100, "cut, not finished ({cut} more chunks)");
    assert!(edge.metrics_text().await.contains("kills_total"), "the kill is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_control_plane_an_edge_keeps_sessions_refuses_logins_and_resumes_by_sequence() {
    let dir = TempDir::new("edge-cp-down");
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    let (plane, _upstream) = start(&dir).await;
    let (ports_admin, ports_edge) = plane.ports();
    // An IdP nobody serves: a login must fail on the control plane first.
    let oidc = [("oidc_issuer", "http://127.0.0.1:9".to_owned()), ("oidc_client_id", "edge".to_owned())];
    let edge = EdgeNode::start_with(&plane, "edge-a", dir.path(), &oidc).await;
    let (_, token) = login(&plane, "una@corp.example").await;
    let (session_b, token_b) = login(&plane, "ben@corp.example").await;
    let cookie = format!("__Host-portcullis_session.app={token}");
    assert_eq!(get(&edge, "app.corp.example", "/hello", &[("cookie", &cookie)]).await.0, 200);

    plane.kill();
    drop(plane);
    let html = [("accept", "text/html")];
    eventually("a new login answers 503 while the control plane is down", || async {
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .get(edge.url("/.portcullis/login?rd=/"))
            .header("host", "app.corp.example")
            .header(html[0].0, html[0].1)
            .send()
            .await
            .expect("login");
        response.status().as_u16() == 503
            && response.text().await.unwrap_or_default().contains("cannot reach the Portcullis control plane")
    })
    .await;
    let (status, _) = get(&edge, "app.corp.example", "/hello", &[("cookie", &cookie)]).await;
    assert_eq!(status, 200, "an existing session keeps working");

    let plane = ControlPlane::start_on(&database, dir.path(), ports_admin, ports_edge).await.expect("restart");
    let (status, _) = plane
        .api_post(&format!("/sessions/{session_b}/terminate"), &json!({ "reason": "after restart" }))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let cookie_b = format!("__Host-portcullis_session.app={token_b}");
    eventually("the edge applies the change made after the restart", || async {
        // A request in flight when the termination lands has its connection
        // closed under it: that is a retry, not a verdict.
        let request = reqwest::Client::new().get(edge.url("/hello")).header("host", "app.corp.example");
        let sent = request.header("cookie", &cookie_b).send().await;
        sent.is_ok_and(|response| response.status().as_u16() == 401)
    })
    .await;
    let log = edge.log_text();
    assert_eq!(log.matches("applied a full snapshot").count(), 1, "the edge resumed by sequence:\n{log}");
    assert!(log.contains("&since="), "the reconnect named its sequence:\n{log}");
    assert_eq!(get(&edge, "app.corp.example", "/hello", &[("cookie", &cookie)]).await.0, 200);
}
