//! The edge's reserved paths under `/.portcullis/`:
//!
//! | path | what |
//! |---|---|
//! | `login?rd=/path` | starts an OIDC authorization-code login (PKCE, `state`, `nonce`) |
//! | `callback` | finishes it: code exchange, ID-token checks, session created at the control plane, cookie set, back to `rd` |
//! | `logout` | GET: a confirmation form; POST (CSRF-checked, or with the session token as Bearer): ends the sessions at the control plane, clears the cookies, continues to the IdP's end-session endpoint |
//! | `backchannel-logout` | OIDC Back-Channel Logout receiver: ends the sessions of the IdP session |
//! | `jwks.json` | the public key of the identity assertions upstreams receive |
//! | `session` | is this session token still good, and if not why (`portcullis connect`) |
//! | `device/start`, `device/poll` | the device flow for `portcullis connect`, the edge being the OIDC client |
//! | `cli-login`, `cli-login/token` | browser login for `portcullis connect` through a loopback redirect |
//!
//! Redirects after login go only to same-origin paths (and, for the CLI
//! login, to the CLI's port on 127.0.0.1). A session refused right after its
//! login gets a page, not another login ([`loop_guard`]).

mod answers;
mod backchannel;
pub mod cli;
mod device;
pub use device::device_start_budget;
mod id_token;
mod logout;
pub mod loop_guard;
pub mod session_status;
pub mod state;

use answers::{answer, query_param, redirect};
use id_token::{CallbackError, LoggedInUser};

use std::borrow::Cow;
use std::sync::Arc;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    Scope, TokenResponse,
};
use pingora_proxy::Session;
use portcullis_policy::{canonicalize, evaluate, Facts, Snapshot, Target};
use serde_json::Value;

use crate::assertion::AssertionSigner;
use crate::authority_client::{AuthorityClient, AuthorityError, CreatedSession, LoginFlow, NewLogin};
use crate::credentials::{cookie, SessionCookies, SessionVerifier};
use crate::oidc::logout_token::ReplayGuard;
use crate::oidc::{jwt_payload, IdentityProvider};
use crate::responses::respond;
use crate::subscriber::SyncStatus;
use state::{LoginState, StateSealer, LOGIN_TTL_S};

/// Cookie settings.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// Base name of the edge's cookies (`cookie_name`): the session cookie
    /// of route `R` is `<name>.R` (`__Host-<name>.R` when `secure`).
    pub name: String,
    /// Add `Secure` (off only in explicit plain-HTTP development mode).
    pub secure: bool,
}

impl CookieSettings {
    /// The edge's cookie names and parsing for these settings.
    pub fn jar(&self) -> SessionCookies {
        SessionCookies::new(&self.name, self.secure)
    }

    fn set(&self, name: &str, value: &str, path: &str, max_age: i64) -> String {
        self.jar().set_cookie_named(name, value, path, max_age)
    }
}

/// What a request to a reserved path needs to know about itself.
pub struct RequestInfo<'a> {
    /// Host, lowercase, without port.
    pub host: &'a str,
    /// `Host` as sent (with port), for redirect URIs.
    pub authority: &'a str,
    /// `http` or `https`, as the browser sees it.
    pub scheme: &'a str,
    /// The client's address.
    pub client_ip: String,
    /// Unix seconds.
    pub now: i64,
}

/// Handles `/.portcullis/*`.
pub struct LoginService {
    /// The IdP, when browser login is configured.
    pub provider: Option<Arc<IdentityProvider>>,
    /// Session authority.
    pub authority: Arc<AuthorityClient>,
    /// Session tokens (to find the session at logout).
    pub sessions: Arc<SessionVerifier>,
    /// Cookie settings.
    pub cookies: CookieSettings,
    /// Login-state cookies.
    pub sealer: StateSealer,
    /// Logout-token `jti`s seen.
    pub replays: ReplayGuard,
    /// Identity assertions (for the JWKS).
    pub assertions: Arc<AssertionSigner>,
    /// Whether the control plane is reachable.
    pub status: Arc<SyncStatus>,
    /// Codes that carry a session token back to `portcullis connect`.
    pub cli_codes: cli::CliCodes,
    /// Device logins each client address may start ([`device_start_budget`]).
    pub device_starts: crate::credentials::LookupBudget,
}

