//! Per-edge credentials: one-time join tokens (stored as hashes), the
//! public key each enrolled edge registered, revocation, and the fleet key.
//!
//! Enrollment is one transaction: the join token is checked and consumed
//! (`used_ms IS NULL` in the `UPDATE`, so of two concurrent enrollments with
//! one token exactly one wins), and the credential is written with an upsert
//! whose `WHERE` refuses a revoked edge id — also when a revocation commits
//! between the check and the write. A revocation on PostgreSQL also notifies
//! [`EDGES_CHANNEL`], so every replica cuts the edge's stream at once.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::audit::insert_audit;
use super::{Backend, SqlStore, StoreError, StoreResult};
use crate::model::{Actor, Millis};

/// PostgreSQL channel that tells other replicas an edge was revoked.
pub const EDGES_CHANNEL: &str = "portcullis_edges";

/// A join token as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRecord {
    /// Public id.
    pub id: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The id the edge must enroll as, if the token names one.
    pub edge_id: Option<String>,
    /// The edge's display name, if the token gives one.
    pub name: Option<String>,
    /// Created.
    pub created_ms: Millis,
    /// Refused from then on.
    pub expires_ms: Millis,
    /// Who made it.
    pub created_by: String,
}

/// How an enrolled edge got its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolledVia {
    /// A one-time join token.
    JoinToken,
    /// The bootstrap secret (quickstart and tests).
    Bootstrap,
}

impl EnrolledVia {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JoinToken => "join_token",
            Self::Bootstrap => "bootstrap",
        }
    }
}

/// An enrolled (or revoked) edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeCredential {
    /// Edge id.
    pub edge_id: String,
    /// Display name.
    pub name: String,
    /// SPKI PEM of the edge's P-256 public key.
    pub public_key_pem: String,
    /// SHA-256 of the SPKI DER, hex.
    pub key_fingerprint: String,
    /// `join_token` or `bootstrap`.
    pub enrolled_via: String,
    /// When the key was registered.
    pub enrolled_ms: Millis,
    /// Who let it in: the join token and its maker, or the bootstrap secret.
    pub enrolled_by: String,
    /// Revoked, if it was.
    pub revoked_ms: Option<Millis>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
}

/// What an edge presents to enroll.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    /// The id the edge asks for.
    pub edge_id: String,
    /// The name it asks for (a join token's name wins).
    pub name: Option<String>,
    /// SPKI PEM of its public key (already parsed and checked).
    pub public_key_pem: String,
    /// SHA-256 of the SPKI DER, hex.
    pub key_fingerprint: String,
    /// The hash of the join token, or `None` for the bootstrap secret.
    pub join_token_hash: Option<String>,
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollRefusal {
    /// No join token has this hash.
    #[error("unknown join token")]
    UnknownToken,
    /// The join token was already used.
    #[error("this join token was already used (join tokens work once); create a new one")]
    TokenUsed,
    /// The join token expired.
    #[error("this join token has expired; create a new one")]
    TokenExpired,
    /// The join token names another edge id.
    #[error("this join token is for edge `{0}`, not for this edge")]
    WrongEdge(String),
    /// The edge id was revoked: it never enrolls again.
    #[error("edge `{0}` was revoked; a revoked edge id cannot enroll again (give the edge a new id)")]
    Revoked(String),
    /// A join token without an edge id cannot take over an enrolled edge.
    #[error("edge `{0}` is already enrolled; revoke it, or create a join token for this edge id")]
    AlreadyEnrolled(String),
    /// The bootstrap secret cannot replace a key registered with a join token.
    #[error("edge `{0}` enrolled with a join token; the bootstrap secret cannot replace its key")]
    EnrolledWithJoinToken(String),
}

