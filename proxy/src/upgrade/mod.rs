//! HTTP/1.1 upgrades (websockets), proxied by the edge itself.
//!
//! pingora 0.9.1 tears an upgraded connection down when the upstream's `101`
//! is read before the upgrade request's own empty body has gone through its
//! pipe (cloudflare/pingora#946; fixes #947 and #1016 are not released).
//! With a fast upstream — any app on the same host — websockets then fail at
//! random. So once an upgrade request is allowed, the edge connects to the
//! upstream, sends the request head, relays the answer, and after a `101`
//! pipes bytes both ways through pingora's downstream session, which
//! switches to pass-through when it writes the `101` ([`relay`]). Everything
//! still runs inside the connection's killable task, so terminating the
//! session closes the websocket; the relay first tells the client why, with
//! a close frame of code 1008 put between two of the app's frames
//! ([`frames`]). Websockets to a TLS upstream go through pingora's own
//! proxying and are cut without a close frame (the client sees 1006).
//!
//! Only websockets are upgraded: `Upgrade: websocket` with `Connection:
//! upgrade`, `Sec-WebSocket-Version: 13` and a key of 16 base64 bytes
//! ([`classify`]). Other upgrades (h2c above all, which would let a client
//! talk HTTP/2 to the upstream past every check) lose their upgrade
//! headers and go through as plain requests. The upstream's `101` must
//! carry the `Sec-WebSocket-Accept` that answers the key, or the client
//! gets a 502.

mod frames;
mod relay;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use frames::{close_frame, close_reason, FrameCursor, MAX_CLOSE_REASON, POLICY_VIOLATION};
pub use relay::{Watch, CLIENT_CLOSE_WAIT, FRAME_END_WAIT};

/// The GUID RFC 6455 §1.3 appends to the key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a request's `Upgrade` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeRequest {
    /// No upgrade.
    None,
    /// A well-formed websocket handshake.
    WebSocket,
    /// `Upgrade: websocket` that is not a valid handshake (why).
    BadWebSocket(&'static str),
    /// Any other protocol (`h2c`, `TLS/1.0`, …): the edge strips it.
    Other,
}

fn has_token(req: &RequestHeader, name: http::header::HeaderName, token: &str) -> bool {
    req.headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Sorts a request by its upgrade (HTTP/1.1 only; HTTP/2 has none).
pub fn classify(req: &RequestHeader) -> UpgradeRequest {
    if req.version != http::Version::HTTP_11 || req.headers.get(http::header::UPGRADE).is_none() {
        return UpgradeRequest::None;
    }
    let values: Vec<&[u8]> = req.headers.get_all(http::header::UPGRADE).iter().map(|v| v.as_bytes()).collect();
    if values.len() != 1 || !values[0].trim_ascii().eq_ignore_ascii_case(b"websocket") {
        return UpgradeRequest::Other;
    }
    if req.method != http::Method::GET {
        return UpgradeRequest::BadWebSocket("a websocket handshake must be a GET");
    }
    if !has_token(req, http::header::CONNECTION, "upgrade") {
        return UpgradeRequest::BadWebSocket("`Connection: upgrade` is missing");
    }
    let version = req.headers.get_all(http::header::SEC_WEBSOCKET_VERSION).iter().collect::<Vec<_>>();
    if version.len() != 1 || version[0].as_bytes().trim_ascii() != b"13" {
        return UpgradeRequest::BadWebSocket("`Sec-WebSocket-Version: 13` is required");
    }
    let keys = req.headers.get_all(http::header::SEC_WEBSOCKET_KEY).iter().collect::<Vec<_>>();
    let key_ok = keys.len() == 1 && {
        use base64::Engine;
        let key = keys[0].as_bytes().trim_ascii();
        key.len() == 24 && base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|k| k.len() == 16)
    };
    if !key_ok {
        return UpgradeRequest::BadWebSocket("`Sec-WebSocket-Key` must be 16 bytes in base64");
    }
    UpgradeRequest::WebSocket
}

/// The `Sec-WebSocket-Accept` that answers `key` (RFC 6455 §4.2.2).
pub fn accept_for(key: &[u8]) -> String {
    use base64::Engine;
    let mut input = key.trim_ascii().to_vec();
    input.extend_from_slice(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha1(&input))
}

