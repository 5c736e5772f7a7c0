//! TCP flows through the edge (`CONNECT`), measured against the release
//! binary: one control plane (SQLite) and one edge as real processes, the
//! upstreams and clients in this process.
//!
//! 1. **Bulk throughput**: `--gib` GiB one way, through the tunnel and
//!    directly to the same in-process upstream, uploading (the client writes,
//!    the upstream counts) and downloading (the upstream writes); best and
//!    median of `--rounds` rounds. Target of the TCP-flows issue: tunnel ≥
//!    0.8× direct.
//! 2. **New flows per second**: `--concurrency` clients, each opening flows
//!    in a loop for `--seconds` (connect, `CONNECT` with a session token, one
//!    byte echoed, close), with 100 sessions taken in turn; the same loop
//!    straight to the echo upstream for comparison.
//! 3. **Kill latency**: `--users` × `--sessions-per-user` sessions with
//!    `--flows-per-session` flows each (10,000 by default) open on the one
//!    edge, each checked with one echo; then every user is terminated
//!    (`POST /api/v1/users/terminate`, `--callers` calls in flight, without
//!    `?wait`), and each flow's latency is the time from its user's API
//!    answer to the moment the client sees its flow close. Target: p99 ≤
//!    100 ms from the answer.
//!
//! ```sh
//! cargo build --release -p portcullis
//! ulimit -n 65536
//! cargo run --release -p portcullis-benches --bin tunnel_flows -- [--gib 4] [--users 100]
//! ```
//!
//! The kill-latency part needs about two file descriptors per flow here
//! (client and upstream) and two in the edge: the harness refuses to start
//! when `ulimit -n` is too low for that.

// Shared with the other harnesses, which use other parts of it.
#[allow(dead_code)]
mod processes;
mod tunnel_kill;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use processes::{percentile, ControlPlane, Edge, WorkDir, APP_HOST, USER_DOMAIN};

/// The CONNECT name of the echo route.
const ECHO: &str = "echo.bench.internal:7";
/// The CONNECT name of the bulk route.
const BULK: &str = "bulk.bench.internal:9";
/// Bytes per read and write in the bulk part.
const BULK_BUFFER: usize = 256 * 1024;

/// Options.
#[derive(Parser)]
#[command(about = "TCP flows through the edge: throughput, flows per second, kill latency")]
struct Args {
    /// GiB moved per bulk run.
    #[arg(long, default_value_t = 2.0)]
    gib: f64,
    /// Bulk rounds per variant.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Clients opening flows at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of the flows-per-second run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Users terminated in the kill-latency part.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Sessions per user.
    #[arg(long, default_value_t = 10)]
    sessions_per_user: usize,
    /// Open flows per session.
    #[arg(long, default_value_t = 10)]
    flows_per_session: usize,
    /// Terminate calls in flight at once.
    #[arg(long, default_value_t = 10)]
    callers: usize,
    /// Proxy threads of the edge.
    #[arg(long, default_value_t = 2)]
    edge_threads: usize,
    /// Seconds to wait for the flows to close after the last answer.
    #[arg(long, default_value_t = 10)]
    close_timeout: u64,
    /// Skip parts: any of bulk, rate, kill.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// The portcullis binary.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep the temp dir (configs and logs).
    #[arg(long)]
    keep: bool,
}

fn policy(echo: u16, bulk: u16) -> String {
    format!(
        "version: 1
routes:
  - name: app
    host: {APP_HOST}
    upstream: http://127.0.0.1:{echo}
    rules:
      - name: staff
        allow: {{ email_domain: [{USER_DOMAIN}] }}
  - name: echo
    tcp: {ECHO}
    upstream: 127.0.0.1:{echo}
    rules:
      - name: staff
        allow: {{ email_domain: [{USER_DOMAIN}] }}
  - name: bulk
    tcp: {BULK}
    upstream: 127.0.0.1:{bulk}
    rules:
      - name: staff
        allow: {{ email_domain: [{USER_DOMAIN}] }}
"
    )
}

/// Starts an echo upstream; returns its port.
async fn echo_upstream() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    Ok(port)
}

