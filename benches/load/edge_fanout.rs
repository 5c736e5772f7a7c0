//! Fan-out toward many edges: how long after the admin API answers a
//! session termination does the change reach every edge's stream, when one
//! control plane (or two replicas on one PostgreSQL database) serves
//! hundreds of edges? And what does each connected edge cost the control
//! plane in CPU and memory?
//!
//! The control plane(s) run as real processes; this process plays
//! `--edges` edges (default 500) that speak the edge channel as the edge
//! does (`proxy/src/identity`, `portcullis_policy::edge_channel`): each
//! enrolls its own P-256 key with the bootstrap secret, authenticates every
//! call with its cached ES256 assertion, opens `GET /edge/v1/stream` with a
//! nonce of its own, verifies every frame's signature against the stream
//! key and decodes it, and reports what it applied (`POST /edge/v1/report`)
//! at once after a change and every second otherwise, like
//! `proxy/src/subscriber.rs` (`--no-reports`: streams only). Edges are
//! spread round-robin over the replicas.
//!
//! Phases: enroll, open every stream and wait for every snapshot, stay idle
//! for `--idle-seconds` (control-plane CPU per connected edge: heartbeats
//! and reports; memory per edge: resident memory after the streams opened
//! minus before, over the edges), then `--terminations` sessions (default
//! 200) terminated one after another with `POST
//! /api/v1/sessions/{id}/terminate` on the first replica, one started every
//! `--interval-ms` (default 50). Per (termination, edge): the time from the
//! API's answer to the frame carrying that change being read off the
//! stream, split by whether the edge streams from the replica that
//! committed it or another one (which hears it through `NOTIFY`).
//!
//! ```sh
//! cargo build --release -p portcullis -p portcullis-benches --bins
//! $CARGO_TARGET_DIR/release/edge_fanout [--edges 500] [--replicas 2 --postgres]
//! ```
//!
//! This process verifies every frame on every stream, so it competes with
//! the control plane for the machine's cores; its own CPU is printed too.

// Shared with the other harnesses, which use other parts of it.
#[allow(dead_code)]
mod processes;
// Shared with the soak and SIEM harnesses.
#[allow(dead_code)]
mod postgres;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use futures_util::{stream, StreamExt};
use portcullis_edge::identity::{EdgeIdentity, Enrollment};
use portcullis_policy::edge_channel::{
    next_frame, ReportBody, FRAME_HEADER_BYTES, REPORT_PATH, STREAM_KEY_PATH, STREAM_PATH,
};
use portcullis_policy::signed_frame::{FrameVerifier, StreamBinding, StreamNonce};
use portcullis_policy::stream_key::{PublishedStreamKey, StreamPublicKey};
use portcullis_policy::wire::{decode, Message};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use processes::{cpu_seconds, percentile, rss_kib, signed_ms, ControlPlane, WorkDir, EDGE_SECRET, USER_DOMAIN};

/// Options.
#[derive(Parser)]
#[command(about = "Fan-out: hundreds of simulated edges streaming from the control plane, sessions terminated")]
struct Args {
    /// Simulated edges.
    #[arg(long, default_value_t = 500)]
    edges: usize,
    /// Control-plane replicas (more than one needs --postgres).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Use a scratch PostgreSQL database instead of SQLite.
    #[arg(long)]
    postgres: bool,
    /// Sessions terminated.
    #[arg(long, default_value_t = 200)]
    terminations: usize,
    /// Milliseconds between the starts of two terminations.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    /// Seconds of idle streaming measured before the terminations.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// Streams only: the simulated edges send no reports.
    #[arg(long)]
    no_reports: bool,
    /// The portcullis binary.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep the temp dirs (configs and logs).
    #[arg(long)]
    keep: bool,
}

/// A frame read off a stream: which edge, which sequence, when.
struct Arrival {
    edge: usize,
    seq: u64,
    at: Instant,
}

