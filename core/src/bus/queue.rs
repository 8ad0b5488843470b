//! One subscriber's queue: bounded by its [`SubscribeOptions`], with its
//! overflow policy applied and every gap standing where it belongs.
//!
//! # Where gaps stand
//!
//! The queue holds notifications only; gaps are not queue entries. Each
//! queued notification carries the gaps that stand *before* it (a count of
//! discarded notifications and, at most, one reconnection), and the queue has
//! one more such record for the gaps after its last notification (the
//! *tail*). Because gaps take no slot, they never consume item or byte
//! capacity, and a gap can never be the thing that is dropped: when an entry
//! is discarded its gaps move onto whatever follows it.
//!
//! That gives, for every policy, the guarantee of DESIGN §4 invariant 2:
//! between two consecutive notifications a consumer reads, every notification
//! the queue received and did not deliver is counted by the `Gap::Overflow`
//! items between them, and a reconnection between them is reported by one
//! `Gap::Reconnected`.
//!
//! - `DropOldest`: the oldest entry is discarded; its count (plus its own
//!   gaps) moves onto the *new oldest* entry, i.e. the gap is read before the
//!   retained notifications that followed the dropped ones. If nothing is
//!   left, it moves to the tail and so lands before the arriving notification.
//! - `DropNewest`: the arriving notification is discarded and counted in the
//!   tail, so the gap is read after everything already queued and before the
//!   next notification accepted.
//! - `KeepLatest`: `DropOldest` with room for one notification; the
//!   configured item and byte capacities are ignored.
//! - `Close`: the arriving notification is discarded and the queue ends with
//!   [`EndReason::Overflowed`]; what was queued stays readable, then the end.
//!   No gap is added: the end reason already says the stream is incomplete.
//! - `Backpressure`: nothing is ever discarded. The queue may hold more than
//!   its capacity (see [`SubscriberQueue::blocks_input`] for the bound).
//!
//! Between two notifications at most one `Overflow` and one `Reconnected`
//! gap are produced, the `Overflow` first, whatever order the drops and the
//! reconnection happened in; several reconnections in a row coalesce into
//! one carrying the latest generation. The one exception is a gap record
//! that is merged into after the consumer has already read part of it (it
//! read `Overflow{3}` of an entry, then that entry was dropped): the consumer
//! then reads two `Overflow` gaps in a row, whose counts add up exactly.
//! Either way a consumer resynchronises at the first gap it reads, and it
//! reads it after every notification the gap covers was committed, so the
//! order among adjacent gaps never matters for correctness.

use std::collections::VecDeque;

use crate::{EndReason, Event, Gap, Notification, OverflowPolicy, SubscribeOptions};

/// The smallest allocation the queue makes when it first needs room.
const MIN_ALLOCATION: usize = 4;

/// The gaps standing before one queued notification, or after the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Gaps {
    /// Notifications discarded by the overflow policy.
    missed: u64,
    /// The generation of the latest reconnection, if there was one.
    reconnected: Option<u64>,
}

impl Gaps {
    fn is_empty(&self) -> bool {
        self.missed == 0 && self.reconnected.is_none()
    }

    /// Folds in gaps that came after these ones.
    fn absorb(&mut self, later: Gaps) {
        self.missed = self.missed.saturating_add(later.missed);
        if later.reconnected.is_some() {
            self.reconnected = later.reconnected;
        }
    }

    /// Takes the next gap to read, the overflow count first.
    fn take_next(&mut self) -> Option<Gap> {
        if self.missed > 0 {
            let missed = std::mem::take(&mut self.missed);
            return Some(Gap::Overflow { missed });
        }
        self.reconnected
            .take()
            .map(|generation| Gap::Reconnected { generation })
    }
}

/// A queued notification and the gaps read before it.
#[derive(Debug)]
struct Entry {
    before: Gaps,
    notification: Notification,
}

