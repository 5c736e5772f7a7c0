//! Admin API authentication: `Authorization: Bearer <token>`, looked up by
//! the SHA-256 of the token (tokens are never stored), with scopes; or,
//! without that header, the portal's session cookie, which for unsafe
//! methods also needs the session's `X-CSRF-Token` (see
//! [`crate::portal_cookie`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use crate::app::App;
use crate::error::ApiError;
use crate::http::{bearer_token, source_address};
use crate::model::{now_ms, Actor};
use crate::secrets::token_hash;

/// Every scope; `admin` implies all of them.
pub const SCOPES: &[&str] =
    &["sessions:read", "sessions:write", "policy:read", "policy:write", "audit:read", "ssf", "signals:write", "admin"];

/// An authenticated admin API caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, for the audit log.
    pub actor: Actor,
    scopes: Vec<String>,
    principal: String,
}

impl Caller {
    /// What owns things this caller makes (SSF streams): the API token's
    /// id, which no other token shares even under the same name, or the
    /// portal user.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Fails with 403 unless the token has `scope` (or `admin`).
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope || s == "admin") {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this token lacks the `{scope}` scope"),
            ))
        }
    }
}

/// A bearer token with characters no admin token has.
const NOT_A_TOKEN: &str = "the bearer token is not a valid admin token (an admin token is pcat_ followed by \
                           43 letters, digits, `-` or `_`; `pcat_…` is a placeholder)";

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            if let Some(session) = crate::portal_cookie::authenticate(app, &parts.headers).await? {
                crate::portal_cookie::check_csrf(&parts.method, &parts.headers, &session.claims)?;
                let name = session.claims.actor_name();
                return Ok(Self {
                    principal: name.clone(),
                    actor: Actor { name, source_address: source_address(parts) },
                    scopes: session.scopes,
                });
            }
        }
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send `Authorization: Bearer <admin token>`"))?;
        let token = value.to_str().ok().and_then(bearer_token).filter(|t| t.len() <= 256).ok_or_else(|| {
            if value.as_bytes().get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer ")) {
                // The scheme is right: the token itself has bytes no token has
                // (a copied placeholder such as `pcat_…`, a quote, a newline).
                unauthorized(NOT_A_TOKEN)
            } else {
                unauthorized("malformed Authorization header; expected `Bearer <admin token>`")
            }
        })?;
        let record = app.store().api_token_by_hash(&token_hash(token)).await?;
        let now = now_ms();
        let record = record
            .filter(|r| r.kind == "admin" && r.revoked_ms.is_none() && r.expires_ms.is_none_or(|e| e > now))
            .ok_or_else(|| unauthorized("unknown, revoked or expired token"))?;
        if record.last_used_ms.is_none_or(|at| at < now - 60_000) {
            app.store().record_token_use(&record.id, now).await?;
        }
        Ok(Self {
            actor: Actor { name: format!("token:{}", record.name), source_address: source_address(parts) },
            scopes: record.scopes,
            principal: format!("token-id:{}", record.id),
        })
    }
}
