//! A small upstream app for the edge tests: `/hello` echoes the `x-…`
//! headers it received as JSON, `/stream` sends a line every 100 ms for a
//! minute, and `/ws` is a websocket echo. HTTP/1.1 keep-alive is supported.

use std::collections::BTreeMap;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running upstream.
pub struct Upstream {
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Upstream {
    /// Starts serving on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let port = listener.local_addr().expect("upstream address").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        Self { port }
    }
}

/// Completes a websocket upgrade on a connection whose request head was
/// already read (the edge reuses upstream connections, so an upgrade can
/// arrive after other requests), then echoes text messages.
async fn websocket_echo(mut stream: TcpStream, key: &str) {
    // Answers at once, like any app on the same host: the edge proxies
    // upgrades itself because pingora 0.9.1 loses this race
    // (cloudflare/pingora#946; see proxy/src/upgrade.rs).
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(stream, role, None).await;
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() && ws.send(message).await.is_err() {
            return;
        }
    }
}

async fn serve(mut stream: TcpStream) {
    let mut buffer = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                buffer.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let all: BTreeMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        if all.get("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let key = all.get("sec-websocket-key").cloned().unwrap_or_default();
            return websocket_echo(stream, &key).await;
        }
        let headers: BTreeMap<&String, &String> = all.iter().filter(|(k, _)| k.starts_with("x-")).collect();
        if path.starts_with("/stream") {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for i in 0..600 {
                let line = format!("tick {i}\n");
                if stream.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes()).await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
            continue;
        }
        let body = serde_json::to_string(&headers).unwrap_or_default();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