/// What [`SubscriberQueue::push`] did with a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; nothing was discarded. Under `Backpressure` the queue may now
    /// be full: see [`SubscriberQueue::blocks_input`].
    Queued,
    /// Queued after discarding `dropped` older notifications (`DropOldest`,
    /// possibly several at once under a byte limit; `KeepLatest`: the one
    /// it replaced).
    Replaced {
        /// How many were discarded.
        dropped: u64,
    },
    /// The arriving notification was discarded (`DropNewest`).
    Dropped,
    /// The queue was full under `Close`: the arriving notification was
    /// discarded and the queue has now ended with [`EndReason::Overflowed`].
    Ended,
    /// The queue had already ended; the notification was ignored.
    Ignored,
}

/// One subscriber's bounded queue of notifications and gaps.
///
/// The bus pushes notifications (and reconnection gaps) into it as they
/// arrive and the subscriber's task takes [`Event`]s out, in batches with
/// [`drain_into`](Self::drain_into). It never allocates per push once its
/// buffer has grown to its working size (at most the item capacity, except
/// for a `Backpressure` overshoot); a pushed [`Notification`] is the shared
/// one, moved in, so fan-out costs reference-count increments only.
///
/// Wake-ups: the first time something becomes readable after the consumer
/// last found the queue empty, [`take_wake`](Self::take_wake) returns `true`
/// once, so the bus wakes a subscriber's task once per burst rather than once
/// per notification.
#[derive(Debug)]
pub(crate) struct SubscriberQueue {
    entries: VecDeque<Entry>,
    /// Gaps after the last entry; they move onto the next notification queued.
    tail: Gaps,
    /// Sum of [`Notification::size`] over `entries`.
    bytes: usize,
    /// The item capacity in effect (1 for `KeepLatest`).
    capacity: usize,
    max_bytes: Option<usize>,
    policy: OverflowPolicy,
    end: Option<EndReason>,
    /// A wake-up was asked for since the consumer last found the queue empty.
    signalled: bool,
    /// A wake-up is waiting to be taken by the bus.
    wake: bool,
    delivered: u64,
    dropped: u64,
    peak_len: usize,
}

impl SubscriberQueue {
    /// An empty queue with these options. Allocates nothing until the first push.
    pub(crate) fn new(options: &SubscribeOptions) -> Self {
        let policy = options.overflow_policy();
        let capacity = match policy {
            OverflowPolicy::KeepLatest => 1,
            _ => options.capacity_items().max(1),
        };
        Self {
            entries: VecDeque::new(),
            tail: Gaps::default(),
            bytes: 0,
            capacity,
            max_bytes: options.capacity_bytes(),
            policy,
            end: None,
            signalled: false,
            wake: false,
            delivered: 0,
            dropped: 0,
            peak_len: 0,
        }
    }

    // ---- getters

