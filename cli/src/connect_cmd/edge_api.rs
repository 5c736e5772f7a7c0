//! What `portcullis connect` asks of an edge: the login calls under
//! `/.portcullis/` (JSON over reqwest) and the tunnel itself — a TCP (or
//! TLS) connection to the edge's listener with `CONNECT host:port` and the
//! session token in `Proxy-Authorization`.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls_roots::{certificate_problem, untrusted, CaFile};

/// Largest response head the edge sends to a CONNECT.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Largest refusal body read.
const MAX_REFUSAL_BODY: usize = 4 * 1024;

/// A byte stream to the edge, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open tunnel: the stream, and upstream bytes that came with the `200`.
pub struct Tunnel {
    /// The connection, now carrying the flow.
    pub stream: Pin<Box<dyn Io>>,
    /// Bytes read past the response head.
    pub early: Vec<u8>,
}

/// Why the edge did not open a tunnel.
#[derive(Debug)]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// `X-Portcullis-Error`, if sent.
    pub code: String,
    /// The edge's one-line reason.
    pub message: String,
}

/// An answer of the edge's JSON endpoints.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body (`null` when not JSON).
    pub body: Value,
}

impl Answer {
    /// `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body.pointer("/error/code").and_then(Value::as_str).unwrap_or("")
    }

    /// `error.message` of an error answer, or a generic line.
    pub fn message(&self) -> String {
        self.body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(|| format!("the edge answered {}", self.status), str::to_owned)
    }
}

/// One edge, by its base URL.
pub struct EdgeApi {
    /// `http(s)://host:port`, no trailing slash.
    pub base: String,
    host: String,
    port: u16,
    tls: Option<tokio_native_tls::TlsConnector>,
    http: reqwest::Client,
    ca: Option<CaFile>,
}

impl EdgeApi {
    /// A client for `base`, trusting only the certificates of `ca_file`
    /// (PEM) for an https:// edge, or the system's roots without it.
    pub fn new(base: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).with_context(|| format!("--edge `{base}` is not a URL"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => bail!("--edge must be an http:// or https:// URL, not {other}://"),
        };
        let host = url.host_str().ok_or_else(|| anyhow!("--edge `{base}` has no host"))?.to_owned();
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let ca = ca_file.map(|path| CaFile::read(path, "--ca-file")).transpose()?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        let mut connector = native_tls::TlsConnector::builder();
        if let Some(ca) = &ca {
            http = ca.trust_in(http)?;
            ca.trust_in_native(&mut connector)?;
        }
        let tls = if tls {
            // No ALPN offered: the edge then speaks HTTP/1.1, which CONNECT needs.
            Some(tokio_native_tls::TlsConnector::from(connector.build().context("cannot set up TLS")?))
        } else {
            None
        };
        Ok(Self { base, host, port, tls, http: http.build().context("cannot build the HTTP client")?, ca })
    }

    /// The one-line error for a failure to reach the edge: a certificate
    /// that does not verify says so and names `--ca-file`.
    fn unreachable(&self, error: &(dyn std::error::Error + 'static)) -> anyhow::Error {
        match certificate_problem(error) {
            Some(problem) => {
                let server = format!("the edge at {}", self.base);
                anyhow!(untrusted(&server, &problem, self.ca.as_ref(), "--ca-file", "PORTCULLIS_EDGE_CA_FILE"))
            }
            None => anyhow!("cannot reach the edge at {}: {}", self.base, root_cause(error)),
        }
    }

    /// POSTs `body` to `/.portcullis{path}`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let request = self.http.post(format!("{}/.portcullis{path}", self.base)).json(body);
        self.send(request).await
    }

    /// GETs `/.portcullis{path}` with the session token.
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Answer> {
        let request = self.http.get(format!("{}/.portcullis{path}", self.base)).bearer_auth(token);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let response = request.header("accept", "application/json").send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Opens a tunnel to `target` with `token` (none: anonymous).
    pub async fn open(&self, target: &str, token: Option<&str>) -> anyhow::Result<Result<Tunnel, Refused>> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot reach the edge at {}", self.base))?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Pin<Box<dyn Io>> = match &self.tls {
            Some(connector) => Box::pin(connector.connect(&self.host, tcp).await.map_err(|e| self.unreachable(&e))?),
            None => Box::pin(tcp),
        };
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: portcullis-connect\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Proxy-Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.context("sending CONNECT to the edge")?;
        let mut buf = Vec::with_capacity(1024);
        let (status, code, content_length, head_len) = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.context("reading the edge's answer")?;
            if n == 0 {
                bail!("the edge at {} closed the connection without answering the CONNECT", self.base);
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&buf).context("the edge's answer is not HTTP")? {
                httparse::Status::Complete(len) => {
                    let header = |name: &str| {
                        response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .and_then(|h| std::str::from_utf8(h.value).ok())
                            .map(str::to_owned)
                    };
                    let length = header("content-length").and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
                    break (response.code.unwrap_or(0), header("x-portcullis-error").unwrap_or_default(), length, len);
                }
                httparse::Status::Partial if buf.len() > MAX_RESPONSE_HEAD => bail!("the edge's answer is too large"),
                httparse::Status::Partial => {}
            }
        };
        let mut rest = buf.split_off(head_len);
        if status == 200 {
            return Ok(Ok(Tunnel { stream, early: rest }));
        }
        let wanted = content_length.min(MAX_REFUSAL_BODY);
        while rest.len() < wanted {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
        let message = String::from_utf8_lossy(&rest[..rest.len().min(wanted)]).trim().to_owned();
        Ok(Err(Refused { status, code, message }))
    }
}

/// The innermost cause, e.g. "Connection refused (os error 111)".
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
