//! Service tokens presented at an edge: the edge asks here which identity a
//! token carries and caches the answer briefly. Revocation does not wait for
//! that cache to expire: revoking a token is a change in the snapshot, which
//! every edge checks on every request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{EdgeCaller, JsonAnswer};
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::now_ms;
use crate::secrets::token_hash;

/// The token to look up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The service token as presented (`pcst_…`).
    pub token: String,
}

/// The identity a valid service token carries.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceIdentity {
    /// Token id: what revocation names.
    pub id: String,
    /// Token name (rules match it as the `client_id` claim).
    pub name: String,
    /// Subject it acts as.
    pub subject: String,
    /// Groups it carries.
    pub groups: Vec<String>,
    /// Created, Unix seconds (its `iat`).
    pub issued_at: i64,
    /// Created, Unix milliseconds: compared with the subject's terminate-all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<i64>,
    /// Expiry, Unix seconds, if any.
    pub expires_at: Option<i64>,
}

/// Looks up a service token; 401 when it is unknown, revoked or expired.
pub async fn verify(
    State(app): State<Arc<App>>,
    _edge: EdgeCaller,
    ApiJson(body): ApiJson<VerifyBody>,
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
