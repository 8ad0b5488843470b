//! Heap allocations on the delivery path, and the memory an idle subscriber
//! and a channel cost, measured with a counting global allocator.
//!
//! The fan-out's promise (ARCHITECTURE.md, "Fan-out by segment"): a
//! notification is parsed once and shared; delivering it to a
//! subscriber (registry lookup, fan-out, queue push, batch hand-off) must not
//! allocate once the queues have reached their working size.
//!
//! This is a unit test (a child of `bus::queue`, so it needs no line in
//! `bus/mod.rs`) because the queue and the registry are crate-private. The
//! counting allocator therefore serves the whole unit-test binary of the
//! crate; it counts per thread, so other tests do not disturb the figures.
//! Once the `Bus` can be driven end to end, a test through
//! `Bus::handle_input` belongs in `core/tests/alloc_per_delivery.rs`.
//!
//! Run with `cargo test -p pgnotify-core --lib alloc_tests -- --nocapture`
//! to see the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;

use crate::bus::queue::SubscriberQueue;
use crate::bus::registry::{ChannelRegistry, SubscriberId};
use crate::bus::segment::{SegmentBuilder, segment_of};
use crate::{Event, Notification, OverflowPolicy, SharedStr, SubscribeOptions};

/// Counts allocations per thread, so tests running in parallel do not see
/// each other's.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn add_live(delta: i64) {
    LIVE_BYTES.with(|b| b.set(b.get() + delta));
}

// SAFETY: every method forwards to `System` with the caller's arguments and
// only updates thread-local counters (const-initialised, no destructor, so
// using them cannot allocate or fail during thread teardown).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        add_live(layout.size() as i64);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as i64));
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        add_live(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}

/// A notification as the protocol layer produces it: channel and payload
/// are slices of one frozen read buffer.
fn parsed_notification(channel: &str, payload: &str) -> Notification {
    let mut buf = Vec::new();
    buf.extend_from_slice(channel.as_bytes());
    buf.extend_from_slice(payload.as_bytes());
    let frame = Bytes::from(buf);
    let shared = frame.clone(); // make the buffer shared, as a read buffer is
    Notification {
        channel: SharedStr::from_utf8(shared.slice(..channel.len())).unwrap(),
        payload: SharedStr::from_utf8(frame.slice(channel.len()..)).unwrap(),
        process_id: 4242,
    }
}

#[test]
fn steady_state_fan_out_allocates_nothing_per_delivery() {
    const SUBSCRIBERS: u64 = 1000;
    const CAPACITY: usize = 64;
    const CHUNKS: u64 = 500;
    const PER_CHUNK: usize = 10;

    let mut registry = ChannelRegistry::new();
    let mut queues: Vec<SubscriberQueue> = Vec::new();
    for raw in 0..SUBSCRIBERS {
        let policy = OverflowPolicy::ALL[raw as usize % OverflowPolicy::ALL.len()];
        queues.push(SubscriberQueue::new(
            &SubscribeOptions::new().capacity(CAPACITY).policy(policy),
        ));
        registry.add("jobs", SubscriberId::from_raw(raw));
    }
    // Another channel, so the lookup is a real one.
    registry.add("other", SubscriberId::from_raw(SUBSCRIBERS));
    let batch = registry.take_pending_changes().expect("LISTEN batch");
    assert_eq!(registry.ack(batch).ready.len() as u64, SUBSCRIBERS + 1);

    let n = parsed_notification("jobs", "{\"id\": 12345, \"state\": \"queued\"}");
    let mut builder = SegmentBuilder::default();
    let mut out: Vec<Event> = Vec::with_capacity(4 * CAPACITY);
    let mut batch = crate::bus::EventBatch::new();
    // One chunk: its notifications frozen into one segment (the one
    // allocation per chunk and channel), a span of it queued to every
    // subscriber, and every few chunks each consumer takes a batch.
    let mut deliver = |queues: &mut Vec<SubscriberQueue>, round: u64| {
        for _ in 0..PER_CHUNK {
            builder.push(n.clone()).unwrap();
        }
        let segment = builder.freeze();
        let slot = registry.slot_of(&n.channel).unwrap();
        for &id in registry.ready_at(slot) {
            queues[id.as_u64() as usize].push_span(&segment, 0..PER_CHUNK as u32);
        }
        if round % 4 == 3 {
            for (i, q) in queues.iter_mut().enumerate() {
                if i % 2 == 0 {
                    out.clear();
                    q.drain_into(&mut out, 2 * CAPACITY);
                } else {
                    batch.clear();
                    q.drain_batch(&mut batch, 2 * CAPACITY);
                }
            }
        }
    };

    // Warm up: buffers grow to their working size.
    for round in 0..(4 * CAPACITY as u64) {
        deliver(&mut queues, round);
    }

    let before = allocations();
    for round in 0..CHUNKS {
        deliver(&mut queues, round);
    }
    let allocated = allocations() - before;

    let deliveries = CHUNKS * PER_CHUNK as u64 * SUBSCRIBERS;
    println!(
        "steady-state delivery: {allocated} heap allocations over {deliveries} deliveries \
         ({CHUNKS} chunks of {PER_CHUNK} notifications x {SUBSCRIBERS} subscribers, all five \
         policies, capacity {CAPACITY}, batched draining): one per chunk, for its segment"
    );
    assert_eq!(
        allocated, CHUNKS,
        "expected one allocation per chunk (its segment) and none per delivery"
    );
    let dropped: u64 = queues.iter().map(SubscriberQueue::dropped).sum();
    assert!(
        dropped > 0,
        "the run never overflowed, so it measured too little"
    );
}

