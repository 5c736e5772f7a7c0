//! Clients that hold a connection to the edge open, as browsers and apps
//! do: an HTTP/1.1 keep-alive connection (raw TCP, so nothing reconnects
//! behind the test's back), a websocket, and an HTTP/2 stream over TLS
//! (ALPN `h2`). Each can wait, up to a deadline, for the edge to close it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::sessions::HOST;

/// An HTTP/1.1 connection kept alive between requests.
pub struct KeepAlive {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl KeepAlive {
    /// Connects to the edge's plain listener.
    pub async fn open(edge: SocketAddr) -> Self {
        Self { stream: TcpStream::connect(edge).await.expect("connect to the edge"), buffer: Vec::new() }
    }

    /// GET `path` on [`HOST`] with `cookie`: (status, body), or why not.
    pub async fn get(&mut self, path: &str, cookie: &str) -> Result<(u16, String), String> {
        let request = format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\ncookie: {cookie}\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        self.buffer.drain(..end + 4);
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(format!("head: {head}"))?;
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .ok_or_else(|| format!("no content-length in {head}"))?;
        while self.buffer.len() < length {
            self.fill().await?;
        }
        let body = String::from_utf8_lossy(&self.buffer[..length]).into_owned();
        self.buffer.drain(..length);
        Ok((status, body))
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Err("the edge closed the connection".into()),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Waits up to `limit` for the edge to close the idle connection; how long it took.
    pub async fn closed_within(&mut self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(limit, self.stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => Ok(started.elapsed()),
            Ok(Ok(n)) => Err(format!("the idle connection received {n} bytes instead of closing")),
            Err(_) => Err(format!("the keep-alive connection was still open after {limit:?}")),
        }
    }
}

/// A websocket through the edge to the upstream's echo.
pub struct WebSocket(WebSocketStream<TcpStream>);

impl WebSocket {
    /// Opens `ws://HOST/ws` on the edge's plain listener with `cookie`.
    pub async fn open(edge: SocketAddr, cookie: &str) -> Self {
        let mut request = format!("ws://{HOST}/ws").into_client_request().expect("a websocket request");
        request.headers_mut().insert("cookie", cookie.parse().expect("a cookie header"));
        let tcp = TcpStream::connect(edge).await.expect("connect to the edge");
        let (socket, response) = tokio_tungstenite::client_async(request, tcp).await.expect("the websocket handshake");
        assert_eq!(response.status(), 101);
        Self(socket)
    }

    /// Sends `text` and returns the echo.
    pub async fn echo(&mut self, text: &str) -> String {
        self.0.send(Message::text(text)).await.expect("send on the websocket");
        match tokio::time::timeout(Duration::from_secs(5), self.0.next()).await {
            Ok(Some(Ok(Message::Text(echo)))) => echo.to_string(),
            other => panic!("no echo: {other:?}"),
        }
    }

    /// Waits up to `limit` for the edge to close the websocket; how long it took.
    pub async fn closed_within(&mut self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        match tokio::time::timeout(limit, self.0.next()).await {
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => Ok(started.elapsed()),
            Ok(Some(Ok(message))) => Err(format!("the websocket received {message:?} instead of closing")),
            Err(_) => Err(format!("the websocket was still open after {limit:?}")),
        }
    }
}

/// How a websocket ended, as the client saw it.
#[derive(Debug)]
pub struct Ending {
    /// The messages that arrived before the end (pings and pongs left out).
    pub messages: Vec<Message>,
    /// The close frame's code and reason, when one arrived.
    pub close: Option<(u16, String)>,
    /// How the stream ended after that (`None`: cleanly).
    pub error: Option<String>,
    /// From the call to the close frame (or to the end, without one).
    pub took: Duration,
}

impl WebSocket {
    /// Sends `text` without waiting for anything back.
    pub async fn send(&mut self, text: &str) {
        self.0.send(Message::text(text)).await.expect("send on the websocket");
    }

