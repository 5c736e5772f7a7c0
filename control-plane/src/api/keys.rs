//! `/api/v1/signing-keys`: the session-signing keys. `rotate` replaces the
//! current key; the old public key stays published for a week so sessions
//! it signed keep working. `revoke` is the emergency brake for a leaked
//! key: it is withdrawn from every edge's snapshot at once, so every token
//! it signed (cached or not, on open connections too) dies; the current
//! key is replaced in the same change.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::{reason, WaitQuery};
use crate::app::App;
use crate::error::ApiError;
use crate::http::{ApiJson, ApiQuery};
use crate::model::rfc3339;
use crate::receipt::{receipt, Receipt};

/// The rotation's change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rotated {
    /// Change-log sequence that publishes the new key set.
    pub seq: u64,
}

/// Rotates the session-signing key.
#[utoipa::path(post, path = "/api/v1/signing-keys/rotate", responses((status = 200, body = Rotated)))]
pub async fn rotate(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Rotated>, ApiError> {
    caller.require("admin")?;
    let seq = app.authority.rotate(app.store(), &caller.actor).await?;
    Ok(Json(Rotated { seq }))
}

/// A signing key, without its private half.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyView {
    /// Key id (`kid` of the tokens it signs).
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// Signs new tokens now.
    pub current: bool,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Stopped signing (RFC 3339), if it did.
    pub retired_at: Option<String>,
    /// Revoked (RFC 3339): no longer published, its tokens are dead.
    pub revoked_at: Option<String>,
}

/// The session-signing keys, oldest first.
#[utoipa::path(get, path = "/api/v1/signing-keys", responses((status = 200, body = [SigningKeyView])))]
pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Vec<SigningKeyView>>, ApiError> {
    caller.require("admin")?;
    let keys = app.store().signing_keys().await?;
    Ok(Json(
        keys.iter()
            .map(|k| SigningKeyView {
                kid: k.kid.clone(),
                alg: k.alg.clone(),
                current: k.retired_ms.is_none(),
                created_at: rfc3339(k.created_ms),
                retired_at: k.retired_ms.map(rfc3339),
                revoked_at: k.revoked_ms.map(rfc3339),
            })
            .collect(),
    ))
}

/// Why a key is revoked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKeyBody {
    /// Goes to the audit log.
    pub reason: String,
}

/// A revocation's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyRevocation {
    /// The revoked key.
    pub kid: String,
    /// The key new tokens are signed with now.
    pub current_kid: String,
    /// Propagation to edges (connections closed: those of its sessions).
    pub receipt: Receipt,
}

/// Revokes a session-signing key in an emergency: every token it signed is
/// refused on every edge from the change on, and their live connections
/// are closed. With `?wait=true`, answers once every connected edge applied it.
#[utoipa::path(post, path = "/api/v1/signing-keys/{kid}/revoke", params(("kid" = String, Path, description = "key id"), WaitQuery),
    request_body = RevokeKeyBody, responses((status = 200, body = KeyRevocation), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(kid): Path<String>,
    ApiQuery(wait): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<RevokeKeyBody>,
) -> Result<Json<KeyRevocation>, ApiError> {
    caller.require("admin")?;
    let reason = reason(&body.reason)?;
    let seq = app
        .authority
        .revoke(app.store(), &kid, reason, &caller.actor)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no signing key `{kid}` that is not already revoked")))?;
    let committed = Instant::now();
    app.metrics.changes.with_label_values(&["signing_key.revoke"]).inc();
    tracing::warn!(kid = %kid, actor = %caller.actor.name, "revoked a session-signing key");
    let receipt = receipt(app.store(), &app.feed, Some(seq), wait.duration(&app), committed).await?;
    Ok(Json(KeyRevocation { kid, current_kid: app.authority.current_kid().await, receipt }))
}

/// The public stream-signing key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamKey {
    /// `Ed25519`.
    pub algorithm: String,
    /// `ed25519:<base64url>`: the value of an edge's `stream_public_key`.
    pub public_key: String,
    /// Key id (16 hex digits), as every frame carries it.
    pub kid: String,
    /// The same key as a PEM `PUBLIC KEY` block (also accepted by edges).
    pub pem: String,
}

/// The public key every frame of the edge stream is signed with.
#[utoipa::path(get, path = "/api/v1/stream-key", responses((status = 200, body = StreamKey)))]
pub async fn stream_key(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<StreamKey>, ApiError> {
    caller.require("admin")?;
    let public = app.stream_key.public_key();
    Ok(Json(StreamKey {
        algorithm: portcullis_policy::stream_key::ALGORITHM.into(),
        public_key: public.to_string(),
        kid: public.key_id().to_string(),
        pem: public.to_pem(),
    }))
}
