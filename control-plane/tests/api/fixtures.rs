//! Shared fixtures: the policy the suite applies, logins through the edge
//! channel, and small readers of stream messages and JSON answers.

use axum::http::Method;
use portcullis_dev_idp::test_issuer::TestIssuer;
use portcullis_policy::snapshot::PublicKey;
use portcullis_policy::wire::{Message, SnapshotBody};
use serde_json::{json, Value};

use crate::harness::TestApp;

/// Routes: `wiki` (no session limit), `admin` (one session per user,
/// refuse more), `console` (one session per user, end the oldest).
pub const POLICY: &str = "\
version: 1
routes:
  - name: wiki
    host: wiki.test.example
    upstream: http://127.0.0.1:9
    rules:
      - name: employees
        allow:
          email_domain: [test.example]
  - name: admin
    host: admin.test.example
    upstream: http://127.0.0.1:9
    options:
      session_lifetime: 2h
      max_sessions_per_user: 1
      on_session_limit: refuse
    rules:
      - name: admins
        allow:
          groups_any: [admins]
  - name: console
    host: console.test.example
    upstream: http://127.0.0.1:9
    options:
      max_sessions_per_user: 1
      on_session_limit: end_oldest
    rules:
      - name: admins
        allow:
          groups_any: [admins]
";

/// A different valid policy (one route).
pub const POLICY_V2: &str = "\
version: 1
routes:
  - name: wiki
    host: wiki.test.example
    upstream: http://127.0.0.1:9
    rules:
      - name: everyone-in-wiki-group
        allow:
          groups_any: [wiki]
";

/// Applies [`POLICY`]; returns its version.
pub async fn apply_policy(t: &TestApp) -> i64 {
    let applied = t.api(Method::PUT, "/api/v1/policy?message=suite").yaml(POLICY).send().await.ok();
    applied["version"].as_i64().expect("version")
}

/// A login an edge completed.
pub struct Login<'a> {
    /// Email.
    pub email: &'a str,
    /// Route name.
    pub route: &'a str,
    /// Completing edge.
    pub edge: &'a str,
    /// The IdP sign-in time (`auth_time`), Unix seconds.
    pub auth_time: i64,
}

impl<'a> Login<'a> {
    /// `email` on route `wiki` through edge `edge-a`.
    pub fn new(email: &'a str) -> Self {
        Self { email, route: "wiki", edge: crate::harness::EDGE_ID, auth_time: 1_700_000_000 }
    }

    /// Signed in at the IdP just now (after any termination so far).
    pub fn fresh(self) -> Self {
        Self { auth_time: chrono::Utc::now().timestamp() + 1, ..self }
    }

    /// On another route.
    pub fn route(self, route: &'a str) -> Self {
        Self { route, ..self }
    }

    /// Through another edge.
    pub fn edge(self, edge: &'a str) -> Self {
        Self { edge, ..self }
    }

    /// The request body: an ID token of the shared test issuer for
    /// [`Self::identity`], its nonce, and the rest of the login.
    pub fn body(&self) -> Value {
        signed(&self.identity())
    }

    /// The login as an edge used to assert it; the subject is derived from the email.
    pub fn identity(&self) -> Value {
        json!({
            "subject": format!("sub-{}", self.email.to_ascii_lowercase()),
            "email": self.email,
            "groups": ["admins", "staff"],
            "idp_session_id": "idp-sid-1",
            "auth_time": self.auth_time,
            "route": self.route,
            "source_address": "198.51.100.20",
            "user_agent": "suite/1.0",
        })
    }

    /// POSTs the login; returns the answer.
    pub async fn send(&self, t: &TestApp) -> crate::client::Answer {
        t.edge(Method::POST, "/edge/v1/sessions")
            .header("x-portcullis-edge-id", self.edge)
            .json(self.body())
            .send()
            .await
    }

    /// POSTs the login, expecting success; returns `LoginAnswer` as JSON.
    pub async fn ok(&self, t: &TestApp) -> Value {
        self.send(t).await.ok()
    }
}

/// The `POST /edge/v1/sessions` body for the login `identity` describes
/// (`subject`, `email`, `groups`, `auth_time`, `idp_session_id`, `route`, …):
/// an ID token the shared test issuer signed for it.
pub fn signed(identity: &Value) -> Value {
    TestIssuer::shared().login_body(identity)
}

/// Logs `email` in on `wiki` through `edge-a`; returns the session id.
pub async fn login(t: &TestApp, email: &str) -> String {
    text(&Login::new(email).ok(t).await["session_id"])
}

/// A JSON string value, owned.
#[track_caller]
pub fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("expected a string, found {value}")).to_owned()
}

/// The session ids of a `SessionPage`, in order.
pub fn ids(page: &Value) -> Vec<String> {
    page["sessions"].as_array().expect("`sessions`").iter().map(|s| text(&s["id"])).collect()
}

/// A full snapshot, read from a fresh stream.
pub async fn snapshot(t: &TestApp) -> SnapshotBody {
    let mut stream = t.edge(Method::GET, "/edge/v1/stream").open().await;
    match stream.expect_next().await {
        Message::Snapshot(body) => body,
        other => panic!("a stream without `since` starts with a snapshot, not {other:?}"),
    }
}

/// The published session-signing keys.
pub async fn published_keys(t: &TestApp) -> Vec<PublicKey> {
    snapshot(t).await.signing_keys
}

/// A terminate body.
pub fn reason(text: &str) -> Value {
    json!({ "reason": text })
}
