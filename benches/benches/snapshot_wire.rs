//! Encoded size and encode/decode time of a full snapshot with 100k
//! terminated sessions: what an edge downloads when it (re)connects beyond
//! the retained change log. Decode includes compiling the policy and
//! building the revocation sets.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_benches::snapshot_body;
use portcullis_policy::wire::{decode, encode, Message};
use portcullis_policy::Snapshot;

fn bench_wire(c: &mut Criterion) {
    let message = Message::Snapshot(snapshot_body(100_000, 21));
    let bytes = encode(&message);
    println!(
        "snapshot with 100k terminated sessions: {} bytes encoded ({:.1} bytes per session)",
        bytes.len(),
        bytes.len() as f64 / 100_000.0
    );
    let mut group = c.benchmark_group("snapshot_100k");
    group.sample_size(20);
    group.bench_function("encode", |b| b.iter(|| encode(black_box(&message)).len()));
    group.bench_function("decode_and_build", |b| {
        b.iter(|| match decode(black_box(&bytes)).expect("decodes") {
            Message::Snapshot(body) => Snapshot::from_body(body).expect("builds").seq(),
            _ => unreachable!("encoded a snapshot"),
        })
    });
    group.finish();
}

criterion_group!(benches, bench_wire);
criterion_main!(benches);
