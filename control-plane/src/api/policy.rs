//! `/api/v1/policy`: the document in force, validate, apply, history and
//! rollback. A document that does not compile never replaces the one in
//! force; its errors come back with line and column. An applied version
//! answers with a receipt, as a termination does: how many connected edges
//! applied it and how many live connections they closed for it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_policy::{Policy, PolicyErrors, PolicySource};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::WaitQuery;
use crate::app::App;
use crate::error::{ApiError, ErrorDetail};
use crate::http::{ApiJson, ApiQuery, ApiText};
use crate::model::{now_ms, PolicyVersion};
use crate::receipt::{receipt, Receipt};

/// One problem in a policy document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyProblem {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
    /// What is wrong and what was expected.
    pub message: String,
}

/// The answer for a document that does not compile.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyRejected {
    /// `invalid_policy` and a summary.
    pub error: ErrorDetail,
    /// Every problem, in document order.
    pub problems: Vec<PolicyProblem>,
}

/// Validation result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Validation {
    /// True when the document compiles.
    pub valid: bool,
    /// Problems, if any.
    pub problems: Vec<PolicyProblem>,
    /// Number of routes, when valid.
    pub routes: usize,
}

/// An applied version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Applied {
    /// The new version number.
    pub version: i64,
    /// Its change-log sequence.
    pub seq: u64,
    /// How far it reached the edges: with `?wait=true`, once every connected
    /// edge applied it (bounded), with the live connections they closed
    /// because the new policy no longer allows them.
    pub receipt: Receipt,
}

/// `?message=` for applying a policy, and whether to wait for the edges.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Why (also accepted as the `X-Portcullis-Message` header).
    pub message: Option<String>,
    /// Wait until every connected edge applied the new version.
    pub wait: Option<bool>,
    /// Bound on the wait in milliseconds (default and maximum: the configured `receipt_wait_ms`).
    pub timeout_ms: Option<u64>,
}

/// History paging.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Most versions to return (default 50).
    pub limit: Option<u32>,
}

/// Rollback target.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to bring back (stored again as a new version).
    pub version: i64,
    /// Why.
    pub message: Option<String>,
}

fn compile(document: &str) -> Result<Policy, PolicyErrors> {
    Policy::compile(PolicySource { name: "policy".into(), text: document.to_owned() })
}

fn problems(errors: &PolicyErrors) -> Vec<PolicyProblem> {
    errors
        .0
        .iter()
        .map(|e| PolicyProblem { line: e.at.line, column: e.at.column, message: e.message.clone() })
        .collect()
}

fn rejected(errors: &PolicyErrors) -> Response {
    let first =
        errors.0.first().map(|e| format!("line {}:{}: {}", e.at.line, e.at.column, e.message)).unwrap_or_default();
    let body = PolicyRejected {
        error: ErrorDetail {
            code: "invalid_policy".into(),
            message: format!(
                "the policy has {} error(s); the policy in force is unchanged. First: {first}",
                errors.0.len()
            ),
        },
        problems: problems(errors),
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// The policy in force (version 0 is the built-in deny-everything policy).
#[utoipa::path(get, path = "/api/v1/policy", responses((status = 200, body = PolicyVersion)))]
pub async fn get_current(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<PolicyVersion>, ApiError> {
    caller.require("policy:read")?;
    let current = app.store().current_policy().await?;
    Ok(Json(current.unwrap_or_else(|| PolicyVersion {
        version: 0,
        document: Policy::empty().source().text.clone(),
        author: "system".into(),
        message: "no policy applied yet: every request is denied".into(),
        created_at: String::new(),
    })))
}

/// Validates a YAML document without applying it.
#[utoipa::path(post, path = "/api/v1/policy/validate", request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = Validation)))]
pub async fn validate(caller: Caller, ApiText(document): ApiText) -> Result<Json<Validation>, ApiError> {
    caller.require("policy:read")?;
    Ok(Json(match compile(&document) {
        Ok(policy) => Validation { valid: true, problems: Vec::new(), routes: policy.routes().len() },
        Err(errors) => Validation { valid: false, problems: problems(&errors), routes: 0 },
    }))
}

/// Applies a YAML document as the new version.
#[utoipa::path(put, path = "/api/v1/policy", params(ApplyQuery), request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = Applied), (status = 422, body = PolicyRejected)))]
pub async fn put(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ApplyQuery>,
    ApiText(document): ApiText,
) -> Result<Response, ApiError> {
    caller.require("policy:write")?;
    let header_message = headers.get("x-portcullis-message").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let message = query.message.or(header_message).unwrap_or_default();
    let wait = WaitQuery { wait: query.wait, timeout_ms: query.timeout_ms };
    apply(&app, &caller, &document, message.trim(), &wait).await
}

async fn apply(
    app: &App,
    caller: &Caller,
    document: &str,
    message: &str,
    wait: &WaitQuery,
) -> Result<Response, ApiError> {
    if let Err(errors) = compile(document) {
        return Ok(rejected(&errors));
    }
    let message = if message.is_empty() { "(no message)" } else { message };
    let (version, seq) = app.store().put_policy(document, message, &caller.actor, now_ms()).await?;
    let committed = Instant::now();
    app.metrics.changes.with_label_values(&["policy.apply"]).inc();
    let receipt = receipt(app.store(), &app.feed, Some(seq), wait.duration(app), committed).await?;
    Ok(Json(Applied { version, seq, receipt }).into_response())
}

/// Versions, newest first.
#[utoipa::path(get, path = "/api/v1/policy/history", params(HistoryQuery), responses((status = 200, body = Vec<PolicyVersion>)))]
pub async fn history(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<PolicyVersion>>, ApiError> {
    caller.require("policy:read")?;
    Ok(Json(app.store().policy_history(query.limit.unwrap_or(50)).await?))
}

/// Brings back an earlier version as a new version.
#[utoipa::path(post, path = "/api/v1/policy/rollback", params(WaitQuery), request_body = RollbackBody,
    responses((status = 200, body = Applied), (status = 404, body = crate::error::ErrorBody)))]
pub async fn rollback(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(wait): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<RollbackBody>,
) -> Result<Response, ApiError> {
    caller.require("policy:write")?;
    let old = app
        .store()
        .policy_version(body.version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy version {}", body.version)))?;
    let message = body.message.unwrap_or_else(|| format!("rollback to version {}", body.version));
    apply(&app, &caller, &old.document, &message, &wait).await
}
