//! The one way the test suites act as an edge on the edge channel: a test
//! edge identity enrolled with the bootstrap secret (`POST /edge/v1/enroll`,
//! a P-256 key made here), whose ES256 assertions authenticate every other
//! call (`Authorization: Bearer <assertion>`), exactly as a real edge does.
//!
//! Identities are cached per control plane (edge-channel URL) and id, so a
//! test that mints many sessions enrolls once. Shared by the process suites
//! (`control_plane`, `attacks`, `faults`) and the load harnesses.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use portcullis_edge::identity::{EdgeKey, ASSERTION_LIFETIME_S, EDGE_CHANNEL_AUDIENCE};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// An enrolled test edge.
pub struct TestEdge {
    /// Edge id.
    pub id: String,
    /// Its key (the private half stays in the test).
    pub key: EdgeKey,
    /// What enrollment answered (`fleet_key`, `key_fingerprint`, …).
    pub enrolled: Value,
}

impl TestEdge {
    /// Enrolls edge `id` at the edge channel `edge_url`, presenting
    /// `credential` (the bootstrap secret or a join token) as its bearer;
    /// on refusal, the status and the body.
    pub async fn enroll_with(edge_url: &str, id: &str, credential: &str) -> Result<Self, (u16, Value)> {
        Self::enroll_key(edge_url, id, credential, EdgeKey::generate()).await
    }

    /// Same, with a given key.
    pub async fn enroll_key(edge_url: &str, id: &str, credential: &str, key: EdgeKey) -> Result<Self, (u16, Value)> {
        Self::enroll_through(&reqwest::Client::new(), edge_url, id, credential, key).await
    }

    /// Same, through `http` (a client that trusts the control plane's CA
    /// when it serves HTTPS).
    pub async fn enroll_through(
        http: &reqwest::Client,
        edge_url: &str,
        id: &str,
        credential: &str,
        key: EdgeKey,
    ) -> Result<Self, (u16, Value)> {
        let response = http
            .post(format!("{}/edge/v1/enroll", edge_url.trim_end_matches('/')))
            .bearer_auth(credential)
            .json(&json!({ "edge_id": id, "name": id, "public_key": key.public_pem() }))
            .send()
            .await
            .expect("POST /edge/v1/enroll");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err((status, body));
        }
        Ok(Self { id: id.to_owned(), key, enrolled: body })
    }

    /// A fresh assertion (ES256, 60 s) for the edge channel.
    pub fn assertion(&self) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        self.key.assertion(&self.id, EDGE_CHANNEL_AUDIENCE, now, ASSERTION_LIFETIME_S)
    }

    /// `builder` with this edge's assertion.
    pub fn authorize(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        builder.bearer_auth(self.assertion())
    }
}

type Cache = Mutex<HashMap<(String, String), Arc<OnceCell<Arc<TestEdge>>>>>;

static CACHE: OnceLock<Cache> = OnceLock::new();

/// Forgets test edge `id` of `edge_url`, so the next use enrolls it again.
fn forget_test_edge(edge_url: &str, id: &str) {
    let mut cache = CACHE.get_or_init(Cache::default).lock().unwrap_or_else(|e| e.into_inner());
    cache.remove(&(edge_url.to_owned(), id.to_owned()));
}

/// Test edge `id` of the control plane at `edge_url`, enrolled with the
/// bootstrap `secret` on first use.
pub async fn test_edge(edge_url: &str, id: &str, secret: &str) -> Arc<TestEdge> {
    test_edge_through(&reqwest::Client::new(), edge_url, id, secret).await
}

/// [`test_edge`], enrolling through `http`.
pub async fn test_edge_through(http: &reqwest::Client, edge_url: &str, id: &str, secret: &str) -> Arc<TestEdge> {
    let cell = {
        let mut cache = CACHE.get_or_init(Cache::default).lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(cache.entry((edge_url.to_owned(), id.to_owned())).or_default())
    };
    let edge = cell
        .get_or_init(|| async {
            let enrolled = TestEdge::enroll_through(http, edge_url, id, secret, EdgeKey::generate()).await;
            Arc::new(enrolled.unwrap_or_else(|(status, body)| panic!("enrolling test edge {id}: {status} {body}")))
        })
        .await;
    Arc::clone(edge)
}

/// The test edge sessions are minted with at `edge_url` (one per replica:
/// replicas sharing a database must not replace each other's key).
pub async fn minting_edge(edge_url: &str, secret: &str) -> Arc<TestEdge> {
    minting_edge_through(&reqwest::Client::new(), edge_url, secret).await
}

/// [`minting_edge`], enrolling through `http`.
pub async fn minting_edge_through(http: &reqwest::Client, edge_url: &str, secret: &str) -> Arc<TestEdge> {
    test_edge_through(http, edge_url, &minting_edge_id(edge_url), secret).await
}

/// The id of the edge sessions are minted with at `edge_url`.
fn minting_edge_id(edge_url: &str) -> String {
    let port = edge_url.rsplit(':').next().unwrap_or("0").trim_end_matches('/');
    format!("login-{port}")
}

/// `POST /edge/v1/sessions` as the minting edge: the control plane's answer
/// (`session_id`, `token`) and status.
pub async fn post_session(http: &reqwest::Client, edge_url: &str, secret: &str, body: &Value) -> (u16, Value) {
    let (status, answer) = post_session_once(http, edge_url, secret, body).await;
    let not_enrolled = answer["error"]["message"].as_str().is_some_and(|m| m.contains("is not enrolled"));
    if status == 401 && not_enrolled {
        // The cache is keyed by URL: a control plane that an earlier test ran
        // on the same port (with another database) enrolled the cached edge,
        // this one never did. Enroll it here.
        forget_test_edge(edge_url, &minting_edge_id(edge_url));
        return post_session_once(http, edge_url, secret, body).await;
    }
    (status, answer)
}

async fn post_session_once(http: &reqwest::Client, edge_url: &str, secret: &str, body: &Value) -> (u16, Value) {
    let edge = minting_edge_through(http, edge_url, secret).await;
    let response = edge
        .authorize(http.post(format!("{}/edge/v1/sessions", edge_url.trim_end_matches('/'))))
        .json(body)
        .send()
        .await
        .expect("POST /edge/v1/sessions");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
