//! A small OpenID provider for development and `portcullis quickstart`:
//! **never for production** (its users log in without a password). It is
//! standards-compliant enough for the `openidconnect` crate and for
//! Portcullis's edge and portal:
//!
//! | endpoint | what |
//! |---|---|
//! | `/.well-known/openid-configuration` | discovery |
//! | `/jwks` | its ES256 public key (made at start) |
//! | `/authorize` | authorization code with PKCE (S256, required), a login page to pick a user |
//! | `/token` | code exchange (`client_secret_basic` or `_post`): ID token + JWT access token |
//! | `/userinfo` | the user's claims for its access token |
//! | `/end-session` | RP-initiated logout; sends OIDC back-channel logout tokens to every client the session used |
//!
//! [`test_issuer`] is the test suites' issuer: discovery and keys only,
//! with ID tokens the tests sign themselves.

mod pages;
pub mod test_issuer;
mod tokens;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use tokens::Signer;

/// Seconds an authorization code is valid.
const CODE_TTL_S: i64 = 60;
/// Seconds ID and access tokens are valid.
const TOKEN_TTL_S: i64 = 3600;
/// The session cookie (distinct from every Portcullis cookie: cookies ignore ports).
const SESSION_COOKIE: &str = "portcullis_dev_idp";

/// A user who can log in.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name and `sub`.
    pub name: String,
    /// Email.
    pub email: String,
    /// Groups (`groups` claim).
    pub groups: Vec<String>,
}

/// A registered relying party.
#[derive(Debug, Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: String,
    /// Allowed `redirect_uri`s (exact match).
    pub redirect_uris: Vec<String>,
    /// Allowed `post_logout_redirect_uri`s.
    pub post_logout_redirect_uris: Vec<String>,
    /// Where logout tokens are posted, if anywhere.
    pub backchannel_logout_uri: Option<String>,
}

/// The provider's configuration.
#[derive(Debug, Clone)]
pub struct DevIdpConfig {
    /// Issuer URL, e.g. `http://127.0.0.1:7600` (no trailing slash).
    pub issuer: String,
    /// Users.
    pub users: Vec<User>,
    /// Clients.
    pub clients: Vec<Client>,
}

impl DevIdpConfig {
    /// The quickstart's users: `alice` (admins, dev) and `bob` (dev).
    pub fn demo_users(domain: &str) -> Vec<User> {
        vec![
            User {
                name: "alice".into(),
                email: format!("alice@{domain}"),
                groups: vec!["admins".into(), "dev".into()],
            },
            User { name: "bob".into(), email: format!("bob@{domain}"), groups: vec!["dev".into()] },
        ]
    }
}

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    user: String,
    nonce: Option<String>,
    challenge: String,
    sid: String,
    auth_time: i64,
    expires_at: i64,
}

struct LoginSession {
    user: String,
    sid: String,
    auth_time: i64,
    clients: HashSet<String>,
}

#[derive(Default)]
struct Store {
    codes: HashMap<String, PendingCode>,
    /// Cookie value → session.
    sessions: HashMap<String, LoginSession>,
}

struct Shared {
    config: DevIdpConfig,
    signer: Signer,
    store: Mutex<Store>,
    http: reqwest::Client,
}

impl Shared {
    fn client(&self, id: &str) -> Option<&Client> {
        self.config.clients.iter().find(|c| c.id == id)
    }

    fn user(&self, name: &str) -> Option<&User> {
        self.config.users.iter().find(|u| u.name == name)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The provider as an axum router.
pub fn router(config: DevIdpConfig) -> Router {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
    let shared = Arc::new(Shared { config, signer: Signer::generate(), store: Mutex::default(), http });
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(|State(s): State<Arc<Shared>>| async move { Json(s.signer.jwks()) }))
        .route("/authorize", get(authorize).post(login))
        .route("/token", axum::routing::post(token))
        .route("/userinfo", get(userinfo))
        .route("/end-session", get(end_session))
        .with_state(shared)
}

/// Unix seconds (the one clock of the development IdP and the test issuer).
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn random_id() -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn discovery(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let issuer = &s.config.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/end-session"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code"],
        "claims_supported": ["sub", "email", "email_verified", "name", "groups", "sid"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    }))
}

