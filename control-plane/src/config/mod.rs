//! Control-plane configuration: a TOML file whose every key can be
//! overridden by a `PORTCULLIS_<KEY>` environment variable (upper case), read
//! in two stages — raw values with defaults, then a validated [`Config`].
//! The environment is read through a closure so tests never touch the
//! process environment.

use std::net::SocketAddr;
use std::path::Path;

pub use crate::key_vault::KekSource;

use serde::Deserialize;

/// Default admin API / portal listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
/// Default edge-channel listener.
pub const DEFAULT_EDGE_LISTEN: &str = "127.0.0.1:7401";
/// Default database: one SQLite file under `./data`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/portcullis.db";
/// Default bound on `?wait=true`, milliseconds.
pub const DEFAULT_RECEIPT_WAIT_MS: u64 = 5_000;
/// Default number of change-log rows kept for resuming edges.
pub const DEFAULT_CHANGE_LOG_RETENTION: u64 = 100_000;
/// Default largest accepted request body, bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default group whose members may use the portal after an OIDC login.
pub const DEFAULT_PORTAL_ADMIN_GROUP: &str = "admins";
/// Default ID-token claim that carries the user's groups.
pub const DEFAULT_OIDC_GROUPS_CLAIM: &str = "groups";
/// Default lifetime of a portal session, seconds (8 hours).
pub const DEFAULT_PORTAL_SESSION_LIFETIME_S: u64 = 8 * 3600;
/// Default clock difference tolerated on ID-token times at session creation, seconds.
pub const DEFAULT_LOGIN_CLOCK_SKEW_S: u64 = 30;
/// Largest `login_clock_skew_s`, seconds.
pub const MAX_LOGIN_CLOCK_SKEW_S: u64 = 300;

mod keys;
pub use keys::KEYS;

/// The file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// See [`KEYS`].
    pub listen: Option<String>,
    /// See [`KEYS`].
    pub edge_listen: Option<String>,
    /// See [`KEYS`].
    pub database_url: Option<String>,
    /// See [`KEYS`].
    pub issuer: Option<String>,
    /// See [`KEYS`].
    pub edge_secret: Option<String>,
    /// See [`KEYS`].
    pub bootstrap_token: Option<String>,
    /// See [`KEYS`].
    pub admin_token_file: Option<String>,
    /// See [`KEYS`].
    pub key_encryption_key: Option<String>,
    /// See [`KEYS`].
    pub key_encryption_key_file: Option<String>,
    /// See [`KEYS`].
    pub metrics_token: Option<String>,
    /// See [`KEYS`].
    pub receipt_wait_ms: Option<u64>,
    /// See [`KEYS`].
    pub change_log_retention: Option<u64>,
    /// See [`KEYS`].
    pub max_body_bytes: Option<usize>,
    /// See [`KEYS`].
    pub public_url: Option<String>,
    /// See [`KEYS`].
    pub oidc_issuer: Option<String>,
    /// See [`KEYS`].
    pub oidc_client_id: Option<String>,
    /// See [`KEYS`].
    pub oidc_client_secret: Option<String>,
    /// See [`KEYS`].
    pub oidc_scopes: Option<Vec<String>>,
    /// See [`KEYS`].
    pub oidc_groups_claim: Option<String>,
    /// See [`KEYS`].
    pub portal_admin_group: Option<String>,
    /// See [`KEYS`].
    pub portal_cookie_secure: Option<bool>,
    /// See [`KEYS`].
    pub portal_session_lifetime_s: Option<u64>,
    /// See [`KEYS`].
    pub tls_cert: Option<String>,
    /// See [`KEYS`].
    pub tls_key: Option<String>,
    /// See [`KEYS`].
    pub allow_plain_http: Option<bool>,
    /// See [`KEYS`].
    pub login_idps: Option<Vec<RawLoginIdp>>,
    /// See [`KEYS`].
    pub login_clock_skew_s: Option<u64>,
    /// See [`KEYS`].
    pub relying_parties: Option<Vec<crate::relying_parties::settings::RawRelyingParty>>,
    /// See [`KEYS`].
    pub log_format: Option<String>,
    /// See [`KEYS`].
    pub ssf_push_private_networks: Option<bool>,
    /// See [`KEYS`].
    pub ssf_transmitters: Option<Vec<crate::signals::settings::RawTransmitter>>,
    /// See [`KEYS`].
    pub siem_sinks: Option<Vec<crate::siem::settings::RawSink>>,
}