#[test]
fn memory_per_idle_subscriber_and_per_channel() {
    const N: usize = 10_000;

    // Idle subscribers on one channel: a queue each, and an id in the
    // channel's fan-out list.
    let before = live_bytes();
    let mut registry = ChannelRegistry::new();
    let mut queues = Vec::with_capacity(N);
    for raw in 0..N {
        queues.push(SubscriberQueue::new(&SubscribeOptions::new()));
        registry.add("jobs", SubscriberId::from_raw(raw as u64));
    }
    let batch = registry.take_pending_changes().unwrap();
    let _ = registry.ack(batch);
    let per_subscriber = (live_bytes() - before) as f64 / N as f64;
    let queue_heap: usize = queues.iter().map(SubscriberQueue::allocated_entries).sum();
    drop((registry, queues));

    // Channels with one subscriber each: slot, name, index entry, list.
    let names: Vec<String> = (0..N).map(|i| format!("channel_{i:08}")).collect();
    let before = live_bytes();
    let mut registry = ChannelRegistry::new();
    for (raw, name) in names.iter().enumerate() {
        registry.add(name, SubscriberId::from_raw(raw as u64));
    }
    let batch = registry.take_pending_changes().unwrap();
    let sql_len = batch.sql().len();
    let _ = registry.ack(batch);
    let per_channel = (live_bytes() - before) as f64 / N as f64;

    println!(
        "idle subscriber: {per_subscriber:.0} bytes (SubscriberQueue {} bytes inline, \
         {queue_heap} queue heap bytes in total, + its id in the channel's list); \
         channel with one subscriber and a 16-byte name: {per_channel:.0} bytes \
         (slot, Arc'd name, index entry, subscriber list; amortised table growth included); \
         the relisten query for {N} channels was {sql_len} bytes",
        std::mem::size_of::<SubscriberQueue>()
    );
    assert_eq!(queue_heap, 0, "an idle queue must not allocate");
    assert!(
        per_subscriber < 256.0,
        "idle subscriber costs {per_subscriber} bytes"
    );
    assert!(per_channel < 512.0, "a channel costs {per_channel} bytes");
    drop(registry);
}

#[test]
fn full_queue_memory_is_its_capacity_and_does_not_grow() {
    let segment = segment_of([parsed_notification("jobs", "payload")]);
    let options = SubscribeOptions::new()
        .policy(crate::OverflowPolicy::DropOldest)
        .capacity(1000);
    let mut q = SubscriberQueue::new(&options);
    let before = live_bytes();
    for _ in 0..1000 {
        q.push_span(&segment, 0..1);
    }
    let full = live_bytes() - before;
    for _ in 0..1_000_000 {
        q.push_span(&segment, 0..1);
    }
    let after_burst = live_bytes() - before;
    println!(
        "a full DropOldest queue of 1000 one-notification spans: {full} heap bytes ({} per \
         queued span, notification shared); after 1,000,000 more pushes: {after_burst} bytes",
        full / 1000
    );
    assert_eq!(full, after_burst, "the queue's memory grew under a burst");
    assert_eq!(q.len(), 1000);
    assert_eq!(q.allocated_entries(), 1000);
}
