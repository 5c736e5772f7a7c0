//! TLS on every channel, with real processes and certificates the test
//! makes with the `openssl` command: the control plane serves HTTPS on both
//! listeners; the CLI reaches it with `--ca-file` and says clearly why not
//! without it or with the wrong CA; an edge streams, reports and asks the
//! session authority over HTTPS and serves requests; an edge that does not
//! trust the control plane's certificate (wrong CA, wrong pin) never
//! connects, says why in its log and stays unready; plain HTTP to or on a
//! non-loopback address is refused at start with status 64.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::edge_node::{login, EdgeNode};
use crate::harness::{command, free_port, ControlPlane, TempDir, EDGE_SECRET};
use crate::upstream::Upstream;

/// A CA and a server certificate it signed for 127.0.0.1 and localhost.
pub struct TestPki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let made = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
}

impl TestPki {
    /// Makes `<name>-ca.pem`, `<name>-cert.pem` and `<name>-key.pem` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let file = |what: &str| format!("{name}-{what}");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let subject = format!("/CN=Portcullis test CA {name}");
        let ca_key = file("ca-key.pem");
        let ca = file("ca.pem");
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject, "-keyout", &ca_key, "-out", &ca];
        args.extend(ec);
        openssl(&args, dir);
        let (request, key, cert, extensions) = (file("req.pem"), file("key.pem"), file("cert.pem"), file("ext.cnf"));
        let mut args = vec!["req", "-new", "-subj", "/CN=localhost", "-keyout", &key, "-out", &request];
        args.extend(ec);
        openssl(&args, dir);
        std::fs::write(
            dir.join(&extensions),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("extensions");
        openssl(
            &["x509", "-req", "-in", &request, "-CA", &ca, "-CAkey", &ca_key, "-set_serial", "7", "-days", "1"]
                .into_iter()
                .chain(["-extfile", extensions.as_str(), "-out", cert.as_str()])
                .collect::<Vec<_>>(),
            dir,
        );
        Self { ca: dir.join(ca), cert: dir.join(cert), key: dir.join(key) }
    }

    /// The CA's path as text.
    pub fn ca_arg(&self) -> String {
        self.ca.display().to_string()
    }

    /// The pin (`sha256//…`) of the server certificate's key.
    pub fn pin(&self) -> String {
        let pem = std::fs::read(&self.cert).expect("certificate");
        let der = openssl::x509::X509::from_pem(&pem).expect("PEM").to_der().expect("DER");
        portcullis_edge::channel_tls::pin_of(&der).expect("a pin")
    }
}

/// A control plane serving HTTPS with `pki`'s certificate, and its policy.
async fn plane(dir: &TempDir, pki: &TestPki, upstream: u16) -> ControlPlane {
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    let plane = ControlPlane::start_tls(&database, dir.path(), &pki.ca, &pki.cert, &pki.key).await;
    let policy = format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.corp.example\n    upstream: http://127.0.0.1:{upstream}\n    \
         rules:\n      - name: staff\n        allow: {{ email_domain: [corp.example], groups_any: [staff] }}\n      \
         - name: bots\n        allow:\n          credential: [service]\n"
    );
    plane.apply_policy(&policy).await;
    plane
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_https_with_the_ca_it_is_given_and_says_why_not_without_it() {
    let dir = TempDir::new("tls-cli");
    let (pki, wrong) = (TestPki::new(dir.path(), "right"), TestPki::new(dir.path(), "wrong"));
    let plane = plane(&dir, &pki, free_port()).await;
    assert!(plane.url.starts_with("https://"), "{}", plane.url);

    let listed = plane.cli(&["audit", "--json", "--ca-file", &pki.ca_arg()]).await;
    assert!(listed.json().to_string().contains("policy"), "the policy change is in the audit log: {listed:?}");
    let by_name = plane.url.replace("127.0.0.1", "localhost");
    let out = plane.cli(&["sessions", "list", "--url", &by_name, "--ca-file", &pki.ca_arg()]).await;
    out.ok();

    let without = plane.cli(&["sessions", "list"]).await;
    assert_eq!(without.code, Some(1), "{without:?}");
    let line = without.stderr.trim();
    assert!(line.starts_with(&format!("error: the control plane at {}", plane.url)), "{without:?}");
    assert!(line.contains("does not verify against the system's trusted CAs"), "{without:?}");
    assert!(line.contains("--ca-file") && line.contains("PORTCULLIS_CA_FILE"), "names the option: {without:?}");
    assert_eq!(line.lines().count(), 1, "{without:?}");

    let wrong_ca = plane.cli(&["sessions", "list", "--ca-file", &wrong.ca_arg()]).await;
    assert_eq!(wrong_ca.code, Some(1), "{wrong_ca:?}");
    assert!(wrong_ca.stderr.contains(&format!("the CA in --ca-file {}", wrong.ca_arg())), "{wrong_ca:?}");

    // The environment works as the option does.
    let ca = pki.ca_arg();
    let url = plane.url.clone();
    let from_env = tokio::task::spawn_blocking(move || {
        command()
            .args(["sessions", "list"])
            .env("PORTCULLIS_URL", url)
            .env("PORTCULLIS_CA_FILE", ca)
            .env("PORTCULLIS_TOKEN", crate::harness::ADMIN_TOKEN)
            .output()
            .expect("run portcullis")
    })
    .await
    .expect("CLI task");
    assert!(from_env.status.success(), "{}", String::from_utf8_lossy(&from_env.stderr));

    // Neither listener answers plain HTTP.
    for url in [&plane.url, &plane.edge_url] {
        let plain = url.replace("https://", "http://");
        let answer = reqwest::Client::new().get(format!("{plain}/readyz")).send().await;
        assert!(answer.is_err(), "{plain} answered plain HTTP: {answer:?}");
    }
}

