//! Security events out: every audit entry, as an OCSF event, to the
//! security team's SIEM. Each `[[siem_sinks]]` entry gets a worker that
//! reads the audit log in id order after its durable cursor
//! (`SqlStore::claim_sink`), delivers a batch, and moves the cursor only
//! after the sink acknowledged it (`advance_sink`): at least once, in
//! order, nothing lost on restart or SIGKILL, and — the cursor row holding a
//! lease — one replica at a time. Events carry their id (`metadata.uid`)
//! for de-duplication (NATS JetStream drops repeats itself).
//!
//! On PostgreSQL an id can become visible after a larger one (its
//! transaction committed later): a gap in the ids is waited for up to
//! `GAP_WAIT` before it is taken for a rolled-back transaction, so events
//! stay in order and are not skipped. SQLite commits in id order.

pub mod elastic;
pub mod nats;
pub mod ocsf;
pub mod settings;
pub mod splunk;
pub mod sqs;
pub mod syslog;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::model::{now_ms, AuditEntry};
use crate::store::Backend;
use settings::{SinkKind, SinkSettings};

/// How long a worker holds a sink's lease; renewed before every batch.
const LEASE_MS: i64 = 15_000;
/// Pause when there is nothing to deliver.
const IDLE: Duration = Duration::from_millis(200);
/// Longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a gap in the audit ids is waited for (PostgreSQL).
const GAP_WAIT: Duration = Duration::from_secs(5);
/// How often the backlog gauges are refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Starts a worker per configured sink.
pub fn spawn(app: &Arc<App>) {
    for sink in &app.config.siem_sinks {
        tokio::spawn(run(Arc::clone(app), sink.clone()));
    }
}

/// The contiguous prefix of `batch` after `cursor`: stops at a gap first
/// seen less than `GAP_WAIT` ago (remembered in `gaps`).
fn settled(batch: Vec<AuditEntry>, cursor: i64, backend: Backend, gaps: &mut HashMap<i64, Instant>) -> Vec<AuditEntry> {
    if backend != Backend::Postgres {
        return batch;
    }
    let mut expected = cursor + 1;
    let mut keep = 0;
    for entry in &batch {
        if entry.id != expected {
            let seen = *gaps.entry(expected).or_insert_with(Instant::now);
            if seen.elapsed() < GAP_WAIT {
                break;
            }
        }
        expected = entry.id + 1;
        keep += 1;
    }
    gaps.retain(|id, _| *id >= expected);
    let mut batch = batch;
    batch.truncate(keep);
    batch
}

/// A connected sink.
enum Connected {
    Nats(nats::Connection),
    Webhook(reqwest::Client),
    Syslog(syslog::Connection),
}

