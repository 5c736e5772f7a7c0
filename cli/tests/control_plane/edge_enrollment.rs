//! Per-edge credentials with real processes: an edge enrolls with a
//! one-time join token from the CLI, keeps its key in a 0600 file and
//! serves; join tokens are refused when reused, expired or for another edge
//! id; a revoked edge is refused within a second and its live stream is
//! dropped (seen from the edge: disconnected, then not ready; and from the
//! control plane: its own key gets 401), also when the edge streams from
//! another PostgreSQL replica than the one that revoked it; forged
//! assertions and the shared secret are refused on the edge channel.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_edge::identity::{EdgeKey, EDGE_CHANNEL_AUDIENCE};
use serde_json::{json, Value};

use crate::edge_identity::TestEdge;
use crate::edge_node::{login, policy, EdgeNode};
use crate::harness::{ControlPlane, TempDir, EDGE_SECRET};
use crate::postgres;
use crate::upstream::Upstream;

/// A revoked edge must be cut off within this (the issue's promise).
const CUT_OFF_WITHIN: Duration = Duration::from_secs(1);

async fn sqlite_plane(dir: &TempDir) -> ControlPlane {
    ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await
}

/// `portcullis edges join-token` with `args`; the token it printed.
async fn join_token(plane: &ControlPlane, args: &[&str]) -> String {
    let out = plane.cli(&[&["edges", "join-token"], args].concat()).await;
    let token = out.ok().trim().to_owned();
    assert!(token.starts_with("pcjt_") && out.stderr.contains("works once"), "{out:?}");
    token
}

/// `portcullis_edge_control_plane_connected` of `edge` (one client for
/// every poll: a new one per request costs more than the cut-off itself).
async fn connected(edge: &EdgeNode) -> Option<u8> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(reqwest::Client::new);
    let url = format!("http://127.0.0.1:{}/metrics", edge.metrics);
    let metrics = client.get(url).send().await.ok()?.text().await.ok()?;
    metrics.lines().find_map(|l| l.strip_prefix("portcullis_edge_control_plane_connected ")?.trim().parse().ok())
}

