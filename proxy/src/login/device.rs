//! The OAuth device flow (RFC 8628) for `portcullis connect`, mediated by
//! the edge: the edge is the OIDC client and holds its secret, so the CLI
//! asks the edge to start the flow and to poll for it.
//!
//! | call | what the edge does |
//! |---|---|
//! | `POST /.portcullis/device/start {"target": "ssh.internal:22", "challenge": C}` | only for a route with the option `device_login: true`, at most `device_logins_per_hour` an hour per client address, a quarter of them at once ([`device_start_budget`]); calls the IdP's `device_authorization_endpoint`; answers the user code, the verification URI and a sealed `handle` (device code, route, expiry, `C`) |
//! | `POST /.portcullis/device/poll {"handle", "verifier": V}` | only when `BASE64URL(SHA-256(V)) = C`; one token request with the device code; `authorization_pending` / `slow_down` pass through; on success the ID token is verified, the session created at the control plane (which verifies the token again, as a device login), and its token returned |
//!
//! Device-code phishing: whoever starts a device login collects its
//! session, so an attacker can start one and send the user code to a
//! victim. Hence routes opt in, starts are rate-limited per address, and a
//! login is bound to the client that started it: the verifier never leaves
//! the CLI, so a leaked handle or user code lets nobody else collect it.

use pingora_proxy::Session;
use portcullis_policy::Snapshot;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::answers::{answer, read_json};
use super::cli::{challenge_of, valid_challenge};
use super::id_token::{self, CallbackError};
use super::{tcp_route, LoginService, RequestInfo};
use crate::credentials::LookupBudget;
use crate::oidc::IdentityProvider;
use crate::responses::respond;

/// The grant type of a device-code token request.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Context of the sealed handle.
const HANDLE_CONTEXT: &str = "portcullis device grant v2";
/// Longest a device login may take when the IdP does not say.
const DEFAULT_EXPIRES_IN_S: i64 = 600;
/// The per-address budget of device-login starts: `per_hour` sustained
/// (the edge's `device_logins_per_hour`), a quarter of them at once.
pub fn device_start_budget(per_hour: u32) -> LookupBudget {
    let per_hour = f64::from(per_hour.max(1));
    LookupBudget::new(per_hour / 3600.0, (per_hour / 4.0).max(1.0))
}

/// What the CLI holds between polls, sealed by the edge.
#[derive(Debug, Serialize, Deserialize)]
struct DeviceGrant {
    device_code: String,
    route: String,
    expires_at: i64,
    /// `BASE64URL(SHA-256(verifier))` of the client that started the login.
    challenge: String,
}

#[derive(Deserialize)]
struct StartRequest {
    target: String,
    challenge: Option<String>,
}

#[derive(Deserialize)]
struct PollRequest {
    handle: String,
    verifier: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: Option<i64>,
    interval: Option<u64>,
}

