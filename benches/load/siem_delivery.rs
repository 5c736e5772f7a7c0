//! Security events out (issue 17): audit entries delivered as OCSF events
//! to NATS JetStream by the release control plane's SIEM sink worker, on
//! SQLite and PostgreSQL (a scratch database per run), against the NATS
//! server on `--nats` (default 127.0.0.1:4222, with JetStream); each run
//! publishes to a stream of its own, deleted at the end.
//!
//! 1. **Drain:** `--events` audit entries are written first, through the
//!    product's store (`SqlStore::apply_signal`, what `POST
//!    /api/v1/signals` commits: the signal's record and its
//!    `signal.received` audit row, `--producers` at a time), then the
//!    control plane starts with one `[[siem_sinks]]` entry: events/s until
//!    the stream's `state.messages` (`$JS.API.STREAM.INFO`, polled every
//!    10 ms) holds every audit entry, for each `--batch`: events/s from the
//!    first messages seen to the last (and the time from spawning the
//!    control plane, start-up included), with the control plane's and the
//!    NATS server's CPU time per event.
//! 2. **Steady flow:** `POST /api/v1/signals` at `--rate` a second for
//!    `--seconds` with the sink running (batch 500): the lag from the audit
//!    entry's time (the OCSF `time`) to the message's time in JetStream
//!    (read back with `$JS.API.STREAM.MSG.GET`), p50/p99/max.
//! 3. **Edge cost:** the edge's request throughput (`wrk`, as in
//!    `edge_vs_nginx`, one run each) with the control plane without a
//!    sink, then with one draining a `--edge-backlog` of audit entries
//!    during the run (SQLite; 10,000 signals written through the store,
//!    their audit rows copied in SQL up to the backlog), then without
//!    again. The edge does no work for the sinks (they read the
//!    audit log on the control plane), so any difference is the machine's
//!    CPU shared with the draining control plane and NATS server.
//!
//! Run (NATS with JetStream on 127.0.0.1:4222, PostgreSQL on 127.0.0.1:5432,
//! `scripts/bench-setup.sh` for wrk and nginx):
//!
//! ```sh
//! cargo build --release -p portcullis -p portcullis-benches --bin siem_delivery
//! cargo run --release -p portcullis-benches --bin siem_delivery -- [--backends sqlite,postgres] [--modes drain,steady,edge]
//! ```

#[allow(dead_code)]
mod nginx;
#[allow(dead_code)]
mod postgres;
#[allow(dead_code)]
mod processes;
#[allow(dead_code)]
mod wrk;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Parser;
use futures_util::{stream, StreamExt, TryStreamExt};
use portcullis_control_plane::model::{now_ms, Actor};
use portcullis_control_plane::siem::nats::Connection;
use portcullis_control_plane::store::{signal_target, SignalRecord, SqlStore};
use portcullis_policy::UserRef;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::processes::{cpu_seconds, percentile, ControlPlane, Edge, WorkDir, ADMIN_TOKEN, APP_HOST, USER_DOMAIN};

#[derive(Parser)]
struct Args {
    /// Audit entries per drain run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Sink batch sizes to drain with.
    #[arg(long, value_delimiter = ',', default_value = "100,500,2000")]
    batch: Vec<u32>,
    /// `sqlite`, `postgres`.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    /// `drain`, `steady`, `edge`.
    #[arg(long, value_delimiter = ',', default_value = "drain,steady,edge")]
    modes: Vec<String>,
    /// Concurrent writers of the backlog.
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// Signals a second in the steady-flow run.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of steady flow.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Audit entries the sink drains while the edge is measured (SQLite).
    #[arg(long, default_value_t = 400_000)]
    edge_backlog: usize,
    /// Seconds of the edge's wrk run (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    edge_seconds: u64,
    /// The NATS server (`host:port`, JetStream enabled).
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    /// The portcullis binary.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep the temp dirs (configs and logs).
    #[arg(long)]
    keep: bool,
}

/// A fresh database: a SQLite file in `dir`, or a scratch PostgreSQL database.
struct Database {
    url: String,
    _scratch: Option<postgres::ScratchDatabase>,
}

