//! Throughput, latency and CPU per request of the edge against the proxies
//! people would otherwise run, in one run: the same small upstream (an nginx
//! server answering `200 hello`) reached
//!
//! - **direct**: load client → upstream;
//! - **nginx**: plain reverse proxy (keep-alive to the upstream, no access
//!   log), `nginx.rs`;
//! - **haproxy**: plain reverse proxy (`http-reuse always`, keep-alive, no
//!   logging), `haproxy.rs`;
//! - **pingora**: a bare pingora proxy (`pingora_baseline`: the edge's
//!   pingora and server configuration, no hook but the upstream), which
//!   separates pingora's own cost from Portcullis's;
//! - **apache**: Apache 2.4 (event MPM) with mod_auth_openidc, an
//!   identity-aware proxy people run today, logged in once through the test
//!   IdP (`cli/tests/idp`), `Require claim` on every request,
//!   `apache_oidc.rs`;
//! - **edge**: `portcullis edge` with a valid session: each request is
//!   authenticated (token cache), evaluated against the policy, bound to its
//!   connection for the kill path and forwarded with identity headers.
//!
//! Every proxy gets `--threads` workers (threads of the edge, pingora and
//! haproxy; worker processes of nginx and Apache) and every target the same
//! request: `Host` plus a `Cookie` header carrying both the edge's and
//! Apache's session cookies. After a warm-up, `--rounds` closed-loop rounds
//! of `wrk -t2 -c64 -d<seconds>s --latency` rotate the order of the targets
//! each round; then as many constant-rate rounds (`fixed_rate.rs`, open loop,
//! corrected for coordinated omission, same connections) offer each target
//! `--fixed-fraction` (default 50%) of nginx's median requests/s of this run
//! (or `--fixed-rate`), again rotating. The table shows the median
//! closed-loop round (by requests/s) and the median constant-rate round (by
//! p99) of each target, and the CPU time (user + system, from
//! `/proc/<pid>/stat`, all of a proxy's processes) each proxy used per
//! request. "Other load" is the CPU the machine spent on processes outside
//! the benchmark during the runs, in cores (closed loop / constant rate):
//! anything above ~0.1 on a small machine skews the figures, so rerun when
//! nothing else runs, or under `nice -n -10` on a shared machine.
//!
//! Targets of issue 19 (edge throughput): edge ≥ 0.9× bare pingora, ≥ 2×
//! Apache + mod_auth_openidc and ≥ 0.5× nginx requests/s; p99 at the fixed
//! rate ≤ 1.2× nginx's.
//!
//! Run (after `scripts/bench-setup.sh`, which installs wrk, nginx, haproxy,
//! Apache with mod_auth_openidc and the test IdP's npm packages):
//!
//! ```sh
//! cargo build --release -p portcullis -p portcullis-benches --bins
//! cargo run --release -p portcullis-benches --bin edge_vs_nginx -- \
//!     [--targets edge,nginx] [--rounds 3] [--seconds 15] [--threads 2]
//! ```
//!
//! The `portcullis` binary is `--binary`, `$PORTCULLIS_BIN` or
//! `$CARGO_TARGET_DIR/release/portcullis`. Everything runs on loopback on
//! this machine, load generator included, so the figures are relative.

mod apache_oidc;
mod fixed_rate;
mod haproxy;
mod idp;
mod idp_login;
mod nginx;
// Shared with the other harnesses, which use other parts of it.
#[allow(dead_code)]
mod processes;
#[path = "edge_vs_nginx_report.rs"]
mod report;
mod wrk;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;

use apache_oidc::ApacheOidc;
use fixed_rate::FixedRate;
use haproxy::Haproxy;
use idp::Idp;
use nginx::Nginx;
use processes::{ControlPlane, Edge, Process, WorkDir, APP_HOST, USER_DOMAIN};
use report::{FixedRound, Measured, Round};

/// Every target, in the first round's order.
const TARGETS: [&str; 6] = ["direct", "nginx", "haproxy", "pingora", "apache", "edge"];

/// Options.
#[derive(Parser)]
#[command(about = "Edge vs nginx, haproxy, bare pingora, Apache + mod_auth_openidc and direct")]
struct Args {
    /// Targets to run, comma-separated (direct,nginx,haproxy,pingora,apache,edge).
    #[arg(long, value_delimiter = ',', default_value = "direct,nginx,haproxy,pingora,apache,edge")]
    targets: Vec<String>,
    /// Proxy threads of the edge, pingora and haproxy; worker processes of nginx and Apache.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Load client threads.
    #[arg(long, default_value_t = 2)]
    wrk_threads: usize,
    /// Load client connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per measured run.
    #[arg(long, alias = "duration", default_value_t = 15)]
    seconds: u64,
    /// Seconds of warm-up per target.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Measured runs per target and kind (the median one is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Offered rate of the constant-rate rounds, as a fraction of nginx's
    /// median requests/s in this run (0: no constant-rate rounds).
    #[arg(long, default_value_t = 0.5)]
    fixed_fraction: f64,
    /// Offered rate of the constant-rate rounds in requests/s, instead of
    /// the fraction of nginx's.
    #[arg(long)]
    fixed_rate: Option<f64>,
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

/// Which processes' CPU time is a target's.
#[derive(Clone)]
enum Cpu {
    /// No process of its own (direct).
    None,
    /// One process, its threads included.
    Process(u32),
    /// A parent and whichever children it has at the time (nginx, Apache).
    Tree(u32),
}

impl Cpu {
    fn pids(&self) -> Vec<u32> {
        match self {
            Cpu::None => Vec::new(),
            Cpu::Process(pid) => vec![*pid],
            Cpu::Tree(parent) => {
                let mut pids = processes::children(*parent);
                pids.push(*parent);
                pids
            }
        }
    }

