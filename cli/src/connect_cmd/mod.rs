//! `portcullis connect HOST:PORT [--edge URL] [--listen ADDR]`: reaches a
//! TCP route through an edge with `CONNECT`, as the logged-in user.
//!
//! The session token comes from the cache (`token_cache`), else from a login
//! (`login`: device flow, or a browser through a loopback redirect); a token
//! the edge refuses (407: expired, terminated, revoked) is forgotten and the
//! user logs in again, once. A session refused right after its login is not
//! followed by another login (that would only repeat it): the command says so
//! and stops. Then either stdin/stdout is the flow (so `ssh -o
//! ProxyCommand='portcullis connect %h:%p'` works), or `--listen` accepts
//! local clients, each with its own flow. When the edge closes a flow, the
//! command asks the edge why (`/.portcullis/session`) and, if access ended,
//! says so ("session terminated by an administrator: …") and exits with
//! status 2.

mod edge_api;
mod login;
mod token_cache;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

use edge_api::{EdgeApi, Refused, Tunnel};
use login::LoginMode;
use token_cache::{CachedSession, TokenCache};

/// Exit status when the edge ended access (session terminated, user locked, policy).
const ACCESS_ENDED: u8 = 2;

/// `portcullis connect` arguments.
#[derive(Args)]
pub struct ConnectArgs {
    /// The TCP route to reach, as the policy names it, e.g. ssh.internal:22.
    target: String,
    /// The edge to go through.
    #[arg(long, env = "PORTCULLIS_EDGE", default_value = "http://127.0.0.1:8080")]
    edge: String,
    /// Accept local clients on this address (each gets its own flow) instead of using stdin/stdout.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// How to log in when there is no valid cached session.
    #[arg(long, value_enum, default_value_t = LoginMode::Auto)]
    login: LoginMode,
    /// PEM file of the CA certificate(s) an https:// edge must chain to, trusted instead of the system's.
    #[arg(long, alias = "ca-cert", env = "PORTCULLIS_EDGE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Only print the login URL; do not try to open a browser.
    #[arg(long)]
    no_browser: bool,
}

/// Opens flows with a cached or fresh session.
struct Connector {
    api: EdgeApi,
    cache: TokenCache,
    target: String,
    mode: LoginMode,
    open_browser: bool,
    session: Mutex<Option<CachedSession>>,
    /// The token of this process's latest login until the edge first admits it.
    unproven: std::sync::Mutex<Option<String>>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Connector {
    /// The cache key: a session token counts only on the route it was
    /// issued for, so sessions are kept per edge and target.
    fn cache_key(&self) -> String {
        token_cache::key(&self.api.base, &self.target)
    }

    /// The session to use: the one in hand, the cached one, or a new login.
    async fn session(&self) -> anyhow::Result<CachedSession> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref() {
            return Ok(session.clone());
        }
        let session = match self.cache.get(&self.cache_key(), unix_now()) {
            Some(session) => session,
            None => self.log_in().await?,
        };
        *current = Some(session.clone());
        Ok(session)
    }

    async fn log_in(&self) -> anyhow::Result<CachedSession> {
        let session = login::log_in(&self.api, &self.target, self.mode, self.open_browser).await?;
        *self.unproven.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(session.token.clone());
        if let Err(error) = self.cache.put(&self.cache_key(), session.clone()) {
            eprintln!("portcullis: cannot keep the session in {}: {error:#}", self.cache.path().display());
        }
        Ok(session)
    }

