//! The processes a fault run breaks: control-plane replicas that are
//! SIGKILLed and restarted on their own ports, edges streaming from a list
//! of replicas that are paused (SIGSTOP/SIGCONT) and restarted, and the
//! probes that ask an edge what it does with a session right now.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{command, free_port, ControlPlane, EDGE_SECRET};

/// The policy of every fault run: `app` keeps serving the last snapshot
/// when the edge is cut off, `strict` (the same upstream) fails closed.
pub fn policy(upstream: u16) -> String {
    format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.corp.example\n    upstream: http://127.0.0.1:{upstream}\n    \
         rules:\n      - allow: {{ email_domain: [corp.example] }}\n  - name: strict\n    host: strict.corp.example\n    \
         upstream: http://127.0.0.1:{upstream}\n    options: {{ stale_mode: deny }}\n    rules:\n      \
         - allow: {{ email_domain: [corp.example] }}\n"
    )
}

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
}

/// A control-plane replica that can die and come back on the same ports.
pub struct Replica {
    database: String,
    dir: PathBuf,
    ports: (u16, u16),
    /// The running process, if it is up.
    pub live: Option<ControlPlane>,
}

/// The `issuer` every replica signs sessions as (they share one database
/// and its keys): what every edge expects.
pub const ISSUER: &str = "https://portcullis.fault.test";

impl Replica {
    /// Starts a replica on `database` on free ports.
    pub async fn start(database: &str, dir: &Path) -> Self {
        let mut replica =
            Self { database: database.to_owned(), dir: dir.to_owned(), ports: (free_port(), free_port()), live: None };
        replica.restart().await;
        replica
    }

    /// The running process; panics when it is down.
    pub fn plane(&self) -> &ControlPlane {
        self.live.as_ref().expect("the replica is up")
    }

