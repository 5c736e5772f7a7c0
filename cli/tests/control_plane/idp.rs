//! A real OpenID provider for the OIDC tests — npm `oidc-provider` run by
//! `cli/tests/idp/provider.mjs` on a free loopback port — and a scripted
//! browser that logs in and out at it.
//!
//! The provider knows the users `alice` (alice@corp.example, groups `admins`
//! and `dev`), `bob` (bob@corp.example, `dev`) and `mallory`
//! (mallory@evil.example, no groups); the login name is the `sub`, any
//! password is accepted. ID tokens carry `email`, `email_verified`, `groups`
//! (scope `groups`), `name`, `preferred_username` and `sid`; PKCE (S256) is
//! required. A client_credentials grant with `resource=<URL>` returns an
//! RS256 `at+jwt` access token whose `aud` is the resource, `sub` and
//! `client_id` the client, `scope` `api` when asked for, plus `email` and
//! `groups` from the client's `x_email` / `x_groups` metadata. Everything is
//! in memory and forgotten when the process ends.
//!
//! Clients are oidc-provider client metadata, e.g.
//!
//! ```json
//! { "client_id": "edge", "client_secret": "edge-secret",
//!   "redirect_uris": ["http://127.0.0.1:8080/.portcullis/callback"],
//!   "post_logout_redirect_uris": ["http://127.0.0.1:8080/"],
//!   "backchannel_logout_uri": "http://127.0.0.1:8080/.portcullis/backchannel-logout" }
//! { "client_id": "robot", "client_secret": "robot-secret",
//!   "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
//!   "x_email": "robot@corp.example", "x_groups": ["robots"] }
//! ```
//!
//! `http://` redirect URIs are accepted for the default `web` application
//! type (the port must match exactly); `application_type: "native"` clients
//! may use any port on 127.0.0.1. Clients authenticate with
//! `client_secret_basic` unless they say otherwise.
//!
//! The npm packages are installed by `scripts/setup.sh`
//! (`npm ci --prefix cli/tests/idp`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;

use crate::harness::free_port;

pub use crate::browser::{Browser, FinalResponse};

/// How long the provider may take to start (Node loads ~100 modules).
const START_WITHIN: Duration = Duration::from_secs(30);
/// The PKCE code verifier of RFC 7636 appendix B.
pub const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// `BASE64URL(SHA256(PKCE_VERIFIER))`, the matching S256 code challenge.
pub const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The scope the provider's resource servers grant in access tokens.
pub const RESOURCE_SCOPE: &str = "api";

/// The directory of `provider.mjs` and its npm packages.
fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("idp")
}

/// A running OpenID provider, killed on drop.
pub struct Idp {
    child: Child,
    port: u16,
    log: PathBuf,
    discovery: Value,
    http: reqwest::Client,
}

impl Idp {
    /// Starts the provider with `clients` (a JSON array of oidc-provider
    /// client metadata) on a free port, writing its configuration and log
    /// into `dir`, and waits until it answers discovery. Panics if Node or
    /// the npm packages are missing (run `scripts/setup.sh`) or if it does
    /// not start.
    pub async fn start(dir: &Path, clients: Value) -> Idp {
        Self::start_with(dir, clients, serde_json::json!({})).await
    }