/// Starts the bulk upstream: a request is `U` or `D` and a little-endian
/// u64 count; `U`: it reads that many bytes and answers `ok`; `D`: it
/// writes that many bytes and closes.
async fn bulk_upstream() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 9];
                if stream.read_exact(&mut head).await.is_err() {
                    return;
                }
                let count = u64::from_le_bytes(head[1..].try_into().unwrap_or_default());
                let mut buf = vec![0u8; BULK_BUFFER];
                let mut left = count;
                if head[0] == b'U' {
                    while left > 0 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left = left.saturating_sub(n as u64),
                        }
                    }
                    let _ = stream.write_all(b"ok").await;
                } else {
                    while left > 0 {
                        let n = left.min(buf.len() as u64) as usize;
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    Ok(port)
}

/// A flow through the edge, or `None` to go straight to `direct`.
#[derive(Clone)]
struct Route {
    edge: u16,
    target: &'static str,
    token: String,
}

/// Connects to `route` through the edge (CONNECT answered 200) or directly to `direct`.
async fn open(route: Option<&Route>, direct: u16) -> Result<TcpStream> {
    let Some(route) = route else {
        let stream = TcpStream::connect(("127.0.0.1", direct)).await?;
        stream.set_nodelay(true)?;
        return Ok(stream);
    };
    let mut stream = TcpStream::connect(("127.0.0.1", route.edge)).await?;
    stream.set_nodelay(true)?;
    let head = format!(
        "CONNECT {t} HTTP/1.1\r\nHost: {t}\r\nProxy-Authorization: Bearer {}\r\n\r\n",
        route.token,
        t = route.target
    );
    stream.write_all(head.as_bytes()).await?;
    // Read the answer head byte by byte: nothing of the flow is consumed.
    let mut answer = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            bail!("the edge closed before answering: {}", String::from_utf8_lossy(&answer));
        }
        answer.push(byte[0]);
    }
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("CONNECT refused: {}", String::from_utf8_lossy(&answer));
    }
    Ok(stream)
}

/// One bulk transfer of `bytes`; returns GiB/s.
async fn bulk_once(route: Option<&Route>, direct: u16, upload: bool, bytes: u64) -> Result<f64> {
    let mut stream = open(route, direct).await?;
    let mut head = vec![if upload { b'U' } else { b'D' }];
    head.extend_from_slice(&bytes.to_le_bytes());
    let started = Instant::now();
    stream.write_all(&head).await?;
    let mut buf = vec![7u8; BULK_BUFFER];
    if upload {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            stream.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        let mut ok = [0u8; 2];
        stream.read_exact(&mut ok).await.context("the upstream's ok")?;
    } else {
        let mut got = 0u64;
        while got < bytes {
            match stream.read(&mut buf).await? {
                0 => bail!("the download ended after {got} of {bytes} bytes"),
                n => got += n as u64,
            }
        }
    }
    Ok(bytes as f64 / (1u64 << 30) as f64 / started.elapsed().as_secs_f64())
}

async fn bulk(args: &Args, route: &Route, bulk_port: u16, edge: &Edge) -> Result<()> {
    let bytes = (args.gib * (1u64 << 30) as f64) as u64;
    println!("\n## Bulk throughput: {:.1} GiB per run, best and median of {} rounds (GiB/s)\n", args.gib, args.rounds);
    println!("| direction | direct best | direct median | tunnel best | tunnel median | tunnel / direct (median) | edge CPU s per GiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for upload in [true, false] {
        let (mut direct, mut tunnel) = (Vec::new(), Vec::new());
        let mut edge_cpu = 0.0;
        for _ in 0..args.rounds {
            direct.push(bulk_once(None, bulk_port, upload, bytes).await?);
            let before = processes::cpu_seconds(edge.pid());
            tunnel.push(bulk_once(Some(route), bulk_port, upload, bytes).await?);
            edge_cpu += processes::cpu_seconds(edge.pid()) - before;
        }
        for samples in [&mut direct, &mut tunnel] {
            samples.sort_by(f64::total_cmp);
        }
        let (d, t) = (percentile(&direct, 0.5), percentile(&tunnel, 0.5));
        println!(
            "| {} | {:.2} | {d:.2} | {:.2} | {t:.2} | {:.2}× | {:.2} |",
            if upload { "upload (client → upstream)" } else { "download (upstream → client)" },
            percentile(&direct, 1.0),
            percentile(&tunnel, 1.0),
            t / d,
            edge_cpu / (args.gib * args.rounds as f64),
        );
    }
    Ok(())
}

