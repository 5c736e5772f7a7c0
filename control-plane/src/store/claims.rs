//! Group overrides: an identity provider said a user's groups changed (an
//! OpenID CAEP `token-claims-change`), so edges judge the user's tokens
//! issued at or before that instant with the new groups, and re-check only
//! that user's live connections.
//!
//! One row per user in `group_overrides` (keyed like `users.user_key`); a
//! newer override replaces it, as `Change::OverrideGroups` replaces the
//! edge's. The row, its change and its audit row are written in one
//! transaction; `snapshot_body` sends the live rows to edges that resync,
//! and `expire_before` deletes the rows edges forget.

use portcullis_policy::snapshot::GroupsOverride;
use portcullis_policy::{Change, UserRef};
use sqlx::{Any, Row, Transaction};

use super::audit::insert_audit;
use super::changes::append_change;
use super::rows::{json_list, to_json};
use super::users::{parse_user_key, user_key};
use super::{SqlStore, StoreError, StoreResult};
use crate::model::{Actor, Millis};

/// Records (or replaces) the user's group override: the user's tokens
/// issued at or before `since_ms` are judged with `groups` until
/// `expires_at_s` (Unix seconds), when no token it covers can be alive.
/// Writes the row only: [`SqlStore::override_groups_in`] also appends the
/// change and the audit row.
pub(crate) async fn override_groups_in(
    tx: &mut Transaction<'static, Any>,
    user: &UserRef,
    groups: &[String],
    since_ms: Millis,
    expires_at_s: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO group_overrides (user_key, groups_json, since_ms, expires_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_key) DO UPDATE SET groups_json = excluded.groups_json, since_ms = excluded.since_ms, \
         expires_ms = excluded.expires_ms",
    )
    .bind(user_key(user))
    .bind(to_json(groups))
    .bind(since_ms)
    .bind(expires_at_s.saturating_mul(1000))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The overrides still in force at `now`, for a full snapshot.
pub(crate) async fn live_overrides(
    tx: &mut Transaction<'static, Any>,
    now: Millis,
) -> StoreResult<Vec<(UserRef, GroupsOverride)>> {
    let rows =
        sqlx::query("SELECT user_key, groups_json, since_ms, expires_ms FROM group_overrides WHERE expires_ms > $1")
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
    rows.iter()
        .map(|row| {
            let key: String = row.try_get("user_key")?;
            let user = parse_user_key(&key).ok_or_else(|| StoreError::Corrupt(format!("user key {key}")))?;
            let expires_ms: Millis = row.try_get("expires_ms")?;
            let groups = GroupsOverride {
                groups: json_list(&row.try_get::<String, _>("groups_json")?)?,
                since_ms: row.try_get("since_ms")?,
                expires_at: super::changes::ceil_seconds(expires_ms),
            };
            Ok((user, groups))
        })
        .collect()
}

/// Deletes the overrides that ended at or before `cutoff_s` (Unix
/// seconds), in the transaction that appends the matching `ExpireBefore`.
pub(crate) async fn expire_overrides(tx: &mut Transaction<'static, Any>, cutoff_s: i64) -> StoreResult<u64> {
    let deleted = sqlx::query("DELETE FROM group_overrides WHERE expires_ms <= $1")
        .bind(cutoff_s.saturating_mul(1000))
        .execute(&mut **tx)
        .await?;
    Ok(deleted.rows_affected())
}

impl SqlStore {
    /// Overrides the user's groups inside a change transaction (from
    /// `begin_change`): upserts the row, appends `Change::OverrideGroups`
    /// and writes the audit row (`user.groups_overridden`, the groups in its
    /// reason). Returns the change's sequence number; the caller commits
    /// with `commit_change(tx, Some(seq))`. `now` stamps the change-log and
    /// audit rows; `since_ms` may be earlier (the event's own instant).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn override_groups_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: &UserRef,
        groups: &[String],
        since_ms: Millis,
        expires_at_s: i64,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<u64> {
        // Sorted and de-duplicated as edges keep them, so a full snapshot
        // says exactly what replaying the change gives.
        let mut groups = groups.to_vec();
        groups.sort_unstable();
        groups.dedup();
        override_groups_in(tx, user, &groups, since_ms, expires_at_s).await?;
        let detail = format!("{reason}; groups now {}", to_json(&groups));
        let change = Change::OverrideGroups { user: user.clone(), groups, since_ms, expires_at: expires_at_s };
        let seq = append_change(tx, self.backend, change, now).await?;
        insert_audit(tx, "user.groups_overridden", &user_key(user), &detail, actor, now, Some(seq)).await?;
        Ok(seq)
    }

    /// Overrides the user's groups from `now` on, in its own committed
    /// transaction: the user's tokens issued at or before `now` are judged
    /// with `groups`, and edges re-check the user's live connections. The
    /// caller picks `expires_at_s` (Unix seconds), the instant no token
    /// issued by `now` can be alive: `now` plus the longest session or
    /// access-token lifetime it knows of (the store does not know the
    /// routes' `session_lifetime`). Returns the change's sequence number.
    pub async fn override_groups(
        &self,
        user: &UserRef,
        groups: &[String],
        expires_at_s: i64,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_change().await?;
        let seq = self.override_groups_in(&mut tx, user, groups, now, expires_at_s, reason, actor, now).await?;
        self.commit_change(tx, Some(seq)).await?;
        Ok(seq)
    }
}
