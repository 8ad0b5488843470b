//! Parse-and-dispatch of NotificationResponse frames fed from memory, to
//! 1, 100 and 10,000 subscribers on one channel and to 10,000 subscribers
//! over 10,000 channels, at 16-byte and 1,000-byte payloads: pgnotify's
//! `Bus` against a `tokio::sync::broadcast<String>` multiplexer.
//!
//! One iteration feeds one chunk of 256 frames and lets every subscriber
//! that received something drain its queue in one batch. The throughput is
//! counted in deliveries (notifications x subscribers of their channel).
//!
//! Run with `cargo bench -p pgnotify-benches --bench fanout`; the figures in
//! `benches/RESULTS.md` come from `target/criterion/fanout_*/*/new/estimates.json`.

// `criterion_group!` defines a public function it cannot document.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgnotify_benches::fanout::{BroadcastFanout, PgnotifyFanout, Scenario};

fn fanout(c: &mut Criterion) {
    for scenario in Scenario::all() {
        let chunks = scenario.chunks();
        let expected = scenario.deliveries_per_chunk();
        let mut pgnotify = PgnotifyFanout::new(&scenario).expect("a listening bus");
        let mut baseline = BroadcastFanout::new(&scenario);
        // One checked pass over the input before timing: every delivery
        // arrives, and the queues are warm.
        for chunk in &chunks {
            assert_eq!(pgnotify.run_chunk(chunk), expected);
            assert_eq!(baseline.run_chunk(chunk), expected);
        }

        let mut group = c.benchmark_group(format!("fanout_{}", scenario.name()));
        group.throughput(Throughput::Elements(expected as u64));
        if expected >= 100_000 {
            group.sample_size(10);
        }
        let mut next = 0;
        group.bench_function("pgnotify", |b| {
            b.iter(|| {
                next = (next + 1) % chunks.len();
                black_box(pgnotify.run_chunk(black_box(&chunks[next])))
            })
        });
        let mut next = 0;
        group.bench_function("broadcast_string", |b| {
            b.iter(|| {
                next = (next + 1) % chunks.len();
                black_box(baseline.run_chunk(black_box(&chunks[next])))
            })
        });
        group.finish();

        eprintln!(
            "{}: {} subscribers; drops: pgnotify {}, broadcast lagged {}",
            scenario.name(),
            pgnotify.subscriber_count(),
            pgnotify.dropped(),
            baseline.lagged()
        );
    }
}

criterion_group!(benches, fanout);
criterion_main!(benches);
