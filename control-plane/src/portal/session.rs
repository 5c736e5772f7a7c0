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

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_policy::UserRef;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

use crate::api::auth::{new_id, new_token, token_hash};
use crate::api::ApiJson;
use crate::app::App;
use crate::error::ApiError;
use crate::model::{now_ms, rfc3339, Actor};
use crate::store::PortalSessionRecord;

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
fn clear_session_cookie(app: &App) -> HeaderValue {
    set_cookie(app, SESSION_COOKIE, "", "/", 0, "Strict")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(message: &str) -> ApiError {
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
    if sent.is_empty() || !constant_time_eq(sent, claims.csrf.as_bytes()) {
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

/// What `GET /portal/session` and a token login answer.
fn describe(app: &App, session: Option<&PortalSession>, problem: Option<&str>) -> serde_json::Value {
    let oidc = app.portal.idp().is_some();
    match session {
        Some(PortalSession { claims, scopes }) => json!({
            "authenticated": true,
            "oidc": oidc,
            "user": claims.sub,
            "actor": claims.actor_name(),
            "method": claims.method,
            "groups": claims.groups,
            "scopes": scopes,
            "csrf_token": claims.csrf,
            "expires_at": rfc3339(claims.exp * 1000),
        }),
        None => json!({ "authenticated": false, "oidc": oidc, "problem": problem }),
    }
}

/// `GET /portal/session`: who is logged in and the CSRF token, or
/// `{"authenticated": false, "oidc": …}`.
pub async fn current(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    match authenticate(&app, &headers).await {
        Ok(session) => Ok(Json(describe(&app, session.as_ref(), None)).into_response()),
        Err(e) if matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            let body = Json(describe(&app, None, Some(&e.message)));
            Ok(([(header::SET_COOKIE, clear_session_cookie(&app))], body).into_response())
        }
        Err(e) => Err(e),
    }
}

/// Starts a portal session for a verified identity (recorded server side):
/// the cookie and the answer body.
pub(crate) async fn start(
    app: &App,
    mut claims: PortalClaims,
    source_address: &str,
) -> Result<(HeaderValue, PortalClaims), ApiError> {
    let now = now_ms() / 1000;
    claims.iss = app.config.issuer.clone();
    claims.aud = PORTAL_AUDIENCE.to_owned();
    claims.sid = new_id();
    claims.csrf = new_token("");
    claims.iat = now;
    claims.exp = claims.exp.min(now + app.config.portal.session_lifetime_s as i64);
    let token = seal(app, PORTAL_TOKEN_TYPE, &claims).await?;
    app.store()
        .insert_portal_session(&PortalSessionRecord {
            id: claims.sid.clone(),
            subject: claims.sub.clone(),
            method: claims.method.clone(),
            source_address: source_address.to_owned(),
            created_ms: now * 1000,
            expires_ms: claims.exp.saturating_mul(1000),
            last_seen_ms: now * 1000,
            ended_ms: None,
            ended_by: None,
            end_reason: None,
        })
        .await?;
    let cookie = set_cookie(app, SESSION_COOKIE, &token, "/", claims.exp - now, "Strict");
    Ok((cookie, claims))
}

/// Claims to be completed by [`start`].
pub(crate) fn new_claims(sub: String, method: &str, exp: i64) -> PortalClaims {
    PortalClaims {
        iss: String::new(),
        aud: String::new(),
        sub,
        method: method.to_owned(),
        token_id: None,
        idp_sub: None,
        groups: Vec::new(),
        sid: String::new(),
        csrf: String::new(),
        iat: 0,
        exp,
    }
}

/// The body of a token login.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLogin {
    /// An admin API token (`pcat_…`).
    pub token: String,
}

/// `POST /portal/token-login` with `{"token": "pcat_…"}` (JSON, so a
/// cross-site form cannot send it): opens a portal session for an admin
/// API token.
pub async fn token_login(
    State(app): State<Arc<App>>,
    ClientAddress(source_address): ClientAddress,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TokenLogin>,
) -> Result<Response, ApiError> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "csrf_refused", "log in from the portal itself"));
    }
    let token = body.token.trim();
    let now = now_ms();
    let well_formed = !token.is_empty() && token.len() <= 256 && !token.contains(char::is_whitespace);
    let record = if well_formed { app.store().api_token_by_hash(&token_hash(token)).await? } else { None };
    let record = record
        .filter(|r| r.kind == "admin" && r.revoked_ms.is_none() && r.expires_ms.is_none_or(|e| e > now))
        .ok_or_else(|| unauthorized("unknown, revoked or expired admin token"))?;
    let exp = record.expires_ms.map_or(i64::MAX, |e| e / 1000);
    let mut claims = new_claims(format!("token:{}", record.name), "token", exp);
    claims.token_id = Some(record.id.clone());
    let (cookie, claims) = start(&app, claims, &source_address).await?;
    let actor = Actor { name: claims.actor_name(), source_address };
    app.store().record_audit("portal.login", &claims.sub, "signed in with an admin API token", &actor, now).await?;
    let session = PortalSession { claims, scopes: record.scopes };
    Ok(([(header::SET_COOKIE, cookie)], Json(describe(&app, Some(&session), None))).into_response())
}

/// `POST /portal/logout`: ends the portal session in this browser (with
/// the CSRF token), and records it.
pub async fn logout(
    State(app): State<Arc<App>>,
    ClientAddress(source_address): ClientAddress,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Ok(Some(session)) = authenticate(&app, &headers).await {
        check_csrf(&method, &headers, &session.claims)?;
        let actor = Actor { name: session.claims.actor_name(), source_address };
        app.store().end_portal_session(&session.claims.sid, "signed out", &actor, now_ms()).await?;
        app.store().record_audit("portal.logout", &session.claims.sub, "signed out", &actor, now_ms()).await?;
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_session_cookie(&app))]).into_response())
}
