//! The queue's unit tests: every policy at its edges, gap placement, lending,
//! compaction, and a differential test against a per-item reference queue.

use super::*;
use crate::bus::segment::segment_of;
use crate::{Notification, SharedStr};

const QUEUED: Pushed = Pushed {
    queued: 1,
    replaced: 0,
    rejected: 0,
    ended: false,
};
const DROPPED: Pushed = Pushed {
    queued: 0,
    replaced: 0,
    rejected: 1,
    ended: false,
};
const ENDED: Pushed = Pushed {
    queued: 0,
    replaced: 0,
    rejected: 0,
    ended: true,
};
const IGNORED: Pushed = Pushed {
    queued: 0,
    replaced: 0,
    rejected: 0,
    ended: false,
};

fn replaced(dropped: u64) -> Pushed {
    Pushed {
        replaced: dropped,
        ..QUEUED
    }
}

fn note(i: u64) -> Notification {
    Notification {
        channel: SharedStr::from_static("ch"),
        payload: SharedStr::from(i.to_string()),
        process_id: 1,
    }
}

fn queue(policy: OverflowPolicy, capacity: usize) -> SubscriberQueue {
    SubscriberQueue::new(&SubscribeOptions::new().policy(policy).capacity(capacity))
}

/// A compact transcript: `n3` for notification 3, `o2` for Overflow{2},
/// `r5` for Reconnected{5}.
fn read_all(q: &mut SubscriberQueue) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(event) = q.pop() {
        out.push(match event {
            Event::Notification(n) => format!("n{}", n.payload),
            Event::Gap(Gap::Overflow { missed }) => format!("o{missed}"),
            Event::Gap(Gap::Reconnected { generation }) => format!("r{generation}"),
        });
    }
    out
}

fn push_range(q: &mut SubscriberQueue, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        q.push(note(i));
    }
}

/// Checks invariant 2 on a transcript of notifications numbered 1..=sent
/// in order: between consecutive notifications the overflow gaps count
/// exactly the numbers skipped (unless a reconnection gap stands there).
fn assert_accounted(transcript: &[String], sent: u64) {
    let mut expected_next = 1;
    let mut missed = 0;
    for item in transcript {
        if let Some(n) = item.strip_prefix('n') {
            let n: u64 = n.parse().unwrap();
            assert_eq!(
                n - expected_next,
                missed,
                "before n{n}: {missed} counted missed, {} skipped; transcript {transcript:?}",
                n - expected_next
            );
            expected_next = n + 1;
            missed = 0;
        } else if let Some(m) = item.strip_prefix('o') {
            missed += m.parse::<u64>().unwrap();
        }
    }
    assert_eq!(
        sent + 1 - expected_next,
        missed,
        "trailing gaps miscount; transcript {transcript:?}"
    );
}

#[test]
fn drop_oldest_places_the_gap_before_the_retained_items() {
    let mut q = queue(OverflowPolicy::DropOldest, 3);
    push_range(&mut q, 1..=5);
    let t = read_all(&mut q);
    assert_eq!(t, ["o2", "n3", "n4", "n5"]);
    assert_eq!(q.dropped(), 2);
    assert_accounted(&t, 5);
}

#[test]
fn drop_oldest_exactly_full_drops_nothing_and_one_over_drops_one() {
    let mut q = queue(OverflowPolicy::DropOldest, 3);
    push_range(&mut q, 1..=3);
    assert!(q.is_full());
    assert_eq!(read_all(&mut q), ["n1", "n2", "n3"]);
    push_range(&mut q, 4..=6);
    assert_eq!(q.push(note(7)), replaced(1));
    assert_eq!(read_all(&mut q), ["o1", "n5", "n6", "n7"]);
}

#[test]
fn drop_oldest_capacity_one_counts_every_replaced_item() {
    let mut q = queue(OverflowPolicy::DropOldest, 1);
    push_range(&mut q, 1..=10);
    assert_eq!(read_all(&mut q), ["o9", "n10"]);
}

#[test]
fn drop_oldest_accumulates_gaps_of_dropped_entries() {
    let mut q = queue(OverflowPolicy::DropOldest, 2);
    push_range(&mut q, 1..=3); // [o1 n2, n3]
    q.push_gap(Gap::Reconnected { generation: 7 }); // tail r7
    push_range(&mut q, 4..=5); // drops n2, n3 -> o3 r7 before n4
    let t = read_all(&mut q);
    assert_eq!(t, ["o3", "r7", "n4", "n5"]);
    assert_accounted(&t, 5);
}

