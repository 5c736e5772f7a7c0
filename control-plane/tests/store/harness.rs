//! Backends for the suite: a fresh SQLite file or a fresh PostgreSQL database
//! per test, always cleaned up (best effort) even when the test panics.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_control_plane::store::SqlStore;
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::Semaphore;

/// The PostgreSQL server (`PORTCULLIS_TEST_POSTGRES` overrides it) and the
/// database the harness connects to in order to create and drop per-test ones.
const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const POSTGRES_ADMIN_DB: &str = "test";

/// Per-process counter that makes folder and database names unique.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// At most this many PostgreSQL tests at once: each store may open 16
/// connections and the server allows about 100.
static POSTGRES_SLOTS: Semaphore = Semaphore::const_new(4);

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs `test` on a store over a new SQLite file, then deletes its folder.
pub async fn run_sqlite<F, Fut>(name: &str, test: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = std::env::temp_dir().join(format!("portcullis-store-{name}-{}", unique_suffix()));
    let url = format!("sqlite://{}", dir.join("control-plane.db").display());
    let store = SqlStore::connect(&url).await.unwrap_or_else(|e| panic!("opening SQLite at {url}: {e}"));
    let outcome = tokio::spawn(test(store.clone())).await;
    store.close().await;
    remove_dir(&dir);
    finish(outcome);
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("note: could not remove {}: {e}", dir.display());
    }
}

/// Runs `test` on a store over a new PostgreSQL database, then drops it.
///
/// An unreachable server skips the test loudly, or fails it when `CI=true`.
pub async fn run_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(SqlStore) -> Fut,
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
    let database = format!("portcullis_t_{}", unique_suffix());
    admin
        .execute(format!("CREATE DATABASE {database}").as_str())
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {database}: {e}"));
    let url = format!("{server}/{database}");
    let outcome = match SqlStore::connect(&url).await {
        Ok(store) => {
            let outcome = tokio::spawn(test(store.clone())).await;
            store.close().await;
            Ok(outcome)
        }
        Err(e) => Err(e),
    };
    if let Err(e) = admin.execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str()).await {
        eprintln!("note: could not drop database {database}: {e}");
    }
    let _ = admin.close().await;
    match outcome {
        Ok(outcome) => finish(outcome),
        Err(e) => panic!("opening PostgreSQL at {url}: {e}"),
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
