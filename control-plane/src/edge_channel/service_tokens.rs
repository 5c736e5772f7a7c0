//! Service tokens presented at an edge: the edge asks here which identity a
//! token carries and caches the answer briefly. Revocation does not wait for
//! that cache to expire: revoking a token is a change in the snapshot, which
//! every edge checks on every request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::edge_channel::{ServiceIdentity, ServiceTokenBody};

use super::{EdgeCaller, JsonAnswer};
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::now_ms;
use crate::secrets::token_hash;

/// Looks up a service token; 401 when it is unknown, revoked or expired.
pub async fn verify(
    State(app): State<Arc<App>>,
    _edge: EdgeCaller,
    ApiJson(body): ApiJson<ServiceTokenBody>,
) -> JsonAnswer<ServiceIdentity> {
    let refused =
        // Its own code: `unauthorized` tells the edge its own credential was refused.
        || ApiError::new(StatusCode::UNAUTHORIZED, "service_token_invalid", "unknown, revoked or expired service token");
    if !body.token.starts_with("pcst_") || body.token.len() > 256 {
        return Err(refused());
    }
    let now = now_ms();
    let record = app
        .store()
        .api_token_by_hash(&token_hash(&body.token))
        .await?
        .filter(|r| r.kind == "service" && r.revoked_ms.is_none() && r.expires_ms.is_none_or(|e| e > now))
        .ok_or_else(refused)?;
    // Edges cache what they looked up, so this is the token's first use on
    // that edge within the cache's lifetime: close enough for "last used".
    app.store().record_token_use(&record.id, now).await?;
    Ok(Json(ServiceIdentity {
        id: record.id,
        name: record.name,
        subject: record.subject,
        groups: record.groups,
        issued_at: record.created_ms.div_euclid(1000),
        issued_at_ms: Some(record.created_ms),
        expires_at: record.expires_ms.map(|e| e.div_euclid(1000)),
    }))
}