    /// Drops `stale` (refused by the edge) and logs in again, once for all callers.
    async fn renew(&self, stale: &CachedSession) -> anyhow::Result<CachedSession> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref().filter(|s| s.token != stale.token) {
            return Ok(session.clone());
        }
        let _ = self.cache.forget(&self.cache_key());
        let session = self.log_in().await?;
        *current = Some(session.clone());
        Ok(session)
    }

    /// Before a login: asks the edge about the target without a credential,
    /// so an unknown route or a closed edge is reported as such instead of
    /// starting a login that cannot help. `Some` is a refusal a login would
    /// not change (anything but 407).
    async fn preflight(&self) -> anyhow::Result<Option<Refused>> {
        if self.session.lock().await.is_some() || self.cache.get(&self.cache_key(), unix_now()).is_some() {
            return Ok(None);
        }
        match self.api.open(&self.target, None).await? {
            Err(refused) if refused.status != 407 => Ok(Some(refused)),
            // 407 (log in), or a route open without a login: the login goes ahead as before.
            _ => Ok(None),
        }
    }

    /// A tunnel, logging in again once if the edge refuses the session —
    /// unless it comes from a login the edge has not admitted yet: another
    /// login would only be refused again.
    async fn open(&self) -> anyhow::Result<Result<(Tunnel, CachedSession), Refused>> {
        if let Some(refused) = self.preflight().await? {
            return Ok(Err(refused));
        }
        let mut session = self.session().await?;
        let mut renewed = false;
        loop {
            match self.api.open(&self.target, Some(&session.token)).await? {
                Ok(tunnel) => {
                    self.admitted(&session.token);
                    return Ok(Ok((tunnel, session)));
                }
                Err(refused) if refused.status == 407 && self.never_admitted(&session.token) => {
                    let _ = self.cache.forget(&self.cache_key());
                    return Ok(Err(refused_after_login(refused)));
                }
                Err(refused) if refused.status == 407 && !renewed => {
                    eprintln!("portcullis: {} — logging in again", refused.message.trim_end_matches('.'));
                    session = self.renew(&session).await?;
                    renewed = true;
                }
                Err(refused) => return Ok(Err(refused)),
            }
        }
    }

    /// True when `token` comes from this process's latest login and the
    /// edge has not admitted it yet.
    fn never_admitted(&self, token: &str) -> bool {
        self.unproven.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_deref() == Some(token)
    }

    /// Records that the edge admitted `token`.
    fn admitted(&self, token: &str) {
        let mut unproven = self.unproven.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if unproven.as_deref() == Some(token) {
            *unproven = None;
        }
    }

    /// After the edge closed a flow: `Some(message)` when access ended.
    async fn why_closed(&self, session: &CachedSession) -> Option<String> {
        let mut path = reqwest::Url::parse("http://x/session").ok()?;
        path.query_pairs_mut().append_pair("target", &self.target);
        let query = path.query().unwrap_or_default();
        match self.api.get(&format!("/session?{query}"), &session.token).await {
            Ok(answer) if answer.status == 401 => {
                let _ = self.cache.forget(&self.cache_key());
                Some(answer.message())
            }
            Ok(answer) if answer.status == 200 && answer.body.pointer("/target/allowed") == Some(&false.into()) => {
                let reason = answer.body.pointer("/target/reason").and_then(|r| r.as_str()).unwrap_or("denied");
                Some(format!("access to {} ended: {reason}", self.target))
            }
            Ok(_) => None,
            Err(error) => {
                Some(format!("the flow to {} was closed, and the edge cannot say why: {error:#}", self.target))
            }
        }
    }
}

/// The edge's refusal of a session it was given moments ago by a login.
fn refused_after_login(refused: Refused) -> Refused {
    let why = if refused.message.is_empty() { "no reason given".to_owned() } else { refused.message };
    let message = format!(
        "the edge refused the session right after the login ({}); another login would not help: try again \
         later, or ask your administrator",
        why.trim_end_matches('.')
    );
    Refused { message, ..refused }
}

fn refused_line(target: &str, refused: &Refused) -> String {
    let message = if refused.message.is_empty() { "the edge refused".to_owned() } else { refused.message.clone() };
    let code = if refused.code.is_empty() { String::new() } else { format!(", {}", refused.code) };
    format!("cannot reach {target}: {message} (HTTP {}{code})", refused.status)
}

