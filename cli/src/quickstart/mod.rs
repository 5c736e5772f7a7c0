//! `portcullis quickstart`: everything on one machine in one command, with
//! SQLite under `./data`: the control plane and one edge (as child
//! processes of this binary), a demo upstream app and the built-in
//! development OpenID provider (in this process). Prints the URLs and the
//! tour; Ctrl-C stops everything.
//!
//! Secrets (enrollment secret, admin token, client secrets) are made on the
//! first run and kept in `<data>/quickstart.toml` (mode 0600), so a restart
//! keeps sessions, tokens and the audit log. The control plane serves HTTPS
//! with a certificate of the quickstart's own CA (`local_ca`, under
//! `<data>/tls`); the edge checks it against that CA, and the banner prints
//! the CA's path for `--ca-file`.

pub mod demo_app;
mod local_ca;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use portcullis_dev_idp::{Client, DevIdpConfig};
use serde::{Deserialize, Serialize};

/// Quickstart options.
#[derive(Args)]
pub struct QuickstartArgs {
    /// Where the database, logs and secrets live.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Use six consecutive ports from this one instead of the defaults
    /// (control plane 7400, edge channel 7401, IdP 7600, demo app 7700, edge 8080, edge metrics 9090).
    #[arg(long)]
    port_base: Option<u16>,
}

/// Every port the quickstart uses.
#[derive(Debug, Clone, Copy)]
struct Ports {
    control_plane: u16,
    edge_channel: u16,
    idp: u16,
    demo: u16,
    edge: u16,
    metrics: u16,
}

impl Ports {
    fn new(base: Option<u16>) -> Self {
        match base {
            Some(b) => {
                Self { control_plane: b, edge_channel: b + 1, idp: b + 2, demo: b + 3, edge: b + 4, metrics: b + 5 }
            }
            None => Self { control_plane: 7400, edge_channel: 7401, idp: 7600, demo: 7700, edge: 8080, metrics: 9090 },
        }
    }
}

/// Secrets kept between runs.
#[derive(Debug, Serialize, Deserialize)]
struct Secrets {
    edge_secret: String,
    admin_token: String,
    edge_client_secret: String,
    portal_client_secret: String,
}

fn random_secret(prefix: &str) -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn load_secrets(path: &Path) -> anyhow::Result<Secrets> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return toml::from_str(&text)
            .with_context(|| format!("{} is damaged; delete it to start over", path.display()));
    }
    let secrets = Secrets {
        edge_secret: random_secret(""),
        admin_token: random_secret("pcat_"),
        edge_client_secret: random_secret(""),
        portal_client_secret: random_secret(""),
    };
    let text = format!(
        "# Made by `portcullis quickstart`: development secrets, not for production.\n{}",
        toml::to_string(&secrets)?
    );
    write_private(path, &text)?;
    Ok(secrets)
}

/// Creates `dir` (and its parents), 0700 where it is new.
#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)?;
    Ok(())
}

/// The demo policy: the demo app for developers.
fn policy(ports: Ports) -> String {
    format!(
        "# Applied by `portcullis quickstart`.
version: 1
routes:
  - name: demo
    host: demo.localhost
    upstream: http://127.0.0.1:{demo}
    options:
      session_lifetime: 8h
    rules:
      - name: developers
        allow:
          groups_any: [dev]
",
        demo = ports.demo
    )
}

/// A child process, stopped (SIGTERM, then SIGKILL) on drop.
struct ChildProcess {
    name: &'static str,
    child: Child,
}

