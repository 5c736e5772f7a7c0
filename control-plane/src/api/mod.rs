//! The admin REST API (`/api/v1`), which the portal, the CLI and API clients
//! all use, plus `/healthz`, `/readyz`, `/metrics` and the OpenAPI document.

pub mod auth;
pub mod deliveries;
mod edges;
mod explain;
pub mod keys;
mod policy;
mod portal_sessions;
mod sessions;
mod shared_errors;
mod signals;
mod tokens;
mod trail;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use crate::app::App;
use crate::error::ApiError;
use crate::store::ChangeStore as _;
use shared_errors::SharedErrors;

/// Header every answer of the admin listener carries (value
/// [`ADMIN_API_MARK`]): the CLI tells the control plane from an edge or
/// another server put at its `--url` by it, and says so instead of relaying
/// that server's error as if the API had said it.
pub const ADMIN_API_HEADER: &str = "x-portcullis-api";
/// The value of [`ADMIN_API_HEADER`].
pub const ADMIN_API_MARK: &str = "control-plane";

/// `?wait=true[&timeout_ms=N]` on actions that return a receipt.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Wait until every connected edge applied the change.
    pub wait: Option<bool>,
    /// Bound on the wait in milliseconds (default and maximum: the configured `receipt_wait_ms`).
    pub timeout_ms: Option<u64>,
}

impl WaitQuery {
    /// The wait to apply, if any.
    pub fn duration(&self, app: &App) -> Option<Duration> {
        self.wait.unwrap_or(false).then(|| {
            Duration::from_millis(self.timeout_ms.unwrap_or(app.config.receipt_wait_ms).min(app.config.receipt_wait_ms))
        })
    }
}

/// Parses an RFC 3339 time into Unix milliseconds.
pub fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ApiError::bad_request(format!("`{field}` expects an RFC 3339 time such as 2026-11-23T10:00:00Z")))
}

/// Checks a free-text reason: required, at most 500 characters.
pub fn reason(text: &str) -> Result<&str, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 500 {
        return Err(ApiError::invalid("`reason` is required (1 to 500 characters): it goes to the audit log"));
    }
    Ok(text)
}

/// The OpenAPI document of the admin API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Portcullis control plane", description = "Admin API: sessions, users, policy, tokens, audit, edges, relying-party deliveries."),
    paths(
        sessions::list, sessions::get_one, sessions::terminate,
        users::terminate, users::lock_status, users::lock, users::unlock,
        policy::get_current, policy::put, policy::validate, policy::history, policy::rollback, explain::explain,
        tokens::create_service, tokens::list_service, tokens::revoke_service,
        tokens::create_admin, tokens::list_admin, tokens::revoke_admin,
        trail::audit, keys::rotate, keys::list, keys::revoke,
        keys::stream_key, portal_sessions::list, portal_sessions::end,
        edges::list, edges::create_join_token, edges::revoke,
        deliveries::list, deliveries::retry, signals::receive,
    ),
    components(schemas(crate::error::ErrorBody, crate::receipt::Receipt, crate::model::SessionView)),
    modifiers(&BearerAuth, &SharedErrors)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("admin_token", Vec::<String>::new())]);
    }
}

/// The admin listener's router.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::get_one))
        .route("/sessions/{id}/terminate", post(sessions::terminate))
        .route("/users/terminate", post(users::terminate))
        .route("/users/lock", get(users::lock_status).post(users::lock))
        .route("/users/unlock", post(users::unlock))
        .route("/policy", get(policy::get_current).put(policy::put))
        .route("/policy/validate", post(policy::validate))
        .route("/policy/history", get(policy::history))
        .route("/policy/rollback", post(policy::rollback))
        .route("/policy/explain", post(explain::explain))
        .route("/service-tokens", post(tokens::create_service).get(tokens::list_service))
        .route("/service-tokens/{id}", delete(tokens::revoke_service))
        .route("/admin-tokens", post(tokens::create_admin).get(tokens::list_admin))
        .route("/admin-tokens/{id}", delete(tokens::revoke_admin))
        .route("/signing-keys", get(keys::list))
        .route("/signing-keys/rotate", post(keys::rotate))
        .route("/signing-keys/{kid}/revoke", post(keys::revoke))
        .route("/portal-sessions", get(portal_sessions::list))
        .route("/portal-sessions/{id}/end", post(portal_sessions::end))
        .route("/stream-key", get(keys::stream_key))
        .route("/audit", get(trail::audit))
        .route("/signals", post(signals::receive))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/edges", get(edges::list))
        .route("/edges/join-tokens", post(edges::create_join_token))
        .route("/edges/{id}/revoke", post(edges::revoke))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .fallback(no_such_endpoint);
    let max_body = app.config.max_body_bytes;
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::portal::router())
        .merge(crate::ssf::router())
        .merge(crate::signals::router())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), count_requests))
        .layer(middleware::map_response(mark_admin_api))
        .with_state(app)
}

async fn mark_admin_api(mut response: Response) -> Response {
    response.headers_mut().insert(ADMIN_API_HEADER, axum::http::HeaderValue::from_static(ADMIN_API_MARK));
    response
}

/// A path under `/api/v1` no route has; a second `/api/v1` (a client given
/// `…/api/v1` as its base URL) gets a hint.
async fn no_such_endpoint(uri: axum::http::Uri) -> ApiError {
    if uri.path().starts_with("/api/v1/") || uri.path() == "/api/v1" {
        return ApiError::not_found(
            "no such API endpoint: the path has /api/v1 twice; give the control plane's address without \
             /api/v1 (e.g. https://127.0.0.1:7400)",
        );
    }
    ApiError::not_found("no such API endpoint")
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.store.head_seq().await {
        Ok(head) => format!("ready: change log at {head}\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database is unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: the database is unreachable\n").into_response()
        }
    }
}

/// `/metrics`; with `metrics_token` configured, only for
/// `Authorization: Bearer <metrics_token>` (a scraper's own secret, no admin scope).
async fn metrics(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &app.config.metrics_token {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::http::bearer_token);
        if !presented.is_some_and(|token| crate::secrets::same_secret(token, expected)) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send `Authorization: Bearer <metrics_token>`",
            )
            .into_response();
        }
    }
    app.metrics.render().into_response()
}

async fn count_requests(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(request).await;
    app.metrics.requests.with_label_values(&[&route, response.status().as_str()]).inc();
    response
}
