//! Edge configuration: a TOML file whose every key can be overridden by a
//! `PORTCULLIS_<KEY>` environment variable, validated into [`EdgeConfig`].
//! The environment is read through a closure so tests never touch it.

use std::net::SocketAddr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use portcullis_policy::stream_key::StreamPublicKey;
use serde::Deserialize;

use crate::channel_tls::ChannelTrust;
use crate::forwarded::TrustedProxies;
use crate::identity::{EdgeKey, Enrollment};
use crate::oidc::OidcSettings;

mod keys;
pub use keys::KEYS;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawEdgeConfig {
    pub listen: Option<String>,
    pub https_listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub metrics_listen: Option<String>,
    pub metrics_token: Option<String>,
    pub control_plane_url: Option<String>,
    pub control_plane_urls: Option<Vec<String>>,
    pub control_plane_ca: Option<String>,
    pub control_plane_pins: Option<Vec<String>>,
    pub allow_plain_http: Option<bool>,
    pub edge_secret: Option<String>,
    pub stream_public_key: Option<String>,
    pub join_token: Option<String>,
    pub credential_file: Option<String>,
    pub edge_id: Option<String>,
    pub edge_name: Option<String>,
    pub session_issuer: Option<String>,
    pub cookie_name: Option<String>,
    pub max_staleness_s: Option<u64>,
    pub stale_mode: Option<String>,
    pub token_cache_size: Option<usize>,
    pub threads: Option<usize>,
    pub cookie_secure: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
    pub assertion_key_file: Option<String>,
    pub assertion_issuer: Option<String>,
    pub oidc_issuer: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<String>,
    pub oidc_scopes: Option<Vec<String>>,
    pub oidc_groups_claim: Option<String>,
    pub oidc_post_logout_redirect_url: Option<String>,
    pub bearer_audiences: Option<Vec<String>>,
    pub bearer_algorithms: Option<Vec<String>>,
    pub bearer_token_types: Option<Vec<String>>,
    pub clock_skew_s: Option<u64>,
    pub device_logins_per_hour: Option<u32>,
    pub log_format: Option<String>,
}

pub use portcullis_policy::policy::StaleMode;

/// Default `device_logins_per_hour`.
pub const DEFAULT_DEVICE_LOGINS_PER_HOUR: u32 = 20;

/// Default `max_staleness_s`: five missed heartbeats.
pub const DEFAULT_MAX_STALENESS_S: u64 = 5;

/// Validated edge configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Plain-HTTP listener.
    pub listen: SocketAddr,
    /// HTTPS listener with certificate and key paths.
    pub https: Option<(SocketAddr, String, String)>,
    /// Metrics listener.
    pub metrics_listen: SocketAddr,
    /// Bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Edge channel URLs, one per control-plane replica (never empty).
    pub control_plane_urls: Vec<String>,
    /// What an `https://` control plane must present (`control_plane_ca`,
    /// `control_plane_pins`; the CA file is read at load).
    pub control_plane_trust: ChannelTrust,
    /// How this edge enrolls: join token, credential file, bootstrap secret.
    pub enrollment: Enrollment,
    /// The pinned stream-signing key (`None`: pinned on first contact).
    pub stream_public_key: Option<StreamPublicKey>,
    /// Edge id.
    pub edge_id: String,
    /// Display name.
    pub edge_name: String,
    /// Expected `iss` of session tokens.
    pub session_issuer: String,
    /// Session cookie name.
    pub cookie_name: String,
    /// Staleness bound.
    pub max_staleness: Duration,
    /// Behaviour once stale, for routes without their own `stale_mode`.
    pub stale_mode: StaleMode,
    /// Verified-token cache size.
    pub token_cache_size: usize,
    /// Proxy worker threads.
    pub threads: usize,
    /// `Secure` on cookies.
    pub cookie_secure: bool,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Identity-assertion key (PEM text, read at load).
    pub assertion_key_pem: Option<String>,
    /// `iss` of identity assertions.
    pub assertion_issuer: String,
    /// The OpenID provider, if configured.
    pub oidc: Option<OidcSettings>,
    /// Tolerated clock difference for token times, seconds.
    pub clock_skew_s: u64,
    /// Device logins one client address may start per hour.
    pub device_logins_per_hour: u32,
    /// How the log is written.
    pub log_format: portcullis_settings::LogFormat,
}

