//! Syslog sink: RFC 5424 messages over TCP (RFC 6587 octet counting) or
//! TLS (RFC 5425), facility `authpriv` (10), the severity from the event.
//!
//! ```text
//! 312 <86>1 2026-12-02T10:00:00.000Z cp-1 portcullis - session.terminate [portcullis@32473 uid="portcullis-audit-42"
//!     action="session.terminate" actor="token:ops" user="bob@corp.example" sub="00u1" session="…" src="203.0.113.7"
//!     class_uid="3002"] {"class_uid":3002,…}
//! ```
//!
//! The message is the OCSF event as JSON; the structured data repeats what
//! a per-user search needs. TCP has no acknowledgement: a batch counts as
//! delivered once written and flushed, so a connection cut at that moment
//! can lose what the kernel had not sent (RFC 6587's limit; RELP would
//! close it).

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ocsf;
use crate::model::AuditEntry;

/// Our private enterprise number in SD-IDs (`portcullis@32473`; 32473 is
/// the documentation PEN of RFC 5612).
const SD_ID: &str = "portcullis@32473";

/// An open connection.
pub enum Connection {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// One RFC 5424 message for `entry`, from `hostname`.
pub fn message(entry: &AuditEntry, hostname: &str) -> String {
    let event = ocsf::to_ocsf(entry);
    let severity = match event["severity_id"].as_u64() {
        Some(3) => 4, // warning
        Some(2) => 5, // notice
        _ => 6,       // informational
    };
    let pri = 10 * 8 + severity;
    let timestamp = chrono::DateTime::from_timestamp_millis(event["time"].as_i64().unwrap_or(0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let msgid: String = entry.action.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
    let mut sd = format!("[{SD_ID} uid=\"{}\" action=\"{}\"", ocsf::event_id(entry), sd_value(&entry.action));
    for (name, value) in [
        ("actor", Some(entry.actor.as_str())),
        ("user", entry.user_email.as_deref()),
        ("sub", entry.user_subject.as_deref()),
        ("session", entry.session_id.as_deref()),
        ("src", Some(entry.source_address.as_str()).filter(|s| !s.is_empty())),
    ] {
        if let Some(value) = value {
            sd.push_str(&format!(" {name}=\"{}\"", sd_value(value)));
        }
    }
    sd.push_str(&format!(" class_uid=\"{}\"]", event["class_uid"]));
    format!("<{pri}>1 {timestamp} {hostname} portcullis - {} {sd} {event}", if msgid.is_empty() { "-" } else { &msgid })
}

/// Connects to `address` (`host:port`), over TLS when `tls` has a client
/// config (the server is verified against its name, `server_name`).
pub async fn connect(address: &str, tls: Option<(Arc<rustls::ClientConfig>, String)>) -> Result<Connection, String> {
    let stream = tokio::time::timeout(std::time::Duration::from_secs(5), TcpStream::connect(address))
        .await
        .map_err(|_| format!("{address}: connect timed out"))?
        .map_err(|e| format!("{address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    match tls {
        None => Ok(Connection::Tcp(stream)),
        Some((config, server_name)) => {
            let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                .map_err(|e| format!("{server_name}: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| format!("{address}: TLS: {e}"))?;
            Ok(Connection::Tls(Box::new(stream)))
        }
    }
}

async fn write_all<W: AsyncWrite + Unpin>(writer: &mut W, frames: &[u8]) -> Result<(), String> {
    writer.write_all(frames).await.map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| e.to_string())
}

/// Writes `batch`, octet-counted, and flushes.
pub async fn send(connection: &mut Connection, batch: &[AuditEntry], hostname: &str) -> Result<(), String> {
    let mut frames = Vec::new();
    for entry in batch {
        let message = message(entry, hostname);
        frames.extend_from_slice(format!("{} {message}", message.len()).as_bytes());
    }
    let work = async {
        match connection {
            Connection::Tcp(stream) => write_all(stream, &frames).await,
            Connection::Tls(stream) => write_all(stream.as_mut(), &frames).await,
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(15), work)
        .await
        .map_err(|_| "syslog write timed out".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_rfc5424_with_escaped_structured_data() {
        let entry = AuditEntry {
            id: 42,
            at: "2026-12-02T10:00:00Z".into(),
            actor: "token:o\"ps]".into(),
            action: "session.terminate".into(),
            target: "session:abc".into(),
            reason: "stolen laptop".into(),
            source_address: "203.0.113.7".into(),
            seq: Some(7),
            user_email: Some("bob@corp.example".into()),
            user_subject: None,
            session_id: Some("abc".into()),
            route: None,
            edge: None,
            count: 1,
        };
        let text = message(&entry, "cp-1");
        assert!(
            text.starts_with("<85>1 2026-12-02T10:00:00.000Z cp-1 portcullis - session.terminate [portcullis@32473 "),
            "{text}"
        );
        assert!(text.contains(r#"actor="token:o\"ps\]""#), "{text}");
        assert!(
            text.contains(r#"user="bob@corp.example" session="abc" src="203.0.113.7" class_uid="3002"] {"#),
            "{text}"
        );
    }
}