#[test]
fn drop_oldest_merge_after_partial_read_still_counts_exactly() {
    let mut q = queue(OverflowPolicy::DropOldest, 2);
    push_range(&mut q, 1..=3); // [o1 n2, n3]
    assert_eq!(q.pop(), Some(Event::Gap(Gap::Overflow { missed: 1 })));
    push_range(&mut q, 4..=4); // drops n2 -> o1 before n3
    let mut t = vec!["o1".to_owned()];
    t.extend(read_all(&mut q));
    assert_eq!(t, ["o1", "o1", "n3", "n4"]);
    assert_accounted(&t, 4);
}

#[test]
fn drop_newest_places_the_gap_after_the_queued_items() {
    let mut q = queue(OverflowPolicy::DropNewest, 3);
    push_range(&mut q, 1..=3);
    assert_eq!(q.push(note(4)), DROPPED);
    q.push(note(5));
    let t = read_all(&mut q);
    assert_eq!(t, ["n1", "n2", "n3", "o2"]);
    assert_accounted(&t, 5);
}

#[test]
fn drop_newest_gap_stands_before_the_next_accepted_item() {
    let mut q = queue(OverflowPolicy::DropNewest, 2);
    push_range(&mut q, 1..=4); // [n1, n2], tail o2
    assert_eq!(
        q.pop().and_then(|e| e.notification().cloned()),
        Some(note(1))
    );
    q.push(note(5)); // [n2, o2 n5]
    let mut t = vec!["n1".to_owned()];
    t.extend(read_all(&mut q));
    assert_eq!(t, ["n1", "n2", "o2", "n5"]);
    assert_accounted(&t, 5);
}

#[test]
fn keep_latest_keeps_only_the_newest_and_counts_replaced() {
    let options = SubscribeOptions::new()
        .policy(OverflowPolicy::KeepLatest)
        .capacity(100)
        .max_bytes(1);
    let mut q = SubscriberQueue::new(&options);
    assert_eq!(q.capacity(), 1);
    assert_eq!(q.push(note(1)), QUEUED);
    assert_eq!(q.push(note(2)), replaced(1));
    q.push(note(3));
    assert_eq!(read_all(&mut q), ["o2", "n3"]);
    assert_eq!(q.dropped(), 2);
    q.push(note(4));
    assert_eq!(read_all(&mut q), ["n4"]);
}

#[test]
fn close_keeps_queued_items_readable_then_ends() {
    let mut q = queue(OverflowPolicy::Close, 2);
    push_range(&mut q, 1..=2);
    assert_eq!(q.end_reason(), None);
    assert_eq!(q.push(note(3)), ENDED);
    assert_eq!(q.push(note(4)), IGNORED);
    assert_eq!(q.finished(), None, "items are still queued");
    assert_eq!(read_all(&mut q), ["n1", "n2"]);
    assert_eq!(q.finished(), Some(EndReason::Overflowed));
    assert_eq!(q.dropped(), 1);
}

/// Reads a lent batch the way a driver's `recv` does: each item taken
/// is reported consumed.
fn lend_and_read(
    q: &mut SubscriberQueue,
    consumption: &mut Consumption,
    take: usize,
) -> Vec<String> {
    let mut batch = EventBatch::new();
    q.lend_batch(&mut batch, usize::MAX);
    let mut out = Vec::new();
    for _ in 0..take {
        match batch.pop_front() {
            Some(Event::Notification(n)) => {
                consumption.record(1, n.size() as u64);
                out.push(format!("n{}", n.payload));
            }
            Some(Event::Gap(Gap::Overflow { missed })) => out.push(format!("o{missed}")),
            Some(Event::Gap(Gap::Reconnected { generation })) => out.push(format!("r{generation}")),
            None => break,
        }
    }
    // What was not taken stays with the "driver": put it back in front
    // of what the queue reads next, for the transcript.
    while let Some(event) = batch.pop_front() {
        match event {
            Event::Notification(n) => {
                consumption.record(1, n.size() as u64);
                out.push(format!("n{}", n.payload));
            }
            Event::Gap(Gap::Overflow { missed }) => out.push(format!("o{missed}")),
            Event::Gap(Gap::Reconnected { generation }) => out.push(format!("r{generation}")),
        }
    }
    out
}