pub use portcullis_settings::ConfigError;

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(key, message)
}

fn address(key: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    text.parse().map_err(|_| error(key, format!("expected an address such as 127.0.0.1:8080, found `{text}`")))
}

impl EdgeConfig {
    /// Reads `file_text` (TOML) with overrides from `env` (`PORTCULLIS_<KEY>`).
    pub fn load(file_text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::validate(portcullis_settings::load(file_text, KEYS, env)?)
    }

    fn validate(raw: RawEdgeConfig) -> Result<Self, ConfigError> {
        if raw.metrics_token.as_ref().is_some_and(|t| t.trim().len() < 32) {
            return Err(error("metrics_token", "must be at least 32 characters"));
        }
        let enrollment = enrollment(raw.join_token, raw.credential_file, raw.edge_secret)?;
        let edge_id = raw.edge_id.unwrap_or_else(|| "edge-1".into());
        if !portcullis_policy::edge_channel::valid_edge_id(&edge_id) {
            return Err(error("edge_id", "use 1 to 64 letters, digits, '-', '_' or '.'"));
        }
        let https = match (raw.https_listen, raw.tls_cert, raw.tls_key) {
            (None, None, None) => None,
            (Some(addr), Some(cert), Some(key)) => Some((address("https_listen", Some(addr), "")?, cert, key)),
            _ => return Err(error("https_listen", "https_listen, tls_cert and tls_key go together")),
        };
        let stale_mode = match raw.stale_mode.as_deref().unwrap_or("keep") {
            "keep" => StaleMode::Keep,
            "deny" => StaleMode::Deny,
            other => return Err(error("stale_mode", format!("expected keep or deny, found `{other}`"))),
        };
        let (urls_key, control_plane_urls) = control_plane_urls(raw.control_plane_url, raw.control_plane_urls)?;
        // An empty value (an unset variable in a template) is no key.
        let pinned = raw.stream_public_key.as_deref().filter(|k| !k.trim().is_empty());
        let plain_http = crate::channel_tls::refuse_plain_http(urls_key, &control_plane_urls);
        if raw.allow_plain_http != Some(true) {
            plain_http?;
        } else if plain_http.is_err() && pinned.is_none() {
            // Trust on first use over plain HTTP would take the stream key
            // from whoever answers first: they could sign any policy.
            return Err(error(
                "stream_public_key",
                "is required when a control-plane URL is plain http:// to a host that is not loopback \
                 (allow_plain_http): pin the key `GET /api/v1/stream-key` shows, or use https://",
            ));
        }
        let pins = raw.control_plane_pins.unwrap_or_default();
        let control_plane_trust = ChannelTrust::load(raw.control_plane_ca.as_deref(), &pins)?;
        if control_plane_trust.is_private() && !control_plane_urls.iter().any(|u| u.starts_with("https://")) {
            let key = if pins.is_empty() { "control_plane_ca" } else { "control_plane_pins" };
            return Err(error(key, format!("applies to https:// only, and every {urls_key} is http://")));
        }
        let stream_public_key = pinned.map(stream_public_key).transpose()?;
        if raw.max_staleness_s == Some(0) {
            return Err(error("max_staleness_s", "must be at least 1 (heartbeats come every second)"));
        }
        let cookie_name = raw.cookie_name.unwrap_or_else(|| "portcullis_session".into());
        if cookie_name.is_empty() || !cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return Err(error("cookie_name", "use letters, digits, '_' or '-'"));
        }
        let trusted_proxies =
            TrustedProxies::parse(&raw.trusted_proxies.unwrap_or_default()).map_err(|e| error("trusted_proxies", e))?;
        let assertion_key_pem = match raw.assertion_key_file {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| error("assertion_key_file", format!("cannot read `{path}`: {e}")))?,
            ),
            None => None,
        };
        if let Some(pem) = &assertion_key_pem {
            crate::assertion::AssertionSigner::new(Some(pem), "check")
                .map_err(|e| error("assertion_key_file", e.to_string()))?;
        }
        let oidc = oidc_settings(OidcKeys {
            issuer: raw.oidc_issuer,
            client_id: raw.oidc_client_id,
            client_secret: raw.oidc_client_secret,
            scopes: raw.oidc_scopes,
            groups_claim: raw.oidc_groups_claim,
            post_logout_redirect_url: raw.oidc_post_logout_redirect_url,
            bearer_audiences: raw.bearer_audiences,
            bearer_algorithms: raw.bearer_algorithms,
            bearer_token_types: raw.bearer_token_types,
            clock_skew_s: raw.clock_skew_s.unwrap_or(30).min(300),
        })?;
        Ok(Self {
            log_format: portcullis_settings::log_format(raw.log_format.as_deref())?,
            cookie_secure: raw.cookie_secure.unwrap_or(true),
            trusted_proxies,
            assertion_key_pem,
            assertion_issuer: raw.assertion_issuer.unwrap_or_else(|| "portcullis".into()),
            oidc,
            clock_skew_s: raw.clock_skew_s.unwrap_or(30).min(300),
            device_logins_per_hour: match raw.device_logins_per_hour.unwrap_or(DEFAULT_DEVICE_LOGINS_PER_HOUR) {
                0 => return Err(error("device_logins_per_hour", "must be at least 1")),
                n => n,
            },
            listen: address("listen", raw.listen, "127.0.0.1:8080")?,
            https,
            metrics_listen: address("metrics_listen", raw.metrics_listen, "127.0.0.1:9090")?,
            metrics_token: raw.metrics_token.map(|t| t.trim().to_owned()),
            control_plane_urls,
            control_plane_trust,
            enrollment,
            stream_public_key,
            edge_name: raw.edge_name.unwrap_or_else(|| edge_id.clone()),
            edge_id,
            session_issuer: raw.session_issuer.unwrap_or_else(|| "http://127.0.0.1:7400".into()),
            cookie_name,
            max_staleness: Duration::from_secs(raw.max_staleness_s.unwrap_or(DEFAULT_MAX_STALENESS_S)),
            stale_mode,
            token_cache_size: raw.token_cache_size.unwrap_or(100_000),
            threads: raw.threads.unwrap_or(2).clamp(1, 64),
        })
    }
}

