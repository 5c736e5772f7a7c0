//! Signals in (issue 16) against an independent Shared Signals transmitter
//! written in Python with PyJWT (`cli/tests/transmitters/ssf_transmitter.py`),
//! with real edges and live connections: forged and broken SETs are refused
//! with RFC 8935's codes and change nothing; a CAEP `session-revoked` for
//! one IdP login closes its websocket and TCP flow on two edges and leaves
//! the user's other login alone; a replayed `jti` is not applied again;
//! RISC `credential-compromise` terminates and locks; Okta Universal Logout
//! (Global Token Revocation) ends a user; polling (RFC 8936) with a managed
//! stream applies, acknowledges and survives a restart without re-applying.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::edge_node::{create_session, EdgeNode};
use crate::edge_proxy::{assert_all_closed, open_live_connections};
use crate::harness::{free_port, ControlPlane, TempDir};
use crate::tunnel_kit::{bearer, closed_within, connect, echo_upstream, tcp_policy};
use crate::upstream::Upstream;

pub(crate) const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const PUSH_TOKEN: &str = "push-token-7f3a9c";
const POLL_TOKEN: &str = "poll-token-41d2e8";

/// The Python transmitter, stopped on drop.
pub(crate) struct Transmitter {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Transmitter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Transmitter {
    pub(crate) fn start(receiver: &str, audience: &str) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transmitters/ssf_transmitter.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([receiver, audience, PUSH_TOKEN, POLL_TOKEN])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the Python SSF transmitter (scripts/setup.sh installs PyJWT)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its port");
        let port = line.trim().strip_prefix("listening ").expect("`listening <port>`");
        Self { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.url)).json(&body).send().await.expect("transmitter");
        response.json().await.expect("JSON")
    }

    /// Pushes an event; the receiver's (status, body).
    pub(crate) async fn push(&self, event: &str, payload: Value, sub_id: Value, extra: Value) -> (u16, Value) {
        let mut body = json!({ "event": event, "payload": payload, "sub_id": sub_id });
        for (key, value) in extra.as_object().into_iter().flatten() {
            body[key] = value.clone();
        }
        let answer = self.control("/control/push", body).await;
        let text = answer["body"].as_str().unwrap_or_default();
        (answer["status"].as_u64().unwrap_or(0) as u16, serde_json::from_str(text).unwrap_or(Value::Null))
    }

    async fn state(&self) -> Value {
        self.http.get(format!("{}/control/state", self.url)).send().await.expect("state").json().await.expect("JSON")
    }
}

pub(crate) fn email(address: &str) -> Value {
    json!({ "format": "email", "email": address })
}

/// A session of `email` in group `staff` on `route` from IdP login `sid`; (id, token).
async fn login(plane: &ControlPlane, email: &str, route: &str, sid: &str) -> (String, String) {
    login_in(plane, email, &["staff"], route, sid).await
}

/// A session of `email` in `groups` on `route` from IdP login `sid`; (id, token).
pub(crate) async fn login_in(
    plane: &ControlPlane,
    email: &str,
    groups: &[&str],
    route: &str,
    sid: &str,
) -> (String, String) {
    let body = json!({
        "subject": format!("sub-{email}"), "email": email, "groups": groups, "idp_session_id": sid,
        "auth_time": chrono::Utc::now().timestamp(), "route": route,
        "source_address": "127.0.0.1", "user_agent": "signals-test",
    });
    let answer = create_session(plane, &body).await;
    let id = answer["session_id"].as_str().unwrap_or_else(|| panic!("no session for {email}: {answer}"));
    (id.to_owned(), answer["token"].as_str().expect("token").to_owned())
}

pub(crate) async fn active(plane: &ControlPlane, session: &str) -> bool {
    plane.api_get(&format!("/sessions/{session}")).await["state"] == "active"
}

async fn applied_signals(plane: &ControlPlane) -> Vec<Value> {
    let audit = plane.api_get("/audit?limit=500&action=signal.applied").await;
    audit["entries"].as_array().cloned().unwrap_or_default()
}

