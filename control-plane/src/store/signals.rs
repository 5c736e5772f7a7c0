//! Applied signals (`received_signals`): what a Security Event Token or an
//! API signal did, committed in one transaction with the record of its
//! `jti`, so a replay or a redelivery after a crash is recognised and never
//! applied twice. For polled transmitters the rows also carry whether the
//! transmitter has been acknowledged (RFC 8936 `ack`).

use portcullis_policy::UserRef;
use sqlx::{Any, Transaction};

use super::audit::insert_audit;
use super::group_commit::{terminate_in, EndedBy};
use super::users::user_key;
use super::{SqlStore, StoreResult};
use crate::model::{Actor, Millis};

/// One thing a signal does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalStep {
    /// End the live sessions of this IdP login session (`sid` at `idp_issuer`).
    EndIdpSession {
        /// The issuer the sessions were created from.
        idp_issuer: String,
        /// The IdP's session id.
        sid: String,
    },
    /// End one Portcullis session.
    EndSession(String),
    /// Terminate every session of the user.
    EndUser(UserRef),
    /// Lock the user.
    Lock(UserRef),
}

/// A signal about to be applied.
#[derive(Debug, Clone)]
pub struct SignalRecord<'a> {
    /// `ssf:<transmitter>` or `api:<token>`.
    pub source: &'a str,
    /// The event's unique id at its source.
    pub jti: &'a str,
    /// The event types, comma-separated, for the record.
    pub event_types: &'a str,
    /// When the source issued it.
    pub iat_ms: Millis,
    /// Whom the audit row names (`email:…`, `sub:…`, `session:…`).
    pub target: &'a str,
    /// The audit line: event, response, jti.
    pub summary: &'a str,
    /// The audit action (`signal.applied`, `response.fired`, `response.dry_run`).
    pub audit_action: &'a str,
    /// Polled: false until the transmitter has been acknowledged.
    pub acked: bool,
}

/// New groups for a user's tokens issued until now: the user, the groups,
/// and until when (Unix seconds) a token issued before could still be alive.
pub type GroupsChange<'a> = (&'a UserRef, &'a [String], i64);

/// What applying a signal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedSignal {
    /// The `jti` was applied before: nothing was done now.
    pub duplicate: bool,
    /// The newest change-log sequence written (edges have applied the
    /// signal once they acknowledge it).
    pub seq: Option<u64>,
    /// Portcullis sessions ended.
    pub sessions_ended: usize,
}

impl SqlStore {
    /// Applies `steps` for `signal` in one transaction with its record and
    /// audit row; a `jti` seen before from the same source does nothing.
    pub async fn apply_signal(
        &self,
        signal: &SignalRecord<'_>,
        steps: &[SignalStep],
        groups: Option<GroupsChange<'_>>,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<AppliedSignal> {
        // A known duplicate needs no change transaction (which serialises
        // every change writer): response rules meet the same (rule, session)
        // on every report that follows a firing. A polled redelivery still
        // takes the write path, to be acknowledged again.
        if signal.acked && self.signal_recorded(signal.source, signal.jti).await? {
            return Ok(AppliedSignal { duplicate: true, ..AppliedSignal::default() });
        }
        let mut tx = self.begin_change().await?;
        let inserted = sqlx::query(
            "INSERT INTO received_signals (source, jti, event_types, iat_ms, received_ms, outcome, acked) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, jti) DO NOTHING",
        )
        .bind(signal.source)
        .bind(signal.jti)
        .bind(signal.event_types)
        .bind(signal.iat_ms)
        .bind(now)
        .bind(signal.summary)
        .bind(i32::from(signal.acked))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            if !signal.acked {
                // Handed over again: the transmitter missed our ack; the next poll repeats it.
                sqlx::query("UPDATE received_signals SET acked = 0 WHERE source = $1 AND jti = $2")
                    .bind(signal.source)
                    .bind(signal.jti)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            return Ok(AppliedSignal { duplicate: true, ..AppliedSignal::default() });
        }
        let mut applied = AppliedSignal::default();
        let mut enqueued = false;
        let reason = signal.summary;
        for step in steps {
            let (seq, jobs) = self.step_in(&mut tx, step, reason, actor, now, &mut applied.sessions_ended).await?;
            applied.seq = applied.seq.max(seq);
            enqueued |= jobs;
        }
        if let Some((user, groups, expires_at_s)) = groups {
            let seq = self.override_groups_in(&mut tx, user, groups, now, expires_at_s, reason, actor, now).await?;
            applied.seq = applied.seq.max(Some(seq));
        }
        insert_audit(&mut tx, signal.audit_action, signal.target, reason, actor, now, applied.seq).await?;
        self.commit_change(tx, applied.seq).await?;
        if enqueued {
            self.outbox.wake();
        }
        Ok(applied)
    }

