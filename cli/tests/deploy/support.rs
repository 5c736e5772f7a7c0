//! What the deploy checks share: the files under `deploy/`, the components
//! and their configuration keys, and loading a configuration (TOML text plus
//! `PORTCULLIS_<KEY>` variables) through the component's own loader into the
//! ports and URLs the other checks compare.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// Stands in for every secret the files only refer to (at least 32 characters).
pub const SECRET: &str = "placeholder-secret-0123456789abcdef0123456789";

/// What stands in for a secret variable the files only refer to: a
/// database URL holds a password, so it is one.
pub fn placeholder(name: &str) -> String {
    match name {
        "PORTCULLIS_DATABASE_URL" => format!("postgres://portcullis:{SECRET}@postgres.invalid/portcullis"),
        // A public key the operator copies from the control plane.
        "PORTCULLIS_STREAM_PUBLIC_KEY" => {
            portcullis_policy::stream_key::StreamSigningKey::from_seed([7; 32]).public_key().to_string()
        }
        _ => SECRET.to_owned(),
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ has a parent").to_path_buf()
}

/// A file's text, by path relative to the repository root.
pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `deploy/`, as paths relative to the repository root, sorted.
pub fn deploy_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read deploy/") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy"), &mut files);
    let root = root();
    let mut files: Vec<String> =
        files.iter().map(|p| p.strip_prefix(&root).expect("under the root").to_string_lossy().into_owned()).collect();
    files.sort();
    files
}

/// The YAML documents of a file.
pub fn yaml(relative: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"))
}

/// A YAML scalar as text (strings, numbers and booleans).
pub fn text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A YAML sequence of scalars as text.
pub fn texts(value: &Yaml) -> Vec<String> {
    value.as_vec().map(|items| items.iter().filter_map(text).collect()).unwrap_or_default()
}

/// What a process started from `deploy/` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// `portcullis control-plane`.
    ControlPlane,
    /// `portcullis edge`.
    Edge,
    /// `portcullis demo-app`.
    DemoApp,
    /// An admin command (`policy`, `sessions`, `users`, `audit`, `edges`).
    Admin,
}

impl Component {
    /// The component a `portcullis` command line (without the program) runs.
    pub fn of_args(args: &[String]) -> Self {
        match args.first().map(String::as_str) {
            Some("control-plane") => Self::ControlPlane,
            Some("edge") => Self::Edge,
            Some("demo-app") => Self::DemoApp,
            Some("policy" | "sessions" | "users" | "audit" | "edges") => Self::Admin,
            other => panic!("deploy/ runs `portcullis {other:?}`: teach tests/deploy what that is"),
        }
    }

    /// The component a file configures, from its name (`control-plane.toml`, `edge.env.example`).
    pub fn of_file(relative: &str) -> Self {
        let name = relative.rsplit('/').next().unwrap_or(relative);
        if name.starts_with("control-plane") || name.starts_with("portcullis-control-plane") {
            Self::ControlPlane
        } else if name.starts_with("edge") || name.starts_with("portcullis-edge") {
            Self::Edge
        } else {
            panic!("{relative}: which component does it configure? Name it control-plane… or edge…")
        }
    }

    /// The configuration keys of the component.
    pub fn keys(self) -> Vec<&'static str> {
        match self {
            Self::ControlPlane => portcullis_control_plane::config::KEYS.iter().map(|(k, _)| *k).collect(),
            Self::Edge => portcullis_edge::config::KEYS.iter().map(|(k, _)| *k).collect(),
            Self::DemoApp | Self::Admin => Vec::new(),
        }
    }

    /// The environment variables the component reads.
    pub fn variables(self) -> Vec<String> {
        let mut names: Vec<String> =
            self.keys().iter().map(|k| format!("PORTCULLIS_{}", k.to_ascii_uppercase())).collect();
        names.push("PORTCULLIS_LOG".into());
        match self {
            Self::DemoApp => names.push("PORTCULLIS_DEMO_LISTEN".into()),
            Self::Admin => names.extend(["PORTCULLIS_URL".into(), "PORTCULLIS_TOKEN".into()]),
            Self::ControlPlane | Self::Edge => {}
        }
        names
    }

    /// Asserts that every TOML key of `file_text` is a key of the component.
    pub fn assert_toml_keys(self, file_text: &str, what: &str) {
        let table: toml::Table = toml::from_str(file_text).unwrap_or_else(|e| panic!("{what}: not valid TOML: {e}"));
        let keys = self.keys();
        for key in table.keys() {
            assert!(keys.contains(&key.as_str()), "{what}: `{key}` is not a key of {self:?} (known: {keys:?})");
        }
    }

    /// Asserts that `name` is a variable the component reads.
    pub fn assert_variable(self, name: &str, what: &str) {
        if name.starts_with("PORTCULLIS_") {
            assert!(self.variables().iter().any(|v| v == name), "{what}: {self:?} reads no variable {name}");
        }
    }
}

