//! The test OpenID provider for the load harnesses: the npm `oidc-provider`
//! that `cli/tests/idp/provider.mjs` runs for the process tests (users
//! `alice`, `bob`, `mallory`, any password, PKCE S256 required), started on
//! a free loopback port with the harness's client metadata; `idp_login.rs`
//! logs in at it through its development login and consent forms.
//!
//! The npm packages come from `scripts/setup.sh` (`npm ci --prefix
//! cli/tests/idp`), which `scripts/bench-setup.sh` runs.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::processes::{self, Process, WorkDir};

/// A running provider (killed on drop) and its discovery document.
pub struct Idp {
    process: Process,
    port: u16,
    discovery: Value,
}

/// The directory of `provider.mjs` and its `node_modules`.
fn provider_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../cli/tests/idp"))
}

impl Idp {
    /// Starts the provider with `clients` (oidc-provider client metadata)
    /// and waits until discovery answers.
    pub async fn start(dir: &WorkDir, clients: Value) -> Result<Self> {
        let script_dir = provider_dir();
        if !script_dir.join("node_modules/oidc-provider").is_dir() {
            bail!("the test IdP's npm packages are missing in {} (run scripts/bench-setup.sh)", script_dir.display());
        }
        let port = processes::free_port()?;
        let config = dir.write("idp.json", &serde_json::json!({ "port": port, "clients": clients }).to_string())?;
        let mut command = Command::new("node");
        command.arg(script_dir.join("provider.mjs")).arg(config).current_dir(&script_dir);
        let mut process = Process::spawn(command, "test IdP", dir.path().join("idp.log"))?;
        process.wait_listening(port)?;
        let url = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
        let deadline = Instant::now() + Duration::from_secs(30);
        let discovery = loop {
            process.check_alive()?;
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    break response.json().await.context("discovery is not JSON")?;
                }
            }
            if Instant::now() > deadline {
                bail!("{url} did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Self { process, port, discovery })
    }

    /// The issuer, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// An endpoint from discovery, e.g. `authorization_endpoint` (empty if absent).
    pub fn endpoint(&self, name: &str) -> String {
        self.discovery[name].as_str().unwrap_or_default().to_owned()
    }

    /// Its process id (node).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
