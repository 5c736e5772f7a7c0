//! TCP flows through a real edge with `CONNECT`: unknown route 404, no or a
//! dead credential 407, denied 403, upstream down 502, an oversized head
//! 431; allowed flows are piped both ways (1 GiB through an echo upstream
//! with the same SHA-256 both ways) and are closed when the user is
//! terminated or the policy drops their group; `/.portcullis/session` says
//! why; flows are counted in `/metrics` and land in the audit log; plain HTTP
//! on the same listener is untouched, and CONNECT works over HTTPS too (raw,
//! and with `portcullis connect --ca-cert`).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::edge_node::{certificate, EdgeNode};
use crate::harness::{free_port, ControlPlane, TempDir};
use crate::tunnel_kit::{
    bearer, closed_within, connect, connect_command, connect_over, echo_upstream, seed_cache, session, tcp_policy,
};
use crate::upstream::Upstream;

const WITHIN: Duration = Duration::from_secs(5);

struct World {
    plane: ControlPlane,
    edge: EdgeNode,
    dir: TempDir,
    echo: u16,
    _upstream: Upstream,
}

async fn world(label: &str, settings: &[(&str, String)]) -> World {
    let dir = TempDir::new(label);
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    let echo = echo_upstream().await;
    plane.apply_policy(&tcp_policy(free_port(), echo, upstream.port, free_port())).await;
    let edge = EdgeNode::start_with(&plane, label, dir.path(), settings).await;
    World { plane, edge, dir, echo, _upstream: upstream }
}

async fn echo_once<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S, text: &[u8]) {
    stream.write_all(text).await.expect("write through the tunnel");
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(WITHIN, stream.read_exact(&mut back)).await.expect("echo in time").expect("echo");
    assert_eq!(back, text);
}

