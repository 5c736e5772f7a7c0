//! The real `portcullis control-plane` process under test: started on free
//! ports with a given database, waited for until `/readyz` answers, killed
//! with SIGKILL on demand (and always on drop), plus the `portcullis` CLI run
//! against it and admin-API helpers.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_dev_idp::test_issuer::TestIssuer;
use serde_json::Value;

/// The edge enrollment secret every test control plane uses.
pub const EDGE_SECRET: &str = "edge-secret-for-tests-0123456789abcdef";
/// The key-encryption key of the tests' PostgreSQL control planes.
pub const TEST_KEK: &str = "key-encryption-key-for-tests-0123456789";
/// The admin token every test control plane bootstraps.
pub const ADMIN_TOKEN: &str = "pcat_admin_token_for_tests_0123456789abcdef";

/// A small valid policy with the routes the tests log in to.
pub const POLICY: &str = "\
version: 1
routes:
  - name: wiki
    host: wiki.corp.example
    upstream: http://10.0.0.5:8080
    rules:
      - allow: { email_domain: [corp.example] }
  - name: admin
    host: admin.corp.example
    upstream: http://10.0.0.6:8080
    rules:
      - allow: { groups_any: [admins] }
";

/// `login_idps` for a test control plane: the shared test issuer (whose ID
/// tokens the session helpers sign) and each `(issuer, client id)` of
/// `others` (the OpenID providers a test's edges log users in with).
pub fn login_idps(others: &[(&str, &str)]) -> String {
    let mut entries = vec![TestIssuer::shared().login_idp()];
    entries
        .extend(others.iter().map(|(issuer, client)| format!("{{ issuer = {issuer:?}, audiences = [{client:?}] }}")));
    format!("[{}]", entries.join(", "))
}

/// The path of the `portcullis` binary Cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// A port nobody listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `portcullis-cp-<pid>-<label>-<n>`.
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portcullis-cp-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command for the binary without any `PORTCULLIS_*` variable of the
/// environment the tests run in.
pub fn command() -> Command {
    let mut command = Command::new(binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PORTCULLIS_") {
            command.env_remove(name);
        }
    }
    command
}

/// A finished command: exit code and text output.
pub struct Run {
    /// Exit status code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Run {
    /// Asserts exit 0 and returns standard output.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:?}");
        &self.stdout
    }

    /// Asserts exit 0 and parses standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("--json printed invalid JSON ({e}): {self:?}"))
    }
}

/// A running control plane.
pub struct ControlPlane {
    child: Mutex<Child>,
    /// Admin API base, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Edge channel base.
    pub edge_url: String,
    /// Its log (standard output and error).
    pub log: PathBuf,
    http: reqwest::Client,
}

impl ControlPlane {
    /// Starts the control plane on `database_url`, logging into `dir`, and
    /// waits until it is ready. Retries with new ports if one was taken.
    pub async fn start(database_url: &str, dir: &Path) -> Self {
        Self::start_trusting(database_url, dir, &[]).await
    }

    /// Starts it on the given admin and edge-channel ports (to restart one
    /// where its edges expect it); the error is its log.
    pub async fn start_on(database_url: &str, dir: &Path, listen: u16, edge_listen: u16) -> Result<Self, String> {
        Self::start_on_with(database_url, dir, listen, edge_listen, &[]).await
    }

    /// Starts it on free ports trusting, besides the shared test issuer,
    /// the `(issuer, client id)` pairs of `idps` for logins.
    pub async fn start_trusting(database_url: &str, dir: &Path, idps: &[(&str, &str)]) -> Self {
        let settings = [("login_idps", login_idps(idps))];
        let mut last_log = String::new();
        for attempt in 0..3 {
            match Self::start_on_with(database_url, dir, free_port(), free_port(), &settings).await {
                Ok(plane) => return plane,
                Err(log) if log.contains("Address already in use") && attempt < 2 => last_log = log,
                Err(log) => panic!("the control plane on {database_url} did not become ready:\n{log}"),
            }
        }
        panic!("the control plane could not bind free ports:\n{last_log}");
    }

    /// Same, with extra `PORTCULLIS_*` settings (e.g. `("oidc_issuer", url)`);
    /// without `login_idps`, logins are verified with the shared test issuer.
    pub async fn start_on_with(
        database_url: &str,
        dir: &Path,
        listen: u16,
        edge_listen: u16,
        settings: &[(&str, String)],
    ) -> Result<Self, String> {
        Self::launch(database_url, dir, (listen, edge_listen), settings, None).await
    }

