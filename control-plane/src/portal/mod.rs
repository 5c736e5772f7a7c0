//! The admin portal at `/portal/` on the admin listener: a single-page app
//! (HTML, CSS and ES-module JavaScript embedded in the binary) that is
//! stateless on top of the public `/api/v1`, plus the few server routes it
//! needs to log in and out.
//!
//! ```text
//! browser ──/portal/ (static)──▶ app.js ──fetch /portal/session──▶ who am I, CSRF token
//!    │                                   └─fetch /api/v1/… (cookie + X-CSRF-Token)──▶ api::auth::Caller
//!    ├─/portal/login ──▶ IdP (code + PKCE + state + nonce) ──▶ /portal/callback ──▶ session cookie
//!    └─POST /portal/token-login {token} ──▶ session cookie (first start, no IdP)
//! ```
//!
//! The session cookie is an ES256 JWT signed with the control plane's
//! session-signing key under its own `typ` ([`crate::portal_cookie::PORTAL_TOKEN_TYPE`]),
//! so no edge ever accepts it, and it carries the CSRF token the page must
//! echo in `X-CSRF-Token` on every unsafe API call. Every portal answer has
//! a strict Content-Security-Policy (no inline script or style).

pub mod assets;
mod oidc;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::extract::{Path, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::app::App;

pub use crate::idp::{PortalIdp, PortalState};

/// The Content-Security-Policy of every portal answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The portal's routes, merged into the admin listener's router.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route("/portal/", get(index))
        .route("/portal/assets/{*path}", get(asset))
        .route("/portal/session", get(session::current))
        .route("/portal/token-login", post(session::token_login))
        .route("/portal/logout", post(session::logout))
        .route("/portal/login", get(oidc::login))
        .route("/portal/callback", get(oidc::callback))
        .layer(middleware::from_fn(security_headers))
}

async fn index() -> Response {
    let body = assets::INDEX_HTML;
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    match assets::find(&path) {
        Some(asset) => ([(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, "no-cache")], asset.body)
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such portal file\n").into_response(),
    }
}

/// Adds the portal's security headers to every answer under `/portal`.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}
