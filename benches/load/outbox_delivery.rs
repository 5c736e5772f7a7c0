//! Relying-party delivery through the durable outbox (issue 15): the real
//! store (SQLite, or PostgreSQL with `--postgres URL`), the real outbox
//! worker and webhook connector, against nginx as the relying party (a
//! separate process on loopback, `scripts/bench-setup.sh` installs it).
//!
//! 1. **Drain:** `--jobs` terminations are committed with the worker
//!    stopped, then the worker starts: jobs/s until the last is applied,
//!    for each `--concurrency` (each job a signed webhook POST and its
//!    fenced result write, one commit each).
//! 2. **Steady flow:** terminations at `--rate` a second with the worker
//!    running: latency from the termination's commit to the relying party's
//!    answer being recorded (p50/p99/max).
//! 3. **Rate-limited:** the relying party allows `--limit` requests a second
//!    and answers the rest `429 Retry-After: 1`: every job still applied,
//!    attempts per job, drain time.
//!
//! `cargo run --release -p portcullis-benches --bin outbox_delivery`

#[allow(dead_code)]
mod nginx;
#[allow(dead_code)]
mod processes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use portcullis_control_plane::metrics::Metrics;
use portcullis_control_plane::model::{now_ms, Actor};
use portcullis_control_plane::outbox::{self, SinkWorker};
use portcullis_control_plane::relying_parties::{self, Action, ConnectorKind, RelyingPartySettings, SecretSource};
use portcullis_control_plane::store::{JobState, OutboxStore, SessionStore, SqlStore};
use portcullis_policy::UserRef;

use crate::processes::{percentile, WorkDir};

#[derive(Parser)]
struct Args {
    /// Jobs per drain run.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Worker concurrencies to drain with.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<u32>,
    /// Terminations a second in the steady-flow run.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Seconds of steady flow.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Requests a second the rate-limited relying party allows.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// PostgreSQL server URL (a fresh database is made) instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
}

fn relying_party(name: &str, url: String, concurrency: u32) -> Result<SinkWorker> {
    let settings = RelyingPartySettings {
        name: name.into(),
        kind: ConnectorKind::Webhook {
            url,
            secret: SecretSource::Env { name: "BENCH".into(), value: "bench-webhook-secret".into() },
        },
        on: vec![Action::TerminateUser],
        concurrency,
        deadline: Duration::from_secs(3600),
        timeout: Duration::from_secs(10),
    };
    let rp = relying_parties::build(&[settings])?.remove(0);
    Ok(SinkWorker::relying_party(rp))
}

async fn open(dir: &WorkDir, label: &str, postgres: Option<&str>) -> Result<SqlStore> {
    let url = match postgres {
        None => format!("sqlite://{}", dir.path().join(format!("{label}.db")).display()),
        Some(server) => {
            sqlx::any::install_default_drivers();
            let name = format!("portcullis_outbox_{label}_{}", std::process::id());
            let admin: sqlx::AnyPool = sqlx::AnyPool::connect(&format!("{server}/test")).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&admin).await?;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
            format!("{server}/{name}")
        }
    };
    SqlStore::connect(&url).await.with_context(|| format!("open {url}"))
}

fn subscribe(store: &SqlStore, sink: &str) {
    store.subscribe(vec![portcullis_control_plane::store::Subscription {
        sink: sink.into(),
        actions: vec![Action::TerminateUser],
        deadline_ms: 3_600_000,
    }]);
}

async fn terminate(store: &SqlStore, n: usize) -> Result<()> {
    store.terminate_user(&UserRef::email(&format!("u{n}@bench.example")), "bench", &Actor::system(), now_ms()).await?;
    Ok(())
}