    fn seconds(&self) -> f64 {
        self.pids().iter().map(|pid| processes::cpu_seconds(*pid)).sum()
    }
}

/// The servers of one run, stopped when dropped.
#[derive(Default)]
struct Servers {
    nginx: Option<Nginx>,
    haproxy: Option<Haproxy>,
    pingora: Option<Process>,
    plane: Option<ControlPlane>,
    edge: Option<Edge>,
    idp: Option<Idp>,
    apache: Option<ApacheOidc>,
}

/// One target being measured.
struct Target {
    port: u16,
    cpu: Cpu,
    measured: Measured,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let selected: Vec<&'static str> = TARGETS.into_iter().filter(|t| args.targets.iter().any(|a| a == t)).collect();
    if let Some(unknown) = args.targets.iter().find(|a| !TARGETS.contains(&a.as_str())) {
        bail!("unknown target {unknown:?} (known: {})", TARGETS.join(","));
    }
    wrk::check_installed()?;
    let nginx_binary = nginx::binary()?;
    let dir = WorkDir::new("edge-vs-nginx", args.keep)?;

    let upstream = Nginx::start_upstream(&nginx_binary, &dir, args.upstream_workers)?;
    let mut servers = Servers::default();
    let mut ports = Vec::new();
    let mut cookies = Vec::new();
    for &name in &selected {
        let (port, cpu) = match name {
            "direct" => (upstream.port, Cpu::None),
            "nginx" => {
                let proxy = servers.nginx.insert(Nginx::start_proxy(&nginx_binary, &dir, args.threads, upstream.port)?);
                (proxy.port, Cpu::Tree(proxy.pid()))
            }
            "haproxy" => {
                let proxy = Haproxy::start(&haproxy::binary()?, &dir, args.threads, upstream.port)?;
                let proxy = servers.haproxy.insert(proxy);
                (proxy.port, Cpu::Process(proxy.pid()))
            }
            "pingora" => {
                let (process, port) = start_pingora_baseline(&dir, args.threads, upstream.port)?;
                (port, Cpu::Process(servers.pingora.insert(process).pid()))
            }
            "apache" => {
                let binary = apache_oidc::binary()?;
                let port = processes::free_port()?;
                let idp =
                    servers.idp.insert(Idp::start(&dir, serde_json::json!([apache_oidc::idp_client(port)])).await?);
                let apache = ApacheOidc::start(&binary, &dir, args.threads, port, upstream.port, idp)?;
                let apache = servers.apache.insert(apache);
                cookies.push(apache.login().await?);
                (port, Cpu::Tree(apache.pid()))
            }
            "edge" => {
                let binary = processes::binary(args.binary.clone())?;
                let plane = servers.plane.insert(ControlPlane::start(&binary, &dir).await?);
                plane.apply_policy(&processes::policy(&format!("http://127.0.0.1:{}", upstream.port))).await?;
                let edge = servers.edge.insert(Edge::start(&binary, plane, "edge-bench", args.threads, &dir).await?);
                let (_, token) = plane.login(&format!("ada@{USER_DOMAIN}")).await?;
                cookies.push(format!("__Host-portcullis_session.app={token}"));
                (edge.port, Cpu::Process(edge.pid()))
            }
            _ => unreachable!("targets are filtered above"),
        };
        ports.push((name, port, cpu));
    }
    let mut headers = vec![format!("Host: {APP_HOST}")];
    if !cookies.is_empty() {
        headers.push(format!("Cookie: {}", cookies.join("; ")));
    }
    if let (Some(apache), Some(idp)) = (&servers.apache, &servers.idp) {
        apache.check(idp, &cookies.join("; ")).await?;
        wait_for_children(apache.pid(), args.threads)?;
    }
    let mut targets = Vec::new();
    for (name, port, cpu) in ports {
        let body = check_once(port, &headers).await?;
        if body != "hello\n" {
            bail!("{name} answered {body:?} instead of the upstream's hello");
        }
        let is_proxy = !matches!(cpu, Cpu::None);
        targets.push(Target {
            port,
            cpu,
            measured: Measured { name, is_proxy, rounds: Vec::new(), fixed: Vec::new() },
        });
    }