/// `application/x-www-form-urlencoded` encoding of client credentials for
/// HTTP Basic (RFC 6749 §2.3.1).
fn form_encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A token-endpoint or device-endpoint request with the edge's client credentials.
fn client_request(
    provider: &IdentityProvider,
    url: &str,
    form: &mut Vec<(&'static str, String)>,
) -> reqwest::RequestBuilder {
    let settings = &provider.settings;
    let request = provider.http().post(url).header("accept", "application/json");
    match &settings.client_secret {
        Some(secret) => request.basic_auth(form_encoded(&settings.client_id), Some(form_encoded(secret))),
        None => {
            form.push(("client_id", settings.client_id.clone()));
            request
        }
    }
}

impl LoginService {
    /// `POST /.portcullis/device/start`.
    pub(super) async fn device_start(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
    ) -> pingora_core::Result<bool> {
        let Some(provider) = self.provider_or_501(session, "Login").await? else { return Ok(true) };
        let request = read_json::<StartRequest>(session).await?;
        let Some((target, challenge)) =
            request.and_then(|r| Some((r.target, r.challenge.filter(|c| valid_challenge(c))?)))
        else {
            let message = "Send {\"target\": \"host:port\", \"challenge\": BASE64URL(SHA-256(verifier))} as JSON.";
            respond(session, 400, "bad_request", "Bad request", message, &[]).await?;
            return Ok(true);
        };
        let Some(route) = tcp_route(snapshot, &target, info.now) else {
            let message = format!("No TCP route is named `{target}`.");
            respond(session, 404, "no_route", "Not found", &message, &[]).await?;
            return Ok(true);
        };
        let enabled = snapshot.policy().routes().iter().any(|r| r.name() == route && r.options().device_login);
        if !enabled {
            let message = format!("The route `{route}` does not allow device login.");
            respond(session, 403, "device_login_disabled", "Device login unavailable", &message, &[]).await?;
            return Ok(true);
        }
        let client = info.client_ip.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        if !self.device_starts.try_acquire(client, std::time::Instant::now()) {
            tracing::warn!(client = %info.client_ip, "device login refused: too many started from this address");
            let message = "Too many device logins were started from your address; wait, or log in through the browser.";
            respond(session, 429, "too_many_device_logins", "Device login", message, &[("retry-after", "300".into())])
                .await?;
            return Ok(true);
        }
        if !self.status.connected.load(std::sync::atomic::Ordering::Relaxed) {
            let message = "Logging in is temporarily unavailable because this edge cannot reach the Portcullis \
                           control plane. Try again in a moment.";
            return Self::unavailable(session, message).await;
        }
        let discovered = match provider.discovered().await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "device login refused: identity provider unavailable");
                return Self::unavailable(session, "The identity provider cannot be reached right now.").await;
            }
        };
        let Some(endpoint) = discovered.device_authorization_endpoint.clone() else {
            let message = "The identity provider does not offer the device flow; log in through the browser.";
            respond(session, 501, "device_flow_unavailable", "Device login unavailable", message, &[]).await?;
            return Ok(true);
        };
        let scopes: Vec<&str> =
            std::iter::once("openid").chain(provider.settings.scopes.iter().map(String::as_str)).collect();
        let mut form = vec![("scope", scopes.join(" "))];
        let request = client_request(&provider, &endpoint, &mut form);
        let sent = request.form(&form).send().await;
        let response = match sent {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let error = body["error"].as_str().unwrap_or("error");
                tracing::warn!(%status, error, "the identity provider refused to start a device login");
                let message = format!("The identity provider refused to start a device login ({error}).");
                respond(session, 502, "idp_refused", "Device login unavailable", &message, &[]).await?;
                return Ok(true);
            }
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "device login: identity provider unavailable");
                return Self::unavailable(session, "The identity provider cannot be reached right now.").await;
            }
        };
        let Ok(started) = response.json::<DeviceAuthorization>().await else {
            let message = "The identity provider answered the device authorization request with something unexpected.";
            respond(session, 502, "idp_refused", "Device login unavailable", message, &[]).await?;
            return Ok(true);
        };
        let expires_in = started.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_S).clamp(1, 3600);
        let grant =
            DeviceGrant { device_code: started.device_code, route, expires_at: info.now + expires_in, challenge };
        let body = json!({
            "handle": self.sealer.seal_json(HANDLE_CONTEXT, &grant),
            "user_code": started.user_code,
            "verification_uri": started.verification_uri,
            "verification_uri_complete": started.verification_uri_complete,
            "expires_in": expires_in,
            "interval": started.interval.unwrap_or(5),
        });
        answer(session, 200, "application/json", body.to_string()).await
    }

    /// `POST /.portcullis/device/poll`.
    pub(super) async fn device_poll(
        &self,
        session: &mut Session,
        info: &RequestInfo<'_>,
    ) -> pingora_core::Result<bool> {
        let Some(provider) = self.provider_or_501(session, "Login").await? else { return Ok(true) };
        let request = read_json::<PollRequest>(session).await?;
        let opened = request
            .and_then(|r| Some((self.sealer.open_json::<DeviceGrant>(HANDLE_CONTEXT, &r.handle).ok()?, r.verifier)));
        let Some((grant, verifier)) = opened else {
            let message = "Send {\"handle\": …, \"verifier\": …} from device/start.";
            respond(session, 400, "bad_request", "Bad request", message, &[]).await?;
            return Ok(true);
        };
        // Only the client that started the login collects it.
        if verifier.is_none_or(|v| challenge_of(&v) != grant.challenge) {
            let message = "This device login was started by another client.";
            respond(session, 403, "wrong_client", "Device login", message, &[]).await?;
            return Ok(true);
        }
        if grant.expires_at <= info.now {
            respond(session, 400, "expired_token", "Login expired", "The device login expired; start again.", &[])
                .await?;
            return Ok(true);
        }
        let discovered = match provider.discovered().await {
            Ok(found) => found,
            Err(_) => return Self::unavailable(session, "The identity provider cannot be reached right now.").await,
        };
        let Some(token_url) = discovered.metadata.token_endpoint().map(|u| u.as_str().to_owned()) else {
            return Self::unavailable(session, "The identity provider has no token endpoint.").await;
        };
        let mut form = vec![("grant_type", DEVICE_GRANT.to_owned()), ("device_code", grant.device_code.clone())];
        let request = client_request(&provider, &token_url, &mut form);
        let response = match request.form(&form).send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "device login: identity provider unavailable");
                return Self::unavailable(session, "The identity provider cannot be reached right now.").await;
            }
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("error").to_owned();
            let (code, message) = match error.as_str() {
                "authorization_pending" => ("authorization_pending", "Waiting for you to log in in the browser."),
                "slow_down" => ("slow_down", "Polling too fast; wait longer between polls."),
                "expired_token" => ("expired_token", "The device login expired; start again."),
                "access_denied" => ("access_denied", "The login was refused at the identity provider."),
                _ => ("login_refused", "The identity provider refused the device login."),
            };
            if code == "login_refused" {
                tracing::warn!(%status, error, "device login refused by the identity provider");
            }
            let status = if code == "access_denied" { 403 } else { 400 };
            respond(session, status, code, "Device login", message, &[]).await?;
            return Ok(true);
        }
        let token_response: Result<openidconnect::core::CoreTokenResponse, _> = serde_json::from_value(body);
        let id_token = token_response.ok().and_then(|r| openidconnect::TokenResponse::id_token(&r).cloned());
        let Some(id_token) = id_token else {
            respond(session, 403, "login_refused", "Login refused", "The identity provider sent no ID token.", &[])
                .await?;
            return Ok(true);
        };
        let user = match id_token::verify(&provider, &discovered, &id_token, None, info.now).await {
            Ok(user) => user,
            Err(CallbackError::Unavailable(error)) => {
                tracing::warn!(%error, "device login failed: identity provider unavailable");
                return Self::unavailable(session, "The identity provider cannot be reached right now.").await;
            }
            Err(CallbackError::Refused(reason)) => {
                tracing::warn!(%reason, "device login refused");
                let message = format!("The login could not be verified: {reason}.");
                respond(session, 403, "login_refused", "Login refused", &message, &[]).await?;
                return Ok(true);
            }
        };
        let Some(created) = self.new_session(session, &user, None, &grant.route, &info.client_ip, None).await? else {
            return Ok(true);
        };
        tracing::info!(session = %created.session_id, route = %grant.route, "device login completed");
        let body = json!({ "token": created.token, "session_id": created.session_id });
        answer(session, 200, "application/json", body.to_string()).await
    }
}