    /// Starts it serving HTTPS on both listeners with `cert` and `key`; its
    /// URLs are `https://127.0.0.1:…` and its client trusts only `ca`.
    #[allow(dead_code)] // the attack and fault suites share this file
    pub async fn start_tls(database_url: &str, dir: &Path, ca: &Path, cert: &Path, key: &Path) -> Self {
        let settings = [("tls_cert", cert.display().to_string()), ("tls_key", key.display().to_string())];
        let ca = std::fs::read(ca).expect("read the test CA");
        Self::launch(database_url, dir, (free_port(), free_port()), &settings, Some(&ca))
            .await
            .unwrap_or_else(|log| panic!("the control plane with TLS did not become ready:\n{log}"))
    }

    async fn launch(
        database_url: &str,
        dir: &Path,
        (listen, edge_listen): (u16, u16),
        settings: &[(&str, String)],
        ca: Option<&[u8]>,
    ) -> Result<Self, String> {
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!("control-plane-{listen}-{}.log", RUN.fetch_add(1, Ordering::Relaxed)));
        let file = File::create(&log).expect("create log file");
        let mut command = command();
        if !database_url.starts_with("sqlite:") {
            // PostgreSQL replicas must share a key-encryption key (required).
            command.env("PORTCULLIS_KEY_ENCRYPTION_KEY", TEST_KEK);
        }
        if !settings.iter().any(|(key, _)| *key == "login_idps") {
            command.env("PORTCULLIS_LOGIN_IDPS", login_idps(&[]));
        }
        for (key, value) in settings {
            command.env(format!("PORTCULLIS_{}", key.to_ascii_uppercase()), value);
        }
        let child = command
            .arg("control-plane")
            .env("PORTCULLIS_DATABASE_URL", database_url)
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{listen}"))
            .env("PORTCULLIS_EDGE_LISTEN", format!("127.0.0.1:{edge_listen}"))
            .env("PORTCULLIS_EDGE_SECRET", EDGE_SECRET)
            .env("PORTCULLIS_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
            .env("PORTCULLIS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn portcullis control-plane");
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = ca {
            let ca = reqwest::Certificate::from_pem(ca).expect("a PEM CA");
            http = http.tls_built_in_root_certs(false).add_root_certificate(ca);
        }
        let scheme = if ca.is_some() { "https" } else { "http" };
        let mut plane = Self {
            child: Mutex::new(child),
            url: format!("{scheme}://127.0.0.1:{listen}"),
            edge_url: format!("{scheme}://127.0.0.1:{edge_listen}"),
            log,
            http: http.build().expect("HTTP client"),
        };
        plane.wait_ready().await?;
        Ok(plane)
    }

    /// Its (admin, edge-channel) ports.
    pub fn ports(&self) -> (u16, u16) {
        let port = |url: &str| url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in URL");
        (port(&self.url), port(&self.edge_url))
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = self.child.get_mut().map(|c| c.try_wait());
            if let Ok(Ok(Some(status))) = exited {
                return Err(format!("exited with {status}\n{}", self.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready within 30 s\n{}", self.log_text()));
            }
            let ready = self.http.get(format!("{}/readyz", self.url)).timeout(Duration::from_secs(2)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the process has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id (to pause it with SIGSTOP; the fault suite does).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner).id()
    }

    /// SIGKILL: no shutdown, no flushing, nothing after the last answer.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        child.kill().expect("SIGKILL the control plane");
        child.wait().expect("reap the control plane");
    }

    /// Runs the `portcullis` CLI against this control plane (blocking is
    /// moved off the async workers).
    pub async fn cli(&self, args: &[&str]) -> Run {
        let url = self.url.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            command()
                .args(&args)
                .env("PORTCULLIS_URL", url)
                .env("PORTCULLIS_TOKEN", ADMIN_TOKEN)
                .output()
                .expect("run portcullis")
                .into()
        })
        .await
        .expect("CLI task")
    }

    /// `GET /api/v1{path}` with the admin token; panics unless 200.
    pub async fn api_get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET the admin API");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON answer");
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    /// `POST /api/v1{path}` with a JSON body; returns status and body.
    pub async fn api_post(&self, path: &str, body: &Value) -> reqwest::Result<(u16, Value)> {
        let response =
            self.http.post(format!("{}/api/v1{path}", self.url)).bearer_auth(ADMIN_TOKEN).json(body).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// Applies `document` as the policy in force.
    pub async fn apply_policy(&self, document: &str) -> i64 {
        let response = self
            .http
            .put(format!("{}/api/v1/policy?message=test", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .body(document.to_owned())
            .send()
            .await
            .expect("PUT the policy");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON answer");
        assert!(status.is_success(), "PUT /policy: {status} {body}");
        body["version"].as_i64().expect("version")
    }

    /// The edge-channel client (see `edge.rs`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}
