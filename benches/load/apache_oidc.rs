//! Apache httpd 2.4 with mod_auth_openidc for the edge-vs-nginx harness: an
//! identity-aware reverse proxy people run today (Debian's `apache2` and
//! `libapache2-mod-auth-openidc`), configured the way its README shows, in
//! front of the same upstream as the other targets:
//!
//! - event MPM with `workers` child processes (the other proxies' worker
//!   count), 64 threads each, unlimited keep-alive requests, no access log;
//! - `OIDCProviderMetadataURL` at the test IdP (`idp.rs`), client `apache`,
//!   PKCE S256, the default server-side session (the `shm` cache, shared by
//!   the children) behind the `mod_auth_openidc_session` cookie, the
//!   default claim headers (`OIDC_CLAIM_*`) passed upstream;
//! - `AuthType openid-connect` and `Require claim groups:dev` on every
//!   path, then `ProxyPass` to the upstream (mod_proxy keeps its upstream
//!   connections alive and pooled per child).
//!
//! [`ApacheOidc::login`] logs user `alice` in once through the IdP
//! (`idp_login.rs`: redirects followed, the IdP's login and consent forms
//! posted) and returns the session cookie; [`ApacheOidc::check`]
//! verifies that a request without it is sent to the IdP (302) and one with
//! it reaches the upstream (200), so the harness measures the
//! authenticated path. Stopped with SIGTERM (children included) on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::idp::Idp;
use crate::idp_login::Login;
use crate::processes::{self, WorkDir, APP_HOST};

/// Debian's Apache binary.
const APACHE: &str = "/usr/sbin/apache2";
/// Debian's module directory.
const MODULES: &str = "/usr/lib/apache2/modules";
/// The relying party's client at the IdP.
const CLIENT_ID: &str = "apache";
const CLIENT_SECRET: &str = "apache-bench-secret-0123456789";
/// mod_auth_openidc's session cookie (its default name).
pub const SESSION_COOKIE: &str = "mod_auth_openidc_session";
/// The IdP user who logs in (groups `admins`, `dev`).
const USER: &str = "alice";

/// The apache2 binary, or why it cannot run.
pub fn binary() -> Result<PathBuf> {
    let path = processes::find_program("apache2", APACHE);
    match path {
        Some(path) if Path::new(MODULES).join("mod_auth_openidc.so").is_file() => Ok(path),
        _ => bail!("apache2 or libapache2-mod-auth-openidc is not installed (run scripts/bench-setup.sh)"),
    }
}

/// The IdP client metadata Apache logs in with, for a proxy on `port`.
pub fn idp_client(port: u16) -> serde_json::Value {
    serde_json::json!({
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [redirect_uri(port)],
    })
}

fn redirect_uri(port: u16) -> String {
    format!("http://{APP_HOST}:{port}/redirect_uri")
}

/// A running Apache (parent and children).
pub struct ApacheOidc {
    process: processes::Process,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl ApacheOidc {
    /// Starts Apache on `port` (the one [`idp_client`] was given) in front of
    /// `127.0.0.1:upstream`, logging in at `idp`.
    pub fn start(binary: &Path, dir: &WorkDir, workers: usize, port: u16, upstream: u16, idp: &Idp) -> Result<Self> {
        let root = dir.path().join("apache");
        std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
        let passphrase: String = (0..32).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect();
        let user = if processes::is_root() { "User www-data\nGroup www-data\n" } else { "" };
        let threads = 64;
        let config = format!(
            "ServerRoot \"{root}\"\nDefaultRuntimeDir \"{root}\"\nPidFile \"{root}/httpd.pid\"\n\
             ErrorLog \"{root}/error.log\"\nLogLevel warn\nServerName {APP_HOST}\nListen 127.0.0.1:{port}\n{user}\
             LoadModule mpm_event_module {MODULES}/mod_mpm_event.so\n\
             LoadModule authn_core_module {MODULES}/mod_authn_core.so\n\
             LoadModule authz_core_module {MODULES}/mod_authz_core.so\n\
             LoadModule proxy_module {MODULES}/mod_proxy.so\n\
             LoadModule proxy_http_module {MODULES}/mod_proxy_http.so\n\
             LoadModule auth_openidc_module {MODULES}/mod_auth_openidc.so\n\
             StartServers {workers}\nServerLimit {workers}\nThreadsPerChild {threads}\nThreadLimit {threads}\n\
             MaxRequestWorkers {max}\nMinSpareThreads 1\nMaxSpareThreads {max}\nMaxConnectionsPerChild 0\n\
             KeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 75\n\
             OIDCProviderMetadataURL {discovery}\nOIDCClientID {CLIENT_ID}\nOIDCClientSecret {CLIENT_SECRET}\n\
             OIDCRedirectURI {redirect}\nOIDCCryptoPassphrase {passphrase}\nOIDCScope \"openid email profile groups\"\n\
             OIDCPKCEMethod S256\nOIDCSessionInactivityTimeout 86400\nOIDCSessionMaxDuration 86400\n\
             <Location />\n  AuthType openid-connect\n  Require claim groups:dev\n</Location>\n\
             ProxyPass /redirect_uri !\nProxyPass / http://127.0.0.1:{upstream}/\n",
            root = root.display(),
            max = workers * threads,
            discovery = idp.discovery_url(),
            redirect = redirect_uri(port),
        );
        let config_path = dir.write("apache.conf", &config)?;
        let mut command = Command::new(binary);
        command.arg("-f").arg(config_path).arg("-DFOREGROUND");
        let mut process = processes::Process::spawn(command, "apache2", dir.path().join("apache.log"))?;
        process.wait_listening(port)?;
        Ok(Self { process, port })
    }

    /// Logs the IdP user in through the IdP's forms, like a browser; returns
    /// `SESSION_COOKIE=value`.
    pub async fn login(&self) -> Result<String> {
        let mut login = Login::resolving(APP_HOST)?;
        let landed = login.run(&format!("http://{APP_HOST}:{}/", self.port), USER).await?;
        if landed.status != 200 || landed.body != "hello\n" {
            bail!("Apache after the login: {} {:?}\n{}", landed.status, landed.body, login.trail());
        }
        let cookie = login.cookie(APP_HOST, SESSION_COOKIE);
        cookie.with_context(|| format!("no {SESSION_COOKIE} cookie after the login:\n{}", login.trail()))
    }

    /// Checks that a request without a session is redirected to the IdP's
    /// authorization endpoint and one with `cookie_header` gets the
    /// upstream's answer.
    pub async fn check(&self, idp: &Idp, cookie_header: &str) -> Result<()> {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let url = format!("http://127.0.0.1:{}/", self.port);
        let anonymous = http.get(&url).header("host", APP_HOST).header("accept", "text/html").send().await?;
        let location = anonymous.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if anonymous.status() != 302 || !location.starts_with(&idp.endpoint("authorization_endpoint")) {
            bail!("Apache without a session: {} to {location:?}, not 302 to the IdP", anonymous.status());
        }
        let signed_in = http.get(&url).header("host", APP_HOST).header("cookie", cookie_header).send().await?;
        let status = signed_in.status();
        let body = signed_in.text().await?;
        if status != 200 || body != "hello\n" {
            bail!("Apache with the session: {status} {body:?}, not the upstream's 200 hello");
        }
        Ok(())
    }

    /// The parent's process id (its children do the proxying).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for ApacheOidc {
    fn drop(&mut self) {
        processes::terminate(&mut self.process);
    }
}