/// Edge credentials, join tokens and the fleet key.
#[async_trait]
pub trait EdgeIdentityStore: Send + Sync {
    /// Stores a new join token (audited).
    async fn insert_join_token(&self, record: &JoinTokenRecord, actor: &Actor, now: Millis) -> StoreResult<()>;
    /// Checks and consumes the join token (if any) and registers the key.
    async fn enroll_edge(
        &self,
        enrollment: &NewEnrollment,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Result<EdgeCredential, EnrollRefusal>>;
    /// One edge's credential.
    async fn edge_credential(&self, edge_id: &str) -> StoreResult<Option<EdgeCredential>>;
    /// Every enrolled or revoked edge, by id.
    async fn edge_credentials(&self) -> StoreResult<Vec<EdgeCredential>>;
    /// Revokes an edge (`NotFound` when it never enrolled); `Ok(None)` when
    /// it already was revoked, else the revocation time.
    async fn revoke_edge(&self, edge_id: &str, reason: &str, actor: &Actor, now: Millis)
        -> StoreResult<Option<Millis>>;
    /// The ids of every revoked edge.
    async fn revoked_edges(&self) -> StoreResult<Vec<String>>;
    /// The fleet key: `candidate` if none was stored yet, else the stored one.
    async fn fleet_key(&self, candidate: &str, now: Millis) -> StoreResult<String>;
}

fn credential(row: &AnyRow) -> StoreResult<EdgeCredential> {
    Ok(EdgeCredential {
        edge_id: row.try_get("edge_id")?,
        name: row.try_get("name")?,
        public_key_pem: row.try_get("public_key_pem")?,
        key_fingerprint: row.try_get("key_fingerprint")?,
        enrolled_via: row.try_get("enrolled_via")?,
        enrolled_ms: row.try_get("enrolled_ms")?,
        enrolled_by: row.try_get("enrolled_by")?,
        revoked_ms: row.try_get("revoked_ms")?,
        revoked_by: row.try_get("revoked_by")?,
        revoke_reason: row.try_get("revoke_reason")?,
    })
}

async fn credential_in(tx: &mut Transaction<'static, Any>, edge_id: &str) -> StoreResult<Option<EdgeCredential>> {
    let row = sqlx::query("SELECT * FROM edge_credentials WHERE edge_id = $1")
        .bind(edge_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(credential).transpose()
}

/// A join token that passed its checks.
struct UsableToken {
    id: String,
    edge_id: Option<String>,
    name: Option<String>,
    created_by: String,
}

/// Checks the join token with `hash` for an enrollment as `edge_id`.
async fn check_join_token(
    tx: &mut Transaction<'static, Any>,
    hash: &str,
    edge_id: &str,
    now: Millis,
) -> StoreResult<Result<UsableToken, EnrollRefusal>> {
    let Some(row) = sqlx::query("SELECT * FROM edge_join_tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(Err(EnrollRefusal::UnknownToken));
    };
    if row.try_get::<Option<Millis>, _>("used_ms")?.is_some() {
        return Ok(Err(EnrollRefusal::TokenUsed));
    }
    if row.try_get::<Millis, _>("expires_ms")? <= now {
        return Ok(Err(EnrollRefusal::TokenExpired));
    }
    let bound: Option<String> = row.try_get("edge_id")?;
    if let Some(bound) = bound.as_ref().filter(|bound| *bound != edge_id) {
        return Ok(Err(EnrollRefusal::WrongEdge(bound.clone())));
    }
    Ok(Ok(UsableToken {
        id: row.try_get("id")?,
        edge_id: bound,
        name: row.try_get("name")?,
        created_by: row.try_get("created_by")?,
    }))
}

/// The bootstrap secret replaces only a key it registered itself.
const BOOTSTRAP_UPSERT: &str = "DO UPDATE SET name = excluded.name, public_key_pem = excluded.public_key_pem, \
     key_fingerprint = excluded.key_fingerprint, enrolled_ms = excluded.enrolled_ms \
     WHERE edge_credentials.revoked_ms IS NULL AND edge_credentials.enrolled_via = 'bootstrap'";
/// A join token naming the edge id replaces its key (the edge lost it).
const NAMED_TOKEN_UPSERT: &str = "DO UPDATE SET name = excluded.name, public_key_pem = excluded.public_key_pem, \
     key_fingerprint = excluded.key_fingerprint, enrolled_via = excluded.enrolled_via, \
     enrolled_ms = excluded.enrolled_ms, enrolled_by = excluded.enrolled_by WHERE edge_credentials.revoked_ms IS NULL";

#[async_trait]
impl EdgeIdentityStore for SqlStore {
    async fn insert_join_token(&self, record: &JoinTokenRecord, actor: &Actor, now: Millis) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO edge_join_tokens (id, token_hash, edge_id, name, created_ms, expires_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.id)
        .bind(&record.token_hash)
        .bind(&record.edge_id)
        .bind(&record.name)
        .bind(record.created_ms)
        .bind(record.expires_ms)
        .bind(&record.created_by)
        .execute(&mut *tx)
        .await?;
        let edge = record.edge_id.as_deref().map_or_else(|| "any new edge id".to_owned(), |id| format!("edge `{id}`"));
        let reason = format!("for {edge}, valid until {}", crate::model::rfc3339(record.expires_ms));
        insert_audit(
            &mut tx,
            "edge_join_token.create",
            &format!("join_token:{}", record.id),
            &reason,
            actor,
            now,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enroll_edge(
        &self,
        enrollment: &NewEnrollment,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Result<EdgeCredential, EnrollRefusal>> {
        let id = enrollment.edge_id.as_str();
        let mut tx = self.writer.begin().await?;
        let token = match &enrollment.join_token_hash {
            Some(hash) => match check_join_token(&mut tx, hash, id, now).await? {
                Ok(token) => Some(token),
                Err(refusal) => return Ok(Err(refusal)),
            },
            None => None,
        };
        let (via, on_conflict, enrolled_by) = match &token {
            None => (EnrolledVia::Bootstrap, BOOTSTRAP_UPSERT, "bootstrap secret".to_owned()),
            Some(t) => {
                // A token without an edge id never takes over an enrolled edge.
                let on_conflict = if t.edge_id.is_some() { NAMED_TOKEN_UPSERT } else { "DO NOTHING" };
                (EnrolledVia::JoinToken, on_conflict, format!("join token {} (made by {})", t.id, t.created_by))
            }
        };
        let name = token.as_ref().and_then(|t| t.name.clone()).or_else(|| enrollment.name.clone());
        let name = name.unwrap_or_else(|| id.to_owned());
        let written = sqlx::query(&format!(
            "INSERT INTO edge_credentials (edge_id, name, public_key_pem, key_fingerprint, enrolled_via, enrolled_ms, \
             enrolled_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (edge_id) {on_conflict}"
        ))
        .bind(id)
        .bind(&name)
        .bind(&enrollment.public_key_pem)
        .bind(&enrollment.key_fingerprint)
        .bind(via.as_str())
        .bind(now)
        .bind(&enrolled_by)
        .execute(&mut *tx)
        .await?;
        if written.rows_affected() == 0 {
            let existing = credential_in(&mut tx, id).await?;
            let refusal = match existing {
                Some(c) if c.revoked_ms.is_some() => EnrollRefusal::Revoked(id.to_owned()),
                _ if via == EnrolledVia::Bootstrap => EnrollRefusal::EnrolledWithJoinToken(id.to_owned()),
                _ => EnrollRefusal::AlreadyEnrolled(id.to_owned()),
            };
            return Ok(Err(refusal));
        }
        if let Some(token) = &token {
            let used = sqlx::query(
                "UPDATE edge_join_tokens SET used_ms = $1, used_by_edge = $2 WHERE id = $3 AND used_ms IS NULL",
            )
            .bind(now)
            .bind(id)
            .bind(&token.id)
            .execute(&mut *tx)
            .await?;
            if used.rows_affected() != 1 {
                return Ok(Err(EnrollRefusal::TokenUsed));
            }
        }
        let reason = format!("key {} registered with the {enrolled_by}", short(&enrollment.key_fingerprint));
        insert_audit(&mut tx, "edge.enroll", &format!("edge:{id}"), &reason, actor, now, None).await?;
        let stored = credential_in(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(Ok(stored))
    }

    async fn edge_credential(&self, edge_id: &str) -> StoreResult<Option<EdgeCredential>> {
        let row = sqlx::query("SELECT * FROM edge_credentials WHERE edge_id = $1")
            .bind(edge_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(credential).transpose()
    }

    async fn edge_credentials(&self) -> StoreResult<Vec<EdgeCredential>> {
        let rows = sqlx::query("SELECT * FROM edge_credentials ORDER BY edge_id").fetch_all(&self.reader).await?;
        rows.iter().map(credential).collect()
    }

    async fn revoke_edge(
        &self,
        edge_id: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Option<Millis>> {
        let mut tx = self.writer.begin().await?;
        let existing = credential_in(&mut tx, edge_id).await?.ok_or(StoreError::NotFound)?;
        if existing.revoked_ms.is_some() {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE edge_credentials SET revoked_ms = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE edge_id = $4 AND revoked_ms IS NULL",
        )
        .bind(now)
        .bind(&actor.name)
        .bind(reason)
        .bind(edge_id)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, "edge.revoke", &format!("edge:{edge_id}"), reason, actor, now, None).await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 AS notified FROM (SELECT pg_notify($1, $2)) AS n")
                .bind(EDGES_CHANNEL)
                .bind(edge_id)
                .fetch_one(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(now))
    }

    async fn revoked_edges(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT edge_id FROM edge_credentials WHERE revoked_ms IS NOT NULL")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("edge_id")?)).collect()
    }

    async fn fleet_key(&self, candidate: &str, now: Millis) -> StoreResult<String> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("INSERT INTO fleet_keys (id, secret, created_ms) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(candidate)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT secret FROM fleet_keys WHERE id = 1").fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(row.try_get("secret")?)
    }
}

/// The first 16 hex digits of a fingerprint, for messages.
pub fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}
