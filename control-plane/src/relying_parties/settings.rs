//! `[[relying_parties]]`: which services a termination signs the user out
//! of, with which credentials. Credentials are named, never written in the
//! file: `secret_file` (read at start; should be mode 0600) or `secret_env`
//! (the name of an environment variable). They are never stored in the
//! database.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_settings::ConfigError;
use serde::Deserialize;

pub use crate::termination::Action;

/// Default concurrent deliveries per relying party and replica.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Default time after which an undelivered job is given up (dead letter), seconds.
pub const DEFAULT_DEADLINE_S: u64 = 24 * 3600;
/// Default timeout of one request to a relying party, milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// One `[[relying_parties]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelyingParty {
    /// Unique name, shown in receipts, the audit log and metrics.
    pub name: String,
    /// `webhook`, `okta`, `entra`, `google`, `keycloak`, `auth0` or `slack`.
    pub kind: String,
    /// Actions that reach it (default: `terminate_user`).
    pub on: Option<Vec<Action>>,
    /// Base URL (webhook: the URL posted to; okta: the org URL; keycloak
    /// and auth0: the server / tenant domain URL; entra, google, slack: the
    /// API base, defaulting to the public service).
    pub url: Option<String>,
    /// File holding the credential.
    pub secret_file: Option<String>,
    /// Environment variable holding the credential.
    pub secret_env: Option<String>,
    /// OAuth client id (entra, keycloak, auth0).
    pub client_id: Option<String>,
    /// Entra tenant id or domain.
    pub tenant: Option<String>,
    /// Keycloak realm.
    pub realm: Option<String>,
    /// Token endpoint override (entra, google, auth0).
    pub token_url: Option<String>,
    /// Google: the Workspace admin the service account acts as.
    pub admin_email: Option<String>,
    /// Okta: also revoke the user's OAuth tokens (`oauthTokens=true`).
    pub revoke_oauth_tokens: Option<bool>,
    /// Concurrent deliveries per replica (default 4).
    pub concurrency: Option<u32>,
    /// Seconds after which an undelivered job is dead (default 86400).
    pub deadline_s: Option<u64>,
    /// Timeout of one request, milliseconds (default 10000).
    pub timeout_ms: Option<u64>,
}

/// Where a credential comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file, read when the control plane starts.
    File(PathBuf),
    /// The value of an environment variable (named for errors).
    Env {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
    },
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "File({})", path.display()),
            Self::Env { name, .. } => write!(f, "Env({name})"),
        }
    }
}

/// A credential that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("relying party `{name}`: {message}")]
pub struct SecretError {
    /// The relying party.
    pub name: String,
    /// What is wrong (never the secret).
    pub message: String,
}

impl SecretSource {
    /// The credential, trimmed; refuses an empty one.
    pub fn read_for(&self, name: &str) -> Result<String, SecretError> {
        let error = |message: String| SecretError { name: name.to_owned(), message };
        let text = match self {
            Self::File(path) => {
                std::fs::read_to_string(path).map_err(|e| error(format!("secret_file {}: {e}", path.display())))?
            }
            Self::Env { value, .. } => value.clone(),
        };
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Err(error(format!("{self:?} is empty")));
        }
        Ok(text)
    }
}

/// A relying party's kind and what that kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorKind {
    /// A JSON POST signed with HMAC-SHA256.
    Webhook {
        /// Where.
        url: String,
        /// The HMAC key.
        secret: SecretSource,
    },
    /// Okta: `DELETE /api/v1/users/{id}/sessions` with an API token (`SSWS`).
    Okta {
        /// The org URL.
        url: String,
        /// The API token.
        secret: SecretSource,
        /// Also revoke OAuth tokens.
        revoke_oauth_tokens: bool,
    },
    /// Microsoft Entra ID: Graph `revokeSignInSessions`, client credentials.
    Entra {
        /// Graph base URL (default `https://graph.microsoft.com/v1.0`).
        url: String,
        /// Token endpoint (default the tenant's v2.0 endpoint).
        token_url: String,
        /// Application (client) id.
        client_id: String,
        /// Client secret.
        secret: SecretSource,
    },
    /// Google Workspace: Admin SDK `users.signOut`, service-account JWT.
    Google {
        /// Admin SDK base URL (default `https://admin.googleapis.com`).
        url: String,
        /// Token endpoint (default the key file's `token_uri`).
        token_url: Option<String>,
        /// The service account's JSON key.
        secret: SecretSource,
        /// The admin it acts as (domain-wide delegation).
        admin_email: String,
    },
    /// Keycloak: admin REST `POST /admin/realms/{realm}/users/{id}/logout`.
    Keycloak {
        /// Server URL.
        url: String,
        /// Realm.
        realm: String,
        /// Service-account client id.
        client_id: String,
        /// Its secret.
        secret: SecretSource,
    },
    /// Auth0: Management API `DELETE /api/v2/users/{id}/sessions`.
    Auth0 {
        /// Tenant domain URL.
        url: String,
        /// Token endpoint (default `<url>/oauth/token`).
        token_url: String,
        /// Machine-to-machine client id.
        client_id: String,
        /// Its secret.
        secret: SecretSource,
    },
    /// Slack Enterprise Grid: `admin.users.session.reset`.
    Slack {
        /// Web API base (default `https://slack.com/api`).
        url: String,
        /// The org admin's user token.
        secret: SecretSource,
    },
}