/// Bytes and count of the delta frames read, over all streams (length
/// prefix, signed-frame header, message, signature).
static DELTA_BYTES: AtomicU64 = AtomicU64::new(0);
static DELTA_FRAMES: AtomicU64 = AtomicU64::new(0);
/// Reports refused or failed (timeouts included), and streams that ended
/// early, over all edges: counted, printed with the results.
static REPORTS_FAILED: AtomicU64 = AtomicU64::new(0);
static STREAMS_ENDED: AtomicU64 = AtomicU64::new(0);

/// A set of edges the latencies are summed over: its label, and whether
/// the edges of a replica (by index) belong to it.
type EdgeGroup = (&'static str, fn(usize) -> bool);

/// A termination: its change's sequence and when the API answered.
struct Termination {
    seq: u64,
    sent: Instant,
    answered: Instant,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.replicas == 0 || (args.replicas > 1 && !args.postgres) {
        bail!("--replicas must be 1, or more with --postgres (replicas share one database)");
    }
    let needed = args.edges as u64 * 2 + 256;
    if processes::open_files_limit().is_some_and(|limit| limit < needed) {
        bail!("{} streams need about {needed} open files here: run `ulimit -n {}` first", args.edges, needed.max(8192));
    }
    let binary = processes::binary(args.binary.clone())?;
    let database = if args.postgres { Some(postgres::ScratchDatabase::create("fanout").await?) } else { None };
    // Each replica's config and log; kept until the end of the run.
    let mut dirs = Vec::new();
    let mut planes = Vec::new();
    for replica in 0..args.replicas {
        let dir = WorkDir::new(&format!("fanout-{replica}"), args.keep)?;
        let plane = match &database {
            Some(database) => ControlPlane::start_on(&binary, &dir, &database.url).await?,
            None => ControlPlane::start(&binary, &dir).await?,
        };
        planes.push(plane);
        dirs.push(dir);
    }
    planes[0].apply_policy(&processes::policy("http://127.0.0.1:9")).await?;
    let store = if args.postgres { "PostgreSQL" } else { "SQLite" };
    println!(
        "{} control plane(s) on {store}; {} simulated edges (reports {}); {} terminations, one every {} ms",
        args.replicas,
        args.edges,
        if args.no_reports { "off" } else { "on" },
        args.terminations,
        args.interval_ms
    );

    let sessions = login_all(&planes[0], args.terminations).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.edges).build()?;
    let edges = enroll_all(&http, &planes, args.edges).await?;
    let key = stream_key(&http, &planes[0].edge_url, &edges[0]).await?;
    let rss_before: Vec<u64> = planes.iter().map(|p| rss_kib(p.pid())).collect();

    let (arrivals, mut received) = mpsc::unbounded_channel();
    let opened = Instant::now();
    for (index, edge) in edges.iter().enumerate() {
        let base = planes[index % planes.len()].edge_url.clone();
        let edge = SimulatedEdge { index, identity: Arc::clone(edge), base, key, http: http.clone() };
        let arrivals = arrivals.clone();
        let reports = !args.no_reports;
        tokio::spawn(async move {
            if let Err(error) = edge.run(reports, arrivals).await {
                if STREAMS_ENDED.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("edge {} stream ended: {error:#}", edge.index);
                }
            }
        });
    }
    drop(arrivals);
    let mut seen: Vec<Vec<(u64, Instant)>> = vec![Vec::new(); args.edges];
    let mut snapshots = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while snapshots < args.edges {
        let arrival = tokio::time::timeout_at(deadline, received.recv())
            .await
            .map_err(|_| anyhow!("only {snapshots} of {} streams delivered a snapshot within 120 s", args.edges))?
            .ok_or_else(|| anyhow!("every stream ended"))?;
        if seen[arrival.edge].is_empty() {
            snapshots += 1;
        }
        seen[arrival.edge].push((arrival.seq, arrival.at));
    }
    println!("{} streams open, every snapshot verified, in {:.1} s", args.edges, opened.elapsed().as_secs_f64());

    // Idle: heartbeats and reports only.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after: Vec<u64> = planes.iter().map(|p| rss_kib(p.pid())).collect();
    let idle_cpu = cpu_over(&planes, Duration::from_secs(args.idle_seconds)).await;
    let own_idle = processes::own_and_reaped_cpu_seconds();

    // Terminations, while every edge's arrivals are collected until each
    // has the last one (or 10 s after the last answer).
    let (last_seq, target) = tokio::sync::oneshot::channel::<u64>();
    let collector = tokio::spawn(collect(received, seen, target));
    let cpu_before: Vec<f64> = planes.iter().map(|p| cpu_seconds(p.pid())).collect();
    let started = Instant::now();
    let terminations = terminate_all(&planes[0], &sessions, Duration::from_millis(args.interval_ms)).await?;
    let last = terminations.iter().map(|t| t.seq).max().unwrap_or_default();
    let _ = last_seq.send(last);
    let seen = collector.await.context("the collector panicked")?;
    let wall = started.elapsed().as_secs_f64();
    let busy: Vec<f64> = planes.iter().zip(&cpu_before).map(|(p, before)| cpu_seconds(p.pid()) - before).collect();
    let own_busy = processes::own_and_reaped_cpu_seconds() - own_idle;
    report(&args, &planes, &seen, &terminations, last);
    for replica in 0..planes.len() {
        let per_edge = args.edges.div_ceil(planes.len()) as f64;
        println!(
            "replica {}: {:.0} KiB resident before the streams, {:.0} after ({:+.1} KiB per edge); \
             idle {:.1} ms CPU/s ({:.1} µs/s per edge); terminations {:.2} s CPU over {wall:.1} s ({:.0} µs per termination)",
            replica + 1,
            rss_before[replica] as f64,
            rss_after[replica] as f64,
            (rss_after[replica] as f64 - rss_before[replica] as f64) / per_edge,
            idle_cpu[replica] * 1000.0,
            idle_cpu[replica] * 1e6 / per_edge,
            busy[replica],
            busy[replica] * 1e6 / terminations.len().max(1) as f64,
        );
    }
    println!("this process: {own_busy:.2} s CPU during the terminations (verifying every frame of every stream)");
    Ok(())
}

