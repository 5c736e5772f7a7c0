//! Amazon SQS sink (the queue the tool Portcullis grew from sent its events
//! to): `SendMessageBatch` with the JSON protocol (`X-Amz-Target:
//! AmazonSQS.SendMessageBatch`, `application/x-amz-json-1.0`), signed with
//! AWS Signature Version 4, at most 10 messages and 256 KiB per call (AWS
//! docs: "SendMessageBatch", "Signature Version 4 signing process"). On a
//! FIFO queue (`….fifo`) every message has `MessageGroupId` `portcullis`
//! (one ordered stream) and `MessageDeduplicationId` = its event id, so a
//! batch sent again within SQS's 5-minute window is dropped by SQS; a
//! standard queue is at least once, unordered. A batch counts as delivered
//! only when every entry is listed as `Successful`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::ocsf;
use crate::model::AuditEntry;

/// Entries per `SendMessageBatch` (the API's limit).
const MAX_ENTRIES: usize = 10;
/// Bytes per `SendMessageBatch` (the API's limit).
const MAX_BYTES: usize = 256 * 1024;

/// Where and as whom.
#[derive(Clone, PartialEq, Eq)]
pub struct SqsTarget {
    /// The queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
    pub queue_url: String,
    /// The API endpoint (the queue URL's origin unless configured).
    pub endpoint: String,
    /// The region signed for.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The SigV4 `Authorization` header for a POST of `body` to `host` `/`,
/// with `x-amz-date` = `amz_date` (`YYYYMMDDTHHMMSSZ`) and `x-amz-target`.
pub fn authorization(target: &SqsTarget, host: &str, amz_date: &str, amz_target: &str, body: &[u8]) -> String {
    let date = &amz_date[..8];
    let payload_hash = hex(&Sha256::digest(body));
    let canonical_headers = format!(
        "content-type:application/x-amz-json-1.0\nhost:{host}\nx-amz-date:{amz_date}\nx-amz-target:{amz_target}\n"
    );
    let signed_headers = "content-type;host;x-amz-date;x-amz-target";
    let canonical_request = format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let scope = format!("{date}/{}/sqs/aws4_request", target.region);
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac(format!("AWS4{}", target.secret_key).as_bytes(), date);
    for part in [target.region.as_str(), "sqs", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex(&hmac(&key, &string_to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        target.access_key
    )
}

/// Splits `batch` into `SendMessageBatch` calls within the API's limits.
fn chunks(batch: &[AuditEntry]) -> Vec<Vec<(String, String)>> {
    let mut calls: Vec<Vec<(String, String)>> = Vec::new();
    let mut bytes = 0;
    for entry in batch {
        let body = ocsf::to_ocsf(entry).to_string();
        let fits = calls.last().is_some_and(|c| c.len() < MAX_ENTRIES && bytes + body.len() <= MAX_BYTES);
        if !fits {
            calls.push(Vec::new());
            bytes = 0;
        }
        bytes += body.len();
        if let Some(call) = calls.last_mut() {
            call.push((ocsf::event_id(entry), body));
        }
    }
    calls
}

/// Sends `batch`, in order, one call after another.
pub async fn send(client: &reqwest::Client, target: &SqsTarget, batch: &[AuditEntry]) -> Result<(), String> {
    let fifo = target.queue_url.ends_with(".fifo");
    let host = url::Url::parse(&target.endpoint)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(port) => format!("{h}:{port}"),
                None => h.to_owned(),
            })
        })
        .ok_or_else(|| format!("{}: no host", target.endpoint))?;
    for call in chunks(batch) {
        let entries: Vec<Value> = call
            .iter()
            .enumerate()
            .map(|(n, (id, body))| {
                let mut entry = json!({ "Id": format!("m{n}"), "MessageBody": body });
                if fifo {
                    entry["MessageGroupId"] = json!("portcullis");
                    entry["MessageDeduplicationId"] = json!(id);
                }
                entry
            })
            .collect();
        let body = json!({ "QueueUrl": target.queue_url, "Entries": entries }).to_string().into_bytes();
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let amz_target = "AmazonSQS.SendMessageBatch";
        let response = client
            .post(format!("{}/", target.endpoint))
            .timeout(Duration::from_secs(15))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-date", &amz_date)
            .header("x-amz-target", amz_target)
            .header("authorization", authorization(target, &host, &amz_date, amz_target, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!(
                "SQS answered {status}: {}",
                answer.get("message").or(answer.get("Message")).unwrap_or(&answer)
            ));
        }
        let failed = answer.get("Failed").and_then(Value::as_array).map_or(0, Vec::len);
        let succeeded = answer.get("Successful").and_then(Value::as_array).map_or(0, Vec::len);
        if failed > 0 || succeeded != call.len() {
            return Err(format!("SQS stored {succeeded} of {} messages: {}", call.len(), answer["Failed"]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigv4_matches_the_documented_derivation() {
        // The signing key derivation of the AWS docs' example (secret
        // wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam):
        // f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d.
        let mut key = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215");
        for part in ["us-east-1", "iam", "aws4_request"] {
            key = hmac(&key, part);
        }
        assert_eq!(hex(&key), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
        let target = SqsTarget {
            queue_url: "https://sqs.us-east-1.amazonaws.com/1/q".into(),
            endpoint: "https://sqs.us-east-1.amazonaws.com".into(),
            region: "us-east-1".into(),
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "secret".into(),
        };
        let header = authorization(
            &target,
            "sqs.us-east-1.amazonaws.com",
            "20261202T100000Z",
            "AmazonSQS.SendMessageBatch",
            b"{}",
        );
        assert!(header.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="), "{header}");
    }

    #[test]
    fn batches_respect_the_api_limits() {
        let entry = |id| AuditEntry {
            id,
            at: "2026-12-02T10:00:00Z".into(),
            actor: "a".into(),
            action: "x".into(),
            target: "t".into(),
            reason: "r".repeat(40_000),
            source_address: String::new(),
            seq: None,
            user_email: None,
            user_subject: None,
            session_id: None,
            route: None,
            edge: None,
            count: 1,
        };
        let batch: Vec<AuditEntry> = (1..=25).map(entry).collect();
        let calls = chunks(&batch);
        assert!(calls
            .iter()
            .all(|c| c.len() <= MAX_ENTRIES && c.iter().map(|(_, b)| b.len()).sum::<usize>() <= MAX_BYTES));
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 25);
        assert_eq!(calls[0][0].0, "portcullis-audit-1", "in order");
    }
}