/// A validated relying party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingPartySettings {
    /// Unique name.
    pub name: String,
    /// Kind and its settings.
    pub kind: ConnectorKind,
    /// Actions that reach it.
    pub on: Vec<Action>,
    /// Concurrent deliveries per replica.
    pub concurrency: u32,
    /// Dead-letter deadline.
    pub deadline: Duration,
    /// Request timeout.
    pub timeout: Duration,
}

/// Validates `raw` (`allow_plain_http`: accept `http://` to hosts that are
/// not loopback); `env` reads `secret_env` variables.
pub fn validate(
    raw: Vec<RawRelyingParty>,
    allow_plain_http: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<RelyingPartySettings>, ConfigError> {
    let mut all: Vec<RelyingPartySettings> = Vec::with_capacity(raw.len());
    for entry in raw {
        let name = entry.name.trim().to_owned();
        let fail = |message: String| ConfigError::new("relying_parties", format!("`{name}`: {message}"));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError::new(
                "relying_parties",
                format!("name `{}` must be letters, digits, `-` or `_`", entry.name),
            ));
        }
        if all.iter().any(|rp| rp.name == name) {
            return Err(fail("the name is used twice".into()));
        }
        let secret = match (&entry.secret_file, &entry.secret_env) {
            (Some(_), Some(_)) => return Err(fail("set secret_file or secret_env, not both".into())),
            (Some(file), None) => SecretSource::File(file.into()),
            (None, Some(var)) => match env(var) {
                Some(value) if !value.trim().is_empty() => SecretSource::Env { name: var.clone(), value },
                _ => return Err(fail(format!("secret_env names `{var}`, which is not set"))),
            },
            (None, None) => return Err(fail("needs its credential: secret_file or secret_env".into())),
        };
        let url = |default: Option<&str>| -> Result<String, ConfigError> {
            let text = match (entry.url.as_deref(), default) {
                (Some(url), _) => url,
                (None, Some(default)) => default,
                (None, None) => return Err(fail(format!("kind `{}` needs `url`", entry.kind))),
            };
            checked_url(text, allow_plain_http).map_err(fail)
        };
        let required = |key: &str, value: &Option<String>| -> Result<String, ConfigError> {
            match value.as_deref().map(str::trim) {
                Some(v) if !v.is_empty() => Ok(v.to_owned()),
                _ => Err(fail(format!("kind `{}` needs `{key}`", entry.kind))),
            }
        };
        let token_url = |default: String| -> Result<String, ConfigError> {
            checked_url(entry.token_url.as_deref().unwrap_or(&default), allow_plain_http).map_err(fail)
        };
        let kind = match entry.kind.as_str() {
            "webhook" => ConnectorKind::Webhook { url: url(None)?, secret },
            "okta" => ConnectorKind::Okta {
                url: url(None)?,
                secret,
                revoke_oauth_tokens: entry.revoke_oauth_tokens.unwrap_or(false),
            },
            "entra" => {
                let tenant = required("tenant", &entry.tenant)?;
                ConnectorKind::Entra {
                    url: url(Some("https://graph.microsoft.com/v1.0"))?,
                    token_url: token_url(format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"))?,
                    client_id: required("client_id", &entry.client_id)?,
                    secret,
                }
            }
            "google" => ConnectorKind::Google {
                url: url(Some("https://admin.googleapis.com"))?,
                token_url: entry
                    .token_url
                    .as_deref()
                    .map(|t| checked_url(t, allow_plain_http).map_err(fail))
                    .transpose()?,
                secret,
                admin_email: required("admin_email", &entry.admin_email)?,
            },
            "keycloak" => ConnectorKind::Keycloak {
                url: url(None)?,
                realm: required("realm", &entry.realm)?,
                client_id: required("client_id", &entry.client_id)?,
                secret,
            },
            "auth0" => {
                let url = url(None)?;
                ConnectorKind::Auth0 {
                    token_url: token_url(format!("{url}/oauth/token"))?,
                    url,
                    client_id: required("client_id", &entry.client_id)?,
                    secret,
                }
            }
            "slack" => ConnectorKind::Slack { url: url(Some("https://slack.com/api"))?, secret },
            other => {
                return Err(fail(format!(
                    "unknown kind `{other}`; expected webhook, okta, entra, google, keycloak, auth0 or slack"
                )))
            }
        };
        let mut on = entry.on.unwrap_or_else(|| vec![Action::TerminateUser]);
        on.dedup();
        if on.is_empty() {
            return Err(fail("`on` names no action".into()));
        }
        let concurrency = entry.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            return Err(fail("concurrency must be between 1 and 64".into()));
        }
        let deadline_s = entry.deadline_s.unwrap_or(DEFAULT_DEADLINE_S);
        if !(10..=30 * 86_400).contains(&deadline_s) {
            return Err(fail("deadline_s must be between 10 and 2592000 (30 days)".into()));
        }
        let timeout_ms = entry.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(100..=60_000).contains(&timeout_ms) {
            return Err(fail("timeout_ms must be between 100 and 60000".into()));
        }
        all.push(RelyingPartySettings {
            name,
            kind,
            on,
            concurrency,
            deadline: Duration::from_secs(deadline_s),
            timeout: Duration::from_millis(timeout_ms),
        });
    }
    Ok(all)
}

