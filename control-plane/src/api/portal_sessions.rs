//! `/api/v1/portal-sessions`: who is signed in to the portal, and ending
//! such a session (a stolen portal cookie stops working at once, on every
//! replica). Admin scope.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::reason;
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::now_ms;
use crate::store::PortalSessionView;

/// Portal sessions still standing, newest first.
#[utoipa::path(get, path = "/api/v1/portal-sessions", responses((status = 200, body = [PortalSessionView])))]
pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Vec<PortalSessionView>>, ApiError> {
    caller.require("admin")?;
    let sessions = app.store().active_portal_sessions(now_ms()).await?;
    Ok(Json(sessions.iter().map(|s| s.view()).collect()))
}

/// Why a portal session is ended.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndBody {
    /// Goes to the audit log.
    pub reason: String,
}

/// Ends a portal session: its cookie is refused from now on.
#[utoipa::path(post, path = "/api/v1/portal-sessions/{id}/end", params(("id" = String, Path, description = "portal session id")),
    request_body = EndBody, responses((status = 200, body = PortalSessionView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn end(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EndBody>,
) -> Result<Json<PortalSessionView>, ApiError> {
    caller.require("admin")?;
    let reason = reason(&body.reason)?;
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no standing portal session `{id}`"));
    if !app.store().end_portal_session(&id, reason, &caller.actor, now_ms()).await? {
        return Err(missing());
    }
    let record = app.store().portal_session(&id).await?.ok_or_else(missing)?;
    Ok(Json(record.view()))
}
