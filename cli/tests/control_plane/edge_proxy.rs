//! The edge proxy end to end: the real `portcullis edge` (pingora) in front
//! of a real upstream, fed by a real control plane. A session token is
//! minted the way the edge's login does it (POST /edge/v1/sessions); then
//! requests are allowed or refused by policy, client-supplied identity
//! headers never reach the upstream, and terminating a session, a user or
//! changing the policy closes the live connections it affects: an in-flight
//! streaming download, an idle keep-alive connection and a websocket.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::edge_node::{login, policy, EdgeNode};
use crate::harness::{ControlPlane, TempDir};
use crate::upstream::Upstream;

/// Generous bound for a kill to show on the client side (the target is
/// milliseconds; this only guards against a hang).
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Live connections of one session: a streaming download, an idle
/// keep-alive connection and a websocket, all through `edge`.
pub(crate) struct LiveConnections {
    download: tokio::task::JoinHandle<usize>,
    keep_alive: TcpStream,
    pub(crate) websocket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

pub(crate) async fn open_live_connections(edge: &EdgeNode, token: &str) -> LiveConnections {
    let request = reqwest::Client::new()
        .get(edge.url("/stream"))
        .header("host", "app.corp.example")
        .header("cookie", format!("__Host-portcullis_session.app={token}"));
    let mut body = request.send().await.expect("start download").bytes_stream();
    assert!(body.next().await.is_some_and(|c| c.is_ok()), "the download starts");
    let download = tokio::spawn(async move {
        let mut chunks = 1;
        while let Some(Ok(_)) = body.next().await {
            chunks += 1;
        }
        chunks
    });
    let mut keep_alive = TcpStream::connect(("127.0.0.1", edge.port)).await.expect("connect");
    let request = format!(
        "GET /hello HTTP/1.1\r\nhost: app.corp.example\r\ncookie: __Host-portcullis_session.app={token}\r\n\r\n"
    );
    keep_alive.write_all(request.as_bytes()).await.expect("send");
    let mut first = vec![0u8; 4096];
    let n = keep_alive.read(&mut first).await.expect("response");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"), "keep-alive request allowed");
    let mut ws_request = format!("ws://127.0.0.1:{}/ws", edge.port).into_client_request().expect("ws request");
    ws_request.headers_mut().insert("host", "app.corp.example".parse().expect("header"));
    ws_request
        .headers_mut()
        .insert("cookie", format!("__Host-portcullis_session.app={token}").parse().expect("header"));
    let (mut websocket, _) = tokio_tungstenite::connect_async(ws_request).await.expect("websocket through the edge");
    websocket.send(Message::text("ping")).await.expect("ws send");
    let echoed = match websocket.next().await {
        Some(Ok(frame)) => frame,
        other => panic!("no websocket echo ({other:?}); edge log:\n{}", edge.log_text()),
    };
    assert_eq!(echoed.into_text().expect("text").as_str(), "ping");
    LiveConnections { download, keep_alive, websocket }
}

pub(crate) async fn assert_all_closed(mut live: LiveConnections) {
    let chunks = tokio::time::timeout(CLOSE_WITHIN, &mut live.download).await.expect("download closed").expect("task");
    assert!(chunks < 100, "the download was cut, not finished ({chunks} chunks)");
    let mut rest = [0u8; 64];
    let read = tokio::time::timeout(CLOSE_WITHIN, live.keep_alive.read(&mut rest)).await.expect("keep-alive closed");
    assert!(matches!(read, Ok(0) | Err(_)), "the idle keep-alive connection is closed: {read:?}");
    let next = tokio::time::timeout(CLOSE_WITHIN, live.websocket.next()).await.expect("websocket closed");
    assert!(!matches!(next, Some(Ok(Message::Text(_)))), "the websocket is closed: {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_session_closes_its_live_connections_and_refuses_the_next_request() {
    let dir = TempDir::new("edge-session");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (session, token) = login(&plane, "ada@corp.example").await;

    let (status, seen) =
        edge.get("/hello", Some(&token), &[("x-portcullis-user", "mallory"), ("X-Portcullis-Groups", "admins")]).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["x-portcullis-user"], "sub-ada@corp.example",
        "client-supplied identity headers are replaced: {seen}"
    );
    assert_eq!(seen["x-portcullis-groups"], "[\"staff\"]");
    assert_eq!(seen["x-portcullis-session"], session.as_str());
    assert_eq!(edge.get("/hello", None, &[]).await.0, 401, "no credential: 401 for API clients");
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let redirect = browser
        .get(edge.url("/hello"))
        .header("host", "app.corp.example")
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET");
    assert_eq!(redirect.status().as_u16(), 302, "no credential: browsers go to login");

    let live = open_live_connections(&edge, &token).await;
    let out = plane.cli(&["sessions", "terminate", &session, "--reason", "stolen laptop", "--wait", "--json"]).await;
    let receipt = &out.json()["receipt"];
    assert_eq!(receipt["edges_applied"], receipt["edges_total"], "{receipt}");
    assert!(receipt["connections_closed"].as_i64().unwrap_or(0) >= 3, "download, keep-alive and websocket: {receipt}");
    assert_all_closed(live).await;
    let (status, body) = edge.get("/hello", Some(&token), &[]).await;
    assert_eq!(status, 401, "the very next request is refused: {body}");
    let metrics = edge.metrics_text().await;
    let kills = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_edge_kills_total{reason=\"session_terminated\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(kills.is_some_and(|k| k >= 3), "kills are counted by reason:\n{metrics}");
    assert!(metrics.contains("portcullis_edge_requests_total{decision=\"allow\",route=\"app\"}"), "{metrics}");
    assert!(metrics.contains("portcullis_edge_token_cache_hits_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_user_closes_every_session_on_every_edge() {
    let dir = TempDir::new("edge-user");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let (edge_a, edge_b) =
        (EdgeNode::start(&plane, "edge-a", dir.path()).await, EdgeNode::start(&plane, "edge-b", dir.path()).await);
    let (_, first) = login(&plane, "ada@corp.example").await;
    let (_, second) = login(&plane, "ada@corp.example").await;
    let (_, bob) = login(&plane, "bob@corp.example").await;
    let on_a = open_live_connections(&edge_a, &first).await;
    let on_b = open_live_connections(&edge_b, &second).await;
    let bob_live = open_live_connections(&edge_b, &bob).await;

    let out =
        plane.cli(&["users", "terminate", "ADA@corp.example", "--reason", "offboarding", "--wait", "--json"]).await;
    let answer = out.json();
    assert_eq!(answer["sessions_ended"], 2, "{answer}");
    assert_eq!(answer["receipt"]["edges_total"], 2, "{answer}");
    assert!(answer["receipt"]["connections_closed"].as_i64().unwrap_or(0) >= 6, "{answer}");
    assert_all_closed(on_a).await;
    assert_all_closed(on_b).await;
    assert_eq!(edge_a.get("/hello", Some(&first), &[]).await.0, 401);
    assert_eq!(edge_b.get("/hello", Some(&bob), &[]).await.0, 200, "other users are untouched");
    drop(bob_live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_denies_the_next_request_and_closes_what_it_no_longer_allows() {
    let dir = TempDir::new("edge-policy");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (_, token) = login(&plane, "ada@corp.example").await;
    let live = open_live_connections(&edge, &token).await;

    let out = plane.cli(&["users", "lock", "nobody@corp.example", "--reason", "unrelated", "--json"]).await;
    assert!(out.json()["receipt"]["seq"].is_number(), "an unrelated change closes nothing");
    let narrower = policy(upstream.port).replace("groups_any: [staff]", "groups_any: [sre]");
    let file = dir.path().join("narrower.yaml");
    std::fs::write(&file, &narrower).expect("write the policy");
    let file = file.to_str().expect("UTF-8 path");
    // The apply answers with a receipt, as a termination does.
    let out = plane.cli(&["policy", "apply", file, "-m", "staff no longer", "--wait"]).await;
    let text = out.stdout.lines().nth(1).unwrap_or_default().to_owned();
    assert!(text.contains("applied by all 1 connected edges in"), "{out:?}");
    let closed: i64 = text.rsplit(", ").next().and_then(|t| t.split(' ').next()?.parse().ok()).unwrap_or(0);
    assert!(closed >= 3, "download, keep-alive and websocket closed for the change: {out:?}");
    let deadline = Instant::now() + CLOSE_WITHIN;
    let status = loop {
        // A request in flight when the change lands has its connection
        // closed under it (it is no longer allowed): that is a retry, not a verdict.
        let request = reqwest::Client::new()
            .get(edge.url("/hello"))
            .header("host", "app.corp.example")
            .header("cookie", format!("__Host-portcullis_session.app={token}"));
        let status = request.send().await.map_or(0, |r| r.status().as_u16());
        if (status != 200 && status != 0) || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 403, "the narrower policy denies ada");
    assert_all_closed(live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_tokens_are_refused() {
    let dir = TempDir::new("edge-forged");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (_, token) = login(&plane, "ada@corp.example").await;
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |v: &Value| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v.to_string());
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1]).expect("payload"),
    )
    .expect("claims");
    let mut escalated = payload.clone();
    escalated["groups"] = json!(["staff", "admins"]);
    let none_header = json!({"alg": "none", "typ": "portcullis-session+jwt"});
    let hs_header = json!({"alg": "HS256", "typ": "portcullis-session+jwt"});
    let forged = [
        format!("{}.{}.{}", parts[0], b64(&escalated), parts[2]),
        format!("{}.{}.", b64(&none_header), parts[1]),
        format!("{}.{}.{}", b64(&hs_header), parts[1], parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        "not-a-token".to_owned(),
    ];
    for bad in &forged {
        let (status, body) = edge.get("/hello", Some(bad), &[]).await;
        assert_eq!(status, 401, "{bad}: {body}");
    }
    assert_eq!(edge.get("/hello", Some(&token), &[]).await.0, 200, "the genuine token still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_to_an_instant_upstream_always_upgrade() {
    // pingora 0.9.1 alone loses the race when the 101 comes back at once
    // (cloudflare/pingora#946); the edge's own upgrade path must not.
    let dir = TempDir::new("edge-ws-race");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (_, token) = login(&plane, "wes@corp.example").await;
    let opened = futures_util::future::join_all((0..100).map(|i| {
        let token = token.clone();
        let port = edge.port;
        async move {
            let mut request = format!("ws://127.0.0.1:{port}/ws").into_client_request().expect("ws request");
            request.headers_mut().insert("host", "app.corp.example".parse().expect("header"));
            request
                .headers_mut()
                .insert("cookie", format!("__Host-portcullis_session.app={token}").parse().expect("header"));
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
            socket.send(Message::text(format!("hello {i}"))).await.expect("send");
            match socket.next().await {
                Some(Ok(Message::Text(text))) => text.as_str() == format!("hello {i}"),
                _ => false,
            }
        }
    }))
    .await;
    let echoed = opened.iter().filter(|ok| **ok).count();
    assert_eq!(echoed, 100, "every websocket echoes; edge log:\n{}", edge.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closing_a_download_is_not_logged_as_an_error() {
    let dir = TempDir::new("edge-client-gone");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (_, token) = login(&plane, "ada@corp.example").await;
    let request = reqwest::Client::new()
        .get(edge.url("/stream"))
        .header("host", "app.corp.example")
        .header("cookie", format!("__Host-portcullis_session.app={token}"));
    let mut body = request.send().await.expect("start download").bytes_stream();
    assert!(body.next().await.is_some_and(|c| c.is_ok()), "the download starts");
    drop(body);
    let deadline = Instant::now() + CLOSE_WITHIN;
    while !edge.log_text().contains("the client closed the connection mid-response") {
        assert!(Instant::now() < deadline, "the edge did not notice the client leave:\n{}", edge.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = edge.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "a client that went away is INFO, not ERROR: {errors:#?}");
}