/// One simulated edge: its identity, the replica it streams from, the
/// stream key it verifies frames with.
struct SimulatedEdge {
    index: usize,
    identity: Arc<EdgeIdentity>,
    base: String,
    key: StreamPublicKey,
    http: reqwest::Client,
}

impl SimulatedEdge {
    /// Streams until the connection ends, sending every snapshot and delta
    /// it verified to `arrivals`; reports what it applied if `reports`.
    async fn run(&self, reports: bool, arrivals: mpsc::UnboundedSender<Arrival>) -> Result<()> {
        let nonce = StreamNonce(rand::random());
        let mut verifier = FrameVerifier::new(self.key, StreamBinding { nonce, since: None });
        let url = format!("{}{STREAM_PATH}?nonce={nonce}", self.base);
        let request = self.http.get(&url).bearer_auth(self.identity.assertion());
        let mut response = request.send().await?.error_for_status()?;
        let applied = Arc::new(AtomicU64::new(0));
        let changed = Arc::new(Notify::new());
        if reports {
            tokio::spawn(report_loop(self.reporter(), Arc::clone(&applied), Arc::clone(&changed)));
        }
        let mut buffer = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let at = Instant::now();
            buffer.extend_from_slice(&chunk);
            let mut used = 0;
            while let Some(payload) = next_frame(&buffer[used..])? {
                used += FRAME_HEADER_BYTES + payload.len();
                let message =
                    verifier.open(payload).map_err(|refusal| anyhow!("frame refused: {}", refusal.reason()))?;
                let seq = match decode(message)? {
                    Message::Snapshot(body) => body.seq,
                    Message::Delta(delta) => {
                        DELTA_BYTES.fetch_add((FRAME_HEADER_BYTES + payload.len()) as u64, Ordering::Relaxed);
                        DELTA_FRAMES.fetch_add(1, Ordering::Relaxed);
                        delta.seq
                    }
                    Message::Heartbeat { .. } => continue,
                };
                applied.store(seq, Ordering::Relaxed);
                changed.notify_one();
                let _ = arrivals.send(Arrival { edge: self.index, seq, at });
            }
            buffer.drain(..used);
        }
        bail!("the control plane ended the stream")
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            identity: Arc::clone(&self.identity),
            url: format!("{}{REPORT_PATH}", self.base),
            http: self.http.clone(),
        }
    }
}

