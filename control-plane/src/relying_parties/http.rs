//! What every HTTP connector shares: one client, bounded error bodies, and
//! one reading of an answer into a [`Delivery`].

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use super::Delivery;

/// Most of an error body kept for the receipt and the audit log.
const ERROR_BODY_CHARS: usize = 300;
/// Longest `Retry-After` honoured; a longer one is capped (the outbox's
/// own deadline still applies).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The client every connector uses: no redirects, since a redirect could
/// carry the credential to another host.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("portcullis-control-plane/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

/// One request's answer, read into memory (bounded).
#[derive(Debug)]
pub struct HttpCall {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

/// Largest answer body read.
pub const MAX_BODY: usize = 256 * 1024;

impl HttpCall {
    /// Sends `request` with `timeout`; a transport failure is a retry.
    pub async fn send(request: reqwest::RequestBuilder, timeout: Duration) -> Result<Self, Delivery> {
        let mut response = request
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| Delivery::Retry { error: format!("unreachable: {}", transport_error(&e)), after: None })?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_BODY => body.extend_from_slice(&chunk),
                Ok(Some(_)) => {
                    return Err(Delivery::Retry {
                        error: format!("{status}: answer larger than {MAX_BODY} bytes"),
                        after: None,
                    })
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Delivery::Retry { error: format!("{status}: {}", transport_error(&e)), after: None })
                }
            }
        }
        Ok(Self { status, headers, body })
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Delivery> {
        serde_json::from_slice(&self.body).map_err(|e| Delivery::Retry {
            error: format!("{}: the answer is not the JSON expected: {e}", self.status),
            after: None,
        })
    }

    /// The start of the body, for error messages (control characters dropped).
    pub fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut excerpt: String =
            text.chars().filter(|c| !c.is_control() || *c == ' ').take(ERROR_BODY_CHARS).collect();
        if text.chars().count() > ERROR_BODY_CHARS {
            excerpt.push('…');
        }
        excerpt
    }

    /// The wait `Retry-After` asks for (seconds or an HTTP date).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        let wait = match value.parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => {
                let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
                let seconds = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
                Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
            }
        };
        Some(wait.min(MAX_RETRY_AFTER))
    }

    /// The wait a rate limit asks for: `Retry-After`, else `reset_header`
    /// (the epoch second the window resets: Okta's `X-Rate-Limit-Reset`,
    /// Auth0's `x-ratelimit-reset`), capped like `Retry-After`.
    pub fn rate_limit_wait(&self, reset_header: &str) -> Option<Duration> {
        self.retry_after().or_else(|| {
            let reset: i64 = self.headers.get(reset_header)?.to_str().ok()?.trim().parse().ok()?;
            let seconds = u64::try_from(reset - chrono::Utc::now().timestamp()).unwrap_or(0);
            Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
        })
    }
}

/// [`classify`], where a retry's wait may also come from `reset_header`
/// (see [`HttpCall::rate_limit_wait`]).
pub fn classify_with_reset(call: &HttpCall, reset_header: &str) -> Delivery {
    match classify(call) {
        Delivery::Retry { error, after: None } => Delivery::Retry { error, after: call.rate_limit_wait(reset_header) },
        other => other,
    }
}

/// `text` percent-encoded for one path segment or query value: everything
/// but RFC 3986's unreserved characters (so `@` is `%40`, `|` is `%7C`).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A POST without a body, saying `Content-Length: 0` (a body-less POST
/// otherwise goes without a length, which Google's and Microsoft's front
/// ends refuse with 411).
pub fn empty_post(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    client.post(url).header(reqwest::header::CONTENT_LENGTH, "0")
}

/// The answer a relying party gives for a user it does not know.
pub fn no_account() -> Delivery {
    Delivery::Applied { detail: Some("no account at this relying party".into()) }
}

/// A job without an email, for a relying party that looks users up by email.
pub fn no_email(job: &super::Termination) -> Delivery {
    Delivery::Failed {
        error: format!("`{}` has no known email, and this relying party finds users by email", job.user),
    }
}

/// The usual reading of an answer: 2xx applied; 408, 425, 429 and 5xx
/// retried (429 and 503 with their `Retry-After`); any other refusal fails
/// for good, with the relying party's words.
pub fn classify(call: &HttpCall) -> Delivery {
    let status = call.status;
    if status.is_success() {
        return Delivery::applied();
    }
    let error = format!("{status}: {}", call.excerpt());
    match status.as_u16() {
        408 | 425 | 429 | 500..=599 => Delivery::Retry { error, after: call.retry_after() },
        _ => Delivery::Failed { error },
    }
}

/// A transport error without the URL's query (which may carry a token).
fn transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut text = match error.url() {
        Some(url) => format!("{kind} ({}://{}{})", url.scheme(), url.host_str().unwrap_or(""), url.path()),
        None => kind.to_owned(),
    };
    // Why a connection failed (refused, no such name, an address the
    // SSF push policy refuses) is in the innermost cause, which carries no URL.
    if error.is_connect() {
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        text.push_str(&format!(": {cause}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(status: u16, headers: &[(&str, &str)], body: &str) -> HttpCall {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        HttpCall { status: StatusCode::from_u16(status).unwrap(), headers: map, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn answers_are_read_as_the_http_semantics_say() {
        assert_eq!(classify(&call(204, &[], "")), Delivery::applied());
        assert_eq!(
            classify(&call(429, &[("retry-after", "7")], "slow down")),
            Delivery::Retry { error: "429 Too Many Requests: slow down".into(), after: Some(Duration::from_secs(7)) }
        );
        assert!(matches!(classify(&call(503, &[], "")), Delivery::Retry { after: None, .. }));
        assert!(matches!(classify(&call(403, &[], "{\"error\":\"insufficient scope\"}")),
            Delivery::Failed { error } if error.contains("insufficient scope")));
        let huge = classify(&call(429, &[("retry-after", "999999")], ""));
        assert!(matches!(huge, Delivery::Retry { after: Some(a), .. } if a == MAX_RETRY_AFTER));
        let date = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let Delivery::Retry { after: Some(after), .. } = classify(&call(429, &[("retry-after", &date)], "")) else {
            panic!("an HTTP-date Retry-After is honoured")
        };
        assert!((28..=30).contains(&after.as_secs()), "{after:?}");
        let reset = (chrono::Utc::now().timestamp() + 20).to_string();
        let Delivery::Retry { after: Some(after), .. } =
            classify_with_reset(&call(429, &[("x-rate-limit-reset", &reset)], ""), "x-rate-limit-reset")
        else {
            panic!("an epoch reset is honoured without Retry-After")
        };
        assert!((18..=20).contains(&after.as_secs()), "{after:?}");
        assert_eq!(encode("bob+x@ex ample.com/|"), "bob%2Bx%40ex%20ample.com%2F%7C");
        let control = call(400, &[], "bad\u{1b}[31m\nthing").excerpt();
        assert_eq!(control, "bad[31mthing");
    }
}
