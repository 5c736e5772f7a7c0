//! Telling a `CONNECT` from everything else on a fresh connection: read
//! until the first eight bytes say whether the request starts with
//! `CONNECT `; if not, hand the connection on with those bytes put back
//! ([`PrefixedStream`]). A `CONNECT` head is read in full (at most
//! [`MAX_HEAD_BYTES`], else 431) and parsed with `httparse`; bytes the
//! client sent after the head are kept for the upstream.

use std::time::Duration;

use bytes::BytesMut;
use pingora_core::protocols::Stream;
use pingora_http::RequestHeader;
use tokio::io::AsyncReadExt;

use super::prefixed::PrefixedStream;

/// What every tunnel request starts with.
const CONNECT_PREFIX: &[u8] = b"CONNECT ";
/// Largest CONNECT request head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines in a CONNECT request head.
const MAX_HEADERS: usize = 64;
/// How long a client may take to send its first request head (as pingora
/// allows for an HTTP/1 request).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed `CONNECT` request.
#[derive(Debug)]
pub struct ConnectHead {
    /// The request target, `host:port` as sent.
    pub authority: String,
    /// Method, target and headers, for the credential and forwarding helpers.
    pub header: RequestHeader,
}

/// A CONNECT the edge refuses before looking at who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`].
    TooLarge,
    /// Not an HTTP/1 request, or a target that is not `host:port`.
    Malformed,
}

/// What the first bytes of a connection turned out to be.
pub enum Sniffed {
    /// A tunnel request; `rest` is what followed its head.
    Connect {
        /// The connection.
        stream: Stream,
        /// The request (boxed: a request header is large, and most
        /// connections are not tunnels).
        head: Box<ConnectHead>,
        /// Bytes after the head, for the upstream.
        rest: BytesMut,
    },
    /// A CONNECT refused as it stands.
    BadConnect(Stream, HeadError),
    /// Anything else: the connection with what was read put back.
    Other(Stream),
    /// Closed, failed or silent before a request arrived.
    Closed,
}

/// Reads the start of `stream` and sorts it.
pub async fn sniff(mut stream: Stream) -> Sniffed {
    let mut buf = BytesMut::with_capacity(2048);
    let first = tokio::time::timeout(HEAD_TIMEOUT, async {
        while buf.len() < CONNECT_PREFIX.len() && CONNECT_PREFIX.starts_with(&buf) {
            if stream.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    match first {
        Ok(Ok(())) if buf.is_empty() => return Sniffed::Closed,
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => return Sniffed::Closed,
    }
    if !buf.starts_with(CONNECT_PREFIX) {
        return Sniffed::Other(Box::new(PrefixedStream::new(buf, stream)));
    }
    let read = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            match parse_head(&buf) {
                Ok(Some((head, len))) => return Ok(Some((head, len))),
                Ok(None) if buf.len() >= MAX_HEAD_BYTES => return Err(HeadError::TooLarge),
                Ok(None) => {}
                Err(error) => return Err(error),
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    })
    .await;
    match read {
        Ok(Ok(Some((head, len)))) => {
            let rest = buf.split_off(len);
            Sniffed::Connect { stream, head: Box::new(head), rest }
        }
        Ok(Err(error)) => Sniffed::BadConnect(stream, error),
        Ok(Ok(None)) | Err(_) => Sniffed::Closed,
    }
}

/// Parses a CONNECT request head from the start of `buf`: the head and its
/// length in bytes once it is complete, `Ok(None)` while it is incomplete,
/// and a [`HeadError`] for what the edge refuses as it stands. Public so
/// that the fuzz targets (`fuzz/`) can drive it with arbitrary bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(ConnectHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HeadError::Malformed),
    };
    let authority = request.path.unwrap_or_default();
    if request.method != Some("CONNECT") || !is_host_port(authority) {
        return Err(HeadError::Malformed);
    }
    let mut header = RequestHeader::build("CONNECT", authority.as_bytes(), Some(request.headers.len()))
        .map_err(|_| HeadError::Malformed)?;
    for h in request.headers.iter() {
        header.append_header(h.name.to_owned(), h.value).map_err(|_| HeadError::Malformed)?;
    }
    Ok(Some((ConnectHead { authority: authority.to_owned(), header }, len)))
}

/// `name:port` or `[v6]:port`, the only target form CONNECT has.
fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else { return false };
    let port_ok = !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn parses_complete_heads_and_waits_for_partial_ones() {
        let head = b"CONNECT ssh.internal:22 HTTP/1.1\r\nHost: ssh.internal:22\r\nProxy-Authorization: Bearer t\r\n\r\nSSH-2.0";
        let (parsed, len) = parse_head(head).unwrap().unwrap();
        assert_eq!(parsed.authority, "ssh.internal:22");
        assert_eq!(&head[len..], b"SSH-2.0");
        assert_eq!(parsed.header.headers.get("proxy-authorization").unwrap(), "Bearer t");
        assert!(parse_head(b"CONNECT ssh.internal:22 HTTP/1.1\r\nHost: x").unwrap().is_none());
    }

    #[test]
    fn refuses_what_is_not_a_host_and_port() {
        for bad in ["CONNECT /x HTTP/1.1\r\n\r\n", "CONNECT host HTTP/1.1\r\n\r\n", "CONNECT a b:1 HTTP/1.1\r\n\r\n"] {
            assert_eq!(parse_head(bad.as_bytes()).unwrap_err(), HeadError::Malformed, "{bad}");
        }
        assert!(is_host_port("[::1]:5432") && is_host_port("db.internal:5432"));
        assert!(!is_host_port("db.internal:0") && !is_host_port("db.internal:99999") && !is_host_port(":22"));
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        let head = format!("CONNECT a:1 HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(head.as_bytes()).unwrap_err(), HeadError::TooLarge);
    }

    #[tokio::test]
    async fn other_requests_keep_their_first_bytes() {
        let (near, mut far) = tokio::io::duplex(1024);
        far.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let Sniffed::Other(mut stream) = sniff(Box::new(near)).await else { panic!("not a CONNECT") };
        let mut got = vec![0; 18];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_connect_split_over_many_writes_is_read_whole() {
        let (near, mut far) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move {
            for part in [&b"CON"[..], b"NECT db:5432 HTTP/1.1\r\n", b"Host: db:5432\r\n\r\n", b"hello"] {
                far.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            far
        });
        let Sniffed::Connect { stream, head, .. } = sniff(Box::new(near)).await else { panic!("a CONNECT") };
        assert_eq!(head.authority, "db:5432");
        drop(task.await.unwrap());
        drop(stream);
    }

    #[tokio::test]
    async fn oversized_heads_are_refused() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let filler = "a".repeat(MAX_HEAD_BYTES);
        far.write_all(format!("CONNECT a:1 HTTP/1.1\r\nX: {filler}\r\n\r\n").as_bytes()).await.unwrap();
        assert!(matches!(sniff(Box::new(near)).await, Sniffed::BadConnect(_, HeadError::TooLarge)));
    }
}