    async fn step_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        step: &SignalStep,
        reason: &str,
        actor: &Actor,
        now: Millis,
        ended: &mut usize,
    ) -> StoreResult<(Option<u64>, bool)> {
        let mut end =
            async |tx: &mut Transaction<'static, Any>, ids: Vec<String>| -> StoreResult<(Option<u64>, bool)> {
                let (mut newest, mut enqueued) = (None, false);
                for id in ids {
                    let (result, jobs) = terminate_in(tx, self, (&id, reason, actor, now, EndedBy::Admin)).await?;
                    if let Ok(Some(seq)) = result {
                        *ended += 1;
                        newest = newest.max(Some(seq));
                    }
                    enqueued |= jobs;
                }
                Ok((newest, enqueued))
            };
        match step {
            SignalStep::EndIdpSession { idp_issuer, sid } => {
                let ids = sqlx::query_scalar(
                    "SELECT id FROM sessions WHERE idp_session_id = $1 AND idp_issuer = $2 AND ended_ms IS NULL \
                     ORDER BY id",
                )
                .bind(sid)
                .bind(idp_issuer)
                .fetch_all(&mut **tx)
                .await?;
                end(tx, ids).await
            }
            SignalStep::EndSession(id) => end(tx, vec![id.clone()]).await,
            SignalStep::EndUser(user) => {
                let done = self.terminate_user_in(tx, user, reason, actor, now).await?;
                *ended += done.sessions.len();
                Ok((Some(done.seq), done.enqueued))
            }
            SignalStep::Lock(user) => {
                let (seq, enqueued) = self.lock_user_in(tx, user, reason, None, actor, now).await?;
                Ok((Some(seq), enqueued))
            }
        }
    }

    /// Whether `jti` of `source` was applied before.
    pub async fn signal_recorded(&self, source: &str, jti: &str) -> StoreResult<bool> {
        let found = sqlx::query("SELECT 1 FROM received_signals WHERE source = $1 AND jti = $2")
            .bind(source)
            .bind(jti)
            .fetch_optional(&self.reader)
            .await?;
        Ok(found.is_some())
    }

    /// The jtis of `source` not yet acknowledged at the transmitter (at most `limit`).
    pub async fn unacked_signals(&self, source: &str, limit: u32) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT jti FROM received_signals WHERE source = $1 AND acked = 0 ORDER BY jti LIMIT $2")
            .bind(source)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?)
    }

    /// Records that the transmitter was acknowledged for `jtis`.
    pub async fn mark_signals_acked(&self, source: &str, jtis: &[String]) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        for jti in jtis {
            sqlx::query("UPDATE received_signals SET acked = 1 WHERE source = $1 AND jti = $2")
                .bind(source)
                .bind(jti)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether the control plane knows `user`: a session (past or
    /// present) or a lock record.
    pub async fn user_known(&self, user: &UserRef) -> StoreResult<bool> {
        let (column, value) = match user {
            UserRef::Subject(s) => ("subject", s.to_string()),
            UserRef::Email(e) => ("email", e.to_ascii_lowercase()),
        };
        let session = sqlx::query(&format!("SELECT id FROM sessions WHERE {column} = $1 LIMIT 1"))
            .bind(&value)
            .fetch_optional(&self.reader)
            .await?;
        if session.is_some() {
            return Ok(true);
        }
        let user_row = sqlx::query("SELECT user_key FROM users WHERE user_key = $1")
            .bind(user_key(user))
            .fetch_optional(&self.reader)
            .await?;
        Ok(user_row.is_some())
    }

    /// How many denials of `session` the edges reported since `since_ms`:
    /// the rows filed under exactly `session:<id>` (`session_id` alone is
    /// read from a target's last word, which a user's own identity string
    /// could end with), each counted as many times as it occurred (an edge
    /// sums a burst into one row).
    pub async fn denials_since(&self, session: &str, since_ms: Millis) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(occurrences), 0) AS BIGINT) FROM audit_log WHERE session_id = $1 \
             AND target = $2 AND action = 'access.denied' AND at_ms >= $3",
        )
        .bind(session)
        .bind(format!("session:{session}"))
        .bind(since_ms)
        .fetch_one(&self.reader)
        .await?)
    }
}

/// The audit target naming `user`.
pub fn signal_target(user: Option<&UserRef>, idp_session: Option<&str>) -> String {
    match (user, idp_session) {
        (Some(user), _) => user_key(user),
        (None, Some(sid)) => format!("idp_session:{sid}"),
        (None, None) => "nobody".into(),
    }
}
