//! The real processes the load harnesses drive: the release `portcullis`
//! binary started as a control plane (SQLite in a temp dir, or a given
//! PostgreSQL database) and as edges,
//! each from a TOML config file on free loopback ports and waited for until
//! `/readyz` answers, plus what the harnesses need around them: the policy,
//! session tokens minted through the edge channel (`POST /edge/v1/sessions`
//! as an edge enrolled with the bootstrap secret, with an ID token of the
//! test issuer (`portcullis_dev_idp::test_issuer`, served from this process),
//! as an edge does after an OIDC login, so no login at an IdP is needed), a
//! temp dir, percentiles, and per-process CPU time,
//! resident memory and open file descriptors.
//!
//! Every child is killed when its handle drops (also on panic), so a failed
//! run leaves nothing listening.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use portcullis_dev_idp::test_issuer::TestIssuer;
use serde_json::{json, Value};

/// The test suites' edge identity (enrolls with the bootstrap secret, signs assertions).
#[path = "../../cli/tests/control_plane/edge_identity.rs"]
mod edge_identity;

/// The bootstrap secret of the harness control plane (its edges enroll with it).
pub const EDGE_SECRET: &str = "bench-edge-secret-0123456789abcdef0123";
/// The admin token the harness control plane bootstraps.
pub const ADMIN_TOKEN: &str = "pcat_bench_admin_token_0123456789abcdef";
/// The key-encryption key of the harness's control planes (PostgreSQL requires one).
pub const KEK: &str = "bench-key-encryption-key-0123456789abcdef";
/// The host the bench policy routes (`app`).
pub const APP_HOST: &str = "app.bench.example";
/// Every bench user's email domain; the policy allows exactly this domain.
pub const USER_DOMAIN: &str = "bench.example";

/// The `portcullis` binary: `explicit`, else `$PORTCULLIS_BIN`, else
/// `$CARGO_TARGET_DIR/release/portcullis`, else `target/release/portcullis`.
pub fn binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let path = explicit
        .or_else(|| std::env::var_os("PORTCULLIS_BIN").map(PathBuf::from))
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join("release/portcullis")))
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/portcullis")));
    if !path.is_file() {
        bail!("no portcullis binary at {} (build it: cargo build --release -p portcullis)", path.display());
    }
    Ok(path)
}