impl ChildProcess {
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: &'static str, args: &[&str], env: &[(&str, String)], log: &Path) -> anyhow::Result<ChildProcess> {
    // Appended, not emptied: the logs of earlier runs stay (each run starts
    // with a line saying so); readable by this user only (they name secrets' files).
    let mut file = open_log(log).with_context(|| format!("cannot open {}", log.display()))?;
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::io::Write::write_all(&mut file, format!("---- portcullis quickstart: {name} started {started}\n").as_bytes())?;
    let mut command = Command::new(std::env::current_exe().context("cannot find this program")?);
    command.args(args).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    for (key, value) in env {
        command.env(format!("PORTCULLIS_{}", key.to_ascii_uppercase()), value);
    }
    let child = command.spawn().with_context(|| format!("cannot start the {name}"))?;
    Ok(ChildProcess { name, child })
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

async fn wait_ready(
    client: &reqwest::Client,
    url: &str,
    what: &str,
    child: &mut ChildProcess,
    log: &Path,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.exited() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("the {what} exited ({status}); its log ({}):\n{tail}", log.display());
        }
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the {what} did not become ready within 60 s; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn apply_policy(client: &reqwest::Client, api: &str, token: &str, document: &str) -> anyhow::Result<()> {
    let current = client.get(format!("{api}/api/v1/policy")).bearer_auth(token).send().await?;
    if current.status().is_success() {
        let body: serde_json::Value = current.json().await?;
        if body["document"].as_str() == Some(document) {
            return Ok(());
        }
    }
    let answer = client
        .put(format!("{api}/api/v1/policy"))
        .bearer_auth(token)
        .header("content-type", "application/yaml")
        .header("x-portcullis-message", "quickstart demo policy")
        .body(document.to_owned())
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("the control plane refused the demo policy: {}", answer.text().await.unwrap_or_default());
    }
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, router: axum::Router, name: &'static str) {
    if let Err(error) = axum::serve(listener, router).await {
        tracing::error!(%error, "the {name} stopped");
    }
}

fn banner(ports: Ports, secrets: &Secrets, data: &Path, ca: &Path) -> String {
    let mut text = String::new();
    let demo = format!("http://demo.localhost:{}", ports.edge);
    let control_plane = format!("https://127.0.0.1:{}", ports.control_plane);
    let _ = writeln!(text, "\nPortcullis is running (development mode: the identity provider lets anyone log in).\n");
    let _ = writeln!(text, "  Demo app through the edge  {demo}/   (log in as bob or alice)");
    let _ = writeln!(text, "  Websocket page             {demo}/websocket");
    let _ = writeln!(text, "  Slow download              {demo}/download");
    let _ = writeln!(text, "  Admin portal               {control_plane}/portal/");
    let _ = writeln!(text, "  Admin API                  {control_plane}/api/v1");
    let _ = writeln!(text, "  Development IdP            http://127.0.0.1:{}", ports.idp);
    let _ = writeln!(text, "  Edge metrics               http://127.0.0.1:{}/metrics", ports.metrics);
    let _ = writeln!(text, "\n  Admin token: {}", secrets.admin_token);
    let _ = writeln!(text, "  CA certificate: {}", ca.display());
    let _ = writeln!(text, "    The control plane serves HTTPS with a certificate of this quickstart's own CA:");
    let _ = writeln!(text, "    give it to the CLI with --ca-file (or PORTCULLIS_CA_FILE); browsers warn about the");
    let _ = writeln!(text, "    portal unless you import it (for development only).");
    let _ = writeln!(text, "  Data, logs and secrets in {}\n", data.display());
    let _ = writeln!(text, "Try it:");
    let _ = writeln!(text, "  1. Open {demo}/websocket and log in as bob.");
    let _ = writeln!(text, "  2. Open the portal, log in as alice, find bob's session and terminate it");
    let _ = writeln!(text, "     — or from a shell:");
    let _ = writeln!(
        text,
        "       PORTCULLIS_URL={control_plane} PORTCULLIS_CA_FILE={} PORTCULLIS_TOKEN={} \\",
        ca.display(),
        secrets.admin_token
    );
    let _ = writeln!(text, "         portcullis users terminate bob@corp.example --reason demo --wait");
    let _ = writeln!(text, "  3. Watch bob's websocket close at once.\n");
    let _ = writeln!(text, "Press Ctrl-C to stop.");
    text
}

