//! `/api/v1/sessions`: the live list, one session, and terminate.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::{parse_time, reason, WaitQuery};
use crate::app::App;
use crate::error::ApiError;
use crate::http::{ApiJson, ApiQuery};
use crate::model::{now_ms, Millis, SessionRecord, SessionView};
use crate::receipt::{receipt, Receipt};
use crate::store::SessionFilter;

/// Session list filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    /// Sessions of this email (case-insensitive).
    pub email: Option<String>,
    /// Sessions of this route.
    pub route: Option<String>,
    /// `active` or `ended`.
    pub state: Option<String>,
    /// Sessions served by this edge id.
    pub edge: Option<String>,
    /// Created at or after (RFC 3339).
    pub since: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// One page of sessions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionPage {
    /// The sessions.
    pub sessions: Vec<SessionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The API views of `records` at `now`, with `locked` read from the users
/// table now (a lock is the user's, not the session's).
async fn views(app: &App, records: &[SessionRecord], now: Millis) -> Result<Vec<SessionView>, ApiError> {
    let mut views: Vec<SessionView> = records.iter().map(|r| r.view(now)).collect();
    if views.iter().any(|v| v.state == "active") {
        let locks = app.store().locks_in_force(now.div_euclid(1000)).await?;
        views.iter_mut().for_each(|v| v.mark_locked(&locks));
    }
    Ok(views)
}

fn parse_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let invalid = || ApiError::bad_request("invalid `cursor`; pass the `next_cursor` of the previous page");
    let (created, id) = cursor.split_once('.').ok_or_else(invalid)?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    Ok((created.parse().map_err(|_| invalid())?, id.to_owned()))
}

/// Lists sessions.
#[utoipa::path(get, path = "/api/v1/sessions", params(SessionQuery), responses(
    (status = 200, body = SessionPage), (status = 400, body = crate::error::ErrorBody),
    (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SessionQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    caller.require("sessions:read")?;
    let active = match query.state.as_deref() {
        None => None,
        Some("active") => Some(true),
        Some("ended") => Some(false),
        Some(other) => return Err(ApiError::bad_request(format!("`state` is `active` or `ended`, not `{other}`"))),
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` is between 1 and 1000"));
    }
    let filter = SessionFilter {
        email: query.email,
        route: query.route,
        active,
        edge: query.edge,
        since_ms: query.since.as_deref().map(|s| parse_time("since", s)).transpose()?,
        before: query.cursor.as_deref().map(parse_cursor).transpose()?,
        limit,
    };
    let now = now_ms();
    let records = app.store().list_sessions(&filter, now).await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| records.last().map(|r| format!("{}.{}", r.created_ms, r.id)))
        .flatten();
    Ok(Json(SessionPage { sessions: views(&app, &records, now).await?, next_cursor }))
}

/// One session.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_one(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    caller.require("sessions:read")?;
    let record =
        app.store().get_session(&id).await?.ok_or_else(|| ApiError::not_found(format!("no session `{id}`")))?;
    let now = now_ms();
    Ok(Json(views(&app, std::slice::from_ref(&record), now).await?.remove(0)))
}

/// Why a session is terminated.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminateBody {
    /// Goes to the audit log and to the user's denial page.
    pub reason: String,
}

/// A termination's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionTermination {
    /// Propagation to edges.
    pub receipt: Receipt,
    /// The session after termination.
    pub session: SessionView,
}

/// Terminates one session: durable before this answers; with `?wait=true`,
/// also applied by every connected edge (bounded wait).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/terminate", params(("id" = String, Path, description = "session id"), WaitQuery),
    request_body = TerminateBody, responses((status = 200, body = SessionTermination), (status = 404, body = crate::error::ErrorBody),
    (status = 422, body = crate::error::ErrorBody)))]
pub async fn terminate(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(wait): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<TerminateBody>,
) -> Result<Json<SessionTermination>, ApiError> {
    caller.require("sessions:write")?;
    let reason = reason(&body.reason)?;
    let terminated = app.store().terminate_session_returning(&id, reason, &caller.actor, now_ms()).await;
    let (seq, session) = terminated.map_err(|e| match e {
        crate::store::StoreError::NotFound => ApiError::not_found(format!("no session `{id}`")),
        other => other.into(),
    })?;
    let committed = Instant::now();
    app.metrics.changes.with_label_values(&["session.terminate"]).inc();
    let receipt = receipt(app.store(), &app.feed, seq, wait.duration(&app), committed).await?;
    // The row as the termination's transaction committed it: no second read.
    let now = now_ms();
    Ok(Json(SessionTermination { receipt, session: views(&app, std::slice::from_ref(&session), now).await?.remove(0) }))
}
