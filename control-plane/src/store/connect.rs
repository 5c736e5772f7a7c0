//! Opening the database: SQLite (default; one file, created on first start,
//! WAL, one writer connection) or PostgreSQL (several replicas share it).
//! Migrations embedded at build time are applied on every start.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use super::{StoreError, StoreResult};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The SQL store for both backends.
#[derive(Clone)]
pub struct SqlStore {
    /// Writes (one connection on SQLite: SQLite has one writer anyway, and
    /// this keeps transactions from failing to upgrade their locks).
    pub(crate) writer: AnyPool,
    /// Reads (several connections; WAL lets them run beside the writer).
    pub(crate) reader: AnyPool,
    pub(crate) backend: Backend,
    url: String,
    /// Group commit of session terminations (started on first use).
    pub(crate) terminations: super::group_commit::TerminationQueue,
    /// Group commit of edge reports (started on first use).
    pub(crate) reports: super::report_batch::ReportQueue,
    /// The newest change sequence this process committed (see
    /// [`SqlStore::commit_change`]); what wakes this replica's edge streams.
    pub(crate) committed: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Which outbox sinks hear of which actions.
    pub(crate) outbox: std::sync::Arc<super::outbox::OutboxRouting>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlStore({:?})", self.backend)
    }
}

impl SqlStore {
    /// Connects to `url` (`sqlite://path` or `postgres://…`), creating a
    /// SQLite file and its folder if needed, and applies migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Corrupt(format!(
                "unsupported database URL scheme in `{}`; expected sqlite:// or postgres://",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let store = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url)?;
                let writer = sqlite_pool(&url, 1).await?;
                writer.execute("PRAGMA journal_mode=WAL").await?;
                SQLITE_MIGRATIONS.run(&writer).await?;
                let reader = sqlite_pool(&url, 4).await?;
                Self {
                    writer,
                    reader,
                    backend,
                    url,
                    terminations: Default::default(),
                    reports: Default::default(),
                    committed: Default::default(),
                    outbox: Default::default(),
                }
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(url)?;
                // Writers queue on the change-log lock holding a connection
                // each; a pool of their own keeps reads (streams, /readyz,
                // token checks) from waiting behind them.
                let writer = AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.clone())
                    .await?;
                POSTGRES_MIGRATIONS.run(&writer).await?;
                let reader = AnyPoolOptions::new()
                    .max_connections(12)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                Self {
                    writer,
                    reader,
                    backend,
                    url: url.to_owned(),
                    terminations: Default::default(),
                    reports: Default::default(),
                    committed: Default::default(),
                    outbox: Default::default(),
                }
            }
        };
        Ok(store)
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL it was opened with (for PostgreSQL LISTEN connections).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// Adds `mode=rwc` so the file is created, and creates its folder.
fn sqlite_url(url: &str) -> StoreResult<String> {
    // The file and any folder made for it are private (0600 / 0700) before
    // SQLite opens it; its `-wal` and `-shm` files take the file's mode.
    if let Some(path) = crate::files::sqlite_path(url) {
        crate::files::prepare_sqlite_file(path)
            .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", path.display())))?;
    }
    Ok(if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") })
}

async fn sqlite_pool(url: &str, connections: u32) -> StoreResult<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _| {
            Box::pin(async move {
                // FULL: a commit is on disk before it returns, so an answered
                // termination survives a crash of the process or the machine.
                conn.execute("PRAGMA busy_timeout=10000; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON").await?;
                Ok(())
            })
        })
        .connect_with(AnyConnectOptions::from_str(url)?)
        .await?)
}
