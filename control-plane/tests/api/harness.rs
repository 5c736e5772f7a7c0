//! Backends for the suite: each test gets a control plane built with
//! `portcullis_control_plane::build` over a fresh SQLite file or a fresh
//! PostgreSQL database, always cleaned up (best effort) even when the test
//! panics. Follows the store suite's harness (`tests/store/harness.rs`).

use std::future::Future;
use std::sync::Arc;

use axum::http::Method;
use axum::{middleware, Router};
use portcullis_control_plane::app::App;
use portcullis_control_plane::store::ChangeStore;
use portcullis_control_plane::Config;

#[path = "../support/scratch.rs"]
mod scratch;

use scratch::{finish, remove_dir, scratch_postgres, temp_dir};

use crate::client::{record_route, Call, Listener};
use crate::edge_auth::TestEdges;

/// The first admin token (scope `admin`), from the `bootstrap_token` key.
pub const BOOTSTRAP_TOKEN: &str = "pcat_api-suite-bootstrap-token-000000000000";
/// The bootstrap secret test edges enroll with.
pub const EDGE_SECRET: &str = "api-suite-edge-enrollment-secret-0123456789";
/// The issuer of session tokens.
pub const ISSUER: &str = "https://control-plane.api-suite.test";
/// Kept small so the suite can exceed it cheaply.
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// Bound on `?wait=true`.
pub const RECEIPT_WAIT_MS: u64 = 3_000;
/// The edge id calls to the edge channel carry unless told otherwise.
pub const EDGE_ID: &str = "edge-a";

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
    /// Enrolled test edges.
    pub edges: Arc<TestEdges>,
}

impl TestApp {
    fn new(app: Arc<App>) -> Self {
        let api = portcullis_control_plane::api::router(Arc::clone(&app)).layer(middleware::from_fn(record_route));
        let edge =
            portcullis_control_plane::edge_channel::router(Arc::clone(&app)).layer(middleware::from_fn(record_route));
        let edges = Arc::new(TestEdges::new(edge.clone()));
        Self { app, api, edge, edges }
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

    /// A request to the edge listener as edge [`EDGE_ID`] (another edge
    /// with `.header("x-portcullis-edge-id", id)`), with an assertion of
    /// that edge, enrolled on first use.
    pub fn edge(&self, method: Method, uri: &str) -> Call {
        Call::new(self.edge.clone(), Listener::Edge, method, uri)
            .signed_by_edge(Arc::clone(&self.edges), EDGE_ID)
            .stream_key(self.app.stream_key.public_key())
    }

    /// The change-log head.
    pub async fn head(&self) -> u64 {
        self.app.store.head_seq().await.expect("head_seq")
    }
}

fn config(database_url: &str, extra: &str) -> Config {
    let mut text = format!(
        "database_url = {database_url:?}\nissuer = {ISSUER:?}\nedge_secret = {EDGE_SECRET:?}\n\
         bootstrap_token = {BOOTSTRAP_TOKEN:?}\nmax_body_bytes = {MAX_BODY_BYTES}\nreceipt_wait_ms = {RECEIPT_WAIT_MS}\n\
         key_encryption_key = \"api-suite-key-encryption-key-0123456789\"\nlogin_idps = [{}]\n",
        portcullis_dev_idp::test_issuer::TestIssuer::shared().login_idp()
    );
    text.push_str(extra);
    Config::load(&text, |name| (name == HOOK_SECRET_ENV).then(|| "api-suite-webhook-secret".to_owned()))
        .unwrap_or_else(|e| panic!("test configuration: {e}"))
}

/// The environment variable the suite's configuration may name as a
/// relying party's `secret_env`.
pub const HOOK_SECRET_ENV: &str = "API_SUITE_HOOK_SECRET";

/// Runs `test` against a control plane on `backend`, then cleans up.
pub async fn run<F, Fut>(backend: Backend, name: &str, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_configured(backend, name, "", test).await;
}

/// Same, with `extra` TOML appended to the suite's configuration.
pub async fn run_configured<F, Fut>(backend: Backend, name: &str, extra: &str, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Sqlite => run_sqlite(name, extra, test).await,
        Backend::Postgres => run_postgres(name, extra, test).await,
    }
}

async fn run_sqlite<F, Fut>(name: &str, extra: &str, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = temp_dir("portcullis-api", name);
    let url = format!("sqlite://{}", dir.join("control-plane.db").display());
    let app = portcullis_control_plane::build(config(&url, extra))
        .await
        .unwrap_or_else(|e| panic!("building the control plane on {url}: {e}"));
    let outcome = tokio::spawn(test(TestApp::new(Arc::clone(&app)))).await;
    app.store.close().await;
    remove_dir(&dir);
    finish(outcome);
}

async fn run_postgres<F, Fut>(name: &str, extra: &str, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(database) = scratch_postgres("portcullis_api", name).await else { return };
    let outcome = match portcullis_control_plane::build(config(&database.url, extra)).await {
        Ok(app) => {
            let outcome = tokio::spawn(test(TestApp::new(Arc::clone(&app)))).await;
            app.store.close().await;
            Ok(outcome)
        }
        Err(e) => Err(e),
    };
    let url = database.url.clone();
    database.drop_database().await;
    match outcome {
        Ok(outcome) => finish(outcome),
        Err(e) => panic!("building the control plane on {url}: {e}"),
    }
}
