//! The portal's session handlers: `GET /portal/session` (who is logged in,
//! with the CSRF token), `POST /portal/token-login` (log in with an admin
//! token) and `POST /portal/logout`, and the start of a portal session
//! after an OIDC login. The cookie itself (sealing, checking, CSRF) is
//! `crate::portal_cookie`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::{now_ms, rfc3339, Actor};
use crate::portal_cookie::{
    authenticate, check_csrf, clear_session_cookie, seal, set_cookie, unauthorized, ClientAddress, PortalClaims,
    PortalSession, PORTAL_AUDIENCE, PORTAL_TOKEN_TYPE, SESSION_COOKIE,
};
use crate::secrets::{new_id, new_token, token_hash};
use crate::store::PortalSessionRecord;

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