/// Removes a non-websocket upgrade from the client's request, so neither
/// pingora nor the upstream treats it as one.
pub fn strip_upgrade(req: &mut RequestHeader) {
    req.remove_header(&http::header::UPGRADE);
    req.remove_header("http2-settings");
    req.remove_header(&http::header::CONNECTION);
}

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
/// upstream request head. Answers the client in every case. Once switched,
/// the relay watches the connection `watch` names and says goodbye when it
/// is cancelled.
pub async fn proxy(
    session: &mut Session,
    address: std::net::SocketAddr,
    head: &RequestHeader,
    cookies: &crate::credentials::SessionCookies,
    watch: Option<Watch<'_>>,
) -> Result<()> {
    let mut upstream = tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|e| upstream_error("connecting", e))?
        .map_err(|e| upstream_error("connecting", e))?;
    let _ = upstream.set_nodelay(true);
    upstream.write_all(&serialize(head)).await.map_err(|e| upstream_error("sending the request", e))?;
    let (mut response, rest) = tokio::time::timeout(UPSTREAM_TIMEOUT, read_response_head(&mut upstream))
        .await
        .map_err(|e| upstream_error("waiting for the response", e))??;
    let switched = response.status.as_u16() == 101;
    if switched {
        let key = head.headers.get(http::header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes()).unwrap_or_default();
        let accept = response.headers.get(http::header::SEC_WEBSOCKET_ACCEPT).map(|a| a.as_bytes().trim_ascii());
        let websocket = response.headers.get(http::header::UPGRADE).map(|u| u.as_bytes().trim_ascii());
        if accept != Some(accept_for(key).as_bytes())
            || !websocket.is_some_and(|u| u.eq_ignore_ascii_case(b"websocket"))
        {
            return Err(upstream_error("handshake", "the upstream's 101 does not answer the websocket key"));
        }
    }
    let length = response
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let rest_len = rest.len();
    crate::upstream_headers::drop_edge_set_cookies(&mut response, cookies);
    session.write_response_header(Box::new(response), false).await?;
    if !rest.is_empty() {
        session.write_response_body(Some(rest), false).await?;
    }
    if !switched {
        // The upstream declined the upgrade: relay its answer.
        return relay_answer(session, &mut upstream, length, rest_len).await;
    }
    relay::relay(session, &mut upstream, watch).await
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

    fn upgrade(headers: &[(&str, &str)]) -> RequestHeader {
        let mut head = RequestHeader::build("GET", b"/ws", None).unwrap();
        for (name, value) in headers {
            head.append_header(name.to_string(), *value).unwrap();
        }
        head
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn only_well_formed_websocket_handshakes_are_upgrades() {
        let good = [("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"), ("Sec-WebSocket-Version", "13")];
        let mut with_key = good.to_vec();
        with_key.push(("Sec-WebSocket-Key", KEY));
        assert_eq!(classify(&upgrade(&with_key)), UpgradeRequest::WebSocket);
        assert_eq!(
            classify(&upgrade(&[("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings")])),
            UpgradeRequest::Other
        );
        assert_eq!(classify(&upgrade(&[("Upgrade", "websocket, h2c")])), UpgradeRequest::Other);
        assert_eq!(classify(&upgrade(&[])), UpgradeRequest::None);
        assert!(matches!(classify(&upgrade(&good)), UpgradeRequest::BadWebSocket(_)), "no key");
        for bad_key in ["short", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZSE="] {
            let mut headers = good.to_vec();
            headers.push(("Sec-WebSocket-Key", bad_key));
            assert!(matches!(classify(&upgrade(&headers)), UpgradeRequest::BadWebSocket(_)), "{bad_key}");
        }
        let mut no_connection = with_key.clone();
        no_connection.retain(|(n, _)| *n != "Connection");
        assert!(matches!(classify(&upgrade(&no_connection)), UpgradeRequest::BadWebSocket(_)));
        let mut version_8 = with_key.clone();
        version_8.retain(|(n, _)| *n != "Sec-WebSocket-Version");
        version_8.push(("Sec-WebSocket-Version", "8"));
        assert!(matches!(classify(&upgrade(&version_8)), UpgradeRequest::BadWebSocket(_)));
    }

    #[test]
    fn the_accept_answers_the_key_as_in_rfc_6455() {
        assert_eq!(accept_for(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

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
