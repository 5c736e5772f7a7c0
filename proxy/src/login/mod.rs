//! The edge's reserved paths under `/.portcullis/`:
//!
//! | path | what |
//! |---|---|
//! | `login?rd=/path` | starts an OIDC authorization-code login (PKCE, `state`, `nonce`) ([`browser`]) |
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
mod browser;
pub mod cli;
mod device;
pub use device::device_start_budget;
mod id_token;
mod logout;
pub mod loop_guard;
pub mod session_status;
pub mod state;

use answers::{answer, query_param};

use std::sync::Arc;

use openidconnect::core::CoreJwsSigningAlgorithm;
use pingora_proxy::Session;
use portcullis_policy::{canonicalize, evaluate, Facts, Snapshot, Target};
use serde_json::Value;

use crate::assertion::AssertionSigner;
use crate::authority_client::AuthorityClient;
use crate::credentials::{SessionCookies, SessionVerifier};
use crate::oidc::logout_token::ReplayGuard;
use crate::oidc::IdentityProvider;
use crate::responses::respond;
use crate::subscriber::SyncStatus;
use state::StateSealer;

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

    /// The OpenID provider, or `None` after answering 501 when this edge
    /// has none (`what` names the login that needs it).
    async fn provider_or_501(
        &self,
        session: &mut Session,
        what: &str,
    ) -> pingora_core::Result<Option<Arc<IdentityProvider>>> {
        if let Some(provider) = &self.provider {
            return Ok(Some(Arc::clone(provider)));
        }
        let message = format!("{what} is not configured on this edge (no OpenID provider).");
        respond(session, 501, "login_not_configured", "Login unavailable", &message, &[]).await?;
        Ok(None)
    }

    /// The route a login for `host` + `path` is for: routed on the
    /// canonical path, exactly as the gate routes the request the browser
    /// returns with, so the cookie is set for the route that will read it.
    fn route_name(snapshot: &Snapshot, host: &str, path: &str) -> Option<String> {
        let target = canonicalize(path, None).ok()?;
        snapshot.policy().http_route(host, &target.path_without_params()).map(|r| r.name().to_owned())
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
