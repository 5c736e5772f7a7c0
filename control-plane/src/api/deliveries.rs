//! `/api/v1/deliveries`: what each relying party answered to the sign-outs
//! terminations sent it (the outbox jobs), and retrying one an admin has
//! fixed the cause of. Admin scope.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiQuery;
use crate::model::{now_ms, rfc3339};
use crate::receipt::RelyingPartyOutcome;
use crate::store::{JobState, OutboxJob};
use crate::termination::Termination;

/// Delivery filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Deliveries for this user's email.
    pub email: Option<String>,
    /// Deliveries for this IdP subject.
    pub sub: Option<String>,
    /// `pending`, `applied`, `failed` or `dead`.
    pub state: Option<String>,
    /// Most returned, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// One relying party's sign-out of one user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// Its outcome, as in receipts.
    #[serde(flatten)]
    pub outcome: RelyingPartyOutcome,
    /// The user (`email:…` / `sub:…`).
    pub user: Option<String>,
    /// The action that caused it.
    pub action: Option<String>,
    /// The Portcullis session, for `terminate_session`.
    pub session_id: Option<String>,
    /// The change-log sequence of that action.
    pub seq: Option<u64>,
    /// Enqueued at (RFC 3339).
    pub created_at: String,
}

impl DeliveryView {
    fn of(job: &OutboxJob) -> Self {
        let event: Option<Termination> = serde_json::from_str(&job.event).ok();
        Self {
            outcome: RelyingPartyOutcome::of(job),
            user: job.user_key.clone(),
            action: event.as_ref().map(|e| e.action.as_str().to_owned()),
            session_id: event.and_then(|e| e.session_id),
            seq: job.seq,
            created_at: rfc3339(job.created_ms),
        }
    }
}

/// Sign-outs sent to relying parties, newest first.
#[utoipa::path(get, path = "/api/v1/deliveries", params(DeliveryQuery),
    responses((status = 200, body = [DeliveryView]), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    caller.require("admin")?;
    let user = match (&query.email, &query.sub) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give `email` or `sub`, not both")),
        (Some(email), None) => Some(format!("email:{}", email.trim().to_ascii_lowercase())),
        (None, Some(sub)) => Some(format!("sub:{sub}")),
        (None, None) => None,
    };
    let state = match query.state.as_deref() {
        None => None,
        Some("pending") => Some(JobState::Pending),
        Some("applied") => Some(JobState::Applied),
        Some("failed") => Some(JobState::Failed),
        Some("dead") => Some(JobState::Dead),
        Some(other) => {
            return Err(ApiError::bad_request(format!("`state` is pending, applied, failed or dead, not `{other}`")))
        }
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
    }
    let jobs = app.store().list_jobs(user.as_deref(), state, limit).await?;
    Ok(Json(jobs.iter().map(DeliveryView::of).collect()))
}

/// Tries a failed or dead delivery again (with a new deadline), e.g. after
/// fixing the relying party's credentials.
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/retry", params(("id" = String, Path, description = "delivery (job) id")),
    responses((status = 200, body = DeliveryView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn retry(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    caller.require("admin")?;
    if let Some(job) = app.store().retry_job(&id, &caller.actor, now_ms()).await? {
        return Ok(Json(DeliveryView::of(&job)));
    }
    match app.store().get_job(&id).await? {
        None => Err(ApiError::not_found(format!("no delivery `{id}`"))),
        Some(job) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_retryable",
            format!(
                "delivery `{id}` is {}; only failed or dead deliveries are retried",
                RelyingPartyOutcome::of(&job).state
            ),
        )),
    }
}