fn transmitters(tx: &Transmitter, dir: &TempDir, delivery: &str) -> String {
    let login_issuer = portcullis_dev_idp::test_issuer::TestIssuer::shared().issuer().to_owned();
    let token = dir.write("push-token", PUSH_TOKEN);
    let poll = dir.write("poll-token", POLL_TOKEN);
    let delivery = match delivery {
        "push" => format!("push_token_file = \"{}\"", token.display()),
        _ => format!(
            "delivery = \"poll\", poll_token_file = \"{}\", manage_stream = true, poll_interval_ms = 1500",
            poll.display()
        ),
    };
    format!(
        "[{{ name = \"python-tx\", issuer = \"{}\", audience = \"urn:portcullis:test\", \
         login_issuer = \"{login_issuer}\", universal_logout = true, {delivery} }}]",
        tx.url
    )
}

pub(crate) async fn start_plane(
    database: &str,
    dir: &TempDir,
    listen: u16,
    tx: &Transmitter,
    delivery: &str,
) -> ControlPlane {
    let settings = [
        ("ssf_transmitters", transmitters(tx, dir, delivery)),
        ("public_url", format!("http://127.0.0.1:{listen}")),
        ("log", "info".to_owned()),
    ];
    ControlPlane::start_on_with(database, dir.path(), listen, free_port(), &settings)
        .await
        .unwrap_or_else(|log| panic!("the control plane did not start:\n{log}"))
}

