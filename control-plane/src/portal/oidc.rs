//! Portal login through the OpenID provider: the authorization-code flow
//! with PKCE, `state` and `nonce` (openidconnect), at `/portal/login` and
//! `/portal/callback` (register `<public_url>/portal/callback` as a
//! redirect URI). Only members of `portal_admin_group` get a portal
//! session; everyone else gets a 403 page, and both outcomes are audited.
//!
//! The login state (PKCE verifier, `state`, `nonce`) travels in a sealed,
//! ten-minute cookie scoped to the callback path, with SameSite=Lax: the
//! IdP's redirect back is a cross-site navigation, which Strict cookies
//! would not survive.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use portcullis_policy::UserRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pages;
use super::session::{new_claims, start};
use crate::app::App;
use crate::error::ApiError;
use crate::idp::PortalIdp;
use crate::model::{now_ms, Actor};
use crate::portal_cookie::{cookie, open, seal, set_cookie, ClientAddress, PORTAL_AUDIENCE};

/// The login-state cookie (scoped to `/portal/callback`).
const LOGIN_COOKIE: &str = "portcullis_portal_login";
/// `typ` of sealed login states.
const LOGIN_STATE_TYPE: &str = "portcullis-portal-login+jwt";
/// How long a login may take at the IdP, seconds.
const LOGIN_TTL_S: i64 = 600;
/// ID-token signature algorithms accepted (asymmetric only).
const ID_TOKEN_ALGORITHMS: [CoreJwsSigningAlgorithm; 7] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// What the callback needs from the login it finishes.
#[derive(Debug, Serialize, Deserialize)]
struct LoginState {
    iss: String,
    aud: String,
    exp: i64,
    state: String,
    nonce: String,
    verifier: String,
}

/// The verified user of an ID token.
struct IdpUser {
    subject: String,
    email: String,
    groups: Vec<String>,
}

/// `<public_url>/portal/callback` (`public_url` is checked at start, so this only fails on odd hosts).
fn redirect_url(app: &App) -> Option<RedirectUrl> {
    RedirectUrl::new(format!("{}/portal/callback", app.config.public_url)).ok()
}