/// A port nobody listens on right now (bound, read, released).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh directory under the system temp dir, removed on drop unless kept.
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates `portcullis-bench-<label>-<pid>`; `keep` leaves it (and its logs) behind.
    pub fn new(label: &str, keep: bool) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("portcullis-bench-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self { path, keep })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.path.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Process {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` with standard output and error going to `log`.
    pub fn spawn(mut command: Command, name: &str, log: PathBuf) -> Result<Self> {
        let file = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        Ok(Self { child, name: name.to_owned(), log })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until something accepts TCP connections on `127.0.0.1:port`
    /// (an error if this process exits first).
    pub fn wait_listening(&mut self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("{} is not listening on port {port} after 20 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// An error if it exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{} exited with {status}:\n{tail}", self.name);
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on `PATH`, else `fallback` (e.g. Debian's `/usr/sbin/nginx`,
/// which is not on every user's `PATH`) if it exists.
pub fn find_program(name: &str, fallback: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from(fallback)).filter(|p| p.is_file()))
}

/// Stops a server that has worker processes with SIGTERM (a SIGKILL, the
/// [`Process`]'s own drop, would orphan its workers) and waits up to 5 s
/// for it to exit.
pub fn terminate(process: &mut Process) {
    let _ = Command::new("kill").arg("-TERM").arg(process.pid().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && process.check_alive().is_ok() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether this process runs as root (servers then need a `User` to drop to).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|line| line.strip_prefix("Uid:"));
    uid.and_then(|rest| rest.split_whitespace().nth(1)).is_some_and(|euid| euid == "0")
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default()
}

async fn wait_ready(process: &mut Process, url: &str) -> Result<()> {
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        process.check_alive()?;
        let ready = http.get(url).timeout(Duration::from_secs(2)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running `portcullis control-plane`.
pub struct ControlPlane {
    process: Process,
    /// Admin API base, e.g. `http://127.0.0.1:41234`; also the session issuer.
    pub url: String,
    /// Edge channel base.
    pub edge_url: String,
    http: reqwest::Client,
}

impl ControlPlane {
    /// Starts it with a config file and a SQLite database in `dir`.
    pub async fn start(binary: &Path, dir: &WorkDir) -> Result<Self> {
        let sqlite = format!("sqlite://{}", dir.path().join("control-plane.db").display());
        Self::start_on(binary, dir, &sqlite).await
    }

    /// Starts it on `database_url` (`sqlite://…` or `postgres://…`), with
    /// its config file and log in `dir`.
    pub async fn start_on(binary: &Path, dir: &WorkDir, database_url: &str) -> Result<Self> {
        Self::start_with_env(binary, dir, database_url, &[]).await
    }

    /// Like [`Self::start_on`], with extra settings in its environment
    /// (`PORTCULLIS_*` variables, e.g. `PORTCULLIS_SSF_TRANSMITTERS`).
    pub async fn start_with_env(
        binary: &Path,
        dir: &WorkDir,
        database_url: &str,
        env: &[(&str, String)],
    ) -> Result<Self> {
        let (listen, edge_listen) = (free_port()?, free_port()?);
        let config = format!(
            "listen = \"127.0.0.1:{listen}\"\nedge_listen = \"127.0.0.1:{edge_listen}\"\n\
             database_url = \"{database_url}\"\nedge_secret = \"{EDGE_SECRET}\"\nbootstrap_token = \"{ADMIN_TOKEN}\"\n\
             key_encryption_key = \"{KEK}\"\nlogin_idps = [{}]\n",
            TestIssuer::shared().login_idp()
        );
        let mut command = Command::new(binary);
        command.arg("control-plane").arg("--config").arg(dir.write("control-plane.toml", &config)?);
        command.env("PORTCULLIS_LOG", "warn");
        command.envs(env.iter().map(|(name, value)| (name, value)));
        let mut process = Process::spawn(command, "control plane", dir.path().join("control-plane.log"))?;
        let url = format!("http://127.0.0.1:{listen}");
        wait_ready(&mut process, &format!("{url}/readyz")).await?;
        Ok(Self { process, url, edge_url: format!("http://127.0.0.1:{edge_listen}"), http: http_client() })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Puts `document` in force.
    pub async fn apply_policy(&self, document: &str) -> Result<()> {
        let response = self
            .http
            .put(format!("{}/api/v1/policy?message=bench", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .body(document.to_owned())
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!("PUT /api/v1/policy: {status} {}", response.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// Creates a session for `email` on route `app` the way an edge does
    /// after a login; returns (session id, token).
    pub async fn login(&self, email: &str) -> Result<(String, String)> {
        self.login_with_sid(email, None).await
    }

    /// Like [`Self::login`], the ID token naming the IdP login session
    /// `sid` (its `sid` claim) if given; the session's `idp_issuer` is the
    /// shared test issuer's URL.
    pub async fn login_with_sid(&self, email: &str, sid: Option<&str>) -> Result<(String, String)> {
        self.login_full(email, sid, "app").await
    }

    /// Like [`Self::login`], for `route`: a session token counts only on
    /// the route it was issued for (a CONNECT needs one of its TCP route).
    pub async fn login_on(&self, email: &str, route: &str) -> Result<(String, String)> {
        self.login_full(email, None, route).await
    }

    async fn login_full(&self, email: &str, sid: Option<&str>, route: &str) -> Result<(String, String)> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let mut body = json!({
            "subject": format!("sub-{email}"), "email": email, "groups": ["staff"],
            "idp_issuer": "https://idp.bench.example", "auth_time": now,
            "route": route, "source_address": "127.0.0.1", "user_agent": "portcullis-bench",
        });
        if let Some(sid) = sid {
            body["idp_session_id"] = json!(sid);
        }
        let body = TestIssuer::shared().login_body(&body);
        let (status, answer) = edge_identity::post_session(&self.http, &self.edge_url, EDGE_SECRET, &body).await;
        match (answer["session_id"].as_str(), answer["token"].as_str()) {
            (Some(id), Some(token)) => Ok((id.to_owned(), token.to_owned())),
            _ => bail!("POST /edge/v1/sessions: {status} {answer}"),
        }
    }

    /// `POST /api/v1{path}` with the admin token.
    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(format!("{}/api/v1{path}", self.url)).bearer_auth(ADMIN_TOKEN).json(body)
    }
}

/// The bench policy: `APP_HOST` → `upstream`, allowed to every `USER_DOMAIN` user.
pub fn policy(upstream: &str) -> String {
    format!(
        "version: 1\nroutes:\n  - name: app\n    host: {APP_HOST}\n    upstream: {upstream}\n    rules:\n      \
         - name: staff\n        allow: {{ email_domain: [{USER_DOMAIN}] }}\n"
    )
}

/// A running `portcullis edge`.
pub struct Edge {
    process: Process,
    /// Its proxy port on 127.0.0.1.
    pub port: u16,
    /// Its `/metrics` and `/readyz` port.
    pub metrics_port: u16,
}

impl Edge {
    /// Starts edge `id` with `threads` proxy threads against `plane`; waits
    /// until it holds a snapshot.
    pub async fn start(binary: &Path, plane: &ControlPlane, id: &str, threads: usize, dir: &WorkDir) -> Result<Self> {
        let (port, metrics_port) = (free_port()?, free_port()?);
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             control_plane_url = \"{}\"\nsession_issuer = \"{}\"\nedge_secret = \"{EDGE_SECRET}\"\n\
             edge_id = \"{id}\"\nthreads = {threads}\n",
            plane.edge_url, plane.url
        );
        let mut command = Command::new(binary);
        command.arg("edge").arg("--config").arg(dir.write(&format!("{id}.toml"), &config)?);
        command.env("PORTCULLIS_LOG", "warn");
        let mut process = Process::spawn(command, id, dir.path().join(format!("{id}.log")))?;
        wait_ready(&mut process, &format!("http://127.0.0.1:{metrics_port}/readyz")).await?;
        Ok(Self { process, port, metrics_port })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The sum of the `/metrics` samples named exactly `name` (any labels).
    pub async fn metric_sum(&self, name: &str) -> Result<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port)).await?.text().await?;
        Ok(text
            .lines()
            .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// User plus system CPU seconds used so far by `pid` (its threads included).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may contain spaces): state is 3rd,
    // utime the 14th and stime the 15th field of the whole line.
    let Some((_, rest)) = stat.rsplit_once(") ") else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on every Linux architecture this runs on.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`); 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"));
    line.and_then(|rest| rest.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// Open file descriptors of `pid` (entries of `/proc/<pid>/fd`); 0 once it is gone.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count())
}

/// CPU seconds the whole machine spent busy so far: user, nice, system,
/// irq and softirq time of every CPU (a process's system time includes the
/// interrupts and softirqs served while it ran, which `/proc/stat` counts
/// apart), without time stolen by the hypervisor.
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .map(|line| line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
    (at(0) + at(1) + at(2) + at(5) + at(6)) / 100.0
}

/// CPU seconds of this process plus its reaped children (e.g. a finished `wrk`).
pub fn own_and_reaped_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(") ") else { return 0.0 };
    let fields: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    fields.get(11..15).map_or(0.0, |f| f.iter().sum::<f64>() / 100.0)
}

/// The children of `pid` (e.g. nginx's workers), from `/proc`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let parent = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
            parent == Some(pid)
        })
        .collect()
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The edges' kill counters, summed.
pub async fn kills(edges: &[Edge]) -> Result<f64> {
    let mut total = 0.0;
    for edge in edges {
        total += edge.metric_sum("portcullis_edge_kills_total").await?;
    }
    Ok(total)
}

/// `later - earlier` in milliseconds, negative when `later` came first.
pub fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(earlier - later).as_secs_f64() * 1e3,
    }
}
