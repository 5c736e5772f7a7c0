//! Portal sessions: an ES256 JWT in the `portcullis_portal` cookie
//! (HttpOnly, SameSite=Strict, Path=/, Secure unless `portal_cookie_secure`
//! is off), signed with the control plane's session-signing key under the
//! `typ` [`PORTAL_TOKEN_TYPE`] and audience `portcullis-portal`, so edges
//! never take it for a session token and it works on every replica.
//!
//! It says who logged in and how (`oidc` or `token`) and carries a random
//! CSRF token. The page reads that token from `GET /portal/session` and
//! echoes it in `X-CSRF-Token` on every unsafe API call; a cross-site page
//! can neither read it nor set the header. Every API request with the
//! cookie re-checks that the login still stands: its server-side record is
//! not ended (logout, or an admin through `/api/v1/portal-sessions`), the
//! admin token it was opened with is not revoked, or the OIDC user is not
//! locked and logged in within the hour (so group changes apply).
//!
//! This module is the cookie's authentication (sealing, opening, the
//! per-request check and CSRF), below both the admin API, which accepts
//! the cookie, and the portal, which issues it; the portal's own handlers
//! are in `portal::session`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_policy::UserRef;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::error::ApiError;
use crate::model::now_ms;

/// The portal session cookie.
pub const SESSION_COOKIE: &str = "portcullis_portal";
/// The header that must echo the session's CSRF token on unsafe methods.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// `typ` of portal session tokens.
pub const PORTAL_TOKEN_TYPE: &str = "portcullis-portal+jwt";
/// `aud` of everything the portal seals.
pub const PORTAL_AUDIENCE: &str = "portcullis-portal";
/// Seconds an OIDC portal login's groups are trusted before a new login.
pub const OIDC_GROUPS_MAX_AGE_S: i64 = 3600;

/// What a portal session cookie says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortalClaims {
    /// The control plane's issuer.
    pub iss: String,
    /// Always [`PORTAL_AUDIENCE`].
    pub aud: String,
    /// Who: the email after an OIDC login, `token:<name>` after a token login.
    pub sub: String,
    /// `oidc` or `token`.
    pub method: String,
    /// The admin token's id, for token logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The IdP subject, for OIDC logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sub: Option<String>,
    /// Groups at login (OIDC).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Random id of this portal session.
    pub sid: String,
    /// The CSRF token unsafe requests must echo.
    pub csrf: String,
    /// Issued, seconds.
    pub iat: i64,
    /// Expires, seconds.
    pub exp: i64,
}

impl PortalClaims {
    /// The audit-log actor: `portal:alice@corp.example`.
    pub fn actor_name(&self) -> String {
        format!("portal:{}", self.sub)
    }
}

/// A verified portal session and the scopes it grants now.
#[derive(Debug, Clone)]
pub struct PortalSession {
    /// The cookie's claims.
    pub claims: PortalClaims,
    /// Scopes: `admin` after an OIDC login, the token's after a token login.
    pub scopes: Vec<String>,
}

/// Signs `claims` as a compact JWS of type `typ` with the current
/// session-signing key.
pub(crate) async fn seal<T: Serialize>(app: &App, typ: &str, claims: &T) -> Result<String, ApiError> {
    Ok(app.authority.sign_claims(typ, claims).await?)
}

/// Verifies a token [`seal`]ed with type `typ` (signature by any stored
/// key that is not revoked, `iss`, `aud`, `exp`); `None` when it does not
/// verify.
pub(crate) async fn open<T: DeserializeOwned>(app: &App, typ: &str, token: &str) -> Result<Option<T>, ApiError> {
    let Ok(header) = jsonwebtoken::decode_header(token) else { return Ok(None) };
    if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(typ) || token.len() > 4096 {
        return Ok(None);
    }
    let keys = app.store().signing_keys().await?;
    let Some(key) = keys.iter().find(|k| Some(&k.kid) == header.kid.as_ref() && k.revoked_ms.is_none()) else {
        return Ok(None);
    };
    let Some(Ok(decoding)) = key.y.as_deref().map(|y| DecodingKey::from_ec_components(&key.x, y)) else {
        return Ok(None);
    };
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[PORTAL_AUDIENCE]);
    validation.set_issuer(&[&app.config.issuer]);
    validation.leeway = 0;
    Ok(jsonwebtoken::decode::<T>(token, &decoding, &validation).ok().map(|d| d.claims))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.trim()))
}