/// An authorization request, as query or as the login form's hidden fields.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// `login` (among others) asks for a new sign-in whatever the session.
    prompt: Option<String>,
    /// A sign-in older than this many seconds does not count.
    max_age: Option<i64>,
    /// Only on the login form: who logs in.
    user: Option<String>,
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, pages::message("Bad request", message)).into_response()
}

/// Checks what can be checked before redirecting back to the client.
fn check_request(s: &Shared, p: &AuthorizeParams) -> Result<(), &'static str> {
    let client = s.client(&p.client_id).ok_or("unknown client_id")?;
    if !client.redirect_uris.contains(&p.redirect_uri) {
        return Err("redirect_uri is not registered for this client");
    }
    if p.response_type.as_deref() != Some("code") {
        return Err("only response_type=code is supported");
    }
    if p.code_challenge.is_none() || p.code_challenge_method.as_deref() != Some("S256") {
        return Err("PKCE with code_challenge_method=S256 is required");
    }
    if !p.scope.split(' ').any(|s| s == "openid") {
        return Err("the openid scope is required");
    }
    Ok(())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE).then(|| value.to_owned())
    })
}

/// Issues a code for an existing login session and redirects to the client.
fn redirect_with_code(s: &Shared, p: &AuthorizeParams, cookie: &str) -> Option<Response> {
    let mut store = s.store();
    let session = store.sessions.get_mut(cookie)?;
    session.clients.insert(p.client_id.clone());
    let (user, sid, auth_time) = (session.user.clone(), session.sid.clone(), session.auth_time);
    let code = random_id();
    store.codes.retain(|_, c| c.expires_at > now());
    store.codes.insert(
        code.clone(),
        PendingCode {
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            user,
            nonce: p.nonce.clone(),
            challenge: p.code_challenge.clone().unwrap_or_default(),
            sid,
            auth_time,
            expires_at: now() + CODE_TTL_S,
        },
    );
    let mut url = url::Url::parse(&p.redirect_uri).ok()?;
    url.query_pairs_mut().append_pair("code", &code).append_pair("iss", &s.config.issuer);
    if let Some(state) = &p.state {
        url.query_pairs_mut().append_pair("state", state);
    }
    Some(Redirect::to(url.as_str()).into_response())
}

async fn authorize(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(p): Query<AuthorizeParams>) -> Response {
    if let Err(refused) = check_request(&s, &p) {
        return bad_request(refused);
    }
    // OpenID Connect Core 3.1.2.1: `prompt=login` and `max_age` ask for a
    // new sign-in; the login page then comes back whatever the session.
    let forced = p.prompt.as_deref().is_some_and(|prompt| prompt.split(' ').any(|v| v == "login"));
    if let Some(cookie) = session_cookie(&headers).filter(|_| !forced) {
        let fresh_enough = match (p.max_age, s.store().sessions.get(&cookie)) {
            (Some(max_age), Some(session)) => now() - session.auth_time <= max_age,
            _ => true,
        };
        if fresh_enough {
            if let Some(done) = redirect_with_code(&s, &p, &cookie) {
                return done;
            }
        }
    }
    pages::login(&s.config.users, &p).into_response()
}

async fn login(State(s): State<Arc<Shared>>, Form(p): Form<AuthorizeParams>) -> Response {
    if let Err(refused) = check_request(&s, &p) {
        return bad_request(refused);
    }
    let Some(user) = p.user.as_deref().and_then(|u| s.user(u)) else {
        return bad_request("pick one of the listed users");
    };
    let cookie = random_id();
    let session = LoginSession { user: user.name.clone(), sid: random_id(), auth_time: now(), clients: HashSet::new() };
    tracing::info!(user = %user.name, "development IdP: logged in");
    s.store().sessions.insert(cookie.clone(), session);
    let Some(mut response) = redirect_with_code(&s, &p, &cookie) else {
        return bad_request("the redirect_uri is not a URL");
    };
    let set = format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(value) = set.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({ "error": error, "error_description": description }))).into_response()
}

