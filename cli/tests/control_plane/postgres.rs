//! A fresh PostgreSQL database per test on 127.0.0.1:5432 (user `postgres`,
//! trust authentication), dropped afterwards. When the server is unusable
//! the test fails loudly under `CI=true` and otherwise says it is skipping —
//! never silently.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The server the tests use.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Control planes open up to 17 connections each and the server allows
/// about 100: at most two PostgreSQL tests of this binary at once.
static SLOTS: Semaphore = Semaphore::const_new(2);

/// A database that exists until dropped.
pub struct Database {
    /// Connection URL of the database.
    pub url: String,
    name: String,
    _slot: SemaphorePermit<'static>,
}

/// Creates a fresh database, or returns `None` after saying why the test is skipped.
pub async fn fresh(test: &str) -> Option<Database> {
    let slot = SLOTS.acquire().await.expect("the semaphore is never closed");
    let mut admin = match admin().await {
        Ok(admin) => admin,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL is required when CI=true, but {SERVER}/postgres is unusable: {why}");
            }
            // Straight to the process's standard error: `eprintln!` would be captured
            // by the test harness and never shown for a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "skipping PostgreSQL: {SERVER}/postgres is unusable ({why}); test `{test}` did not run"
            );
            return None;
        }
    };
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("portcullis_cli_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap_or_else(|e| panic!("CREATE {name}: {e}"));
    let _ = admin.close().await;
    Some(Database { url: format!("{SERVER}/{name}"), name, _slot: slot })
}

async fn admin() -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&format!("{SERVER}/postgres"))).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// Drops the database, even when the test panicked; runs on its own thread
/// and runtime because `Drop` cannot await.
impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut admin = admin().await?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                admin.execute(sql.as_str()).await.map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(why)) = dropped {
            eprintln!("note: could not drop database {}: {why}", self.name);
        }
    }
}