    /// The overflow policy.
    pub(crate) fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// Notifications queued (gaps are not counted).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing at all is left to read (no notification, no gap).
    /// An ended queue can be empty; see [`finished`](Self::finished).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.tail.is_empty()
    }

    /// Bytes of channel and payload text queued ([`Notification::size`]).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The item capacity in effect (1 under `KeepLatest`).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of entries the buffer can hold without reallocating; for
    /// memory checks.
    #[cfg(test)]
    pub(crate) fn allocated_entries(&self) -> usize {
        self.entries.capacity()
    }

    /// Notifications the consumer has taken out.
    #[cfg(test)]
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Notifications discarded by the overflow policy (replaced ones under
    /// `KeepLatest`, the one that did not fit under `Close`).
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the queue is at or over its item or byte capacity.
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity || self.max_bytes.is_some_and(|max| self.bytes >= max)
    }

    /// Whether the bus must stop reading the socket for this queue: it is a
    /// `Backpressure` queue, still open, and full.
    ///
    /// The bus checks this between chunks of input and reads the next chunk
    /// only when no queue blocks. A chunk already read is pushed whole, so a
    /// `Backpressure` queue holds at most `capacity - 1 + n` notifications
    /// (and `max_bytes - 1 + b` bytes), where `n` and `b` are the
    /// notifications and bytes for this subscriber in one chunk: the
    /// overshoot is bounded by the driver's read size. A new connection is
    /// read even while a queue blocks (it could not start up otherwise), so
    /// after a reconnection a full queue may take the notifications of the
    /// one chunk that acknowledges the new LISTENs: at most `capacity + n`.
    pub(crate) fn blocks_input(&self) -> bool {
        self.policy == OverflowPolicy::Backpressure && self.end.is_none() && self.is_full()
    }

    /// Why the queue ended, if it has (items may still be readable).
    pub(crate) fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// Why the stream ended, once it has ended *and* everything queued
    /// before the end has been read.
    #[cfg(test)]
    pub(crate) fn finished(&self) -> Option<EndReason> {
        self.end.filter(|_| self.is_empty())
    }

    // ---- producer side (the bus)

    /// Queues a notification, applying the overflow policy if it does not fit.
    ///
    /// A single notification larger than the byte capacity is accepted into
    /// an empty queue, so the byte limit can never block a channel for good.
    pub(crate) fn push(&mut self, notification: Notification) -> Pushed {
        if self.end.is_some() {
            return Pushed::Ignored;
        }
        let size = notification.size();
        match self.policy {
            OverflowPolicy::Backpressure => {
                self.enqueue(notification, size);
                Pushed::Queued
            }
            OverflowPolicy::DropNewest => {
                if self.has_room_for(size) {
                    self.enqueue(notification, size);
                    Pushed::Queued
                } else {
                    self.tail.missed = self.tail.missed.saturating_add(1);
                    self.dropped += 1;
                    self.signal();
                    Pushed::Dropped
                }
            }
            OverflowPolicy::Close => {
                if self.has_room_for(size) {
                    self.enqueue(notification, size);
                    Pushed::Queued
                } else {
                    self.dropped += 1;
                    self.end(EndReason::Overflowed);
                    Pushed::Ended
                }
            }
            // KeepLatest is DropOldest with a capacity of one.
            OverflowPolicy::DropOldest | OverflowPolicy::KeepLatest => {
                let dropped = self.make_room_by_dropping_oldest(size);
                self.enqueue(notification, size);
                if dropped == 0 {
                    Pushed::Queued
                } else {
                    Pushed::Replaced { dropped }
                }
            }
        }
    }

    /// Queues a gap after everything already queued.
    ///
    /// For [`Gap::Reconnected`]: the connection was replaced and the channel
    /// is LISTENed again. It takes no capacity, is never discarded, and
    /// coalesces with a reconnection not yet read (the latest generation
    /// wins). A [`Gap::Overflow`] adds its count to the overflow the
    /// consumer reads next, for notifications the bus discarded itself.
    /// No-op once the queue has ended.
    pub(crate) fn push_gap(&mut self, gap: Gap) {
        if self.end.is_some() {
            return;
        }
        match gap {
            Gap::Reconnected { generation } => self.tail.reconnected = Some(generation),
            Gap::Overflow { missed } => {
                if missed == 0 {
                    return;
                }
                self.tail.missed = self.tail.missed.saturating_add(missed);
            }
        }
        self.signal();
    }

    /// Ends the stream with `reason`; what is queued stays readable and the
    /// end is reported after it. Later pushes are ignored. The first reason
    /// wins; returns whether this call ended the queue.
    pub(crate) fn end(&mut self, reason: EndReason) -> bool {
        if self.end.is_some() {
            return false;
        }
        self.end = Some(reason);
        self.signal();
        true
    }

    /// Ends the stream and discards everything queued, releasing its memory:
    /// for unsubscribe, after which nothing may be delivered.
    #[cfg(test)]
    pub(crate) fn end_and_discard(&mut self, reason: EndReason) -> bool {
        let ended = self.end(reason);
        self.entries = VecDeque::new();
        self.tail = Gaps::default();
        self.bytes = 0;
        ended
    }

    /// Whether the subscriber's task should be woken now; `true` at most
    /// once between two times the consumer found the queue empty.
    #[cfg(test)]
    pub(crate) fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    // ---- consumer side (the subscriber's task, through the bus)

    /// Takes the next item: the gaps before the oldest notification, then
    /// the notification. `None` when nothing is left (see
    /// [`finished`](Self::finished) for whether more can come).
    #[cfg(test)]
    pub(crate) fn pop(&mut self) -> Option<Event> {
        let event = self.pop_one();
        if self.is_empty() {
            self.rearm();
        }
        event
    }

    /// Moves up to `max` items into `out`, in order, and returns how many.
    ///
    /// One call per wake-up hands a batch over, so a subscriber's task takes
    /// one lock per batch rather than per item.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        let mut taken = 0;
        while taken < max {
            match self.pop_one() {
                Some(event) => out.push(event),
                None => break,
            }
            taken += 1;
        }
        if self.is_empty() {
            self.rearm();
        }
        taken
    }

    // ---- internals

    fn has_room_for(&self, size: usize) -> bool {
        self.entries.len() < self.capacity
            && (self.entries.is_empty()
                || self
                    .max_bytes
                    .is_none_or(|max| self.bytes.saturating_add(size) <= max))
    }

    /// Discards the oldest entries until `size` more bytes and one more
    /// entry fit; their count and gaps move onto what now comes first.
    fn make_room_by_dropping_oldest(&mut self, size: usize) -> u64 {
        let mut carried = Gaps::default();
        let mut dropped = 0;
        while !self.has_room_for(size) {
            let Some(entry) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= entry.notification.size();
            carried.absorb(entry.before);
            carried.missed = carried.missed.saturating_add(1);
            dropped += 1;
        }
        if dropped > 0 {
            self.dropped += dropped;
            // The dropped entries stood before everything that remains, so
            // their gaps go first.
            let next = match self.entries.front_mut() {
                Some(front) => &mut front.before,
                None => &mut self.tail,
            };
            carried.absorb(*next);
            *next = carried;
        }
        dropped
    }

    fn enqueue(&mut self, notification: Notification, size: usize) {
        self.reserve_one();
        let before = std::mem::take(&mut self.tail);
        self.entries.push_back(Entry {
            before,
            notification,
        });
        self.bytes += size;
        self.peak_len = self.peak_len.max(self.entries.len());
        self.signal();
    }

    /// Grows the buffer by doubling, but never past the item capacity, so a
    /// full queue's allocation is exactly its capacity (with a floor of
    /// [`MIN_ALLOCATION`]) and a steady state never reallocates.
    fn reserve_one(&mut self) {
        let len = self.entries.len();
        if len < self.entries.capacity() {
            return;
        }
        if len < self.capacity {
            let target = self.capacity.min(len.saturating_mul(2).max(MIN_ALLOCATION));
            self.entries.reserve_exact(target - len);
        } else {
            // A Backpressure overshoot: amortised growth; shrunk back in `rearm`.
            self.entries.reserve(1);
        }
    }

    fn pop_one(&mut self) -> Option<Event> {
        match self.entries.front_mut() {
            Some(front) => match front.before.take_next() {
                Some(gap) => Some(Event::Gap(gap)),
                None => self.entries.pop_front().map(|entry| {
                    self.bytes -= entry.notification.size();
                    self.delivered += 1;
                    Event::Notification(entry.notification)
                }),
            },
            None => self.tail.take_next().map(Event::Gap),
        }
    }

    fn signal(&mut self) {
        if !self.signalled {
            self.signalled = true;
            self.wake = true;
        }
    }

    /// The consumer found the queue empty: the next item needs a wake-up.
    fn rearm(&mut self) {
        self.signalled = false;
        self.wake = false;
        let bound = self.capacity.max(MIN_ALLOCATION);
        if self.entries.capacity() > bound {
            // Only after a Backpressure overshoot: give the excess back.
            self.entries.shrink_to(bound);
        }
    }
}