/// Opens flows in a loop for `seconds`; returns (flows, latencies in ms).
async fn rate_run(routes: Arc<Vec<Route>>, direct: Option<u16>, concurrency: usize, seconds: u64) -> (u64, Vec<f64>) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<JoinHandle<Vec<f64>>> = (0..concurrency)
        .map(|_| {
            let (routes, next) = (Arc::clone(&routes), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let route = if direct.is_some() { None } else { Some(&routes[i % routes.len()]) };
                    let started = Instant::now();
                    let flow = async {
                        let mut stream = open(route, direct.unwrap_or(0)).await?;
                        stream.write_all(b"x").await?;
                        let mut back = [0u8; 1];
                        stream.read_exact(&mut back).await?;
                        anyhow::Ok(())
                    };
                    match flow.await {
                        Ok(()) => latencies.push(started.elapsed().as_secs_f64() * 1e3),
                        Err(error) => eprintln!("flow failed: {error:#}"),
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap_or_default());
    }
    all.sort_by(f64::total_cmp);
    (all.len() as u64, all)
}

async fn rate(args: &Args, plane: &ControlPlane, edge: &Edge, echo: u16) -> Result<()> {
    let sessions = create_sessions(plane, "rate", 100, 1).await?;
    let routes: Arc<Vec<Route>> =
        Arc::new(sessions.iter().map(|s| Route { edge: edge.port, target: ECHO, token: s.token.clone() }).collect());
    println!(
        "\n## New flows per second: {} clients for {} s (connect, CONNECT, 1 byte echoed, close)\n",
        args.concurrency, args.seconds
    );
    println!("| path | flows/s | p50 ms | p99 ms | max ms | edge CPU s | control plane CPU s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for direct in [Some(echo), None] {
        let (edge_cpu, plane_cpu) = (processes::cpu_seconds(edge.pid()), processes::cpu_seconds(plane.pid()));
        let (flows, latencies) = rate_run(Arc::clone(&routes), direct, args.concurrency, args.seconds).await;
        // The control plane writes the flows' audit entries as reports arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
            if direct.is_some() { "direct to the echo upstream" } else { "through the edge" },
            flows as f64 / args.seconds as f64,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
            processes::cpu_seconds(edge.pid()) - edge_cpu,
            processes::cpu_seconds(plane.pid()) - plane_cpu,
        );
    }
    Ok(())
}

/// A session and its user.
struct Session {
    user: usize,
    token: String,
}

/// `users` × `per_user` sessions on the `echo` route, eight logins in flight.
async fn create_sessions(plane: &ControlPlane, prefix: &str, users: usize, per_user: usize) -> Result<Vec<Session>> {
    let logins = stream::iter((0..users * per_user).map(|i| async move {
        let user = i % users;
        let (_, token) = plane.login_on(&email(prefix, user), "echo").await?;
        anyhow::Ok(Session { user, token })
    }));
    logins.buffered(8).collect::<Vec<_>>().await.into_iter().collect()
}

/// The email of user number `user` of a group (`prefix`).
fn email(prefix: &str, user: usize) -> String {
    format!("{prefix}{user}@{USER_DOMAIN}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let flows = args.users * args.sessions_per_user * args.flows_per_session;
    let needed = if args.skip.iter().any(|s| s == "kill") { 1024 } else { flows as u64 * 2 + 256 };
    if processes::open_files_limit().is_some_and(|limit| limit < needed) {
        bail!("{flows} open flows need about {needed} open files here: run `ulimit -n {}` first", needed.max(8192));
    }
    let binary = processes::binary(args.binary.clone())?;
    let dir = WorkDir::new("tunnel-flows", args.keep)?;
    let plane = ControlPlane::start(&binary, &dir).await?;
    let (echo, bulk_port) = (echo_upstream().await?, bulk_upstream().await?);
    plane.apply_policy(&policy(echo, bulk_port)).await?;
    let edge = Edge::start(&binary, &plane, "edge-tunnel", args.edge_threads, &dir).await?;
    println!(
        "control plane (SQLite) + 1 edge ({} proxy threads); {} CPUs; upstreams and clients in this process",
        args.edge_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let skip = |part: &str| args.skip.iter().any(|s| s == part);
    if !skip("bulk") {
        let (_, token) = plane.login_on(&email("bulk", 0), "bulk").await?;
        bulk(&args, &Route { edge: edge.port, target: BULK, token }, bulk_port, &edge).await?;
    }
    if !skip("rate") {
        rate(&args, &plane, &edge, echo).await?;
    }
    if !skip("kill") {
        tunnel_kill::kill(&args, &plane, &edge, echo).await?;
    }
    Ok(())
}
