//! Splunk HTTP Event Collector sink (Splunk docs, "Format events for HTTP
//! Event Collector" and "HTTP Event Collector REST API endpoints"): one POST
//! per batch to `<url>/services/collector/event` with `Authorization:
//! Splunk <token>`, the body the batch's events concatenated, each
//! `{"time": <seconds.millis>, "host", "source": "portcullis", "sourcetype":
//! "ocsf", "event": <the OCSF event>}`. 200 with `"code": 0` delivers the
//! batch; 503 (server busy), 429 and other 5xx are retried; a 400 naming an
//! `invalid-event-number` or any other refusal is an error the worker
//! retries (and the backlog metric shows).

use std::time::Duration;

use serde_json::{json, Value};

use super::ocsf;
use crate::model::AuditEntry;

/// Timeout of one POST.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The body: the events, concatenated.
pub fn body(batch: &[AuditEntry], host: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in batch {
        let event = ocsf::to_ocsf(entry);
        let time = event["time"].as_i64().unwrap_or(0) as f64 / 1000.0;
        let wrapped =
            json!({ "time": time, "host": host, "source": "portcullis", "sourcetype": "ocsf", "event": event });
        out.extend_from_slice(wrapped.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// POSTs `batch` to the collector at `url`.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    host: &str,
    batch: &[AuditEntry],
) -> Result<(), String> {
    let response = client
        .post(format!("{url}/services/collector/event"))
        .timeout(TIMEOUT)
        .header("authorization", format!("Splunk {token}"))
        .header("content-type", "application/json")
        .body(body(batch, host))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() && answer.get("code").and_then(Value::as_i64).unwrap_or(0) == 0 {
        return Ok(());
    }
    let text = answer.get("text").and_then(Value::as_str).unwrap_or("no explanation");
    Err(format!("Splunk HEC answered {status}: {text} (code {})", answer.get("code").unwrap_or(&Value::Null)))
}