/// One entry of `login_idps`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoginIdp {
    /// See [`KEYS`] (`login_idps`).
    pub issuer: String,
    /// See [`KEYS`] (`login_idps`).
    pub audiences: Vec<String>,
    /// See [`KEYS`] (`login_idps`).
    pub groups_claim: Option<String>,
    /// See [`KEYS`] (`login_idps`).
    pub trust_unverified_email: Option<bool>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Admin API listener.
    pub listen: SocketAddr,
    /// Edge channel listener.
    pub edge_listen: SocketAddr,
    /// Database URL.
    pub database_url: String,
    /// Session token issuer.
    pub issuer: String,
    /// Bootstrap secret edges may enroll with instead of a join token.
    pub edge_secret: Option<String>,
    /// Admin token to create on first start.
    pub bootstrap_token: Option<String>,
    /// Where a new first-start admin token is written (0600).
    pub admin_token_file: std::path::PathBuf,
    /// Where the key-encryption key comes from.
    pub key_encryption: KekSource,
    /// Bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Bound on receipt waits.
    pub receipt_wait_ms: u64,
    /// Change-log rows kept.
    pub change_log_retention: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// The URL browsers reach this control plane at (no trailing slash).
    pub public_url: String,
    /// The admin portal.
    pub portal: PortalSettings,
    /// The certificate and key both listeners serve HTTPS with; `None`:
    /// plain HTTP (loopback only, unless `allow_plain_http`).
    pub tls: Option<TlsFiles>,
    /// What session creation accepts as proof of a login.
    pub login: LoginSettings,
    /// The services a termination also signs the user out of.
    pub relying_parties: Vec<crate::relying_parties::RelyingPartySettings>,
    /// Plain `http://` accepted to hosts that are not loopback (SSF push
    /// endpoints, relying parties, login IdPs).
    pub allow_plain_http: bool,
    /// How the log is written.
    pub log_format: portcullis_settings::LogFormat,
    /// SSF push endpoints may be loopback or private addresses.
    pub ssf_push_private_networks: bool,
    /// The Shared Signals transmitters whose events end sessions here.
    pub ssf_transmitters: Vec<crate::signals::settings::TransmitterSettings>,
    /// Where security events go.
    pub siem_sinks: Vec<crate::siem::settings::SinkSettings>,
}

/// The identity providers whose ID tokens create sessions.
#[derive(Debug, Clone, Default)]
pub struct LoginSettings {
    /// Trusted providers (none: every login is refused).
    pub idps: Vec<LoginIdpSettings>,
    /// Tolerated clock difference, seconds.
    pub clock_skew_s: u64,
}

/// One provider edges log users in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdpSettings {
    /// Issuer, exactly as its tokens' `iss`.
    pub issuer: String,
    /// Accepted `aud` values: the edges' client ids.
    pub audiences: Vec<String>,
    /// The claim carrying groups.
    pub groups_claim: String,
    /// Accept emails the provider does not say are verified.
    pub trust_unverified_email: bool,
}

/// Where the listeners' certificate chain and private key are (PEM files,
/// read when the control plane starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: String,
    /// Private key.
    pub key: String,
}

