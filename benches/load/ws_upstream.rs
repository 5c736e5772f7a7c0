//! The websocket harnesses' upstream, in-process: a websocket echo on a
//! free loopback port. Plain HTTP requests get `200 ok` (keep-alive), so the
//! edge may reuse a connection for an upgrade. Also the client side: a
//! websocket opened through an edge to this echo with a session cookie
//! ([`open_through_edge`]).
//!
//! The 101 is sent 20 ms after the upgrade request, like an upstream across
//! a network: pingora 0.9.1 tears an upgrade down when the 101 is read
//! before the upgrade request's own empty body (cloudflare/pingora#946), and
//! a loopback upstream answering within microseconds hits that race. The
//! delay is in the websocket's opening only, never in what is measured.

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::processes::APP_HOST;

/// A websocket through an edge, client side.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the upstream waits before its 101 (see the module doc).
const UPGRADE_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Starts serving; returns the port.
pub async fn start() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    Ok(port)
}

/// Opens a websocket to `/ws` on `APP_HOST` through the edge on `port` with
/// `token` as the session cookie, and checks one echo on it.
pub async fn open_through_edge(port: u16, token: &str) -> anyhow::Result<Socket> {
    let mut request = format!("ws://127.0.0.1:{port}/ws").into_client_request()?;
    request.headers_mut().insert("host", APP_HOST.parse()?);
    request.headers_mut().insert("cookie", format!("__Host-portcullis_session.app={token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    socket.send(Message::text("ping")).await?;
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.as_str() == "ping" => Ok(socket),
        other => bail!("no echo: {other:?}"),
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
        let header = |name: &str| {
            head.lines().skip(1).find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
        };
        if header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let key = header("sec-websocket-key").unwrap_or_default();
            return echo(stream, &key).await;
        }
        if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await.is_err() {
            return;
        }
    }
}

async fn echo(mut stream: TcpStream, key: &str) {
    tokio::time::sleep(UPGRADE_DELAY).await;
    let accept = derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() && ws.send(message).await.is_err() {
            return;
        }
    }
}