fn see_other(location: &str, cookies: Vec<axum::http::HeaderValue>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_owned())]).into_response();
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /portal/login`: off to the IdP.
pub async fn login(State(app): State<Arc<App>>) -> Response {
    let Some(idp) = app.portal.idp() else {
        return pages::problem(
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured",
            "This control plane has no OpenID provider (oidc_issuer). Sign in with an admin API token instead.",
        );
    };
    let metadata = match idp.discovery.metadata().await {
        Ok(metadata) => metadata,
        Err(error) => {
            tracing::warn!(%error, "portal login: identity provider unavailable");
            return pages::unavailable();
        }
    };
    let Some(redirect) = redirect_url(&app) else {
        return pages::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in unavailable",
            "public_url is not a valid URL.",
        );
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = idp
        .client(&metadata, redirect)
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scopes(idp.settings.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    let login = LoginState {
        iss: app.config.issuer.clone(),
        aud: PORTAL_AUDIENCE.to_owned(),
        exp: now_ms() / 1000 + LOGIN_TTL_S,
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
    };
    let sealed = match seal(&app, LOGIN_STATE_TYPE, &login).await {
        Ok(sealed) => sealed,
        Err(e) => return e.into_response(),
    };
    let cookie = set_cookie(&app, LOGIN_COOKIE, &sealed, "/portal/callback", LOGIN_TTL_S, "Lax");
    let mut response = see_other(url.as_str(), vec![cookie]);
    *response.status_mut() = StatusCode::FOUND;
    response
}

/// The callback's query.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /portal/callback`: the IdP's answer.
pub async fn callback(
    State(app): State<Arc<App>>,
    ClientAddress(source_address): ClientAddress,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let clear = set_cookie(&app, LOGIN_COOKIE, "", "/portal/callback", 0, "Lax");
    let refuse = |status: StatusCode, title: &str, message: &str| {
        let mut response = pages::problem(status, title, message);
        response.headers_mut().append(header::SET_COOKIE, clear.clone());
        response
    };
    let Some(idp) = app.portal.idp() else {
        return refuse(StatusCode::NOT_FOUND, "Single sign-on is not configured", "There is no login to finish.");
    };
    let again = "Start again from the portal's sign-in page.";
    if let Some(error) = &query.error {
        let detail = query.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
        let message = format!("The identity provider did not sign you in ({error}{detail}). {again}");
        return refuse(StatusCode::FORBIDDEN, "Sign-in refused", &message);
    }
    let (Some(code), Some(state)) = (&query.code, &query.state) else {
        return refuse(StatusCode::BAD_REQUEST, "Sign-in failed", &format!("This sign-in link is incomplete. {again}"));
    };
    let login: Option<LoginState> = match cookie(&headers, LOGIN_COOKIE) {
        Some(sealed) => match open(&app, LOGIN_STATE_TYPE, sealed).await {
            Ok(login) => login,
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let Some(login) = login.filter(|l| l.state.len() == state.len() && l.state == *state) else {
        let message = format!("This sign-in was not started in this browser, or it expired. {again}");
        return refuse(StatusCode::BAD_REQUEST, "Sign-in failed", &message);
    };
    let user = match exchange(&app, idp, code, &login).await {
        Ok(user) => user,
        Err(Failure::Unavailable(error)) => {
            tracing::warn!(%error, "portal login: identity provider unavailable");
            let mut response = pages::unavailable();
            response.headers_mut().append(header::SET_COOKIE, clear);
            return response;
        }
        Err(Failure::Refused(reason)) => {
            tracing::warn!(%reason, "portal login refused");
            return refuse(StatusCode::FORBIDDEN, "Sign-in refused", &format!("{reason}. {again}"));
        }
    };
    let actor = Actor { name: format!("portal:{}", user.email), source_address };
    let now = now_ms();
    let group = &app.config.portal.admin_group;
    if !user.groups.iter().any(|g| g == group) {
        let reason = format!("not a member of `{group}`");
        let target = format!("email:{}", user.email);
        if let Err(error) = app.store().record_audit("portal.login_refused", &target, &reason, &actor, now).await {
            return ApiError::from(error).into_response();
        }
        let mut response = pages::not_an_admin(&user.email, group);
        response.headers_mut().append(header::SET_COOKIE, clear);
        return response;
    }
    let users = [UserRef::email(&user.email), UserRef::subject(&user.subject)];
    match app.store().active_lock(&users, now / 1000).await {
        Ok(Some(reason)) => {
            return refuse(StatusCode::FORBIDDEN, "Account locked", &format!("Your account is locked: {reason}."))
        }
        Ok(None) => {}
        Err(error) => return ApiError::from(error).into_response(),
    }
    let mut claims = new_claims(user.email.clone(), "oidc", i64::MAX);
    claims.idp_sub = Some(user.subject);
    claims.groups = user.groups;
    let (session_cookie, claims) = match start(&app, claims, &actor.source_address).await {
        Ok(started) => started,
        Err(e) => return e.into_response(),
    };
    let target = format!("email:{}", claims.sub);
    let reason = format!("signed in through {}", idp.settings.issuer);
    if let Err(error) = app.store().record_audit("portal.login", &target, &reason, &actor, now).await {
        return ApiError::from(error).into_response();
    }
    tracing::info!(user = %claims.sub, "portal login");
    see_other("/portal/", vec![session_cookie, clear])
}

enum Failure {
    Unavailable(String),
    Refused(String),
}

async fn exchange(app: &App, idp: &PortalIdp, code: &str, login: &LoginState) -> Result<IdpUser, Failure> {
    let redirect = redirect_url(app).ok_or_else(|| Failure::Refused("public_url is not a valid URL".into()))?;
    let metadata = idp.discovery.metadata().await.map_err(|e| Failure::Unavailable(e.to_string()))?;
    let client = idp.client(&metadata, redirect.clone());
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| Failure::Refused(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(login.verifier.clone()))
        .set_redirect_uri(Cow::Owned(redirect.clone()))
        .request_async(idp.discovery.http())
        .await
        .map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => {
                Failure::Refused(format!("the identity provider refused the code ({})", r.error()))
            }
            other => Failure::Unavailable(other.to_string()),
        })?;
    let id_token = response.id_token().ok_or_else(|| Failure::Refused("the answer has no ID token".into()))?;
    let nonce = Nonce::new(login.nonce.clone());
    let verify = |metadata: &CoreProviderMetadata| {
        let client = idp.client(metadata, redirect.clone());
        let verifier = client.id_token_verifier().set_allowed_algs(ID_TOKEN_ALGORITHMS);
        id_token.claims(&verifier, &nonce).map(|c| c.subject().to_string()).map_err(|e| e.to_string())
    };
    let subject = match verify(&metadata) {
        Ok(subject) => subject,
        // The provider may have rotated its keys since discovery.
        Err(_) => verify(&*idp.discovery.refreshed().await.map_err(|e| Failure::Unavailable(e.to_string()))?)
            .map_err(|e| Failure::Refused(format!("the ID token is invalid: {e}")))?,
    };
    // The signature is verified: read the claims openidconnect does not model.
    let claims = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok())
        .ok_or_else(|| Failure::Refused("the ID token is unreadable".into()))?;
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| e.contains('@'))
        .ok_or_else(|| Failure::Refused("the identity provider did not say who you are (no email)".into()))?;
    if claims.get("email_verified").and_then(Value::as_bool) == Some(false) {
        return Err(Failure::Refused("your email address is not verified at the identity provider".into()));
    }
    let groups = match claims.get(&idp.settings.groups_claim) {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    Ok(IdpUser { subject, email: email.to_ascii_lowercase(), groups })
}
