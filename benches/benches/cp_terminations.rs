//! Terminations per second through the admin API (`POST
//! /api/v1/sessions/{id}/terminate`), on SQLite and on PostgreSQL, with C
//! concurrent HTTP clients against the control plane built in-process; and,
//! to show where the time goes, the same terminations straight on the store
//! (no HTTP) and the cost of one `fdatasync` on the disk the database is on.
//! Last, user terminations in bursts: 100 concurrent `POST
//! /api/v1/users/terminate`, each ending a user's 10 sessions, five rounds
//! (how long an offboarding of 100 users at once waits for its answers).
//!
//! Run: `cargo bench -p portcullis-benches --bench cp_terminations [-- sqlite|postgres]`
//! (`BENCH_TERMINATIONS=N` sets the terminations per row, default 10,000).

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_benches::control_plane::{
    insert_sessions, insert_sessions_at, listing_only, run_per_backend, session_id, summarize, Backend, BenchDb,
    Server, ADMIN_TOKEN,
};
use portcullis_benches::group_commit;
use portcullis_control_plane::model::Actor;
use portcullis_control_plane::store::SessionStore;

const CLIENTS: [usize; 3] = [1, 16, 64];
/// Terminations per transaction in the group-commit what-if.
const BATCHES: [usize; 4] = [1, 8, 32, 128];
/// User terminations in flight at once, sessions per user, and rounds.
const USER_BURST: usize = 100;
const SESSIONS_PER_USER: usize = 10;
const USER_ROUNDS: usize = 5;

/// One measured row.
struct Row {
    label: String,
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// `GET /readyz` latencies sampled during the run (HTTP rows).
    readyz: Vec<Duration>,
}

impl Row {
    fn print(mut self, backend: Backend) {
        let rate = self.count as f64 / self.elapsed.as_secs_f64();
        let s = summarize(&mut self.latencies);
        let readyz = if self.readyz.is_empty() {
            String::new()
        } else {
            let r = summarize(&mut self.readyz);
            format!("{:.1} / {:.1} ms", r.p50, r.max)
        };
        println!(
            "| {} | {} | {} | {rate:.0} | {:.2} ms | {:.2} ms | {:.1} ms | {readyz} |",
            backend.name(),
            self.label,
            self.count,
            s.p50,
            s.p99,
            s.max
        );
    }
}

/// Terminates `ids` through the API with `clients` concurrent HTTP clients.
async fn over_http(url: &str, ids: Vec<String>, clients: usize) -> Row {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("client");
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = tokio::spawn(probe_readyz(http.clone(), url.to_owned(), Arc::clone(&done)));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (http, ids, next, url) = (http.clone(), Arc::clone(&ids), Arc::clone(&next), url.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { return latencies };
                    let t = Instant::now();
                    let response = http
                        .post(format!("{url}/api/v1/sessions/{id}/terminate"))
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&serde_json::json!({ "reason": "bench" }))
                        .send()
                        .await
                        .expect("terminate");
                    let status = response.status();
                    let body = response.bytes().await.expect("body");
                    assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(ids.len());
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let readyz = prober.await.expect("prober");
    Row { label: format!("HTTP, {clients} clients"), count: ids.len(), elapsed, latencies, readyz }
}

/// `USER_ROUNDS` rounds of `USER_BURST` concurrent `POST /api/v1/users/terminate`
/// of `user{n}@bulk.example`, each user holding `SESSIONS_PER_USER` live sessions.
async fn users_over_http(url: &str) -> Row {
    let http = reqwest::Client::builder().pool_max_idle_per_host(USER_BURST).build().expect("client");
    let mut latencies = Vec::with_capacity(USER_ROUNDS * USER_BURST);
    let started = Instant::now();
    for round in 0..USER_ROUNDS {
        let calls: Vec<_> = (0..USER_BURST)
            .map(|n| {
                let (http, url) = (http.clone(), url.to_owned());
                let email = format!("user{}@bulk.example", round * USER_BURST + n);
                tokio::spawn(async move {
                    let t = Instant::now();
                    let response = http
                        .post(format!("{url}/api/v1/users/terminate"))
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&serde_json::json!({ "email": email, "reason": "bench" }))
                        .send()
                        .await
                        .expect("terminate user");
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.expect("body");
                    assert!(status.is_success(), "{status}: {body}");
                    assert_eq!(body["sessions_ended"], SESSIONS_PER_USER, "{email}: {body}");
                    t.elapsed()
                })
            })
            .collect();
        for call in calls {
            latencies.push(call.await.expect("call"));
        }
    }
    let label = format!("HTTP users/terminate, {USER_BURST} at once × {USER_ROUNDS}");
    Row { label, count: latencies.len(), elapsed: started.elapsed(), latencies, readyz: Vec::new() }
}

