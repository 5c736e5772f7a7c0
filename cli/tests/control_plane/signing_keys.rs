//! The session-signing keys end to end, as an admin facing a leaked key
//! would use them: `portcullis keys revoke` ends every session the key
//! signed on every edge within a second — tokens the edges had already
//! verified and cached, and their open websockets, included — while new
//! logins work at once with the replacement key. And the keys at rest: the
//! database holds them sealed with the key-encryption key, the files are
//! private, and a control plane given the wrong KEK refuses to start.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::edge_node::{login, policy, EdgeNode};
use crate::harness::{command, free_port, ControlPlane, TempDir, EDGE_SECRET};
use crate::upstream::Upstream;

/// What "at once" means for a revoked key (the figure printed is the real one).
const DEAD_WITHIN: Duration = Duration::from_secs(1);

async fn websocket(
    edge: &EdgeNode,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://127.0.0.1:{}/ws", edge.port).into_client_request().expect("ws request");
    request.headers_mut().insert("host", "app.corp.example".parse().expect("header"));
    request.headers_mut().insert("cookie", format!("__Host-portcullis_session.app={token}").parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket through the edge");
    socket.send(Message::text("ping")).await.expect("ws send");
    assert!(matches!(socket.next().await, Some(Ok(Message::Text(_)))), "echo");
    socket
}

fn current_kid(keys: &Value) -> String {
    let keys = keys.as_array().expect("a list of keys");
    let current: Vec<&Value> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1, "one current key: {keys:?}");
    current[0]["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_signing_key_ends_its_sessions_on_every_edge_cached_tokens_and_websockets_included() {
    let dir = TempDir::new("key-revoke");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edges =
        [EdgeNode::start(&plane, "edge-a", dir.path()).await, EdgeNode::start(&plane, "edge-b", dir.path()).await];
    let (_, token) = login(&plane, "ada@corp.example").await;
    for edge in &edges {
        for _ in 0..2 {
            let (status, seen) = edge.get("/hello", Some(&token), &[]).await;
            assert_eq!(status, 200, "served (and cached) before the revocation: {seen}");
        }
    }
    let mut live = websocket(&edges[1], &token).await;

    let leaked = current_kid(&plane.api_get("/signing-keys").await);
    let started = Instant::now();
    let out = plane.cli(&["keys", "revoke", &leaked, "--reason", "key leaked in a backup", "--wait", "--json"]).await;
    let answer = out.json();
    let receipt = &answer["receipt"];
    assert_eq!(receipt["edges_applied"], 2, "both edges applied it: {answer}");
    assert!(receipt["connections_closed"].as_i64().unwrap_or(0) >= 1, "the websocket was closed: {answer}");
    let closed = tokio::time::timeout(DEAD_WITHIN, live.next()).await.expect("the websocket is closed within 1 s");
    assert!(!matches!(closed, Some(Ok(Message::Text(_)))), "closed, not echoing: {closed:?}");
    let mut refused_after = Duration::ZERO;
    for edge in &edges {
        let (status, body) = edge.get("/hello", Some(&token), &[]).await;
        refused_after = refused_after.max(started.elapsed());
        assert_eq!(status, 401, "the cached token is refused on {}: {body}", edge.url("/"));
        assert!(body.get("x-portcullis-user").is_none(), "the upstream never saw it: {body}");
    }
    assert!(refused_after < DEAD_WITHIN, "refused on both edges {refused_after:?} after the command started");
    println!(
        "key revocation figures: both edges refused the cached token {refused_after:?} after `keys revoke` started"
    );

    let replacement = answer["current_kid"].as_str().expect("current_kid").to_owned();
    assert_ne!(replacement, leaked);
    let (_, fresh) = login(&plane, "ada@corp.example").await;
    for edge in &edges {
        assert_eq!(edge.get("/hello", Some(&fresh), &[]).await.0, 200, "a new login works at once");
    }
    let keys = plane.api_get("/signing-keys").await;
    assert_eq!(current_kid(&keys), replacement);
    let revoked = keys.as_array().unwrap().iter().find(|k| k["kid"] == leaked.as_str()).expect("still listed");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let listed = plane.cli(&["keys", "list"]).await;
    assert!(listed.ok().lines().any(|l| l.starts_with(&leaked) && l.contains("revoked")), "{}", listed.ok());
    let audit = plane.api_get("/audit?action=signing_key.revoke").await;
    assert!(audit.to_string().contains("key leaked in a backup"), "audited with its reason: {audit}");

    let again = plane.cli(&["keys", "revoke", &leaked, "--reason", "twice"]).await;
    assert_ne!(again.code, Some(0), "revoking twice is an error");
    assert!(again.stderr.contains("already revoked"), "{}", again.stderr);
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_sealed_at_rest_files_are_private_and_a_wrong_kek_refuses_to_start() {
    let dir = TempDir::new("keys-at-rest");
    let data = dir.path().join("data");
    let database = format!("sqlite://{}", data.join("cp.db").display());
    let plane = ControlPlane::start(&database, dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let (_, token) = login(&plane, "ada@corp.example").await;
    let kid = current_kid(&plane.api_get("/signing-keys").await);
    assert_eq!(jsonwebtoken::decode_header(&token).expect("a JWT").kid.as_deref(), Some(kid.as_str()));
    drop(plane);

    assert_eq!(mode(&data), 0o700, "the data directory it made");
    assert_eq!(mode(&data.join("cp.db")), 0o600, "the database");
    assert_eq!(mode(&data.join("key-encryption.key")), 0o600, "the key-encryption key");
    for entry in std::fs::read_dir(&data).expect("data dir") {
        let path = entry.expect("entry").path();
        assert_eq!(mode(&path) & 0o077, 0, "{} is private", path.display());
        let bytes = std::fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "no private key in the clear in {}", path.display());
    }

    // Another KEK does not open the stored key: refuse to start, say why.
    let (listen, edge_listen) = (free_port(), free_port());
    let run = command()
        .arg("control-plane")
        .env("PORTCULLIS_DATABASE_URL", &database)
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{listen}"))
        .env("PORTCULLIS_EDGE_LISTEN", format!("127.0.0.1:{edge_listen}"))
        .env("PORTCULLIS_EDGE_SECRET", EDGE_SECRET)
        .env("PORTCULLIS_KEY_ENCRYPTION_KEY", "a-different-key-encryption-key-0123456789")
        .output()
        .expect("run the control plane");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_ne!(run.status.code(), Some(0), "it must not start: {stderr}");
    assert!(stderr.contains("does not open with this key-encryption key"), "{stderr}");

    // The same directory with its own KEK starts again and signs with the same key.
    let plane = ControlPlane::start(&database, dir.path()).await;
    assert_eq!(current_kid(&plane.api_get("/signing-keys").await), kid, "the sealed key opened after the restart");
    let (_, again) = login(&plane, "ada@corp.example").await;
    assert_eq!(jsonwebtoken::decode_header(&again).expect("a JWT").kid.as_deref(), Some(kid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_token_goes_to_a_private_file_not_to_the_log() {
    let dir = TempDir::new("admin-token-file");
    let data = dir.path().join("state");
    let (listen, edge_listen) = (free_port(), free_port());
    let log = dir.path().join("cp.log");
    let mut child = command()
        .arg("control-plane")
        .env("PORTCULLIS_DATABASE_URL", format!("sqlite://{}", data.join("cp.db").display()))
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{listen}"))
        .env("PORTCULLIS_EDGE_LISTEN", format!("127.0.0.1:{edge_listen}"))
        .env("PORTCULLIS_EDGE_SECRET", EDGE_SECRET)
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(dir.path().join("cp.err")).expect("log"))
        .spawn()
        .expect("spawn");
    let file = data.join("admin-token");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = std::fs::read_to_string(&file).expect("the admin token file").trim().to_owned();
    assert!(token.starts_with("pcat_"), "{token}");
    assert_eq!(mode(&file), 0o600);
    let output = std::fs::read_to_string(&log).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("cp.err")).unwrap_or_default();
    assert!(!output.contains(&token), "the token is not in the output:\n{output}");
    assert!(output.contains(&file.display().to_string()), "the output says where it is:\n{output}");
    let answer = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{listen}/api/v1/signing-keys"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status(), 200, "the token in the file works");
    child.kill().expect("kill");
    let _ = child.wait();
}
