//! The store suite: every test runs against both backends, SQLite and
//! PostgreSQL, through the same `SqlStore`, so the two can never drift apart.
//!
//! Each test is an `async fn name(store: SqlStore)` listed in a
//! [`store_tests!`] invocation, which generates `name::sqlite` and
//! `name::postgres`. SQLite gets a fresh file in a fresh temporary folder;
//! PostgreSQL (`postgres://postgres@127.0.0.1:5432`, or a server URL without
//! database in `PORTCULLIS_TEST_POSTGRES`) gets a fresh database, created
//! while connected to the `test` database and dropped afterwards. When PostgreSQL is unreachable the
//! PostgreSQL half says so on stderr and passes, except with `CI=true`, where
//! it fails.
//!
//! Run: `cargo test -p portcullis-control-plane --test store`.
//! The store's concurrency claims are checked in `concurrency.rs`, on both
//! backends: SQLite serialises writers by construction, PostgreSQL must not
//! need to.

/// Generates, for each listed `async fn name(store: SqlStore)` of the calling
/// module, `mod name { fn sqlite(); fn postgres() }`: one test per backend.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    $crate::harness::run_sqlite(stringify!($name), super::$name).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    $crate::harness::run_postgres(stringify!($name), super::$name).await;
                }
            }
        )*
    };
}

mod admin;
mod audit_trail;
mod changes;
mod claims;
mod concurrency;
mod edges;
mod fixtures;
mod harness;
mod injection;
mod outbox;
mod sessions;
mod siem;
mod signals;
mod stream_keys;
mod terminate;
mod upgrade;
