//! What the TCP-flow tests share: a policy with TCP routes, a TCP echo
//! upstream, sessions with chosen groups minted through the edge channel
//! (as an edge does after a login), and a raw `CONNECT` client that reads
//! the edge's answer head and hands back the connection.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::ControlPlane;

/// A policy with `ssh` (ssh.internal:22, group `sre`, browser credentials)
/// and `echo` (echo.internal:7, group `staff`) TCP routes, an HTTP route
/// `app` for staff, and a TCP route `dead` whose upstream listens nowhere.
pub fn tcp_policy(ssh_port: u16, echo_port: u16, http_port: u16, dead_port: u16) -> String {
    format!(
        "version: 1
routes:
  - name: ssh
    tcp: ssh.internal:22
    upstream: 127.0.0.1:{ssh_port}
    rules:
      - name: sre
        allow: {{ groups_any: [sre], credential: [browser] }}
  - name: echo
    tcp: echo.internal:7
    upstream: 127.0.0.1:{echo_port}
    rules:
      - name: staff
        allow: {{ groups_any: [staff] }}
  - name: dead
    tcp: dead.internal:9
    upstream: 127.0.0.1:{dead_port}
    rules:
      - name: staff
        allow: {{ groups_any: [staff] }}
  - name: app
    host: app.corp.example
    upstream: http://127.0.0.1:{http_port}
    rules:
      - name: staff
        allow: {{ groups_any: [staff] }}
"
    )
}

/// A TCP echo server on a free loopback port.
pub async fn echo_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo upstream");
    let port = listener.local_addr().expect("echo address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    port
}

/// Creates a session for `email` in `groups`, as the edge's login does;
/// returns (session id, token).
pub async fn session(plane: &ControlPlane, email: &str, groups: &[&str], route: &str) -> (String, String) {
    let body = json!({
        "subject": format!("sub-{email}"), "email": email, "groups": groups,
        "idp_issuer": "https://idp.corp.example", "auth_time": chrono::Utc::now().timestamp(),
        "route": route, "source_address": "127.0.0.1", "user_agent": "tunnel-test",
    });
    let answer = crate::edge_node::create_session(plane, &body).await;
    (answer["session_id"].as_str().expect("id").to_owned(), answer["token"].as_str().expect("token").to_owned())
}

/// The edge's answer to a CONNECT, and the connection.
pub struct Connected<S> {
    /// Status code.
    pub status: u16,
    /// The response head, as text.
    pub head: String,
    /// The body of a refusal.
    pub body: String,
    /// The connection (carrying the flow after a 200).
    pub stream: S,
}

/// Sends `CONNECT target` with `headers` over `stream` and reads the answer.
pub async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &str,
    headers: &[(&str, &str)],
) -> Connected<S> {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so nothing after the head is consumed.
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut byte))
            .await
            .expect("the edge answers the CONNECT")
            .expect("read the answer");
        assert!(n == 1, "the edge closed before answering: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("text head");
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if status != 200 {
        stream.read_exact(&mut body).await.expect("refusal body");
    }
    Connected { status, head, body: String::from_utf8_lossy(&body).into_owned(), stream }
}

/// `CONNECT target` to the edge's plain-HTTP port.
pub async fn connect(edge_port: u16, target: &str, headers: &[(&str, &str)]) -> Connected<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", edge_port)).await.expect("reach the edge");
    let _ = stream.set_nodelay(true);
    connect_over(stream, target, headers).await
}

/// `Proxy-Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Reads until the peer closes (or fails); `Some(bytes read)` if that
/// happens within `within`.
pub async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> Option<usize> {
    tokio::time::timeout(within, async {
        let mut total = 0;
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .ok()
}

/// Writes a `portcullis connect` session cache under `xdg` (as
/// `XDG_CONFIG_HOME`) holding `token` for `edge_url`.
pub fn seed_cache(xdg: &std::path::Path, edge_url: &str, target: &str, session_id: &str, token: &str) {
    let dir = xdg.join("portcullis");
    std::fs::create_dir_all(&dir).expect("create the cache directory");
    let path = dir.join("sessions.json");
    let mut file: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| json!({ "sessions": {} }));
    // Sessions are kept per edge and target: a session token counts only on its route.
    file["sessions"][format!("{edge_url} {target}")] = json!({ "token": token, "session_id": session_id });
    std::fs::write(path, file.to_string()).expect("write the session cache");
}

/// `portcullis connect ARGS` with `XDG_CONFIG_HOME=xdg`, no browser, no
/// `PORTCULLIS_*` from the test's environment; standard streams piped.
pub fn connect_command(xdg: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(crate::harness::binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PORTCULLIS_") {
            command.env_remove(name);
        }
    }
    command
        .arg("connect")
        .args(args)
        .arg("--no-browser")
        .env("XDG_CONFIG_HOME", xdg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads lines of `from` (into `seen`) until one contains `needle`;
/// returns that line. Panics after `within` or at the end of the stream.
pub async fn line_with<R: tokio::io::AsyncBufRead + Unpin>(
    from: &mut tokio::io::Lines<R>,
    needle: &str,
    within: Duration,
    seen: &mut String,
) -> String {
    let found = tokio::time::timeout(within, async {
        while let Ok(Some(line)) = from.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("the stream ended without a line containing {needle:?}:\n{seen}"),
        Err(_) => panic!("no line containing {needle:?} within {within:?}:\n{seen}"),
    }
}
