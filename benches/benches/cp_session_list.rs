//! One page (limit 100) of `GET /api/v1/sessions` with 100,000 sessions in
//! the store, on SQLite and on PostgreSQL: the first page, filters (email,
//! route, state), and cursors deep into the list. Each case is requested
//! sequentially through the in-process control plane; the latency includes
//! authentication, the query, JSON encoding and the HTTP round trip.
//!
//! Run: `cargo bench -p portcullis-benches --bench cp_session_list [-- sqlite|postgres]`

use std::time::{Duration, Instant};

use portcullis_benches::control_plane::{
    insert_sessions, run_per_backend, session_id, summarize, Backend, BenchDb, Server, ADMIN_TOKEN,
};

const SESSIONS: usize = 100_000;
/// 1,000 users with 100 sessions each.
const USERS: usize = 1_000;
const ROUNDS: usize = 200;

/// The cursor that continues after the session at `position` (0 = newest).
fn cursor_after(position: usize, base: i64) -> String {
    let i = SESSIONS - 1 - position;
    format!("{}.{}", base + i as i64, session_id(i))
}

async fn bench(backend: Backend) {
    let Some(db) = BenchDb::create(backend, "session_list").await else { return };
    let server = Server::start(&db.url).await;
    let base = portcullis_control_plane::model::now_ms() - SESSIONS as i64;
    let loading = Instant::now();
    insert_sessions(&db.url, SESSIONS, USERS, false, base).await;
    eprintln!("{}: loaded {SESSIONS} sessions in {:?}", backend.name(), loading.elapsed());
    // user42's sessions are i = 42, 1042, …, 99042; its 50th newest is i = 49042.
    let user_cursor = format!("{}.{}", base + 49_042, session_id(49_042));
    let cases: Vec<(&str, String)> = vec![
        ("first page", "limit=100".into()),
        ("email filter", "limit=100&email=user42@corp.example".into()),
        ("email filter + cursor (50th of 100)", format!("limit=100&email=user42@corp.example&cursor={user_cursor}")),
        ("route filter", "limit=100&route=wiki".into()),
        ("state=active", "limit=100&state=active".into()),
        ("cursor at 50,000", format!("limit=100&cursor={}", cursor_after(50_000, base))),
        ("cursor at 99,000", format!("limit=100&cursor={}", cursor_after(99_000, base))),
        ("route filter + cursor at 90,000", format!("limit=100&route=wiki&cursor={}", cursor_after(90_000, base))),
        ("state=ended (none ended: scans)", "limit=100&state=ended".into()),
    ];
    let http = reqwest::Client::new();
    for (label, query) in cases {
        let url = format!("{}/api/v1/sessions?{query}", server.url);
        let mut latencies: Vec<Duration> = Vec::with_capacity(ROUNDS);
        let mut returned = 0;
        for round in 0..ROUNDS + 20 {
            let t = Instant::now();
            let response = http.get(&url).bearer_auth(ADMIN_TOKEN).send().await.expect("list");
            assert!(response.status().is_success(), "{label}: {}", response.status());
            let page: serde_json::Value = response.json().await.expect("JSON");
            if round >= 20 {
                latencies.push(t.elapsed());
            }
            returned = page["sessions"].as_array().map_or(0, Vec::len);
        }
        let s = summarize(&mut latencies);
        println!("| {} | {label} | {returned} | {:.2} ms | {:.2} ms | {:.2} ms |", backend.name(), s.p50, s.p99, s.max);
    }
    server.stop().await;
    db.remove().await;
}

fn main() {
    run_per_backend("| backend | page | rows | p50 | p99 | max |\n|---|---|---:|---:|---:|---:|", bench);
}