/// How the edge enrolls: a key already in `credential_file`, else a join
/// token (which works once, so the key must be kept), else the bootstrap
/// secret.
fn enrollment(
    join_token: Option<String>,
    credential_file: Option<String>,
    secret: Option<String>,
) -> Result<Enrollment, ConfigError> {
    if secret.as_ref().is_some_and(|s| s.len() < 32) {
        return Err(error("edge_secret", "must be at least 32 characters"));
    }
    let join_token = join_token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let path = credential_file.filter(|p| !p.trim().is_empty()).map(std::path::PathBuf::from);
    let key = match &path {
        Some(path) if path.exists() => Some(EdgeKey::read(path).map_err(|e| error("credential_file", e.to_string()))?),
        _ => None,
    };
    if join_token.is_some() && path.is_none() {
        return Err(error(
            "credential_file",
            "is required with join_token: a join token works once, so the key it enrolls must be kept",
        ));
    }
    if key.is_none() && join_token.is_none() && secret.is_none() {
        return Err(error(
            "join_token",
            "is required: create one with `portcullis edges join-token` and set join_token and credential_file \
             (PORTCULLIS_JOIN_TOKEN, PORTCULLIS_CREDENTIAL_FILE); edge_secret is for the quickstart only",
        ));
    }
    Ok(Enrollment { join_token, bootstrap_secret: secret, credential_file: path, key })
}

