//! Applying one termination delta the way the edge does it: clone the current
//! snapshot (cheap: shared parts), apply, keep the result as the new current.
//! Measured with 1k, 100k and 1M sessions already terminated. Deltas
//! accumulate across iterations, so the occasional merge of the small
//! persistent part into the big frozen part is included in the mean.
//! Target: ≤ 10 µs median at 1M.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis_benches::{snapshot, Rng};
use portcullis_policy::{Change, Delta};

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_termination");
    for terminated in [1_000usize, 100_000, 1_000_000] {
        let mut current = snapshot(terminated, 3);
        let mut rng = Rng::new(5);
        group.bench_function(BenchmarkId::from_parameter(terminated), |b| {
            b.iter(|| {
                let delta = Delta {
                    seq: current.seq() + 1,
                    change: Change::TerminateSession { session: rng.session_id(), expires_at: 1_900_000_000 },
                };
                let mut next = current.clone();
                let affected = next.apply(black_box(&delta)).expect("in sequence");
                current = next;
                affected
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
