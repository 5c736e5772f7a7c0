//! `[[siem_sinks]]`: where security events go. Credentials are named, never
//! written in the file (`token_file` / `token_env`).

use portcullis_settings::ConfigError;
use serde::Deserialize;

use crate::store::SinkStart;

/// Default events per batch.
pub const DEFAULT_BATCH: u32 = 500;

/// One `[[siem_sinks]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// Unique name (letters, digits, `-`, `_`), in metrics and logs; the
    /// cursor is kept under it (renaming a sink starts it over).
    pub name: String,
    /// `nats`, `webhook`, `syslog`, `splunk` or `elastic`.
    pub kind: String,
    /// NATS: `nats://host:port`; webhook: the `https://` URL posted to;
    /// syslog: `tcp://host:port` or `tls://host:port`.
    pub url: String,
    /// Syslog over TLS: the CA certificates (PEM) the server's certificate
    /// must chain to (default: the system bundle).
    pub ca_file: Option<String>,
    /// Syslog: the HOSTNAME field; Splunk: `host` (default: this machine's host name).
    pub hostname: Option<String>,
    /// Elastic: the index (default `portcullis-events`).
    pub index: Option<String>,
    /// SQS: the API endpoint (default: the queue URL's origin).
    pub endpoint: Option<String>,
    /// SQS: the region (default: from the queue URL's host).
    pub region: Option<String>,
    /// SQS: the access key id (its secret key in `token_file`/`token_env`).
    pub access_key_id: Option<String>,
    /// NATS: the JetStream stream (created if missing; default `PORTCULLIS`).
    pub stream: Option<String>,
    /// NATS: subjects are `<subject_prefix>.<class>` (default `portcullis`).
    pub subject_prefix: Option<String>,
    /// File holding the sink's credential (NATS: an auth token; webhook:
    /// the HMAC key, required).
    pub token_file: Option<String>,
    /// Environment variable holding it.
    pub token_env: Option<String>,
    /// Events per batch (default 500, at most 10000).
    pub batch: Option<u32>,
    /// `beginning` (default: every audit entry still kept) or `now`.
    pub start: Option<String>,
}

/// The system CA bundle on Debian and Ubuntu.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A sink's kind and settings.
#[derive(Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// JSON lines POSTed, HMAC-signed.
    Webhook {
        /// Where.
        url: String,
        /// The HMAC key.
        secret: String,
    },
    /// Amazon SQS.
    Sqs(super::sqs::SqsTarget),
    /// Splunk HTTP Event Collector.
    Splunk {
        /// The collector's base URL.
        url: String,
        /// The HEC token.
        token: String,
        /// `host` of the events.
        hostname: String,
    },
    /// Elasticsearch / OpenSearch bulk API.
    Elastic {
        /// The cluster URL.
        url: String,
        /// The index.
        index: String,
        /// `ApiKey <key>`, when a key is configured.
        authorization: Option<String>,
    },
    /// RFC 5424 over TCP or TLS.
    Syslog {
        /// `host:port`.
        address: String,
        /// TLS: the CA bundle and the name the certificate must carry.
        tls: Option<(String, String)>,
        /// The HOSTNAME field.
        hostname: String,
    },
    /// NATS JetStream.
    Nats {
        /// `host:port`.
        address: String,
        /// Stream name.
        stream: String,
        /// Subject prefix.
        subject_prefix: String,
        /// Auth token.
        token: Option<String>,
    },
}

impl std::fmt::Debug for SinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Webhook { url, .. } => f.debug_struct("Webhook").field("url", url).finish_non_exhaustive(),
            Self::Sqs(target) => f
                .debug_struct("Sqs")
                .field("queue_url", &target.queue_url)
                .field("region", &target.region)
                .field("access_key", &target.access_key)
                .finish_non_exhaustive(),
            Self::Splunk { url, hostname, .. } => {
                f.debug_struct("Splunk").field("url", url).field("hostname", hostname).finish_non_exhaustive()
            }
            Self::Elastic { url, index, .. } => {
                f.debug_struct("Elastic").field("url", url).field("index", index).finish_non_exhaustive()
            }
            Self::Syslog { address, tls, hostname } => f
                .debug_struct("Syslog")
                .field("address", address)
                .field("tls", tls)
                .field("hostname", hostname)
                .finish(),
            Self::Nats { address, stream, subject_prefix, token } => f
                .debug_struct("Nats")
                .field("address", address)
                .field("stream", stream)
                .field("subject_prefix", subject_prefix)
                .field("token", &token.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// A validated sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// Unique name.
    pub name: String,
    /// Kind and settings.
    pub kind: SinkKind,
    /// Events per batch.
    pub batch: u32,
    /// Where a new sink starts.
    pub start: SinkStart,
}

