//! `portcullis connect` and issue 13 ("dead on arrival"): after a user's
//! termination, a fresh `connect` logs in once. The session it gets in the
//! very second of the termination works at once (the flow echoes, nothing
//! says "logging in again"); and should an edge refuse a session moments
//! after its login anyway (here: an edge whose `session_issuer` is wrong),
//! `connect` says so and stops instead of asking for a second login. Logins
//! go through the real OpenID provider and the CLI's loopback listener.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

use crate::edge_node::EdgeNode;
use crate::harness::{free_port, ControlPlane, TempDir};
use crate::idp::{Browser, Idp};
use crate::tunnel_kit::{connect_command, echo_upstream, line_with};

const CLIENT_SECRET: &str = "edge-client-secret-0123456789abcdef";
const WITHIN: Duration = Duration::from_secs(10);
const LOGIN_LINE: &str = "/.portcullis/cli-login?";

struct World {
    plane: ControlPlane,
    /// An edge that admits what the control plane signs.
    sound: EdgeNode,
    /// An edge that refuses every session (its `session_issuer` is wrong).
    broken: EdgeNode,
    _idp: Idp,
    dir: TempDir,
}

impl World {
    async fn start(label: &str) -> Self {
        let dir = TempDir::new(label);
        let ports = [free_port(), free_port()];
        let callbacks: Vec<String> =
            ports.iter().map(|port| format!("http://127.0.0.1:{port}/.portcullis/callback")).collect();
        let clients = json!([{
            "client_id": "edge", "client_secret": CLIENT_SECRET, "grant_types": ["authorization_code"],
            "redirect_uris": callbacks,
        }]);
        let idp = Idp::start_with(dir.path(), clients, json!({ "device_flow": false })).await;
        let database = format!("sqlite://{}", dir.path().join("cp.db").display());
        let plane = ControlPlane::start_trusting(&database, dir.path(), &[(&idp.issuer(), "edge")]).await;
        let policy = format!(
            "version: 1\nroutes:\n  - name: echo\n    tcp: echo.internal:7\n    upstream: 127.0.0.1:{}\n    rules:\n      - name: developers\n        allow: {{ groups_any: [dev] }}\n",
            echo_upstream().await
        );
        plane.apply_policy(&policy).await;
        let settings = |port: u16| {
            vec![
                ("listen", format!("127.0.0.1:{port}")),
                ("oidc_issuer", idp.issuer()),
                ("oidc_client_id", "edge".to_owned()),
                ("oidc_client_secret", CLIENT_SECRET.to_owned()),
                ("oidc_scopes", "email,profile,groups".to_owned()),
                ("cookie_secure", "false".to_owned()),
            ]
        };
        let sound = EdgeNode::start_with(&plane, "edge-sound", dir.path(), &settings(ports[0])).await;
        let mut wrong = settings(ports[1]);
        wrong.push(("session_issuer", "https://not-the-control-plane.example".to_owned()));
        let broken = EdgeNode::start_with(&plane, "edge-wrong-issuer", dir.path(), &wrong).await;
        Self { plane, sound, broken, _idp: idp, dir }
    }

