//! Heap allocations per delivery through `Bus::handle_input` and batched
//! draining, counted with a global allocator, for pgnotify and for the
//! `broadcast<String>` baseline of the fan-out benchmark.
//!
//! The same input is run with one subscriber and with many on one channel:
//! what the many-subscriber run allocates beyond the one-subscriber run,
//! divided by the extra deliveries, is the cost of a delivery. Parsing a
//! notification (once, whatever the number of subscribers) is reported
//! separately, per notification.
//!
//! Run with `cargo test -p pgnotify-benches --test alloc_per_delivery -- --nocapture`
//! to see the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pgnotify_benches::fanout::{BroadcastFanout, FRAMES_PER_CHUNK, PgnotifyFanout, Scenario};

/// Counts allocations (and reallocations) made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments and
// only bumps a const-initialised thread-local counter without a destructor,
// which neither allocates nor fails during thread teardown.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations made while `run` processes `rounds` passes over `chunks`,
/// after one warm-up pass that lets every buffer reach its working size.
fn count(chunks: &[Vec<u8>], rounds: usize, mut run: impl FnMut(&[u8]) -> usize) -> u64 {
    for chunk in chunks {
        run(chunk);
    }
    let before = allocations();
    for _ in 0..rounds {
        for chunk in chunks {
            run(chunk);
        }
    }
    allocations() - before
}

/// Allocations of pgnotify and of the baseline for `scenario`.
fn both(scenario: &Scenario, rounds: usize) -> (u64, u64) {
    let chunks = scenario.chunks();
    let mut pgnotify = PgnotifyFanout::new(scenario).expect("a listening bus");
    let mut baseline = BroadcastFanout::new(scenario);
    let p = count(&chunks, rounds, |c| pgnotify.run_chunk(c));
    let b = count(&chunks, rounds, |c| baseline.run_chunk(c));
    assert_eq!(pgnotify.dropped(), 0);
    assert_eq!(baseline.lagged(), 0);
    (p, b)
}

#[test]
fn delivering_to_more_subscribers_allocates_nothing_more() {
    const ROUNDS: usize = 8;
    for payload_len in [16, 1000] {
        let one = Scenario {
            subscribers: 1,
            channels: 1,
            payload_len,
        };
        let (p1, b1) = both(&one, ROUNDS);
        let notifications = (ROUNDS * FRAMES_PER_CHUNK) as f64;
        println!(
            "{payload_len}-byte payloads, 1 subscriber: {:.2} allocations per notification \
             (pgnotify: parse once), {:.2} (broadcast<String>)",
            p1 as f64 / notifications,
            b1 as f64 / notifications,
        );
        for subscribers in [100, 1000] {
            let many = Scenario { subscribers, ..one };
            let (p, b) = both(&many, ROUNDS);
            let extra_deliveries = notifications * (subscribers - 1) as f64;
            let per_delivery_pgnotify = (p as f64 - p1 as f64) / extra_deliveries;
            let per_delivery_baseline = (b as f64 - b1 as f64) / extra_deliveries;
            println!(
                "{payload_len}-byte payloads, {subscribers} subscribers on one channel: \
                 {per_delivery_pgnotify:.4} allocations per delivery (pgnotify; {p} in all), \
                 {per_delivery_baseline:.4} (broadcast<String>; {b} in all)"
            );
            assert_eq!(
                p,
                p1,
                "pgnotify allocated {} more times for {subscribers} subscribers than for one",
                p as i64 - p1 as i64
            );
        }
    }
}

#[test]
fn spreading_subscribers_over_channels_allocates_one_segment_per_channel_and_chunk() {
    let scenario = Scenario {
        subscribers: 2000,
        channels: 2000,
        payload_len: 16,
    };
    let one = Scenario {
        subscribers: 1,
        channels: 1,
        ..scenario
    };
    // The same number of notifications in both runs.
    let rounds = scenario.chunks().len();
    let (p, b) = both(&scenario, 1);
    let (p1, _) = both(&one, rounds);
    let notifications = rounds * FRAMES_PER_CHUNK;
    println!(
        "2000 subscribers over 2000 channels: {:.2} allocations per notification \
         and delivery (pgnotify), {:.2} (broadcast<String>); one channel: {:.2}",
        p as f64 / notifications as f64,
        b as f64 / notifications as f64,
        p1 as f64 / notifications as f64,
    );
    // Parsing a notification whose channel name and payload are short
    // (here 16 bytes and names like `bench_channel_01234`) allocates nothing: both are
    // stored inline (`SharedStr::INLINE_CAPACITY`). The fan-out freezes one
    // segment per channel touched in a chunk: one per chunk on one channel,
    // one per notification here (256 distinct channels per chunk). Nothing
    // is per delivery.
    let parsing = p1 - rounds as u64;
    assert_eq!(parsing, 0, "short texts are parsed without allocating");
    assert_eq!(
        p - parsing,
        notifications as u64,
        "expected one segment per channel and chunk, on top of one-channel parsing"
    );
}
