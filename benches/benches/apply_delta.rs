//! Applying one termination delta the way the edge does it: clone the current
//! snapshot (cheap: shared parts) and apply. Measured with 1k, 100k and 1M
//! sessions already terminated; every sample starts from the same snapshot,
//! so the size stays what the label says. The periodic merge of the small
//! persistent part into the big frozen part is not in these samples; the
//! `revocation_memory` bench reports the full distribution including it.
//! Target: ≤ 10 µs median at 1M.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use portcullis_benches::{snapshot, Rng};
use portcullis_policy::{Change, Delta};

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_termination");
    for terminated in [1_000usize, 100_000, 1_000_000] {
        let mut rng = Rng::new(5);
        let mut next_delta = |seq: u64| Delta {
            seq,
            change: Change::TerminateSession { session: rng.session_id(), expires_at: 1_900_000_000 },
        };
        // Steady state: some terminations already sit in the small persistent
        // part, as they do between merges on a live edge.
        let mut base = snapshot(terminated, 3);
        for _ in 0..(terminated / 32).max(512) {
            let delta = next_delta(base.seq() + 1);
            base.apply(&delta).expect("in sequence");
        }
        group.bench_function(BenchmarkId::from_parameter(terminated), |b| {
            b.iter_batched(
                || next_delta(base.seq() + 1),
                |delta| {
                    let mut next = base.clone();
                    let affected = next.apply(black_box(&delta)).expect("in sequence");
                    (next, affected)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