    let wrk = wrk::Wrk { threads: args.wrk_threads, connections: args.connections, headers: headers.clone() };
    println!(
        "targets {}; {} proxy worker(s); wrk -t{} -c{} -d{}s --latency; {} round(s) after a {} s warm-up; load: {}",
        selected.join(","),
        args.threads,
        args.wrk_threads,
        args.connections,
        args.seconds,
        args.rounds,
        args.warmup,
        load_average()
    );
    for target in &targets {
        wrk.run(target.port, Duration::from_secs(args.warmup)).await?;
    }
    let mut benchmark = vec![Cpu::Tree(upstream.pid())];
    benchmark.extend(targets.iter().map(|t| t.cpu.clone()));
    benchmark.extend(servers.plane.as_ref().map(|p| Cpu::Process(p.pid())));
    benchmark.extend(servers.idp.as_ref().map(|i| Cpu::Process(i.pid())));
    let meter = LoadMeter { benchmark };
    let seconds = Duration::from_secs(args.seconds);
    for round in 0..args.rounds {
        for i in 0..targets.len() {
            let count = targets.len();
            let target = &mut targets[(i + round) % count];
            let (cpu_before, started) = (target.cpu.seconds(), meter.start());
            let run = wrk.run(target.port, seconds).await?;
            let other_load = meter.other_load(started);
            println!(
                "round {} {:<8} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  other load {:.2} cores",
                round + 1,
                target.measured.name,
                run.requests_per_s,
                run.p50_ms,
                run.p99_ms,
                run.errors,
                other_load
            );
            let proxy_cpu = target.cpu.seconds() - cpu_before;
            target.measured.rounds.push(Round { wrk: run, proxy_cpu, other_load });
        }
    }

    let nginx_rps = targets.iter().find(|t| t.measured.name == "nginx").and_then(|t| t.measured.median());
    let fixed_rate = args
        .fixed_rate
        .or_else(|| nginx_rps.map(|r| r.wrk.requests_per_s * args.fixed_fraction).filter(|rate| *rate >= 1.0));
    match fixed_rate {
        Some(rate) => {
            println!(
                "constant rate: {rate:.0} requests/s, {} connections, {} s per round",
                args.connections, args.seconds
            );
            let client = FixedRate {
                threads: args.wrk_threads,
                connections: args.connections,
                request: FixedRate::request(&headers),
            };
            for round in 0..args.rounds {
                for i in 0..targets.len() {
                    let count = targets.len();
                    let target = &mut targets[(i + round) % count];
                    let started = meter.start();
                    let run = client.run(target.port, rate, seconds).await?;
                    let other_load = meter.other_load(started);
                    println!(
                        "fixed {} {:<8} {:>9.0} of {:.0} req/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  \
                         max {:>7.2} ms  errors {}  other load {:.2} cores",
                        round + 1,
                        target.measured.name,
                        run.achieved_per_s,
                        run.offered_per_s,
                        run.p50_ms,
                        run.p90_ms,
                        run.p99_ms,
                        run.max_ms,
                        run.errors,
                        other_load
                    );
                    target.measured.fixed.push(FixedRound { run, other_load });
                }
            }
        }
        None => println!("no constant-rate rounds (no nginx in this run, and no --fixed-rate)"),
    }
    println!("load after the run: {}", load_average());
    let measured: Vec<Measured> = targets.into_iter().map(|t| t.measured).collect();
    report::print(&measured, fixed_rate);
    drop(servers);
    Ok(())
}

/// Measures the CPU the machine spends outside the benchmark's processes.
struct LoadMeter {
    benchmark: Vec<Cpu>,
}

/// A [`LoadMeter`] reading: when, machine busy seconds, benchmark seconds.
struct LoadMark(Instant, f64, f64);

impl LoadMeter {
    fn benchmark_seconds(&self) -> f64 {
        self.benchmark.iter().map(Cpu::seconds).sum::<f64>() + processes::own_and_reaped_cpu_seconds()
    }

    fn start(&self) -> LoadMark {
        LoadMark(Instant::now(), processes::machine_busy_seconds(), self.benchmark_seconds())
    }

    /// Cores busy outside the benchmark since `mark`, on average.
    fn other_load(&self, mark: LoadMark) -> f64 {
        let other = (processes::machine_busy_seconds() - mark.1) - (self.benchmark_seconds() - mark.2);
        (other / mark.0.elapsed().as_secs_f64()).max(0.0)
    }
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Waits until `parent` has `count` children (Apache forks them after it listens).
fn wait_for_children(parent: u32, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes::children(parent).len() < count {
        if Instant::now() > deadline {
            bail!("process {parent} has fewer than {count} children after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts `pingora_baseline` (built next to this binary) in front of `upstream`.
fn start_pingora_baseline(dir: &WorkDir, threads: usize, upstream: u16) -> Result<(Process, u16)> {
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
    let mut process = Process::spawn(command, "pingora_baseline", dir.path().join("pingora.log"))?;
    process.wait_listening(port)?;
    Ok((process, port))
}

/// One request through `port` with the bench `headers`; the body (must be 200).
async fn check_once(port: u16, headers: &[String]) -> Result<String> {
    let mut request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/"));
    for header in headers {
        if let Some((name, value)) = header.split_once(": ") {
            request = request.header(name, value);
        }
    }
    let response = request.send().await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("port {port}: {status} {body}");
    }
    Ok(body)
}