#[test]
fn absorb_holds_the_connection_without_dropping_until_released() {
    let mut q = queue(OverflowPolicy::Absorb, 2);
    push_range(&mut q, 1..=3);
    assert!(q.blocks_input(), "full: reading must pause");
    assert!(q.absorbing());
    assert_eq!(q.len(), 3, "the read that filled it is kept whole");
    assert!(q.release());
    assert!(!q.blocks_input(), "released: reading resumes");
    push_range(&mut q, 4..=6);
    let t = read_all(&mut q);
    assert_eq!(t, ["n1", "n2", "n3", "o3"]);
    assert_accounted(&t, 6);
    // Having taken something, it absorbs again.
    push_range(&mut q, 7..=8);
    assert!(q.blocks_input());
    assert_eq!(read_all(&mut q), ["n7", "n8"]);
}

#[test]
fn capacity_counts_what_is_lent_and_not_yet_consumed() {
    for policy in [OverflowPolicy::DropNewest, OverflowPolicy::DropOldest] {
        let mut q = queue(policy, 4);
        let mut consumption = q.take_consumption(0, 0).unwrap();
        push_range(&mut q, 1..=4);
        // The consumer takes the batch and reads one, then stalls.
        let mut batch = EventBatch::new();
        q.lend_batch(&mut batch, usize::MAX);
        let first = batch.pop_front().and_then(|e| e.notification().cloned());
        consumption.record(1, first.map_or(0, |n| n.size() as u64));
        assert_eq!(q.outstanding(), 3);
        push_range(&mut q, 5..=10);
        assert_eq!(q.len(), 1, "{policy}: room for one beside the three held");
        let mut t = vec!["n1".to_owned()];
        t.extend(batch.into_iter().map(|e| match e {
            Event::Notification(n) => format!("n{}", n.payload),
            Event::Gap(g) => format!("{g:?}"),
        }));
        consumption.record(3, 9);
        t.extend(read_all(&mut q));
        assert_accounted(&t, 10);
        let delivered = t.iter().filter(|i| i.starts_with('n')).count();
        assert_eq!(
            delivered, 5,
            "{policy}: one read, then exactly the capacity: {t:?}"
        );
    }
}

#[test]
fn drop_oldest_with_the_whole_capacity_lent_drops_each_arrival() {
    let mut q = queue(OverflowPolicy::DropOldest, 2);
    let mut consumption = q.take_consumption(0, 0).unwrap();
    push_range(&mut q, 1..=2);
    let mut batch = EventBatch::new();
    q.lend_batch(&mut batch, usize::MAX);
    push_range(&mut q, 3..=5);
    assert_eq!(q.len(), 0, "every arrival is the oldest not yet lent");
    consumption.record(2, 6);
    push_range(&mut q, 6..=6);
    let mut t = vec!["n1".to_owned(), "n2".to_owned()];
    t.extend(lend_and_read(&mut q, &mut consumption, usize::MAX));
    assert_eq!(t, ["n1", "n2", "o3", "n6"]);
    assert_accounted(&t, 6);
    drop(batch);
}

#[test]
fn close_capacity_one_exactly_full_is_not_overflow() {
    let mut q = queue(OverflowPolicy::Close, 1);
    assert_eq!(q.push(note(1)), QUEUED);
    assert_eq!(read_all(&mut q), ["n1"]);
    assert_eq!(q.push(note(2)), QUEUED);
    assert_eq!(q.push(note(3)), ENDED);
}

