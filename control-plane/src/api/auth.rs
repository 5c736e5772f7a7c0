//! Admin API authentication: `Authorization: Bearer <token>`, looked up by
//! the SHA-256 of the token (tokens are never stored), with scopes; or,
//! without that header, the portal's session cookie, which for unsafe
//! methods also needs the session's `X-CSRF-Token` (see
//! [`crate::portal::session`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::error::ApiError;
use crate::model::{now_ms, Actor};

/// Every scope; `admin` implies all of them.
pub const SCOPES: &[&str] = &["sessions:read", "sessions:write", "policy:read", "policy:write", "audit:read", "admin"];

/// A new random token with a recognisable prefix (`pcat_` admin, `pcst_` service).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A short random id for records.
pub fn new_id() -> String {
    let mut bytes = [0u8; 12];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison of two secrets through fixed-length digests.
pub fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, as HTTP says).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The client address of a request, when the server recorded it.
pub fn source_address(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}

/// An authenticated admin API caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, for the audit log.
    pub actor: Actor,
    scopes: Vec<String>,
}

impl Caller {
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

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            if let Some(session) = crate::portal::session::authenticate(app, &parts.headers).await? {
                crate::portal::session::check_csrf(&parts.method, &parts.headers, &session.claims)?;
                return Ok(Self {
                    actor: Actor { name: session.claims.actor_name(), source_address: source_address(parts) },
                    scopes: session.scopes,
                });
            }
        }
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send `Authorization: Bearer <admin token>`"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(bearer_token)
            .filter(|t| t.len() <= 256)
            .ok_or_else(|| unauthorized("malformed Authorization header; expected `Bearer <admin token>`"))?;
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
        })
    }
}
