//! Throughput and latency of the edge against nginx, with `wrk`, in one run:
//! the same small upstream (an nginx server answering `200 hello`) reached
//!
//! - **direct**: wrk → upstream;
//! - **nginx**: wrk → nginx as a plain reverse proxy (keep-alive to the
//!   upstream, no access log) → upstream;
//! - **pingora**: wrk → a bare pingora proxy (`pingora_baseline`: the
//!   edge's pingora and server configuration, no hook but the upstream) →
//!   upstream, which separates pingora's own cost from Portcullis's;
//! - **edge**: wrk → `portcullis edge` → upstream, with a valid session
//!   cookie on every request: each request is authenticated (token cache),
//!   evaluated against the policy, bound to its connection for the kill path
//!   and forwarded with identity headers.
//!
//! The edge's and pingora's `threads` and nginx's `worker_processes` are
//! the same (`--threads`, default 2). Every target gets the same request
//! (the cookie and `Host` headers included), a warm-up, then `--rounds`
//! measured runs of `wrk -t2 -c64 -d15s --latency`, rotating the order of
//! the targets each round; the table shows the median round of each target
//! (by requests/s) and the CPU time each proxy used per request. "Other
//! load" is the CPU the machine spent on processes outside the benchmark
//! during the run, in cores: anything above ~0.1 on a small machine skews
//! the figures, so rerun when nothing else runs, or under `nice -n -10` on a
//! shared machine (the benchmark's processes inherit it and come first).
//!
//! Target of the edge issue: edge ≥ 0.9× nginx requests/s and edge p99 ≤
//! 1.2× nginx's.
//!
//! Run (after `scripts/bench-setup.sh`, which installs wrk and nginx):
//!
//! ```sh
//! cargo build --release -p portcullis -p portcullis-benches --bins
//! cargo run --release -p portcullis-benches --bin edge_vs_nginx -- [--threads 2] [--rounds 3]
//! ```
//!
//! The `portcullis` binary is `--binary`, `$PORTCULLIS_BIN` or
//! `$CARGO_TARGET_DIR/release/portcullis`. Everything runs on loopback on
//! this machine, load generator included, so the figures are relative.

mod nginx;
// Shared with the other harness, which uses other parts of it.
#[allow(dead_code)]
mod processes;
mod wrk;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use nginx::Nginx;
use processes::{ControlPlane, Edge, WorkDir, APP_HOST, USER_DOMAIN};
use wrk::WrkRun;

/// Options.
#[derive(Parser)]
#[command(about = "Edge vs nginx vs direct with wrk")]
struct Args {
    /// Proxy threads of the edge and worker processes of nginx.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    wrk_threads: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Seconds of warm-up per target.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Measured runs per target (the median one is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker processes of the upstream nginx.
    #[arg(long, default_value_t = 1)]
    upstream_workers: usize,
    /// The portcullis binary.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep the temp dir (configs and logs).
    #[arg(long)]
    keep: bool,
}

/// One proxied target.
struct Target {
    name: &'static str,
    port: u16,
    /// Processes whose CPU time is the proxy's (empty for direct).
    pids: Vec<u32>,
    runs: Vec<Round>,
}

/// One measured run of a target.
struct Round {
    wrk: WrkRun,
    /// CPU seconds the proxy used.
    proxy_cpu: f64,
    /// Cores busy with processes outside the benchmark, on average.
    other_load: f64,
}

impl Target {
    fn cpu(&self) -> f64 {
        self.pids.iter().map(|pid| processes::cpu_seconds(*pid)).sum()
    }