/// A TLS client trusting the certificates in `ca_file` (PEM).
fn tls_client(ca_file: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("{ca_file}: {e}"))? {
        let cert = cert.map_err(|e| format!("{ca_file}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{ca_file}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn connect(sink: &SinkSettings) -> Result<Connected, String> {
    match &sink.kind {
        SinkKind::Nats { address, stream, subject_prefix, token } => {
            let mut connection = nats::Connection::connect(address, token.as_deref()).await?;
            connection.ensure_stream(stream, subject_prefix).await?;
            Ok(Connected::Nats(connection))
        }
        SinkKind::Webhook { .. } | SinkKind::Splunk { .. } | SinkKind::Elastic { .. } | SinkKind::Sqs(_) => {
            Ok(Connected::Webhook(
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.to_string())?,
            ))
        }
        SinkKind::Syslog { address, tls, .. } => {
            let tls = match tls {
                Some((ca_file, name)) => Some((tls_client(ca_file)?, name.clone())),
                None => None,
            };
            Ok(Connected::Syslog(syslog::connect(address, tls).await?))
        }
    }
}

/// Delivers `batch`; how many events the sink refused for good (skipped).
async fn deliver(sink: &SinkSettings, connected: &mut Connected, batch: &[AuditEntry]) -> Result<u64, String> {
    match (connected, &sink.kind) {
        (Connected::Nats(connection), SinkKind::Nats { subject_prefix, .. }) => {
            let ids: Vec<String> = batch.iter().map(ocsf::event_id).collect();
            let events: Vec<nats::Publish<'_>> = batch
                .iter()
                .zip(&ids)
                .map(|(entry, id)| nats::Publish {
                    subject: format!("{subject_prefix}.{}", ocsf::class_name(&entry.action)),
                    id,
                    body: ocsf::to_ocsf(entry).to_string().into_bytes(),
                })
                .collect();
            connection.publish(&events).await.map(|()| 0)
        }
        (Connected::Webhook(client), SinkKind::Webhook { url, secret }) => {
            webhook::post(client, url, secret, batch).await.map(|()| 0)
        }
        (Connected::Webhook(client), SinkKind::Sqs(target)) => sqs::send(client, target, batch).await.map(|()| 0),
        (Connected::Webhook(client), SinkKind::Splunk { url, token, hostname }) => {
            splunk::post(client, url, token, hostname, batch).await.map(|()| 0)
        }
        (Connected::Webhook(client), SinkKind::Elastic { url, index, authorization }) => {
            elastic::post(client, url, authorization.as_deref(), index, batch).await
        }
        (Connected::Syslog(connection), SinkKind::Syslog { hostname, .. }) => {
            syslog::send(connection, batch, hostname).await.map(|()| 0)
        }
        _ => Err("the sink's connection does not match its kind".into()),
    }
}

async fn run(app: Arc<App>, sink: SinkSettings) {
    let token = crate::secrets::new_id();
    let metrics = app.metrics.siem.clone();
    let mut connected: Option<Connected> = None;
    let mut gaps = HashMap::new();
    let mut failures = 0u32;
    let mut backlog_at = Instant::now() - BACKLOG_EVERY;
    loop {
        if backlog_at.elapsed() >= BACKLOG_EVERY {
            backlog_at = Instant::now();
            if let Ok(backlog) = app.store.sink_backlog(&sink.name).await {
                metrics.backlog.with_label_values(&[&sink.name]).set(backlog.pending);
                let age = backlog.oldest_ms.map_or(0, |oldest| (now_ms() - oldest).max(0) / 1000);
                metrics.oldest_age.with_label_values(&[&sink.name]).set(age);
            }
        }
        let outcome = step(&app, &sink, &token, &mut connected, &mut gaps).await;
        let pause = match outcome {
            Ok(0) => {
                failures = 0;
                IDLE
            }
            Ok(delivered) => {
                failures = 0;
                metrics.events.with_label_values(&[&sink.name, "delivered"]).inc_by(delivered as u64);
                Duration::ZERO
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                connected = None;
                metrics.events.with_label_values(&[&sink.name, "failed_batches"]).inc();
                tracing::warn!(sink = %sink.name, %error, failures, "SIEM delivery failed; retrying");
                (Duration::from_millis(250) * 2u32.saturating_pow(failures.min(8))).min(MAX_BACKOFF)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// One batch: how many events were delivered (0: nothing to do, or
/// another replica holds the lease).
async fn step(
    app: &App,
    sink: &SinkSettings,
    token: &str,
    connected: &mut Option<Connected>,
    gaps: &mut HashMap<i64, Instant>,
) -> Result<usize, String> {
    let store = &app.store;
    let Some(cursor) =
        store.claim_sink(&sink.name, token, sink.start, now_ms(), LEASE_MS).await.map_err(|e| e.to_string())?
    else {
        return Ok(0);
    };
    let batch = store.audit_after(cursor, sink.batch).await.map_err(|e| e.to_string())?;
    let batch = settled(batch, cursor, store.backend(), gaps);
    let Some(last) = batch.last().map(|e| e.id) else { return Ok(0) };
    if connected.is_none() {
        *connected = Some(connect(sink).await?);
    }
    let Some(connection) = connected.as_mut() else { return Ok(0) };
    let rejected = deliver(sink, connection, &batch).await?;
    if rejected > 0 {
        app.metrics.siem.events.with_label_values(&[&sink.name, "rejected"]).inc_by(rejected);
    }
    if !store.advance_sink(&sink.name, token, last, now_ms()).await.map_err(|e| e.to_string())? {
        // The lease lapsed while delivering: another replica may send these
        // again (at least once); this one starts over from the cursor.
        return Ok(0);
    }
    Ok(batch.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(ids: &[i64]) -> Vec<AuditEntry> {
        ids.iter()
            .map(|id| AuditEntry {
                id: *id,
                at: String::new(),
                actor: String::new(),
                action: String::new(),
                target: String::new(),
                reason: String::new(),
                source_address: String::new(),
                seq: None,
                user_email: None,
                user_subject: None,
                session_id: None,
                route: None,
                edge: None,
                count: 1,
            })
            .collect()
    }

    #[test]
    fn a_fresh_gap_holds_the_batch_back_on_postgres_only() {
        let mut gaps = HashMap::new();
        let ids = |b: Vec<AuditEntry>| b.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(settled(entries(&[11, 12, 14, 15]), 10, Backend::Postgres, &mut gaps)), [11, 12]);
        assert!(gaps.contains_key(&13), "the gap is remembered");
        assert_eq!(ids(settled(entries(&[11, 12, 14]), 10, Backend::Sqlite, &mut HashMap::new())), [11, 12, 14]);
        let mut old = HashMap::from([(13, Instant::now() - GAP_WAIT)]);
        assert_eq!(
            ids(settled(entries(&[14, 15]), 12, Backend::Postgres, &mut old)),
            [14, 15],
            "a stale gap is skipped"
        );
        assert!(old.is_empty());
    }
}