/// Waits until no job is pending; returns every job.
async fn drained(
    store: &SqlStore,
    jobs: usize,
    within: Duration,
) -> Result<Vec<portcullis_control_plane::store::OutboxJob>> {
    let deadline = Instant::now() + within;
    loop {
        let all = store.list_jobs(None, None, (jobs + 10) as u32).await?;
        if all.len() >= jobs && all.iter().all(|j| j.state != JobState::Pending) {
            return Ok(all);
        }
        anyhow::ensure!(Instant::now() < deadline, "not drained within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn latencies_ms(jobs: &[portcullis_control_plane::store::OutboxJob]) -> Vec<f64> {
    let mut all: Vec<f64> = jobs.iter().filter_map(|j| j.finished_ms.map(|f| (f - j.created_ms) as f64)).collect();
    all.sort_by(f64::total_cmp);
    all
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = WorkDir::new("outbox", false)?;
    let nginx = nginx::Nginx::start_relying_party(&nginx::binary()?, &dir, args.limit)?;
    let ok_url = format!("http://127.0.0.1:{}/ok", nginx.port);
    let backend = if args.postgres.is_some() { "PostgreSQL" } else { "SQLite" };
    println!("backend {backend}; relying party: nginx 1 worker on loopback\n");

    println!("| concurrency | jobs | drain | jobs/s |");
    println!("|---:|---:|---:|---:|");
    for &concurrency in &args.concurrency {
        let store = Arc::new(open(&dir, &format!("drain{concurrency}"), args.postgres.as_deref()).await?);
        subscribe(&store, "rp");
        for n in 0..args.jobs {
            terminate(&store, n).await?;
        }
        let started = Instant::now();
        outbox::spawn(
            Arc::clone(&store),
            vec![relying_party("rp", ok_url.clone(), concurrency)?],
            Metrics::new().outbox,
        );
        let jobs = drained(&store, args.jobs, Duration::from_secs(600)).await?;
        let took = started.elapsed();
        anyhow::ensure!(
            jobs.iter().all(|j| j.state == JobState::Applied && j.attempts == 1),
            "a job was not applied once"
        );
        println!(
            "| {concurrency} | {} | {:.2} s | {:.0} |",
            args.jobs,
            took.as_secs_f64(),
            args.jobs as f64 / took.as_secs_f64()
        );
    }

    let store = Arc::new(open(&dir, "steady", args.postgres.as_deref()).await?);
    subscribe(&store, "rp");
    outbox::spawn(Arc::clone(&store), vec![relying_party("rp", ok_url.clone(), 4)?], Metrics::new().outbox);
    let count = (args.rate as u64 * args.seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    for n in 0..count {
        tick.tick().await;
        terminate(&store, n).await?;
    }
    let jobs = drained(&store, count, Duration::from_secs(60)).await?;
    let waits = latencies_ms(&jobs);
    println!(
        "\nsteady flow: {count} terminations at {}/s, concurrency 4: commit → applied p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        args.rate,
        percentile(&waits, 0.5),
        percentile(&waits, 0.99),
        waits.last().copied().unwrap_or(f64::NAN)
    );

    let store = Arc::new(open(&dir, "limited", args.postgres.as_deref()).await?);
    subscribe(&store, "rp");
    let limited = 1000.min(args.jobs);
    for n in 0..limited {
        terminate(&store, n).await?;
    }
    let started = Instant::now();
    let limited_url = format!("http://127.0.0.1:{}/limited", nginx.port);
    outbox::spawn(Arc::clone(&store), vec![relying_party("rp", limited_url, 16)?], Metrics::new().outbox);
    let jobs = drained(&store, limited, Duration::from_secs(600)).await?;
    let took = started.elapsed();
    let applied = jobs.iter().filter(|j| j.state == JobState::Applied).count();
    let attempts: u32 = jobs.iter().map(|j| j.attempts).sum();
    let most = jobs.iter().map(|j| j.attempts).max().unwrap_or(0);
    println!(
        "\nrate-limited ({}/s, 429 Retry-After: 1), {limited} jobs, concurrency 16: {applied} applied, 0 lost = {}, \
         drained in {:.1} s ({:.0} jobs/s), {attempts} attempts ({:.2} per job, most {most})",
        args.limit,
        applied == limited,
        took.as_secs_f64(),
        limited as f64 / took.as_secs_f64(),
        f64::from(attempts) / limited as f64
    );
    Ok(())
}
