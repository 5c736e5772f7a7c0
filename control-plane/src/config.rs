//! Control-plane configuration: a TOML file whose every key can be
//! overridden by a `PORTCULLIS_<KEY>` environment variable (upper case), read
//! in two stages — raw values with defaults, then a validated [`Config`].
//! The environment is read through a closure so tests never touch the
//! process environment.

use std::net::SocketAddr;

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

/// Every key of the file, with its documentation (kept in sync with
/// [`RawConfig`] by a test, and printed by `--help-config`).
pub const KEYS: &[(&str, &str)] = &[
    ("listen", "address of the admin API, portal, /healthz, /readyz and /metrics (default 127.0.0.1:7400)"),
    ("edge_listen", "address of the edge channel: snapshot stream, reports, session creation (default 127.0.0.1:7401)"),
    ("database_url", "sqlite://PATH (default sqlite://data/portcullis.db) or postgres://USER@HOST/DB"),
    ("issuer", "the `iss` of session tokens; also the public URL of this control plane (default http://<listen>)"),
    ("edge_secret", "enrollment secret edges present on the edge channel; required, at least 32 characters"),
    ("bootstrap_token", "admin token to create on first start instead of printing a new one"),
    ("receipt_wait_ms", "how long ?wait=true waits for every edge to apply a change (default 5000)"),
    ("change_log_retention", "change-log rows kept for edges to resume from (default 100000)"),
    ("max_body_bytes", "largest accepted request body in bytes (default 1048576)"),
];

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
    pub receipt_wait_ms: Option<u64>,
    /// See [`KEYS`].
    pub change_log_retention: Option<u64>,
    /// See [`KEYS`].
    pub max_body_bytes: Option<usize>,
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
    /// Edge enrollment secret.
    pub edge_secret: String,
    /// Admin token to create on first start.
    pub bootstrap_token: Option<String>,
    /// Bound on receipt waits.
    pub receipt_wait_ms: u64,
    /// Change-log rows kept.
    pub change_log_retention: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
}

pub use portcullis_settings::ConfigError;

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(key, message)
}

impl Config {
    /// Reads `file_text` (TOML, may be empty) and applies overrides from
    /// `env` (called with names such as `PORTCULLIS_LISTEN`).
    pub fn load(file_text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::validate(portcullis_settings::load(file_text, KEYS, env)?)
    }

    fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
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
        let edge_secret = raw.edge_secret.ok_or_else(|| {
            error("edge_secret", "is required: edges present it to connect (set PORTCULLIS_EDGE_SECRET or edge_secret)")
        })?;
        if edge_secret.len() < 32 {
            return Err(error("edge_secret", "must be at least 32 characters"));
        }
        if raw.bootstrap_token.as_ref().is_some_and(|t| t.len() < 32) {
            return Err(error("bootstrap_token", "must be at least 32 characters"));
        }
        let receipt_wait_ms = raw.receipt_wait_ms.unwrap_or(DEFAULT_RECEIPT_WAIT_MS);
        if receipt_wait_ms > 60_000 {
            return Err(error("receipt_wait_ms", "must be at most 60000"));
        }
        Ok(Self {
            issuer: raw.issuer.unwrap_or_else(|| format!("http://{listen}")),
            listen,
            edge_listen,
            database_url,
            edge_secret,
            bootstrap_token: raw.bootstrap_token,
            receipt_wait_ms,
            change_log_retention: raw.change_log_retention.unwrap_or(DEFAULT_CHANGE_LOG_RETENTION).max(1_000),
            max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::load(file, |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_and_environment_overrides() {
        let config = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_RECEIPT_WAIT_MS", "250")]).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.receipt_wait_ms, 250);
        assert_eq!(config.issuer, "http://127.0.0.1:7400");
        let config = load(&format!("edge_secret = \"{SECRET}\"\nlisten = \"127.0.0.1:9\""), &[]).unwrap();
        assert_eq!(config.listen.port(), 9);
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(load("", &[]).unwrap_err().key, "edge_secret");
        assert_eq!(load(&format!("edge_secret = \"{SECRET}\"\nlisten = \"nowhere\""), &[]).unwrap_err().key, "listen");
        let unknown = load(&format!("edge_secret = \"{SECRET}\"\nlisen = \"x\""), &[]).unwrap_err();
        assert_eq!(unknown.key, "lisen", "{unknown}");
        assert!(unknown.message.contains("expected one of listen, edge_listen"), "{unknown}");
        let wrong_type = load(&format!("edge_secret = \"{SECRET}\"\nreceipt_wait_ms = \"soon\""), &[]).unwrap_err();
        assert_eq!(wrong_type.key, "receipt_wait_ms", "{wrong_type}");
        let from_env =
            load(&format!("edge_secret = \"{SECRET}\""), &[("PORTCULLIS_MAX_BODY_BYTES", "-1")]).unwrap_err();
        assert_eq!(from_env.key, "max_body_bytes", "{from_env}");
    }

    #[test]
    fn every_raw_key_is_documented() {
        let documented: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        let text = format!("{:?}", RawConfig::default());
        for key in &documented {
            assert!(text.contains(&format!("{key}:")), "{key} is documented but not a field");
        }
        assert_eq!(text.matches(": None").count(), documented.len(), "a field is not documented in KEYS");
    }
}