pub(crate) async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_signals_end_the_right_connections_and_forgeries_change_nothing() {
    let dir = TempDir::new("signals-push");
    let listen = free_port();
    let tx = Transmitter::start(&format!("http://127.0.0.1:{listen}"), "urn:portcullis:test");
    let plane =
        start_plane(&format!("sqlite://{}", dir.path().join("cp.db").display()), &dir, listen, &tx, "push").await;
    let (upstream, echo) = (Upstream::start().await, echo_upstream().await);
    plane.apply_policy(&tcp_policy(free_port(), echo, upstream.port, free_port())).await;
    let (edge_a, edge_b) =
        (EdgeNode::start(&plane, "edge-a", dir.path()).await, EdgeNode::start(&plane, "edge-b", dir.path()).await);

    // Ada's IdP login sid-1 made two sessions: the app (live on edge A) and a
    // TCP flow (live on edge B). Her other login, sid-2, is live on edge B.
    let (web, web_token) = login(&plane, "ada@corp.example", "app", "sid-1").await;
    let (flow, flow_token) = login(&plane, "ada@corp.example", "echo", "sid-1").await;
    let (other, other_token) = login(&plane, "ada@corp.example", "app", "sid-2").await;
    let on_a = open_live_connections(&edge_a, &web_token).await;
    let mut tunnel = connect(edge_b.port, "echo.internal:7", &[("Proxy-Authorization", &bearer(&flow_token))]).await;
    assert_eq!(tunnel.status, 200, "{}", tunnel.head);
    let mut survivor = open_live_connections(&edge_b, &other_token).await;

    let revoked = format!("{CAEP}session-revoked");
    let complex = json!({ "format": "complex", "user": email("ada@corp.example"),
                          "session": { "format": "opaque", "id": "sid-1" } });
    // Forgeries and broken SETs first: each refused with its RFC 8935 code.
    for (variant, code) in [
        ("bad_signature", "invalid_key"),
        ("unknown_kid", "invalid_key"),
        ("hs256", "invalid_key"),
        ("alg_none", "invalid_request"),
        ("typ_jwt", "invalid_request"),
        ("wrong_aud", "invalid_audience"),
        ("wrong_iss", "invalid_issuer"),
        ("stale_iat", "invalid_request"),
        ("future_iat", "invalid_request"),
        ("no_jti", "invalid_request"),
    ] {
        let (status, body) = tx.push(&revoked, json!({}), complex.clone(), json!({ "variant": variant })).await;
        assert_eq!((status, body["err"].as_str()), (400, Some(code)), "{variant}: {body}");
    }
    let (status, body) = tx.push(&revoked, json!({}), email("not-an-address"), json!({})).await;
    assert_eq!((status, body["err"].as_str()), (400, Some("invalid_request")), "{body}");
    let foreign = json!({ "format": "iss_sub", "iss": "https://other-idp.example", "sub": "sub-ada@corp.example" });
    let (status, body) = tx.push(&revoked, json!({}), foreign, json!({})).await;
    assert_eq!((status, body["err"].as_str()), (400, Some("invalid_request")), "another issuer's user: {body}");
    let wrong_token = reqwest::Client::new()
        .post(format!("{}/ssf/receiver/python-tx", plane.url))
        .header("content-type", "application/secevent+jwt")
        .bearer_auth("guessed")
        .body("x.y.z")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);
    assert!(applied_signals(&plane).await.is_empty(), "nothing refused was applied");
    for session in [&web, &flow, &other] {
        assert!(active(&plane, session).await, "{session} untouched by refused SETs");
    }

    // The real thing: sid-1 ends on both edges, sid-2 stays.
    let (status, body) =
        tx.push(&revoked, json!({ "event_timestamp": 1 }), complex.clone(), json!({ "jti": "rev-1" })).await;
    assert_eq!(status, 202, "{body}");
    assert_all_closed(on_a).await;
    assert!(closed_within(&mut tunnel.stream, Duration::from_secs(5)).await.is_some(), "the TCP flow on edge B closed");
    assert!(!active(&plane, &web).await && !active(&plane, &flow).await);
    assert!(active(&plane, &other).await, "the other IdP login is not touched");
    survivor.websocket.send(Message::text("still here")).await.expect("ws send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), survivor.websocket.next()).await.expect("echo");
    assert!(matches!(echoed, Some(Ok(Message::Text(ref t))) if t.as_str() == "still here"), "{echoed:?}");

    // A replayed jti is accepted (a retry) but not applied again, even as another event.
    let (status, _) = tx
        .push(&format!("{RISC}sessions-revoked"), json!({}), email("ada@corp.example"), json!({ "jti": "rev-1" }))
        .await;
    assert_eq!(status, 202);
    assert!(active(&plane, &other).await, "a replayed jti does nothing");
    // Unknown event types are accepted and audited, nothing more.
    let (status, _) =
        tx.push("https://vendor.example/event/new-thing", json!({}), email("ada@corp.example"), json!({})).await;
    assert_eq!(status, 202);
    assert!(active(&plane, &other).await);

    // RISC credential-compromise: terminated and locked.
    let (bob, _) = login(&plane, "bob@corp.example", "app", "sid-b").await;
    let (status, _) = tx
        .push(
            &format!("{RISC}credential-compromise"),
            json!({ "credential_type": "password" }),
            email("bob@corp.example"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202);
    assert!(!active(&plane, &bob).await);
    let lock = plane.api_get("/users/lock?email=bob@corp.example").await;
    assert_eq!(lock["locked"], true, "{lock}");

    // Every applied signal is audited with the transmitter, event, response and jti.
    let applied = applied_signals(&plane).await;
    assert_eq!(applied.len(), 3, "rev-1, the unknown event, credential-compromise: {applied:#?}");
    let reasons: Vec<&str> = applied.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("session-revoked → terminate_session") && r.contains("jti rev-1")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("unknown event type")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("credential-compromise → terminate_and_lock")), "{reasons:?}");
    assert!(applied.iter().all(|e| e["actor"] == "ssf:python-tx"), "{applied:#?}");

    // Okta Universal Logout: forged, misaddressed, expired and replayed calls
    // are refused; a user we never saw is 404; the real call ends the user.
    let (carol, _) = login(&plane, "carol@corp.example", "app", "sid-c").await;
    // `aud_at_large`: addressed to the control plane (the SETs' audience), not this endpoint.
    for variant in ["bad_signature", "wrong_aud", "aud_at_large", "expired"] {
        let answer =
            tx.control("/control/logout", json!({ "sub_id": email("carol@corp.example"), "variant": variant })).await;
        assert_eq!(answer["status"], 401, "{variant}: {answer}");
    }
    assert!(active(&plane, &carol).await, "refused logouts change nothing");
    let answer = tx.control("/control/logout", json!({ "sub_id": email("nobody@corp.example") })).await;
    assert_eq!(answer["status"], 404, "{answer}");
    let answer =
        tx.control("/control/logout", json!({ "sub_id": email("carol@corp.example"), "variant": "replay" })).await;
    assert_eq!(answer["status"], 401, "the same JWT twice: {answer}");
    assert!(!active(&plane, &carol).await, "the first call ended carol");

    let metrics = plane.http().get(format!("{}/metrics", plane.url)).send().await.unwrap().text().await.unwrap();
    for needle in [
        "signal_events_total{event=\"session-revoked\",outcome=\"applied\",source=\"ssf:python-tx\"} 1",
        "signal_events_total{event=\"sessions-revoked\",outcome=\"duplicate\",source=\"ssf:python-tx\"} 1",
        "outcome=\"rejected:invalid_key\",source=\"ssf:python-tx\"} 3",
        "signal_received_to_edges_seconds_count{source=\"ssf:python-tx\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_transmitter_is_acknowledged_and_nothing_is_applied_twice_across_a_restart() {
    let dir = TempDir::new("signals-poll");
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    let listen = free_port();
    let tx = Transmitter::start(&format!("http://127.0.0.1:{listen}"), "urn:portcullis:test");
    let plane = start_plane(&database, &dir, listen, &tx, "poll").await;
    plane.apply_policy(&tcp_policy(free_port(), free_port(), free_port(), free_port())).await;
    // The managed stream is created at the transmitter and verified.
    wait_until("our stream exists and its verification was acknowledged", || async {
        let state = tx.state().await;
        let verification = state["verifications"][0].as_str().map(str::to_owned);
        state["streams"].as_array().is_some_and(|s| s.len() == 1)
            && verification.is_some_and(|v| state["acked"].as_array().is_some_and(|a| a.iter().any(|j| j == &v)))
    })
    .await;
    let state = tx.state().await;
    assert_eq!(state["streams"][0]["delivery"]["method"], "urn:ietf:rfc:8936", "{state}");

    let (first, _) = login(&plane, "ada@corp.example", "app", "sid-1").await;
    tx.control(
        "/control/enqueue",
        json!({ "event": format!("{CAEP}session-revoked"), "jti": "poll-1",
        "sub_id": { "format": "complex", "session": { "format": "opaque", "id": "sid-1" } } }),
    )
    .await;
    tx.control(
        "/control/enqueue",
        json!({ "event": format!("{CAEP}session-revoked"), "jti": "forged-1",
        "variant": "bad_signature", "sub_id": email("ada@corp.example") }),
    )
    .await;
    wait_until("the polled session-revoked is applied", || async { !active(&plane, &first).await }).await;
    // Killed before the next poll could acknowledge it.
    plane.kill();
    let state = tx.state().await;
    assert!(!state["acked"].as_array().unwrap().iter().any(|j| j == "poll-1"), "not acknowledged yet: {state}");

    // After the restart the first poll acknowledges it (the ack was durable,
    // not in memory). Then the transmitter hands it over again anyway: it is
    // recognised by its jti, acknowledged again and not applied twice.
    let plane = start_plane(&database, &dir, listen, &tx, "poll").await;
    // The termination demands a sign-in after it (auth_time has whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (second, _) = login(&plane, "ada@corp.example", "app", "sid-2").await;
    let acks = |state: Value| state["acked"].as_array().map_or(0, |a| a.iter().filter(|j| *j == "poll-1").count());
    wait_until("poll-1 is acknowledged", || async { acks(tx.state().await) == 1 }).await;
    tx.control(
        "/control/enqueue",
        json!({ "event": format!("{RISC}sessions-revoked"), "as_jti": "poll-1",
        "jti": "poll-1", "sub_id": email("ada@corp.example") }),
    )
    .await;
    wait_until("the redelivered poll-1 is acknowledged", || async { acks(tx.state().await) == 2 }).await;
    assert!(active(&plane, &second).await, "the redelivered jti was not applied again");
    // The forged SET is refused back to the transmitter (RFC 8936 setErrs).
    wait_until("the forged SET is reported", || async { tx.state().await["set_errs"]["forged-1"].is_object() }).await;
    assert_eq!(tx.state().await["set_errs"]["forged-1"]["err"], "invalid_key");
    // Nothing is lost after the restart.
    tx.control(
        "/control/enqueue",
        json!({ "event": format!("{RISC}sessions-revoked"), "jti": "poll-2",
        "sub_id": email("ada@corp.example") }),
    )
    .await;
    wait_until("poll-2 is applied", || async { !active(&plane, &second).await }).await;
    let applied = applied_signals(&plane).await;
    let jtis: Vec<&str> = applied.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(jtis.iter().filter(|r| r.contains("jti poll-1")).count(), 1, "{jtis:?}");
    assert_eq!(jtis.iter().filter(|r| r.contains("jti poll-2")).count(), 1, "{jtis:?}");
    assert!(jtis.iter().any(|r| r.contains("verification")), "the verification event is audited: {jtis:?}");
}
