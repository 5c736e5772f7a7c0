//! Generic webhook sink: a batch is one POST of JSON lines (one OCSF event
//! per line, `Content-Type: application/x-ndjson`), signed like the
//! relying-party webhook (`X-Portcullis-Timestamp`, `X-Portcullis-Signature:
//! v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`), with
//! `Idempotency-Key: <first event id>..<last event id>`. Any 2xx delivers the
//! batch; anything else sends its events again later, from the same first
//! event (the next batch may hold more): receivers de-duplicate by each
//! event's `metadata.uid`.

use std::time::Duration;

use crate::model::AuditEntry;
use crate::relying_parties::webhook::signature;

use super::ocsf;

/// Timeout of one POST.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The request body: one OCSF event per line.
pub fn body(batch: &[AuditEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in batch {
        out.extend_from_slice(ocsf::to_ocsf(entry).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// POSTs `batch` to `url`, signed with `secret`.
pub async fn post(client: &reqwest::Client, url: &str, secret: &str, batch: &[AuditEntry]) -> Result<(), String> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else { return Ok(()) };
    let body = body(batch);
    let timestamp = chrono::Utc::now().timestamp();
    let response = client
        .post(url)
        .timeout(TIMEOUT)
        .header("content-type", "application/x-ndjson")
        .header("idempotency-key", format!("{}..{}", ocsf::event_id(first), ocsf::event_id(last)))
        .header("x-portcullis-timestamp", timestamp.to_string())
        .header("x-portcullis-signature", signature(secret, timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}