/// A same-origin path to return to, or `/`.
pub fn same_origin_path(requested: Option<&str>) -> String {
    let Some(path) = requested else { return "/".into() };
    let safe = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.starts_with("/.portcullis/")
        && path.len() <= 2048
        && path.bytes().all(|b| b > 0x20 && b != 0x7f);
    if safe {
        path.to_owned()
    } else {
        "/".into()
    }
}

fn to_core_alg(alg: jsonwebtoken::Algorithm) -> Option<CoreJwsSigningAlgorithm> {
    serde_json::from_value(Value::String(format!("{alg:?}"))).ok()
}

/// The TCP route named `target`, for a `portcullis connect` login.
fn tcp_route(snapshot: &Snapshot, target: &str, now: i64) -> Option<String> {
    let facts = Facts {
        target: Target::Tcp { name: &target.to_ascii_lowercase() },
        source_ip: std::net::IpAddr::from([0, 0, 0, 0]),
        now,
        identity: None,
    };
    evaluate(snapshot, &facts).route.map(|r| r.name().to_owned())
}

impl LoginService {
    /// Answers a request under `/.portcullis/`. Always handles it.
    pub async fn handle(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: RequestInfo<'_>,
    ) -> pingora_core::Result<bool> {
        let req = session.req_header();
        let path = req.uri.path().to_owned();
        let query = req.uri.query().unwrap_or("").to_owned();
        let method = req.method.clone();
        match (path.as_str(), method.as_str()) {
            ("/.portcullis/jwks.json", "GET" | "HEAD") => {
                answer(session, 200, "application/jwk-set+json", self.assertions.jwks().to_owned()).await
            }
            ("/.portcullis/login", "GET") => self.login(session, snapshot, &info, &query).await,
            ("/.portcullis/callback", "GET") => self.callback(session, snapshot, &info, &query).await,
            ("/.portcullis/logout", "GET") => self.logout_form(session, &info).await,
            ("/.portcullis/logout", "POST") => self.logout(session, snapshot, &info).await,
            ("/.portcullis/backchannel-logout", "POST") => self.backchannel_logout(session, &info).await,
            ("/.portcullis/session", "GET") => self.session_status(session, snapshot, &info, &query).await,
            ("/.portcullis/device/start", "POST") => self.device_start(session, snapshot, &info).await,
            ("/.portcullis/device/poll", "POST") => self.device_poll(session, &info).await,
            ("/.portcullis/cli-login", "GET") => self.cli_login(session, snapshot, &info, &query).await,
            ("/.portcullis/cli-login/token", "POST") => self.cli_token(session, &info).await,
            ("/.portcullis/login" | "/.portcullis/callback" | "/.portcullis/jwks.json", _)
            | ("/.portcullis/logout" | "/.portcullis/backchannel-logout" | "/.portcullis/session", _)
            | ("/.portcullis/device/start" | "/.portcullis/device/poll", _)
            | ("/.portcullis/cli-login" | "/.portcullis/cli-login/token", _) => {
                respond(
                    session,
                    405,
                    "method_not_allowed",
                    "Method not allowed",
                    "This method is not allowed here.",
                    &[],
                )
                .await?;
                Ok(true)
            }
            _ => {
                respond(session, 404, "not_found", "Not found", "There is no such Portcullis page.", &[]).await?;
                Ok(true)
            }
        }
    }

    async fn unavailable(session: &mut Session, message: &str) -> pingora_core::Result<bool> {
        respond(session, 503, "login_unavailable", "Temporarily unavailable", message, &[("retry-after", "5".into())])
            .await?;
        Ok(true)
    }

    fn provider(&self) -> Option<&Arc<IdentityProvider>> {
        self.provider.as_ref()
    }

