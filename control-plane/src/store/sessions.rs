//! Sessions: logins recorded for edges, terminations (one session or every
//! session of a user), listing with filters and cursor pagination, and the
//! activity edges report.

use async_trait::async_trait;
use portcullis_policy::policy::SessionLimitAction;
use portcullis_policy::{Change, SessionId, UserRef};
use sqlx::{Any, Row, Transaction};

use super::audit::{insert_audit_about, AuditAbout};
use super::changes::{append_change, ceil_seconds};
use super::group_commit::EndedBy;
use super::rows::{contains, session, to_json, Params, SESSION_COLUMNS};
use super::termination_batch::{end_in, EndOutcome, EndRequest, Ending};
use super::users::user_key;
use super::{
    Activity, Backend, CreatedSession, NewSession, SessionFilter, SessionLimit, SessionStore, SqlStore, StoreError,
    StoreResult,
};
use crate::model::{Actor, Millis, SessionRecord};

/// Reason recorded on sessions ended to respect a route's session limit.
const REPLACED_REASON: &str = "ended by a newer login (session limit of the route)";

/// When a new session of `new`'s user starts: `now`, or 1 ms after the
/// user's latest terminate-all if that is not earlier (the same millisecond,
/// or a clock that went back, or another replica's clock ahead). Its token is
/// issued then, so the edges admit it: a session the control plane lists as
/// active is never one its own terminate-all revokes.
async fn after_terminations(tx: &mut Transaction<'static, Any>, new: &NewSession, now: Millis) -> StoreResult<Millis> {
    let keys = [user_key(&UserRef::subject(&new.subject)), user_key(&UserRef::email(&new.email))];
    let rows = sqlx::query(
        "SELECT revoked_before_ms, reauth_after_ms, locked, locked_until_s FROM users \
         WHERE user_key = $1 OR user_key = $2",
    )
    .bind(&keys[0])
    .bind(&keys[1])
    .fetch_all(&mut **tx)
    .await?;
    let mut revoked_before: Option<Millis> = None;
    let mut reauth_after: Option<Millis> = None;
    for row in &rows {
        let revoked: Option<Millis> = row.try_get("revoked_before_ms")?;
        revoked_before = revoked_before.max(revoked);
        // A lock that ran out counts like an unlock at its end.
        let lock_ended = match (row.try_get::<i64, _>("locked")?, row.try_get::<Option<i64>, _>("locked_until_s")?) {
            (1, Some(until_s)) if until_s.saturating_mul(1000) <= now => Some(until_s.saturating_mul(1000)),
            _ => None,
        };
        reauth_after = reauth_after.max(revoked).max(row.try_get("reauth_after_ms")?).max(lock_ended);
    }
    // The login must be a new authentication at the IdP, after the last
    // termination: otherwise an attacker holding the browser (and the IdP's
    // sign-in session) would be back in one click. `auth_time` has whole
    // seconds: only a login whose whole second precedes it is refused.
    if reauth_after.is_some_and(|after| new.auth_time_s.saturating_add(1).saturating_mul(1000) <= after) {
        return Err(StoreError::ReauthenticationRequired);
    }
    Ok(revoked_before.map_or(now, |t| now.max(t.saturating_add(1))))
}

/// A session to end inside a change transaction.
pub(crate) struct EndedSession<'a> {
    /// Its id.
    pub id: &'a str,
    /// When it would have expired (the change tells edges how long to remember it).
    pub expires_ms: Millis,
    /// Why, for the record and the audit log.
    pub reason: &'a str,
    /// Its user's email and IdP subject (the audit row names them).
    pub email: &'a str,
    /// See `email`.
    pub subject: &'a str,
}

/// Ends one session inside `tx` (from `begin_change`): the row, the
/// `TerminateSession` change and the audit entry `action`; the change's
/// sequence. The one way a session is ended, whether an admin terminated
/// it (group commit) or a new login replaced it (session limit).
pub(crate) async fn end_session_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    ended: &EndedSession<'_>,
    action: &str,
    actor: &Actor,
    now: Millis,
) -> StoreResult<u64> {
    sqlx::query("UPDATE sessions SET ended_ms = $1, end_reason = $2 WHERE id = $3")
        .bind(now)
        .bind(ended.reason)
        .bind(ended.id)
        .execute(&mut **tx)
        .await?;
    let change =
        Change::TerminateSession { session: session_id(ended.id)?, expires_at: ceil_seconds(ended.expires_ms) };
    let seq = append_change(tx, backend, change, now).await?;
    let about = AuditAbout {
        email: Some(ended.email),
        subject: Some(ended.subject),
        session: Some(ended.id),
        ..AuditAbout::default()
    };
    let target = format!("session:{}", ended.id);
    insert_audit_about(tx, action, &target, about, ended.reason, actor, now, Some(seq)).await?;
    Ok(seq)
}

