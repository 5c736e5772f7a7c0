//! `/api/v1/edges`: the enrolled edges with their health, one-time join
//! tokens for new edges, and revocation. A join token is shown once, at
//! creation; only its SHA-256 is stored. A revoked edge is refused on its
//! next call and its open stream is cut, on every replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::{now_ms, rfc3339, EdgeView};
use crate::receipt::EDGE_ALIVE_MS;
use crate::secrets::JOIN_TOKEN_PREFIX;
use crate::secrets::{new_id, new_token, token_hash};
use crate::store::{ChangeStore as _, EdgeCredential, JoinTokenRecord, StoreError};
use portcullis_policy::edge_channel::valid_edge_id;

/// Default join-token lifetime, seconds (1 hour).
pub const DEFAULT_JOIN_TOKEN_TTL_S: u64 = 3600;
/// Longest join-token lifetime, seconds (24 hours).
pub const MAX_JOIN_TOKEN_TTL_S: u64 = 24 * 3600;

/// A join token to create.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJoinToken {
    /// The id the edge must enroll as (default: any id not enrolled yet).
    pub edge_id: Option<String>,
    /// The edge's display name (default: what the edge says, or its id).
    pub name: Option<String>,
    /// Lifetime in seconds, 60 to 86400 (default 3600).
    pub ttl: Option<u64>,
}

/// A created join token: the only time it is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedJoinToken {
    /// Token id (in the audit log and in the edge's `enrolled_by`).
    pub id: String,
    /// The token: give it to one edge as `join_token`; it works once.
    pub token: String,
    /// The id the edge must enroll as, if any.
    pub edge_id: Option<String>,
    /// The edge's display name, if set.
    pub name: Option<String>,
    /// Refused from then on (RFC 3339).
    pub expires_at: String,
}

/// Why an edge is revoked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeEdge {
    /// Why (1 to 500 characters; goes to the audit log).
    pub reason: String,
}

/// Creates a one-time join token for a new edge.
#[utoipa::path(post, path = "/api/v1/edges/join-tokens", request_body = NewJoinToken,
    responses((status = 201, body = CreatedJoinToken), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_join_token(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewJoinToken>,
) -> Result<(StatusCode, Json<CreatedJoinToken>), ApiError> {
    caller.require("admin")?;
    let ttl = body.ttl.unwrap_or(DEFAULT_JOIN_TOKEN_TTL_S);
    if !(60..=MAX_JOIN_TOKEN_TTL_S).contains(&ttl) {
        return Err(ApiError::invalid(format!("`ttl` is between 60 and {MAX_JOIN_TOKEN_TTL_S} seconds")));
    }
    if let Some(id) = body.edge_id.as_deref().filter(|id| !valid_edge_id(id)) {
        return Err(ApiError::invalid(format!("`edge_id` `{id}`: 1 to 64 letters, digits, `-`, `_` or `.`")));
    }
    let name = body.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        return Err(ApiError::invalid("`name` has at most 100 characters"));
    }
    if let Some(id) = &body.edge_id {
        if app.store().edge_credential(id).await?.is_some_and(|c| c.revoked_ms.is_some()) {
            return Err(ApiError::invalid(format!("edge `{id}` was revoked and cannot enroll again; pick a new id")));
        }
    }
    let now = now_ms();
    let token = new_token(JOIN_TOKEN_PREFIX);
    let record = JoinTokenRecord {
        id: new_id(),
        token_hash: token_hash(&token),
        edge_id: body.edge_id,
        name,
        created_ms: now,
        expires_ms: now + ttl as i64 * 1000,
        created_by: caller.actor.name.clone(),
    };
    app.store().insert_join_token(&record, &caller.actor, now).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedJoinToken {
            id: record.id,
            token,
            edge_id: record.edge_id,
            name: record.name,
            expires_at: rfc3339(record.expires_ms),
        }),
    ))
}

/// Edges: enrolled (and revoked) ones with how they enrolled, and their
/// health: applied sequence, lag, live connections, last report.
#[utoipa::path(get, path = "/api/v1/edges", responses((status = 200, body = Vec<EdgeView>)))]
pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Vec<EdgeView>>, ApiError> {
    caller.require("sessions:read")?;
    let head = app.store.head_seq().await? as i64;
    let now = now_ms();
    let mut views: BTreeMap<String, EdgeView> = BTreeMap::new();
    for credential in app.store().edge_credentials().await? {
        views.insert(credential.edge_id.clone(), enrolled_view(credential));
    }
    for (id, name, applied_seq, heartbeat, live_connections) in app.store().list_edges().await? {
        let view = views.entry(id.clone()).or_insert_with(|| EdgeView { id, name, ..EdgeView::default() });
        view.applied_seq = applied_seq;
        view.last_heartbeat_at = Some(rfc3339(heartbeat));
        view.live_connections = live_connections;
        view.lag = (head - applied_seq).max(0);
        if view.revoked_at.is_none() {
            view.state = if now - heartbeat <= EDGE_ALIVE_MS { "connected" } else { "stale" }.into();
        }
    }
    let mut edges: Vec<EdgeView> = views.into_values().collect();
    edges.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(Json(edges))
}

fn enrolled_view(c: EdgeCredential) -> EdgeView {
    EdgeView {
        state: if c.revoked_ms.is_some() { "revoked" } else { "enrolled" }.into(),
        id: c.edge_id,
        name: c.name,
        enrolled_at: Some(rfc3339(c.enrolled_ms)),
        enrolled_by: Some(c.enrolled_by),
        enrolled_via: Some(c.enrolled_via),
        key_fingerprint: Some(c.key_fingerprint),
        revoked_at: c.revoked_ms.map(rfc3339),
        revoked_by: c.revoked_by,
        revoke_reason: c.revoke_reason,
        ..EdgeView::default()
    }
}

/// Revokes an edge: its calls are refused and its stream is cut at once,
/// on every replica, and its id can never enroll again.
#[utoipa::path(post, path = "/api/v1/edges/{id}/revoke", request_body = RevokeEdge,
    params(("id" = String, Path, description = "edge id")),
    responses((status = 200, body = EdgeView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RevokeEdge>,
) -> Result<Json<EdgeView>, ApiError> {
    caller.require("admin")?;
    let reason = super::reason(&body.reason)?;
    match app.store().revoke_edge(&id, reason, &caller.actor, now_ms()).await {
        Ok(revoked) => {
            // Cut this replica's streams now; other replicas hear it from the database.
            app.edge_trust.refresh(&*app.store).await?;
            if revoked.is_some() {
                tracing::warn!(edge = %id, actor = %caller.actor.name, "edge revoked");
            }
        }
        Err(StoreError::NotFound) => return Err(ApiError::not_found(format!("no enrolled edge `{id}`"))),
        Err(error) => return Err(error.into()),
    }
    let credential = app.store().edge_credential(&id).await?.ok_or_else(|| ApiError::not_found("no such edge"))?;
    Ok(Json(enrolled_view(credential)))
}