/// This machine's host name, for syslog's HOSTNAME field.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portcullis".into())
}

fn token_safe(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Validates `raw`; `env` reads `token_env`.
pub fn validate(raw: Vec<RawSink>, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<SinkSettings>, ConfigError> {
    let mut all: Vec<SinkSettings> = Vec::with_capacity(raw.len());
    for entry in raw {
        let name = entry.name.trim().to_owned();
        let fail = |message: String| ConfigError::new("siem_sinks", format!("`{name}`: {message}"));
        if !token_safe(&name) || name.len() > 64 {
            return Err(ConfigError::new(
                "siem_sinks",
                format!("name `{}` must be 1 to 64 letters, digits, `-` or `_`", entry.name),
            ));
        }
        if all.iter().any(|s| s.name == name) {
            return Err(fail("the name is used twice".into()));
        }
        let token = match (&entry.token_file, &entry.token_env) {
            (Some(_), Some(_)) => return Err(fail("set token_file or token_env, not both".into())),
            (Some(file), None) => Some(
                std::fs::read_to_string(file).map_err(|e| fail(format!("token_file {file}: {e}")))?.trim().to_owned(),
            ),
            (None, Some(var)) => match env(var) {
                Some(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
                _ => return Err(fail(format!("token_env names `{var}`, which is not set"))),
            },
            (None, None) => None,
        };
        let kind = match entry.kind.as_str() {
            "nats" => {
                let address = entry.url.trim().trim_start_matches("nats://").trim_end_matches('/').to_owned();
                if address.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
                    return Err(fail(format!("url `{}`: expected nats://host:port", entry.url)));
                }
                let stream = entry.stream.unwrap_or_else(|| "PORTCULLIS".into());
                let subject_prefix = entry.subject_prefix.unwrap_or_else(|| "portcullis".into());
                if !token_safe(&stream) {
                    return Err(fail(format!("stream `{stream}`: letters, digits, `-` or `_`")));
                }
                if subject_prefix.is_empty() || !subject_prefix.split('.').all(token_safe) {
                    return Err(fail(format!("subject_prefix `{subject_prefix}`: dot-separated words")));
                }
                SinkKind::Nats { address, stream, subject_prefix, token }
            }
            "webhook" => SinkKind::Webhook {
                url: crate::relying_parties::settings::checked_url(&entry.url, false).map_err(fail)?,
                secret: token.ok_or_else(|| fail("a webhook needs its HMAC key: token_file or token_env".into()))?,
            },
            "sqs" => {
                let queue_url = crate::relying_parties::settings::checked_url(&entry.url, false).map_err(fail)?;
                let parsed = url::Url::parse(&queue_url).map_err(|e| fail(e.to_string()))?;
                let endpoint = match &entry.endpoint {
                    Some(endpoint) => crate::relying_parties::settings::checked_url(endpoint, false).map_err(fail)?,
                    None => parsed.origin().ascii_serialization(),
                };
                let from_host = parsed
                    .host_str()
                    .and_then(|h| h.strip_prefix("sqs."))
                    .and_then(|h| h.split('.').next())
                    .map(str::to_owned);
                let region = entry
                    .region
                    .clone()
                    .or(from_host)
                    .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                    .ok_or_else(|| fail("SQS needs `region` (it is not in the queue URL)".into()))?;
                let access_key = entry.access_key_id.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
                    fail("SQS needs `access_key_id` (its secret key in token_file or token_env)".into())
                })?;
                let secret_key =
                    token.ok_or_else(|| fail("SQS needs its secret access key: token_file or token_env".into()))?;
                SinkKind::Sqs(super::sqs::SqsTarget { queue_url, endpoint, region, access_key, secret_key })
            }
            "splunk" => SinkKind::Splunk {
                url: crate::relying_parties::settings::checked_url(&entry.url, false).map_err(fail)?,
                token: token.ok_or_else(|| fail("Splunk needs its HEC token: token_file or token_env".into()))?,
                hostname: entry.hostname.clone().unwrap_or_else(local_hostname),
            },
            "elastic" => {
                let index = entry.index.clone().unwrap_or_else(|| "portcullis-events".into());
                let valid = !index.is_empty()
                    && index.len() <= 255
                    && !index.starts_with(['-', '_', '+'])
                    && index
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
                if !valid {
                    return Err(fail(format!("index `{index}`: lowercase letters, digits, `-`, `_`, `.`")));
                }
                SinkKind::Elastic {
                    url: crate::relying_parties::settings::checked_url(&entry.url, false).map_err(fail)?,
                    index,
                    authorization: token.map(|key| format!("ApiKey {key}")),
                }
            }
            "syslog" => {
                let (tls, address) = match entry.url.trim().split_once("://") {
                    Some(("tcp", address)) => (false, address),
                    Some(("tls", address)) => (true, address),
                    _ => return Err(fail(format!("url `{}`: expected tcp://host:port or tls://host:port", entry.url))),
                };
                let address = address.trim_end_matches('/').to_owned();
                let Some((host, port)) =
                    address.rsplit_once(':').filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                else {
                    return Err(fail(format!("url `{}`: expected tcp://host:port or tls://host:port", entry.url)));
                };
                let _ = port;
                let tls = tls.then(|| {
                    (
                        entry.ca_file.clone().unwrap_or_else(|| SYSTEM_CA_BUNDLE.into()),
                        host.trim_matches(['[', ']']).to_owned(),
                    )
                });
                let hostname = entry.hostname.clone().unwrap_or_else(local_hostname);
                if hostname.is_empty() || hostname.len() > 255 || !hostname.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(fail(format!("hostname `{hostname}`: printable ASCII, no spaces")));
                }
                SinkKind::Syslog { address, tls, hostname }
            }
            other => {
                return Err(fail(format!(
                    "unknown kind `{other}`; expected nats, webhook, syslog, splunk, elastic or sqs"
                )))
            }
        };
        let batch = entry.batch.unwrap_or(DEFAULT_BATCH);
        if !(1..=10_000).contains(&batch) {
            return Err(fail("batch must be between 1 and 10000".into()));
        }
        let start = match entry.start.as_deref().unwrap_or("beginning") {
            "beginning" => SinkStart::Beginning,
            "now" => SinkStart::Now,
            other => return Err(fail(format!("start `{other}`: expected beginning or now"))),
        };
        all.push(SinkSettings { name, kind, batch, start });
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SinkSettings>, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            siem_sinks: Vec<RawSink>,
        }
        let file: File = toml::from_str(text).expect("test TOML");
        validate(file.siem_sinks, &|name| (name == "NATS_TOKEN").then(|| "s3cret-token".to_owned()))
    }

    #[test]
    fn a_nats_sink_with_defaults_and_mistakes_named() {
        let sinks = parse("[[siem_sinks]]\nname = \"soc\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\ntoken_env = \"NATS_TOKEN\"\n").unwrap();
        assert_eq!(sinks[0].batch, DEFAULT_BATCH);
        assert_eq!(sinks[0].start, SinkStart::Beginning);
        assert!(!format!("{sinks:?}").contains("s3cret"), "the token is never printed");
        for (text, expected) in [
            ("name = \"a\"\nkind = \"kafka\"\nurl = \"x:1\"", "unknown kind"),
            ("name = \"a\"\nkind = \"webhook\"\nurl = \"https://siem.example/in\"", "HMAC key"),
            (
                "name = \"a\"\nkind = \"webhook\"\nurl = \"http://siem.example/in\"\ntoken_env = \"NATS_TOKEN\"",
                "plain HTTP",
            ),
            ("name = \"a\"\nkind = \"syslog\"\nurl = \"udp://h:514\"", "tcp://host:port"),
            ("name = \"a\"\nkind = \"nats\"\nurl = \"nats://nowhere\"", "host:port"),
            ("name = \"a\"\nkind = \"nats\"\nurl = \"h:1\"\nsubject_prefix = \"a..b\"", "subject_prefix"),
            ("name = \"a\"\nkind = \"nats\"\nurl = \"h:1\"\nbatch = 0", "batch"),
            ("name = \"a\"\nkind = \"nats\"\nurl = \"h:1\"\nstart = \"yesterday\"", "start"),
            ("name = \"a\"\nkind = \"nats\"\nurl = \"h:1\"\ntoken_env = \"NOPE\"", "not set"),
        ] {
            let error = parse(&format!("[[siem_sinks]]\n{text}\n")).unwrap_err();
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
    }
}