/// `/readyz` of an edge's metrics listener: its status.
async fn readyz(metrics: u16) -> Option<u16> {
    let answer = reqwest::get(format!("http://127.0.0.1:{metrics}/readyz")).await.ok()?;
    Some(answer.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_streams_reports_and_asks_over_https_and_serves_requests() {
    let dir = TempDir::new("tls-edge");
    let pki = TestPki::new(dir.path(), "right");
    let upstream = Upstream::start().await;
    let plane = plane(&dir, &pki, upstream.port).await;
    let edge = EdgeNode::start_with(&plane, "edge-tls", dir.path(), &[("control_plane_ca", pki.ca_arg())]).await;

    let (_, token) = login(&plane, "ada@corp.example").await;
    let (status, seen) = edge.get("/hello", Some(&token), &[]).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["x-portcullis-email"], "ada@corp.example", "the upstream got the request and the identity");

    // A service token: the edge asks the session authority over HTTPS.
    let (status, bot) = plane.api_post("/service-tokens", &json!({ "name": "reports-bot" })).await.expect("token");
    assert_eq!(status, 201, "{bot}");
    let bearer = format!("Bearer {}", bot["token"].as_str().expect("token"));
    let (status, seen) = edge.get("/hello", None, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["x-portcullis-user"], "service:reports-bot");

    // A termination streams to the edge, which reports it applied it.
    let out = plane
        .cli(&[
            "users",
            "terminate",
            "ada@corp.example",
            "--reason",
            "tls",
            "--wait",
            "--json",
            "--ca-file",
            &pki.ca_arg(),
        ])
        .await;
    let receipt = &out.json()["receipt"];
    assert_eq!((receipt["edges_applied"].as_i64(), receipt["edges_total"].as_i64()), (Some(1), Some(1)), "{receipt}");
    assert_eq!(edge.get("/hello", Some(&token), &[]).await.0, 401, "the terminated session is refused");
}

/// Starts an edge of `plane` without waiting for it; (child, metrics port, log).
fn spawn_edge(
    plane: &ControlPlane,
    id: &str,
    dir: &Path,
    settings: &[(&str, String)],
) -> (std::process::Child, u16, PathBuf) {
    let metrics = free_port();
    let log = dir.join(format!("{id}.log"));
    let file = std::fs::File::create(&log).expect("edge log");
    let mut command = command();
    command
        .arg("edge")
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("PORTCULLIS_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))
        .env("PORTCULLIS_CONTROL_PLANE_URL", &plane.edge_url)
        .env("PORTCULLIS_SESSION_ISSUER", &plane.url)
        .env("PORTCULLIS_EDGE_SECRET", EDGE_SECRET)
        .env("PORTCULLIS_EDGE_ID", id)
        .env("PORTCULLIS_LOG", "info");
    for (key, value) in settings {
        command.env(format!("PORTCULLIS_{}", key.to_ascii_uppercase()), value);
    }
    let child = command.stdin(Stdio::null()).stdout(file.try_clone().expect("log")).stderr(file).spawn().expect("edge");
    (child, metrics, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_does_not_trust_the_control_plane_never_connects_and_stays_unready() {
    let dir = TempDir::new("tls-untrusted");
    let (pki, wrong) = (TestPki::new(dir.path(), "right"), TestPki::new(dir.path(), "wrong"));
    let plane = plane(&dir, &pki, free_port()).await;
    let cases = [
        ("edge-wrong-ca", vec![("control_plane_ca", wrong.ca_arg())], "does not verify against control_plane_ca"),
        (
            "edge-wrong-pin",
            vec![("control_plane_ca", pki.ca_arg()), ("control_plane_pins", wrong.pin())],
            "matches none of control_plane_pins",
        ),
    ];
    let mut edges = Vec::new();
    for (id, settings, says) in &cases {
        edges.push((id, spawn_edge(&plane, id, dir.path(), settings), says));
    }
    // The pinned key alone (no CA) is enough.
    let pinned = EdgeNode::start_with(&plane, "edge-pinned", dir.path(), &[("control_plane_pins", pki.pin())]).await;
    assert_eq!(readyz(pinned.metrics).await, Some(200));

    for (id, (mut child, metrics, log), says) in edges {
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(*says) {
                break text;
            }
            assert!(child.try_wait().expect("poll").is_none(), "{id} exited:\n{text}");
            assert!(Instant::now() < deadline, "{id} never said `{says}`:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(readyz(metrics).await, Some(503), "{id} has no snapshot, so it is not ready:\n{text}");
        let _ = child.kill();
        let _ = child.wait();
    }
    // The control plane never heard from them: no stream, no report.
    let edges = plane.api_get("/edges").await;
    let ids: Vec<&str> = edges.as_array().into_iter().flatten().filter_map(|e| e["id"].as_str()).collect();
    assert!(ids.contains(&"edge-pinned"), "{edges}");
    assert!(!ids.iter().any(|id| id.starts_with("edge-wrong")), "untrusting edges never connected: {edges}");
}

/// Runs `portcullis <role>` with `env` until it exits on its own.
fn refused_start(role: &str, env: &[(&str, String)]) -> crate::harness::Run {
    let dir = TempDir::new("tls-config");
    let mut cmd = command();
    cmd.arg(role).current_dir(dir.path()).env("PORTCULLIS_EDGE_SECRET", EDGE_SECRET);
    cmd.env("PORTCULLIS_DATABASE_URL", format!("sqlite://{}", dir.path().join("db.sqlite").display()));
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("poll").is_none() {
        assert!(Instant::now() < deadline, "portcullis {role} kept running with {env:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output").into()
}

fn assert_refused(run: &crate::harness::Run, key: &str, says: &[&str]) {
    assert_eq!(run.code, Some(64), "{run:?}");
    assert!(run.stderr.starts_with(&format!("error: configuration key `{key}`")), "names `{key}`: {run:?}");
    for words in says {
        assert!(run.stderr.contains(words), "says `{words}`: {run:?}");
    }
    assert_eq!(run.stderr.lines().count(), 1, "one line, no log noise: {run:?}");
}

#[test]
fn plain_http_off_loopback_and_unusable_tls_files_are_refused_with_status_64() {
    let any = format!("0.0.0.0:{}", free_port());
    let run = refused_start("control-plane", &[("PORTCULLIS_LISTEN", any)]);
    assert_refused(&run, "listen", &["not a loopback address", "tls_cert", "allow_plain_http = true"]);
    let run = refused_start("control-plane", &[("PORTCULLIS_EDGE_LISTEN", format!("0.0.0.0:{}", free_port()))]);
    assert_refused(&run, "edge_listen", &["allow_plain_http"]);
    let missing = [("PORTCULLIS_TLS_CERT", "/nonexistent/cert.pem".to_owned()), ("PORTCULLIS_TLS_KEY", "/k".into())];
    assert_refused(&refused_start("control-plane", &missing), "tls_cert", &["/nonexistent/cert.pem"]);
    let run = refused_start("control-plane", &[("PORTCULLIS_TLS_CERT", "/c.pem".to_owned())]);
    assert_refused(&run, "tls_key", &["required with tls_cert"]);

    let run = refused_start("edge", &[("PORTCULLIS_CONTROL_PLANE_URL", "http://10.1.2.3:7401".to_owned())]);
    assert_refused(&run, "control_plane_url", &["http://10.1.2.3:7401", "https://", "allow_plain_http = true"]);
    let urls = "https://cp-1.internal:7401,http://cp-2.internal:7401".to_owned();
    assert_refused(&refused_start("edge", &[("PORTCULLIS_CONTROL_PLANE_URLS", urls)]), "control_plane_urls", &[]);
    let ca = [
        ("PORTCULLIS_CONTROL_PLANE_URL", "https://127.0.0.1:7401".to_owned()),
        ("PORTCULLIS_CONTROL_PLANE_CA", "/nonexistent/ca.pem".to_owned()),
    ];
    assert_refused(&refused_start("edge", &ca), "control_plane_ca", &["/nonexistent/ca.pem"]);
}