    /// A fresh `XDG_CONFIG_HOME`: no cached session.
    fn fresh_cache(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn sessions_of_bob(&self) -> Vec<Value> {
        let page = self.plane.api_get("/sessions?email=bob@corp.example").await;
        page["sessions"].as_array().cloned().unwrap_or_default()
    }
}

/// A running `portcullis connect echo.internal:7` through `edge` that has
/// logged bob in (in `browser`, whose IdP session may make it instant).
struct Connected {
    child: Child,
    stderr: Lines<BufReader<ChildStderr>>,
    seen: String,
}

async fn connect_and_log_in(edge: &EdgeNode, browser: &Browser, xdg: &std::path::Path) -> Connected {
    let edge_url = format!("http://127.0.0.1:{}", edge.port);
    let mut child = connect_command(xdg, &["echo.internal:7", "--edge", &edge_url, "--login", "browser"])
        .spawn()
        .expect("portcullis connect");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let url = line_with(&mut stderr, LOGIN_LINE, WITHIN, &mut seen).await.trim().to_owned();
    let parsed = reqwest::Url::parse(&url).expect("a login URL");
    let cli_port = parsed.query_pairs().find(|(k, _)| k == "port").map(|(_, v)| v.into_owned()).expect("port");
    let location = browser.login_at_idp(&url, "bob", &format!("http://127.0.0.1:{cli_port}/callback")).await;
    let done = browser.follow(&location).await;
    assert_eq!(done.status, 200, "the CLI took the login: {}", done.body);
    Connected { child, stderr, seen }
}

impl Connected {
    /// Waits for the process to exit; (status, all of stderr).
    async fn finish(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(WITHIN, self.child.wait()).await;
        let status = match status {
            Ok(status) => status.expect("wait").code(),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        };
        while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(1), self.stderr.next_line()).await {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        (status, self.seen)
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn created_ms(session: &Value) -> i64 {
    let created = session["created_at"].as_str().expect("created_at");
    chrono::DateTime::parse_from_rfc3339(created).expect("RFC 3339").timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_logs_in_once_in_the_second_of_a_termination() {
    let world = World::start("connect-relogin").await;
    let browser = Browser::new();
    // A first run leaves bob's IdP session in the browser: later logins are instant.
    let first = connect_and_log_in(&world.sound, &browser, &world.fresh_cache("xdg-first")).await;
    drop(first.child.stdin);
    for attempt in 0..5 {
        let into = now_ms().rem_euclid(1000);
        tokio::time::sleep(Duration::from_millis((1000 - into) as u64 + 5)).await;
        let terminated_at = now_ms();
        let terminate = json!({ "email": "bob@corp.example", "reason": "issue 13" });
        let (status, answer) = world.plane.api_post("/users/terminate?wait=true", &terminate).await.expect("terminate");
        assert_eq!(status, 200, "{answer}");
        let mut run = connect_and_log_in(&world.sound, &browser, &world.fresh_cache(&format!("xdg-{attempt}"))).await;
        let mut stdin = run.child.stdin.take().expect("stdin");
        let mut stdout = run.child.stdout.take().expect("stdout");
        stdin.write_all(b"hi\n").await.expect("write");
        let mut back = [0u8; 3];
        let echoed = tokio::time::timeout(WITHIN, stdout.read_exact(&mut back)).await;
        drop(stdin);
        let (code, said) = run.finish().await;
        assert!(matches!(echoed, Ok(Ok(_))) && &back == b"hi\n", "the flow echoes:\n{said}");
        assert_eq!(code, Some(0), "{said}");
        assert!(!said.contains("logging in again"), "one login:\n{said}");
        assert_eq!(said.matches(LOGIN_LINE).count(), 1, "one login:\n{said}");
        let newest = world.sessions_of_bob().await.into_iter().map(|s| created_ms(&s)).max().expect("a session");
        if newest.div_euclid(1000) == terminated_at.div_euclid(1000) {
            return;
        }
        assert!(attempt < 4, "could not fit a termination and a login in one second");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_does_not_ask_for_a_second_login_when_its_new_session_is_refused() {
    let world = World::start("connect-refused").await;
    let browser = Browser::new();
    let run = connect_and_log_in(&world.broken, &browser, &world.fresh_cache("xdg")).await;
    let (code, said) = run.finish().await;
    assert!(!said.contains("logging in again"), "no second login:\n{said}");
    assert_eq!(said.matches(LOGIN_LINE).count(), 1, "one login prompt:\n{said}");
    assert_eq!(code, Some(1), "it stops:\n{said}");
    assert!(said.contains("refused the session right after the login"), "says what happened:\n{said}");
    assert!(said.contains("HTTP 407"), "and the edge's answer:\n{said}");
    assert_eq!(world.sessions_of_bob().await.len(), 1, "one session at the control plane");
}
