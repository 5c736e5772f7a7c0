//! Building a full snapshot (`ChangeStore::snapshot_body`, what every edge
//! that connects without a usable `since` gets) with 100,000 terminated
//! sessions in the store, on SQLite and on PostgreSQL; then encoding it for
//! the wire. Also with 100,000 active sessions beside them, which the
//! snapshot must skip.
//!
//! Run: `cargo bench -p portcullis-benches --bench cp_snapshot [-- sqlite|postgres]`

use std::time::Instant;

use portcullis_benches::control_plane::{insert_sessions, run_per_backend, summarize, Backend, BenchDb};
use portcullis_control_plane::model::now_ms;
use portcullis_control_plane::store::{ChangeStore, SqlStore};
use portcullis_policy::wire::{encode, Message};

const TERMINATED: usize = 100_000;
const ROUNDS: usize = 20;

/// The snapshot's terminated-sessions query alone through sqlx's `Any`
/// driver, rows fetched and decoded but not parsed: where the build time goes.
async fn query_only(url: &str) -> f64 {
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, expires_ms FROM sessions WHERE ended_ms IS NOT NULL AND expires_ms > $1")
                .bind(now_ms())
                .fetch_all(&pool)
                .await
                .expect("query");
        assert_eq!(rows.len(), TERMINATED);
        samples.push(t.elapsed());
    }
    pool.close().await;
    summarize(&mut samples).p50
}

async fn measure(store: &SqlStore, label: &str, backend: Backend) {
    let mut build = Vec::with_capacity(ROUNDS);
    let mut encoding = Vec::with_capacity(ROUNDS);
    let mut bytes = 0;
    let mut terminated = 0;
    for round in 0..ROUNDS + 2 {
        let t = Instant::now();
        let body = store.snapshot_body(now_ms()).await.expect("snapshot");
        let built = t.elapsed();
        terminated = body.terminated_sessions.len();
        let t = Instant::now();
        let wire = encode(&Message::Snapshot(body));
        let encoded = t.elapsed();
        bytes = wire.len();
        if round >= 2 {
            build.push(built);
            encoding.push(encoded);
        }
    }
    assert_eq!(terminated, TERMINATED, "every terminated session is in the snapshot");
    let (b, e) = (summarize(&mut build), summarize(&mut encoding));
    println!(
        "| {} | {label} | {terminated} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} MB |",
        backend.name(),
        b.p50,
        b.max,
        e.p50,
        bytes as f64 / 1e6
    );
}

async fn bench(backend: Backend) {
    let Some(db) = BenchDb::create(backend, "snapshot").await else { return };
    let store = SqlStore::connect(&db.url).await.expect("open the store");
    let base = now_ms() - 2 * TERMINATED as i64;
    insert_sessions(&db.url, TERMINATED, TERMINATED, true, base).await;
    measure(&store, "100k terminated", backend).await;
    let query = query_only(&db.url).await;
    println!("| {} | (the terminated-sessions query alone) | {TERMINATED} | {query:.1} ms | | | |", backend.name());
    // 100,000 active sessions beside them (ids after the terminated ones).
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("connect");
    let offset = format!("{:016x}", 0xac71_0000_0000_0000_u64);
    sqlx::query(
        "INSERT INTO sessions (id, subject, email, groups_json, idp_issuer, idp_session_id, route, created_ms, \
         last_seen_ms, expires_ms, auth_time_s, ended_ms, end_reason, source_addresses_json, user_agent, edges_json, \
         live_connections) SELECT $1 || substr(id, 17), subject, email, groups_json, idp_issuer, idp_session_id, \
         route, created_ms, last_seen_ms, expires_ms, auth_time_s, NULL, NULL, source_addresses_json, user_agent, \
         edges_json, live_connections FROM sessions",
    )
    .bind(offset)
    .execute(&pool)
    .await
    .expect("copy as active sessions");
    pool.close().await;
    measure(&store, "100k terminated + 100k active", backend).await;
    store.close().await;
    db.remove().await;
}

fn main() {
    let header = "| backend | store | terminated in snapshot | build p50 | build max | encode p50 | wire size |\n\
                  |---|---|---:|---:|---:|---:|---:|";
    run_per_backend(header, bench);
}
