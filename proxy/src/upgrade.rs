//! HTTP/1.1 upgrades (websockets), proxied by the edge itself.
//!
//! pingora 0.9.1 tears an upgraded connection down when the upstream's `101`
//! is read before the upgrade request's own empty body has gone through its
//! pipe (cloudflare/pingora#946; fixes #947 and #1016 are not released).
//! With a fast upstream — any app on the same host — websockets then fail at
//! random. So once an upgrade request is allowed, the edge connects to the
//! upstream, sends the request head, relays the answer, and after a `101`
//! pipes bytes both ways through pingora's downstream session, which
//! switches to pass-through when it writes the `101`. Everything still runs
//! inside the connection's killable task, so terminating the session closes
//! the websocket exactly as before.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest upstream response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Time allowed to connect to the upstream and to get its response head.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

fn upstream_error(context: &str, error: impl std::fmt::Display) -> Box<Error> {
    Error::explain(ErrorType::ConnectError, format!("upgrade: {context}: {error}"))
}

/// The request head as HTTP/1.1 bytes.
fn serialize(head: &RequestHeader) -> Vec<u8> {
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &head.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads the upstream's response head: (status, headers, bytes after the head).
async fn read_response_head(upstream: &mut TcpStream) -> Result<(ResponseHeader, Bytes)> {
    let mut buffer = BytesMut::with_capacity(4096);
    loop {
        if upstream.read_buf(&mut buffer).await.map_err(|e| upstream_error("reading the response", e))? == 0 {
            return Err(upstream_error("reading the response", "the upstream closed the connection"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buffer) {
            Ok(httparse::Status::Complete(length)) => {
                let status = response.code.ok_or_else(|| upstream_error("response", "no status"))?;
                let mut head = ResponseHeader::build(status, Some(response.headers.len()))?;
                for header in response.headers.iter() {
                    head.append_header(header.name.to_owned(), header.value.to_vec())?;
                }
                let rest = buffer.split_off(length).freeze();
                return Ok((head, rest));
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD_BYTES => continue,
            Ok(httparse::Status::Partial) => return Err(upstream_error("response", "head too large")),
            Err(e) => return Err(upstream_error("response", e)),
        }
    }
}

/// Proxies an allowed upgrade request to `address` with the prepared
/// upstream request head. Answers the client in every case.
pub async fn proxy(session: &mut Session, address: std::net::SocketAddr, head: &RequestHeader) -> Result<()> {
    let mut upstream = tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|e| upstream_error("connecting", e))?
        .map_err(|e| upstream_error("connecting", e))?;
    let _ = upstream.set_nodelay(true);
    upstream.write_all(&serialize(head)).await.map_err(|e| upstream_error("sending the request", e))?;
    let (response, rest) = tokio::time::timeout(UPSTREAM_TIMEOUT, read_response_head(&mut upstream))
        .await
        .map_err(|e| upstream_error("waiting for the response", e))??;
    let switched = response.status.as_u16() == 101;
    let length = response
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let rest_len = rest.len();
    session.write_response_header(Box::new(response), false).await?;
    if !rest.is_empty() {
        session.write_response_body(Some(rest), false).await?;
    }
    if !switched {
        // The upstream declined the upgrade: relay its answer.
        return relay_answer(session, &mut upstream, length, rest_len).await;
    }
    let mut buffer = vec![0u8; 16 * 1024];
    let mut client_open = true;
    loop {
        tokio::select! {
            from_client = session.read_request_body(), if client_open => match from_client? {
                Some(bytes) => upstream.write_all(&bytes).await.map_err(|e| upstream_error("writing", e))?,
                None => {
                    client_open = false;
                    let _ = upstream.shutdown().await;
                }
            },
            from_upstream = upstream.read(&mut buffer) => match from_upstream {
                Ok(0) | Err(_) => break,
                Ok(n) => session.write_response_body(Some(Bytes::copy_from_slice(&buffer[..n])), false).await?,
            },
        }
    }
    session.write_response_body(None, true).await
}

/// Relays the body of a declined upgrade: `length` bytes (of which
/// `already` were sent), or until the upstream closes.
async fn relay_answer(
    session: &mut Session,
    upstream: &mut TcpStream,
    length: Option<usize>,
    already: usize,
) -> Result<()> {
    let mut remaining = length.map(|l| l.saturating_sub(already));
    let mut buffer = vec![0u8; 16 * 1024];
    while remaining != Some(0) {
        let want = remaining.map_or(buffer.len(), |r| r.min(buffer.len()));
        match upstream.read(&mut buffer[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                remaining = remaining.map(|r| r - n);
                session.write_response_body(Some(Bytes::copy_from_slice(&buffer[..n])), false).await?;
            }
        }
    }
    session.write_response_body(None, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_the_prepared_head() {
        let mut head = RequestHeader::build("GET", b"/ws?room=1", None).unwrap();
        head.insert_header("host", "app.example").unwrap();
        head.insert_header("upgrade", "websocket").unwrap();
        let text = String::from_utf8(serialize(&head)).unwrap();
        assert!(text.starts_with("GET /ws?room=1 HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("upgrade: websocket\r\n") && text.ends_with("\r\n\r\n"), "{text}");
    }
}