/// The replicas' edge channels: `control_plane_url` or `control_plane_urls`,
/// and which of the two keys named them.
fn control_plane_urls(
    one: Option<String>,
    many: Option<Vec<String>>,
) -> Result<(&'static str, Vec<String>), ConfigError> {
    let (key, urls) = match (one, many) {
        (Some(_), Some(_)) => {
            return Err(error("control_plane_urls", "set control_plane_url or control_plane_urls, not both"))
        }
        (Some(url), None) => ("control_plane_url", vec![url]),
        (None, Some(urls)) if urls.is_empty() => return Err(error("control_plane_urls", "lists no URL")),
        (None, Some(urls)) => ("control_plane_urls", urls),
        (None, None) => ("control_plane_url", vec!["http://127.0.0.1:7401".to_owned()]),
    };
    for (i, url) in urls.iter().enumerate() {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(error(key, format!("expected an http:// or https:// URL, found `{url}`")));
        }
        if urls[..i].contains(url) {
            return Err(error(key, format!("`{url}` is listed twice")));
        }
    }
    Ok((key, urls))
}

/// `stream_public_key`: the key itself, or the path of a file holding it.
fn stream_public_key(value: &str) -> Result<StreamPublicKey, ConfigError> {
    let key = "stream_public_key";
    let text = value.trim();
    let text = if text.starts_with("ed25519:") || text.starts_with("-----BEGIN") {
        text.to_owned()
    } else {
        std::fs::read_to_string(text).map_err(|e| error(key, format!("cannot read `{text}`: {e}")))?
    };
    text.parse().map_err(|e| error(key, format!("{e}")))
}

struct OidcKeys {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    groups_claim: Option<String>,
    post_logout_redirect_url: Option<String>,
    bearer_audiences: Option<Vec<String>>,
    bearer_algorithms: Option<Vec<String>>,
    bearer_token_types: Option<Vec<String>>,
    clock_skew_s: u64,
}

/// Asymmetric algorithms only: `none` and HS* are never accepted from an IdP.
const ALLOWED_ALGORITHMS: [&str; 10] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "ES512"];

fn oidc_settings(keys: OidcKeys) -> Result<Option<OidcSettings>, ConfigError> {
    let Some(issuer) = keys.issuer else {
        if keys.client_id.is_some() {
            return Err(error("oidc_issuer", "is required when oidc_client_id is set"));
        }
        return Ok(None);
    };
    if !issuer.starts_with("https://") && !issuer.starts_with("http://") {
        return Err(error("oidc_issuer", "expected an https:// URL"));
    }
    let client_id = keys.client_id.ok_or_else(|| error("oidc_client_id", "is required with oidc_issuer"))?;
    let mut scopes = keys.scopes.unwrap_or_else(|| vec!["email".into(), "profile".into()]);
    scopes.retain(|s| s != "openid"); // openidconnect always adds it
    let algorithms = keys
        .bearer_algorithms
        .unwrap_or_else(|| vec!["RS256".into(), "ES256".into(), "PS256".into(), "EdDSA".into()])
        .iter()
        .map(|name| {
            ALLOWED_ALGORITHMS
                .iter()
                .find(|a| **a == name.as_str())
                .and_then(|a| a.parse::<Algorithm>().ok())
                .ok_or_else(|| {
                    error(
                        "bearer_algorithms",
                        format!("`{name}` is not an accepted asymmetric algorithm (RS*, PS*, ES256, ES384, EdDSA)"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if algorithms.is_empty() {
        return Err(error("bearer_algorithms", "name at least one algorithm"));
    }
    Ok(Some(OidcSettings {
        issuer: issuer.trim_end_matches('/').to_owned(),
        bearer_audiences_explicit: keys.bearer_audiences.is_some(),
        bearer_audiences: keys.bearer_audiences.unwrap_or_else(|| vec![client_id.clone()]),
        client_id,
        client_secret: keys.client_secret,
        scopes,
        groups_claim: keys.groups_claim.unwrap_or_else(|| "groups".into()),
        algorithms,
        bearer_token_types: keys
            .bearer_token_types
            .unwrap_or_else(|| vec!["at+jwt".into(), "application/at+jwt".into()]),
        post_logout_redirect_url: keys.post_logout_redirect_url,
        clock_skew_s: keys.clock_skew_s,
    }))
}

#[cfg(test)]
mod tests;
