//! The generic webhook: a JSON POST the receiver can authenticate.
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! Idempotency-Key: <job id, the same on every attempt>
//! X-Portcullis-Timestamp: <unix seconds>
//! X-Portcullis-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//!
//! {"id":"…","type":"terminate_user","user":"email:bob@example.com","email":"bob@example.com",
//!  "session_id":null,"reason":"…","at":"2026-12-02T14:00:00.000Z"}
//! ```
//!
//! A receiver recomputes the signature over the exact bytes it received,
//! compares in constant time, and refuses a timestamp more than five minutes
//! from its clock (a replayed delivery); `Idempotency-Key` lets it ignore a
//! redelivery. Any 2xx is success; see [`super::classify`] for the rest.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::{classify, Connector, Delivery, HttpCall, Termination};

/// Posts signed JSON to one URL.
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: String,
    timeout: Duration,
}

impl Webhook {
    /// A webhook to `url` signed with `secret`.
    pub fn new(client: reqwest::Client, url: String, secret: String, timeout: Duration) -> Self {
        Self { client, url, secret, timeout }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    user: &'a str,
    email: Option<&'a str>,
    session_id: Option<&'a str>,
    reason: &'a str,
    at: String,
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

#[async_trait]
impl Connector for Webhook {
    async fn deliver(&self, job: &Termination, idempotency_key: &str) -> Delivery {
        let at = chrono::DateTime::from_timestamp_millis(job.at_ms).unwrap_or_default();
        let body = Body {
            id: idempotency_key,
            kind: job.action.as_str(),
            user: &job.user,
            email: job.email(),
            session_id: job.session_id.as_deref(),
            reason: &job.reason,
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let body = serde_json::to_vec(&body).expect("the body serializes");
        let timestamp = chrono::Utc::now().timestamp();
        let request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .header("x-portcullis-timestamp", timestamp.to_string())
            .header("x-portcullis-signature", signature(&self.secret, timestamp, &body))
            .body(body);
        match HttpCall::send(request, self.timeout).await {
            Ok(call) => classify(&call),
            Err(delivery) => delivery,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_the_documented_hmac() {
        // Computed independently: python3 -c "import hmac,hashlib;
        // print(hmac.new(b'Jefe', b'1700000000.{}', hashlib.sha256).hexdigest())"
        let expected = "v1=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207";
        assert_eq!(super::signature("Jefe", 1_700_000_000, b"{}"), expected);
        assert_ne!(super::signature("Jefe", 1_700_000_001, b"{}"), expected);
    }
}