/// What a loaded configuration listens on and points at.
#[derive(Debug, Default, Clone)]
pub struct Effective {
    /// Listener name (`listen`, `edge_listen`, `https_listen`, `metrics_listen`) → port.
    pub listeners: BTreeMap<&'static str, u16>,
    /// The port serving `/healthz` and `/readyz` (and `/metrics`).
    pub status_port: u16,
    /// Control plane: its `issuer`.
    pub issuer: Option<String>,
    /// Edge: the control plane's edge channel.
    pub control_plane_url: Option<String>,
    /// Every control-plane replica the edge lists (the first is `control_plane_url`).
    pub control_plane_urls: Vec<String>,
    /// Edge: the expected session issuer.
    pub session_issuer: Option<String>,
    /// Files it reads (TLS certificate and key; the edge's assertion key and control-plane CA).
    pub files: Vec<String>,
}

impl Effective {
    /// Every port it listens on.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.listeners.values().copied().collect();
        ports.sort_unstable();
        ports
    }
}

/// Loads `file_text` plus `env` (variable → value; an empty value stands
/// for a secret) through the component's loader. The edge's `assertion_key_file`
/// and `control_plane_ca` are set aside (the loader reads them) and reported in
/// `files`, with the TLS files of either component.
pub fn load(component: Component, file_text: &str, env: &BTreeMap<String, String>, what: &str) -> Effective {
    component.assert_toml_keys(file_text, what);
    for name in env.keys() {
        component.assert_variable(name, what);
    }
    let mut table: toml::Table = toml::from_str(file_text).expect("checked above");
    let mut env = env.clone();
    let mut files = Vec::new();
    if component == Component::Edge {
        for key in ["assertion_key_file", "control_plane_ca"] {
            let from_file = table.remove(key).and_then(|v| v.as_str().map(str::to_owned));
            files.extend(env.remove(&format!("PORTCULLIS_{}", key.to_ascii_uppercase())).or(from_file));
        }
    }
    let file_text = toml::to_string(&table).expect("a table serializes");
    let lookup = |name: &str| env.get(name).map(|v| if v.is_empty() { placeholder(name) } else { v.clone() });
    let mut effective = Effective { files, ..Effective::default() };
    match component {
        Component::ControlPlane => {
            let config = portcullis_control_plane::Config::load(&file_text, lookup)
                .unwrap_or_else(|e| panic!("{what}: the control plane refuses it: {e}"));
            effective.listeners.insert("listen", config.listen.port());
            effective.listeners.insert("edge_listen", config.edge_listen.port());
            effective.status_port = config.listen.port();
            effective.issuer = Some(config.issuer);
            if let Some(tls) = config.tls {
                effective.files.extend([tls.cert, tls.key]);
            }
        }
        Component::Edge => {
            let config = portcullis_edge::config::EdgeConfig::load(&file_text, lookup)
                .unwrap_or_else(|e| panic!("{what}: the edge refuses it: {e}"));
            effective.listeners.insert("listen", config.listen.port());
            effective.listeners.insert("metrics_listen", config.metrics_listen.port());
            if let Some((address, cert, key)) = &config.https {
                effective.listeners.insert("https_listen", address.port());
                effective.files.extend([cert.clone(), key.clone()]);
            }
            effective.status_port = config.metrics_listen.port();
            effective.control_plane_url = config.control_plane_urls.first().cloned();
            effective.control_plane_urls = config.control_plane_urls;
            effective.session_issuer = Some(config.session_issuer);
        }
        Component::DemoApp => {
            let listen = env.get("PORTCULLIS_DEMO_LISTEN").unwrap_or_else(|| panic!("{what}: no demo-app listener"));
            let port = port_of(listen).unwrap_or_else(|| panic!("{what}: `{listen}` is not an address"));
            effective.listeners.insert("listen", port);
            effective.status_port = port;
        }
        Component::Admin => {}
    }
    effective
}

/// The port of `host:port` or of a URL.
pub fn port_of(address: &str) -> Option<u16> {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// The host of a URL.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once(':').map_or(authority, |(host, _)| host).to_owned()
}

/// `NAME=value` lines of an env file; with `commented`, also the
/// commented-out examples (`#NAME=value`).
pub fn env_file(relative: &str, commented: bool) -> BTreeMap<String, String> {
    read(relative)
        .lines()
        .map(str::trim)
        .filter_map(|line| match line.strip_prefix('#') {
            Some(example) if commented => Some(example.trim()),
            Some(_) => None,
            None => Some(line),
        })
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
