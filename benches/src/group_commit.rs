//! A what-if for the termination benchmark: the same durable work the store
//! does per termination (end the session, append a change-log row with the
//! wire-encoded delta, write an audit row, commit with the configured
//! durability; on PostgreSQL under the change-log advisory lock, with a
//! NOTIFY), but for `batch` terminations per transaction, as a group-commit
//! writer would. It shows what batching would reach on the same disk; the
//! store itself is not changed.

use std::time::{Duration, Instant};

use portcullis_policy::wire::{encode, Message};
use portcullis_policy::{Change, Delta, SessionId};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};

use crate::control_plane::Backend;

/// Opens a one-connection pool with the store's durability settings.
pub async fn writer(url: &str, backend: Backend) -> AnyPool {
    sqlx::any::install_default_drivers();
    let options = AnyPoolOptions::new().max_connections(1);
    let options = if backend == Backend::Sqlite {
        options.after_connect(|conn, _| {
            Box::pin(async move {
                // As the store: WAL with synchronous=FULL, every commit on disk.
                conn.execute("PRAGMA busy_timeout=10000; PRAGMA synchronous=FULL").await?;
                Ok(())
            })
        })
    } else {
        options
    };
    options.connect(url).await.expect("connect the what-if writer")
}

/// Terminates `ids` in transactions of `batch`; returns the time taken.
pub async fn terminate_batched(pool: &AnyPool, backend: Backend, ids: &[String], batch: usize) -> Duration {
    let started = Instant::now();
    for chunk in ids.chunks(batch) {
        let now = portcullis_control_plane::model::now_ms();
        let mut tx = pool.begin().await.expect("begin");
        if backend == Backend::Postgres {
            (&mut *tx)
                .execute("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(7428001)) AS l")
                .await
                .expect("lock");
        }
        // Literal SQL without parameters: the simple query protocol, no statement to prepare
        // per distinct batch (the store's fixed statements are prepared once and cached).
        let list = chunk.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
        let update = format!(
            "UPDATE sessions SET ended_ms = {now}, end_reason = 'bench' WHERE id IN ({list}) AND ended_ms IS NULL \
             RETURNING id, expires_ms"
        );
        let ended = (&mut *tx).fetch_all(update.as_str()).await.expect("end sessions");
        let first: i64 = (&mut *tx)
            .fetch_one("SELECT COALESCE(MAX(seq), 0) + 1 FROM change_log")
            .await
            .and_then(|row| row.try_get(0))
            .expect("next seq");
        let mut changes = String::from("INSERT INTO change_log (seq, at_ms, delta) VALUES ");
        let mut audit =
            String::from("INSERT INTO audit_log (at_ms, actor, action, target, reason, source_address, seq) VALUES ");
        for (n, row) in ended.iter().enumerate() {
            let id: String = row.try_get("id").expect("id");
            let expires: i64 = row.try_get("expires_ms").expect("expires");
            let seq = first + n as i64;
            let session: SessionId = id.parse().expect("session id");
            let change = Change::TerminateSession { session, expires_at: expires.div_euclid(1000) + 1 };
            let delta = blob(backend, &encode(&Message::Delta(Delta { seq: seq as u64, change })));
            let sep = if n > 0 { "," } else { "" };
            changes.push_str(&format!("{sep}({seq}, {now}, {delta})"));
            audit.push_str(&format!(
                "{sep}({now}, 'token:bench', 'session.terminate', 'session:{id}', 'bench', '127.0.0.1', {seq})"
            ));
        }
        if !ended.is_empty() {
            (&mut *tx).execute(changes.as_str()).await.expect("change-log rows");
            (&mut *tx).execute(audit.as_str()).await.expect("audit rows");
            if backend == Backend::Postgres {
                let last = first + ended.len() as i64 - 1;
                let notify = format!("SELECT 1 AS n FROM (SELECT pg_notify('portcullis_changes', '{last}')) AS n");
                (&mut *tx).execute(notify.as_str()).await.expect("notify");
            }
        }
        tx.commit().await.expect("commit");
    }
    started.elapsed()
}

/// A blob literal in the backend's syntax.
fn blob(backend: Backend, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match backend {
        Backend::Sqlite => format!("X'{hex}'"),
        Backend::Postgres => format!("'\\x{hex}'::bytea"),
    }
}