fn session_id(id: &str) -> StoreResult<SessionId> {
    id.parse().map_err(|_| StoreError::Corrupt(format!("session id {id}")))
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(
        &self,
        new: NewSession,
        limit: Option<SessionLimit>,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<CreatedSession> {
        // Under the change-log lock: a limit's count of active sessions must
        // not change before commit, and a terminate-all of this user either
        // committed before (then the session starts after it, below) or runs
        // after (then it sees this session and ends it).
        let mut tx = self.begin_change().await?;
        let now = after_terminations(&mut tx, &new, now).await?;
        let mut replaced = Vec::new();
        if let Some(limit) = limit {
            let active = sqlx::query(
                "SELECT id, expires_ms, email FROM sessions WHERE subject = $1 AND route = $2 AND ended_ms IS NULL \
                 AND expires_ms > $3 ORDER BY created_ms, id",
            )
            .bind(&new.subject)
            .bind(&new.route)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let excess = (active.len() + 1).saturating_sub(limit.max as usize);
            if excess > 0 && limit.action == SessionLimitAction::Refuse {
                return Err(StoreError::SessionLimit(limit.max));
            }
            for row in active.iter().take(excess) {
                let (id, email): (String, String) = (row.try_get("id")?, row.try_get("email")?);
                let ended = EndedSession {
                    id: &id,
                    expires_ms: row.try_get("expires_ms")?,
                    reason: REPLACED_REASON,
                    email: &email,
                    subject: &new.subject,
                };
                let seq = end_session_in(&mut tx, self.backend, &ended, "session.replace", actor, now).await?;
                replaced.push((id, seq));
            }
        }
        let record = SessionRecord {
            id: new.id,
            subject: new.subject,
            email: new.email.to_ascii_lowercase(),
            groups: new.groups,
            idp_issuer: new.idp_issuer,
            idp_session_id: new.idp_session_id,
            route: new.route,
            created_ms: now,
            last_seen_ms: now,
            expires_ms: now + new.lifetime_ms,
            auth_time_s: new.auth_time_s,
            ended_ms: None,
            end_reason: None,
            source_addresses: vec![new.source_address],
            user_agent: new.user_agent,
            edges: vec![new.edge_id],
            live_connections: 0,
        };
        sqlx::query(&format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .bind(&record.id)
        .bind(&record.subject)
        .bind(&record.email)
        .bind(to_json(&record.groups))
        .bind(&record.idp_issuer)
        .bind(&record.idp_session_id)
        .bind(&record.route)
        .bind(record.created_ms)
        .bind(record.last_seen_ms)
        .bind(record.expires_ms)
        .bind(record.auth_time_s)
        .bind(record.ended_ms)
        .bind(&record.end_reason)
        .bind(to_json(&record.source_addresses))
        .bind(&record.user_agent)
        .bind(to_json(&record.edges))
        .bind(record.live_connections)
        .execute(&mut *tx)
        .await?;
        let about = AuditAbout {
            email: Some(&record.email),
            subject: Some(&record.subject),
            session: Some(&record.id),
            ..AuditAbout::default()
        };
        insert_audit_about(
            &mut tx,
            "session.create",
            &format!("session:{}", record.id),
            about,
            &record.email,
            actor,
            now,
            None,
        )
        .await?;
        let newest = replaced.iter().map(|(_, seq)| *seq).max();
        self.commit_change(tx, newest).await?;
        Ok(CreatedSession { record, replaced })
    }

    async fn use_id_token(&self, token_hash: &str, issuer: &str, expires_ms: Millis, now: Millis) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM id_token_uses WHERE expires_ms < $1").bind(now).execute(&mut *tx).await?;
        let inserted = sqlx::query(
            "INSERT INTO id_token_uses (token_hash, issuer, expires_ms, used_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(token_hash)
        .bind(issuer)
        .bind(expires_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(session).transpose()
    }

    async fn list_sessions(&self, filter: &SessionFilter, now: Millis) -> StoreResult<Vec<SessionRecord>> {
        let mut sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE 1 = 1");
        let mut params = Params::default();
        if let Some(email) = &filter.email {
            sql.push_str(&format!(" AND email = {}", params.text(email.to_ascii_lowercase())));
        }
        if let Some(route) = &filter.route {
            sql.push_str(&format!(" AND route = {}", params.text(route)));
        }
        match filter.active {
            Some(true) => sql.push_str(&format!(" AND ended_ms IS NULL AND expires_ms > {}", params.int(now))),
            Some(false) => sql.push_str(&format!(" AND (ended_ms IS NOT NULL OR expires_ms <= {})", params.int(now))),
            None => {}
        }
        if let Some(edge) = &filter.edge {
            let quoted = serde_json::to_string(edge).unwrap_or_default();
            sql.push_str(&format!(" AND {}", contains(self.backend, "edges_json", &params.text(quoted))));
        }
        if let Some(since) = filter.since_ms {
            sql.push_str(&format!(" AND created_ms >= {}", params.int(since)));
        }
        if let Some((created, id)) = &filter.before {
            let (c, i) = (params.int(*created), params.text(id));
            // `created_ms <= c` is implied by the OR, but spelled out it is an index
            // range both backends seek to; PostgreSQL otherwise scans from the newest row.
            sql.push_str(&format!(" AND created_ms <= {c} AND (created_ms < {c} OR (created_ms = {c} AND id < {i}))"));
        }
        let limit = params.int(i64::from(filter.limit.clamp(1, 1000)));
        sql.push_str(&format!(" ORDER BY created_ms DESC, id DESC LIMIT {limit}"));
        params.bind(sqlx::query(&sql)).fetch_all(&self.reader).await?.iter().map(session).collect()
    }

    async fn terminate_session_returning(
        &self,
        id: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<(Option<u64>, SessionRecord)> {
        let ended = self.terminate_grouped(id, reason, actor, now, EndedBy::Admin).await?;
        Ok((ended.seq, *ended.session))
    }

    async fn end_session_at_logout(
        &self,
        id: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Option<u64>> {
        Ok(self.terminate_grouped(id, reason, actor, now, EndedBy::Logout).await?.seq)
    }

    async fn live_sessions_of_idp_login(
        &self,
        idp_issuer: &str,
        idp_session_id: Option<&str>,
        subject: Option<&str>,
        now: Millis,
    ) -> StoreResult<Vec<String>> {
        let (column, value) = match (idp_session_id, subject) {
            (Some(sid), _) => ("idp_session_id", sid),
            (None, Some(subject)) => ("subject", subject),
            (None, None) => return Ok(Vec::new()),
        };
        let ids = sqlx::query_scalar(&format!(
            "SELECT id FROM sessions WHERE {column} = $1 AND idp_issuer = $2 AND ended_ms IS NULL AND expires_ms > $3"
        ))
        .bind(value)
        .bind(idp_issuer)
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        Ok(ids)
    }

    async fn terminate_user(
        &self,
        user: &UserRef,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<(u64, Vec<String>)> {
        let ended = self.terminate_user_grouped(user, reason, actor, now).await?;
        Ok((ended.seq, ended.sessions))
    }

    async fn apply_activity(&self, edge_id: &str, events: &[Activity], complete: bool) -> StoreResult<()> {
        self.record_activity(edge_id, events, complete).await
    }
}

/// What a terminate-all did inside its transaction.
pub(crate) struct UserTermination {
    /// The `TerminateUser` change's sequence.
    pub seq: u64,
    /// The sessions it ended.
    pub sessions: Vec<String>,
    /// A relying-party job was enqueued (wake the outbox after commit).
    pub enqueued: bool,
}

impl SqlStore {
    /// Ends every session of `user` and revokes every token issued to them
    /// until `now`, inside `tx` (from `begin_change`): the one way a
    /// terminate-all is written, on its own or as part of an unlock.
    pub(crate) async fn terminate_user_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: &UserRef,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<UserTermination> {
        let request =
            EndRequest { ending: Ending::User(user.clone()), reason: reason.to_owned(), actor: actor.clone(), now };
        let ended = end_in(tx, self, std::slice::from_ref(&request)).await?;
        match ended.outcomes.into_iter().next() {
            Some(EndOutcome::User(done)) => {
                Ok(UserTermination { seq: done.seq, sessions: done.sessions, enqueued: ended.enqueued })
            }
            _ => Err(StoreError::Corrupt("a terminate-all without its outcome".into())),
        }
    }
}

/// The user's email: the reference's own, or the newest session's of a subject.
pub(crate) async fn known_email(tx: &mut Transaction<'static, Any>, user: &UserRef) -> StoreResult<Option<String>> {
    match user {
        UserRef::Email(email) => Ok(Some(email.to_ascii_lowercase())),
        UserRef::Subject(subject) => {
            Ok(sqlx::query_scalar("SELECT email FROM sessions WHERE subject = $1 ORDER BY created_ms DESC LIMIT 1")
                .bind(subject.to_string())
                .fetch_optional(&mut **tx)
                .await?)
        }
    }
}
