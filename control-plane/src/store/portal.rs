//! Portal sessions recorded server side: the portal cookie is honoured only
//! while its row stands (not ended, not expired), so a logout or an admin
//! ending it stops it at once on every replica, and admins can list who is
//! signed in to the portal.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::audit::insert_audit;
use super::{SqlStore, StoreResult};
use crate::model::{rfc3339, Actor, Millis};

/// A portal session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSessionRecord {
    /// Random id (the cookie's `sid`).
    pub id: String,
    /// The email (OIDC logins) or `token:<name>`.
    pub subject: String,
    /// `oidc` or `token`.
    pub method: String,
    /// Client address at login.
    pub source_address: String,
    /// Started.
    pub created_ms: Millis,
    /// Ends by itself.
    pub expires_ms: Millis,
    /// Last request (to the minute).
    pub last_seen_ms: Millis,
    /// Ended (logout or an admin), if it was.
    pub ended_ms: Option<Millis>,
    /// Who ended it.
    pub ended_by: Option<String>,
    /// Why.
    pub end_reason: Option<String>,
}

/// A portal session as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PortalSessionView {
    /// Id.
    pub id: String,
    /// Who.
    pub subject: String,
    /// How they logged in: `oidc` or `token`.
    pub method: String,
    /// Client address at login.
    pub source_address: String,
    /// Started (RFC 3339).
    pub created_at: String,
    /// Ends by itself (RFC 3339).
    pub expires_at: String,
    /// Last request (RFC 3339, to the minute).
    pub last_seen_at: String,
    /// Ended (RFC 3339), if it was.
    pub ended_at: Option<String>,
    /// Who ended it.
    pub ended_by: Option<String>,
    /// Why.
    pub end_reason: Option<String>,
}

impl PortalSessionRecord {
    /// True while the cookie may be honoured at `now`.
    pub fn stands(&self, now: Millis) -> bool {
        self.ended_ms.is_none() && self.expires_ms > now
    }

    /// The API view.
    pub fn view(&self) -> PortalSessionView {
        PortalSessionView {
            id: self.id.clone(),
            subject: self.subject.clone(),
            method: self.method.clone(),
            source_address: self.source_address.clone(),
            created_at: rfc3339(self.created_ms),
            expires_at: rfc3339(self.expires_ms),
            last_seen_at: rfc3339(self.last_seen_ms),
            ended_at: self.ended_ms.map(rfc3339),
            ended_by: self.ended_by.clone(),
            end_reason: self.end_reason.clone(),
        }
    }
}

/// Portal sessions.
#[async_trait]
pub trait PortalStore: Send + Sync {
    /// Records a new portal session.
    async fn insert_portal_session(&self, record: &PortalSessionRecord) -> StoreResult<()>;
    /// One portal session by id.
    async fn portal_session(&self, id: &str) -> StoreResult<Option<PortalSessionRecord>>;
    /// Records a request at `now`, unless one was recorded in the minute before.
    async fn touch_portal_session(&self, id: &str, now: Millis) -> StoreResult<()>;
    /// Portal sessions still standing at `now`, newest first.
    async fn active_portal_sessions(&self, now: Millis) -> StoreResult<Vec<PortalSessionRecord>>;
    /// Ends a standing portal session (audited); false when there is none.
    async fn end_portal_session(&self, id: &str, reason: &str, actor: &Actor, now: Millis) -> StoreResult<bool>;
}

fn record(row: &AnyRow) -> StoreResult<PortalSessionRecord> {
    Ok(PortalSessionRecord {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        method: row.try_get("method")?,
        source_address: row.try_get("source_address")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        ended_by: row.try_get("ended_by")?,
        end_reason: row.try_get("end_reason")?,
    })
}

#[async_trait]
impl PortalStore for SqlStore {
    async fn insert_portal_session(&self, r: &PortalSessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO portal_sessions (id, subject, method, source_address, created_ms, expires_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&r.id)
        .bind(&r.subject)
        .bind(&r.method)
        .bind(&r.source_address)
        .bind(r.created_ms)
        .bind(r.expires_ms)
        .bind(r.last_seen_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn portal_session(&self, id: &str) -> StoreResult<Option<PortalSessionRecord>> {
        let row =
            sqlx::query("SELECT * FROM portal_sessions WHERE id = $1").bind(id).fetch_optional(&self.reader).await?;
        row.as_ref().map(record).transpose()
    }

    async fn touch_portal_session(&self, id: &str, now: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE portal_sessions SET last_seen_ms = $1 WHERE id = $2 AND last_seen_ms < $3")
            .bind(now)
            .bind(id)
            .bind(now - 60_000)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn active_portal_sessions(&self, now: Millis) -> StoreResult<Vec<PortalSessionRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM portal_sessions WHERE ended_ms IS NULL AND expires_ms > $1 ORDER BY created_ms DESC, id LIMIT 1000",
        )
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(record).collect()
    }

    async fn end_portal_session(&self, id: &str, reason: &str, actor: &Actor, now: Millis) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let ended = sqlx::query(
            "UPDATE portal_sessions SET ended_ms = $1, ended_by = $2, end_reason = $3 \
             WHERE id = $4 AND ended_ms IS NULL AND expires_ms > $1",
        )
        .bind(now)
        .bind(&actor.name)
        .bind(reason)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if ended {
            insert_audit(&mut tx, "portal_session.end", &format!("portal-session:{id}"), reason, actor, now, None)
                .await?;
        }
        tx.commit().await?;
        Ok(ended)
    }
}
