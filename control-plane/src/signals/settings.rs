//! `[[ssf_transmitters]]`: the Shared Signals transmitters whose events end
//! sessions here (an IdP such as Okta, Google Workspace or Keycloak, or any
//! security tool speaking OpenID SSF 1.0), and what each event does.
//! Bearer tokens are named, never written in the file (`push_token_file` /
//! `push_token_env`, `poll_token_file` / `poll_token_env`).

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_settings::ConfigError;
use serde::Deserialize;

use super::actions::{EventKind, Response};
use crate::relying_parties::settings::{checked_url, SecretSource};

/// Default tolerated age of a SET's `iat`, seconds (poll delivery may hand
/// over events queued while we were down).
pub const DEFAULT_MAX_AGE_S: u64 = 7 * 86_400;
/// Default tolerated clock difference for an `iat` in the future, seconds.
pub const DEFAULT_CLOCK_SKEW_S: u64 = 60;
/// Default pause between polls that returned nothing, milliseconds.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;
/// Default `maxEvents` asked for per poll.
pub const DEFAULT_MAX_EVENTS: u32 = 100;

/// One `[[ssf_transmitters]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransmitter {
    /// Unique name (letters, digits, `-`, `_`): the push URL is
    /// `/ssf/receiver/<name>`; shown in the audit log and metrics.
    pub name: String,
    /// The transmitter's issuer (`iss` of every SET).
    pub issuer: String,
    /// The `aud` its SETs must carry (default: this control plane's `public_url`).
    pub audience: Option<String>,
    /// Its JWKS; default: `jwks_uri` of its `/.well-known/ssf-configuration`.
    pub jwks_url: Option<String>,
    /// The issuer whose login sessions a session id (`sid`) names; default
    /// `issuer` (Okta: the authorization server's issuer if it differs).
    pub login_issuer: Option<String>,
    /// `push` (RFC 8935, the default) or `poll` (RFC 8936).
    pub delivery: Option<String>,
    /// Push: file holding the bearer token the transmitter presents.
    pub push_token_file: Option<String>,
    /// Push: environment variable holding it.
    pub push_token_env: Option<String>,
    /// Poll: the transmitter's poll endpoint; default: the stream's
    /// `delivery.endpoint_url` (with `manage_stream`).
    pub poll_url: Option<String>,
    /// File holding the bearer token we present to the transmitter (poll,
    /// stream management).
    pub poll_token_file: Option<String>,
    /// Environment variable holding it.
    pub poll_token_env: Option<String>,
    /// Create/read our stream at the transmitter and ask for verification
    /// at start (default false: the stream is set up at the transmitter).
    pub manage_stream: Option<bool>,
    /// Accept Okta Universal Logout (Global Token Revocation) calls signed by
    /// this issuer (default false).
    pub universal_logout: Option<bool>,
    /// Oldest `iat` accepted, seconds (default 604800).
    pub max_age_s: Option<u64>,
    /// Poll: pause after an empty poll, milliseconds (default 1000).
    pub poll_interval_ms: Option<u64>,
    /// Poll: `maxEvents` (default 100).
    pub max_events: Option<u32>,
    /// Event (short name, e.g. `session-revoked`) → response, overriding the defaults.
    pub actions: Option<BTreeMap<String, String>>,
}

/// How a transmitter hands over its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// It POSTs each SET to us, presenting this bearer token.
    Push {
        /// The token.
        token: SecretSource,
    },
    /// We poll it.
    Poll {
        /// The poll endpoint, if configured.
        url: Option<String>,
        /// Pause after an empty poll.
        interval: Duration,
        /// `maxEvents`.
        max_events: u32,
    },
}

/// A validated transmitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransmitterSettings {
    /// Unique name.
    pub name: String,
    /// `iss` of its SETs (no trailing slash).
    pub issuer: String,
    /// The `aud` expected.
    pub audience: String,
    /// Its JWKS, if configured (else discovered).
    pub jwks_url: Option<String>,
    /// Whose login sessions its session ids name.
    pub login_issuer: String,
    /// Push or poll.
    pub delivery: Delivery,
    /// Our bearer token at the transmitter (poll, stream management).
    pub client_token: Option<SecretSource>,
    /// Manage the stream at the transmitter.
    pub manage_stream: bool,
    /// Accept Universal Logout from it.
    pub universal_logout: bool,
    /// Oldest `iat` accepted.
    pub max_age: Duration,
    /// Response per event, after the overrides.
    pub responses: BTreeMap<EventKind, Response>,
}