    /// The route a login for `host` + `path` is for: routed on the
    /// canonical path, exactly as the gate routes the request the browser
    /// returns with, so the cookie is set for the route that will read it.
    fn route_name(snapshot: &Snapshot, host: &str, path: &str) -> Option<String> {
        let target = canonicalize(path, None).ok()?;
        snapshot.policy().http_route(host, &target.path_without_params()).map(|r| r.name().to_owned())
    }

    async fn login(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
        query: &str,
    ) -> pingora_core::Result<bool> {
        let Some(provider) = self.provider() else {
            let message = "Browser login is not configured on this edge (no OpenID provider).";
            respond(session, 501, "login_not_configured", "Login unavailable", message, &[]).await?;
            return Ok(true);
        };
        let return_to = same_origin_path(query_param(query, "rd").as_deref());
        if Self::route_name(snapshot, info.host, &return_to).is_none() {
            let message = "No application is served at this address.";
            respond(session, 404, "no_route", "Not found", message, &[]).await?;
            return Ok(true);
        }
        // A route that wants a recent login says how recent (`logged_in_within`):
        // the IdP must authenticate again, or a live IdP session hands back the
        // same old `auth_time` and the browser loops.
        let max_age = query_param(query, "max_age").and_then(|m| m.parse::<u32>().ok()).map(i64::from);
        self.start_login(session, provider, info, return_to, None, max_age).await
    }

