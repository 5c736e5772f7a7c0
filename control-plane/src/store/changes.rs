//! The change log: appending a change inside an action's transaction,
//! reading changes for the edge stream, and rebuilding a full snapshot from
//! the domain tables for edges that are too far behind.
//!
//! Sequence numbers are allocated inside the transaction (MAX + 1) while
//! holding the writer lock (SQLite: the single writer connection;
//! PostgreSQL: a transaction-scoped advisory lock), so commit order equals
//! sequence order and a reader never sees seq N+1 before N. Actions that
//! append a change take that lock when they begin ([`SqlStore::begin_change`]),
//! before reading the state they decide on.

use async_trait::async_trait;
use portcullis_policy::ids::SessionId;
use portcullis_policy::snapshot::{KeyAlgorithm, Lock, PublicKey, UserState};
use portcullis_policy::wire::{encode, Message, SnapshotBody};
use portcullis_policy::{Change, Delta, PolicySource, TokenId, UserRef};
use sqlx::{Any, Row, Transaction};

use super::claims::{expire_overrides, live_overrides};
use super::rows::{seq_param, value_rows};
use super::users::parse_user_key;
use super::{Backend, ChangeStore, SqlStore, StoreError, StoreResult};
use crate::model::Millis;

/// PostgreSQL advisory lock key serialising change-log appends.
const CHANGE_LOG_LOCK: i64 = 7_428_001;
/// PostgreSQL channel that wakes other replicas' streams.
pub const CHANGES_CHANNEL: &str = "portcullis_changes";
/// Retired signing keys stay published this long, so tokens they signed verify.
const RETIRED_KEY_GRACE_MS: Millis = 7 * 24 * 3600 * 1000;

impl SqlStore {
    /// Begins the transaction of an action that appends to the change log.
    ///
    /// Such actions read before they write (is the session still active? how
    /// many sessions does the user have? which policy version is next? which
    /// signing keys are current?). SQLite runs them one at a time on its single
    /// writer connection; on PostgreSQL the change-log lock is taken here,
    /// before those reads, so that two concurrent actions cannot both decide on
    /// the same stale state (ending one session twice, exceeding a session
    /// limit, colliding policy versions, two current signing keys).
    pub(crate) async fn begin_change(&self) -> StoreResult<Transaction<'static, Any>> {
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            lock_change_log(&mut tx).await?;
        }
        Ok(tx)
    }

    /// Commits a transaction from [`Self::begin_change`] and, when it
    /// appended `seq`, tells this replica's edge streams at once (the change
    /// feed's head, see `ChangeFeed::of_store`): waking the edges is part of the commit,
    /// not something each caller must remember (other replicas hear it
    /// through `NOTIFY` or their poll).
    pub(crate) async fn commit_change(&self, tx: Transaction<'static, Any>, seq: Option<u64>) -> StoreResult<()> {
        tx.commit().await?;
        if let Some(seq) = seq {
            self.committed.send_if_modified(|head| {
                let newer = seq > *head;
                if newer {
                    *head = seq;
                }
                newer
            });
        }
        Ok(())
    }

    /// The signal [`Self::commit_change`] moves: the change feed's head.
    pub(crate) fn commit_signal(&self) -> std::sync::Arc<tokio::sync::watch::Sender<u64>> {
        std::sync::Arc::clone(&self.committed)
    }
}

/// Takes the PostgreSQL change-log lock until the transaction ends.
async fn lock_change_log(tx: &mut Transaction<'static, Any>) -> StoreResult<()> {
    sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1)) AS l")
        .bind(CHANGE_LOG_LOCK)
        .fetch_one(&mut **tx)
        .await?;
    Ok(())
}

/// Appends `change` as the next sequence; returns the sequence. The
/// transaction must come from [`SqlStore::begin_change`], which holds the
/// change-log lock (so sequence order is commit order).
pub(crate) async fn append_change(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    change: Change,
    now: Millis,
) -> StoreResult<u64> {
    append_changes(tx, backend, vec![(change, now)]).await
}

/// Appends `changes` as the next sequences, in order, with one statement
/// and (on PostgreSQL) one `NOTIFY` naming the last; returns the first
/// sequence (the `i`-th change has `first + i`). Same lock rule as
/// [`append_change`]; an empty list appends nothing.
pub(crate) async fn append_changes(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    changes: Vec<(Change, Millis)>,
) -> StoreResult<u64> {
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM change_log").fetch_one(&mut **tx).await?;
    let first = u64::try_from(next).map_err(|_| StoreError::Corrupt(format!("change-log sequence {next}")))?;
    if changes.is_empty() {
        return Ok(first);
    }
    let sql = format!("INSERT INTO change_log (seq, at_ms, delta) VALUES {}", value_rows(changes.len(), 3));
    let mut insert = sqlx::query(&sql);
    let last = next + changes.len() as i64 - 1;
    for (seq, (change, at_ms)) in (next..).zip(changes) {
        let delta = encode(&Message::Delta(Delta { seq: seq as u64, change }));
        insert = insert.bind(seq).bind(at_ms).bind(delta);
    }
    insert.execute(&mut **tx).await?;
    if backend == Backend::Postgres {
        // Delivered at commit, to every replica listening; listeners read
        // every change up to the one named.
        sqlx::query("SELECT 1 AS notified FROM (SELECT pg_notify($1, $2)) AS n")
            .bind(CHANGES_CHANNEL)
            .bind(last.to_string())
            .fetch_one(&mut **tx)
            .await?;
    }
    Ok(first)
}

/// Seconds, rounding up, from milliseconds.
pub(crate) fn ceil_seconds(ms: Millis) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

