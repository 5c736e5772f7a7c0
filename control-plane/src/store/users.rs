//! User locks, and the `users` table keys (`sub:…` / `email:…`).

use std::collections::HashMap;

use async_trait::async_trait;
use portcullis_policy::snapshot::Lock;
use portcullis_policy::{Change, UserRef};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::audit::insert_audit;
use super::changes::append_change;
use super::rows::{value_rows, ROWS_PER_STATEMENT};
use super::sessions::known_email;
use super::{SqlStore, StoreResult, UserStore};
use crate::model::{Actor, Millis};
use crate::termination::{Action, Termination};

/// The `users.user_key` of a user reference.
pub(crate) fn user_key(user: &UserRef) -> String {
    match user {
        UserRef::Subject(s) => format!("sub:{s}"),
        UserRef::Email(e) => format!("email:{}", e.to_ascii_lowercase()),
    }
}

/// Parses a `users.user_key`.
pub(crate) fn parse_user_key(key: &str) -> Option<UserRef> {
    if let Some(sub) = key.strip_prefix("sub:") {
        Some(UserRef::subject(sub))
    } else {
        key.strip_prefix("email:").map(UserRef::email)
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn lock_user(
        &self,
        user: &UserRef,
        reason: &str,
        until_s: Option<i64>,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_change().await?;
        let (seq, enqueued) = self.lock_user_in(&mut tx, user, reason, until_s, actor, now).await?;
        self.commit_change(tx, Some(seq)).await?;
        if enqueued {
            self.outbox.wake();
        }
        Ok(seq)
    }

    async fn unlock_user(
        &self,
        user: &UserRef,
        reason: &str,
        end_sessions: bool,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<(u64, Vec<String>)> {
        let mut tx = self.begin_change().await?;
        sqlx::query(
            "UPDATE users SET locked = 0, lock_reason = NULL, locked_until_s = NULL, updated_ms = $1 WHERE user_key = $2",
        )
        .bind(now)
        .bind(user_key(user))
        .execute(&mut *tx)
        .await?;
        // Whoever held the account while it was locked must not walk back in
        // on the IdP's sign-in session.
        demand_reauthentication(&mut tx, user, now).await?;
        // Nor on a session of theirs the lock only suspended: by default the
        // unlock is a terminate-all first, so edges apply the termination
        // before they lift the lock.
        let ended = if end_sessions {
            let why = format!("ended at unlock: {reason}");
            Some(self.terminate_user_in(&mut tx, user, &why, actor, now).await?)
        } else {
            None
        };
        let seq = append_change(&mut tx, self.backend, Change::UnlockUser { user: user.clone() }, now).await?;
        insert_audit(&mut tx, "user.unlock", &user_key(user), reason, actor, now, Some(seq)).await?;
        self.commit_change(tx, Some(seq)).await?;
        let (sessions, enqueued) = ended.map_or((Vec::new(), false), |e| (e.sessions, e.enqueued));
        if enqueued {
            self.outbox.wake();
        }
        Ok((seq, sessions))
    }

    async fn active_lock(&self, users: &[UserRef], now_s: i64) -> StoreResult<Option<String>> {
        Ok(self.lock_in_force(users, now_s).await?.map(|lock| lock.reason))
    }

    async fn lock_in_force(&self, users: &[UserRef], now_s: i64) -> StoreResult<Option<Lock>> {
        for user in users {
            let row = sqlx::query(
                "SELECT lock_reason, locked_until_s FROM users WHERE user_key = $1 AND locked = 1 \
                 AND (locked_until_s IS NULL OR locked_until_s > $2)",
            )
            .bind(user_key(user))
            .bind(now_s)
            .fetch_optional(&self.reader)
            .await?;
            if let Some(row) = row {
                return Ok(Some(lock_of(&row)?));
            }
        }
        Ok(None)
    }

    async fn locks_in_force(&self, now_s: i64) -> StoreResult<HashMap<UserRef, Lock>> {
        let rows = sqlx::query(
            "SELECT user_key, lock_reason, locked_until_s FROM users WHERE locked = 1 \
             AND (locked_until_s IS NULL OR locked_until_s > $1)",
        )
        .bind(now_s)
        .fetch_all(&self.reader)
        .await?;
        let mut locks = HashMap::with_capacity(rows.len());
        for row in &rows {
            if let Some(user) = parse_user_key(&row.try_get::<String, _>("user_key")?) {
                locks.insert(user, lock_of(row)?);
            }
        }
        Ok(locks)
    }
}

impl SqlStore {
    /// Locks `user` inside `tx` (from `begin_change`): the row, the
    /// `LockUser` change, the audit row and the relying-party jobs; the
    /// change's sequence and whether jobs were enqueued.
    pub(crate) async fn lock_user_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: &UserRef,
        reason: &str,
        until_s: Option<i64>,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<(u64, bool)> {
        sqlx::query(
            "INSERT INTO users (user_key, locked, lock_reason, locked_until_s, updated_ms) VALUES ($1, 1, $2, $3, $4) \
             ON CONFLICT (user_key) DO UPDATE SET locked = 1, lock_reason = excluded.lock_reason, \
             locked_until_s = excluded.locked_until_s, updated_ms = excluded.updated_ms",
        )
        .bind(user_key(user))
        .bind(reason)
        .bind(until_s)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let lock = Lock { until: until_s, reason: reason.to_owned() };
        let seq = append_change(tx, self.backend, Change::LockUser { user: user.clone(), lock }, now).await?;
        insert_audit(tx, "user.lock", &user_key(user), reason, actor, now, Some(seq)).await?;
        let enqueued = self.enqueue_user_action(tx, Action::Lock, user, reason, (seq, now)).await?;
        Ok((seq, enqueued))
    }

    /// Enqueues the relying-party jobs of `action` on `user` (change `seq`,
    /// at `now`) inside `tx`; whether any was enqueued.
    pub(crate) async fn enqueue_user_action(
        &self,
        tx: &mut Transaction<'static, Any>,
        action: Action,
        user: &UserRef,
        reason: &str,
        (seq, now): (u64, Millis),
    ) -> StoreResult<bool> {
        let termination = Termination {
            action,
            user: user_key(user),
            email: known_email(tx, user).await?,
            session_id: None,
            reason: reason.to_owned(),
            at_ms: now,
        };
        self.enqueue_termination(tx, &termination, seq).await
    }
}

fn lock_of(row: &AnyRow) -> StoreResult<Lock> {
    Ok(Lock {
        until: row.try_get("locked_until_s")?,
        reason: row.try_get::<Option<String>, _>("lock_reason")?.unwrap_or_default(),
    })
}

/// From `now` on, `user`'s logins must be new sign-ins at the IdP (an
/// `auth_time` after `now`); see `users.reauth_after_ms`.
pub(crate) async fn demand_reauthentication(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: &UserRef,
    now: Millis,
) -> StoreResult<()> {
    raise_user_instant(tx, user, UserInstant::ReauthAfter, now, now).await
}

/// A per-user instant that only ever moves forward.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UserInstant {
    /// `revoked_before_ms`: tokens issued up to it are dead (terminate-all).
    RevokedBefore,
    /// `reauth_after_ms`: logins must be IdP sign-ins after it.
    ReauthAfter,
}

/// Sets `user`'s `which` instant to `at` unless it is already later
/// (creating the user's row if needed).
pub(crate) async fn raise_user_instant(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: &UserRef,
    which: UserInstant,
    at: Millis,
    now: Millis,
) -> StoreResult<()> {
    raise_user_instants(tx, which, &[(user.clone(), at, now)]).await
}

/// [`raise_user_instant`] for each `(user, at, now)`, in one statement (a
/// user named twice gets the latest of both).
pub(crate) async fn raise_user_instants(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    which: UserInstant,
    raises: &[(UserRef, Millis, Millis)],
) -> StoreResult<()> {
    let column = match which {
        UserInstant::RevokedBefore => "revoked_before_ms",
        UserInstant::ReauthAfter => "reauth_after_ms",
    };
    // One row per key: PostgreSQL refuses to update a row twice in one statement.
    let mut latest: Vec<(String, Millis, Millis)> = Vec::with_capacity(raises.len());
    for (user, at, now) in raises {
        let key = user_key(user);
        match latest.iter_mut().find(|(k, _, _)| *k == key) {
            Some(row) => (row.1, row.2) = (row.1.max(*at), row.2.max(*now)),
            None => latest.push((key, *at, *now)),
        }
    }
    for chunk in latest.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO users (user_key, {column}, updated_ms) VALUES {} \
             ON CONFLICT (user_key) DO UPDATE SET updated_ms = excluded.updated_ms, {column} = CASE \
             WHEN users.{column} IS NULL OR users.{column} < excluded.{column} \
             THEN excluded.{column} ELSE users.{column} END",
            value_rows(chunk.len(), 3)
        );
        let mut upsert = sqlx::query(&sql);
        for (key, at, now) in chunk {
            upsert = upsert.bind(key.as_str()).bind(*at).bind(*now);
        }
        upsert.execute(&mut **tx).await?;
    }
    Ok(())
}