/// Runs the quickstart until Ctrl-C.
pub fn run(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let ports = Ports::new(args.port_base);
    create_private_dir(&args.data).with_context(|| format!("cannot create {}", args.data.display()))?;
    let data = std::fs::canonicalize(&args.data)?;
    let secrets = load_secrets(&data.join("quickstart.toml"))?;
    let tls = local_ca::ensure(&data)?;
    let ca = crate::tls_roots::CaFile::read(&tls.ca_cert, "the quickstart CA")?;
    let client = ca.trust_in(reqwest::Client::builder())?.build().context("cannot build the HTTP client")?;
    let control_plane = format!("https://127.0.0.1:{}", ports.control_plane);
    let idp_issuer = format!("http://127.0.0.1:{}", ports.idp);
    let demo_origin = format!("http://demo.localhost:{}", ports.edge);
    tracing::warn!("development identity provider enabled: anyone can log in as anyone; never use it in production");

    let idp = DevIdpConfig {
        issuer: idp_issuer.clone(),
        users: DevIdpConfig::demo_users("corp.example"),
        clients: vec![
            Client {
                id: "portcullis-edge".into(),
                secret: secrets.edge_client_secret.clone(),
                redirect_uris: vec![format!("{demo_origin}/.portcullis/callback")],
                post_logout_redirect_uris: vec![format!("{demo_origin}/")],
                backchannel_logout_uri: Some(format!("http://127.0.0.1:{}/.portcullis/backchannel-logout", ports.edge)),
            },
            Client {
                id: "portcullis-portal".into(),
                secret: secrets.portal_client_secret.clone(),
                redirect_uris: vec![format!("{control_plane}/portal/callback")],
                post_logout_redirect_uris: vec![format!("{control_plane}/portal/")],
                backchannel_logout_uri: None,
            },
        ],
    };
    let bind = |port: u16, what: &'static str| async move {
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port} for the {what} (use --port-base)"))
    };
    let idp_listener = bind(ports.idp, "development IdP").await?;
    let demo_listener = bind(ports.demo, "demo app").await?;
    tokio::spawn(serve(idp_listener, portcullis_dev_idp::router(idp), "development IdP"));
    tokio::spawn(serve(demo_listener, demo_app::router(), "demo app"));

    let cp_log = data.join("control-plane.log");
    let cp_env = [
        ("database_url", format!("sqlite://{}", data.join("portcullis.db").display())),
        ("listen", format!("127.0.0.1:{}", ports.control_plane)),
        ("edge_listen", format!("127.0.0.1:{}", ports.edge_channel)),
        ("issuer", control_plane.clone()),
        ("edge_secret", secrets.edge_secret.clone()),
        ("bootstrap_token", secrets.admin_token.clone()),
        ("oidc_issuer", idp_issuer.clone()),
        ("oidc_client_id", "portcullis-portal".to_owned()),
        ("oidc_client_secret", secrets.portal_client_secret.clone()),
        ("tls_cert", tls.server_cert.display().to_string()),
        ("tls_key", tls.server_key.display().to_string()),
        // Sessions only for ID tokens the development IdP signed for the edge.
        ("login_idps", format!("[{{ issuer = \"{idp_issuer}\", audiences = [\"portcullis-edge\"] }}]")),
    ];
    let mut plane = spawn("control plane", &["control-plane"], &cp_env, &cp_log)?;
    wait_ready(&client, &format!("{control_plane}/readyz"), "control plane", &mut plane, &cp_log).await?;
    apply_policy(&client, &control_plane, &secrets.admin_token, &policy(ports)).await?;

    let edge_log = data.join("edge.log");
    let edge_env = [
        ("listen", format!("127.0.0.1:{}", ports.edge)),
        ("metrics_listen", format!("127.0.0.1:{}", ports.metrics)),
        ("control_plane_url", format!("https://127.0.0.1:{}", ports.edge_channel)),
        ("control_plane_ca", tls.ca_cert.display().to_string()),
        ("session_issuer", control_plane.clone()),
        ("edge_secret", secrets.edge_secret.clone()),
        ("edge_id", "quickstart-edge".to_owned()),
        ("oidc_issuer", idp_issuer.clone()),
        ("oidc_client_id", "portcullis-edge".to_owned()),
        ("oidc_client_secret", secrets.edge_client_secret.clone()),
        ("oidc_scopes", "email,profile,groups".to_owned()),
        ("oidc_post_logout_redirect_url", format!("{demo_origin}/")),
        ("cookie_secure", "false".to_owned()),
    ];
    let mut edge = spawn("edge", &["edge"], &edge_env, &edge_log)?;
    let edge_ready = format!("http://127.0.0.1:{}/readyz", ports.metrics);
    wait_ready(&client, &edge_ready, "edge", &mut edge, &edge_log).await?;

    println!("{}", banner(ports, &secrets, &data, &tls.ca_cert));
    let outcome = {
        let mut children = [&mut plane, &mut edge];
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(()),
            name = watch(&mut children) => Err(name),
        }
    };
    println!("Stopping…");
    edge.stop();
    plane.stop();
    match outcome {
        Ok(()) => {
            println!("Stopped.");
            Ok(ExitCode::SUCCESS)
        }
        Err(name) => bail!("the {name} stopped unexpectedly; see the logs in {}", data.display()),
    }
}

/// Resolves with the name of the first child that exits.
async fn watch(children: &mut [&mut ChildProcess]) -> &'static str {
    loop {
        for child in children.iter_mut() {
            if child.exited().is_some() {
                return child.name;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
