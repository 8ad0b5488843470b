//! Heap allocations on the delivery path, and the memory an idle subscriber
//! and a channel cost, measured with a counting global allocator.
//!
//! DESIGN §6: a notification is parsed once and shared; delivering it to a
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
    const NOTIFICATIONS: u64 = 5_000;

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
    assert_eq!(registry.ack(batch).len() as u64, SUBSCRIBERS + 1);

    let n = parsed_notification("jobs", "{\"id\": 12345, \"state\": \"queued\"}");
    let mut out: Vec<Event> = Vec::with_capacity(4 * CAPACITY);
    let deliver = |queues: &mut Vec<SubscriberQueue>, out: &mut Vec<Event>, round: u64| {
        for &id in registry.subscribers_of(&n.channel) {
            queues[id.as_u64() as usize].push(n.clone());
        }
        // Every 16 notifications each consumer takes a batch, so every
        // policy (Backpressure included) reaches its steady state.
        if round % 16 == 15 {
            for q in queues.iter_mut() {
                out.clear();
                q.drain_into(out, 2 * CAPACITY);
            }
        }
    };

    // Warm up: buffers grow to their working size.
    for round in 0..(4 * CAPACITY as u64) {
        deliver(&mut queues, &mut out, round);
    }

    let before = allocations();
    for round in 0..NOTIFICATIONS {
        deliver(&mut queues, &mut out, round);
    }
    let allocated = allocations() - before;

    let deliveries = NOTIFICATIONS * SUBSCRIBERS;
    println!(
        "steady-state delivery: {allocated} heap allocations over {deliveries} deliveries \
         ({NOTIFICATIONS} notifications x {SUBSCRIBERS} subscribers, all five policies, \
         capacity {CAPACITY}, batched draining)"
    );
    assert_eq!(
        allocated, 0,
        "expected no allocation per delivery, got {allocated} over {deliveries}"
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
    let n = parsed_notification("jobs", "payload");
    let mut q = SubscriberQueue::new(&SubscribeOptions::new().capacity(1000));
    let before = live_bytes();
    for _ in 0..1000 {
        q.push(n.clone());
    }
    let full = live_bytes() - before;
    for _ in 0..1_000_000 {
        q.push(n.clone());
    }
    let after_burst = live_bytes() - before;
    println!(
        "a full DropOldest queue of 1000: {full} heap bytes ({} per queued notification, \
         payload shared); after 1,000,000 more pushes: {after_burst} bytes",
        full / 1000
    );
    assert_eq!(full, after_burst, "the queue's memory grew under a burst");
    assert_eq!(q.len(), 1000);
    assert_eq!(q.allocated_entries(), 1000);
}

#[test]
fn filtered_fan_out_allocates_nothing_per_delivery() {
    use std::collections::VecDeque;

    use crate::bus::output::BusEvent;
    use crate::bus::stats::Stats;
    use crate::bus::subscribers::Subscribers;

    const SUBSCRIBERS: usize = 300;
    const NOTIFICATIONS: u64 = 2_000;

    // A third without a filter, a third skipping their own, a third with a
    // predicate that keeps every other payload: the fan-out path with and
    // without filters, all through `Subscribers::fan_out`.
    let mut subscribers = Subscribers::default();
    let mut events = VecDeque::new();
    let mut ids = Vec::new();
    for i in 0..SUBSCRIBERS {
        let options = match i % 3 {
            0 => SubscribeOptions::new(),
            1 => SubscribeOptions::new().skip_own(),
            _ => SubscribeOptions::new().filter(|n| n.payload.ends_with('0')),
        }
        .capacity(32);
        let id = subscribers.insert("jobs", options);
        subscribers.mark_ready(id, &mut events);
        ids.push(id);
    }
    let notifications = [
        parsed_notification("jobs", "payload 0"),
        parsed_notification("jobs", "payload 1"),
    ];
    let mut stats = Stats::default();
    let mut out: Vec<Event> = Vec::with_capacity(128);
    let mut deliver = |round: u64, events: &mut VecDeque<BusEvent>, stats: &mut Stats| {
        let n = &notifications[(round % 2) as usize];
        let ended = subscribers.fan_out(&ids, n, Some(4242), events, stats);
        assert!(ended.is_empty());
        if round % 16 == 15 {
            for &id in &ids {
                out.clear();
                subscribers.drain(id, &mut out, 64);
            }
            events.clear();
        }
    };
    for round in 0..256 {
        deliver(round, &mut events, &mut stats);
    }
    let before = allocations();
    for round in 0..NOTIFICATIONS {
        deliver(round, &mut events, &mut stats);
    }
    let allocated = allocations() - before;
    println!(
        "filtered fan-out: {allocated} heap allocations over {} deliveries \
         ({} filtered out)",
        NOTIFICATIONS * SUBSCRIBERS as u64,
        stats.notifications_filtered
    );
    assert_eq!(allocated, 0, "expected no allocation per filtered delivery");
    assert!(
        stats.notifications_filtered > 0,
        "no filter dropped anything"
    );
}
