//! Real OpenSSH through Portcullis: `ssh -o ProxyCommand='portcullis
//! connect %h:%p --edge …'` to a real `sshd` behind an edge. The CLI logs in
//! end to end (the device flow at a real OpenID provider, approved by the
//! scripted browser; or, when the provider has no device flow or refuses it
//! to the edge's client, a browser login through the CLI's loopback
//! listener), keeps its session and logs in
//! again when it was terminated. An administrator's `portcullis users
//! terminate` ends a long-lived `ssh … sleep 600` within seconds, and the
//! user is told why; a lock and a session termination end a bare
//! `portcullis connect` with status 2 and the reason; a denied user and an
//! unknown route are refused with the edge's reason; `--listen` serves
//! local clients until access ends. The device flow only serves routes
//! with `device_login: true`, only the client that started it collects its
//! session, and starts are rate-limited per address.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::edge_node::EdgeNode;
use crate::harness::{binary, free_port, ControlPlane, TempDir};
use crate::idp::{Browser, Idp};
use crate::sshd::Sshd;
use crate::tunnel_kit::{connect_command, echo_upstream, line_with, seed_cache, session};

const CLIENT_SECRET: &str = "edge-client-secret-0123456789abcdef";
/// How long a kill may take to reach the user.
const WITHIN: Duration = Duration::from_secs(5);
/// How long a login (device polls every 5 s) or an ssh run may take.
const LOGIN_WITHIN: Duration = Duration::from_secs(60);

fn policy(sshd: u16, echo: u16) -> String {
    format!(
        "version: 1
routes:
  - name: ssh
    tcp: ssh.internal:22
    upstream: 127.0.0.1:{sshd}
    options:
      device_login: true
    rules:
      - name: developers
        allow: {{ groups_any: [dev], credential: [browser] }}
  - name: echo
    tcp: echo.internal:7
    upstream: 127.0.0.1:{echo}
    rules:
      - name: developers
        allow: {{ groups_any: [dev] }}
"
    )
}

/// How the world's edge logs users in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Login {
    /// No IdP: sessions are minted and put in the CLI's cache.
    Seeded,
    /// The IdP offers the device flow.
    Device,
    /// The IdP has no device flow: browser through the loopback redirect.
    Browser,
    /// The IdP offers the device flow but not to the edge's client (the
    /// README's registration: redirect URIs, no device_code grant type).
    DeviceRefused,
}

struct World {
    plane: ControlPlane,
    edge: EdgeNode,
    sshd: Sshd,
    idp: Option<Idp>,
    xdg: PathBuf,
    dir: TempDir,
}

impl World {
    async fn start(label: &str, login: Login) -> Self {
        let dir = TempDir::new(label);
        let port = free_port();
        let mut settings = vec![("listen", format!("127.0.0.1:{port}"))];
        let idp = match login {
            Login::Seeded => None,
            Login::Device | Login::Browser | Login::DeviceRefused => {
                let mut grant_types = vec!["authorization_code"];
                if login == Login::Device {
                    grant_types.push("urn:ietf:params:oauth:grant-type:device_code");
                }
                let clients = json!([{
                    "client_id": "edge", "client_secret": CLIENT_SECRET, "grant_types": grant_types,
                    "redirect_uris": [format!("http://127.0.0.1:{port}/.portcullis/callback")],
                }]);
                let extra = json!({ "device_flow": login != Login::Browser });
                let idp = Idp::start_with(dir.path(), clients, extra).await;
                settings.extend([
                    ("oidc_issuer", idp.issuer()),
                    ("oidc_client_id", "edge".to_owned()),
                    ("oidc_client_secret", CLIENT_SECRET.to_owned()),
                    ("oidc_scopes", "email,profile,groups".to_owned()),
                    ("cookie_secure", "false".to_owned()),
                ]);
                Some(idp)
            }
        };
        let issuer = idp.as_ref().map(Idp::issuer);
        let trusted: Vec<(&str, &str)> = issuer.iter().map(|issuer| (issuer.as_str(), "edge")).collect();
        let database = format!("sqlite://{}", dir.path().join("cp.db").display());
        let plane = ControlPlane::start_trusting(&database, dir.path(), &trusted).await;
        let sshd = Sshd::start(dir.path());
        plane.apply_policy(&policy(sshd.port, echo_upstream().await)).await;
        let edge = EdgeNode::start_with(&plane, label, dir.path(), &settings).await;
        let xdg = dir.path().join("xdg");
        Self { plane, edge, sshd, idp, xdg, dir }
    }

