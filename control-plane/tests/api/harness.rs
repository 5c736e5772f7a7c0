//! Backends for the suite: each test gets a control plane built with
//! `portcullis_control_plane::build` over a fresh SQLite file or a fresh
//! PostgreSQL database, always cleaned up (best effort) even when the test
//! panics. Follows the store suite's harness (`tests/store/harness.rs`).

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::{middleware, Router};
use portcullis_control_plane::app::App;
use portcullis_control_plane::store::ChangeStore;
use portcullis_control_plane::Config;
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::Semaphore;

use crate::client::{record_route, Call, Listener};

/// The PostgreSQL server (`PORTCULLIS_TEST_POSTGRES` overrides it) and the
/// database connected to in order to create and drop per-test ones.
const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const POSTGRES_ADMIN_DB: &str = "test";

/// The first admin token (scope `admin`), from the `bootstrap_token` key.
pub const BOOTSTRAP_TOKEN: &str = "pcat_api-suite-bootstrap-token-000000000000";
/// The edge enrollment secret.
pub const EDGE_SECRET: &str = "api-suite-edge-enrollment-secret-0123456789";
/// The issuer of session tokens.
pub const ISSUER: &str = "https://control-plane.api-suite.test";
/// Kept small so the suite can exceed it cheaply.
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// Bound on `?wait=true`.
pub const RECEIPT_WAIT_MS: u64 = 3_000;
/// The edge id calls to the edge channel carry unless told otherwise.
pub const EDGE_ID: &str = "edge-a";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// At most this many PostgreSQL tests at once: each control plane may open
/// 16 pooled connections plus a LISTEN connection; the server allows ~100.
static POSTGRES_SLOTS: Semaphore = Semaphore::const_new(4);

/// Which database the control plane runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

/// A running control plane and its two routers.
pub struct TestApp {
    /// The shared state (store, feed, authority).
    pub app: Arc<App>,
    api: Router,
    edge: Router,
}

impl TestApp {
    fn new(app: Arc<App>) -> Self {
        let api = portcullis_control_plane::api::router(Arc::clone(&app)).layer(middleware::from_fn(record_route));
        let edge =
            portcullis_control_plane::edge_channel::router(Arc::clone(&app)).layer(middleware::from_fn(record_route));
        Self { app, api, edge }
    }

    /// A request to the admin listener with the bootstrap admin token.
    pub fn api(&self, method: Method, uri: &str) -> Call {
        Call::new(self.api.clone(), Listener::Admin, method, uri).bearer(BOOTSTRAP_TOKEN)
    }

    /// `GET` on the admin listener as the bootstrap admin.
    pub fn get(&self, uri: &str) -> Call {
        self.api(Method::GET, uri)
    }

    /// `POST` on the admin listener as the bootstrap admin.
    pub fn post(&self, uri: &str) -> Call {
        self.api(Method::POST, uri)
    }

    /// A request to the edge listener as edge [`EDGE_ID`].
    pub fn edge(&self, method: Method, uri: &str) -> Call {
        Call::new(self.edge.clone(), Listener::Edge, method, uri)
            .bearer(EDGE_SECRET)
            .header("x-portcullis-edge-id", EDGE_ID)
    }

    /// The change-log head.
    pub async fn head(&self) -> u64 {
        self.app.store.head_seq().await.expect("head_seq")
    }
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn config(database_url: &str) -> Config {
    let text = format!(
        "database_url = {database_url:?}\nissuer = {ISSUER:?}\nedge_secret = {EDGE_SECRET:?}\n\
         bootstrap_token = {BOOTSTRAP_TOKEN:?}\nmax_body_bytes = {MAX_BODY_BYTES}\nreceipt_wait_ms = {RECEIPT_WAIT_MS}\n"
    );
    Config::load(&text, |_| None).unwrap_or_else(|e| panic!("test configuration: {e}"))
}

/// Runs `test` against a control plane on `backend`, then cleans up.
pub async fn run<F, Fut>(backend: Backend, name: &str, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Sqlite => run_sqlite(name, test).await,
        Backend::Postgres => run_postgres(name, test).await,
    }
}

async fn run_sqlite<F, Fut>(name: &str, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = std::env::temp_dir().join(format!("portcullis-api-{name}-{}", unique_suffix()));
    let url = format!("sqlite://{}", dir.join("control-plane.db").display());
    let app = portcullis_control_plane::build(config(&url))
        .await
        .unwrap_or_else(|e| panic!("building the control plane on {url}: {e}"));
    let outcome = tokio::spawn(test(TestApp::new(Arc::clone(&app)))).await;
    app.store.close().await;
    remove_dir(dir);
    finish(outcome);
}

fn remove_dir(dir: PathBuf) {
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("note: could not remove {}: {e}", dir.display());
    }
}

async fn run_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _slot = POSTGRES_SLOTS.acquire().await.expect("the semaphore is never closed");
    let server = std::env::var("PORTCULLIS_TEST_POSTGRES").unwrap_or_else(|_| POSTGRES_SERVER.to_owned());
    let server = server.trim_end_matches('/');
    let admin_url = format!("{server}/{POSTGRES_ADMIN_DB}");
    let mut admin = match admin_connection(&admin_url).await {
        Ok(conn) => conn,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL is required when CI=true, but {admin_url} is unusable: {why}");
            }
            // Straight to the process's stderr: `eprintln!` would be captured
            // by the test harness and never shown for a passing test.
            let line = format!("skipping PostgreSQL: {admin_url} is unusable ({why}); `{name}` ran on SQLite only\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            return;
        }
    };
    let database = format!("portcullis_api_{}", unique_suffix());
    admin
        .execute(format!("CREATE DATABASE {database}").as_str())
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {database}: {e}"));
    let url = format!("{server}/{database}");
    let outcome = match portcullis_control_plane::build(config(&url)).await {
        Ok(app) => {
            let outcome = tokio::spawn(test(TestApp::new(Arc::clone(&app)))).await;
            app.store.close().await;
            Ok(outcome)
        }
        Err(e) => Err(e),
    };
    // FORCE also ends the control plane's LISTEN connection.
    if let Err(e) = admin.execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str()).await {
        eprintln!("note: could not drop database {database}: {e}");
    }
    let _ = admin.close().await;
    match outcome {
        Ok(outcome) => finish(outcome),
        Err(e) => panic!("building the control plane on {url}: {e}"),
    }
}

async fn admin_connection(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// Re-raises the test's panic, if it had one, after cleaning up.
fn finish(outcome: Result<(), tokio::task::JoinError>) {
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}