async fn database(backend: &str, dir: &WorkDir, label: &str) -> Result<Database> {
    match backend {
        "sqlite" => Ok(Database { url: format!("sqlite://{}", dir.path().join("cp.db").display()), _scratch: None }),
        "postgres" => {
            let scratch = postgres::ScratchDatabase::create(&format!("siem_{label}")).await?;
            Ok(Database { url: scratch.url.clone(), _scratch: Some(scratch) })
        }
        other => bail!("unknown backend `{other}` (sqlite, postgres)"),
    }
}

/// A stream and subject prefix of this run only.
fn stream_names(label: &str) -> (String, String) {
    let unique = format!("{}_{label}", std::process::id());
    (format!("BENCH_SIEM_{unique}"), format!("benchsiem{}", unique.replace('_', "")))
}

/// `PORTCULLIS_SIEM_SINKS` for one NATS sink.
fn sinks(nats: &str, stream: &str, prefix: &str, batch: u32) -> Vec<(&'static str, String)> {
    vec![(
        "PORTCULLIS_SIEM_SINKS",
        format!(
            "[{{ name = \"soc\", kind = \"nats\", url = \"nats://{nats}\", stream = \"{stream}\", \
             subject_prefix = \"{prefix}\", batch = {batch} }}]"
        ),
    )]
}

/// Writes `events` signals and their audit rows through the store, as
/// `POST /api/v1/signals` does; returns how long it took.
async fn fill(url: &str, events: usize, producers: usize) -> Result<Duration> {
    let store = SqlStore::connect(url).await.with_context(|| format!("open {url}"))?;
    let actor = Actor { name: "token:bench".into(), source_address: "127.0.0.1".into() };
    let started = Instant::now();
    stream::iter(0..events)
        .map(|n| {
            let (store, actor) = (&store, &actor);
            async move {
                let email = format!("user{}@corp.example", n % 97);
                let target = signal_target(Some(&UserRef::email(&email)), None);
                let id = format!("b-{n}");
                let summary = format!("signal `load.test` from api:bench (id {id})");
                let record = SignalRecord {
                    source: "api:bench",
                    jti: &id,
                    event_types: "load.test",
                    iat_ms: now_ms(),
                    target: &target,
                    summary: &summary,
                    audit_action: "signal.received",
                    acked: true,
                };
                store.apply_signal(&record, &[], None, actor, now_ms()).await.map(|_| ())
            }
        })
        .buffer_unordered(producers)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}

/// Copies the audit rows of the SQLite database at `url` (written by
/// [`fill`]) until there are at least `rows`: a large backlog quickly.
async fn multiply(url: &str, rows: usize) -> Result<()> {
    let pool = sqlx::SqlitePool::connect(url).await?;
    loop {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(&pool).await?;
        let missing = rows as i64 - count;
        if missing <= 0 {
            break;
        }
        let columns = "at_ms, actor, action, target, reason, source_address, seq, user_email, user_subject, session_id";
        sqlx::query(&format!(
            "INSERT INTO audit_log ({columns}) SELECT {columns} FROM audit_log ORDER BY id LIMIT {}",
            missing.min(count)
        ))
        .execute(&pool)
        .await?;
    }
    pool.close().await;
    Ok(())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default()
}

/// The newest audit entry's id (= how many entries the sink must deliver).
async fn newest_audit_id(plane: &ControlPlane) -> Result<u64> {
    let answer: Value =
        http().get(format!("{}/api/v1/audit?limit=1", plane.url)).bearer_auth(ADMIN_TOKEN).send().await?.json().await?;
    answer["entries"][0]["id"].as_u64().with_context(|| format!("no audit entry: {answer}"))
}

/// Messages in `stream` (0 while it does not exist yet).
async fn messages(nats: &mut Connection, stream: &str) -> Result<u64> {
    let info = nats.request(&format!("$JS.API.STREAM.INFO.{stream}"), &json!({})).await.map_err(anyhow::Error::msg)?;
    if info.pointer("/error/code").and_then(Value::as_u64) == Some(404) {
        return Ok(0);
    }
    info.pointer("/state/messages").and_then(Value::as_u64).with_context(|| format!("STREAM.INFO: {info}"))
}

