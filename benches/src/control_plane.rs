//! Fixtures for the control-plane load harnesses: a fresh database (SQLite
//! in a temp dir, or a fresh PostgreSQL database on 127.0.0.1:5432), the
//! control plane built in-process (`server::build` + `api::router` served by
//! axum on 127.0.0.1:0, as `server::run` does), bulk-loaded sessions, and
//! latency percentiles.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_control_plane::app::App;
use portcullis_control_plane::config::Config;
use sqlx::{AnyPool, Connection, Executor, PgConnection};

/// The admin token the harness control plane bootstraps.
pub const ADMIN_TOKEN: &str = "pcat_bench_admin_token_0123456789abcdef";
/// The edge secret the harness control plane uses.
pub const EDGE_SECRET: &str = "bench-edge-secret-0123456789abcdef0123";
const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temp dir.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

impl Backend {
    /// Both, in table order.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A database that is removed when dropped.
pub struct BenchDb {
    /// Its URL.
    pub url: String,
    backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Database(String),
}

impl BenchDb {
    /// A fresh database; `None` (after saying so) when PostgreSQL is unusable.
    pub async fn create(backend: Backend, label: &str) -> Option<Self> {
        let unique = format!("{}_{label}", std::process::id());
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("portcullis-bench-{unique}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("create temp dir");
                let url = format!("sqlite://{}", dir.join("control-plane.db").display());
                Some(Self { url, backend, cleanup: Cleanup::Dir(dir) })
            }
            Backend::Postgres => {
                let name = format!("portcullis_bench_{unique}");
                let created = async {
                    let mut admin = PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres")).await?;
                    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
                    admin.execute(format!("CREATE DATABASE {name}").as_str()).await?;
                    admin.close().await
                };
                match tokio::time::timeout(Duration::from_secs(5), created).await {
                    Ok(Ok(())) => Some(Self {
                        url: format!("{POSTGRES_SERVER}/{name}"),
                        backend,
                        cleanup: Cleanup::Database(name),
                    }),
                    Ok(Err(e)) => skip(&e.to_string()),
                    Err(_) => skip("no answer within 5 s"),
                }
            }
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Removes the database (call before the runtime ends).
    pub async fn remove(self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database(name) => {
                if let Ok(mut admin) = PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres")).await {
                    let _ = admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                    let _ = admin.close().await;
                }
            }
        }
    }
}

fn skip(why: &str) -> Option<BenchDb> {
    eprintln!("skipping PostgreSQL: {POSTGRES_SERVER} is unusable ({why})");
    None
}

/// The control plane running in this process.
pub struct Server {
    /// Shared state (its store is the one the API uses).
    pub app: Arc<App>,
    /// Admin API base URL.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Builds the control plane on `database_url` and serves the admin API on a free port.
    pub async fn start(database_url: &str) -> Self {
        let env = |name: &str| match name {
            "PORTCULLIS_DATABASE_URL" => Some(database_url.to_owned()),
            "PORTCULLIS_EDGE_SECRET" => Some(EDGE_SECRET.to_owned()),
            "PORTCULLIS_BOOTSTRAP_TOKEN" => Some(ADMIN_TOKEN.to_owned()),
            "PORTCULLIS_KEY_ENCRYPTION_KEY" => Some("key-encryption-key-for-benchmarks-0123456789".to_owned()),
            "PORTCULLIS_LISTEN" | "PORTCULLIS_EDGE_LISTEN" => Some("127.0.0.1:0".to_owned()),
            _ => None,
        };
        let config = Config::load("", env).expect("valid configuration");
        let app = portcullis_control_plane::server::build(config).await.expect("build the control plane");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let service =
            portcullis_control_plane::api::router(Arc::clone(&app)).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, service).await;
        });
        Self { app, url, task }
    }

    /// Stops serving and closes the store.
    pub async fn stop(self) {
        self.task.abort();
        self.app.store.close().await;
    }
}

/// The id of generated session `i`: 32 hex digits, distinct per `i`.
pub fn session_id(i: usize) -> String {
    format!("{:016x}{:016x}", 0xbe4c_0000_0000_0000_u64 | i as u64, (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Inserts `count` sessions straight into the `sessions` table, in
/// transactions of 1,000 rows: session `i` belongs to `user{i % users}@corp.example`,
/// alternates between routes `wiki` and `admin`, was created at `base_ms + i`
/// and expires a day later; `ended` ones carry an end time and reason.
pub async fn insert_sessions(url: &str, count: usize, users: usize, ended: bool, base_ms: i64) {
    insert_sessions_at(url, 0..count, users, "corp.example", ended, base_ms).await;
}

/// As [`insert_sessions`], for the sessions numbered `range`: session `i`
/// belongs to `user{(i - range.start) % users}@{domain}` (so a second batch
/// of users can live beside the first under another domain).
pub async fn insert_sessions_at(
    url: &str,
    range: std::ops::Range<usize>,
    users: usize,
    domain: &str,
    ended: bool,
    base_ms: i64,
) {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.expect("connect for bulk load");
    let end_reason = if ended { "'bench'" } else { "NULL" };
    let first = range.start;
    for chunk in range.collect::<Vec<_>>().chunks(1_000) {
        let mut sql = String::from(
            "INSERT INTO sessions (id, subject, email, groups_json, idp_issuer, idp_session_id, route, created_ms, \
             last_seen_ms, expires_ms, auth_time_s, ended_ms, end_reason, source_addresses_json, user_agent, \
             edges_json, live_connections) VALUES ",
        );
        for (n, &i) in chunk.iter().enumerate() {
            let user = (i - first) % users;
            let route = if i % 2 == 0 { "wiki" } else { "admin" };
            let created = base_ms + i as i64;
            let ended_ms = if ended { (created + 1).to_string() } else { "NULL".to_owned() };
            if n > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "('{}', 'sub-{user}', 'user{user}@{domain}', '[\"staff\"]', 'https://idp.corp.example', NULL, \
                 '{route}', {created}, {created}, {}, {}, {ended_ms}, {end_reason}, '[\"203.0.113.7\"]', 'bench', \
                 '[\"edge-1\"]', 0)",
                session_id(i),
                created + 86_400_000,
                created / 1000,
            ));
        }
        let mut tx = pool.begin().await.expect("begin");
        tx.execute(sql.as_str()).await.expect("bulk insert");
        tx.commit().await.expect("commit");
    }
    if url.starts_with("postgres") {
        pool.execute("ANALYZE sessions").await.expect("analyze");
    } else {
        pool.execute("ANALYZE").await.expect("analyze");
    }
    pool.close().await;
}

/// Latency summary of a sample, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Summarises durations.
pub fn summarize(samples: &mut [Duration]) -> Summary {
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    Summary { p50: at(0.50), p99: at(0.99), max: at(1.0) }
}

/// `cargo test --benches` passes `--list`; the harnesses then do nothing.
pub fn listing_only() -> bool {
    std::env::args().any(|a| a == "--list" || a == "--test")
}

/// The common `main` of the control-plane harnesses: unless cargo is only
/// listing benches, print the table `header`, then run `bench` for each
/// backend named on the command line (`sqlite`, `postgres`; all by default).
pub fn run_per_backend<F, Fut>(header: &str, bench: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if listing_only() {
        return;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("{header}");
    for backend in Backend::ALL {
        if filter.as_deref().is_some_and(|f| !backend.name().to_lowercase().starts_with(&f.to_lowercase())) {
            continue;
        }
        runtime.block_on(bench(backend));
    }
}
