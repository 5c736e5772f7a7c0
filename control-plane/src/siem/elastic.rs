//! Elasticsearch / OpenSearch bulk sink (Elastic docs, "Bulk API"): one
//! `POST <url>/_bulk` per batch (`application/x-ndjson`), each event a
//! `create` into `index` with `_id` = its event id, so an event sent twice
//! is refused as a conflict (409) and counts as delivered: exactly one
//! document per event. Documents use ECS field names. The answer is read
//! item by item (a bulk request can partly fail): 429 and 5xx items send
//! the batch again; items refused for good (other 4xx: a mapping conflict)
//! are logged and counted (`siem_events_total{outcome="rejected"}`), since
//! holding the sink on them would stop every later event.

use std::time::Duration;

use serde_json::{json, Value};

use super::ocsf;
use crate::model::AuditEntry;

/// Timeout of one request.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An audit entry as an ECS document.
pub fn to_ecs(entry: &AuditEntry) -> Value {
    let event = ocsf::to_ocsf(entry);
    let category = match event["class_uid"].as_u64() {
        Some(3002) => "authentication",
        Some(3001) => "iam",
        Some(4001) => "network",
        Some(3003) => "session",
        _ => "configuration",
    };
    let failure = event["status_id"] == 2;
    let mut document = json!({
        "@timestamp": entry.at,
        "message": entry.reason,
        "event": {
            "id": ocsf::event_id(entry),
            "kind": "event",
            "category": [category],
            "action": entry.action,
            "outcome": if failure { "failure" } else { "success" },
            "provider": "portcullis",
            "dataset": "portcullis.audit",
        },
        "portcullis": { "target": entry.target, "actor": entry.actor, "change_seq": entry.seq,
                        "ocsf_class_uid": event["class_uid"] },
    });
    if let Some(email) = &entry.user_email {
        document["user"] = json!({ "email": email, "name": email });
    }
    if let Some(subject) = &entry.user_subject {
        document["user"]["id"] = json!(subject);
    }
    if let Some(session) = &entry.session_id {
        document["portcullis"]["session_id"] = json!(session);
    }
    if !entry.source_address.is_empty() {
        document["source"] = json!({ "ip": entry.source_address });
    }
    if let Some(edge) = &entry.edge {
        document["observer"] = json!({ "type": "proxy", "product": "Portcullis", "name": edge });
    }
    if let Some(route) = &entry.route {
        document["portcullis"]["route"] = json!(route);
    }
    if entry.count > 1 {
        document["portcullis"]["count"] = json!(entry.count);
    }
    document
}

/// The bulk body: a `create` line and a document line per event.
pub fn body(batch: &[AuditEntry], index: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in batch {
        let action = json!({ "create": { "_index": index, "_id": ocsf::event_id(entry) } });
        out.extend_from_slice(action.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(to_ecs(entry).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Sends `batch`; the number of documents refused for good.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    index: &str,
    batch: &[AuditEntry],
) -> Result<u64, String> {
    let mut request = client
        .post(format!("{url}/_bulk"))
        .timeout(TIMEOUT)
        .header("content-type", "application/x-ndjson")
        .body(body(batch, index));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the bulk API answered {status}"));
    }
    let answer: Value = response.json().await.map_err(|e| format!("the bulk answer is not JSON: {e}"))?;
    let items = answer.get("items").and_then(Value::as_array).ok_or("the bulk answer has no items")?;
    if items.len() != batch.len() {
        return Err(format!("the bulk answer has {} items for {} events", items.len(), batch.len()));
    }
    let mut rejected = 0;
    for item in items {
        let result = item.get("create").unwrap_or(item);
        let code = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        match code {
            200..=299 | 409 => {}
            429 | 500..=599 | 0 => return Err(format!("an item was not stored ({code}); the batch is sent again")),
            _ => {
                rejected += 1;
                let error = result.get("error").cloned().unwrap_or(Value::Null);
                tracing::error!(id = ?result.get("_id"), status = code, %error, "the SIEM refused an event for good; it is skipped");
            }
        }
    }
    Ok(rejected)
}