/// `GET /readyz` every 20 ms until `done`: how a plain read fares beside the load.
async fn probe_readyz(http: reqwest::Client, url: String, done: Arc<std::sync::atomic::AtomicBool>) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let t = Instant::now();
        if http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            latencies.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies
}

/// Terminates `ids` on the store directly with `tasks` concurrent tasks.
async fn on_store(server: &Server, ids: Vec<String>, tasks: usize) -> Row {
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (app, ids, next) = (Arc::clone(&server.app), Arc::clone(&ids), Arc::clone(&next));
            tokio::spawn(async move {
                let actor = Actor { name: "token:bench".into(), source_address: "127.0.0.1".into() };
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { return latencies };
                    let t = Instant::now();
                    let now = portcullis_control_plane::model::now_ms();
                    app.store.terminate_session(id, "bench", &actor, now).await.expect("terminate");
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(ids.len());
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let label = format!("store only, {tasks} tasks");
    Row { label, count: ids.len(), elapsed: started.elapsed(), latencies, readyz: Vec::new() }
}

/// The cost of one 4 KiB append + `fdatasync` in `dir`, the floor of a durable commit.
fn fdatasync_cost(dir: &std::path::Path) -> Duration {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let block = [0u8; 4096];
    let rounds = 500;
    let started = Instant::now();
    for _ in 0..rounds {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let cost = started.elapsed() / rounds;
    let _ = std::fs::remove_file(path);
    cost
}

async fn bench(backend: Backend, per_row: usize) {
    let Some(db) = BenchDb::create(backend, "terminations").await else { return };
    let server = Server::start(&db.url).await;
    // Rows: warm-up, HTTP at each client count, store at 1 and 64 tasks, what-if batches.
    let rows = 1 + CLIENTS.len() + 2 + BATCHES.len();
    let total = per_row * rows;
    let base = portcullis_control_plane::model::now_ms() - total as i64;
    insert_sessions(&db.url, total, total, false, base).await;
    let users = USER_ROUNDS * USER_BURST;
    insert_sessions_at(&db.url, total..total + users * SESSIONS_PER_USER, users, "bulk.example", false, base).await;
    let mut batches = (0..rows).map(|r| (r * per_row..(r + 1) * per_row).map(session_id).collect::<Vec<_>>());
    let warmup = batches.next().expect("warm-up batch");
    let _ = over_http(&server.url, warmup, 16).await;
    for clients in CLIENTS {
        over_http(&server.url, batches.next().expect("batch"), clients).await.print(backend);
    }
    for tasks in [1, 64] {
        on_store(&server, batches.next().expect("batch"), tasks).await.print(backend);
    }
    let writer = group_commit::writer(&db.url, backend).await;
    for batch in BATCHES {
        let ids = batches.next().expect("batch");
        let elapsed = group_commit::terminate_batched(&writer, backend, &ids, batch).await;
        let per_transaction = elapsed / ids.len().div_ceil(batch) as u32;
        println!(
            "| {} | what-if: {batch} per transaction, 1 writer | {} | {:.0} | {:.2} ms per transaction | | | |",
            backend.name(),
            ids.len(),
            ids.len() as f64 / elapsed.as_secs_f64(),
            per_transaction.as_secs_f64() * 1000.0
        );
    }
    writer.close().await;
    users_over_http(&server.url).await.print(backend);
    server.stop().await;
    db.remove().await;
}

fn main() {
    let per_row = std::env::var("BENCH_TERMINATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let probe = std::env::temp_dir();
    if !listing_only() {
        println!("One 4 KiB append + fdatasync in {}: {:?}\n", probe.display(), fdatasync_cost(&probe));
    }
    let header = "| backend | path | terminations | per second | p50 | p99 | max | /readyz p50 / max meanwhile |\n\
                  |---|---|---:|---:|---:|---:|---:|---:|";
    run_per_backend(header, |backend| bench(backend, per_row));
}