#[test]
fn backpressure_never_drops_and_reports_full() {
    let mut q = queue(OverflowPolicy::Backpressure, 2);
    assert_eq!(q.push(note(1)), QUEUED);
    assert!(!q.blocks_input());
    assert_eq!(q.push(note(2)), QUEUED);
    assert!(q.blocks_input());
    // The rest of an already-read chunk overshoots the capacity.
    for i in 3..=10 {
        assert_eq!(q.push(note(i)), QUEUED);
    }
    assert_eq!(q.len(), 10);
    assert_eq!(q.dropped(), 0);
    let mut out = Vec::new();
    assert_eq!(q.drain_into(&mut out, 9), 9);
    assert!(
        !q.blocks_input(),
        "one left of capacity 2: reading may resume"
    );
    assert_eq!(q.drain_into(&mut out, 100), 1);
    assert!(
        q.allocated_entries() <= q.capacity().max(MIN_ALLOCATION),
        "overshoot allocation kept: {}",
        q.allocated_entries()
    );
    let payloads: Vec<_> = out
        .iter()
        .filter_map(|e| e.notification().map(|n| n.payload.to_string()))
        .collect();
    assert_eq!(
        payloads,
        (1..=10).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

#[test]
fn backpressure_ended_queue_does_not_block_input() {
    let mut q = queue(OverflowPolicy::Backpressure, 1);
    q.push(note(1));
    assert!(q.blocks_input());
    q.end(EndReason::BusClosed);
    assert!(!q.blocks_input());
}

#[test]
fn byte_capacity_drops_oldest_until_the_new_item_fits() {
    // Each note(i) for one-digit i is 3 bytes ("ch" + digit).
    let options = SubscribeOptions::new()
        .policy(OverflowPolicy::DropOldest)
        .capacity(100)
        .max_bytes(7);
    let mut q = SubscriberQueue::new(&options);
    push_range(&mut q, 1..=2);
    assert_eq!(q.bytes(), 6);
    assert_eq!(q.push(note(3)), replaced(1));
    assert_eq!(q.bytes(), 6);
    assert_eq!(read_all(&mut q), ["o1", "n2", "n3"]);
    assert_eq!(q.bytes(), 0);
}

#[test]
fn byte_capacity_accepts_one_oversized_item_into_an_empty_queue() {
    let options = SubscribeOptions::new()
        .policy(OverflowPolicy::DropNewest)
        .max_bytes(2);
    let mut q = SubscriberQueue::new(&options);
    assert_eq!(q.push(note(1)), QUEUED);
    assert_eq!(q.push(note(2)), DROPPED);
    assert_eq!(read_all(&mut q), ["n1", "o1"]);
}

#[test]
fn byte_capacity_makes_backpressure_full() {
    let options = SubscribeOptions::new()
        .policy(OverflowPolicy::Backpressure)
        .max_bytes(6);
    let mut q = SubscriberQueue::new(&options);
    assert_eq!(q.push(note(1)), QUEUED);
    assert!(!q.blocks_input());
    assert_eq!(q.push(note(2)), QUEUED);
    assert!(q.blocks_input(), "6 of 6 bytes queued");
}

#[test]
fn reconnect_gaps_coalesce_to_the_latest_generation() {
    let mut q = queue(OverflowPolicy::DropOldest, 4);
    q.push(note(1));
    q.push_gap(Gap::Reconnected { generation: 2 });
    q.push_gap(Gap::Reconnected { generation: 3 });
    q.push(note(2));
    q.push_gap(Gap::Reconnected { generation: 4 });
    assert_eq!(read_all(&mut q), ["n1", "r3", "n2", "r4"]);
}

#[test]
fn reconnect_gaps_take_no_capacity_and_survive_drops() {
    for policy in [
        OverflowPolicy::DropOldest,
        OverflowPolicy::DropNewest,
        OverflowPolicy::KeepLatest,
    ] {
        let mut q = queue(policy, 1);
        q.push(note(1));
        q.push_gap(Gap::Reconnected { generation: 9 });
        push_range(&mut q, 2..=5);
        let t = read_all(&mut q);
        assert!(
            t.contains(&"r9".to_owned()),
            "{policy}: reconnection lost in {t:?}"
        );
        assert_accounted(&t, 5);
    }
}

#[test]
fn interleaved_reconnects_and_overflow_are_accounted_for_every_policy() {
    for policy in [
        OverflowPolicy::DropOldest,
        OverflowPolicy::DropNewest,
        OverflowPolicy::KeepLatest,
        OverflowPolicy::Backpressure,
    ] {
        for capacity in [1, 2, 3, 5] {
            let mut q = queue(policy, capacity);
            let mut transcript = Vec::new();
            let mut sent = 0;
            // A fixed schedule: bursts of varying size, a reconnect every
            // third burst, a partial read after every burst.
            for round in 0..40u64 {
                for _ in 0..(round % 7) {
                    sent += 1;
                    q.push(note(sent));
                }
                if round % 3 == 0 {
                    q.push_gap(Gap::Reconnected { generation: round });
                }
                for _ in 0..(round % 4) {
                    if let Some(e) = q.pop() {
                        transcript.push(match e {
                            Event::Notification(n) => format!("n{}", n.payload),
                            Event::Gap(Gap::Overflow { missed }) => format!("o{missed}"),
                            Event::Gap(Gap::Reconnected { generation }) => {
                                format!("r{generation}")
                            }
                        });
                    }
                }
            }
            transcript.extend(read_all(&mut q));
            assert_accounted(&transcript, sent);
            let reconnects = transcript.iter().filter(|t| t.starts_with('r')).count();
            assert!(
                reconnects > 0,
                "{policy}/{capacity}: no reconnection gap read"
            );
            let last_r = transcript.iter().rev().find(|t| t.starts_with('r'));
            assert_eq!(
                last_r.map(String::as_str),
                Some("r39"),
                "{policy}/{capacity}"
            );
        }
    }
}

#[test]
fn ended_queue_ignores_pushes_and_reconnects() {
    let mut q = queue(OverflowPolicy::DropOldest, 4);
    q.push(note(1));
    assert!(q.end(EndReason::BusClosed));
    assert!(!q.end(EndReason::Unsubscribed), "the first reason wins");
    assert_eq!(q.push(note(2)), IGNORED);
    q.push_gap(Gap::Reconnected { generation: 5 });
    assert_eq!(read_all(&mut q), ["n1"]);
    assert_eq!(q.finished(), Some(EndReason::BusClosed));
}

#[test]
fn end_and_discard_delivers_nothing_more() {
    let mut q = queue(OverflowPolicy::DropOldest, 4);
    push_range(&mut q, 1..=3);
    q.end_and_discard(EndReason::Unsubscribed);
    assert_eq!(q.pop(), None);
    assert_eq!((q.len(), q.bytes(), q.allocated_entries()), (0, 0, 0));
    assert_eq!(q.finished(), Some(EndReason::Unsubscribed));
}

#[test]
fn drain_into_respects_max_and_counts_gaps_as_items() {
    let mut q = queue(OverflowPolicy::DropOldest, 2);
    push_range(&mut q, 1..=3);
    let mut out = Vec::new();
    assert_eq!(q.drain_into(&mut out, 2), 2);
    assert_eq!(
        out,
        [
            Event::Gap(Gap::Overflow { missed: 1 }),
            Event::Notification(note(2))
        ]
    );
    assert_eq!(q.drain_into(&mut out, 2), 1);
    assert_eq!(q.drain_into(&mut out, 2), 0);
    assert_eq!(q.delivered(), 2);
}

#[test]
fn million_item_burst_into_an_unread_queue_keeps_memory_flat() {
    for policy in [
        OverflowPolicy::DropOldest,
        OverflowPolicy::DropNewest,
        OverflowPolicy::KeepLatest,
    ] {
        let mut q = queue(policy, 1000);
        let shared = note(7);
        let mut max_allocated = 0;
        for _ in 0..1_000_000 {
            q.push(shared.clone());
            max_allocated = max_allocated.max(q.allocated_entries());
        }
        assert!(q.len() <= q.capacity(), "{policy}: {} queued", q.len());
        assert!(
            max_allocated <= q.capacity().max(MIN_ALLOCATION),
            "{policy}: buffer grew to {max_allocated} entries for capacity {}",
            q.capacity()
        );
        assert_eq!(q.dropped() + q.len() as u64, 1_000_000, "{policy}");
    }
}

#[test]
fn million_item_burst_into_a_slowly_read_queue_keeps_memory_flat() {
    let mut q = queue(OverflowPolicy::DropOldest, 1000);
    let shared = note(7);
    let mut out = Vec::with_capacity(16);
    let mut read = 0u64;
    let mut missed = 0u64;
    for i in 0..1_000_000u32 {
        q.push(shared.clone());
        if i % 1000 == 0 {
            out.clear();
            q.drain_into(&mut out, 16);
            for e in &out {
                match e {
                    Event::Notification(_) => read += 1,
                    Event::Gap(Gap::Overflow { missed: m }) => missed += m,
                    Event::Gap(_) => {}
                }
            }
        }
        assert!(q.len() <= 1000);
    }
    assert!(q.allocated_entries() <= 1000);
    assert_eq!(
        read + missed + q.len() as u64,
        1_000_000 - pending_missed(&q)
    );
}

/// Overflow counted in the queue but not yet read.
fn pending_missed(q: &SubscriberQueue) -> u64 {
    q.spans.iter().map(|s| s.before.missed).sum::<u64>() + q.tail.missed
}

#[test]
fn idle_queue_allocates_nothing_and_reports_its_size() {
    let q = SubscriberQueue::new(&SubscribeOptions::new());
    assert_eq!(q.allocated_entries(), 0);
    println!(
        "idle SubscriberQueue: {} bytes inline, 0 on the heap; each queued span: {} bytes",
        std::mem::size_of::<SubscriberQueue>(),
        std::mem::size_of::<Span>()
    );
}

// ---- spans

/// The per-notification queue the span queue replaced, kept as the
/// reference: pushing a span must do exactly what pushing its
/// notifications one by one did, gap for gap.
struct Reference {
    entries: VecDeque<(Gaps, Notification)>,
    tail: Gaps,
    bytes: usize,
    capacity: usize,
    max_bytes: Option<usize>,
    policy: OverflowPolicy,
    ended: bool,
}

impl Reference {
    fn new(options: &SubscribeOptions) -> Self {
        let policy = options.overflow_policy();
        Self {
            entries: VecDeque::new(),
            tail: Gaps::default(),
            bytes: 0,
            capacity: if policy == OverflowPolicy::KeepLatest {
                1
            } else {
                options.capacity_items()
            },
            max_bytes: options.capacity_bytes(),
            policy,
            ended: false,
        }
    }

    fn has_room_for(&self, size: usize) -> bool {
        self.entries.len() < self.capacity
            && (self.entries.is_empty()
                || self.max_bytes.is_none_or(|max| self.bytes + size <= max))
    }

    fn enqueue(&mut self, n: Notification) {
        self.bytes += n.size();
        let before = std::mem::take(&mut self.tail);
        self.entries.push_back((before, n));
    }

    fn push(&mut self, n: Notification) {
        if self.ended {
            return;
        }
        let size = n.size();
        match self.policy {
            // An `Absorb` queue that is never released is `Backpressure`.
            OverflowPolicy::Backpressure | OverflowPolicy::Absorb => self.enqueue(n),
            OverflowPolicy::DropNewest if self.has_room_for(size) => self.enqueue(n),
            OverflowPolicy::DropNewest => self.tail.missed += 1,
            OverflowPolicy::Close if self.has_room_for(size) => self.enqueue(n),
            OverflowPolicy::Close => self.ended = true,
            _ => {
                let mut carried = Gaps::default();
                let mut dropped = 0;
                while !self.has_room_for(size) {
                    let Some((before, old)) = self.entries.pop_front() else {
                        break;
                    };
                    self.bytes -= old.size();
                    carried.absorb(before);
                    carried.missed += 1;
                    dropped += 1;
                }
                if dropped > 0 {
                    let next = match self.entries.front_mut() {
                        Some(front) => &mut front.0,
                        None => &mut self.tail,
                    };
                    carried.absorb(*next);
                    *next = carried;
                }
                self.enqueue(n);
            }
        }
    }

    fn pop(&mut self) -> Option<Event> {
        match self.entries.front_mut() {
            Some((before, _)) => match before.take_next() {
                Some(gap) => Some(Event::Gap(gap)),
                None => self.entries.pop_front().map(|(_, n)| {
                    self.bytes -= n.size();
                    Event::Notification(n)
                }),
            },
            None => self.tail.take_next().map(Event::Gap),
        }
    }
}

/// A small deterministic generator for schedules.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn label(event: &Event) -> String {
    match event {
        Event::Notification(n) => format!("n{}", n.payload),
        Event::Gap(Gap::Overflow { missed }) => format!("o{missed}"),
        Event::Gap(Gap::Reconnected { generation }) => format!("r{generation}"),
    }
}

#[test]
fn pushing_a_span_does_exactly_what_pushing_its_items_one_by_one_did() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for policy in OverflowPolicy::ALL {
        for capacity in [1, 2, 3, 7] {
            for max_bytes in [None, Some(6), Some(14)] {
                let mut options = SubscribeOptions::new().policy(policy).capacity(capacity);
                if let Some(max) = max_bytes {
                    options = options.max_bytes(max);
                }
                let mut q = SubscriberQueue::new(&options);
                let mut reference = Reference::new(&options);
                let (mut got, mut want) = (Vec::new(), Vec::new());
                let mut sent = 0u64;
                for round in 0..300u64 {
                    // A segment of 0..=9 notifications of 3..=7 bytes,
                    // pushed whole or in part.
                    let count = rng.below(10) as u32;
                    let notes: Vec<Notification> = (0..count)
                        .map(|_| {
                            sent += 1;
                            let pad = "x".repeat(rng.below(3) as usize);
                            note_with(&format!("{sent}{pad}"))
                        })
                        .collect();
                    let segment = segment_of(notes.iter().cloned());
                    let start = rng.below(u64::from(count) / 2 + 1) as u32;
                    let start = start.min(count);
                    for n in &notes[start as usize..] {
                        reference.push(n.clone());
                    }
                    q.push_span(&segment, start..count);
                    if rng.below(5) == 0 {
                        q.push_gap(Gap::Reconnected { generation: round });
                        if !reference.ended {
                            reference.tail.reconnected = Some(round);
                        }
                    }
                    assert_eq!(q.len(), reference.entries.len(), "{policy}/{capacity}");
                    assert_eq!(q.bytes(), reference.bytes, "{policy}/{capacity}");
                    // Read some: one by one, as owned events, or as a batch.
                    let max = rng.below(6) as usize;
                    let mut taken = Vec::new();
                    match rng.below(3) {
                        0 => taken.extend((0..max).map_while(|_| q.pop())),
                        1 => {
                            q.drain_into(&mut taken, max);
                        }
                        _ => {
                            let mut batch = EventBatch::new();
                            let n = q.drain_batch(&mut batch, max);
                            assert_eq!(n, batch.len());
                            taken.extend(batch.iter().map(|e| e.to_event()));
                        }
                    }
                    got.extend(taken.iter().map(label));
                    want.extend(
                        (0..taken.len())
                            .filter_map(|_| reference.pop())
                            .map(|e| label(&e)),
                    );
                    assert_eq!(got, want, "{policy}/{capacity}/{max_bytes:?} round {round}");
                }
                while let Some(e) = q.pop() {
                    got.push(label(&e));
                }
                while let Some(e) = reference.pop() {
                    want.push(label(&e));
                }
                assert_eq!(got, want, "{policy}/{capacity}/{max_bytes:?} at the end");
            }
        }
    }
}