/// The admin portal's settings.
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// The OpenID provider admins log in with, if configured.
    pub oidc: Option<PortalOidc>,
    /// Group required after an OIDC login.
    pub admin_group: String,
    /// Mark cookies `Secure`.
    pub cookie_secure: bool,
    /// Portal session lifetime, seconds.
    pub session_lifetime_s: u64,
}

/// The portal's OpenID provider.
#[derive(Debug, Clone)]
pub struct PortalOidc {
    /// Issuer URL (no trailing slash).
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Client secret, for a confidential client.
    pub client_secret: Option<String>,
    /// Scopes asked for (`openid` always included).
    pub scopes: Vec<String>,
    /// The claim carrying groups.
    pub groups_claim: String,
}

pub use portcullis_settings::ConfigError;

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(key, message)
}

impl Config {
    /// Reads `file_text` (TOML, may be empty) and applies overrides from
    /// `env` (called with names such as `PORTCULLIS_LISTEN`).
    pub fn load(file_text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::validate(portcullis_settings::load(file_text, KEYS, &env)?, &env)
    }

    fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let address = |key: &str, value: Option<String>, default: &str| -> Result<SocketAddr, ConfigError> {
            let text = value.unwrap_or_else(|| default.to_owned());
            text.parse().map_err(|_| error(key, format!("expected an address such as 127.0.0.1:7400, found `{text}`")))
        };
        let listen = address("listen", raw.listen, DEFAULT_LISTEN)?;
        let edge_listen = address("edge_listen", raw.edge_listen, DEFAULT_EDGE_LISTEN)?;
        let database_url = raw.database_url.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !["sqlite:", "postgres://", "postgresql://"].iter().any(|p| database_url.starts_with(p)) {
            return Err(error("database_url", "expected sqlite://PATH or postgres://USER@HOST/DB"));
        }
        let edge_secret = raw.edge_secret;
        if edge_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(error(
                "edge_secret",
                "must be at least 32 characters (or unset: edges enroll with join tokens)",
            ));
        }
        if raw.bootstrap_token.as_ref().is_some_and(|t| t.len() < 32) {
            return Err(error("bootstrap_token", "must be at least 32 characters"));
        }
        let sqlite_dir =
            crate::files::sqlite_path(&database_url).map(|p| p.parent().unwrap_or(Path::new("")).to_owned());
        let key_encryption = match (raw.key_encryption_key, raw.key_encryption_key_file) {
            (Some(_), Some(_)) => {
                return Err(error("key_encryption_key", "set key_encryption_key or key_encryption_key_file, not both"))
            }
            (Some(text), None) if text.trim().chars().count() < crate::key_vault::MIN_KEK_CHARS => {
                return Err(error("key_encryption_key", "must be at least 32 characters"))
            }
            (Some(text), None) => KekSource::Value(text),
            (None, Some(file)) => KekSource::File(file.into()),
            (None, None) if !database_url.starts_with("sqlite:") => return Err(error(
                "key_encryption_key_file",
                "is required with PostgreSQL (or key_encryption_key / PORTCULLIS_KEY_ENCRYPTION_KEY): it seals the \
                     private keys in the database, and every replica must hold the same one",
            )),
            (None, None) => match &sqlite_dir {
                Some(dir) => KekSource::BesideDatabase(dir.join(crate::key_vault::DEFAULT_KEK_FILE)),
                None => KekSource::Ephemeral,
            },
        };
        let admin_token_file = match raw.admin_token_file {
            Some(file) if file.trim().is_empty() => return Err(error("admin_token_file", "must not be empty")),
            Some(file) => file.into(),
            None => sqlite_dir.unwrap_or_default().join("admin-token"),
        };
        if raw.metrics_token.as_ref().is_some_and(|t| t.trim().len() < 32) {
            return Err(error("metrics_token", "must be at least 32 characters"));
        }
        let receipt_wait_ms = raw.receipt_wait_ms.unwrap_or(DEFAULT_RECEIPT_WAIT_MS);
        if receipt_wait_ms > 60_000 {
            return Err(error("receipt_wait_ms", "must be at most 60000"));
        }
        let tls = tls_files(raw.tls_cert, raw.tls_key)?;
        if tls.is_none() && raw.allow_plain_http != Some(true) {
            refuse_plain_http(&[("listen", listen), ("edge_listen", edge_listen)])?;
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = raw.issuer.unwrap_or_else(|| format!("{scheme}://{listen}"));
        let public_url = http_url("public_url", raw.public_url.as_deref().unwrap_or(&issuer))?;
        let portal = PortalSettings {
            oidc: portal_oidc(
                raw.oidc_issuer,
                raw.oidc_client_id,
                raw.oidc_client_secret,
                raw.oidc_scopes,
                raw.oidc_groups_claim,
            )?,
            admin_group: nonempty("portal_admin_group", raw.portal_admin_group, DEFAULT_PORTAL_ADMIN_GROUP)?,
            cookie_secure: raw.portal_cookie_secure.unwrap_or(true),
            session_lifetime_s: match raw.portal_session_lifetime_s.unwrap_or(DEFAULT_PORTAL_SESSION_LIFETIME_S) {
                lifetime @ 60..=86_400 => lifetime,
                _ => return Err(error("portal_session_lifetime_s", "must be between 60 and 86400 seconds")),
            },
        };
        let login_clock_skew_s = raw.login_clock_skew_s.unwrap_or(DEFAULT_LOGIN_CLOCK_SKEW_S);
        if login_clock_skew_s > MAX_LOGIN_CLOCK_SKEW_S {
            return Err(error("login_clock_skew_s", format!("must be at most {MAX_LOGIN_CLOCK_SKEW_S} seconds")));
        }
        let login = LoginSettings {
            idps: login_idps(raw.login_idps.unwrap_or_default(), raw.allow_plain_http == Some(true))?,
            clock_skew_s: login_clock_skew_s,
        };
        let relying_parties = crate::relying_parties::settings::validate(
            raw.relying_parties.unwrap_or_default(),
            raw.allow_plain_http == Some(true),
            env,
        )?;
        let ssf_transmitters = crate::signals::settings::validate(
            raw.ssf_transmitters.unwrap_or_default(),
            &public_url,
            raw.allow_plain_http == Some(true),
            env,
        )?;
        let siem_sinks = crate::siem::settings::validate(raw.siem_sinks.unwrap_or_default(), env)?;
        Ok(Self {
            siem_sinks,
            ssf_transmitters,
            log_format: portcullis_settings::log_format(raw.log_format.as_deref())?,
            relying_parties,
            allow_plain_http: raw.allow_plain_http == Some(true),
            ssf_push_private_networks: raw.ssf_push_private_networks == Some(true),
            issuer,
            public_url,
            portal,
            tls,
            login,
            listen,
            edge_listen,
            database_url,
            edge_secret,
            bootstrap_token: raw.bootstrap_token,
            admin_token_file,
            key_encryption,
            metrics_token: raw.metrics_token.map(|t| t.trim().to_owned()),
            receipt_wait_ms,
            change_log_retention: raw.change_log_retention.unwrap_or(DEFAULT_CHANGE_LOG_RETENTION).max(1_000),
            max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        })
    }
}

