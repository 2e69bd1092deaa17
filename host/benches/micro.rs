//! Criterion micro-benchmarks (wall time): command parsing, DATA framing,
//! a policy call per hook on the default policy and the same rcpt-to logic
//! compiled natively, a new session's instance, and policy swaps.
//!
//! `cargo bench -p relaygate --bench micro [-- FILTER]`. The same workloads'
//! instruction counts are guarded by `bench/callgrind.sh`.

mod workloads;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workloads::{NAMES, Workload};

fn benches(c: &mut Criterion) {
    for name in NAMES {
        let mut group = c.benchmark_group(name.split('/').next().unwrap_or(name));
        if *name == "data/frame-100k" {
            group.throughput(Throughput::Bytes(workloads::message_100k().len() as u64));
        }
        if name.starts_with("swap/") {
            group.sample_size(20);
        }
        let mut workload = Workload::prepare(name);
        group.bench_function(&name[name.find('/').map_or(0, |i| i + 1)..], |b| {
            b.iter_custom(|iterations| {
                let started = std::time::Instant::now();
                workload.run(iterations);
                started.elapsed()
            })
        });
        group.finish();
    }
}

criterion_group!(micro, benches);
criterion_main!(micro);
