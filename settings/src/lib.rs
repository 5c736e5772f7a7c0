//! Configuration loading shared by the control plane and the edge: a TOML
//! file whose every key can be overridden by a `PORTCULLIS_<KEY>`
//! environment variable, deserialized into the caller's raw config type
//! (which denies unknown fields). Errors name the offending key.
//!
//! The environment is read through a closure, so tests fill it from a map
//! and never touch the process environment.

#![forbid(unsafe_code)]

use serde::de::DeserializeOwned;

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct ConfigError {
    /// The key, or `file` when the file itself is not valid TOML.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self { key: key.to_owned(), message: message.into() }
    }
}

fn convert<T: DeserializeOwned>(table: toml::Table) -> Result<T, toml::de::Error> {
    toml::Value::Table(table).try_into()
}

/// The TOML value for an environment override: an integer or boolean when
/// the key accepts one, otherwise the text.
fn env_value<T: DeserializeOwned>(key: &str, text: String) -> toml::Value {
    // The environment only holds text: try it as a number, a boolean, text,
    // a TOML value (for keys holding tables, e.g. `[{ issuer = "…" }]`),
    // then a comma-separated list, and keep the first the key accepts.
    let list = || toml::Value::Array(text.split(',').map(|item| toml::Value::String(item.trim().to_owned())).collect());
    let inline = || toml::from_str::<toml::Table>(&format!("value = {text}")).ok()?.remove("value");
    let candidates = [
        text.parse::<i64>().ok().map(toml::Value::Integer),
        text.parse::<bool>().ok().map(toml::Value::Boolean),
        Some(toml::Value::String(text.clone())),
        inline(),
        Some(list()),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|value| convert::<T>(toml::Table::from_iter([(key.to_owned(), value.clone())])).is_ok())
        .unwrap_or_else(|| toml::Value::String(text.clone()))
}

/// Reads `file_text` into `T`, applying `PORTCULLIS_<KEY>` overrides from
/// `env` for every documented key in `keys`.
pub fn load<T: DeserializeOwned>(
    file_text: &str,
    keys: &[(&str, &str)],
    env: impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let mut table: toml::Table = toml::from_str(file_text).map_err(|e| ConfigError::new("file", e.to_string()))?;
    let known: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    if let Some(unknown) = table.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ConfigError::new(unknown, format!("unknown key; expected one of {}", known.join(", "))));
    }
    for key in &known {
        if let Some(text) = env(&format!("PORTCULLIS_{}", key.to_ascii_uppercase())) {
            table.insert((*key).to_owned(), env_value::<T>(key, text));
        }
    }
    convert(table.clone()).map_err(|e| {
        // Converting the whole table does not say which key failed: find the
        // first whose value alone does not convert.
        let key = table.iter().find_map(|(key, value)| {
            convert::<T>(toml::Table::from_iter([(key.clone(), value.clone())])).is_err().then_some(key.as_str())
        });
        ConfigError::new(key.unwrap_or("file"), e.message().to_owned())
    })
}

/// How a server writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Reads the `log_format` key: `text` (default) or `json`.
pub fn log_format(value: Option<&str>) -> Result<LogFormat, ConfigError> {
    match value.map(str::trim) {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::new("log_format", format!("expected `text` or `json`, found `{other}`"))),
    }
}

/// True when `url`'s host is loopback (`127.0.0.0/8`, `[::1]`, `localhost`):
/// the one place plain HTTP is fine without `allow_plain_http`, for the
/// edge's control-plane URLs and the control plane's login IdPs alike.
pub fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url).ok().as_ref().and_then(url::Url::host) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;

    use super::*;

    #[test]
    fn log_formats() {
        assert_eq!(log_format(None), Ok(LogFormat::Text));
        assert_eq!(log_format(Some("json")), Ok(LogFormat::Json));
        let error = log_format(Some("xml")).unwrap_err();
        assert_eq!(error.to_string(), "configuration key `log_format`: expected `text` or `json`, found `xml`");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        name: Option<String>,
        port: Option<u16>,
        verbose: Option<bool>,
        hosts: Option<Vec<String>>,
        peers: Option<Vec<Peer>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Peer {
        url: String,
        weight: Option<u32>,
    }

    const KEYS: &[(&str, &str)] = &[
        ("name", "a name"),
        ("port", "a port"),
        ("verbose", "more output"),
        ("hosts", "a list"),
        ("peers", "a list of tables"),
    ];

    fn load_with(file: &str, env: &[(&str, &str)]) -> Result<Raw, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        load(file, KEYS, |k| env.get(k).cloned())
    }

    #[test]
    fn environment_overrides_take_the_key_type() {
        let raw = load_with("name = \"a\"", &[("PORTCULLIS_PORT", "8080"), ("PORTCULLIS_VERBOSE", "true")]).unwrap();
        assert_eq!((raw.name.as_deref(), raw.port, raw.verbose), (Some("a"), Some(8080), Some(true)));
        let raw = load_with("", &[("PORTCULLIS_NAME", "123")]).unwrap();
        assert_eq!(raw.name.as_deref(), Some("123"), "a numeric value for a text key stays text");
        let raw = load_with("", &[("PORTCULLIS_HOSTS", "10.0.0.0/8, 192.0.2.7")]).unwrap();
        assert_eq!(raw.hosts.unwrap(), ["10.0.0.0/8", "192.0.2.7"], "lists are comma-separated");
        let raw = load_with("", &[("PORTCULLIS_HOSTS", "127.0.0.1")]).unwrap();
        assert_eq!(raw.hosts.unwrap(), ["127.0.0.1"], "a one-item list");
    }

    #[test]
    fn tables_come_from_the_environment_as_toml() {
        let env = [("PORTCULLIS_PEERS", r#"[{ url = "https://a", weight = 2 }, { url = "https://b" }]"#)];
        let peers = load_with("", &env).unwrap().peers.unwrap();
        assert_eq!(
            (peers[0].url.as_str(), peers[0].weight, peers[1].url.as_str()),
            ("https://a", Some(2), "https://b")
        );
        let file = "[[peers]]\nurl = \"https://c\"\n";
        assert_eq!(load_with(file, &[]).unwrap().peers.unwrap()[0].url, "https://c");
        let wrong = load_with("", &[("PORTCULLIS_PEERS", "[{ ur = \"https://a\" }]")]).unwrap_err();
        assert_eq!(wrong.key, "peers", "{wrong}");
        let hosts = load_with("", &[("PORTCULLIS_HOSTS", "[\"a\", \"b\"]")]).unwrap().hosts.unwrap();
        assert_eq!(hosts, ["a", "b"], "a TOML array for a list key");
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(load_with("nmae = 1", &[]).unwrap_err().key, "nmae");
        assert_eq!(load_with("port = \"eighty\"", &[]).unwrap_err().key, "port");
        assert_eq!(load_with("", &[("PORTCULLIS_PORT", "99999")]).unwrap_err().key, "port");
        assert_eq!(load_with("name = ", &[]).unwrap_err().key, "file");
    }
}