/// `tls_cert` and `tls_key`: both or neither.
fn tls_files(cert: Option<String>, key: Option<String>) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (Some(_), None) => Err(error("tls_key", "is required with tls_cert")),
        (None, Some(_)) => Err(error("tls_cert", "is required with tls_key")),
        (None, None) => Ok(None),
    }
}

/// Plain HTTP is for loopback: a listener anyone else can reach needs TLS,
/// or an explicit `allow_plain_http = true`.
fn refuse_plain_http(listeners: &[(&str, SocketAddr)]) -> Result<(), ConfigError> {
    match listeners.iter().find(|(_, address)| !address.ip().is_loopback()) {
        Some((key, address)) => Err(error(
            key,
            format!(
                "{address} is not a loopback address, and plain HTTP there is refused: set tls_cert and tls_key to \
                 serve HTTPS, or allow_plain_http = true (e.g. behind a TLS-terminating proxy)"
            ),
        )),
        None => Ok(()),
    }
}

/// An absolute `http://` or `https://` URL without a trailing slash.
fn http_url(key: &str, text: &str) -> Result<String, ConfigError> {
    let trimmed = text.trim().trim_end_matches('/');
    let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(trimmed.to_owned()),
        _ => Err(error(key, format!("expected an http:// or https:// URL, found `{text}`"))),
    }
}