    /// [`Idp::start`] with more configuration keys, e.g. `{"device_flow": false}`.
    pub async fn start_with(dir: &Path, clients: Value, extra: Value) -> Idp {
        assert!(clients.is_array(), "Idp::start: clients must be a JSON array, got {clients}");
        let script_dir = provider_dir();
        assert!(
            script_dir.join("node_modules").join("oidc-provider").is_dir(),
            "the test OpenID provider's npm packages are missing ({}): run scripts/setup.sh",
            script_dir.join("node_modules").display()
        );
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("HTTP client");
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let config = dir.join(format!("idp-{port}.json"));
            let mut settings = serde_json::json!({ "port": port, "clients": clients });
            if let (Some(settings), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
                settings.extend(extra.clone());
            }
            let text = settings.to_string();
            std::fs::write(&config, text).expect("write the IdP configuration");
            let log = dir.join(format!("idp-{port}.log"));
            let file = File::create(&log).expect("create the IdP log");
            let child = Command::new("node")
                .arg(script_dir.join("provider.mjs"))
                .arg(&config)
                .current_dir(&script_dir)
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("clone log handle"))
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run `node` ({e}): run scripts/setup.sh"));
            let mut idp = Idp { child, port, log, discovery: Value::Null, http: http.clone() };
            match idp.wait_ready().await {
                Ok(discovery) => {
                    idp.discovery = discovery;
                    return idp;
                }
                Err(log) if log.contains("EADDRINUSE") && attempt < 2 => last_log = log,
                Err(log) => panic!("the test OpenID provider did not start:\n{log}"),
            }
        }
        panic!("the test OpenID provider could not bind a free port:\n{last_log}");
    }

    async fn wait_ready(&mut self) -> Result<Value, String> {
        let deadline = Instant::now() + START_WITHIN;
        let ready_line = format!("ready {}", self.issuer());
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("node exited with {status}\n{}", self.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready within {START_WITHIN:?}\n{}", self.log_text()));
            }
            if self.log_text().lines().any(|line| line == ready_line) {
                let response = self.http.get(self.discovery_url()).send().await;
                match response {
                    Ok(response) if response.status().is_success() => {
                        return response.json().await.map_err(|e| format!("discovery is not JSON: {e}"));
                    }
                    Ok(response) => {
                        return Err(format!("discovery answered {}\n{}", response.status(), self.log_text()))
                    }
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// The discovery document read at start.
    pub fn discovery(&self) -> &Value {
        &self.discovery
    }

    /// An endpoint from discovery, e.g. `token_endpoint`.
    pub fn endpoint(&self, name: &str) -> String {
        match self.discovery[name].as_str() {
            Some(url) => url.to_owned(),
            None => panic!("the IdP's discovery has no {name}: {}", self.discovery),
        }
    }

    /// What the provider has logged so far (standard output and error).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client_credentials grant for `resource` (scope `api`): returns the
    /// JWT access token. Panics unless the token endpoint answers 200.
    pub async fn client_credentials_token(&self, client_id: &str, secret: &str, resource: &str) -> String {
        let form = [("grant_type", "client_credentials"), ("resource", resource), ("scope", RESOURCE_SCOPE)];
        let body = self.token_request(client_id, secret, &form).await.unwrap_or_else(|e| panic!("{e}"));
        body["access_token"].as_str().unwrap_or_else(|| panic!("no access_token in {body}")).to_owned()
    }

    /// Exchanges an authorization `code` with the PKCE `verifier` (that of
    /// [`Idp::authorization_url`] is [`PKCE_VERIFIER`]) at the token
    /// endpoint with `client_secret_basic`; returns the token response, or
    /// the status and error body.
    pub async fn exchange_code(
        &self,
        client_id: &str,
        secret: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Value, String> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        self.token_request(client_id, secret, &form).await
    }

    /// POSTs `form` to the token endpoint with HTTP Basic client
    /// authentication; `Ok(body)` on 200, `Err(status and body)` otherwise.
    pub async fn token_request(&self, client_id: &str, secret: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let response = self
            .http
            .post(self.endpoint("token_endpoint"))
            .basic_auth(form_encode(client_id), Some(form_encode(secret)))
            .form(form)
            .send()
            .await
            .expect("POST the IdP's token endpoint");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON token response");
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("token endpoint: {status} {body}\n{}", self.log_text()))
        }
    }

    /// The authorization URL for the code flow with PKCE
    /// ([`PKCE_CHALLENGE`]) and `extra` parameters (e.g. `state`, `nonce`).
    pub fn authorization_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut url = Url::parse(&self.endpoint("authorization_endpoint")).expect("authorization endpoint URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("code_challenge", PKCE_CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra);
        url.into()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `application/x-www-form-urlencoded` encoding, which RFC 6749 §2.3.1
/// requires for the Basic credentials of a client.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The decoded header and payload of a compact JWS (signature not checked).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let decode = |part: &str| -> Value {
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part)
            .unwrap_or_else(|e| panic!("JWT part is not base64url ({e}): {token}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part is not JSON ({e}): {token}"))
    };
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    (decode(parts[0]), decode(parts[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("svc-1_a.b*"), "svc-1_a.b*");
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }
}
