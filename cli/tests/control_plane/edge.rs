//! Acting as an edge on the edge channel: creating sessions as after a
//! login, reporting, and reading the snapshot/delta stream (frames of a
//! 4-byte big-endian length and a signed `portcullis_policy::wire` message,
//! verified with the key `GET /edge/v1/stream-key` serves, as an edge does).

use std::time::{Duration, Instant};

use portcullis_policy::signed_frame::{FrameVerifier, StreamBinding, StreamNonce};
use portcullis_policy::stream_key::PublishedStreamKey;
use portcullis_policy::wire::{decode, Message, SnapshotBody};
use portcullis_policy::Change;
use serde_json::{json, Value};

use crate::edge_identity::test_edge;
use crate::harness::{ControlPlane, EDGE_SECRET};

impl ControlPlane {
    /// A request on the edge channel as test edge `edge_id` (enrolled with
    /// the bootstrap secret on first use).
    async fn edge_request(&self, method: reqwest::Method, path: &str, edge_id: &str) -> reqwest::RequestBuilder {
        let edge = test_edge(&self.edge_url, edge_id, EDGE_SECRET).await;
        edge.authorize(self.http().request(method, format!("{}/edge/v1{path}", self.edge_url)))
    }

    /// Creates a session for `email` on `route` as edge `edge-1` would after a login; returns its id.
    pub async fn create_session(&self, email: &str, route: &str) -> String {
        let body = json!({
            "subject": format!("sub-{email}"),
            "email": email,
            "groups": ["admins"],
            "idp_issuer": "https://idp.corp.example",
            "auth_time": chrono::Utc::now().timestamp(),
            "route": route,
            "source_address": "203.0.113.7",
            "user_agent": "process-test",
        });
        let body = portcullis_dev_idp::test_issuer::TestIssuer::shared().login_body(&body);
        let response = self
            .edge_request(reqwest::Method::POST, "/sessions", "edge-1")
            .await
            .json(&body)
            .send()
            .await
            .expect("login");
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON answer");
        assert!(status.is_success(), "POST /edge/v1/sessions: {status} {answer}");
        answer["session_id"].as_str().expect("session_id").to_owned()
    }

    /// Reports as edge `edge_id` that it applied `applied_seq`.
    pub async fn report(&self, edge_id: &str, applied_seq: u64) {
        let response = self
            .edge_request(reqwest::Method::POST, "/report", edge_id)
            .await
            .json(&json!({ "applied_seq": applied_seq, "live_connections": 2 }))
            .send()
            .await
            .expect("report");
        assert!(response.status().is_success(), "POST /edge/v1/report: {}", response.status());
    }

    /// Opens `GET /edge/v1/stream` (with `?since=` when given) with a fresh
    /// nonce, verifying frames with the key the control plane serves.
    pub async fn open_stream(&self, edge_id: &str, since: Option<u64>) -> EdgeStream {
        let published: PublishedStreamKey = self
            .edge_request(reqwest::Method::GET, "/stream-key", edge_id)
            .await
            .send()
            .await
            .expect("GET /edge/v1/stream-key")
            .json()
            .await
            .expect("the published stream key");
        let binding = StreamBinding { nonce: StreamNonce(rand::random()), since };
        let verifier = FrameVerifier::new(published.key().expect("a valid key"), binding);
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        let path = format!("/stream?nonce={}{since}", binding.nonce);
        let response = self
            .edge_request(reqwest::Method::GET, &path, edge_id)
            .await
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .expect("open the edge stream");
        assert!(response.status().is_success(), "GET /edge/v1/stream: {}", response.status());
        EdgeStream { response, buffer: Vec::new(), verifier }
    }
}

/// An open edge stream.
pub struct EdgeStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    verifier: FrameVerifier,
}

impl EdgeStream {
    /// The next message, or `None` if none arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(header) = self.buffer.first_chunk::<4>() {
                let length = u32::from_be_bytes(*header) as usize;
                if self.buffer.len() >= 4 + length {
                    let opened = self.verifier.open(&self.buffer[4..4 + length]);
                    let message = decode(opened.expect("a genuine frame, in order")).expect("a valid wire message");
                    self.buffer.drain(..4 + length);
                    return Some(message);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?;
            match chunk.expect("read the edge stream") {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => panic!("the control plane closed the edge stream"),
            }
        }
    }

    /// The first message, which must be a snapshot.
    pub async fn snapshot(&mut self) -> SnapshotBody {
        match self.next(Duration::from_secs(10)).await {
            Some(Message::Snapshot(body)) => body,
            Some(other) => panic!("expected a snapshot first, got {other:?}"),
            None => panic!("no snapshot within 10 s"),
        }
    }

    /// Waits until `within` after `started` for a delta terminating
    /// `session`, skipping heartbeats and other deltas; returns the time from
    /// `started` to its arrival.
    pub async fn expect_termination(&mut self, session: &str, started: Instant, within: Duration) -> Duration {
        loop {
            let left = within.checked_sub(started.elapsed()).unwrap_or_default();
            match self.next(left).await {
                Some(Message::Delta(delta)) => {
                    if let Change::TerminateSession { session: id, .. } = &delta.change {
                        if id.to_string() == session {
                            return started.elapsed();
                        }
                    }
                }
                Some(_) => {}
                None => panic!("no delta terminating {session} within {within:?}"),
            }
        }
    }
}

/// True when the snapshot lists `session` as terminated.
pub fn terminated_in(snapshot: &SnapshotBody, session: &str) -> bool {
    snapshot.terminated_sessions.iter().any(|(id, _)| id.to_string() == session)
}
