//! The attacker's client: raw bytes over a `TcpStream` (so the request line
//! and every header are exactly what the case says) and a small HTTP/1.1
//! response reader that copes with pipelined answers, chunked bodies,
//! bodies delimited by close, and connections closed without an answer.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a case waits for an answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// One response as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The head as text.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Every value of `name` (lowercase).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status and the start of the body, for failure messages.
    pub fn summary(&self) -> String {
        let body = self.text();
        format!("{} {}", self.status, body.chars().take(160).collect::<String>().replace('\n', " "))
    }
}

/// A client connection to the edge.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read but not consumed.
    pub buffer: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    /// Connects to 127.0.0.1:`port`.
    pub async fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("reach the edge");
        let _ = stream.set_nodelay(true);
        Self { stream, buffer: Vec::new() }
    }

    /// Writes bytes (errors ignored: the edge may have closed already).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    async fn fill(&mut self, within: Duration) -> Result<bool, String> {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(within, self.stream.read(&mut chunk)).await {
            Err(_) => Err("no answer in time".into()),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(false),
            Ok(Ok(n)) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// After a 101: the connection as a websocket client (bytes already read put back).
    pub async fn into_websocket(
        self,
    ) -> tokio_tungstenite::WebSocketStream<impl AsyncRead + AsyncWrite + Unpin + Send> {
        let (read, write) = self.stream.into_split();
        let io = tokio::io::join(std::io::Cursor::new(self.buffer).chain(read), write);
        let role = tokio_tungstenite::tungstenite::protocol::Role::Client;
        tokio_tungstenite::WebSocketStream::from_raw_socket(io, role, None).await
    }

    /// Reads one response; `Ok(None)` when the edge closed without one.
    pub async fn response(&mut self, within: Duration) -> Result<Option<Response>, String> {
        let end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at;
            }
            if !self.fill(within).await? {
                return Ok(None);
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        self.buffer.drain(..end + 4);
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("not a status line: {head}"))?;
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut response = Response { status, headers, head, body: Vec::new() };
        if status < 200 || status == 204 || status == 304 {
            return Ok(Some(response));
        }
        let chunked = response.header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(at) = find(&self.buffer, b"\r\n") {
                        break at;
                    }
                    if !self.fill(within).await? {
                        return Ok(Some(response));
                    }
                };
                let line = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
                self.buffer.drain(..line_end + 2);
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| format!("bad chunk size line {line:?}"))?;
                while self.buffer.len() < size + 2 {
                    if !self.fill(within).await? {
                        return Ok(Some(response));
                    }
                }
                if size == 0 {
                    // No trailers from the edge: the empty line.
                    self.buffer.drain(..2);
                    return Ok(Some(response));
                }
                response.body.extend_from_slice(&self.buffer[..size]);
                self.buffer.drain(..size + 2);
            }
        }
        if let Some(length) = response.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buffer.len() < length {
                if !self.fill(within).await? {
                    break;
                }
            }
            let take = length.min(self.buffer.len());
            response.body = self.buffer.drain(..take).collect();
            return Ok(Some(response));
        }
        while self.fill(within).await.unwrap_or(false) {}
        response.body = std::mem::take(&mut self.buffer);
        Ok(Some(response))
    }
}

/// Sends `request` on a new connection and reads one response; status 0
/// when the edge closed without answering.
pub async fn exchange(port: u16, request: &[u8]) -> Result<Response, String> {
    let mut conn = Conn::open(port).await;
    conn.send(request).await;
    Ok(conn.response(ANSWER_WITHIN).await?.unwrap_or_default())
}

/// Builds `METHOD target HTTP/1.1` with `Host`, the headers in order and a body
/// (with its Content-Length when `body` is not empty and no header sets framing).
pub fn request(method: &str, target: &str, host: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    let framed = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding"));
    if !body.is_empty() && !framed {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// A GET on `host` with headers.
pub fn get(target: &str, host: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    request("GET", target, host, headers, "")
}