    fn edge_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.edge.port)
    }

    /// The ProxyCommand: this build's `portcullis connect` with the world's edge.
    fn proxy_command(&self) -> String {
        format!("{} connect %h:%p --edge {} --no-browser", binary(), self.edge_url())
    }

    fn ssh(&self, remote: &str) -> tokio::process::Child {
        let mut command = self.sshd.ssh(&self.proxy_command(), "ssh.internal", remote);
        command.env("XDG_CONFIG_HOME", &self.xdg);
        command.spawn().expect("run ssh")
    }

    /// Seeds `portcullis connect`'s cache with a session of the `ssh` route.
    async fn seed(&self, email: &str, groups: &[&str]) -> String {
        self.seed_route(email, groups, "ssh", "ssh.internal:22").await
    }

    /// Seeds the cache with a session of `route`, for `target`.
    async fn seed_route(&self, email: &str, groups: &[&str], route: &str, target: &str) -> String {
        let (id, token) = session(&self.plane, email, groups, route).await;
        seed_cache(&self.xdg, &self.edge_url(), target, &id, &token);
        id
    }
}

/// Waits for `child` to exit; (status code, stdout, stderr).
async fn finish(child: tokio::process::Child, within: Duration) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the process did not exit within {within:?}"))
        .expect("wait for the process");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `ssh … echo hello` while approving a device login as `user` when asked.