/// Where and as whom an edge reports.
struct Reporter {
    identity: Arc<EdgeIdentity>,
    url: String,
    http: reqwest::Client,
}

/// As `proxy/src/subscriber.rs` does: a report at once after a change,
/// otherwise every second.
async fn report_loop(reporter: Reporter, applied: Arc<AtomicU64>, changed: Arc<Notify>) {
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), changed.notified()).await;
        let body = ReportBody {
            applied_seq: applied.load(Ordering::Relaxed),
            live_connections: 0,
            closed: Vec::new(),
            activity: Vec::new(),
            connections_complete: false,
        };
        let request = reporter.http.post(&reporter.url).bearer_auth(reporter.identity.assertion()).json(&body);
        let sent = request.timeout(Duration::from_secs(5)).send().await;
        if !sent.is_ok_and(|response| response.status().is_success()) {
            REPORTS_FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Collects arrivals until `target` says the last sequence and every edge
/// has read it, or 10 s after that.
async fn collect(
    mut received: mpsc::UnboundedReceiver<Arrival>,
    mut seen: Vec<Vec<(u64, Instant)>>,
    mut target: tokio::sync::oneshot::Receiver<u64>,
) -> Vec<Vec<(u64, Instant)>> {
    let reached =
        |seen: &[Vec<(u64, Instant)>], last: u64| seen.iter().all(|s| s.last().is_some_and(|(q, _)| *q >= last));
    let mut last = None;
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        if last.is_some_and(|last| reached(&seen, last)) {
            return seen;
        }
        tokio::select! {
            arrival = received.recv() => match arrival {
                Some(arrival) => seen[arrival.edge].push((arrival.seq, arrival.at)),
                None => return seen,
            },
            value = &mut target, if last.is_none() => {
                last = Some(value.unwrap_or(u64::MAX));
                deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            }
            _ = tokio::time::sleep_until(deadline) => return seen,
        }
    }
}

/// One session per termination, each its own user's.
async fn login_all(plane: &ControlPlane, count: usize) -> Result<Vec<String>> {
    let logins = stream::iter(0..count).map(|i| async move {
        let (id, _token) = plane.login(&format!("fanout{i}@{USER_DOMAIN}")).await?;
        Ok::<_, anyhow::Error>(id)
    });
    logins.buffered(8).collect::<Vec<_>>().await.into_iter().collect()
}

/// Enrolls `count` edges, each at the replica it will stream from.
async fn enroll_all(http: &reqwest::Client, planes: &[ControlPlane], count: usize) -> Result<Vec<Arc<EdgeIdentity>>> {
    let enrolled = stream::iter(0..count).map(|i| async move {
        let id = format!("fanout-edge-{i}");
        let identity = EdgeIdentity::new(&id, &id, Enrollment::bootstrap(EDGE_SECRET));
        let base = &planes[i % planes.len()].edge_url;
        identity.establish(http, base).await.with_context(|| format!("enrolling {id}"))?;
        Ok::<_, anyhow::Error>(Arc::new(identity))
    });
    enrolled.buffered(16).collect::<Vec<_>>().await.into_iter().collect()
}

/// The stream key, as an edge that pins none fetches it.
async fn stream_key(http: &reqwest::Client, base: &str, edge: &EdgeIdentity) -> Result<StreamPublicKey> {
    let response = http.get(format!("{base}{STREAM_KEY_PATH}")).bearer_auth(edge.assertion()).send().await?;
    let published: PublishedStreamKey = response.error_for_status()?.json().await?;
    Ok(published.key()?)
}

