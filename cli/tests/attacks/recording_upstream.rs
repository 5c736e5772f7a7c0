//! The upstream the attack suite sits behind the edge: a raw-TCP HTTP/1.1
//! server that records, for every request it parses, the exact request line,
//! every header as sent and the body (Content-Length or chunked), so cases
//! assert on what the upstream RECEIVED. It answers `200 ok`; after
//! `Upgrade: h2c` it answers 101 and speaks HTTP/2 (the `h2` crate),
//! recording those requests too; after `Upgrade: websocket` it answers a
//! correct 101 (a wrong `Sec-WebSocket-Accept` on `/ws-bad-accept`) and
//! echoes frames; on `/set-cookie` it tries to set the edge's cookies.
//! A TCP recorder counts the connections CONNECT flows open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a recorded request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// An HTTP/1.x request head.
    Http1,
    /// A request on an HTTP/2 connection reached through `Upgrade: h2c`.
    H2,
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP/1 or h2.
    pub proto: Proto,
    /// Method, as sent.
    pub method: String,
    /// The raw request target (h2: the URI's path and query).
    pub target: String,
    /// Every header: name as sent, value trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (chunked bodies de-chunked).
    pub body: Vec<u8>,
}

impl Recorded {
    /// Every value of header `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// Every `name=value` cookie of every `Cookie` header.
    pub fn cookies(&self) -> Vec<String> {
        self.all("cookie")
            .iter()
            .flat_map(|v| v.split(';'))
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    }

    /// One line for failure messages.
    pub fn describe(&self) -> String {
        let short = |v: &str| {
            if v.len() > 48 {
                format!("{}…", v.chars().take(48).collect::<String>())
            } else {
                v.to_owned()
            }
        };
        let headers: Vec<String> = self.headers.iter().map(|(n, v)| format!("{n}: {}", short(v))).collect();
        format!("{:?} {} {} [{}]", self.proto, self.method, self.target, headers.join(" | "))
    }
}

/// What the upstream received, shared with the test.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Recorded>>>);

impl Log {
    fn push(&self, request: Recorded) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(request);
    }

    /// The number of requests so far (a mark for [`Log::since`]).
    pub fn mark(&self) -> usize {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// The requests received after `mark`.
    pub fn since(&self, mark: usize) -> Vec<Recorded> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[mark..].to_vec()
    }
}

/// A running recording upstream.
pub struct RecordingUpstream {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// What it received.
    pub log: Log,
}

impl RecordingUpstream {
    /// Starts serving on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the recording upstream");
        let port = listener.local_addr().expect("upstream address").port();
        let log = Log::default();
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Self { port, log }
    }
}

/// A TCP echo upstream that counts the connections it accepted.
pub struct TcpRecorder {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

impl TcpRecorder {
    /// Starts echoing on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the TCP recorder");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Self { port, accepted }
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads more bytes into `buffer`; false at the end of the stream.
async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads a de-chunked body from `buffer` (refilled from `stream`).
async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = find(buffer, b"\r\n") {
                break at;
            }
            if buffer.len() > 64 * 1024 || !fill(stream, buffer).await {
                return None;
            }
        };
        let line = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        buffer.drain(..line_end + 2);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let end = loop {
                    if let Some(at) = find(buffer, b"\r\n") {
                        break at;
                    }
                    if !fill(stream, buffer).await {
                        return Some(body);
                    }
                };
                buffer.drain(..end + 2);
                if end == 0 {
                    return Some(body);
                }
            }
        }
        while buffer.len() < size + 2 {
            if !fill(stream, buffer).await {
                return None;
            }
        }
        body.extend_from_slice(&buffer[..size]);
        buffer.drain(..size + 2);
    }
}

/// The request head, parsed leniently so that whatever the edge sends is recorded.
fn parse_head(head: &[u8]) -> Recorded {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((name, value)) => (name.to_owned(), value.trim().to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect();
    Recorded { proto: Proto::Http1, method, target, headers, body: Vec::new() }
}

async fn serve(mut stream: TcpStream, log: Log) {
    let mut buffer = Vec::new();
    loop {
        let end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at;
            }
            if buffer.len() > 1024 * 1024 || !fill(&mut stream, &mut buffer).await {
                return;
            }
        };
        let mut request = parse_head(&buffer[..end]);
        buffer.drain(..end + 4);
        let chunked = request
            .all("transfer-encoding")
            .last()
            .is_some_and(|te| te.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked")));
        if chunked {
            match read_chunked(&mut stream, &mut buffer).await {
                Some(body) => request.body = body,
                None => {
                    log.push(request);
                    return;
                }
            }
        } else if let Some(length) = request.header("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
            while buffer.len() < length {
                if !fill(&mut stream, &mut buffer).await {
                    break;
                }
            }
            let take = length.min(buffer.len());
            request.body = buffer.drain(..take).collect();
        }
        let upgrade = request.header("upgrade").unwrap_or("").to_ascii_lowercase();
        let path = request.target.clone();
        let close = request.header("connection").is_some_and(|c| c.to_ascii_lowercase().contains("close"));
        let key = request.header("sec-websocket-key").map(str::to_owned);
        log.push(request);
        if upgrade.contains("h2c") {
            let head = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n";
            if stream.write_all(head).await.is_ok() {
                serve_h2(replay(stream, buffer), log).await;
            }
            return;
        }
        if upgrade.contains("websocket") {
            let accept = if path.contains("ws-bad-accept") {
                "dGhpcyBpcyBub3QgdGhlIGFjY2VwdA==".to_owned()
            } else {
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.unwrap_or_default().as_bytes())
            };
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).await.is_ok() {
                websocket_echo(replay(stream, buffer)).await;
            }
            return;
        }
        let mut response = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n");
        if path.starts_with("/set-cookie") {
            for cookie in [
                "portcullis_session.app=evil; Path=/",
                "__Host-portcullis_session.app=evil; Path=/; Secure",
                "portcullis_session=evil; Path=/",
                "portcullis_session_login_abc=evil; Path=/",
                "app=1",
            ] {
                response.push_str(&format!("set-cookie: {cookie}\r\n"));
            }
        }
        response.push_str("content-length: 2\r\n\r\nok");
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// The connection with the bytes already read put back in front.
fn replay(stream: TcpStream, read_ahead: Vec<u8>) -> impl AsyncRead + AsyncWrite + Unpin + Send {
    let (read, write) = stream.into_split();
    tokio::io::join(std::io::Cursor::new(read_ahead).chain(read), write)
}

async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S, log: Log) {
    let Ok(Ok(mut connection)) = tokio::time::timeout(Duration::from_secs(10), h2::server::handshake(io)).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        let (parts, mut body) = request.into_parts();
        let mut headers: Vec<(String, String)> = vec![];
        if let Some(authority) = parts.uri.authority() {
            headers.push((":authority".into(), authority.to_string()));
        }
        for (name, value) in &parts.headers {
            headers.push((name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()));
        }
        let target = parts.uri.path_and_query().map_or("/".to_owned(), |p| p.to_string());
        let mut recorded =
            Recorded { proto: Proto::H2, method: parts.method.to_string(), target, headers, body: vec![] };
        while let Some(Ok(chunk)) = body.data().await {
            recorded.body.extend_from_slice(&chunk);
        }
        log.push(recorded);
        let response = http::Response::builder().status(200).body(()).expect("h2 response");
        if let Ok(mut send) = respond.send_response(response, false) {
            let _ = send.send_data(bytes::Bytes::from_static(b"h2 ok"), true);
        }
    }
}

async fn websocket_echo<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, role, None).await;
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}
