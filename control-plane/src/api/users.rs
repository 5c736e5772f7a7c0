//! `/api/v1/users/…`: "give me an email, end everything", and locks.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use portcullis_policy::UserRef;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::{parse_time, reason, WaitQuery};
use crate::app::App;
use crate::error::ApiError;
use crate::http::{ApiJson, ApiQuery};
use crate::model::{now_ms, rfc3339};
use crate::receipt::{receipt, Receipt};

/// A user action's target and reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAction {
    /// The user's email (give this or `sub`).
    pub email: Option<String>,
    /// The user's IdP subject (give this or `email`).
    pub sub: Option<String>,
    /// Goes to the audit log.
    pub reason: Option<String>,
    /// For lock: when the lock lifts by itself (RFC 3339); absent = until unlocked.
    pub until: Option<String>,
    /// For unlock: keep the user's sessions (they were suspended by the lock
    /// and come back). Default `false`: the unlock ends every session of the
    /// user and revokes their tokens, like terminate-all, in the same
    /// transaction — a session an attacker held before the lock stays dead.
    pub keep_sessions: Option<bool>,
}

/// A user action's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserActionAnswer {
    /// The user, as `email:…` or `sub:…`.
    pub user: String,
    /// Sessions ended by this action.
    pub sessions_ended: usize,
    /// Propagation to edges.
    pub receipt: Receipt,
}

impl UserAction {
    fn user(&self) -> Result<UserRef, ApiError> {
        match (&self.email, &self.sub) {
            (Some(email), None) if email.contains('@') && email.len() <= 320 => Ok(UserRef::email(email.trim())),
            (None, Some(sub)) if !sub.is_empty() && sub.len() <= 255 => Ok(UserRef::subject(sub)),
            (Some(_), Some(_)) => Err(ApiError::invalid("give `email` or `sub`, not both")),
            (Some(email), None) => Err(ApiError::invalid(format!("`{email}` is not an email address"))),
            _ => Err(ApiError::invalid("give the user's `email` or `sub`")),
        }
    }

    fn no_keep_sessions(&self) -> Result<(), ApiError> {
        match self.keep_sessions {
            Some(_) => Err(ApiError::invalid("`keep_sessions` applies to unlock only")),
            None => Ok(()),
        }
    }

    fn reason(&self) -> Result<&str, ApiError> {
        reason(self.reason.as_deref().unwrap_or_default())
    }
}

async fn answer(
    app: &App,
    user: &UserRef,
    seq: u64,
    ended: usize,
    wait: &WaitQuery,
    committed: Instant,
) -> Result<Json<UserActionAnswer>, ApiError> {
    let receipt = receipt(app.store(), &app.feed, Some(seq), wait.duration(app), committed).await?;
    Ok(Json(UserActionAnswer { user: user.to_string(), sessions_ended: ended, receipt }))
}

/// Ends every session of the user and invalidates every token issued to
/// them before now, on every edge.
#[utoipa::path(post, path = "/api/v1/users/terminate", params(WaitQuery), request_body = UserAction,
    responses((status = 200, body = UserActionAnswer), (status = 422, body = crate::error::ErrorBody)))]
pub async fn terminate(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(wait): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<UserAction>,
) -> Result<Json<UserActionAnswer>, ApiError> {
    caller.require("sessions:write")?;
    if body.until.is_some() {
        return Err(ApiError::invalid("`until` applies to locks only"));
    }
    body.no_keep_sessions()?;
    let (user, reason) = (body.user()?, body.reason()?);
    let (seq, ended) = app.store().terminate_user(&user, reason, &caller.actor, now_ms()).await?;
    app.metrics.changes.with_label_values(&["user.terminate"]).inc();
    answer(&app, &user, seq, ended.len(), &wait, Instant::now()).await
}

/// Locks the user: denied everywhere, live connections closed, until unlocked.
#[utoipa::path(post, path = "/api/v1/users/lock", params(WaitQuery), request_body = UserAction,
    responses((status = 200, body = UserActionAnswer),
    (status = 400, description = "`until` is not an RFC 3339 time", body = crate::error::ErrorBody),
    (status = 422, body = crate::error::ErrorBody)))]
pub async fn lock(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(wait): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<UserAction>,
) -> Result<Json<UserActionAnswer>, ApiError> {
    caller.require("sessions:write")?;
    body.no_keep_sessions()?;
    let (user, reason) = (body.user()?, body.reason()?);
    let until_s = body.until.as_deref().map(|u| parse_time("until", u)).transpose()?.map(|ms| ms.div_euclid(1000));
    if until_s.is_some_and(|u| u * 1000 <= now_ms()) {
        return Err(ApiError::invalid("`until` is in the past"));
    }
    let seq = app.store().lock_user(&user, reason, until_s, &caller.actor, now_ms()).await?;
    app.metrics.changes.with_label_values(&["user.lock"]).inc();
    answer(&app, &user, seq, 0, &wait, Instant::now()).await
}

/// Whose lock to look up.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LockQuery {
    /// The user's email (give this or `sub`).
    pub email: Option<String>,
    /// The user's IdP subject.
    pub sub: Option<String>,
}

/// Whether a user is locked now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LockStatus {
    /// The user, as `email:…` or `sub:…`.
    pub user: String,
    /// A lock is in force.
    pub locked: bool,
    /// The lock's reason.
    pub reason: Option<String>,
    /// When the lock lifts by itself (RFC 3339); absent when it holds until
    /// someone unlocks (or when there is no lock).
    pub until: Option<String>,
}

/// Whether the user is locked now.
#[utoipa::path(get, path = "/api/v1/users/lock", params(LockQuery),
    responses((status = 200, body = LockStatus), (status = 422, body = crate::error::ErrorBody)))]
pub async fn lock_status(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<LockQuery>,
) -> Result<Json<LockStatus>, ApiError> {
    caller.require("sessions:read")?;
    let user =
        UserAction { email: query.email, sub: query.sub, reason: None, until: None, keep_sessions: None }.user()?;
    let lock = app.store().lock_in_force(std::slice::from_ref(&user), now_ms() / 1000).await?;
    Ok(Json(LockStatus {
        user: user.to_string(),
        locked: lock.is_some(),
        until: lock.as_ref().and_then(|l| l.until).map(|s| rfc3339(s.saturating_mul(1000))),
        reason: lock.map(|l| l.reason),
    }))
}

/// Lifts a lock. By default also ends every session of the user and
/// revokes their tokens (as terminate-all, in the same transaction);
/// `"keep_sessions": true` lets the sessions the lock suspended come back.
#[utoipa::path(post, path = "/api/v1/users/unlock", params(WaitQuery), request_body = UserAction,
    responses((status = 200, body = UserActionAnswer), (status = 422, body = crate::error::ErrorBody)))]
pub async fn unlock(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(wait): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<UserAction>,
) -> Result<Json<UserActionAnswer>, ApiError> {
    caller.require("sessions:write")?;
    let user = body.user()?;
    if body.until.is_some() {
        return Err(ApiError::invalid("`until` applies to locks only"));
    }
    let reason = body.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or("unlocked");
    let end_sessions = !body.keep_sessions.unwrap_or(false);
    let (seq, ended) = app.store().unlock_user(&user, reason, end_sessions, &caller.actor, now_ms()).await?;
    app.metrics.changes.with_label_values(&["user.unlock"]).inc();
    answer(&app, &user, seq, ended.len(), &wait, Instant::now()).await
}