async fn ssh_hello_with_device_login(world: &World, user: &str) -> String {
    let mut child = world.ssh("echo hello");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let line = line_with(&mut stderr, "/device?user_code=", LOGIN_WITHIN, &mut seen).await;
    let url = line.split_whitespace().find(|w| w.starts_with("http")).expect("a URL in the prompt").to_owned();
    let page = Browser::new().approve_device(&url, user).await;
    assert!(page.contains("Sign-in Success"), "{page}");
    let output = tokio::time::timeout(LOGIN_WITHIN, child.wait_with_output()).await.expect("ssh ends").expect("ssh");
    while let Ok(Some(line)) = stderr.next_line().await {
        seen.push_str(&line);
        seen.push('\n');
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        (output.status.code(), stdout.as_str()),
        (Some(0), "hello\n"),
        "ssh stderr:\n{seen}\n{}",
        world.sshd.log_text()
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_runs_through_portcullis_connect_after_a_device_login_and_logs_in_again_when_terminated() {
    let world = World::start("ssh-device", Login::Device).await;

    let said = ssh_hello_with_device_login(&world, "bob").await;
    assert!(said.contains("and check that it shows the code"), "{said}");
    let cache = world.xdg.join("portcullis").join("sessions.json");
    let mode = std::fs::metadata(&cache).expect("the session is cached").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the user reads the cached session");
    let sessions = world.plane.api_get("/sessions?email=bob@corp.example").await;
    let sessions = sessions["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["route"], "ssh", "the session is for the TCP route");

    // The cached session is used: no second login.
    let (code, stdout, stderr) = finish(world.ssh("echo hello"), LOGIN_WITHIN).await;
    assert_eq!((code, stdout.as_str()), (Some(0), "hello\n"), "{stderr}");
    assert!(!stderr.contains("to log in"), "no login prompt with a cached session: {stderr}");

    // Terminated: the next run is refused with 407 and logs in again.
    let id = sessions[0]["id"].as_str().expect("id");
    world.plane.cli(&["sessions", "terminate", id, "--reason", "rotate", "--wait"]).await.ok();
    let said = ssh_hello_with_device_login(&world, "bob").await;
    assert!(said.contains("logging in again"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_is_opt_in_per_route_bound_to_its_client_and_rate_limited() {
    use base64::Engine;
    use sha2::Digest;
    let world = World::start("ssh-device-rules", Login::Device).await;
    let edge = world.edge_url();

    // `echo` does not enable `device_login`: refused before the IdP is asked.
    let child = connect_command(&world.xdg, &["echo.internal:7", "--edge", &edge, "--login", "device"])
        .spawn()
        .expect("connect");
    let (code, _, stderr) = finish(child, LOGIN_WITHIN).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("device login refused: The route `echo` does not allow device login"), "{stderr}");
    let idp = world.idp.as_ref().expect("an IdP");
    assert!(!idp.log_text().contains("device_authorization"), "the IdP was never asked:\n{}", idp.log_text());

    // A login on `ssh`, approved by bob: only the client holding the
    // verifier behind the start's challenge collects the session.
    let http = reqwest::Client::new();
    let verifier = "the-cli-keeps-this-verifier-0123456789abcdef";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let start = || {
        http.post(world.edge.url("/.portcullis/device/start"))
            .json(&json!({ "target": "ssh.internal:22", "challenge": challenge }))
            .send()
    };
    let started: serde_json::Value = start().await.expect("start").json().await.expect("JSON");
    let handle = started["handle"].as_str().unwrap_or_else(|| panic!("a handle: {started}"));
    let complete = started["verification_uri_complete"].as_str().expect("verification URI");
    let page = Browser::new().approve_device(complete, "bob").await;
    assert!(page.contains("Sign-in Success"), "{page}");
    let poll = |verifier: Option<&str>| {
        http.post(world.edge.url("/.portcullis/device/poll"))
            .json(&json!({ "handle": handle, "verifier": verifier }))
            .send()
    };
    for (who, verifier) in [("no verifier", None), ("another client's verifier", Some("x".repeat(43)))] {
        let answer = poll(verifier.as_deref()).await.expect("poll");
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("wrong_client")), "{who}: {body}");
    }
    let sessions = world.plane.api_get("/sessions?email=bob@corp.example").await;
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(0), "nobody else collected it: {sessions}");
    let answer = poll(Some(verifier)).await.expect("poll");
    let status = answer.status().as_u16();
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(status, 200, "the client that started it: {body}");
    assert!(body["token"].as_str().is_some_and(|t| t.starts_with("eyJ")), "{body}");
    let sessions = world.plane.api_get("/sessions?email=bob@corp.example").await;
    assert_eq!(sessions["sessions"][0]["route"], "ssh", "{sessions}");

    // Starts from one address are rate-limited (the burst, then 429).
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let answer = start().await.expect("start");
        let retry = answer.headers().get("retry-after").is_some();
        statuses.push((answer.status().as_u16(), retry));
    }
    let refused = statuses.iter().position(|(status, _)| *status == 429).expect("a 429");
    assert!(refused == 4 && statuses[..refused].iter().all(|(s, _)| *s == 200), "{statuses:?}");
    assert!(statuses[refused..].iter().all(|(s, retry)| *s == 429 && *retry), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_device_flow_the_cli_logs_in_through_a_browser_and_its_loopback_listener() {
    let world = World::start("ssh-browser", Login::Browser).await;
    let (_, code) = ssh_hello_with_browser_login(&world).await;

    // A stolen code is useless without the CLI's verifier.
    let edge = reqwest::Client::new();
    let stolen = edge
        .post(world.edge.url("/.portcullis/cli-login/token"))
        .json(&json!({ "code": code, "verifier": "x".repeat(43) }))
        .send()
        .await
        .expect("POST cli-login/token");
    assert_eq!(stolen.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_idp_refuses_the_device_grant_to_the_edge_login_auto_falls_back_to_the_browser() {
    let world = World::start("ssh-device-refused", Login::DeviceRefused).await;
    let (seen, _) = ssh_hello_with_browser_login(&world).await;
    // One line saying why, before the browser login's URL.
    let notice = seen.lines().find(|l| l.contains("device login")).unwrap_or_else(|| panic!("a notice in:\n{seen}"));
    assert_eq!(
        notice,
        "portcullis: device login refused: The identity provider refused to start a device login \
         (invalid_request); logging in through the browser instead",
        "{seen}"
    );
    assert!(seen.find(notice) < seen.find("/.portcullis/cli-login?"), "{seen}");
    // The IdP refused the device grant to the edge's client, then issued a code.
    let idp = world.idp.as_ref().expect("an IdP").log_text();
    assert!(idp.contains("device_code is not allowed for this client"), "{idp}");
    let sessions = world.plane.api_get("/sessions?email=bob@corp.example").await;
    assert_eq!(sessions["sessions"][0]["route"], "ssh", "{sessions}");
}

/// Runs `ssh … echo hello`, logging in as `bob` in the browser the CLI asks
/// to open; (what ssh printed to stderr, the code the browser carried back).
async fn ssh_hello_with_browser_login(world: &World) -> (String, String) {
    let mut child = world.ssh("echo hello");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let url = line_with(&mut stderr, "/.portcullis/cli-login?", LOGIN_WITHIN, &mut seen).await.trim().to_owned();
    let parsed = reqwest::Url::parse(&url).expect("a login URL");
    let cli_port = parsed.query_pairs().find(|(k, _)| k == "port").map(|(_, v)| v.into_owned()).expect("port");
    assert!(parsed.query_pairs().any(|(k, v)| k == "target" && v == "ssh.internal:22"), "{url}");
    let browser = Browser::new();
    let back = format!("http://127.0.0.1:{cli_port}/callback");
    let location = browser.login_at_idp(&url, "bob", &back).await;
    let code = reqwest::Url::parse(&location).expect("callback URL");
    let code = code.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("a code");
    assert!(!code.contains("eyJ"), "the browser never sees the session token in the clear: {code}");
    let done = browser.follow(&location).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Logged in"), "{}", done.body);
    let output = tokio::time::timeout(LOGIN_WITHIN, child.wait_with_output()).await.expect("ssh ends").expect("ssh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!((output.status.code(), &*stdout), (Some(0), "hello\n"), "{seen}");
    (seen, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_the_user_ends_a_long_ssh_session_within_seconds_and_says_why() {
    let world = World::start("ssh-kill", Login::Seeded).await;
    world.seed("ann@corp.example", &["dev"]).await;
    let mut child = world.ssh("echo ready; sleep 600");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = String::new();
    line_with(&mut stdout, "ready", LOGIN_WITHIN, &mut seen).await;
    // The edge reports the flow as a live connection of the session.
    let deadline = Instant::now() + WITHIN;
    loop {
        let sessions = world.plane.api_get("/sessions?email=ann@corp.example").await;
        if sessions["sessions"][0]["live_connections"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the flow is counted as the session's connection: {sessions}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let started = Instant::now();
    let run = world.plane.cli(&["users", "terminate", "ann@corp.example", "--reason", "stolen laptop"]).await;
    run.ok();
    let (code, _, stderr) = finish(child, WITHIN).await;
    let took = started.elapsed();
    assert_ne!(code, Some(0), "ssh fails: {stderr}");
    assert!(
        stderr.contains("portcullis: session terminated by an administrator: stolen laptop"),
        "the user is told why, not just 'broken pipe':\n{stderr}"
    );
    println!("ssh ended {took:?} after the API answered the termination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_flow_ends_portcullis_connect_with_status_2_and_the_reason() {
    let world = World::start("ssh-exit", Login::Seeded).await;
    let edge = world.edge_url();
    for (email, action) in [("ann@corp.example", "terminate"), ("bob@corp.example", "lock")] {
        let id = world.seed_route(email, &["dev"], "echo", "echo.internal:7").await;
        let mut child = connect_command(&world.xdg, &["echo.internal:7", "--edge", &edge]).spawn().expect("connect");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        stdin.write_all(b"hi\n").await.expect("write");
        let mut back = [0u8; 3];
        tokio::time::timeout(WITHIN, stdout.read_exact(&mut back)).await.expect("echo in time").expect("echo");
        assert_eq!(&back, b"hi\n");
        let run = match action {
            "terminate" => world.plane.cli(&["sessions", "terminate", &id, "--reason", "stolen laptop"]).await,
            _ => world.plane.cli(&["users", "lock", email, "--reason", "investigation"]).await,
        };
        run.ok();
        let (code, _, stderr) = finish(child, WITHIN).await;
        assert_eq!(code, Some(2), "{stderr}");
        let expected = match action {
            "terminate" => "portcullis: session terminated by an administrator: stolen laptop",
            _ => "portcullis: user locked by an administrator: investigation",
        };
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
        drop(stdin);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_users_and_unknown_routes_are_refused_with_the_reason() {
    let world = World::start("ssh-denied", Login::Seeded).await;
    world.seed("eve@corp.example", &["visitors"]).await;
    let (code, _, stderr) = finish(world.ssh("echo hello"), LOGIN_WITHIN).await;
    assert_ne!(code, Some(0));
    assert!(stderr.contains("cannot reach ssh.internal:22: Access to `ssh.internal:22` denied"), "{stderr}");
    assert!(stderr.contains("HTTP 403, forbidden"), "{stderr}");
    assert!(!world.sshd.log_text().contains("Accepted publickey"), "sshd never saw the user");

    let edge = world.edge_url();
    let child = connect_command(&world.xdg, &["nowhere.internal:22", "--edge", &edge]).spawn().expect("connect");
    let (code, _, stderr) = finish(child, WITHIN).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("No TCP route is named `nowhere.internal:22`") && stderr.contains("HTTP 404"), "{stderr}");
    drop(world.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_serves_local_clients_until_access_ends() {
    let world = World::start("ssh-listen", Login::Seeded).await;
    world.seed_route("ann@corp.example", &["dev"], "echo", "echo.internal:7").await;
    let local = free_port();
    let listen = format!("127.0.0.1:{local}");
    let edge = world.edge_url();
    let mut child = connect_command(&world.xdg, &["echo.internal:7", "--edge", &edge, "--listen", &listen])
        .spawn()
        .expect("connect --listen");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    line_with(&mut stderr, "listening on", WITHIN, &mut seen).await;
    let mut clients = Vec::new();
    for text in [&b"first"[..], b"second"] {
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", local)).await.expect("local client");
        client.write_all(text).await.expect("write");
        let mut back = vec![0u8; text.len()];
        tokio::time::timeout(WITHIN, client.read_exact(&mut back)).await.expect("echo in time").expect("echo");
        assert_eq!(back, text);
        clients.push(client);
    }
    world.plane.cli(&["users", "terminate", "ann@corp.example", "--reason", "offboarding"]).await.ok();
    let status = tokio::time::timeout(WITHIN, child.wait()).await.expect("exits in time").expect("status");
    while let Ok(Some(line)) = stderr.next_line().await {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert_eq!(status.code(), Some(2), "{seen}");
    assert!(seen.contains("session terminated by an administrator: offboarding"), "{seen}");
    for mut client in clients {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(WITHIN, client.read(&mut buf)).await.expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "the local client's flow is closed");
    }
}