/// An `https://` URL (or `http://` to loopback, or anywhere with
/// `allow_plain_http`: credentials travel on it), without a trailing slash.
pub fn checked_url(text: &str, allow_plain_http: bool) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let parsed = url::Url::parse(url).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(url.to_owned()),
        "http" if allow_plain_http || portcullis_settings::is_loopback_url(url) => Ok(url.to_owned()),
        "http" => Err(format!(
            "`{url}` is plain HTTP to a host that is not loopback, and its credentials would travel unprotected; \
             use https:// (or allow_plain_http = true)"
        )),
        other => Err(format!("`{text}`: expected an https:// URL, found scheme `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<RelyingPartySettings>, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            relying_parties: Vec<RawRelyingParty>,
        }
        let file: File = toml::from_str(toml_text).expect("test TOML");
        validate(file.relying_parties, false, env)
    }

    const NO_ENV: &dyn Fn(&str) -> Option<String> = &|_| None;

    #[test]
    fn a_webhook_with_its_defaults() {
        let rps = parse(
            "[[relying_parties]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://hooks.example/x/\"\nsecret_file = \"/run/hook\"\n",
            NO_ENV,
        )
        .unwrap();
        assert_eq!(rps[0].on, vec![Action::TerminateUser]);
        assert_eq!(rps[0].concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(
            rps[0].kind,
            ConnectorKind::Webhook {
                url: "https://hooks.example/x".into(),
                secret: SecretSource::File("/run/hook".into())
            }
        );
    }

    #[test]
    fn secrets_are_named_never_written_and_never_printed() {
        let env = |name: &str| (name == "OKTA_TOKEN").then(|| "00abc-very-secret".to_owned());
        let rps = parse(
            "[[relying_parties]]\nname = \"okta\"\nkind = \"okta\"\nurl = \"https://acme.okta.com\"\nsecret_env = \"OKTA_TOKEN\"\n",
            &env,
        )
        .unwrap();
        assert!(!format!("{rps:?}").contains("very-secret"), "{rps:?}");
        let written =
            "[[relying_parties]]\nname = \"okta\"\nkind = \"okta\"\nurl = \"https://acme.okta.com\"\nsecret = \"x\"\n";
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            relying_parties: Vec<RawRelyingParty>,
        }
        assert!(toml::from_str::<File>(written).is_err(), "a secret written in the file must be refused");
        let missing = parse(
            "[[relying_parties]]\nname = \"okta\"\nkind = \"okta\"\nurl = \"https://acme.okta.com\"\nsecret_env = \"NOPE\"\n",
            NO_ENV,
        )
        .unwrap_err();
        assert!(missing.message.contains("`NOPE`, which is not set"), "{missing}");
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("name = \"a\"\nkind = \"okta\"\nsecret_file = \"f\"", "needs `url`"),
            ("name = \"a\"\nkind = \"entra\"\nsecret_file = \"f\"\nclient_id = \"c\"", "needs `tenant`"),
            ("name = \"a\"\nkind = \"salesforce\"\nsecret_file = \"f\"", "unknown kind `salesforce`"),
            ("name = \"a\"\nkind = \"webhook\"\nurl = \"http://hooks.example\"\nsecret_file = \"f\"", "plain HTTP"),
            ("name = \"a b\"\nkind = \"webhook\"\nurl = \"https://h\"\nsecret_file = \"f\"", "letters, digits"),
            ("name = \"a\"\nkind = \"webhook\"\nurl = \"https://h\"", "secret_file or secret_env"),
            (
                "name = \"a\"\nkind = \"webhook\"\nurl = \"https://h\"\nsecret_file = \"f\"\nconcurrency = 0",
                "concurrency",
            ),
        ] {
            let error = parse(&format!("[[relying_parties]]\n{text}\n"), NO_ENV).unwrap_err();
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
        let twice = "[[relying_parties]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://h\"\nsecret_file = \"f\"\n";
        let error = parse(&format!("{twice}{twice}"), NO_ENV).unwrap_err();
        assert!(error.to_string().contains("used twice"), "{error}");
        let loopback = "[[relying_parties]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nsecret_file = \"f\"\n";
        assert!(parse(loopback, NO_ENV).is_ok());
    }
}