    /// The median round by requests/s.
    fn median(&self) -> &Round {
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        order.sort_by(|a, b| self.runs[*a].wrk.requests_per_s.total_cmp(&self.runs[*b].wrk.requests_per_s));
        &self.runs[order[order.len() / 2]]
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = processes::binary(args.binary.clone())?;
    let nginx_binary = nginx::binary()?;
    wrk::check_installed()?;
    let dir = WorkDir::new("edge-vs-nginx", args.keep)?;

    let upstream = Nginx::start_upstream(&nginx_binary, &dir, args.upstream_workers)?;
    let proxy = Nginx::start_proxy(&nginx_binary, &dir, args.threads, upstream.port)?;
    let plane = ControlPlane::start(&binary, &dir).await?;
    plane.apply_policy(&processes::policy(&format!("http://127.0.0.1:{}", upstream.port))).await?;
    let edge = Edge::start(&binary, &plane, "edge-bench", args.threads, &dir).await?;
    let bare = start_pingora_baseline(&dir, args.threads, upstream.port)?;
    let (_, token) = plane.login(&format!("ada@{USER_DOMAIN}")).await?;
    let headers = vec![format!("Cookie: __Host-portcullis_session.app={token}"), format!("Host: {APP_HOST}")];

    let mut targets = vec![
        Target { name: "direct", port: upstream.port, pids: Vec::new(), runs: Vec::new() },
        Target { name: "nginx", port: proxy.port, pids: proxy.pids(), runs: Vec::new() },
        Target { name: "pingora", port: bare.1, pids: vec![bare.0.pid()], runs: Vec::new() },
        Target { name: "edge", port: edge.port, pids: vec![edge.pid()], runs: Vec::new() },
    ];
    for target in &targets {
        let body = check_once(target.port, &token).await?;
        if body != "hello\n" {
            bail!("{} answered {body:?} instead of the upstream's hello", target.name);
        }
    }
    let wrk = wrk::Wrk { threads: args.wrk_threads, connections: args.connections, headers };
    println!(
        "edge and nginx with {} thread(s); wrk -t{} -c{} -d{}s --latency; {} round(s) after a {} s warm-up",
        args.threads, args.wrk_threads, args.connections, args.duration, args.rounds, args.warmup
    );
    for target in &targets {
        wrk.run(target.port, Duration::from_secs(args.warmup)).await?;
    }
    let mut benchmark_pids = upstream.pids();
    benchmark_pids.extend(proxy.pids());
    benchmark_pids.extend([bare.0.pid(), edge.pid(), plane.pid()]);
    let benchmark_cpu = || {
        benchmark_pids.iter().map(|pid| processes::cpu_seconds(*pid)).sum::<f64>()
            + processes::own_and_reaped_cpu_seconds()
    };
    for round in 0..args.rounds {
        let count = targets.len();
        for i in 0..count {
            let target = &mut targets[(i + round) % count];
            let (before, machine_before, benchmark_before) =
                (target.cpu(), processes::machine_busy_seconds(), benchmark_cpu());
            let started = std::time::Instant::now();
            let run = wrk.run(target.port, Duration::from_secs(args.duration)).await?;
            let other = (processes::machine_busy_seconds() - machine_before) - (benchmark_cpu() - benchmark_before);
            let other_load = (other / started.elapsed().as_secs_f64()).max(0.0);
            println!(
                "round {} {:<7} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  other load {:.2} cores",
                round + 1,
                target.name,
                run.requests_per_s,
                run.p50_ms,
                run.p99_ms,
                run.errors,
                other_load
            );
            target.runs.push(Round { wrk: run, proxy_cpu: target.cpu() - before, other_load });
        }
    }
    print_table(&targets);
    Ok(())
}

/// Starts `pingora_baseline` (built next to this binary) in front of `upstream`.
fn start_pingora_baseline(dir: &WorkDir, threads: usize, upstream: u16) -> Result<(processes::Process, u16)> {
    let binary = std::env::current_exe()?.with_file_name("pingora_baseline");
    if !binary.is_file() {
        bail!("no {} (cargo build --release -p portcullis-benches --bins)", binary.display());
    }
    let port = processes::free_port()?;
    let mut command = std::process::Command::new(binary);
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--upstream")
        .arg(format!("127.0.0.1:{upstream}"))
        .arg("--threads")
        .arg(threads.to_string());
    let mut process = processes::Process::spawn(command, "pingora_baseline", dir.path().join("pingora.log"))?;
    process.wait_listening(port)?;
    Ok((process, port))
}

/// One request through `port` with the bench headers; the body (must be 200).
async fn check_once(port: u16, token: &str) -> Result<String> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", APP_HOST)
        .header("cookie", format!("__Host-portcullis_session.app={token}"))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("port {port}: {status} {body}");
    }
    Ok(body)
}

fn print_table(targets: &[Target]) {
    println!("\n| target | requests/s | p50 | p90 | p99 | max | errors | proxy CPU per request | other load |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for target in targets {
        let Round { wrk: run, proxy_cpu, other_load } = target.median();
        let per_request = if target.pids.is_empty() || run.requests == 0 {
            "—".to_owned()
        } else {
            format!("{:.1} µs", proxy_cpu / run.requests as f64 * 1e6)
        };
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {per_request} | {other_load:.2} |",
            target.name, run.requests_per_s, run.p50_ms, run.p90_ms, run.p99_ms, run.max_ms, run.errors
        );
    }
    let median = |name: &str| targets.iter().find(|t| t.name == name).map(|t| &t.median().wrk);
    let (Some(nginx), Some(bare), Some(edge)) = (median("nginx"), median("pingora"), median("edge")) else { return };
    let throughput = edge.requests_per_s / nginx.requests_per_s;
    let p99 = edge.p99_ms / nginx.p99_ms;
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "\nedge / nginx requests/s: {throughput:.2} (target ≥ 0.90: {})\nedge / nginx p99:        {p99:.2} (target ≤ 1.20: {})",
        verdict(throughput >= 0.9),
        verdict(p99 <= 1.2)
    );
    println!(
        "pingora / nginx requests/s: {:.2}, p99 {:.2}; edge / pingora requests/s: {:.2}, p99 {:.2}",
        bare.requests_per_s / nginx.requests_per_s,
        bare.p99_ms / nginx.p99_ms,
        edge.requests_per_s / bare.requests_per_s,
        edge.p99_ms / bare.p99_ms
    );
}