/// A `Set-Cookie` value (always HttpOnly).
pub(crate) fn set_cookie(app: &App, name: &str, value: &str, path: &str, max_age: i64, same_site: &str) -> HeaderValue {
    let secure = if app.config.portal.cookie_secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("portcullis_portal_invalid=1"))
}

/// The `Set-Cookie` that ends the portal session in the browser.
pub(crate) fn clear_session_cookie(app: &App) -> HeaderValue {
    set_cookie(app, SESSION_COOKIE, "", "/", 0, "Strict")
}

pub(crate) fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The portal session of a request: `Ok(None)` without the cookie, an
/// error (401 or 403) when the cookie does not verify or the login no
/// longer stands.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Option<PortalSession>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else { return Ok(None) };
    let claims: PortalClaims = open(app, PORTAL_TOKEN_TYPE, token)
        .await?
        .ok_or_else(|| unauthorized("the portal session expired or is invalid; log in again"))?;
    let now = now_ms();
    let record = app.store().portal_session(&claims.sid).await?.filter(|r| r.stands(now));
    let Some(record) = record else { return Err(unauthorized("this portal session was ended; log in again")) };
    if record.last_seen_ms < now - 60_000 {
        app.store().touch_portal_session(&claims.sid, now).await?;
    }
    let scopes = match claims.method.as_str() {
        "token" => {
            let id = claims.token_id.as_deref().unwrap_or_default();
            let record = app.store().list_api_tokens("admin").await?.into_iter().find(|t| t.id == id);
            let record = record
                .filter(|r| r.revoked_ms.is_none() && r.expires_ms.is_none_or(|e| e > now))
                .ok_or_else(|| unauthorized("the admin token of this portal session was revoked or expired"))?;
            record.scopes
        }
        "oidc" => {
            // Groups come from the ID token at login: make the admin log in
            // again (a silent round trip while the IdP session lasts) at
            // least hourly, so a removal from the admin group takes effect.
            if now / 1000 - claims.iat > OIDC_GROUPS_MAX_AGE_S {
                return Err(unauthorized("portal groups are refreshed hourly; log in again"));
            }
            let group = &app.config.portal.admin_group;
            if !claims.groups.iter().any(|g| g == group) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "not_an_admin",
                    format!("portal access needs membership of `{group}`"),
                ));
            }
            let mut users = vec![UserRef::email(&claims.sub)];
            users.extend(claims.idp_sub.as_deref().map(UserRef::subject));
            if let Some(reason) = app.store().active_lock(&users, now_ms() / 1000).await? {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "user_locked", format!("you are locked: {reason}")));
            }
            vec!["admin".to_owned()]
        }
        _ => return Err(unauthorized("the portal session expired or is invalid; log in again")),
    };
    Ok(Some(PortalSession { claims, scopes }))
}

/// For unsafe methods: refuses cross-site requests and requests without
/// the session's CSRF token in `X-CSRF-Token`.
pub fn check_csrf(method: &Method, headers: &HeaderMap, claims: &PortalClaims) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refused = |message: &str| ApiError::new(StatusCode::FORBIDDEN, "csrf_refused", message);
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return Err(refused("cross-site requests cannot change anything through the portal session"));
    }
    let sent = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    if sent.is_empty() || !crate::http::constant_time_eq(sent, claims.csrf.as_bytes()) {
        return Err(refused(
            "send the portal session's CSRF token in the X-CSRF-Token header (see GET /portal/session)",
        ));
    }
    Ok(())
}

/// The client address, for the audit log.
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()))
    }
}
