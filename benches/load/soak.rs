//! Soak: do the control plane and the edges hold their memory and file
//! descriptors flat under a steady, modest mix of traffic, logins,
//! websockets and terminations for a long time (issue 13)? Not part of CI.
//!
//! One cluster per database (`--database sqlite|postgres|both`; `both` runs
//! the two side by side in the same minutes): a control plane (SQLite in a
//! temp dir, or a fresh PostgreSQL database `portcullis_soak_<pid>` on
//! 127.0.0.1:5432, dropped afterwards) and `--edges` edges as real
//! processes, all in front of one in-process echo upstream. What each
//! cluster is put through is in `soak_workload.rs`: HTTP requests through
//! the edges, logins through the edge channel, websockets held and
//! replaced, sessions and whole users terminated (each checked refused by
//! every edge afterwards, and replayed later: a revival must never happen).
//!
//! At the end of every minute it samples `VmRSS` and the open descriptors
//! of every process (each control plane, each edge, and this harness, which
//! holds the clients and the upstream) and each cluster's counts; at the end
//! it prints Markdown tables, the growth from minute 1 to the last and over
//! the second half, and a verdict per process. It exits non-zero when any
//! revival or failure was counted.
//!
//! ```sh
//! cargo build --release -p portcullis -p portcullis-benches --bin soak
//! nice -n 10 $CARGO_TARGET_DIR/release/soak [--minutes 30] [--database both]
//! ```

// Shared with the other harnesses, which use other parts of them.
#[allow(dead_code)]
mod postgres;
#[allow(dead_code)]
mod processes;
mod soak_report;
mod soak_sockets;
mod soak_workload;
#[allow(dead_code)]
mod ws_upstream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use futures_util::future::join_all;
use tokio::time::Instant;

use postgres::ScratchDatabase;
use processes::{ControlPlane, Edge, WorkDir};
use soak_report::{Report, Watched};
use soak_workload::{Load, Tally, Workload};

/// Options.
#[derive(Parser)]
#[command(about = "Soak: memory and descriptors of the control plane and edges under steady load")]
struct Args {
    /// Minutes to run.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// The control plane's database (`both`: two clusters side by side).
    #[arg(long, value_enum, default_value_t = Databases::Both)]
    database: Databases,
    /// Edges per cluster.
    #[arg(long, default_value_t = 2)]
    edges: usize,
    /// Proxy threads per edge.
    #[arg(long, default_value_t = 2)]
    edge_threads: usize,
    /// What each cluster is put through.
    #[command(flatten)]
    load: Load,
    /// The portcullis binary.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep the temp dirs (configs and logs).
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Databases {
    Sqlite,
    Postgres,
    Both,
}

impl Databases {
    fn names(self) -> &'static [&'static str] {
        match self {
            Self::Sqlite => &["sqlite"],
            Self::Postgres => &["postgres"],
            Self::Both => &["sqlite", "postgres"],
        }
    }
}

/// A control plane on one database and its edges; everything is stopped
/// (edges first) and removed (the database last) on drop.
struct Cluster {
    name: &'static str,
    edges: Vec<Edge>,
    plane: ControlPlane,
    _dir: WorkDir,
    _database: Option<ScratchDatabase>,
}

impl Cluster {
    async fn start(name: &'static str, binary: &Path, args: &Args, upstream: u16) -> Result<Self> {
        let dir = WorkDir::new(&format!("soak-{name}"), args.keep)?;
        let (plane, database) = if name == "postgres" {
            let database = ScratchDatabase::create("soak").await?;
            (ControlPlane::start_on(binary, &dir, &database.url).await?, Some(database))
        } else {
            (ControlPlane::start(binary, &dir).await?, None)
        };
        plane.apply_policy(&processes::policy(&format!("http://127.0.0.1:{upstream}"))).await?;
        let mut edges = Vec::new();
        for i in 1..=args.edges.max(1) {
            edges.push(Edge::start(binary, &plane, &format!("edge-{i}"), args.edge_threads, &dir).await?);
        }
        Ok(Self { name, edges, plane, _dir: dir, _database: database })
    }

    fn watched(&self) -> Vec<Watched> {
        let plane = Watched { label: format!("{} control plane", self.name), pid: self.plane.pid() };
        let edges = self
            .edges
            .iter()
            .enumerate()
            .map(|(i, edge)| Watched { label: format!("{} edge-{}", self.name, i + 1), pid: edge.pid() });
        std::iter::once(plane).chain(edges).collect()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = processes::binary(args.binary.clone())?;
    let upstream = ws_upstream::start().await?;
    let mut clusters = Vec::new();
    for name in args.database.names() {
        clusters.push(Cluster::start(name, &binary, &args, upstream).await?);
    }
    describe(&args, &clusters);

    let workloads: Vec<Workload> = clusters
        .iter()
        .map(|c| Workload::new(&c.plane, c.edges.iter().map(|e| e.port).collect(), args.load.clone()))
        .collect();
    let mut watched: Vec<Watched> = clusters.iter().flat_map(Cluster::watched).collect();
    watched.push(Watched { label: "harness (clients + upstream)".into(), pid: std::process::id() });
    let mut report = Report::new(watched, clusters.iter().map(|c| c.name.to_owned()).collect());
    let tallies: Vec<&Tally> = workloads.iter().map(|w| &w.tally).collect();

    let start = Instant::now();
    let until = start + Duration::from_secs(60 * args.minutes);
    let sampler = async {
        for minute in 1..=args.minutes {
            tokio::time::sleep_until(start + Duration::from_secs(60 * minute)).await;
            report.sample(minute, &tallies);
        }
    };
    tokio::join!(join_all(workloads.iter().map(|w| w.run(until))), sampler);
    report.print();

    let (mut revivals, mut failures) = (0, 0);
    for (cluster, workload) in clusters.iter().zip(&workloads) {
        let counts = workload.tally.counts();
        let (r, f) = (counts[5], counts[6]);
        println!("\n{}: {r} revivals, {f} failures", cluster.name);
        for what in workload.tally.described() {
            println!("  - {what}");
        }
        (revivals, failures) = (revivals + r, failures + f);
    }
    if revivals + failures > 0 {
        bail!("{revivals} revivals and {failures} failures");
    }
    Ok(())
}

fn describe(args: &Args, clusters: &[Cluster]) {
    let load = &args.load;
    let names: Vec<&str> = clusters.iter().map(|c| c.name).collect();
    println!(
        "soak for {} minutes on {}: per cluster a control plane and {} edges ({} threads each); {} live sessions of {} users; \
         {} requests/s round-robin over the edges (1 in {} replays a terminated session); a login every {} s; \
         a session terminated every {} s, a whole user every {} s; {} websockets held, the oldest replaced every {} s",
        args.minutes,
        names.join(" and "),
        args.edges,
        args.edge_threads,
        load.sessions,
        load.users,
        load.rps,
        load.probe_every,
        load.login_every,
        load.terminate_every,
        load.user_terminate_every,
        load.websockets,
        load.ws_replace_every
    );
}
