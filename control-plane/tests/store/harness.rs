//! Backends for the suite: a fresh SQLite file or a fresh PostgreSQL database
//! per test, always cleaned up (best effort) even when the test panics.

use std::future::Future;

use portcullis_control_plane::store::SqlStore;

#[path = "../support/scratch.rs"]
pub mod scratch;

use scratch::{finish, remove_dir, scratch_postgres, temp_dir};

/// Runs `test` on a store over a new SQLite file, then deletes its folder.
pub async fn run_sqlite<F, Fut>(name: &str, test: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = temp_dir("portcullis-store", name);
    let url = format!("sqlite://{}", dir.join("control-plane.db").display());
    let store = SqlStore::connect(&url).await.unwrap_or_else(|e| panic!("opening SQLite at {url}: {e}"));
    let outcome = tokio::spawn(test(store.clone())).await;
    store.close().await;
    remove_dir(&dir);
    finish(outcome);
}

/// Runs `test` on a store over a new PostgreSQL database, then drops it.
///
/// An unreachable server skips the test loudly, or fails it when `CI=true`.
pub async fn run_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(database) = scratch_postgres("portcullis_t", name).await else { return };
    let outcome = match SqlStore::connect(&database.url).await {
        Ok(store) => {
            let outcome = tokio::spawn(test(store.clone())).await;
            store.close().await;
            Ok(outcome)
        }
        Err(e) => Err(e),
    };
    let url = database.url.clone();
    database.drop_database().await;
    match outcome {
        Ok(outcome) => finish(outcome),
        Err(e) => panic!("opening PostgreSQL at {url}: {e}"),
    }
}