/// Waits until `edge` says it is connected to the control plane.
async fn wait_connected(edge: &EdgeNode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while connected(edge).await != Some(1) {
        assert!(Instant::now() < deadline, "the edge never reported connected:\n{}", edge.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long after `since` `edge` reported disconnected (polling every 5 ms, up to 5 s).
async fn disconnected_after(edge: &EdgeNode, since: Instant) -> Duration {
    while connected(edge).await != Some(0) {
        assert!(since.elapsed() < Duration::from_secs(5), "the edge stayed connected:\n{}", edge.log_text());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_enrolls_an_edge_that_then_serves_and_is_refused_again() {
    let dir = TempDir::new("enroll-join");
    let plane = sqlite_plane(&dir).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let token = join_token(&plane, &["--name", "Joined edge", "--edge-id", "edge-j", "--ttl", "10m"]).await;
    let key_file = dir.path().join("keys").join("edge-j.key");
    let settings = [
        ("edge_secret", String::new()),
        ("join_token", token.clone()),
        ("credential_file", key_file.display().to_string()),
    ];
    let edge = EdgeNode::start_with(&plane, "edge-j", dir.path(), &settings).await;
    let (_, session) = login(&plane, "ada@corp.example").await;
    assert_eq!(edge.get("/hello", Some(&session), &[]).await.0, 200, "the enrolled edge serves");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!((mode(&key_file), mode(key_file.parent().unwrap())), (0o600, 0o700));
    }
    let listed = plane.cli(&["edges", "--json"]).await.json();
    let joined = listed.as_array().unwrap().iter().find(|e| e["id"] == "edge-j").expect("listed").clone();
    assert_eq!((joined["name"].as_str(), joined["enrolled_via"].as_str()), (Some("Joined edge"), Some("join_token")));
    assert!(joined["enrolled_by"].as_str().unwrap().contains("made by token:bootstrap"), "{joined}");

    // Restarted from its key file alone (no token, no secret), it serves again.
    drop(edge);
    let from_file = [("edge_secret", String::new()), ("credential_file", key_file.display().to_string())];
    let edge = EdgeNode::start_with(&plane, "edge-j", dir.path(), &from_file).await;
    assert_eq!(edge.get("/hello", Some(&session), &[]).await.0, 200);

    // The token worked once: not for this edge again, nor for another.
    for id in ["edge-j", "edge-k"] {
        let (status, body) = TestEdge::enroll_with(&plane.edge_url, id, &token).await.err().expect("refused");
        assert_eq!(status, 401, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("already used"), "{body}");
    }
    // A token for another edge id.
    let bound = join_token(&plane, &["--edge-id", "edge-x"]).await;
    let (status, body) = TestEdge::enroll_with(&plane.edge_url, "edge-y", &bound).await.err().expect("refused");
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("for edge `edge-x`"), "{body}");
    // An expired token (written into the database as the API would have, an hour ago).
    let expired = "pcjt_expired-token-for-the-process-suite-00000000";
    insert_expired_join_token(&dir.path().join("cp.db"), expired).await;
    let (status, body) = TestEdge::enroll_with(&plane.edge_url, "edge-z", expired).await.err().expect("refused");
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    // An unknown one.
    let (status, _) = TestEdge::enroll_with(&plane.edge_url, "edge-z", "pcjt_nope").await.err().expect("refused");
    assert_eq!(status, 401);
    // Refused on the command line too: a TTL over 24 h.
    let out = plane.cli(&["edges", "join-token", "--ttl", "25h"]).await;
    assert_ne!(out.code, Some(0), "{out:?}");
}

async fn insert_expired_join_token(database: &std::path::Path, token: &str) {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let now = chrono::Utc::now().timestamp_millis();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display())).await.expect("open the database");
    sqlx::query(
        "INSERT INTO edge_join_tokens (id, token_hash, created_ms, expires_ms, created_by) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind("expired-1")
    .bind(hash)
    .bind(now - 3_600_000)
    .bind(now - 1_000)
    .bind("token:bootstrap")
    .execute(&pool)
    .await
    .expect("insert a join token");
    pool.close().await;
}

/// When a revocation was asked for and when it was answered (committed).
struct Revoked {
    asked: Instant,
    answered: Instant,
}

/// Revokes `id` through `plane`'s admin API.
async fn revoke(plane: &ControlPlane, id: &str) -> Revoked {
    let asked = Instant::now();
    let answer = plane.api_post(&format!("/edges/{id}/revoke"), &json!({ "reason": "host compromised" })).await;
    let answered = Instant::now();
    let (status, body) = answer.expect("POST /api/v1/edges/{id}/revoke");
    assert_eq!((status, body["state"].as_str()), (200, Some("revoked")), "{body}");
    Revoked { asked, answered }
}

/// Waits until `edge` reports disconnected; fails unless that happens
/// within [`CUT_OFF_WITHIN`] of the revocation's answer. Returns the time
/// from the request and from the answer (zero when the stream was cut first).
async fn cut_off(edge: &EdgeNode, revoked: &Revoked) -> (Duration, Duration) {
    let from_request = disconnected_after(edge, revoked.asked).await;
    let disconnected = revoked.asked + from_request;
    let from_answer = disconnected.saturating_duration_since(revoked.answered);
    assert!(from_answer < CUT_OFF_WITHIN, "the stream was dropped {from_answer:?} after the revocation was answered");
    (from_request, from_answer)
}

/// Calls `POST /edge/v1/sessions` as edge `id` with `key`: the status.
async fn create_session_as(plane: &ControlPlane, id: &str, key: &EdgeKey) -> (u16, Value) {
    let now = chrono::Utc::now().timestamp();
    let assertion = key.assertion(id, EDGE_CHANNEL_AUDIENCE, now, 60);
    bearer_session(plane, &assertion).await
}

async fn bearer_session(plane: &ControlPlane, bearer: &str) -> (u16, Value) {
    let body = json!({
        "subject": "sub-mallory", "email": "mallory@corp.example", "groups": ["admins"],
        "idp_issuer": "https://idp.corp.example", "auth_time": chrono::Utc::now().timestamp(),
        "route": "app", "source_address": "127.0.0.1", "user_agent": "enrollment-test",
    });
    // A login the test IdP vouched for: only the edge credential is on trial.
    let body = portcullis_dev_idp::test_issuer::TestIssuer::shared().login_body(&body);
    let response = plane
        .http()
        .post(format!("{}/edge/v1/sessions", plane.edge_url))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .expect("POST /edge/v1/sessions");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_edge_is_refused_and_its_stream_dropped_within_a_second() {
    let dir = TempDir::new("enroll-revoke");
    let plane = sqlite_plane(&dir).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    // Bootstrap secret and a key file: the test reads the edge's own key.
    let key_file = dir.path().join("edge-r.key");
    let settings = [("credential_file", key_file.display().to_string()), ("max_staleness_s", "2".to_owned())];
    let edge = EdgeNode::start_with(&plane, "edge-r", dir.path(), &settings).await;
    wait_connected(&edge).await;
    let key = EdgeKey::read(&key_file).expect("the edge's key");
    assert_eq!(create_session_as(&plane, "edge-r", &key).await.0, 200, "its own key works before");

    let revoked = revoke(&plane, "edge-r").await;
    let (from_request, from_answer) = cut_off(&edge, &revoked).await;
    let (status, body) = create_session_as(&plane, "edge-r", &key).await;
    let refused = revoked.answered.elapsed();
    eprintln!(
        "enrollment figures: revoked edge disconnected {} ms after the revoke request ({} ms after its answer); \
         its next call refused {} ms after the answer",
        from_request.as_millis(),
        from_answer.as_millis(),
        refused.as_millis()
    );
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
    assert!(refused < CUT_OFF_WITHIN, "its next call was refused only {refused:?} after the revocation");
    assert!(plane.log_text().contains("edge stream cut: the edge was revoked"), "{}", plane.log_text());
    // It cannot come back: its reconnections are refused, it goes stale.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", edge.metrics)).await.expect("readyz");
        if ready.status().as_u16() == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz stayed ready after the revocation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(edge.log_text().contains("revoked"), "the edge says why:\n{}", edge.log_text());
    let (status, _) = TestEdge::enroll_key(&plane.edge_url, "edge-r", EDGE_SECRET, key).await.err().expect("refused");
    assert_eq!(status, 401, "never enrolls again");
    let listed = plane.cli(&["edges"]).await;
    assert!(listed.ok().contains("edge-r revoked") && listed.stdout.contains("host compromised"), "{listed:?}");
    // The command line revokes too; revoking again changes nothing.
    let out = plane.cli(&["edges", "revoke", "edge-r", "--reason", "again"]).await;
    assert!(out.ok().contains("edge edge-r revoked"), "{out:?}");
    let out = plane.cli(&["edges", "revoke", "nobody", "--reason", "r"]).await;
    assert_ne!(out.code, Some(0), "an unknown edge: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_cuts_an_edge_streaming_from_another() {
    let Some(database) = postgres::fresh("a_revocation_on_one_replica_cuts_an_edge_streaming_from_another").await
    else {
        return;
    };
    let dir = TempDir::new("enroll-replicas");
    let a = ControlPlane::start(&database.url, dir.path()).await;
    let b = ControlPlane::start(&database.url, dir.path()).await;
    let upstream = Upstream::start().await;
    a.apply_policy(&policy(upstream.port)).await;
    let key_file = dir.path().join("edge-on-b.key");
    let edge =
        EdgeNode::start_with(&b, "edge-on-b", dir.path(), &[("credential_file", key_file.display().to_string())]).await;
    wait_connected(&edge).await;
    let key = EdgeKey::read(&key_file).expect("the edge's key");
    let revoked = revoke(&a, "edge-on-b").await;
    let (from_request, from_answer) = cut_off(&edge, &revoked).await;
    eprintln!(
        "enrollment figures: edge on replica B disconnected {} ms after a revoke request to A ({} ms after its answer)",
        from_request.as_millis(),
        from_answer.as_millis()
    );
    for replica in [&a, &b] {
        assert_eq!(create_session_as(replica, "edge-on-b", &key).await.0, 401, "refused by every replica");
    }
    assert!(b.log_text().contains("edge stream cut: the edge was revoked"), "{}", b.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_assertions_and_the_shared_secret_are_refused() {
    let dir = TempDir::new("enroll-forged");
    let plane = sqlite_plane(&dir).await;
    plane.apply_policy(&policy(1)).await;
    let (pem, other_pem) = (new_pem(), new_pem());
    let key = EdgeKey::from_pkcs8_pem(&pem).expect("a key");
    let real = TestEdge::enroll_key(&plane.edge_url, "edge-f", EDGE_SECRET, key).await.expect("enrolled");
    let now = chrono::Utc::now().timestamp();
    let claims = |f: &dyn Fn(&mut Value)| {
        let mut c = json!({ "iss": "edge-f", "sub": "edge-f", "aud": EDGE_CHANNEL_AUDIENCE, "iat": now, "exp": now + 60, "jti": "j-1" });
        f(&mut c);
        c
    };
    let es256 = |pem: &str, claims: &Value| {
        let encoding = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key");
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256), claims, &encoding).unwrap()
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(&|_| {}),
        &jsonwebtoken::EncodingKey::from_secret(real.key.public_pem().as_bytes()),
    )
    .unwrap();
    let forged = [
        ("the shared secret", EDGE_SECRET.to_owned()),
        ("another key", es256(&other_pem, &claims(&|_| {}))),
        ("alg none", format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(&claims(&|_| {})))),
        ("HS256 keyed with the public key", hs256),
        (
            "expired",
            es256(
                &pem,
                &claims(&|c| {
                    c["iat"] = json!(now - 300);
                    c["exp"] = json!(now - 240)
                }),
            ),
        ),
        ("wrong audience", es256(&pem, &claims(&|c| c["aud"] = json!("portcullis")))),
    ];
    for (name, bearer) in &forged {
        let (status, body) = bearer_session(&plane, bearer).await;
        assert_eq!(status, 401, "{name}: {body}");
    }
    assert_eq!(plane.api_get("/sessions").await["sessions"], json!([]), "no session was created");
    assert_eq!(bearer_session(&plane, &es256(&pem, &claims(&|_| {}))).await.0, 200, "the real key works");
}

/// A new P-256 key, PKCS#8 PEM.
fn new_pem() -> String {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    p256::SecretKey::random(&mut rand::rngs::OsRng).to_pkcs8_pem(LineEnding::LF).expect("PKCS#8").to_string()
}