impl TransmitterSettings {
    /// The response configured for `kind`.
    pub fn response(&self, kind: EventKind) -> Response {
        self.responses.get(&kind).copied().unwrap_or_else(|| kind.default_response())
    }
}

fn secret(
    fail: &dyn Fn(String) -> ConfigError,
    (file_key, file): (&str, &Option<String>),
    (env_key, var): (&str, &Option<String>),
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SecretSource>, ConfigError> {
    match (file, var) {
        (Some(_), Some(_)) => Err(fail(format!("set {file_key} or {env_key}, not both"))),
        (Some(file), None) => Ok(Some(SecretSource::File(file.into()))),
        (None, Some(var)) => match env(var) {
            Some(value) if !value.trim().is_empty() => Ok(Some(SecretSource::Env { name: var.clone(), value })),
            _ => Err(fail(format!("{env_key} names `{var}`, which is not set"))),
        },
        (None, None) => Ok(None),
    }
}

/// Validates `raw`; `public_url` is the default audience, `env` reads the
/// `*_env` variables.
pub fn validate(
    raw: Vec<RawTransmitter>,
    public_url: &str,
    allow_plain_http: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<TransmitterSettings>, ConfigError> {
    let mut all: Vec<TransmitterSettings> = Vec::with_capacity(raw.len());
    for entry in raw {
        let name = entry.name.trim().to_owned();
        let fail = |message: String| ConfigError::new("ssf_transmitters", format!("`{name}`: {message}"));
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                "ssf_transmitters",
                format!("name `{}` must be 1 to 64 letters, digits, `-` or `_`", entry.name),
            ));
        }
        if all.iter().any(|t| t.name == name) {
            return Err(fail("the name is used twice".into()));
        }
        let issuer = checked_url(&entry.issuer, allow_plain_http).map_err(fail)?;
        let url = |value: &Option<String>| value.as_deref().map(|u| checked_url(u, allow_plain_http).map_err(fail));
        let jwks_url = url(&entry.jwks_url).transpose()?;
        let push_token =
            secret(&fail, ("push_token_file", &entry.push_token_file), ("push_token_env", &entry.push_token_env), env)?;
        let client_token =
            secret(&fail, ("poll_token_file", &entry.poll_token_file), ("poll_token_env", &entry.poll_token_env), env)?;
        let manage_stream = entry.manage_stream == Some(true);
        let delivery = match entry.delivery.as_deref().unwrap_or("push") {
            "push" => Delivery::Push {
                token: push_token.ok_or_else(|| {
                    fail(
                        "push delivery needs the bearer token the transmitter presents: push_token_file or \
                          push_token_env"
                            .into(),
                    )
                })?,
            },
            "poll" => {
                if push_token.is_some() {
                    return Err(fail("push_token_* is for push delivery; this transmitter is polled".into()));
                }
                if client_token.is_none() {
                    return Err(fail("poll delivery needs our bearer token: poll_token_file or poll_token_env".into()));
                }
                let poll_url = url(&entry.poll_url).transpose()?;
                if poll_url.is_none() && !manage_stream {
                    return Err(fail(
                        "poll delivery needs poll_url (or manage_stream = true to read it from the stream)".into(),
                    ));
                }
                let interval_ms = entry.poll_interval_ms.unwrap_or(DEFAULT_POLL_INTERVAL_MS);
                if !(10..=600_000).contains(&interval_ms) {
                    return Err(fail("poll_interval_ms must be between 10 and 600000".into()));
                }
                let max_events = entry.max_events.unwrap_or(DEFAULT_MAX_EVENTS);
                if !(1..=1000).contains(&max_events) {
                    return Err(fail("max_events must be between 1 and 1000".into()));
                }
                Delivery::Poll { url: poll_url, interval: Duration::from_millis(interval_ms), max_events }
            }
            other => return Err(fail(format!("delivery `{other}`: expected push or poll"))),
        };
        if manage_stream && client_token.is_none() {
            return Err(fail(
                "manage_stream needs our bearer token at the transmitter: poll_token_file or poll_token_env".into(),
            ));
        }
        let max_age_s = entry.max_age_s.unwrap_or(DEFAULT_MAX_AGE_S);
        if !(60..=30 * 86_400).contains(&max_age_s) {
            return Err(fail("max_age_s must be between 60 and 2592000 (30 days)".into()));
        }
        let mut responses = BTreeMap::new();
        for (event, response) in entry.actions.unwrap_or_default() {
            let kind = EventKind::from_short_name(&event).ok_or_else(|| {
                fail(format!("actions: unknown event `{event}`; expected one of {}", EventKind::short_names()))
            })?;
            let response = Response::parse(&response).ok_or_else(|| {
                fail(format!("actions.{event}: unknown response `{response}`; expected one of {}", Response::NAMES))
            })?;
            responses.insert(kind, response);
        }
        all.push(TransmitterSettings {
            login_issuer: match entry.login_issuer.as_deref() {
                Some(login) => checked_url(login, true).map_err(fail)?,
                None => issuer.clone(),
            },
            audience: entry
                .audience
                .map_or_else(|| public_url.trim_end_matches('/').to_owned(), |a| a.trim().to_owned()),
            issuer,
            jwks_url,
            delivery,
            client_token,
            manage_stream,
            universal_logout: entry.universal_logout == Some(true),
            max_age: Duration::from_secs(max_age_s),
            responses,
            name,
        });
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ENV: &dyn Fn(&str) -> Option<String> = &|_| None;

    fn parse(text: &str) -> Result<Vec<TransmitterSettings>, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            ssf_transmitters: Vec<RawTransmitter>,
        }
        let file: File = toml::from_str(text).expect("test TOML");
        validate(file.ssf_transmitters, "https://pc.example/", false, NO_ENV)
    }

    #[test]
    fn a_push_transmitter_with_its_defaults() {
        let t = parse(
            "[[ssf_transmitters]]\nname = \"okta\"\nissuer = \"https://acme.okta.com/\"\npush_token_file = \"/run/t\"\n",
        )
        .unwrap();
        assert_eq!(t[0].issuer, "https://acme.okta.com");
        assert_eq!(t[0].audience, "https://pc.example");
        assert_eq!(t[0].login_issuer, "https://acme.okta.com");
        assert_eq!(t[0].response(EventKind::SessionRevoked), Response::TerminateSession);
        assert_eq!(t[0].response(EventKind::CredentialCompromise), Response::TerminateAndLock);
        assert!(matches!(t[0].delivery, Delivery::Push { .. }));
    }

    #[test]
    fn overrides_and_mistakes_are_named() {
        let t = parse(
            "[[ssf_transmitters]]\nname = \"k\"\nissuer = \"https://kc.example\"\npush_token_file = \"f\"\n\
             [ssf_transmitters.actions]\n\"session-revoked\" = \"terminate_user\"\n",
        )
        .unwrap();
        assert_eq!(t[0].response(EventKind::SessionRevoked), Response::TerminateUser);
        for (text, expected) in [
            ("name = \"a\"\nissuer = \"https://i\"", "push_token_file or push_token_env"),
            ("name = \"a\"\nissuer = \"http://idp.example\"\npush_token_file = \"f\"", "plain HTTP"),
            ("name = \"a b\"\nissuer = \"https://i\"\npush_token_file = \"f\"", "letters, digits"),
            ("name = \"a\"\nissuer = \"https://i\"\ndelivery = \"poll\"\npoll_token_file = \"f\"", "needs poll_url"),
            ("name = \"a\"\nissuer = \"https://i\"\ndelivery = \"poll\"\npoll_url = \"https://i/poll\"", "our bearer"),
            ("name = \"a\"\nissuer = \"https://i\"\ndelivery = \"carrier-pigeon\"", "expected push or poll"),
            (
                "name = \"a\"\nissuer = \"https://i\"\npush_token_file = \"f\"\n[ssf_transmitters.actions]\nbogus = \"lock\"",
                "unknown event `bogus`",
            ),
            (
                "name = \"a\"\nissuer = \"https://i\"\npush_token_file = \"f\"\n[ssf_transmitters.actions]\n\"session-revoked\" = \"nuke\"",
                "unknown response `nuke`",
            ),
        ] {
            let error = parse(&format!("[[ssf_transmitters]]\n{text}\n")).unwrap_err();
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
    }
}
