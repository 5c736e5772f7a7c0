//! `/api/v1/service-tokens` (machines reaching protected apps) and
//! `/api/v1/admin-tokens` (scoped API access). A token is shown once, at
//! creation; only its SHA-256 is stored.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, SCOPES};
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::{now_ms, rfc3339, ApiTokenRecord};
use crate::secrets::{new_id, new_token, token_hash};

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Human name (1 to 100 characters).
    pub name: String,
    /// Admin tokens: scopes (`sessions:read`, `sessions:write`, `policy:read`, `policy:write`, `audit:read`, `ssf`, `admin`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Service tokens: the subject it acts as (default: `service:<name>`).
    pub subject: Option<String>,
    /// Service tokens: groups it carries.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Lifetime in days (default: no expiry).
    pub expires_in_days: Option<u32>,
}

/// A created token: the only time the secret is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// Token id (for listing and revoking).
    pub id: String,
    /// The secret; store it now, it cannot be shown again.
    pub token: String,
    /// The token's metadata.
    pub info: TokenInfo,
}

/// A token without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes (admin tokens).
    pub scopes: Vec<String>,
    /// Subject (service tokens).
    pub subject: String,
    /// Groups (service tokens).
    pub groups: Vec<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Expires (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// Revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
    /// Last used (RFC 3339, to the minute), if ever.
    pub last_used_at: Option<String>,
    /// Who created it.
    pub created_by: String,
}

impl From<&ApiTokenRecord> for TokenInfo {
    fn from(r: &ApiTokenRecord) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            scopes: r.scopes.clone(),
            subject: r.subject.clone(),
            groups: r.groups.clone(),
            created_at: rfc3339(r.created_ms),
            expires_at: r.expires_ms.map(rfc3339),
            revoked_at: r.revoked_ms.map(rfc3339),
            last_used_at: r.last_used_ms.map(rfc3339),
            created_by: r.created_by.clone(),
        }
    }
}

async fn create(
    app: &App,
    caller: &Caller,
    kind: &str,
    body: NewToken,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("`name` is required (1 to 100 characters)"));
    }
    if kind == "admin" {
        if body.scopes.is_empty() {
            return Err(ApiError::invalid(format!("`scopes` is required; choose from {}", SCOPES.join(", "))));
        }
        if let Some(bad) = body.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(ApiError::invalid(format!("unknown scope `{bad}`; choose from {}", SCOPES.join(", "))));
        }
    } else if !body.scopes.is_empty() {
        return Err(ApiError::invalid("`scopes` applies to admin tokens; service tokens carry `subject` and `groups`"));
    }
    let now = now_ms();
    let token = new_token(if kind == "admin" { "pcat_" } else { "pcst_" });
    let record = ApiTokenRecord {
        id: new_id(),
        kind: kind.into(),
        name: name.into(),
        token_hash: token_hash(&token),
        scopes: body.scopes,
        subject: if kind == "service" {
            body.subject.unwrap_or_else(|| format!("service:{name}"))
        } else {
            String::new()
        },
        groups: body.groups,
        created_ms: now,
        expires_ms: body.expires_in_days.map(|d| now + i64::from(d) * 86_400_000),
        revoked_ms: None,
        last_used_ms: None,
        created_by: caller.actor.name.clone(),
    };
    app.store().insert_api_token(&record, &caller.actor, now).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { id: record.id.clone(), token, info: TokenInfo::from(&record) })))
}

async fn revoke(app: &App, caller: &Caller, kind: &str, id: &str) -> Result<StatusCode, ApiError> {
    let listed = app.store().list_api_tokens(kind).await?;
    if !listed.iter().any(|t| t.id == id) {
        return Err(ApiError::not_found(format!("no {kind} token `{id}`")));
    }
    app.store().revoke_api_token(id, &caller.actor, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a service token.
#[utoipa::path(post, path = "/api/v1/service-tokens", request_body = NewToken, responses((status = 201, body = CreatedToken)))]
pub async fn create_service(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require("admin")?;
    create(&app, &caller, "service", body).await
}

/// Lists service tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/service-tokens", responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_service(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    caller.require("admin")?;
    Ok(Json(app.store().list_api_tokens("service").await?.iter().map(TokenInfo::from).collect()))
}

/// Revokes a service token on every edge.
#[utoipa::path(delete, path = "/api/v1/service-tokens/{id}", params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_service(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require("admin")?;
    revoke(&app, &caller, "service", &id).await
}

/// Creates a scoped admin token.
#[utoipa::path(post, path = "/api/v1/admin-tokens", request_body = NewToken, responses((status = 201, body = CreatedToken)))]
pub async fn create_admin(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require("admin")?;
    create(&app, &caller, "admin", body).await
}

/// Lists admin tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/admin-tokens", responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_admin(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    caller.require("admin")?;
    Ok(Json(app.store().list_api_tokens("admin").await?.iter().map(TokenInfo::from).collect()))
}

/// Revokes an admin token.
#[utoipa::path(delete, path = "/api/v1/admin-tokens/{id}", params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_admin(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require("admin")?;
    revoke(&app, &caller, "admin", &id).await
}