/// Runs `portcullis connect`.
pub fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(connect(args));
    // Reading stdin blocks a thread that nothing can wake; do not wait for it.
    runtime.shutdown_background();
    result
}

async fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let connector = Arc::new(Connector {
        api: EdgeApi::new(&args.edge, args.ca_file.as_deref())?,
        cache: TokenCache::for_user()?,
        target: args.target,
        mode: args.login,
        open_browser: !args.no_browser,
        session: Mutex::new(None),
        unproven: std::sync::Mutex::new(None),
    });
    match args.listen {
        Some(address) => listen(connector, address).await,
        None => stdio(&connector).await,
    }
}

/// stdin → flow → stdout, until the flow ends.
async fn stdio(connector: &Connector) -> anyhow::Result<ExitCode> {
    let (tunnel, session) = match connector.open().await? {
        Ok(opened) => opened,
        Err(refused) => {
            eprintln!("portcullis: {}", refused_line(&connector.target, &refused));
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut stdout = tokio::io::stdout();
    stdout.write_all(&tunnel.early).await?;
    stdout.flush().await?;
    let (mut from_edge, mut to_edge) = tokio::io::split(tunnel.stream);
    let stdin_closed = Arc::new(AtomicBool::new(false));
    let closed = Arc::clone(&stdin_closed);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let _ = tokio::io::copy(&mut stdin, &mut to_edge).await;
        closed.store(true, Ordering::SeqCst);
        let _ = to_edge.shutdown().await;
    });
    let _ = tokio::io::copy(&mut from_edge, &mut stdout).await;
    let _ = stdout.flush().await;
    if stdin_closed.load(Ordering::SeqCst) {
        return Ok(ExitCode::SUCCESS);
    }
    match connector.why_closed(&session).await {
        Some(message) => {
            eprintln!("portcullis: {message}");
            Ok(ExitCode::from(ACCESS_ENDED))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Accepts local clients on `address`, one flow each, until access ends.
async fn listen(connector: Arc<Connector>, address: SocketAddr) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
    if let Some(refused) = connector.preflight().await? {
        eprintln!("portcullis: {}", refused_line(&connector.target, &refused));
        return Ok(ExitCode::FAILURE);
    }
    connector.session().await?;
    eprintln!(
        "portcullis: listening on {} for {} through {}",
        listener.local_addr()?,
        connector.target,
        connector.api.base
    );
    let (ended, mut ended_rx) = mpsc::channel::<String>(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                tokio::spawn(serve_client(Arc::clone(&connector), client, ended.clone()));
            }
            Some(message) = ended_rx.recv() => {
                eprintln!("portcullis: {message}");
                return Ok(ExitCode::from(ACCESS_ENDED));
            }
        }
    }
}

async fn serve_client(connector: Arc<Connector>, mut client: TcpStream, ended: mpsc::Sender<String>) {
    let _ = client.set_nodelay(true);
    let (tunnel, session) = match connector.open().await {
        Ok(Ok(opened)) => opened,
        Ok(Err(refused)) => {
            eprintln!("portcullis: {}", refused_line(&connector.target, &refused));
            return;
        }
        Err(error) => {
            eprintln!("portcullis: {error:#}");
            return;
        }
    };
    if client.write_all(&tunnel.early).await.is_err() {
        return;
    }
    let (mut from_client, mut to_client) = client.split();
    let (mut from_edge, mut to_edge) = tokio::io::split(tunnel.stream);
    let up = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_edge).await;
        let _ = to_edge.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut from_edge, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::pin!(up, down);
    // The flow is over when the edge's side ends; the client closing its
    // side only half-closes it.
    tokio::select! {
        () = &mut down => {}
        () = &mut up => down.await,
    }
    if let Some(message) = connector.why_closed(&session).await {
        let _ = ended.try_send(message);
    }
}
