//! Scratch databases shared by the store and API suites: a fresh SQLite
//! folder or a fresh PostgreSQL database per test, cleaned up (best effort)
//! even when the test panics. PostgreSQL is `postgres://postgres@127.0.0.1:5432`
//! unless `PORTCULLIS_TEST_POSTGRES` names another server; when it is
//! unreachable the test is skipped loudly, or fails when `CI=true`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
/// The database connected to in order to create and drop per-test ones.
const POSTGRES_ADMIN_DB: &str = "test";

/// Per-process counter that makes folder and database names unique.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// At most this many PostgreSQL tests at once: each store may open 16
/// connections and the server allows about 100.
static POSTGRES_SLOTS: Semaphore = Semaphore::const_new(4);

/// A name suffix unique across processes and calls.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A new folder path under the system temp dir (not created).
pub fn temp_dir(prefix: &str, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-{name}-{}", unique_suffix()))
}

/// Removes a scratch folder, saying so if it cannot.
pub fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("note: could not remove {}: {e}", dir.display());
    }
}

/// Re-raises the test's panic, if it had one, after cleaning up.
pub fn finish(outcome: Result<(), tokio::task::JoinError>) {
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// A per-test PostgreSQL database; drop it with [`ScratchPostgres::drop_database`].
pub struct ScratchPostgres {
    /// Its URL.
    pub url: String,
    database: String,
    admin: PgConnection,
    _slot: SemaphorePermit<'static>,
}

/// Creates a fresh database named `<prefix>_<unique>`; `None` when the
/// server is unreachable outside CI (after saying so on stderr).
pub async fn scratch_postgres(prefix: &str, test_name: &str) -> Option<ScratchPostgres> {
    let slot = POSTGRES_SLOTS.acquire().await.expect("the semaphore is never closed");
    let server = std::env::var("PORTCULLIS_TEST_POSTGRES").unwrap_or_else(|_| POSTGRES_SERVER.to_owned());
    let server = server.trim_end_matches('/');
    let admin_url = format!("{server}/{POSTGRES_ADMIN_DB}");
    let connected = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    };
    let mut admin = match connected {
        Ok(conn) => conn,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL is required when CI=true, but {admin_url} is unusable: {why}");
            }
            // Straight to the process's stderr: `eprintln!` would be captured
            // by the test harness and never shown for a passing test.
            let line =
                format!("skipping PostgreSQL: {admin_url} is unusable ({why}); `{test_name}` ran on SQLite only\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            return None;
        }
    };
    let database = format!("{prefix}_{}", unique_suffix());
    admin
        .execute(format!("CREATE DATABASE {database}").as_str())
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {database}: {e}"));
    Some(ScratchPostgres { url: format!("{server}/{database}"), database, admin, _slot: slot })
}

impl ScratchPostgres {
    /// Drops the database (FORCE also ends any LISTEN connection on it).
    pub async fn drop_database(mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database);
        if let Err(e) = self.admin.execute(statement.as_str()).await {
            eprintln!("note: could not drop database {}: {e}", self.database);
        }
        let _ = self.admin.close().await;
    }
}
