//! The admin API and edge channel suite: both routers driven in-process with
//! `tower::ServiceExt::oneshot` over a control plane built by
//! `portcullis_control_plane::build`, on both backends.
//!
//! Each test is an `async fn name(t: TestApp)` listed in an [`api_tests!`]
//! invocation, which generates `name::sqlite` and `name::postgres`. SQLite
//! gets a fresh file in a fresh temporary folder; PostgreSQL
//! (`postgres://postgres@127.0.0.1:5432`, or the server URL in
//! `PORTCULLIS_TEST_POSTGRES`) gets a fresh database, created from the `test`
//! database and dropped afterwards. When PostgreSQL is unreachable the
//! PostgreSQL half prints `skipping PostgreSQL: …` on stderr and passes,
//! except with `CI=true`, where it fails.
//!
//! Every admin-API request the suite makes is checked against the OpenAPI
//! document: a route the router serves under `/api/v1` but the document
//! leaves out fails whichever test calls it (see `client.rs`), and
//! `openapi.rs` checks the document against the routes the suite exercises.
//!
//! Run: `cargo test -p portcullis-control-plane --test api`.

/// Generates, for each listed `async fn name(t: TestApp)` of the calling
/// module, `mod name { fn sqlite(); fn postgres() }`: one test per backend.
/// `build()` spawns background tasks, hence the multi-threaded runtime.
macro_rules! api_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    $crate::harness::run($crate::harness::Backend::Sqlite, stringify!($name), super::$name).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    $crate::harness::run($crate::harness::Backend::Postgres, stringify!($name), super::$name).await;
                }
            }
        )*
    };
}

mod auth;
mod client;
mod deliveries;
mod deliveries_ssf;
mod edge;
mod edge_auth;
mod enrollment;
mod errors;
mod explain;
mod fixtures;
mod harness;
mod injection;
mod keys;
mod logins;
mod openapi;
mod policy;
mod portal;
mod portal_oidc;
mod receipts;
mod sessions;
mod signals;
mod ssf;
mod stream_signing;
mod tokens;
mod users;