    /// Its edge channel.
    pub fn edge_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.1)
    }

    /// SIGKILL (dropping the process kills it and reaps it, even when a
    /// signal already did).
    pub fn kill(&mut self) {
        drop(self.live.take());
    }

    /// Starts it (again) on its ports; returns when it answers `/readyz`.
    pub async fn restart(&mut self) -> Instant {
        self.kill();
        let mut last = String::new();
        let settings = [("issuer", ISSUER.to_owned())];
        for _ in 0..20 {
            match ControlPlane::start_on_with(&self.database, &self.dir, self.ports.0, self.ports.1, &settings).await {
                Ok(plane) => {
                    self.live = Some(plane);
                    return Instant::now();
                }
                // The killed process's sockets may linger for a moment.
                Err(log) if log.contains("Address already in use") => {
                    last = log;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(log) => panic!("the replica did not come back:\n{log}"),
            }
        }
        panic!("the replica's ports stayed taken:\n{last}");
    }

    /// Creates a session of `email` on route `route` through this replica's
    /// session authority, as an edge's login does; returns (id, token).
    pub async fn mint(&self, email: &str, route: &str) -> (String, String) {
        let body = json!({
            "subject": format!("sub-{email}"), "email": email, "groups": ["staff"],
            "idp_issuer": "https://idp.corp.example", "auth_time": chrono::Utc::now().timestamp(),
            "route": route, "source_address": "127.0.0.1", "user_agent": "fault-suite",
        });
        let body = portcullis_dev_idp::test_issuer::TestIssuer::shared().login_body(&body);
        let plane = self.plane();
        let (_, answer) = crate::edge_identity::post_session(plane.http(), &self.edge_url(), EDGE_SECRET, &body).await;
        let id = answer["session_id"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        (id.to_owned(), answer["token"].as_str().expect("token").to_owned())
    }

    /// Terminates session `id`; `Ok` once the control plane answered 200.
    pub async fn terminate(&self, id: &str) -> Result<(), String> {
        let path = format!("/sessions/{id}/terminate");
        match self.plane().api_post(&path, &json!({ "reason": "fault suite" })).await {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(format!("{status} {body}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Terminates every session of `email`.
    pub async fn terminate_user(&self, email: &str) -> Result<(), String> {
        match self.plane().api_post("/users/terminate", &json!({ "email": email, "reason": "fault suite" })).await {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(format!("{status} {body}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A running `portcullis edge` streaming from a list of replicas.
pub struct Edge {
    child: Child,
    /// Its id.
    pub id: String,
    /// Plain-HTTP port.
    pub port: u16,
    /// Metrics port.
    pub metrics: u16,
    urls: Vec<String>,
    issuer: String,
    settings: Vec<(String, String)>,
    log: PathBuf,
    http: reqwest::Client,
}

impl Edge {
    /// Starts edge `id` streaming from `urls` (in that order); returns once
    /// `/readyz` answers 200.
    pub async fn start(id: &str, urls: &[String], dir: &Path) -> Self {
        let edge = Self::launch(id, urls, dir, &[]);
        edge.wait_ready().await;
        edge
    }

    /// Starts edge `id` with extra `PORTCULLIS_*` settings, without waiting
    /// for it to become ready.
    pub fn launch(id: &str, urls: &[String], dir: &Path, settings: &[(&str, String)]) -> Self {
        let issuer = ISSUER;
        // A fresh connection per probe: the edge closes connections it stops
        // trusting (a stale strict route), and a pooled one would fail the probe.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let (port, metrics) = (free_port(), free_port());
        let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        Self {
            child: spawn(id, urls, issuer, (port, metrics), &settings, dir),
            id: id.to_owned(),
            port,
            metrics,
            urls: urls.to_vec(),
            issuer: issuer.to_owned(),
            settings,
            log: dir.join(format!("{id}.log")),
            http,
        }
    }

    /// Waits (up to 30 s) until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready().await {
            assert!(Instant::now() < deadline, "edge {} not ready:\n{}", self.id, self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and start again on the same ports; returns once ready.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.log.parent().expect("log dir").to_owned();
        self.child = spawn(&self.id, &self.urls, &self.issuer, (self.port, self.metrics), &self.settings, &dir);
        self.wait_ready().await;
    }

    /// Pauses (`STOP`) or resumes (`CONT`) the process.
    pub fn signal(&self, which: &str) {
        signal(self.child.id(), which);
    }

    /// `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics);
        let answer = self.http.get(url).timeout(Duration::from_millis(500)).send().await;
        answer.is_ok_and(|r| r.status().is_success())
    }

    /// `/readyz`: status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics);
        match self.http.get(url).timeout(Duration::from_millis(500)).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// One sample of metric `name` (the first series), if exported.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics);
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }

    /// The status of `GET /hello` on `host` with `token` as route `route`'s cookie.
    pub async fn status_on(&self, host: &str, route: &str, token: &str) -> u16 {
        let request = self
            .http
            .get(format!("http://127.0.0.1:{}/hello", self.port))
            .header("host", host)
            .header("cookie", format!("__Host-portcullis_session.{route}={token}"))
            .timeout(Duration::from_secs(2));
        request.send().await.map_or(0, |r| r.status().as_u16())
    }

    /// Does the edge let `token` through on `app` now?
    pub async fn admits(&self, token: &str) -> bool {
        self.status_on("app.corp.example", "app", token).await == 200
    }

    /// A websocket to the upstream's echo on `host` with `token`, open and echoing.
    pub async fn websocket(&self, host: &str, route: &str, token: &str) -> WebSocket {
        let mut request = format!("ws://127.0.0.1:{}/ws", self.port).into_client_request().expect("ws request");
        request.headers_mut().insert("host", host.parse().expect("host"));
        let cookie = format!("__Host-portcullis_session.{route}={token}");
        request.headers_mut().insert("cookie", cookie.parse().expect("cookie"));
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket through the edge");
        use futures_util::SinkExt;
        socket.send(tokio_tungstenite::tungstenite::Message::text("ping")).await.expect("ws send");
        let echo = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("echo in time");
        assert!(matches!(echo, Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))), "echo: {echo:?}");
        socket
    }

    /// What the edge logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A websocket through an edge.
pub type WebSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Waits up to `limit` for `socket` to close; how long that took.
pub async fn closed_within(socket: &mut WebSocket, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))) => continue,
            Ok(_) => return Some(started.elapsed()),
        }
    }
}

fn spawn(
    id: &str,
    urls: &[String],
    issuer: &str,
    (port, metrics): (u16, u16),
    settings: &[(String, String)],
    dir: &Path,
) -> Child {
    let log = dir.join(format!("{id}.log"));
    let file = File::options().create(true).append(true).open(&log).expect("edge log");
    let mut command = command();
    for (key, value) in settings {
        command.env(format!("PORTCULLIS_{}", key.to_ascii_uppercase()), value);
    }
    command
        .arg("edge")
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))
        .env("PORTCULLIS_CONTROL_PLANE_URLS", urls.join(","))
        .env("PORTCULLIS_SESSION_ISSUER", issuer)
        .env("PORTCULLIS_EDGE_SECRET", EDGE_SECRET)
        .env("PORTCULLIS_EDGE_ID", id)
        .env("PORTCULLIS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file)
        .spawn()
        .expect("spawn portcullis edge")
}

/// Polls every edge in `edges` that is ready until each refuses `token` on
/// `app`, for at most `limit`; how long after `since` that was.
pub async fn refused_everywhere(edges: &[&Edge], token: &str, since: Instant, limit: Duration) -> Option<Duration> {
    every_edge(edges, since, limit, |edge| async move { !edge.ready().await || !edge.admits(token).await }).await
}

/// Polls until every edge admits `token`, for at most `limit`.
pub async fn admitted_everywhere(edges: &[&Edge], token: &str, since: Instant, limit: Duration) -> Option<Duration> {
    every_edge(edges, since, limit, |edge| edge.admits(token)).await
}

/// Polls every 10 ms until `holds` is true of every edge at once, for at
/// most `limit`; how long after `since` that was.
async fn every_edge<'e, F, Fut>(edges: &[&'e Edge], since: Instant, limit: Duration, holds: F) -> Option<Duration>
where
    F: Fn(&'e Edge) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        let mut all = true;
        for edge in edges {
            if !holds(edge).await {
                all = false;
                break;
            }
        }
        if all {
            return Some(since.elapsed());
        }
        if since.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Percentiles of durations, for the run's report.
pub fn percentiles(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} p50={:.0?} p99={:.0?} max={:.0?}",
        samples.len(),
        at(0.5),
        at(0.99),
        samples.last().expect("not empty")
    )
}