#[async_trait]
impl ChangeStore for SqlStore {
    async fn head_seq(&self) -> StoreResult<u64> {
        let head: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM change_log").fetch_one(&self.reader).await?;
        Ok(head as u64)
    }

    async fn oldest_retained_seq(&self) -> StoreResult<Option<u64>> {
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM change_log").fetch_one(&self.reader).await?;
        Ok(oldest.map(|s| s as u64))
    }

    async fn changes_after(&self, after: u64, limit: u32) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        let rows = sqlx::query("SELECT seq, delta FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(seq_param(after))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|row| Ok((row.try_get::<i64, _>("seq")? as u64, row.try_get("delta")?))).collect()
    }

    async fn prune_changes_before(&self, before: u64) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM change_log WHERE seq < $1 AND seq < (SELECT MAX(seq) FROM change_log)")
            .bind(seq_param(before))
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected())
    }

    async fn expire_before(&self, cutoff_s: i64, now: Millis) -> StoreResult<u64> {
        let mut tx = self.begin_change().await?;
        let seq = append_change(&mut tx, self.backend, Change::ExpireBefore { cutoff: cutoff_s }, now).await?;
        // Edges forget these overrides with this change; so does the table.
        expire_overrides(&mut tx, cutoff_s).await?;
        self.commit_change(tx, Some(seq)).await?;
        Ok(seq)
    }

    async fn snapshot_body(&self, now: Millis) -> StoreResult<SnapshotBody> {
        let mut tx = self.reader.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        }
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM change_log").fetch_one(&mut *tx).await?;
        let policy = sqlx::query("SELECT version, document FROM policy_versions ORDER BY version DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let policy = match policy {
            Some(row) => PolicySource {
                name: format!("policy v{}", row.try_get::<i64, _>("version")?),
                text: row.try_get("document")?,
            },
            None => portcullis_policy::Policy::empty().source().clone(),
        };
        let mut terminated_sessions = Vec::new();
        for row in sqlx::query("SELECT id, expires_ms FROM sessions WHERE ended_ms IS NOT NULL AND expires_ms > $1")
            .bind(now)
            .fetch_all(&mut *tx)
            .await?
        {
            let id: String = row.try_get("id")?;
            let session = id.parse::<SessionId>().map_err(|e| StoreError::Corrupt(format!("session id {id}: {e}")))?;
            terminated_sessions.push((session, ceil_seconds(row.try_get("expires_ms")?)));
        }
        let mut revoked_tokens = Vec::new();
        for row in sqlx::query(
            "SELECT id, expires_ms FROM api_tokens WHERE kind = 'service' AND revoked_ms IS NOT NULL \
             AND (expires_ms IS NULL OR expires_ms > $1)",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        {
            let expires: Option<Millis> = row.try_get("expires_ms")?;
            revoked_tokens
                .push((TokenId::new(&row.try_get::<String, _>("id")?), expires.map_or(i64::MAX, ceil_seconds)));
        }
        let mut users = Vec::new();
        for row in sqlx::query(
            "SELECT user_key, locked, lock_reason, locked_until_s, revoked_before_ms FROM users \
             WHERE locked = 1 OR revoked_before_ms IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?
        {
            let key: String = row.try_get("user_key")?;
            let user = parse_user_key(&key).ok_or_else(|| StoreError::Corrupt(format!("user key {key}")))?;
            let lock = (row.try_get::<i64, _>("locked")? == 1).then(|| -> StoreResult<Lock> {
                Ok(Lock {
                    until: row.try_get("locked_until_s")?,
                    reason: row.try_get::<Option<String>, _>("lock_reason")?.unwrap_or_default(),
                })
            });
            let revoked_before_ms = row.try_get("revoked_before_ms")?;
            users.push((user, UserState { lock: lock.transpose()?, revoked_before_ms, groups: None }));
        }
        let overrides = live_overrides(&mut tx, now).await?;
        if !overrides.is_empty() {
            // One entry per user: an override joins the user's lock or
            // terminate-all (both tables are keyed by the same user key).
            let at: std::collections::HashMap<UserRef, usize> =
                users.iter().enumerate().map(|(i, (user, _))| (user.clone(), i)).collect();
            for (user, groups) in overrides {
                match at.get(&user) {
                    Some(&i) => users[i].1.groups = Some(groups),
                    None => users.push((user, UserState { groups: Some(groups), ..UserState::default() })),
                }
            }
        }
        let signing_keys = published_keys(&mut tx, now).await?;
        tx.commit().await?;
        Ok(SnapshotBody { seq: seq as u64, policy, terminated_sessions, revoked_tokens, users, signing_keys })
    }
}

/// The public keys edges verify with: current ones and recently retired
/// ones, never revoked ones.
pub(crate) async fn published_keys(tx: &mut Transaction<'static, Any>, now: Millis) -> StoreResult<Vec<PublicKey>> {
    let rows = sqlx::query(
        "SELECT kid, alg, x, y FROM signing_keys WHERE (retired_ms IS NULL OR retired_ms > $1) AND revoked_ms IS NULL \
         ORDER BY created_ms",
    )
    .bind(now - RETIRED_KEY_GRACE_MS)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            let alg: String = row.try_get("alg")?;
            let alg = match alg.as_str() {
                "ES256" => KeyAlgorithm::ES256,
                "EdDSA" => KeyAlgorithm::EdDSA,
                other => return Err(StoreError::Corrupt(format!("signing key algorithm {other}"))),
            };
            Ok(PublicKey { kid: row.try_get("kid")?, alg, x: row.try_get("x")?, y: row.try_get("y")? })
        })
        .collect()
}