#[cfg(test)]
#[path = "alloc_tests.rs"]
mod alloc_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedStr;

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
        assert_eq!(q.push(note(7)), Pushed::Replaced { dropped: 1 });
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
        assert_eq!(q.push(note(4)), Pushed::Dropped);
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
        assert_eq!(q.push(note(1)), Pushed::Queued);
        assert_eq!(q.push(note(2)), Pushed::Replaced { dropped: 1 });
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
        assert_eq!(q.push(note(3)), Pushed::Ended);
        assert_eq!(q.push(note(4)), Pushed::Ignored);
        assert_eq!(q.finished(), None, "items are still queued");
        assert_eq!(read_all(&mut q), ["n1", "n2"]);
        assert_eq!(q.finished(), Some(EndReason::Overflowed));
        assert_eq!(q.dropped(), 1);
    }

    #[test]
    fn close_capacity_one_exactly_full_is_not_overflow() {
        let mut q = queue(OverflowPolicy::Close, 1);
        assert_eq!(q.push(note(1)), Pushed::Queued);
        assert_eq!(read_all(&mut q), ["n1"]);
        assert_eq!(q.push(note(2)), Pushed::Queued);
        assert_eq!(q.push(note(3)), Pushed::Ended);
    }

    #[test]
    fn backpressure_never_drops_and_reports_full() {
        let mut q = queue(OverflowPolicy::Backpressure, 2);
        assert_eq!(q.push(note(1)), Pushed::Queued);
        assert!(!q.blocks_input());
        assert_eq!(q.push(note(2)), Pushed::Queued);
        assert!(q.blocks_input());
        // The rest of an already-read chunk overshoots the capacity.
        for i in 3..=10 {
            assert_eq!(q.push(note(i)), Pushed::Queued);
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
            q.allocated_entries() <= MIN_ALLOCATION,
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
        let options = SubscribeOptions::new().capacity(100).max_bytes(7);
        let mut q = SubscriberQueue::new(&options);
        push_range(&mut q, 1..=2);
        assert_eq!(q.bytes(), 6);
        assert_eq!(q.push(note(3)), Pushed::Replaced { dropped: 1 });
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
        assert_eq!(q.push(note(1)), Pushed::Queued);
        assert_eq!(q.push(note(2)), Pushed::Dropped);
        assert_eq!(read_all(&mut q), ["n1", "o1"]);
    }

    #[test]
    fn byte_capacity_makes_backpressure_full() {
        let options = SubscribeOptions::new()
            .policy(OverflowPolicy::Backpressure)
            .max_bytes(6);
        let mut q = SubscriberQueue::new(&options);
        assert_eq!(q.push(note(1)), Pushed::Queued);
        assert!(!q.blocks_input());
        assert_eq!(q.push(note(2)), Pushed::Queued);
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
        assert_eq!(q.push(note(2)), Pushed::Ignored);
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
    fn wake_is_asked_once_until_the_consumer_finds_the_queue_empty() {
        let mut q = queue(OverflowPolicy::DropOldest, 8);
        assert!(!q.take_wake());
        q.push(note(1));
        q.push(note(2));
        assert!(q.take_wake());
        q.push(note(3));
        assert!(!q.take_wake(), "already woken for this burst");
        let mut out = Vec::new();
        q.drain_into(&mut out, 2);
        q.push(note(4));
        assert!(
            !q.take_wake(),
            "the consumer has not found the queue empty yet"
        );
        q.drain_into(&mut out, 10);
        q.push_gap(Gap::Reconnected { generation: 1 });
        assert!(q.take_wake(), "a gap is readable too");
        q.pop();
        q.end(EndReason::BusClosed);
        assert!(q.take_wake(), "the end is readable too");
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
        q.entries.iter().map(|e| e.before.missed).sum::<u64>() + q.tail.missed
    }

    #[test]
    fn idle_queue_allocates_nothing_and_reports_its_size() {
        let q = SubscriberQueue::new(&SubscribeOptions::new());
        assert_eq!(q.allocated_entries(), 0);
        println!(
            "idle SubscriberQueue: {} bytes inline, 0 on the heap; each queued entry: {} bytes",
            std::mem::size_of::<SubscriberQueue>(),
            std::mem::size_of::<Entry>()
        );
    }
}