/// Each replica's CPU seconds per second over `span`.
async fn cpu_over(planes: &[ControlPlane], span: Duration) -> Vec<f64> {
    let before: Vec<f64> = planes.iter().map(|p| cpu_seconds(p.pid())).collect();
    tokio::time::sleep(span).await;
    planes.iter().zip(before).map(|(p, b)| (cpu_seconds(p.pid()) - b) / span.as_secs_f64()).collect()
}

/// Terminates every session on `plane`, one started every `interval` (a
/// slow answer delays the next one).
async fn terminate_all(plane: &ControlPlane, sessions: &[String], interval: Duration) -> Result<Vec<Termination>> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done = Vec::with_capacity(sessions.len());
    for id in sessions {
        tick.tick().await;
        let sent = Instant::now();
        let response =
            plane.post(&format!("/sessions/{id}/terminate"), &json!({ "reason": "fan-out bench" })).send().await?;
        let answered = Instant::now();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(seq) = body["receipt"]["seq"].as_u64() else { bail!("terminate {id}: {status} {body}") };
        done.push(Termination { seq, sent, answered });
    }
    Ok(done)
}

/// Prints the latency from each termination's answer (and from its
/// sending) to its frame on every edge, by where the edge streams from.
fn report(args: &Args, planes: &[ControlPlane], seen: &[Vec<(u64, Instant)>], terminations: &[Termination], last: u64) {
    let missing = seen.iter().filter(|s| s.last().is_none_or(|(q, _)| *q < last)).count();
    println!(
        "{} of {} edges read the last termination (seq {last}); {missing} did not within 10 s",
        args.edges - missing,
        args.edges
    );
    let groups: &[EdgeGroup] = if planes.len() > 1 {
        &[
            ("all edges", |_| true),
            ("edges on the committing replica", |r| r == 0),
            ("edges on other replicas", |r| r != 0),
        ]
    } else {
        &[("all edges", |_| true)]
    };
    for (label, member) in groups {
        let (mut from_answer, mut from_sent) = (Vec::new(), Vec::new());
        for (_, arrivals) in seen.iter().enumerate().filter(|(edge, _)| member(edge % planes.len())) {
            for termination in terminations {
                if let Some((_, at)) = arrivals.iter().find(|(seq, _)| *seq >= termination.seq) {
                    from_answer.push(signed_ms(*at, termination.answered));
                    from_sent.push(signed_ms(*at, termination.sent));
                }
            }
        }
        from_answer.sort_by(f64::total_cmp);
        from_sent.sort_by(f64::total_cmp);
        let row = |name: &str, v: &[f64]| {
            println!(
                "  {name:<14} p50 {:>7.1} ms  p95 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
                percentile(v, 0.50),
                percentile(v, 0.95),
                percentile(v, 0.99),
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        println!("{label}: {} (termination, edge) pairs", from_answer.len());
        row("from answer", &from_answer);
        row("from request", &from_sent);
    }
    let frames = DELTA_FRAMES.load(Ordering::Relaxed).max(1);
    println!(
        "  delta frames   {:.0} bytes each on the wire (mean of {frames})",
        DELTA_BYTES.load(Ordering::Relaxed) as f64 / frames as f64
    );
    println!(
        "  reports failed or refused: {}; streams ended early: {}",
        REPORTS_FAILED.load(Ordering::Relaxed),
        STREAMS_ENDED.load(Ordering::Relaxed)
    );
    let mut answers: Vec<f64> = terminations.iter().map(|t| signed_ms(t.answered, t.sent)).collect();
    answers.sort_by(f64::total_cmp);
    println!("  API answer     p50 {:>7.1} ms  p99 {:>7.1} ms", percentile(&answers, 0.50), percentile(&answers, 0.99));
}