/// `client_secret_basic` or `client_secret_post`.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> Option<(String, String)> {
    use base64::Engine;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    if let Some(pair) = basic {
        let (id, secret) = pair.split_once(':')?;
        let decode =
            |t: &str| url::form_urlencoded::parse(format!("x={t}").as_bytes()).next().map(|(_, v)| v.into_owned());
        return Some((decode(id)?, decode(secret)?));
    }
    Some((form.client_id.clone()?, form.client_secret.clone()?))
}

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type != "authorization_code" {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only authorization_code");
    }
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication is required");
    };
    if s.client(&client_id).is_none_or(|c| c.secret != secret) {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or wrong secret");
    }
    let Some(pending) = s.store().codes.remove(&form.code) else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or used code");
    };
    if pending.expires_at <= now() || pending.client_id != client_id || pending.redirect_uri != form.redirect_uri {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code does not match this request");
    }
    if tokens::s256(&form.code_verifier) != pending.challenge {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE verification failed");
    }
    let Some(user) = s.user(&pending.user) else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "the user no longer exists");
    };
    let issued = now();
    let id_token = s.signer.id_token(&s.config.issuer, &client_id, user, &pending, issued, TOKEN_TTL_S);
    let access_token = s.signer.access_token(&s.config.issuer, &client_id, user, issued, TOKEN_TTL_S);
    match (id_token, access_token) {
        (Ok(id_token), Ok(access_token)) => Json(json!({
            "access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_TTL_S, "id_token": id_token,
        }))
        .into_response(),
        _ => token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed"),
    }
}

async fn userinfo(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| s.signer.verify_access_token(t, &s.config.issuer)).and_then(|sub| s.user(&sub).cloned()) {
        Some(user) => Json(tokens::user_claims(&user)).into_response(),
        None => (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct EndSessionParams {
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

async fn end_session(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(p): Query<EndSessionParams>) -> Response {
    let ended = session_cookie(&headers).and_then(|cookie| s.store().sessions.remove(&cookie));
    if let Some(session) = &ended {
        tracing::info!(user = %session.user, "development IdP: logged out");
        for client in session.clients.iter().filter_map(|id| s.client(id)) {
            let Some(uri) = &client.backchannel_logout_uri else { continue };
            match s.signer.logout_token(&s.config.issuer, &client.id, &session.user, &session.sid, now()) {
                Ok(token) => {
                    let sent = s.http.post(uri).form(&[("logout_token", token.as_str())]).send().await;
                    match sent {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => {
                            tracing::warn!(client = %client.id, status = %r.status(), "back-channel logout refused")
                        }
                        Err(e) => tracing::warn!(client = %client.id, error = %e, "back-channel logout failed"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot sign a logout token"),
            }
        }
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    let allowed = match (&p.client_id, &p.post_logout_redirect_uri) {
        (Some(id), Some(uri)) => s.client(id).is_some_and(|c| c.post_logout_redirect_uris.contains(uri)),
        _ => false,
    };
    let mut response = match (allowed, &p.post_logout_redirect_uri) {
        (true, Some(uri)) => {
            let mut url = url::Url::parse(uri).unwrap_or_else(|_| url::Url::parse("about:blank").expect("URL"));
            if let Some(state) = &p.state {
                url.query_pairs_mut().append_pair("state", state);
            }
            Redirect::to(url.as_str()).into_response()
        }
        _ => pages::message("Logged out", "You are logged out of the development identity provider.").into_response(),
    };
    if let Ok(value) = clear.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