    /// Reads until the websocket ends (within `limit`, or panics): what
    /// arrived, the close frame if any, and how it ended.
    pub async fn ending(&mut self, limit: Duration) -> Ending {
        let started = Instant::now();
        let mut ending = Ending { messages: Vec::new(), close: None, error: None, took: Duration::ZERO };
        let read = async {
            loop {
                match self.0.next().await {
                    None => break,
                    Some(Err(error)) => {
                        ending.error = Some(error.to_string());
                        break;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        ending.took = started.elapsed();
                        let frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        ending.close = Some(frame.unwrap_or((1005, String::new())));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(message)) => ending.messages.push(message),
                }
            }
        };
        tokio::time::timeout(limit, read)
            .await
            .unwrap_or_else(|_| panic!("the websocket did not end within {limit:?}"));
        if ending.close.is_none() {
            ending.took = started.elapsed();
        }
        ending
    }
}

/// One HTTP/2 request over TLS whose response is still streaming.
pub struct H2Stream {
    body: h2::RecvStream,
    /// Ends when the HTTP/2 connection does.
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
    /// The response's status.
    pub status: u16,
    /// The first chunk of the body.
    pub first: Bytes,
}

impl H2Stream {
    /// GET `https://HOST{path}` with `cookie` on a new HTTP/2 connection to
    /// the edge's HTTPS listener (the certificate is not checked: this is
    /// about the kill, not TLS); returns once the first body chunk arrived.
    pub async fn open(edge: SocketAddr, path: &str, cookie: &str) -> Self {
        use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
        let mut builder = SslConnector::builder(SslMethod::tls_client()).expect("TLS client");
        builder.set_verify(SslVerifyMode::NONE);
        builder.set_alpn_protos(b"\x02h2").expect("ALPN");
        let ssl = builder.build().configure().expect("TLS").into_ssl(HOST).expect("SNI");
        let tcp = TcpStream::connect(edge).await.expect("connect to the edge's HTTPS listener");
        let mut tls = tokio_openssl::SslStream::new(ssl, tcp).expect("TLS stream");
        Pin::new(&mut tls).connect().await.expect("the TLS handshake");
        assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"h2"[..]), "the edge offers h2");
        let (mut client, connection) = h2::client::handshake(tls).await.expect("the HTTP/2 handshake");
        let connection = tokio::spawn(connection);
        let request =
            http::Request::get(format!("https://{HOST}{path}")).header("cookie", cookie).body(()).expect("a request");
        let (response, _) = client.send_request(request, true).expect("send the request");
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("an answer within 5 s")
            .expect("an HTTP/2 response");
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let first = match tokio::time::timeout(Duration::from_secs(5), body.data()).await {
            Ok(Some(Ok(chunk))) => chunk,
            other => panic!("no first chunk (status {status}): {other:?}"),
        };
        let _ = body.flow_control().release_capacity(first.len());
        Self { body, connection, status, first }
    }

    /// Waits up to `limit` for the stream to break (chunks keep coming until
    /// then); how long it took, and how the HTTP/2 connection ended.
    pub async fn closed_within(&mut self, limit: Duration) -> Result<(Duration, String), String> {
        let started = Instant::now();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.body.data()).await {
                Ok(Some(Ok(chunk))) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                }
                Ok(Some(Err(error))) => {
                    let took = started.elapsed();
                    let left = limit.saturating_sub(took);
                    let ended = match tokio::time::timeout(left, &mut self.connection).await {
                        Ok(Ok(Err(error))) => format!("connection error: {error}"),
                        Ok(Ok(Ok(()))) => "connection ended".into(),
                        Ok(Err(join)) => format!("connection task: {join}"),
                        Err(_) => format!("the connection outlived the stream (stream error: {error})"),
                    };
                    return Ok((took, ended));
                }
                Ok(None) => return Err("the stream ended normally: the endless body cannot end".into()),
                Err(_) => return Err(format!("the HTTP/2 stream was still open after {limit:?}")),
            }
        }
    }
}
