//! A real `portcullis edge` process for the end-to-end tests, and the
//! shortcut to a session token the edge's own login would get
//! (POST /edge/v1/sessions as an enrolled test edge, see `edge_identity`,
//! with an ID token the shared test issuer signed for the identity).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use portcullis_dev_idp::test_issuer::TestIssuer;
use serde_json::{json, Value};

use crate::harness::{command, free_port, ControlPlane, TempDir, EDGE_SECRET};

/// A running `portcullis edge`, killed on drop.
pub struct EdgeNode {
    child: Child,
    /// Plain-HTTP port.
    pub port: u16,
    /// Metrics port.
    pub metrics: u16,
    log: std::path::PathBuf,
}

impl EdgeNode {
    /// Starts an edge of `plane` and waits until it has a snapshot.
    pub async fn start(plane: &ControlPlane, id: &str, dir: &Path) -> Self {
        Self::start_with(plane, id, dir, &[]).await
    }

    /// Same, with extra `PORTCULLIS_*` settings (`listen` picks the port);
    /// they win over the defaults (e.g. a wrong `session_issuer`), and an
    /// empty value removes the default (e.g. `edge_secret`, to enroll with a
    /// join token only).
    pub async fn start_with(plane: &ControlPlane, id: &str, dir: &Path, settings: &[(&str, String)]) -> Self {
        let port = settings
            .iter()
            .find(|(key, _)| *key == "listen")
            .and_then(|(_, listen)| listen.rsplit(':').next()?.parse().ok())
            .unwrap_or_else(free_port);
        let metrics = free_port();
        let log = dir.join(format!("{id}.log"));
        let file = File::create(&log).expect("edge log");
        let mut command = command();
        command
            .arg("edge")
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))
            .env("PORTCULLIS_CONTROL_PLANE_URL", &plane.edge_url)
            .env("PORTCULLIS_SESSION_ISSUER", &plane.url)
            .env("PORTCULLIS_EDGE_SECRET", EDGE_SECRET)
            .env("PORTCULLIS_EDGE_ID", id)
            .env("PORTCULLIS_LOG", "info");
        for (key, value) in settings {
            let name = format!("PORTCULLIS_{}", key.to_ascii_uppercase());
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn portcullis edge");
        let node = Self { child, port, metrics, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("http://127.0.0.1:{metrics}/readyz")).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return node;
            }
            assert!(
                Instant::now() < deadline,
                "edge {id} not ready:\n{}",
                std::fs::read_to_string(&node.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let response = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics)).await.expect("GET /metrics");
        response.text().await.expect("metrics text")
    }

    /// The edge's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A URL on the plain-HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET on host app.corp.example with an optional session cookie; (status, JSON body).
    pub async fn get(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(self.url(path)).header("host", "app.corp.example");
        if let Some(token) = token {
            request = request.header("cookie", format!("__Host-portcullis_session.app={token}"));
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request through the edge");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for EdgeNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One route `app` on app.corp.example for staff at corp.example.
pub fn policy(upstream: u16) -> String {
    format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.corp.example\n    upstream: http://127.0.0.1:{upstream}\n    rules:\n      - name: staff\n        allow: {{ email_domain: [corp.example], groups_any: [staff] }}\n"
    )
}

/// Creates a session on route `app` the way the edge's login does; returns (id, token).
pub async fn login(plane: &ControlPlane, email: &str) -> (String, String) {
    login_to(plane, email, "app").await
}

/// Creates a session on `route` (a session token counts only there); returns (id, token).
pub async fn login_to(plane: &ControlPlane, email: &str, route: &str) -> (String, String) {
    let body = json!({
        "subject": format!("sub-{email}"), "email": email, "groups": ["staff"],
        "idp_issuer": "https://idp.corp.example", "auth_time": chrono::Utc::now().timestamp(),
        "route": route, "source_address": "127.0.0.1", "user_agent": "edge-test",
    });
    let answer = create_session(plane, &body).await;
    (answer["session_id"].as_str().expect("id").to_owned(), answer["token"].as_str().expect("token").to_owned())
}

/// `POST /edge/v1/sessions` as an enrolled test edge, as the edge's login
/// does, for the identity `body` describes (`subject`, `email`, `groups`,
/// `auth_time`, … — signed into an ID token by the shared test issuer); the
/// control plane's answer (`session_id`, `token`).
pub async fn create_session(plane: &ControlPlane, body: &Value) -> Value {
    let body = TestIssuer::shared().login_body(body);
    crate::edge_identity::post_session(plane.http(), &plane.edge_url, EDGE_SECRET, &body).await.1
}

/// A throwaway certificate for 127.0.0.1 and app.corp.example: (cert, key, PEM).
pub fn certificate(dir: &TempDir) -> (String, String, Vec<u8>) {
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:app.corp.example"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let pem = std::fs::read(&cert).expect("certificate");
    (cert.display().to_string(), key.display().to_string(), pem)
}
