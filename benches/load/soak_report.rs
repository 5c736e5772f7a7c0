//! The soak harness's minute-by-minute samples and its report: resident
//! memory (`VmRSS`) and open file descriptors of every watched process, and
//! each cluster's counts in that minute; at the end Markdown tables, the
//! growth from minute 1 to the last (and over the second half, where
//! warm-up is over), and a verdict line per process.

use crate::processes;
use crate::soak_workload::{Counts, Tally};

/// A process whose memory and descriptors are sampled.
pub struct Watched {
    /// Its name in the tables, e.g. `sqlite edge-1`.
    pub label: String,
    /// Its process id.
    pub pid: u32,
}

/// One process at one minute.
#[derive(Clone, Copy)]
pub struct Reading {
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
}

impl Reading {
    /// Reads `pid` now.
    pub fn of(pid: u32) -> Self {
        Self { rss_kib: processes::rss_kib(pid), fds: processes::open_fds(pid) }
    }

    fn mib(self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// Everything sampled at the end of one minute.
pub struct Minute {
    /// 1 for the first minute.
    pub minute: u64,
    /// One per watched process, in their order.
    pub readings: Vec<Reading>,
    /// One per cluster: the counts in this minute alone.
    pub counts: Vec<Counts>,
}

/// The run's samples.
pub struct Report {
    processes: Vec<Watched>,
    clusters: Vec<String>,
    minutes: Vec<Minute>,
    last_counts: Vec<Counts>,
}

impl Report {
    /// A report on `processes`, with counts from clusters named `clusters`.
    pub fn new(processes: Vec<Watched>, clusters: Vec<String>) -> Self {
        let last_counts = vec![Counts::default(); clusters.len()];
        Self { processes, clusters, minutes: Vec::new(), last_counts }
    }

    /// Samples every process and every cluster's tally (in `clusters`
    /// order) as minute `minute`, and prints a progress line.
    pub fn sample(&mut self, minute: u64, tallies: &[&Tally]) {
        let readings: Vec<Reading> = self.processes.iter().map(|p| Reading::of(p.pid)).collect();
        let mut counts = Vec::new();
        for (tally, last) in tallies.iter().zip(&mut self.last_counts) {
            let now = tally.counts();
            counts.push(std::array::from_fn(|i| now[i] - last[i]));
            *last = now;
        }
        let memory: Vec<String> = self
            .processes
            .iter()
            .zip(&readings)
            .map(|(p, r)| format!("{} {:.1} MiB/{}", p.label, r.mib(), r.fds))
            .collect();
        let work: Vec<String> = self.clusters.iter().zip(&counts).map(|(c, n)| format!("{c} {}", brief(n))).collect();
        eprintln!("minute {minute}: {}; {}", memory.join(", "), work.join("; "));
        self.minutes.push(Minute { minute, readings, counts });
    }

    /// Prints the tables, the growth and the verdicts.
    pub fn print(&self) {
        let (Some(first), Some(last)) = (self.minutes.first(), self.minutes.last()) else {
            return println!("no minute was sampled");
        };
        println!("\nresident memory (MiB) / open file descriptors, at the end of each minute:\n");
        let labels: Vec<&str> = self.processes.iter().map(|p| p.label.as_str()).collect();
        println!("| minute | {} |", labels.join(" | "));
        println!("|---:|{}", "---:|".repeat(labels.len()));
        for m in &self.minutes {
            let cells: Vec<String> = m.readings.iter().map(|r| format!("{:.1} / {}", r.mib(), r.fds)).collect();
            println!("| {} | {} |", m.minute, cells.join(" | "));
        }
        println!("\nwhat each cluster did in each minute:\n");
        println!("| minute | cluster | {} |", Tally::HEADINGS.join(" | "));
        println!("|---:|---|{}", "---:|".repeat(Tally::HEADINGS.len()));
        for m in &self.minutes {
            for (cluster, counts) in self.clusters.iter().zip(&m.counts) {
                let cells: Vec<String> = counts.iter().map(u64::to_string).collect();
                println!("| {} | {cluster} | {} |", m.minute, cells.join(" | "));
            }
        }
        println!("\ntotals:\n");
        println!("| cluster | {} |", Tally::HEADINGS.join(" | "));
        println!("|---|{}", "---:|".repeat(Tally::HEADINGS.len()));
        for (i, cluster) in self.clusters.iter().enumerate() {
            let total: Vec<String> = (0..Tally::HEADINGS.len())
                .map(|k| self.minutes.iter().map(|m| m.counts[i][k]).sum::<u64>().to_string())
                .collect();
            println!("| {cluster} | {} |", total.join(" | "));
        }
        let middle = &self.minutes[(self.minutes.len() - 1) / 2];
        println!(
            "\ngrowth from minute {} to minute {} (second half: from minute {}):\n",
            first.minute, last.minute, middle.minute
        );
        println!("| process | RSS first → last (MiB) | RSS Δ | RSS Δ second half | FDs first → last | FDs Δ | FDs Δ second half |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (i, process) in self.processes.iter().enumerate() {
            let (a, m, z) = (first.readings[i], middle.readings[i], last.readings[i]);
            println!(
                "| {} | {:.1} → {:.1} | {:+.1} ({:+.1} %) | {:+.1} | {} → {} | {:+} | {:+} |",
                process.label,
                a.mib(),
                z.mib(),
                z.mib() - a.mib(),
                percent(a.mib(), z.mib()),
                z.mib() - m.mib(),
                a.fds,
                z.fds,
                z.fds as i64 - a.fds as i64,
                z.fds as i64 - m.fds as i64
            );
        }
        println!();
        for (i, process) in self.processes.iter().enumerate() {
            let series: Vec<Reading> = self.minutes.iter().map(|m| m.readings[i]).collect();
            println!("{}", verdict(&process.label, &series));
        }
    }
}

/// One line per process: how much it grew, and whether it still grew late
/// in the run (a cache filling to its cap levels off; a leak does not).
/// Descriptors move with the connections open at the moment of the sample,
/// so they count as growing only when their lowest count in the last third
/// of the run is above their highest in the first half: a leak raises the
/// floor.
fn verdict(label: &str, series: &[Reading]) -> String {
    let (first, middle, last) = (series[0], series[(series.len() - 1) / 2], series[series.len() - 1]);
    if last.rss_kib == 0 {
        return format!("{label}: GONE (exited during the run)");
    }
    let grew = last.mib() - first.mib();
    let late = last.mib() - middle.mib();
    let memory = if grew.abs() < 0.05 {
        "RSS flat".to_owned()
    } else {
        let direction = if grew > 0.0 { "grew" } else { "shrank" };
        format!("RSS {direction} by {:.1} MiB ({:+.1} %)", grew.abs(), percent(first.mib(), last.mib()))
    };
    let early_ceiling = series[..series.len().div_ceil(2)].iter().map(|r| r.fds).max().unwrap_or(0);
    let late_floor = series[series.len() - series.len().div_ceil(3)..].iter().map(|r| r.fds).min().unwrap_or(0);
    let memory_late = late > 1.0 && late > 0.03 * middle.mib();
    let shape = match (memory_late, late_floor > early_ceiling) {
        _ if series.len() < 4 => "too few minutes to tell a trend (4 at least)",
        (true, true) => "memory and descriptors still growing late in the run: look for a leak",
        (true, false) => "memory still growing late in the run: look for a leak",
        (false, true) => "descriptors still growing late in the run: look for a leak",
        (false, false) if grew > 1.0 => "grew early, then levelled off",
        (false, false) => "steady",
    };
    format!(
        "{label}: {memory}, {late:+.1} MiB in the second half; FDs {} → {} (at most {early_ceiling} in the first half, \
         at least {late_floor} in the last third): {shape}",
        first.fds, last.fds
    )
}

fn percent(from: f64, to: f64) -> f64 {
    if from > 0.0 {
        100.0 * (to - from) / from
    } else {
        0.0
    }
}

fn brief(counts: &Counts) -> String {
    let parts: Vec<String> = Tally::HEADINGS.iter().zip(counts).map(|(h, n)| format!("{h} {n}")).collect();
    parts.join(", ")
}
