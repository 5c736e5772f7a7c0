//! Memory per terminated session, and the full latency distribution of
//! single termination deltas (including the periodic merges that criterion's
//! median hides). Not a criterion bench: it counts allocated bytes with an
//! instrumented global allocator and prints a table.
//!
//! Run: `cargo bench -p portcullis-benches --bench revocation_memory`

use std::alloc::System;
use std::time::Instant;

use portcullis_benches::{snapshot, snapshot_body, Rng};
use portcullis_policy::{Change, Delta, Snapshot};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_bytes(region: &Region<'_, System>) -> i64 {
    let stats = region.change();
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64 + stats.bytes_reallocated as i64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list here
    }
    println!("## Memory per terminated session\n");
    println!("| terminated | built from | bytes per session |");
    println!("|---:|---|---:|");
    for n in [100_000usize, 1_000_000] {
        // The region spans building the wire body too: `from_body` frees it,
        // so what stays live is the snapshot alone.
        let region = Region::new(GLOBAL);
        let built = Snapshot::from_body(snapshot_body(n, 1)).expect("builds");
        let per = live_bytes(&region) as f64 / n as f64;
        println!("| {n} | full snapshot | {per:.1} |");
        drop(built);

        let mut current = snapshot(0, 1);
        let mut rng = Rng::new(2);
        let region = Region::new(GLOBAL);
        for _ in 0..n {
            current = apply_one(&current, &mut rng);
        }
        let per = live_bytes(&region) as f64 / n as f64;
        println!("| {n} | {n} single deltas | {per:.1} |");
    }

    println!("\n## Latency of one termination delta (clone + apply), all samples\n");
    println!("| terminated before | deltas | p50 µs | p99 µs | p99.9 µs | max µs |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [1_000usize, 100_000, 1_000_000] {
        let mut current = snapshot(n, 3);
        let mut rng = Rng::new(4);
        let count = 200_000;
        let mut samples: Vec<f64> = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            current = apply_one(&current, &mut rng);
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
        println!("| {n} | {count} | {:.2} | {:.2} | {:.2} | {:.0} |", at(0.5), at(0.99), at(0.999), at(1.0));
    }
}

fn apply_one(current: &Snapshot, rng: &mut Rng) -> Snapshot {
    let delta = Delta {
        seq: current.seq() + 1,
        change: Change::TerminateSession { session: rng.session_id(), expires_at: 1_900_000_000 },
    };
    let mut next = current.clone();
    next.apply(&delta).expect("in sequence");
    next
}