async fn session_status(edge: &EdgeNode, token: &str, target: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(edge.url(&format!("/.portcullis/session?target={target}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /.portcullis/session");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_answered_by_route_credential_and_policy_and_pipes_when_allowed() {
    let w = world("tunnel-answers", &[]).await;
    let port = w.edge.port;
    let (_, ann) = session(&w.plane, "ann@corp.example", &["staff"], "echo").await;
    let (_, eve) = session(&w.plane, "eve@corp.example", &["visitors"], "echo").await;
    let ann_auth = bearer(&ann);

    let unknown = connect(port, "nowhere.internal:22", &[("Proxy-Authorization", &ann_auth)]).await;
    assert_eq!(unknown.status, 404, "{}", unknown.head);
    assert!(unknown.body.contains("No TCP route is named `nowhere.internal:22`"), "{}", unknown.body);
    assert_eq!(unknown.body.lines().count(), 1, "one line: {:?}", unknown.body);
    let http_host = connect(port, "app.corp.example:80", &[("Proxy-Authorization", &ann_auth)]).await;
    assert_eq!(http_host.status, 404, "an HTTP route is not a TCP route: the edge is no open proxy");

    let anonymous = connect(port, "echo.internal:7", &[]).await;
    assert_eq!(anonymous.status, 407, "{}", anonymous.head);
    assert!(anonymous.head.contains("Proxy-Authenticate: Bearer realm=\"portcullis\""), "{}", anonymous.head);
    let forged = connect(port, "echo.internal:7", &[("Proxy-Authorization", "Bearer not.a.token")]).await;
    assert_eq!(forged.status, 407, "{}", forged.body);
    assert!(forged.body.contains("refused"), "{}", forged.body);

    let denied = connect(port, "echo.internal:7", &[("Proxy-Authorization", &bearer(&eve))]).await;
    assert_eq!(denied.status, 403, "{}", denied.head);
    assert!(denied.body.contains("denied"), "{}", denied.body);

    let elsewhere = connect(port, "dead.internal:9", &[("Proxy-Authorization", &ann_auth)]).await;
    assert_eq!(elsewhere.status, 407, "a session token counts only on its own route: {}", elsewhere.head);
    let (_, ann_dead) = session(&w.plane, "ann@corp.example", &["staff"], "dead").await;
    let down = connect(port, "dead.internal:9", &[("Proxy-Authorization", &bearer(&ann_dead))]).await;
    assert_eq!(down.status, 502, "{}", down.head);
    assert!(down.body.contains("cannot be reached"), "{}", down.body);

    let mut flow = connect(port, "echo.internal:7", &[("Proxy-Authorization", &ann_auth)]).await;
    assert_eq!(flow.status, 200, "{}{}", flow.head, flow.body);
    assert!(flow.head.starts_with("HTTP/1.1 200 Connection established\r\n"), "{}", flow.head);
    echo_once(&mut flow.stream, b"ping\n").await;
    echo_once(&mut flow.stream, &[7u8; 100_000]).await;
    let mut bearer_flow = connect(port, "ECHO.internal:7", &[("Authorization", &ann_auth)]).await;
    assert_eq!(bearer_flow.status, 200, "Authorization: Bearer, and names are case-insensitive");
    echo_once(&mut bearer_flow.stream, b"pong").await;
    let cookie = format!("__Host-portcullis_session.echo={ann}");
    let mut cookie_flow = connect(port, "echo.internal:7", &[("Cookie", &cookie)]).await;
    assert_eq!(cookie_flow.status, 200, "the session cookie");
    echo_once(&mut cookie_flow.stream, b"cookie").await;

    let filler = "x".repeat(17 * 1024);
    let huge = connect(port, "echo.internal:7", &[("X-Filler", &filler)]).await;
    assert_eq!(huge.status, 431, "{}", huge.head);

    // Plain HTTP on the same listener, keep-alive included, is untouched
    // (with a session of the HTTP route: the echo route's session is not valid there).
    let (_, ann_app) = session(&w.plane, "ann@corp.example", &["staff"], "app").await;
    let cookie = format!("__Host-portcullis_session.app={ann_app}");
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .get(w.edge.url("/hello"))
            .header("host", "app.corp.example")
            .header("cookie", &cookie)
            .send()
            .await
            .expect("HTTP through the edge");
        assert_eq!(response.status().as_u16(), 200);
    }

    let metrics = w.edge.metrics_text().await;
    for line in [
        "portcullis_edge_tunnel_flows_total{outcome=\"allow\",route=\"echo\"} 3",
        "portcullis_edge_tunnel_flows_total{outcome=\"deny\",route=\"echo\"} 1",
        "portcullis_edge_tunnel_flows_total{outcome=\"no-route\",route=\"\"} 2",
        "portcullis_edge_tunnel_flows_total{outcome=\"upstream-error\",route=\"dead\"} 1",
        "portcullis_edge_tunnel_open_flows 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.contains("portcullis_edge_tunnel_bytes_total{direction=\"up\",route=\"echo\"} 100015"),
        "{metrics}"
    );
    drop((flow, bearer_flow, cookie_flow));
    let deadline = Instant::now() + WITHIN;
    while !w.edge.metrics_text().await.contains("portcullis_edge_tunnel_flows_closed_total{route=\"echo\"} 3") {
        assert!(Instant::now() < deadline, "closed flows are counted:\n{}", w.edge.metrics_text().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + WITHIN;
    loop {
        let audit = w.plane.api_get("/audit?action=flow.close").await;
        if flows_in(&audit) == 3 {
            let reason = audit["entries"][0]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("route `echo` (echo.internal:7)") && reason.contains("bytes up"), "{reason}");
            assert_eq!(audit["entries"][0]["target"], "user:ann@corp.example");
            break;
        }
        assert!(Instant::now() < deadline, "three flows in flow.close audit entries: {audit}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = w.plane.api_get("/audit?action=flow.open").await;
    assert_eq!(flows_in(&opened), 3, "{opened}");
    let denials = w.plane.api_get("/audit?action=access.denied").await;
    assert!(denials.to_string().contains("eve@corp.example"), "the denied flow is audited: {denials}");
    drop(w.dir);
}

/// How many flows the flow.open / flow.close entries of an audit page count
/// (an entry stands for the flows of one session, route and source between
/// two reports of the edge: "flow closed …" or "3 flows closed …").
fn flows_in(page: &Value) -> u64 {
    let entries = page["entries"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .map(|entry| {
            let reason = entry["reason"].as_str().unwrap_or_default();
            let what = reason.split("): ").last().unwrap_or_default();
            what.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(1)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_goes_through_the_tunnel_and_back_unchanged() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let w = world("tunnel-bulk", &[]).await;
    let (_, ann) = session(&w.plane, "ann@corp.example", &["staff"], "echo").await;
    let flow = connect(w.edge.port, "echo.internal:7", &[("Proxy-Authorization", &bearer(&ann))]).await;
    assert_eq!(flow.status, 200, "{}", flow.body);
    let (mut read, mut write) = flow.stream.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut base = vec![0u8; CHUNK];
        rand::Rng::fill(&mut rand::thread_rng(), &mut base[..]);
        let mut hasher = openssl::sha::Sha256::new();
        for index in 0..CHUNKS {
            base[..8].copy_from_slice(&(index as u64).to_le_bytes());
            hasher.update(&base);
            write.write_all(&base).await.expect("send through the tunnel");
        }
        write.shutdown().await.expect("half-close");
        hasher.finish()
    });
    let mut hasher = openssl::sha::Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0usize;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(60), read.read(&mut buf))
            .await
            .expect("bytes keep coming")
            .expect("read through the tunnel");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        received += n;
    }
    let sent = writer.await.expect("writer");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(received, CHUNK * CHUNKS, "every byte came back");
    assert_eq!(hasher.finish(), sent, "the same SHA-256 both ways");
    println!("1 GiB up and back through the tunnel in {seconds:.1} s ({:.0} MiB/s each way)", 1024.0 / seconds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_the_user_or_dropping_their_group_closes_their_open_flows() {
    let w = world("tunnel-kills", &[]).await;
    let port = w.edge.port;
    let (_, ann) = session(&w.plane, "ann@corp.example", &["staff"], "echo").await;
    let (_, bob) = session(&w.plane, "bob@corp.example", &["staff"], "echo").await;
    let mut ann_flow = connect(port, "echo.internal:7", &[("Proxy-Authorization", &bearer(&ann))]).await;
    let mut bob_flow = connect(port, "echo.internal:7", &[("Proxy-Authorization", &bearer(&bob))]).await;
    assert_eq!((ann_flow.status, bob_flow.status), (200, 200));
    echo_once(&mut ann_flow.stream, b"ann").await;
    echo_once(&mut bob_flow.stream, b"bob").await;
    let (status, body) = session_status(&w.edge, &ann, "echo.internal:7").await;
    assert_eq!((status, &body["state"], &body["target"]["allowed"]), (200, &"active".into(), &true.into()), "{body}");

    let run = w.plane.cli(&["users", "terminate", "ann@corp.example", "--reason", "stolen laptop"]).await;
    run.ok();
    assert!(closed_within(&mut ann_flow.stream, WITHIN).await.is_some(), "ann's flow is closed");
    echo_once(&mut bob_flow.stream, b"still here").await;
    let (status, body) = session_status(&w.edge, &ann, "echo.internal:7").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "session_terminated", "{body}");
    assert_eq!(body["error"]["message"], "session terminated by an administrator: stolen laptop");
    let again = connect(port, "echo.internal:7", &[("Proxy-Authorization", &bearer(&ann))]).await;
    assert_eq!(again.status, 407, "a terminated session opens no new flow: {}", again.body);

    // The policy stops allowing staff: bob's flow is closed, his session lives on.
    let echo_port = w.echo;
    let policy = tcp_policy(free_port(), echo_port, free_port(), free_port()).replace(
        "    rules:\n      - name: staff\n        allow: { groups_any: [staff] }\n  - name: dead",
        "    rules:\n      - name: ops\n        allow: { groups_any: [ops] }\n  - name: dead",
    );
    assert!(policy.contains("name: ops"), "the policy edit applies");
    w.plane.apply_policy(&policy).await;
    assert!(closed_within(&mut bob_flow.stream, WITHIN).await.is_some(), "bob's flow is closed by the policy change");
    let (status, body) = session_status(&w.edge, &bob, "echo.internal:7").await;
    assert_eq!((status, &body["target"]["allowed"]), (200, &false.into()), "{body}");
    assert!(body["target"]["reason"].as_str().unwrap_or_default().contains("no rule"), "{body}");
    let metrics = w.edge.metrics_text().await;
    assert!(metrics.contains("portcullis_edge_kills_total{reason=\"user\"} 1"), "{metrics}");
    assert!(metrics.contains("portcullis_edge_kills_total{reason=\"policy_changed\"} 1"), "{metrics}");
    let deadline = Instant::now() + WITHIN;
    loop {
        let audit = w.plane.api_get("/audit?action=flow.close").await;
        let text = audit.to_string();
        if text.contains("closed by Portcullis: access ended") && text.matches("flow.close").count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the killed flows are audited as such: {audit}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_works_on_the_https_listener_too() {
    let dir = TempDir::new("tunnel-tls-certs");
    let (cert, key, pem) = certificate(&dir);
    let https_port = free_port();
    let settings = [("https_listen", format!("127.0.0.1:{https_port}")), ("tls_cert", cert.clone()), ("tls_key", key)];
    let w = world("tunnel-tls", &settings).await;
    let (session_id, ann) = session(&w.plane, "ann@corp.example", &["staff"], "echo").await;
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&pem).expect("PEM"))
        .build()
        .expect("TLS connector");
    let connector = tokio_native_tls::TlsConnector::from(connector);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https_port)).await.expect("reach the HTTPS listener");
    let tls = connector.connect("app.corp.example", tcp).await.expect("TLS handshake");
    let mut flow = connect_over(tls, "echo.internal:7", &[("Proxy-Authorization", &bearer(&ann))]).await;
    assert_eq!(flow.status, 200, "{}{}", flow.head, flow.body);
    echo_once(&mut flow.stream, b"over TLS").await;
    echo_once(&mut flow.stream, &[1u8; 300_000]).await;

    // `portcullis connect` to an https:// edge, trusting its certificate.
    let xdg = w.dir.path().join("xdg");
    let edge = format!("https://127.0.0.1:{https_port}");
    seed_cache(&xdg, &edge, "echo.internal:7", &session_id, &ann);
    let mut cli =
        connect_command(&xdg, &["echo.internal:7", "--edge", &edge, "--ca-cert", &cert]).spawn().expect("cli");
    let mut stdin = cli.stdin.take().expect("stdin");
    stdin.write_all(b"hello over tls\n").await.expect("write");
    drop(stdin);
    let output = tokio::time::timeout(WITHIN, cli.wait_with_output()).await.expect("in time").expect("connect");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello over tls\n", "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    let (status, _) = w
        .plane
        .api_post(&format!("/sessions/{session_id}/terminate"), &serde_json::json!({ "reason": "tls test" }))
        .await
        .expect("terminate");
    assert_eq!(status, 200);
    assert!(closed_within(&mut flow.stream, WITHIN).await.is_some(), "the TLS flow is closed too");
}