/// Polls `stream` until it holds `count` messages; the instant it was seen.
async fn wait_messages(nats: &mut Connection, stream: &str, count: u64, within: Duration) -> Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        let held = messages(nats, stream).await?;
        if held >= count {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{stream} holds {held} of {count} messages after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn delete_stream(nats: &mut Connection, stream: &str) {
    if let Err(why) = nats.request(&format!("$JS.API.STREAM.DELETE.{stream}"), &json!({})).await {
        eprintln!("could not delete stream {stream}: {why}");
    }
}

/// The NATS server's process id, if it runs on this machine.
fn nats_server_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "nats-server"))
}

struct Drain {
    written: Duration,
    total: u64,
    /// Messages in the stream when the poller first saw any.
    first_seen: u64,
    /// From the first messages seen to all of them.
    drain: Duration,
    /// From spawning the control plane to all of them.
    from_spawn: Duration,
    plane_cpu: f64,
    nats_cpu: Option<f64>,
}

/// Polls `stream` every 10 ms on a connection of its own until `stop`:
/// (instant, messages) each time the count changed.
fn sample(nats: String, stream: String, stop: Arc<AtomicBool>) -> JoinHandle<Result<Vec<(Instant, u64)>>> {
    tokio::spawn(async move {
        let mut nats = Connection::connect(&nats, None).await.map_err(anyhow::Error::msg)?;
        let mut samples: Vec<(Instant, u64)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let held = messages(&mut nats, &stream).await?;
            if samples.last().is_none_or(|(_, last)| *last != held) {
                samples.push((Instant::now(), held));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(samples)
    })
}

async fn drain(args: &Args, binary: &Path, nats: &mut Connection, backend: &str, batch: u32) -> Result<Drain> {
    let label = format!("{backend}_b{batch}");
    let dir = WorkDir::new(&format!("siem-{label}"), args.keep)?;
    let db = database(backend, &dir, &label).await?;
    let written = fill(&db.url, args.events, args.producers).await?;
    let (stream, prefix) = stream_names(&label);
    let nats_pid = nats_server_pid();
    let nats_before = nats_pid.map(cpu_seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(args.nats.clone(), stream.clone(), Arc::clone(&stop));
    let spawned = Instant::now();
    let outcome = async {
        let plane =
            ControlPlane::start_with_env(binary, &dir, &db.url, &sinks(&args.nats, &stream, &prefix, batch)).await?;
        let total = newest_audit_id(&plane).await?;
        wait_messages(nats, &stream, total, Duration::from_secs(600)).await?;
        let plane_cpu = cpu_seconds(plane.pid());
        Ok::<_, anyhow::Error>((total, plane_cpu))
    }
    .await;
    let nats_cpu = nats_pid.zip(nats_before).map(|(pid, before)| cpu_seconds(pid) - before);
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await?;
    delete_stream(nats, &stream).await;
    let ((total, plane_cpu), samples) = (outcome?, samples?);
    let first = samples.iter().find(|(_, n)| *n > 0).context("no message seen")?;
    let done = samples.iter().find(|(_, n)| *n >= total).context("the poller did not see the last message")?;
    Ok(Drain {
        written,
        total,
        first_seen: first.1,
        drain: done.0 - first.0,
        from_spawn: done.0 - spawned,
        plane_cpu,
        nats_cpu,
    })
}

async fn post_signal(http: reqwest::Client, url: String, n: usize) -> Result<()> {
    let body = json!({ "id": format!("s-{n}"), "type": "load.test", "email": format!("user{}@corp.example", n % 97) });
    let answer = http.post(url).bearer_auth(ADMIN_TOKEN).json(&body).send().await?;
    if answer.status() != 200 {
        bail!("POST /api/v1/signals: {}", answer.status());
    }
    Ok(())
}

/// Steady flow: (signals sent, seconds it took, lags in ms of the signals' events).
async fn steady(args: &Args, binary: &Path, nats: &mut Connection, backend: &str) -> Result<(usize, f64, Vec<f64>)> {
    let label = format!("{backend}_steady");
    let dir = WorkDir::new(&format!("siem-{label}"), args.keep)?;
    let db = database(backend, &dir, &label).await?;
    let (stream, prefix) = stream_names(&label);
    let plane = ControlPlane::start_with_env(binary, &dir, &db.url, &sinks(&args.nats, &stream, &prefix, 500)).await?;
    let outcome = async {
        let count = (u64::from(args.rate) * args.seconds) as usize;
        let (client, url) = (http(), format!("{}/api/v1/signals", plane.url));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
        let started = Instant::now();
        let mut sent = Vec::with_capacity(count);
        for n in 0..count {
            tick.tick().await;
            sent.push(tokio::spawn(post_signal(client.clone(), url.clone(), n)));
        }
        for task in sent {
            task.await??;
        }
        let took = started.elapsed().as_secs_f64();
        let total = newest_audit_id(&plane).await?;
        wait_messages(nats, &stream, total, Duration::from_secs(120)).await?;
        let mut lags = Vec::with_capacity(count);
        for seq in 1..=total {
            let got = nats
                .request(&format!("$JS.API.STREAM.MSG.GET.{stream}"), &json!({ "seq": seq }))
                .await
                .map_err(anyhow::Error::msg)?;
            let message = &got["message"];
            let data = base64::engine::general_purpose::STANDARD
                .decode(message["data"].as_str().with_context(|| format!("MSG.GET {seq}: {got}"))?)?;
            let event: Value = serde_json::from_slice(&data)?;
            if event["unmapped"]["action"] != "signal.received" {
                continue;
            }
            let audited_ms = event["time"].as_i64().context("OCSF time")? as f64;
            let stored = chrono::DateTime::parse_from_rfc3339(message["time"].as_str().context("JetStream time")?)?;
            lags.push(stored.timestamp_micros() as f64 / 1000.0 - audited_ms);
        }
        anyhow::ensure!(lags.len() == count, "{} signal events in the stream, {count} sent", lags.len());
        lags.sort_by(f64::total_cmp);
        Ok((count, took, lags))
    }
    .await;
    delete_stream(nats, &stream).await;
    outcome
}

/// The edge's throughput with the control plane without, then with, a
/// sink draining a backlog (SQLite, batch 500).
async fn edge_cost(args: &Args, binary: &Path, nats: &mut Connection) -> Result<()> {
    wrk::check_installed()?;
    let dir = WorkDir::new("siem-edge", args.keep)?;
    let upstream = nginx::Nginx::start_upstream(&nginx::binary()?, &dir, 1)?;
    let db = database("sqlite", &dir, "edge").await?;
    fill(&db.url, args.edge_backlog.min(10_000), args.producers).await?;
    multiply(&db.url, args.edge_backlog).await?;
    println!(
        "\nedge cost: {} audit entries pending (10,000 signals written through the store, their rows copied); \
         edge 2 threads, wrk -t2 -c64 -d{}s after a 2 s warm-up, one run each",
        args.edge_backlog, args.edge_seconds
    );
    println!(
        "\n| control plane | requests/s | p50 | p99 | errors | events delivered during the run | \
         control plane CPU | nats-server CPU | other load |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let (stream, prefix) = stream_names("edge");
    let nats_pid = nats_server_pid();
    for (n, (name, with_sink)) in
        [("no sink", false), ("sink draining (batch 500)", true), ("no sink, again", false)].into_iter().enumerate()
    {
        let env = if with_sink { sinks(&args.nats, &stream, &prefix, 500) } else { Vec::new() };
        let plane = ControlPlane::start_with_env(binary, &dir, &db.url, &env).await?;
        plane.apply_policy(&processes::policy(&format!("http://127.0.0.1:{}", upstream.port))).await?;
        let edge = Edge::start(binary, &plane, &format!("edge-{n}"), 2, &dir).await?;
        let (_, token) = plane.login(&format!("ada@{USER_DOMAIN}")).await?;
        let load = wrk::Wrk {
            threads: 2,
            connections: 64,
            headers: vec![format!("Cookie: __Host-portcullis_session.app={token}"), format!("Host: {APP_HOST}")],
        };
        load.run(edge.port, Duration::from_secs(2)).await?;
        let mut pids = upstream.pids();
        pids.extend([plane.pid(), edge.pid()]);
        pids.extend(nats_pid);
        let benchmark_cpu =
            || pids.iter().map(|pid| cpu_seconds(*pid)).sum::<f64>() + processes::own_and_reaped_cpu_seconds();
        let before = messages(nats, &stream).await?;
        let (plane_before, machine_before, benchmark_before) =
            (cpu_seconds(plane.pid()), processes::machine_busy_seconds(), benchmark_cpu());
        let nats_before = nats_pid.map(cpu_seconds);
        let started = Instant::now();
        let run = load.run(edge.port, Duration::from_secs(args.edge_seconds)).await?;
        let seconds = started.elapsed().as_secs_f64();
        let other = (processes::machine_busy_seconds() - machine_before) - (benchmark_cpu() - benchmark_before);
        let plane_cpu = (cpu_seconds(plane.pid()) - plane_before) / seconds;
        let nats_cpu = nats_pid.zip(nats_before).map(|(pid, b)| (cpu_seconds(pid) - b) / seconds);
        let delivered = messages(nats, &stream).await? - before;
        let pending = if with_sink {
            let newest = newest_audit_id(&plane).await?;
            format!(" ({} still pending after)", newest.saturating_sub(messages(nats, &stream).await?))
        } else {
            String::new()
        };
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {delivered}{pending} | {plane_cpu:.2} cores | {} | {:.2} cores |",
            run.requests_per_s,
            run.p50_ms,
            run.p99_ms,
            run.errors,
            nats_cpu.map_or("—".into(), |c| format!("{c:.2} cores")),
            (other / seconds).max(0.0)
        );
        drop(edge);
        drop(plane);
    }
    delete_stream(nats, &stream).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = processes::binary(args.binary.clone())?;
    let mut nats = Connection::connect(&args.nats, None)
        .await
        .map_err(|why| anyhow::anyhow!("NATS at {}: {why} (a server with JetStream must run there)", args.nats))?;
    let mode = |name: &str| args.modes.iter().any(|m| m == name);
    println!("NATS JetStream at {}; {} events per drain run\n", args.nats, args.events);

    if mode("drain") {
        println!(
            "| backend | batch | audit entries | backlog written | first messages → all | events/s | \
             spawn → all | control plane CPU per event | nats-server CPU per event |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for backend in &args.backends {
            for &batch in &args.batch {
                let run = drain(&args, &binary, &mut nats, backend, batch).await?;
                let per_event = |cpu: f64| format!("{:.1} µs", cpu / run.total as f64 * 1e6);
                println!(
                    "| {backend} | {batch} | {} | {:.1} s ({:.0}/s) | {:.2} s ({} at first) | {:.0} | {:.2} s | {} | {} |",
                    run.total,
                    run.written.as_secs_f64(),
                    args.events as f64 / run.written.as_secs_f64(),
                    run.drain.as_secs_f64(),
                    run.first_seen,
                    (run.total - run.first_seen) as f64 / run.drain.as_secs_f64(),
                    run.from_spawn.as_secs_f64(),
                    per_event(run.plane_cpu),
                    run.nats_cpu.map_or("—".into(), per_event),
                );
            }
        }
        println!(
            "(control plane CPU: its whole life, start-up included; nats-server: from before the start to the end)"
        );
    }
    if mode("steady") {
        for backend in &args.backends {
            let (count, took, lags) = steady(&args, &binary, &mut nats, backend).await?;
            println!(
                "\nsteady flow ({backend}): {count} signals at {}/s (sent in {took:.1} s: {:.0}/s), batch 500: \
                 audit entry → stored in JetStream p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                args.rate,
                count as f64 / took,
                percentile(&lags, 0.5),
                percentile(&lags, 0.99),
                lags.last().copied().unwrap_or(f64::NAN)
            );
        }
    }
    if mode("edge") {
        edge_cost(&args, &binary, &mut nats).await?;
    }
    Ok(())
}