fn note_with(payload: &str) -> Notification {
    Notification {
        channel: SharedStr::from_static("ch"),
        payload: SharedStr::from(payload),
        process_id: 1,
    }
}

fn segment_of_range(range: std::ops::RangeInclusive<u64>) -> Segment {
    segment_of(range.map(note))
}

#[test]
fn a_span_costs_one_reference_per_subscriber_whatever_its_length() {
    let segment = segment_of_range(1..=100);
    let mut queues: Vec<_> = (0..10)
        .map(|_| queue(OverflowPolicy::DropOldest, 1000))
        .collect();
    for q in &mut queues {
        assert_eq!(q.push_span(&segment, 0..100).queued, 100);
    }
    assert_eq!(std::sync::Arc::strong_count(&segment), 11);
}

#[test]
fn drop_newest_queues_the_room_left_and_counts_the_rest_after_it() {
    let mut q = queue(OverflowPolicy::DropNewest, 3);
    q.push(note(1));
    let pushed = q.push_span(&segment_of_range(2..=6), 0..5);
    assert_eq!((pushed.queued, pushed.rejected), (2, 3));
    assert_eq!(read_all(&mut q), ["n1", "n2", "n3", "o3"]);
}

#[test]
fn close_queues_what_fits_then_ends() {
    let mut q = queue(OverflowPolicy::Close, 3);
    let pushed = q.push_span(&segment_of_range(1..=5), 0..5);
    assert_eq!((pushed.queued, pushed.ended), (3, true));
    assert_eq!(read_all(&mut q), ["n1", "n2", "n3"]);
    assert_eq!(q.finished(), Some(EndReason::Overflowed));
}

