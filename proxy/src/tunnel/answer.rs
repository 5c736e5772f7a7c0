//! The edge's answers to a `CONNECT`: `200 Connection established`, or a
//! refusal with a one-line plain-text reason (a machine-readable code in
//! `X-Portcullis-Error`, a denial's reference in `X-Portcullis-Reference`),
//! after which the connection closes.

use portcullis_policy::edge_channel::DenialReference;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not a valid CONNECT.
    BadRequest,
    /// 431: the head is too large.
    HeadTooLarge,
    /// 407: no credential, or one that is refused (expired, terminated, revoked).
    LoginRequired,
    /// 403: the policy denies it (or the user is locked).
    Forbidden,
    /// 404: no TCP route has this name.
    NoRoute,
    /// 502: the upstream cannot be reached.
    BadGateway,
    /// 503: no snapshot yet, stale, or a credential that cannot be checked now.
    Unavailable,
    /// 429: too many credential look-ups from this client.
    RateLimited,
}

impl Refusal {
    /// Status code and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Self::BadRequest => (400, "Bad Request"),
            Self::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Self::LoginRequired => (407, "Proxy Authentication Required"),
            Self::Forbidden => (403, "Forbidden"),
            Self::NoRoute => (404, "Not Found"),
            Self::BadGateway => (502, "Bad Gateway"),
            Self::Unavailable => (503, "Service Unavailable"),
            Self::RateLimited => (429, "Too Many Requests"),
        }
    }

    /// The metrics label.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::BadRequest | Self::HeadTooLarge => "bad-request",
            Self::LoginRequired => "login-required",
            Self::Forbidden => "deny",
            Self::NoRoute => "no-route",
            Self::BadGateway => "upstream-error",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate-limited",
        }
    }
}

/// The response head that opens a tunnel.
pub const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// The refusal as bytes: status line, headers, one line of text.
pub fn refusal_bytes(refusal: Refusal, code: &str, message: &str, reference: Option<DenialReference>) -> Vec<u8> {
    let (status, phrase) = refusal.status();
    let line: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let body = format!("{line}\n");
    let challenge =
        if refusal == Refusal::LoginRequired { "Proxy-Authenticate: Bearer realm=\"portcullis\"\r\n" } else { "" };
    let retry = match refusal {
        Refusal::Unavailable => "Retry-After: 5\r\n",
        Refusal::RateLimited => "Retry-After: 1\r\n",
        _ => "",
    };
    let reference = reference.map_or_else(String::new, |r| format!("X-Portcullis-Reference: {r}\r\n"));
    format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         X-Portcullis-Error: {code}\r\n{reference}{challenge}{retry}Cache-Control: no-store\r\nConnection: close\r\n\r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}

/// Writes a refusal and closes the write side; errors are the client's loss.
pub async fn refuse<W: AsyncWrite + Unpin>(
    stream: &mut W,
    refusal: Refusal,
    code: &str,
    message: &str,
    reference: Option<DenialReference>,
) {
    let bytes = refusal_bytes(refusal, code, message, reference);
    if stream.write_all(&bytes).await.is_ok() {
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_refusal_challenges_and_says_why_on_one_line() {
        let text =
            String::from_utf8(refusal_bytes(Refusal::LoginRequired, "login_required", "log in\nfirst", None)).unwrap();
        assert!(text.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"), "{text}");
        assert!(text.contains("Proxy-Authenticate: Bearer realm=\"portcullis\"\r\n"));
        assert!(text.ends_with("\r\n\r\nlog in first\n"), "{text}");
        assert!(text.contains("Content-Length: 13\r\n"));
    }

    #[test]
    fn a_denial_names_its_reference() {
        let reference: DenialReference = "K7Q2-M9XD-4RTA".parse().unwrap();
        let text = String::from_utf8(refusal_bytes(Refusal::Forbidden, "forbidden", "no", Some(reference))).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains("\r\nX-Portcullis-Reference: K7Q2-M9XD-4RTA\r\n"), "{text}");
    }
}
