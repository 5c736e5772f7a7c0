//! NATS JetStream sink: each event is published to `<subject_prefix>.<class>`
//! (e.g. `portcullis.authentication`) with the header `Nats-Msg-Id: <event
//! id>`, so JetStream drops a redelivered event within its duplicate window,
//! and each publish waits for JetStream's acknowledgement (`{"stream",
//! "seq"}`) before the batch counts as delivered. A batch is pipelined on
//! one connection, so the stream stores it in order. The stream is created
//! at start if it does not exist (subjects `<subject_prefix>.>`).
//!
//! A minimal client of the NATS text protocol (docs.nats.io, "Client
//! Protocol"): INFO/CONNECT, HPUB with a reply inbox, SUB, MSG/HMSG, PING/PONG.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Timeout of one batch (connect, publish, acknowledgements).
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// JetStream's duplicate window for the stream we create (2 minutes).
const DUPLICATE_WINDOW_NS: u64 = 120_000_000_000;

/// One event to publish.
pub struct Publish<'a> {
    /// `<prefix>.<class>`.
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub id: &'a str,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// A connection to a NATS server.
pub struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    inbox: String,
}

fn failed(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Connection {
    /// Connects to `address` (`host:port`), with `token` if the server needs one.
    pub async fn connect(address: &str, token: Option<&str>) -> Result<Self, String> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address))
            .await
            .map_err(|_| format!("{address}: connect timed out"))?
            .map_err(|e| format!("{address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (read, writer) = stream.into_split();
        let mut connection = Self {
            reader: BufReader::new(read),
            writer,
            inbox: format!("_INBOX.portcullis.{}", crate::secrets::new_id()),
        };
        let info = connection.line().await?;
        if !info.starts_with("INFO ") {
            return Err(format!("{address}: not a NATS server ({info})"));
        }
        let mut connect = json!({ "verbose": false, "pedantic": false, "headers": true, "no_responders": true,
                                  "name": "portcullis-control-plane", "lang": "rust", "version": "1" });
        if let Some(token) = token {
            connect["auth_token"] = json!(token);
        }
        let hello = format!("CONNECT {connect}\r\nSUB {}.* 1\r\nPING\r\n", connection.inbox);
        connection.writer.write_all(hello.as_bytes()).await.map_err(failed)?;
        loop {
            let line = connection.line().await?;
            match line.as_str() {
                "PONG" => return Ok(connection),
                "+OK" | "PING" => continue,
                error => return Err(format!("{address}: {error}")),
            }
        }
    }

    async fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).await.map_err(failed)?;
        if n == 0 {
            return Err("the NATS server closed the connection".into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// The next reply to our inbox: (reply number, status header, body).
    async fn reply(&mut self) -> Result<(usize, Option<String>, Vec<u8>), String> {
        loop {
            let line = self.line().await?;
            if line == "PING" {
                self.writer.write_all(b"PONG\r\n").await.map_err(failed)?;
                continue;
            }
            if line == "+OK" || line == "PONG" {
                continue;
            }
            // `MSG <subject> <sid> [reply-to] <bytes>`, `HMSG <subject> <sid> [reply-to] <header bytes> <bytes>`.
            let parts: Vec<&str> = line.split_whitespace().collect();
            let number = |text: &str| text.parse::<usize>().map_err(failed);
            let (subject, header_len, total) = match parts.as_slice() {
                ["MSG", subject, _sid, size] | ["MSG", subject, _sid, _, size] => (*subject, 0, number(size)?),
                ["HMSG", subject, _sid, h, size] | ["HMSG", subject, _sid, _, h, size] => {
                    (*subject, number(h)?, number(size)?)
                }
                _ if line.starts_with("-ERR") => return Err(line),
                _ => return Err(format!("unexpected from NATS: {line}")),
            };
            let mut payload = vec![0u8; total + 2];
            self.reader.read_exact(&mut payload).await.map_err(failed)?;
            payload.truncate(total);
            let status = (header_len > 0).then(|| {
                let head = String::from_utf8_lossy(&payload[..header_len]);
                head.lines().next().unwrap_or("").trim_start_matches("NATS/1.0").trim().to_owned()
            });
            let body = payload.split_off(header_len);
            let number = subject.rsplit('.').next().and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
            return Ok((number, status.filter(|s| !s.is_empty()), body));
        }
    }

    /// A JetStream API request (`$JS.API.…`) and its JSON answer.
    pub async fn request(&mut self, subject: &str, body: &Value) -> Result<Value, String> {
        let body = body.to_string();
        let message = format!("PUB {subject} {}.0 {}\r\n{body}\r\n", self.inbox, body.len());
        self.writer.write_all(message.as_bytes()).await.map_err(failed)?;
        let (_, status, reply) = self.reply().await?;
        if let Some(status) = status {
            return Err(format!("{subject}: {status}"));
        }
        serde_json::from_slice(&reply).map_err(failed)
    }

    /// Creates `stream` for `<prefix>.>` unless it exists.
    pub async fn ensure_stream(&mut self, stream: &str, prefix: &str) -> Result<(), String> {
        let info = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), &json!({})).await?;
        match info.pointer("/error/code").and_then(Value::as_u64) {
            None => Ok(()),
            Some(404) => {
                let config = json!({ "name": stream, "subjects": [format!("{prefix}.>")],
                                     "duplicate_window": DUPLICATE_WINDOW_NS, "storage": "file" });
                let created = self.request(&format!("$JS.API.STREAM.CREATE.{stream}"), &config).await?;
                match created.get("error") {
                    None => Ok(()),
                    Some(error) => Err(format!("creating stream {stream}: {error}")),
                }
            }
            Some(_) => Err(format!("stream {stream}: {}", info["error"])),
        }
    }

    /// Publishes `events` in order and waits for every acknowledgement.
    pub async fn publish(&mut self, events: &[Publish<'_>]) -> Result<(), String> {
        let work = async {
            let mut out = Vec::new();
            for (n, event) in events.iter().enumerate() {
                let headers = format!("NATS/1.0\r\nNats-Msg-Id: {}\r\n\r\n", event.id);
                let total = headers.len() + event.body.len();
                out.extend_from_slice(
                    format!("HPUB {} {}.{} {} {total}\r\n{headers}", event.subject, self.inbox, n + 1, headers.len())
                        .as_bytes(),
                );
                out.extend_from_slice(&event.body);
                out.extend_from_slice(b"\r\n");
            }
            self.writer.write_all(&out).await.map_err(failed)?;
            let mut acked = vec![false; events.len()];
            for _ in 0..events.len() {
                let (number, status, body) = self.reply().await?;
                if let Some(status) = status {
                    return Err(format!("JetStream answered {status} (no stream for the subject?)"));
                }
                let answer: Value = serde_json::from_slice(&body).map_err(failed)?;
                if let Some(error) = answer.get("error") {
                    return Err(format!("JetStream refused an event: {error}"));
                }
                if let Some(slot) = number.checked_sub(1).and_then(|i| acked.get_mut(i)) {
                    *slot = true;
                }
            }
            if acked.iter().all(|a| *a) {
                Ok(())
            } else {
                Err("JetStream did not acknowledge every event".into())
            }
        };
        tokio::time::timeout(BATCH_TIMEOUT, work).await.map_err(|_| "JetStream did not answer in time".to_owned())?
    }
}