#[test]
fn drop_oldest_cuts_across_spans_and_puts_the_gap_before_the_first_kept() {
    let mut q = queue(OverflowPolicy::DropOldest, 4);
    q.push_span(&segment_of_range(1..=3), 0..3);
    q.push_gap(Gap::Reconnected { generation: 2 });
    let pushed = q.push_span(&segment_of_range(4..=6), 0..3);
    assert_eq!((pushed.queued, pushed.replaced), (3, 2));
    let t = read_all(&mut q);
    assert_eq!(t, ["o2", "n3", "r2", "n4", "n5", "n6"]);
    assert_accounted(&t, 6);
}

#[test]
fn drain_batch_hands_spans_over_and_cuts_the_last_at_max() {
    let mut q = queue(OverflowPolicy::DropOldest, 4);
    q.push_span(&segment_of_range(1..=3), 0..3);
    q.push_span(&segment_of_range(4..=6), 0..3); // o2 before n3
    let mut batch = EventBatch::new();
    assert_eq!(q.drain_batch(&mut batch, 3), 3);
    let labels: Vec<_> = batch.iter().map(|e| label(&e.to_event())).collect();
    assert_eq!(labels, ["o2", "n3", "n4"]);
    assert_eq!((q.len(), q.delivered()), (2, 2));
    batch.clear();
    assert_eq!(q.drain_batch(&mut batch, 100), 2);
    let labels: Vec<_> = batch.into_iter().map(|e| label(&e)).collect();
    assert_eq!(labels, ["n5", "n6"]);
    assert!(q.is_empty());
    assert_eq!(q.bytes(), 0);
}

