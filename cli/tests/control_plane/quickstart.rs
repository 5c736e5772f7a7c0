//! `portcullis quickstart` end to end, as the README's tour runs it: the
//! command starts everything; a scripted browser logs in as bob through the
//! development IdP and opens the demo app's websocket through the edge; bob
//! is terminated through the API over HTTPS (trusting the CA the banner
//! prints) with the printed admin token; his websocket closes; Ctrl-C stops
//! everything.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::cookie::CookieStore;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{command, TempDir};

/// Six consecutive free ports (bound together, then released).
pub fn free_port_range() -> u16 {
    for _ in 0..200 {
        let base = 20_000 + rand::random::<u16>() % 40_000;
        let held: Vec<_> = (0..6).map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if held.len() == 6 {
            return base;
        }
    }
    panic!("no six consecutive free ports");
}

/// A running `portcullis quickstart`.
pub struct Quickstart {
    child: Child,
    /// The admin token its banner printed.
    pub admin_token: String,
    /// Its banner, line by line.
    pub output: Vec<String>,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the quickstart and reads its banner.
pub fn start(dir: &TempDir, base: u16) -> Quickstart {
    let mut child = command()
        .args(["quickstart", "--data"])
        .arg(dir.path().join("data"))
        .args(["--port-base", &base.to_string()])
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("quickstart.log")).expect("log file"))
        .spawn()
        .expect("spawn portcullis quickstart");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut output = Vec::new();
    while Instant::now() < deadline {
        match lines_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let done = line.contains("Press Ctrl-C to stop.");
                output.push(line);
                if done {
                    let token = output
                        .iter()
                        .find_map(|l| l.trim().strip_prefix("Admin token: "))
                        .expect("the banner prints the admin token")
                        .to_owned();
                    std::thread::spawn(move || while lines_rx.recv().is_ok() {});
                    return Quickstart { child, admin_token: token, output };
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    let logs = std::fs::read_to_string(dir.path().join("data/control-plane.log")).unwrap_or_default()
                        + &std::fs::read_to_string(dir.path().join("data/edge.log")).unwrap_or_default();
                    panic!("quickstart exited with {status}:\n{}\n{logs}", output.join("\n"));
                }
            }
            Err(_) => break,
        }
    }
    let status = child.wait().ok();
    let log = std::fs::read_to_string(dir.path().join("quickstart.log")).unwrap_or_default();
    panic!("quickstart did not print its banner (exit: {status:?}):\n{}\n{log}", output.join("\n"));
}

/// The value after `label` on the banner line that starts with it.
pub fn banner_value(banner: &str, label: &str) -> String {
    let line =
        banner.lines().map(str::trim).find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("{label}: {banner}"));
    line[label.len()..].trim().to_owned()
}

/// The CA's directory is 0700 and the private keys beside it 0600.
fn assert_private(ca: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
    let dir = ca.parent().expect("the CA's directory");
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for key in ["ca-key.pem", "server-key.pem"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The hidden fields of the development IdP's login form.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), unescape(value)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_tour_works_from_one_command() {
    let dir = TempDir::new("quickstart");
    let base = free_port_range();
    let quickstart = start(&dir, base);
    let (cp, idp, edge) = (base, base + 2, base + 4);
    let banner = quickstart.output.join("\n");
    assert!(banner.contains(&format!("http://demo.localhost:{edge}/websocket")), "{banner}");

    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .resolve("demo.localhost", ([127, 0, 0, 1], edge).into())
        .build()
        .expect("client");
    let get = |url: String| {
        let browser = &browser;
        async move { browser.get(&url).header("accept", "text/html").send().await.expect(&url) }
    };
    let location = |r: &reqwest::Response| r.headers()["location"].to_str().expect("location").to_owned();
    let demo = format!("http://demo.localhost:{edge}");

    // 1. bob opens the websocket page: the edge sends him to log in.
    let first = get(format!("{demo}/websocket")).await;
    assert_eq!(first.status(), 302);
    let to_login = get(format!("{demo}{}", location(&first))).await;
    let to_idp = location(&to_login);
    assert!(to_idp.starts_with(&format!("http://127.0.0.1:{idp}/authorize?")), "{to_idp}");
    let login_page = get(to_idp).await.text().await.expect("login page");
    assert!(login_page.contains("Development identity provider"), "the development banner is shown");
    let mut form = hidden_fields(&login_page);
    form.push(("user".into(), "bob".into()));
    let logged_in =
        browser.post(format!("http://127.0.0.1:{idp}/authorize")).form(&form).send().await.expect("post login");
    assert_eq!(logged_in.status(), 303, "{}", logged_in.text().await.unwrap_or_default());
    let callback = get(location(&logged_in)).await;
    assert_eq!(callback.status(), 302, "the edge completes the login");
    assert_eq!(location(&callback), "/websocket");
    let page = get(format!("{demo}/websocket")).await;
    assert_eq!(page.status(), 200);
    let whoami = get(format!("{demo}/")).await.text().await.expect("page");
    assert!(whoami.contains("Hello, bob@corp.example"), "{whoami}");

    // 2. his websocket through the edge.
    let session_cookie = jar
        .cookies(&reqwest::Url::parse(&demo).expect("URL"))
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .expect("the edge's session cookie");
    let mut request = format!("ws://127.0.0.1:{edge}/ws").into_client_request().expect("ws request");
    request.headers_mut().insert("host", format!("demo.localhost:{edge}").parse().expect("host"));
    request.headers_mut().insert("cookie", session_cookie.parse().expect("cookie"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket through the edge");
    socket.send(Message::text("hello")).await.expect("send");
    let echo = socket.next().await.expect("echo").expect("frame");
    assert_eq!(echo.into_text().expect("text").as_str(), "hello");

    // 3. alice's admin token ends bob's sessions over HTTPS, trusting the
    // CA the banner printed; the websocket closes.
    let api = banner_value(&banner, "Admin API");
    assert_eq!(api, format!("https://127.0.0.1:{cp}/api/v1"), "{banner}");
    let ca = std::path::PathBuf::from(banner_value(&banner, "CA certificate:"));
    assert!(banner.contains("--ca-file"), "the banner says how to use the CA: {banner}");
    assert_private(&ca);
    let listed = command()
        // The banner's own `…/api/v1` URL works as --url.
        .args(["sessions", "list", "--json", "--url", &api, "--ca-file"])
        .arg(&ca)
        .env("PORTCULLIS_TOKEN", &quickstart.admin_token)
        .output()
        .expect("portcullis sessions list");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("bob@corp.example"), "bob's session is listed");
    let trusting = reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("the CA file")).expect("PEM");
    let answer = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(trusting)
        .build()
        .expect("client")
        .post(format!("{api}/users/terminate?wait=true"))
        .bearer_auth(&quickstart.admin_token)
        .json(&json!({ "email": "bob@corp.example", "reason": "the tour" }))
        .send()
        .await
        .expect("terminate");
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap_or_default());
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("the websocket closes");
    assert!(!matches!(closed, Some(Ok(Message::Text(_)))), "closed, not echoing: {closed:?}");

    // 4. Ctrl-C stops everything.
    let mut quickstart = quickstart;
    let pid = quickstart.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = quickstart.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "quickstart did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    for port in [cp, edge] {
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} is free again: its process stopped");
    }
}
