//! A scratch PostgreSQL database for one harness run, on the local server
//! (127.0.0.1:5432, user `postgres`, trust authentication): created fresh as
//! `portcullis_<label>_<pid>` and dropped (`WITH (FORCE)`, so connections a
//! killed control plane left behind do not keep it) when the handle drops.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use sqlx::{Connection, Executor, PgConnection};

/// The server the harnesses use.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database that exists until this handle drops.
pub struct ScratchDatabase {
    /// Its connection URL, for a control plane's `database_url`.
    pub url: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates `portcullis_<label>_<pid>`, replacing a leftover of that name.
    pub async fn create(label: &str) -> Result<Self> {
        let name = format!("portcullis_{label}_{}", std::process::id());
        run_on_server(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        run_on_server(&format!("CREATE DATABASE {name}")).await?;
        Ok(Self { url: format!("{SERVER}/{name}"), name })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Runs one statement on the server's `postgres` database.
async fn run_on_server(sql: &str) -> Result<()> {
    let connect = PgConnection::connect(&format!("{SERVER}/postgres"));
    let mut connection = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| anyhow!("{SERVER}/postgres did not answer within 5 s"))?
        .with_context(|| format!("connect to {SERVER}/postgres"))?;
    connection.execute(sql).await.with_context(|| sql.to_owned())?;
    let _ = connection.close().await;
    Ok(())
}

/// `Drop` cannot await, so the statement runs on a thread of its own with
/// its own runtime (also when a run panicked).
impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(run_on_server(&sql))
        })
        .join();
        match dropped {
            Ok(Ok(())) => eprintln!("dropped database {}", self.name),
            Ok(Err(why)) => eprintln!("could not drop database {}: {why:#}", self.name),
            Err(_) => eprintln!("could not drop database {}: the dropping thread panicked", self.name),
        }
    }
}