fn nonempty(key: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    if value.trim().is_empty() {
        return Err(error(key, "must not be empty"));
    }
    Ok(value.trim().to_owned())
}

fn login_idps(raw: Vec<RawLoginIdp>, allow_plain_http: bool) -> Result<Vec<LoginIdpSettings>, ConfigError> {
    let mut idps: Vec<LoginIdpSettings> = Vec::with_capacity(raw.len());
    for entry in raw {
        // Kept as written: the tokens' `iss` is compared with it exactly.
        http_url("login_idps", &entry.issuer)?;
        let issuer = entry.issuer.trim().to_owned();
        // The provider's keys decide who logs in: fetched over plain HTTP
        // from elsewhere, anyone on the path could sign sessions.
        if !allow_plain_http && issuer.starts_with("http://") && !portcullis_settings::is_loopback_url(&issuer) {
            return Err(error(
                "login_idps",
                format!(
                    "issuer `{issuer}` is plain HTTP to a host that is not loopback: its signing keys would be \
                     fetched unprotected; use https://, or allow_plain_http = true"
                ),
            ));
        }
        if idps.iter().any(|idp| idp.issuer == issuer) {
            return Err(error("login_idps", format!("issuer `{issuer}` is listed twice")));
        }
        let audiences: Vec<String> =
            entry.audiences.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
        if audiences.is_empty() {
            return Err(error("login_idps", format!("issuer `{issuer}`: `audiences` names no client id")));
        }
        let groups_claim = match entry.groups_claim {
            Some(claim) if claim.trim().is_empty() => {
                return Err(error("login_idps", format!("issuer `{issuer}`: `groups_claim` is empty")))
            }
            Some(claim) => claim.trim().to_owned(),
            None => DEFAULT_OIDC_GROUPS_CLAIM.to_owned(),
        };
        let trust_unverified_email = entry.trust_unverified_email.unwrap_or(false);
        idps.push(LoginIdpSettings { issuer, audiences, groups_claim, trust_unverified_email });
    }
    Ok(idps)
}

fn portal_oidc(
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    groups_claim: Option<String>,
) -> Result<Option<PortalOidc>, ConfigError> {
    let Some(issuer) = issuer else {
        if client_id.is_some() {
            return Err(error("oidc_issuer", "is required when oidc_client_id is set"));
        }
        return Ok(None);
    };
    // Kept as written: discovery compares the provider's issuer exactly.
    http_url("oidc_issuer", &issuer)?;
    let issuer = issuer.trim().to_owned();
    let client_id = client_id
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| error("oidc_client_id", "is required when oidc_issuer is set"))?;
    let mut scopes: Vec<String> = scopes
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()])
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if scopes.iter().any(|s| s.contains(char::is_whitespace)) {
        return Err(error("oidc_scopes", "a scope contains a space; give a list"));
    }
    scopes.retain(|s| s != "openid");
    Ok(Some(PortalOidc {
        issuer,
        client_id: client_id.trim().to_owned(),
        client_secret: client_secret.filter(|s| !s.is_empty()),
        scopes,
        groups_claim: nonempty("oidc_groups_claim", groups_claim, DEFAULT_OIDC_GROUPS_CLAIM)?,
    }))
}

#[cfg(test)]
mod tests;