    /// Redirects to the IdP's authorization endpoint, with the login state
    /// in a cookie for the callback.
    async fn start_login(
        &self,
        session: &mut Session,
        provider: &IdentityProvider,
        info: &RequestInfo<'_>,
        return_to: String,
        cli: Option<state::CliLogin>,
        max_age: Option<i64>,
    ) -> pingora_core::Result<bool> {
        if !self.status.connected.load(std::sync::atomic::Ordering::Relaxed) {
            let message = "Logging in is temporarily unavailable because this edge cannot reach the Portcullis \
                           control plane. If you are already logged in, your session keeps working. Try again in a \
                           moment.";
            return Self::unavailable(session, message).await;
        }
        let discovered = match provider.discovered().await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "login refused: identity provider unavailable");
                let message = "The identity provider cannot be reached right now. Try again in a moment.";
                return Self::unavailable(session, message).await;
            }
        };
        let settings = &provider.settings;
        let Ok(redirect_url) = RedirectUrl::new(format!("{}://{}/.portcullis/callback", info.scheme, info.authority))
        else {
            respond(session, 400, "bad_host", "Bad request", "The Host header is not a valid host.", &[]).await?;
            return Ok(true);
        };
        let client = CoreClient::from_provider_metadata(
            discovered.metadata.clone(),
            ClientId::new(settings.client_id.clone()),
            settings.client_secret.clone().map(ClientSecret::new),
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scopes(settings.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect_url));
        if let Some(max_age) = max_age {
            request = request.set_max_age(std::time::Duration::from_secs(max_age.max(0) as u64));
        }
        let (url, state, nonce) = request.url();
        let login = LoginState {
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            host: info.host.to_owned(),
            return_to,
            expires_at: info.now + LOGIN_TTL_S,
            cli,
            max_age,
        };
        let Some(name) = state::cookie_name(&self.cookies.name, state.secret()) else {
            return Self::unavailable(session, "Could not start the login.").await;
        };
        let cookie =
            self.cookies.set(&name, &self.sealer.seal(state.secret(), &login), "/.portcullis/callback", LOGIN_TTL_S);
        redirect(session, url.as_str(), &[cookie]).await
    }

    async fn callback(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
        query: &str,
    ) -> pingora_core::Result<bool> {
        let Some(provider) = self.provider() else {
            let message = "Browser login is not configured on this edge (no OpenID provider).";
            respond(session, 501, "login_not_configured", "Login unavailable", message, &[]).await?;
            return Ok(true);
        };
        let restart = "Start again from the page you wanted to open.";
        if let Some(error) = query_param(query, "error") {
            let detail = query_param(query, "error_description").map(|d| format!(": {d}")).unwrap_or_default();
            let message = format!("The identity provider did not log you in ({error}{detail}). {restart}");
            respond(session, 403, "login_refused", "Login refused", &message, &[]).await?;
            return Ok(true);
        }
        let (Some(state), Some(code)) = (query_param(query, "state"), query_param(query, "code")) else {
            let message = format!("This login link is incomplete. {restart}");
            respond(session, 400, "bad_callback", "Login failed", &message, &[]).await?;
            return Ok(true);
        };
        let opened = state::cookie_name(&self.cookies.name, &state).and_then(|name| {
            let value = cookie(session.req_header(), &name)?;
            Some((name, self.sealer.open(&state, value, info.host, info.now)))
        });
        let (state_cookie, login) = match opened {
            Some((name, Ok(login))) => (name, login),
            Some((_, Err(error))) => {
                let message = format!("This login cannot be completed: {error}. {restart}");
                respond(session, 400, "bad_login_state", "Login failed", &message, &[]).await?;
                return Ok(true);
            }
            None => {
                let message = format!("This login was not started in this browser, or it expired. {restart}");
                respond(session, 400, "bad_login_state", "Login failed", &message, &[]).await?;
                return Ok(true);
            }
        };
        let clear_state = self.cookies.set(&state_cookie, "", "/.portcullis/callback", 0);
        let user = match self.exchange(provider, info, &code, &login).await {
            Ok(user) => user,
            Err(CallbackError::Unavailable(error)) => {
                tracing::warn!(%error, "login failed: identity provider unavailable");
                return Self::unavailable(session, "The identity provider cannot be reached right now.").await;
            }
            Err(CallbackError::Refused(reason)) => {
                tracing::warn!(%reason, "login refused");
                let message = format!("The login could not be verified: {reason}. {restart}");
                respond(session, 403, "login_refused", "Login refused", &message, &[]).await?;
                return Ok(true);
            }
        };
        if let Some(max_age) = login.max_age {
            // The IdP ignored `max_age`: say so instead of sending the browser round again.
            let started = login.expires_at - LOGIN_TTL_S;
            if user.auth_time < started - max_age {
                tracing::warn!(
                    auth_time = user.auth_time,
                    max_age,
                    "login refused: the IdP did not authenticate again"
                );
                let message = "This application needs a recent login, but the identity provider did not ask you to \
                               sign in again. Sign out at the identity provider, then try again.";
                respond(session, 403, "reauthentication_failed", "Login refused", message, &[]).await?;
                return Ok(true);
            }
        }
        if let Some(cli) = &login.cli {
            return self.finish_cli_login(session, &user, &login.nonce, cli, info, clear_state).await;
        }
        let Some(route) = Self::route_name(snapshot, info.host, &login.return_to) else {
            respond(session, 404, "no_route", "Not found", "No application is served at this address.", &[]).await?;
            return Ok(true);
        };
        let Some(created) = self.new_session(session, &user, Some(&login.nonce), &route, &info.client_ip).await? else {
            return Ok(true);
        };
        let exp = jwt_payload(&created.token).and_then(|c| c.get("exp").and_then(Value::as_i64)).unwrap_or(info.now);
        let session_cookie = self.cookies.jar().set_cookie_header(&route, &created.token, exp - info.now);
        let guard = self.fresh_login_cookie(&route, &created.token, info.now);
        tracing::info!(session = %created.session_id, route = %route, "login completed");
        redirect(session, &login.return_to, &[session_cookie, guard, clear_state]).await
    }

    /// Asks the control plane for a session for `user` on `route` (the
    /// control plane verifies `user`'s ID token itself, with the login's
    /// `nonce`); answers the refusal itself (and returns `None`) when there
    /// is none.
    async fn new_session(
        &self,
        session: &mut Session,
        user: &LoggedInUser,
        nonce: Option<&str>,
        route: &str,
        client_ip: &str,
    ) -> pingora_core::Result<Option<CreatedSession>> {
        let user_agent = session
            .req_header()
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let new = NewLogin {
            id_token: &user.id_token,
            nonce,
            flow: if nonce.is_some() { LoginFlow::Browser } else { LoginFlow::Device },
            route,
            source_address: client_ip,
            user_agent: &user_agent,
        };
        match self.authority.create_session(&new).await {
            Ok(created) => Ok(Some(created)),
            Err(AuthorityError::Unavailable(error)) => {
                tracing::warn!(%error, "login failed: control plane unavailable");
                let message = "Logging in is temporarily unavailable because the Portcullis control plane cannot be \
                               reached. Try again in a moment.";
                Self::unavailable(session, message).await?;
                Ok(None)
            }
            Err(AuthorityError::Refused { status, code, message }) => {
                let title = if code == "user_locked" { "Account locked" } else { "Login refused" };
                // The control plane's 401 is about the login's proof, not this client's credentials.
                let status = if status == 401 { 403 } else { status };
                respond(session, status, &code, title, &message, &[]).await?;
                Ok(None)
            }
        }
    }

    async fn exchange(
        &self,
        provider: &IdentityProvider,
        info: &RequestInfo<'_>,
        code: &str,
        login: &LoginState,
    ) -> Result<LoggedInUser, CallbackError> {
        let settings = &provider.settings;
        let discovered = provider.discovered().await.map_err(|e| CallbackError::Unavailable(e.to_string()))?;
        let redirect_url = RedirectUrl::new(format!("{}://{}/.portcullis/callback", info.scheme, info.authority))
            .map_err(|_| CallbackError::Refused("bad host".into()))?;
        let client = CoreClient::from_provider_metadata(
            discovered.metadata.clone(),
            ClientId::new(settings.client_id.clone()),
            settings.client_secret.clone().map(ClientSecret::new),
        );
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| CallbackError::Refused(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.verifier.clone()))
            .set_redirect_uri(Cow::Owned(redirect_url))
            .request_async(provider.http())
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    CallbackError::Refused(format!("the identity provider refused the code: {}", r.error()))
                }
                other => CallbackError::Unavailable(other.to_string()),
            })?;
        let id_token = response.id_token().ok_or_else(|| CallbackError::Refused("no ID token".into()))?;
        let nonce = Nonce::new(login.nonce.clone());
        id_token::verify(provider, &discovered, id_token, Some(&nonce), info.now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_are_returned_to() {
        assert_eq!(same_origin_path(Some("/docs?x=1")), "/docs?x=1");
        for hostile in
            ["https://evil.example/", "//evil.example", "/\\evil.example", "evil", "/a b", "/.portcullis/login"]
        {
            assert_eq!(same_origin_path(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(same_origin_path(None), "/");
    }

    #[test]
    fn a_login_is_for_the_route_of_the_canonical_path() {
        use portcullis_policy::{Policy, PolicySource};
        let text = "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:9\n    \
                    rules:\n      - allow: { email_domain: [corp.example] }\n  - name: api\n    host: app.example\n    \
                    path: /api\n    upstream: http://127.0.0.1:9\n    rules:\n      - allow: { email_domain: [corp.example] }\n";
        let policy = Policy::compile(PolicySource { name: "t".into(), text: text.into() }).expect("policy compiles");
        let snapshot = Snapshot::new(1, Arc::new(policy));
        let route = |path: &str| LoginService::route_name(&snapshot, "app.example", path);
        assert_eq!(route("/%61pi/x?q=1").as_deref(), Some("api"), "an encoded path logs into the route it reaches");
        assert_eq!(route("/t/../api/x").as_deref(), Some("api"));
        assert_eq!(route("/docs").as_deref(), Some("app"));
        assert_eq!(route("/a%2Fb"), None, "a path the gate refuses has no route");
        assert_eq!(LoginService::route_name(&snapshot, "other.example", "/"), None);
    }
}