#[test]
fn drain_batch_counts_gaps_as_items_and_takes_trailing_gaps() {
    let mut q = queue(OverflowPolicy::DropNewest, 1);
    q.push_span(&segment_of_range(1..=3), 0..3); // n1, tail o2
    q.push_gap(Gap::Reconnected { generation: 7 });
    let mut batch = EventBatch::new();
    assert_eq!(q.drain_batch(&mut batch, 2), 2);
    assert_eq!(q.drain_batch(&mut batch, 2), 1);
    let labels: Vec<_> = batch.iter().map(|e| label(&e.to_event())).collect();
    assert_eq!(labels, ["n1", "o2", "r7"]);
    assert!(q.is_empty());
}

/// A segment whose cost is well over the compaction floor.
fn big_segment(items: u64) -> Segment {
    segment_of((1..=items).map(|i| note_with(&format!("{i}{}", "p".repeat(200)))))
}

#[test]
fn keep_latest_does_not_pin_the_whole_segment() {
    let mut q = queue(OverflowPolicy::KeepLatest, 1);
    let segment = big_segment(256);
    q.push_span(&segment, 0..256);
    assert_eq!(q.len(), 1);
    assert_eq!(
        std::sync::Arc::strong_count(&segment),
        1,
        "the kept notification was copied into a segment of its own"
    );
    assert_eq!(read_all(&mut q).len(), 2, "o255 and the last one");
}

#[test]
fn a_partly_drained_span_is_compacted_once_it_pins_four_times_its_cost() {
    let mut q = queue(OverflowPolicy::Backpressure, 1000);
    let segment = big_segment(100);
    q.push_span(&segment, 0..100);
    let mut batch = EventBatch::new();
    q.drain_batch(&mut batch, 70);
    batch.clear();
    assert_eq!(
        std::sync::Arc::strong_count(&segment),
        2,
        "30 of 100 kept: shared"
    );
    q.drain_batch(&mut batch, 6);
    batch.clear();
    assert_eq!(
        std::sync::Arc::strong_count(&segment),
        1,
        "24 of 100 kept: copied"
    );
    let rest: Vec<_> = (0..100).map_while(|_| q.pop()).collect();
    assert_eq!(rest.len(), 24);
    assert_eq!(rest[0].notification().map(|n| n.payload.len()), Some(202));
}

#[test]
fn a_small_segment_is_never_compacted() {
    let mut q = queue(OverflowPolicy::KeepLatest, 1);
    let segment = segment_of_range(1..=16);
    q.push_span(&segment, 0..16);
    assert_eq!(std::sync::Arc::strong_count(&segment), 2);
}
