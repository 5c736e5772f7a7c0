//! Browser login: `/.portcullis/login` starts an OIDC authorization-code
//! login (PKCE, `state`, `nonce`, the state sealed in a cookie), and
//! `/.portcullis/callback` finishes it: code exchange, ID-token checks, a
//! session asked of the control plane (which verifies the ID token itself),
//! the session cookie, and back to the same-origin path the user came from.

use std::borrow::Cow;

use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow};
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use pingora_proxy::Session;
use portcullis_policy::edge_channel::{LoginAnswer, LoginBody, LoginFlow};
use portcullis_policy::Snapshot;
use serde_json::Value;

use super::answers::{query_param, redirect};
use super::id_token::{self, CallbackError, LoggedInUser};
use super::state::{self, LoginState, LOGIN_TTL_S};
use super::{same_origin_path, LoginService, RequestInfo};
use crate::authority_client::AuthorityError;
use crate::credentials::cookie;
use crate::oidc::{jwt_payload, IdentityProvider};
use crate::responses::respond;

impl LoginService {
    pub(super) async fn login(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
        query: &str,
    ) -> pingora_core::Result<bool> {
        let Some(provider) = self.provider_or_501(session, "Browser login").await? else { return Ok(true) };
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
        self.start_login(session, &provider, info, return_to, None, max_age).await
    }

    /// Redirects to the IdP's authorization endpoint, with the login state
    /// in a cookie for the callback.
    pub(super) async fn start_login(
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
        let client = provider.client(discovered.metadata.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scopes(settings.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect_url));
        if let Some(max_age) = max_age {
            request = request.set_max_age(std::time::Duration::from_secs(max_age.max(0) as u64));
            if max_age <= 0 {
                // A new sign-in, whatever the IdP's own session says.
                request = request.add_prompt(CoreAuthPrompt::Login);
            }
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

    pub(super) async fn callback(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
        query: &str,
    ) -> pingora_core::Result<bool> {
        let Some(provider) = self.provider_or_501(session, "Browser login").await? else { return Ok(true) };
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
        let user = match self.exchange(&provider, info, &code, &login).await {
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
            // 30 s for the IdP's clock; the control plane's own check (the
            // sign-in is after the user's last termination) is exact.
            let started = login.expires_at - LOGIN_TTL_S;
            if user.auth_time < started - max_age - 30 {
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
            let forced = login.max_age == Some(0);
            return self.finish_cli_login(session, &user, &login.nonce, cli, info, (clear_state, forced)).await;
        }
        let Some(route) = Self::route_name(snapshot, info.host, &login.return_to) else {
            respond(session, 404, "no_route", "Not found", "No application is served at this address.", &[]).await?;
            return Ok(true);
        };
        // When the control plane wants a new sign-in (the user's sessions
        // were ended after this one), the browser goes round once more with
        // `prompt=login` and `max_age=0`; if the IdP still skips the sign-in,
        // the `max_age` check above refuses with a page that says so.
        let fresh = (login.max_age != Some(0))
            .then(|| format!("/.portcullis/login?rd={}&max_age=0", crate::proxy::percent_encode(&login.return_to)));
        let created = self.new_session(session, &user, Some(&login.nonce), &route, &info.client_ip, fresh).await?;
        let Some(created) = created else { return Ok(true) };
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
    pub(super) async fn new_session(
        &self,
        session: &mut Session,
        user: &LoggedInUser,
        nonce: Option<&str>,
        route: &str,
        client_ip: &str,
        fresh_login: Option<String>,
    ) -> pingora_core::Result<Option<LoginAnswer>> {
        let user_agent = session
            .req_header()
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let new = LoginBody {
            id_token: Some(user.id_token.clone()),
            nonce: nonce.map(str::to_owned),
            flow: if nonce.is_some() { LoginFlow::Browser } else { LoginFlow::Device },
            route: route.to_owned(),
            source_address: client_ip.to_owned(),
            user_agent,
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
            Err(AuthorityError::Refused { code, .. })
                if code == "reauthentication_required" && fresh_login.is_some() =>
            {
                tracing::info!(route, "login needs a new sign-in at the IdP (the user's sessions were ended since)");
                let location = fresh_login.unwrap_or_default();
                redirect(session, &location, &[]).await?;
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
        let discovered = provider.discovered().await.map_err(|e| CallbackError::Unavailable(e.to_string()))?;
        let redirect_url = RedirectUrl::new(format!("{}://{}/.portcullis/callback", info.scheme, info.authority))
            .map_err(|_| CallbackError::Refused("bad host".into()))?;
        let client = provider.client(discovered.metadata.clone());
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
