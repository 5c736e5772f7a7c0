//! Per-edge credentials: one-time join tokens (reuse, expiry, another edge
//! id, unknown), the bootstrap secret and what it may not do, the fleet
//! key, and revocation — the revoked edge's calls are refused, its open
//! stream is aborted within a second, and its id never enrolls again.

use std::time::{Duration, Instant};

use axum::http::Method;
use portcullis_control_plane::model::Actor;
use portcullis_control_plane::secrets::token_hash;
use portcullis_control_plane::store::JoinTokenRecord;
use serde_json::{json, Value};

use crate::client::CLIENT_IP;
use crate::edge_auth::{claims, new_key, sign};
use crate::fixtures::{apply_policy, Login};
use crate::harness::{TestApp, EDGE_SECRET};

api_tests!(
    join_tokens_enroll_once,
    the_bootstrap_secret_enrolls_but_never_takes_over,
    revocation_refuses_calls_and_cuts_the_stream
);

/// Creates a join token; (id, token).
async fn join_token(t: &TestApp, body: Value) -> (String, String) {
    let created = t.post("/api/v1/edges/join-tokens").json(body).send().await.expect(201);
    (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned())
}

async fn join_tokens_enroll_once(t: TestApp) {
    let (id, token) = join_token(&t, json!({ "name": "Frankfurt 1" })).await;
    assert!(token.starts_with("pcjt_") && token.len() >= 5 + 43, "≥ 256 random bits: {token}");
    let (private, public) = new_key();
    let enrolled = t.edges.enroll("fra-1", &token, &public).await.ok();
    assert_eq!((enrolled["edge_id"].as_str(), enrolled["name"].as_str()), (Some("fra-1"), Some("Frankfurt 1")));
    let fleet_key = enrolled["fleet_key"].as_str().unwrap().to_owned();
    assert_eq!(fleet_key.len(), 43, "32 bytes, base64url");
    // The enrolled key works; the fleet key is the same on every ask.
    let asked = t.edge(Method::GET, "/edge/v1/fleet-key").bearer(&sign(&private, &claims("fra-1"))).send().await;
    assert_eq!(asked.ok()["fleet_key"], fleet_key.as_str());

    // Used once: refused again, for this edge or another.
    let (_, other) = new_key();
    for edge in ["fra-1", "fra-2"] {
        let again = t.edges.enroll(edge, &token, &other).await.error(401, "unauthorized");
        assert!(again.contains("already used"), "{again}");
    }
    // Unknown, expired, for another edge id.
    let unknown = t.edges.enroll("fra-2", "pcjt_not-a-token-0000000000000000000000000000", &other).await;
    assert!(unknown.error(401, "unauthorized").contains("unknown join token"));
    let expired = "pcjt_expired-token-for-the-suite-000000000000000";
    let record = JoinTokenRecord {
        id: "expired1".into(),
        token_hash: token_hash(expired),
        edge_id: None,
        name: None,
        created_ms: 1_000,
        expires_ms: 2_000,
        created_by: "token:suite".into(),
    };
    t.app.store().insert_join_token(&record, &Actor::system(), 1_000).await.unwrap();
    assert!(t.edges.enroll("fra-2", expired, &other).await.error(401, "unauthorized").contains("expired"));
    let (_, bound) = join_token(&t, json!({ "edge_id": "fra-3", "ttl": 120 })).await;
    let wrong = t.edges.enroll("fra-2", &bound, &other).await.error(401, "unauthorized");
    assert!(wrong.contains("for edge `fra-3`"), "{wrong}");
    // Not consumed by the refusal: the right edge still enrolls with it.
    t.edges.enroll("fra-3", &bound, &other).await.ok();
    // A token without an edge id does not take over an enrolled edge.
    let (_, loose) = join_token(&t, json!({})).await;
    let taken = t.edges.enroll("fra-1", &loose, &other).await.error(401, "unauthorized");
    assert!(taken.contains("already enrolled"), "{taken}");
    // Bounds.
    for bad in [json!({ "ttl": 86_401 }), json!({ "ttl": 10 }), json!({ "edge_id": "has space" })] {
        t.post("/api/v1/edges/join-tokens").json(bad).send().await.error(422, "invalid_body");
    }
    // Shown once: the store keeps a hash; audited with actor and address.
    let audit = t.get("/api/v1/audit?action=edge_join_token.create").send().await.ok();
    let entry = &audit["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((entry["actor"].as_str(), entry["source_address"].as_str()), (Some("token:bootstrap"), Some(CLIENT_IP)));
    assert_eq!(entry["target"], format!("join_token:{id}"));
    assert!(!audit.to_string().contains(&token), "the token is never shown again");
    let enrolls = t.get("/api/v1/audit?action=edge.enroll&target=edge:fra-1").send().await.ok();
    assert_eq!(enrolls["entries"][0]["actor"], "edge:fra-1");
    let edges = t.get("/api/v1/edges").send().await.ok();
    let fra = edges.as_array().unwrap().iter().find(|e| e["id"] == "fra-1").unwrap().clone();
    assert_eq!((fra["state"].as_str(), fra["enrolled_via"].as_str()), (Some("enrolled"), Some("join_token")));
    assert!(fra["enrolled_by"].as_str().unwrap().contains(&format!("join token {id} (made by token:bootstrap)")));
}

async fn the_bootstrap_secret_enrolls_but_never_takes_over(t: TestApp) {
    let (first, public) = new_key();
    t.edges.enroll("boot-1", EDGE_SECRET, &public).await.ok();
    // Again (an edge restarting with a key kept in memory): the new key replaces the old.
    let (second, public) = new_key();
    t.edges.enroll("boot-1", EDGE_SECRET, &public).await.ok();
    let fleet = |key: &str| t.edge(Method::GET, "/edge/v1/fleet-key").bearer(&sign(key, &claims("boot-1")));
    fleet(&first).send().await.error(401, "unauthorized");
    fleet(&second).send().await.ok();
    // A key registered with a join token is not the secret's to replace.
    let (_, token) = join_token(&t, json!({ "edge_id": "real-1" })).await;
    let (_, public) = new_key();
    t.edges.enroll("real-1", &token, &public).await.ok();
    let (_, public) = new_key();
    let refused = t.edges.enroll("real-1", EDGE_SECRET, &public).await.error(401, "unauthorized");
    assert!(refused.contains("enrolled with a join token"), "{refused}");
    // Wrong secret, or its prefix.
    let prefix = &EDGE_SECRET[..EDGE_SECRET.len() - 1];
    for wrong in [prefix, "not-the-bootstrap-secret-at-all-000000000"] {
        t.edges.enroll("boot-2", wrong, &public).await.error(401, "unauthorized");
    }
    // Malformed keys and ids.
    for (id, key) in [("boot-3", "not a key"), ("has space", public.as_str())] {
        t.edges.enroll(id, EDGE_SECRET, key).await.error(422, "invalid_body");
    }
}

async fn revocation_refuses_calls_and_cuts_the_stream(t: TestApp) {
    apply_policy(&t).await;
    let as_edge = |c: crate::client::Call| c.header("x-portcullis-edge-id", "doomed");
    let mut stream = as_edge(t.edge(Method::GET, "/edge/v1/stream")).open().await;
    as_edge(t.edge(Method::POST, "/edge/v1/report")).json(json!({ "applied_seq": 1 })).send().await.expect(204);
    let revoked_at = Instant::now();
    let answer = t.post("/api/v1/edges/doomed/revoke").json(json!({ "reason": "host compromised" })).send().await.ok();
    assert_eq!((answer["state"].as_str(), answer["revoked_by"].as_str()), (Some("revoked"), Some("token:bootstrap")));
    assert!(stream.aborted_within(Duration::from_secs(1)).await, "the stream is cut within 1 s");
    eprintln!("revoked edge's stream cut {:?} after the revoke was sent", revoked_at.elapsed());
    for (method, path) in [(Method::GET, "/edge/v1/stream"), (Method::GET, "/edge/v1/fleet-key")] {
        let refused = as_edge(t.edge(method, path)).send().await.error(401, "unauthorized");
        assert!(refused.contains("revoked"), "{path}: {refused}");
    }
    let login = as_edge(t.edge(Method::POST, "/edge/v1/sessions")).json(Login::new("ada@test.example").body());
    login.send().await.error(401, "unauthorized");
    // Never again, with the secret or a join token naming it; a token for it cannot even be made.
    let (_, public) = new_key();
    assert!(t.edges.enroll("doomed", EDGE_SECRET, &public).await.error(401, "unauthorized").contains("revoked"));
    let made = t.post("/api/v1/edges/join-tokens").json(json!({ "edge_id": "doomed" })).send().await;
    assert!(made.error(422, "invalid_body").contains("revoked"));
    // Revoking again changes nothing; an unknown edge is 404; a reason is required.
    t.post("/api/v1/edges/doomed/revoke").json(json!({ "reason": "again" })).send().await.ok();
    t.post("/api/v1/edges/nobody/revoke").json(json!({ "reason": "r" })).send().await.error(404, "not_found");
    t.post("/api/v1/edges/doomed/revoke").json(json!({ "reason": " " })).send().await.error(422, "invalid_body");
    let audit = t.get("/api/v1/audit?action=edge.revoke").send().await.ok();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(
        (entries[0]["reason"].as_str(), entries[0]["source_address"].as_str()),
        (Some("host compromised"), Some(CLIENT_IP))
    );
    let metrics = t.get("/metrics").no_auth().send().await.text();
    assert!(metrics.contains("portcullis_control_plane_edge_streams_cut_total{reason=\"revoked\"} 1"), "{metrics}");
    // The listing says who, when and why.
    let edges = t.get("/api/v1/edges").send().await.ok();
    let doomed = edges.as_array().unwrap().iter().find(|e| e["id"] == "doomed").unwrap().clone();
    assert_eq!(
        (doomed["state"].as_str(), doomed["revoke_reason"].as_str()),
        (Some("revoked"), Some("host compromised"))
    );
    // A revoked edge is not waited for by receipts.
    let session = Login::new("bob@test.example").ok(&t).await["session_id"].as_str().unwrap().to_owned();
    let done = t.post(&format!("/api/v1/sessions/{session}/terminate?wait=true")).json(json!({ "reason": "r" }));
    let done = done.send().await.ok();
    assert_eq!(done["receipt"]["edges_total"], 0, "{done}");
}
