//! One subscriber's queue: bounded by its [`SubscribeOptions`], with its
//! overflow policy applied and every gap standing where it belongs.
//!
//! # Spans
//!
//! The queue holds *spans*: ranges of shared [`Segment`]s, each segment the
//! notifications of one channel from one chunk of input (see
//! [`segment`](crate::bus::segment)). Queueing a chunk's notifications costs
//! one reference-count increment for the whole span, and every policy below
//! is applied to the span arithmetically, with item counts and the
//! segment's prefix sums of byte sizes; the outcome is exactly that of
//! pushing the span's notifications one by one.
//!
//! # Where gaps stand
//!
//! The queue holds notifications only; gaps are not queue entries. Each
//! span carries the gaps that stand *before* its first notification (a count
//! of discarded notifications and, at most, one reconnection); the
//! notifications inside a span are contiguous, with no gap between them. The
//! queue has one more such record for the gaps after its last notification
//! (the *tail*). Because gaps take no slot, they never consume item or byte
//! capacity, and a gap can never be the thing that is dropped: when a
//! notification is discarded its gaps move onto whatever follows it.
//!
//! That gives, for every policy, the guarantee of invariant 2 (no silent loss):
//! between two consecutive notifications a consumer reads, every notification
//! the queue received and did not deliver is counted by the `Gap::Overflow`
//! items between them, and a reconnection between them is reported by one
//! `Gap::Reconnected`.
//!
//! - `DropOldest`: the oldest notifications are discarded; their count (plus
//!   their own gaps) moves onto the *new oldest* notification, i.e. the gap
//!   is read before the retained notifications that followed the dropped
//!   ones (a span cut at its front starts with that gap).
//! - `DropNewest`: arriving notifications that do not fit are discarded and
//!   counted in the tail, so the gap is read after everything already queued
//!   and before the next notification accepted (a span that only partly
//!   fits is queued up to the room left).
//! - `KeepLatest`: `DropOldest` with room for one notification; the
//!   configured item and byte capacities are ignored.
//! - `Close`: the first arriving notification that does not fit is
//!   discarded and the queue ends with [`EndReason::Overflowed`]; what was
//!   queued stays readable, then the end. No gap is added: the end reason
//!   already says the stream is incomplete.
//! - `Backpressure`: nothing is ever discarded. The queue may hold more than
//!   its capacity (see [`SubscriberQueue::blocks_input`] for the bound).
//! - `Absorb`: `Backpressure` until the bus [releases](SubscriberQueue::release)
//!   the queue (stall limit, server guard); a released queue is `DropNewest`
//!   until its consumer takes something, then absorbs again.
//!
//! # Capacity counts what is lent
//!
//! Items handed to a driver with [`lend_batch`](SubscriberQueue::lend_batch)
//! stay charged to the capacity until the consumer reports them consumed
//! (see [`consumption`](crate::bus::consumption)): every policy works
//! against `capacity - outstanding` (and `max_bytes - outstanding bytes`),
//! so what the application has not yet taken, wherever it sits, never
//! exceeds the capacity, and overflow is counted exactly at that bound.
//! `DropOldest` then discards the oldest notifications *not yet lent*; with
//! the whole capacity lent, every arrival is the oldest such and is
//! discarded. `KeepLatest` is the exception: it always keeps its newest
//! notification, since its point is to wake the consumer with the latest.
//!
//! Between two notifications at most one `Overflow` and one `Reconnected`
//! gap are produced, the `Overflow` first, whatever order the drops and the
//! reconnection happened in; several reconnections in a row coalesce into
//! one carrying the latest generation. The one exception is a gap record
//! that is merged into after the consumer has already read part of it (it
//! read `Overflow{3}` of a span, then that span's first notification was
//! dropped): the consumer then reads two `Overflow` gaps in a row, whose
//! counts add up exactly. Either way a consumer resynchronises at the first
//! gap it reads, and it reads it after every notification the gap covers
//! was committed, so the order among adjacent gaps never matters for
//! correctness.
//!
//! # Memory
//!
//! A span that keeps a few items of a large segment keeps the whole segment
//! alive. Spans are only ever cut at their front (by the policy or by the
//! consumer) or queued in part (`DropNewest`, `Close`), and after each of
//! these the queue checks the span: when it pins more than
//! [`PIN_FACTOR`](crate::bus::segment::PIN_FACTOR) times its own cost and the
//! segment is over [`COMPACT_FLOOR`] bytes, its items are copied into a
//! fresh segment (a reference-count increment per item, amortised over the
//! at least three times as many items released). So the memory a queue
//! pins is at most `PIN_FACTOR` times the cost of what it holds plus
//! `COMPACT_FLOOR` per partly kept span (at most two without a byte limit:
//! the front one and the last one queued in part).

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use crate::bus::batch::{EventBatch, Part};
use crate::bus::consumption::{Consumption, Lent};
use crate::bus::segment::{self, Gaps, Segment};
use crate::{EndReason, Event, Gap, OverflowPolicy, SubscribeOptions};

/// The smallest allocation the queue makes when it first needs room: one
/// span, since a subscriber that keeps up holds one span per chunk of input.
/// With many subscribers every one of them allocates at once when a burst
/// touches their channels, so this is what a delivery costs them at peak
/// (and what the allocator keeps resident after); the buffer doubles when
/// a consumer falls behind.
const MIN_ALLOCATION: usize = 1;

/// Segments whose cost is at most this many bytes are never compacted:
/// copying them would cost more than it saves.
pub(crate) const COMPACT_FLOOR: usize = 16 * 1024;

/// Notifications `start..end` of a shared segment and the gaps read before
/// the first of them.
#[derive(Debug)]
struct Span {
    before: Gaps,
    segment: Segment,
    start: u32,
    end: u32,
}

impl Span {
    fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    fn bytes(&self) -> usize {
        segment::bytes(&self.segment, self.start..self.end)
    }

    /// Copies the span into a segment of its own if it pins too much.
    fn compact_if_pinning(&mut self) {
        if let Some(fresh) = compacted(&self.segment, self.start..self.end) {
            self.end -= self.start;
            self.start = 0;
            self.segment = fresh;
        }
    }
}

/// `segment[range]` copied into a fresh segment, if keeping `range` would
/// pin too much of `segment`.
fn compacted(segment: &Segment, range: Range<u32>) -> Option<Segment> {
    let whole = segment::cost(segment, 0..segment.len() as u32);
    (whole > COMPACT_FLOOR && segment::needs_compaction(segment, range.clone()))
        .then(|| segment::compact(segment, range))
}

/// What [`SubscriberQueue::push_span`] did with a span of notifications.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// Notifications queued. Under `DropOldest` and `KeepLatest` every one
    /// is queued, and some may have been discarded again at once (counted
    /// in `replaced`).
    pub(crate) queued: u64,
    /// Older notifications discarded to make room (`DropOldest`;
    /// `KeepLatest`: the ones replaced).
    pub(crate) replaced: u64,
    /// Arriving notifications discarded (`DropNewest`).
    pub(crate) rejected: u64,
    /// The queue was full under `Close`: the first notification that did
    /// not fit was discarded, the rest ignored, and the queue has now ended
    /// with [`EndReason::Overflowed`].
    pub(crate) ended: bool,
}

/// One subscriber's bounded queue of notifications and gaps.
///
/// The bus pushes spans of shared segments (and reconnection gaps) into it
/// as they arrive and the subscriber's task takes them out in batches, by
/// reference with [`drain_batch`](Self::drain_batch) or as owned [`Event`]s
/// with [`drain_into`](Self::drain_into). It never allocates per push once
/// its buffer has grown to its working size (at most one slot per queued
/// notification, never more than the item capacity, except for a
/// `Backpressure` overshoot), apart from compacting a span (see the module
/// docs).
///
/// Readiness is not the queue's: the subscriber table announces a non-empty
/// queue (`SubscriberReadable`, level-triggered) from [`is_empty`](Self::is_empty).
#[derive(Debug)]
pub(crate) struct SubscriberQueue {
    spans: VecDeque<Span>,
    /// Gaps after the last span; they move onto the next span queued.
    tail: Gaps,
    /// Notifications queued (the sum of the spans' lengths).
    len: usize,
    /// Sum of [`Notification::size`](crate::Notification::size) over the
    /// queued notifications.
    bytes: usize,
    /// The item capacity in effect (1 for `KeepLatest`).
    capacity: usize,
    max_bytes: Option<usize>,
    policy: OverflowPolicy,
    /// `Absorb`: how long the queue may stay full with nothing consumed, in
    /// milliseconds (a `u32` keeps an idle subscriber small).
    stall_limit_ms: u32,
    /// `Absorb`: the bus released the queue (stall limit or server guard):
    /// it drops instead of holding the connection until its consumer takes
    /// something.
    released: bool,
    /// Items lent to the driver and not yet consumed.
    lent: Lent,
    end: Option<EndReason>,
    delivered: u64,
    /// Test-only: what the policy discarded (checked against a model).
    #[cfg(test)]
    dropped: u64,
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
            spans: VecDeque::new(),
            tail: Gaps::default(),
            len: 0,
            bytes: 0,
            capacity,
            max_bytes: options.capacity_bytes(),
            policy,
            stall_limit_ms: u32::try_from(options.stall_limit_duration().as_millis())
                .unwrap_or(u32::MAX),
            released: false,
            lent: Lent::default(),
            end: None,
            delivered: 0,
            #[cfg(test)]
            dropped: 0,
        }
    }

    // ---- getters

    /// The overflow policy.
    pub(crate) fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// Notifications queued (gaps are not counted).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing at all is left to read (no notification, no gap).
    /// An ended queue can be empty; see [`finished`](Self::finished).
    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.tail.is_empty()
    }

    /// Bytes of channel and payload text queued
    /// ([`Notification::size`](crate::Notification::size)).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The item capacity in effect (1 under `KeepLatest`).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of spans the buffer can hold without reallocating; for
    /// memory checks.
    #[cfg(test)]
    pub(crate) fn allocated_entries(&self) -> usize {
        self.spans.capacity()
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

    /// Whether the queue is at or over its item or byte capacity (counting
    /// what is lent and not yet consumed).
    pub(crate) fn is_full(&self) -> bool {
        let (capacity, max_bytes) = self.limits();
        self.len >= capacity || max_bytes.is_some_and(|max| self.bytes >= max)
    }

    /// The room for queued notifications: the capacities less what is lent
    /// and not yet consumed (`KeepLatest` always has room for its newest).
    fn limits(&self) -> (usize, Option<usize>) {
        if self.policy == OverflowPolicy::KeepLatest {
            return (self.capacity, self.max_bytes);
        }
        let (items, bytes) = self.lent.outstanding();
        (
            self.capacity.saturating_sub(items),
            self.max_bytes.map(|max| max.saturating_sub(bytes)),
        )
    }

    /// The consumer's end of the lent-items accounting, the first time it is
    /// asked for.
    pub(crate) fn take_consumption(
        &mut self,
        held_items: u64,
        held_bytes: u64,
    ) -> Option<Consumption> {
        self.lent.take_consumption(held_items, held_bytes)
    }

    /// Notifications lent and not yet reported consumed.
    pub(crate) fn outstanding(&self) -> usize {
        self.lent.outstanding().0
    }

    // ---- Absorb: stall limit and release

    /// Whether this is an `Absorb` queue holding the connection.
    pub(crate) fn absorbing(&self) -> bool {
        self.policy == OverflowPolicy::Absorb && self.blocks_input()
    }

    /// `Absorb`: how long the queue may hold the connection with nothing
    /// consumed.
    pub(crate) fn stall_limit(&self) -> Duration {
        Duration::from_millis(u64::from(self.stall_limit_ms))
    }

    /// A running count of what the consumer has taken: drains (items
    /// handed over for good) plus lent items reported consumed. A change
    /// means the consumer is making progress.
    pub(crate) fn progress(&self) -> u64 {
        self.delivered + self.lent.consumed()
    }

    /// Whether a full queue stops the reading rather than discarding:
    /// `Backpressure` always, `Absorb` until released.
    fn holds_when_full(&self) -> bool {
        match self.policy {
            OverflowPolicy::Backpressure => true,
            OverflowPolicy::Absorb => !self.released,
            _ => false,
        }
    }

    /// Stops an `Absorb` queue from holding the connection: it drops what
    /// does not fit (the newest, counted in a gap) until its consumer takes
    /// something. Returns whether it was absorbing.
    pub(crate) fn release(&mut self) -> bool {
        let was = self.absorbing();
        self.released = true;
        was
    }

    /// Whether the bus must stop reading the socket for this queue: it is a
    /// `Backpressure` queue, still open, and full.
    ///
    /// The bus checks this after each run of notifications it queues; once
    /// a queue blocks, the rest of the read stays unhandled in a listening
    /// connection and nothing more is read until a drain releases it. So a
    /// `Backpressure` queue holds at most `capacity - 1 + n` notifications
    /// (and `max_bytes - 1 + b` bytes), where `n` and `b` are the
    /// notifications and bytes for this subscriber in the one read that
    /// filled it: the overshoot is bounded by the driver's read size. A new
    /// connection is read even while a queue blocks (it could not start up
    /// otherwise), but only until its LISTENs are acknowledged; the rest of
    /// that read is held too, so however many reconnects happen a full
    /// queue holds at most `capacity + n` (see `Bus::wants_input`).
    pub(crate) fn blocks_input(&self) -> bool {
        self.holds_when_full() && self.end.is_none() && self.is_full()
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

    /// Queues `segment[range]`, in order, applying the overflow policy to
    /// what does not fit, exactly as if the notifications were pushed one by
    /// one. Clones the segment's reference once per span queued (once,
    /// unless a byte limit splits it under `DropNewest`).
    ///
    /// A single notification larger than the byte capacity is accepted into
    /// an empty queue, so the byte limit can never block a channel for good.
    pub(crate) fn push_span(&mut self, segment: &Segment, range: Range<u32>) -> Pushed {
        let count = u64::from(range.end.saturating_sub(range.start));
        if self.end.is_some() || count == 0 {
            return Pushed::default();
        }
        match self.policy {
            // Nothing is discarded: reading stops instead (`blocks_input`).
            _ if self.holds_when_full() => {
                self.append(segment, range);
                Pushed {
                    queued: count,
                    ..Pushed::default()
                }
            }
            // A released `Absorb` queue drops the newest until its consumer
            // takes something (`Backpressure` always holds: the arm above).
            OverflowPolicy::DropNewest | OverflowPolicy::Absorb | OverflowPolicy::Backpressure => {
                self.push_what_fits(segment, range)
            }
            OverflowPolicy::Close => {
                let fit = self.fitting_prefix(segment, range.clone());
                self.append(segment, range.start..range.start + fit);
                let ended = u64::from(fit) < count;
                if ended {
                    self.count_dropped(1);
                    self.end(EndReason::Overflowed);
                }
                Pushed {
                    queued: u64::from(fit),
                    ended,
                    ..Pushed::default()
                }
            }
            // KeepLatest is DropOldest with a capacity of one.
            OverflowPolicy::DropOldest | OverflowPolicy::KeepLatest => {
                let replaced = self.push_dropping_oldest(segment, range);
                Pushed {
                    queued: count,
                    replaced,
                    ..Pushed::default()
                }
            }
        }
    }

    /// Queues one notification (a segment of its own): for tests.
    #[cfg(test)]
    pub(crate) fn push(&mut self, notification: crate::Notification) -> Pushed {
        self.push_span(&segment::segment_of([notification]), 0..1)
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
    }

    /// Ends the stream with `reason`; what is queued stays readable and the
    /// end is reported after it. Later pushes are ignored. The first reason
    /// wins; returns whether this call ended the queue.
    pub(crate) fn end(&mut self, reason: EndReason) -> bool {
        if self.end.is_some() {
            return false;
        }
        self.end = Some(reason);
        true
    }

    /// Ends the stream and discards everything queued, releasing its memory:
    /// for unsubscribe, after which nothing may be delivered.
    #[cfg(test)]
    pub(crate) fn end_and_discard(&mut self, reason: EndReason) -> bool {
        let ended = self.end(reason);
        self.spans = VecDeque::new();
        self.tail = Gaps::default();
        self.len = 0;
        self.bytes = 0;
        ended
    }

    // ---- consumer side (the subscriber's task, through the bus)

    /// Takes the next item: the gaps before the oldest notification, then
    /// the notification. `None` when nothing is left (see
    /// [`finished`](Self::finished) for whether more can come).
    #[cfg(test)]
    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.consumer_took();
        let event = self.pop_one();
        self.after_drain();
        event
    }

    /// Moves up to `max` items into `out` as owned [`Event`]s, in order, and
    /// returns how many. Each notification is cloned out of its shared
    /// segment.
    ///
    /// One call per wake-up hands a batch over, so a subscriber's task takes
    /// one lock per batch rather than per item.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        if max > 0 {
            self.consumer_took();
        }
        let mut taken = 0;
        while taken < max {
            match self.pop_one() {
                Some(event) => out.push(event),
                None => break,
            }
            taken += 1;
        }
        self.after_drain();
        taken
    }

    /// [`drain_batch`](Self::drain_batch), with the notifications handed
    /// over still charged to the capacity until the consumer reports them
    /// consumed through its [`Consumption`].
    pub(crate) fn lend_batch(&mut self, out: &mut EventBatch, max: usize) -> usize {
        let (len, bytes) = (self.len, self.bytes);
        let taken = self.drain_batch(out, max);
        self.lent
            .lend((len - self.len) as u64, (bytes - self.bytes) as u64);
        taken
    }

    /// Moves up to `max` items into `out` by handing over whole spans, and
    /// returns how many (gaps count as items). No reference count is touched
    /// except for a span cut by `max` (one increment).
    pub(crate) fn drain_batch(&mut self, out: &mut EventBatch, max: usize) -> usize {
        if max > 0 {
            self.consumer_took();
        }
        let mut taken = 0;
        while taken < max {
            let Some(front) = self.spans.front_mut() else {
                let gaps = take_gaps(&mut self.tail, max - taken);
                taken += gaps.items();
                out.push_part(Part::new(gaps, None, 0, 0));
                break;
            };
            let whole = front.before.items() + front.len();
            if taken + whole <= max {
                if let Some(span) = self.spans.pop_front() {
                    let (len, bytes) = (span.len(), span.bytes());
                    self.len -= len;
                    self.bytes -= bytes;
                    self.delivered += len as u64;
                    taken += whole;
                    out.push_part(Part::new(
                        span.before,
                        Some(span.segment),
                        span.start,
                        span.end,
                    ));
                }
                continue;
            }
            // The span is cut by `max`: hand over its front part.
            let gaps = take_gaps(&mut front.before, max - taken);
            taken += gaps.items();
            let k = (max - taken).min(front.len()) as u32;
            let cut = front.start + k;
            if k > 0 {
                let bytes = segment::bytes(&front.segment, front.start..cut);
                out.push_part(Part::new(
                    gaps,
                    Some(front.segment.clone()),
                    front.start,
                    cut,
                ));
                front.start = cut;
                self.len -= k as usize;
                self.bytes -= bytes;
                self.delivered += u64::from(k);
                taken += k as usize;
                front.compact_if_pinning();
            } else {
                out.push_part(Part::new(gaps, None, 0, 0));
            }
            break;
        }
        self.after_drain();
        taken
    }

    // ---- internals

    /// The consumer came for items: it is alive, so a released `Absorb`
    /// queue absorbs again and its stall clock stops. A consumer that finds
    /// the queue already empty has caught up and is going idle: the buffer
    /// is given back, so many idle subscribers cost no more after traffic
    /// than before it (the next burst allocates it again, once).
    fn consumer_took(&mut self) {
        self.released = false;
        if self.is_empty() && self.spans.capacity() > 0 {
            self.spans = VecDeque::new();
        }
    }

    /// Counts discarded notifications for the tests' model.
    #[cfg_attr(not(test), allow(unused_variables, clippy::unused_self))]
    fn count_dropped(&mut self, count: u64) {
        #[cfg(test)]
        {
            self.dropped += count;
        }
    }

    /// Whether a notification of `size` bytes fits after `len` queued ones
    /// of `bytes` within `limits` ([`limits`](Self::limits), read once per
    /// push: they load the consumer's shared counters).
    fn has_room_for(limits: (usize, Option<usize>), len: usize, bytes: usize, size: usize) -> bool {
        let (capacity, max_bytes) = limits;
        len < capacity
            && (len == 0 || max_bytes.is_none_or(|max| bytes.saturating_add(size) <= max))
    }

    /// How many notifications of `segment[range]`, from its start, fit one
    /// after another.
    fn fitting_prefix(&self, segment: &Segment, range: Range<u32>) -> u32 {
        let (capacity, max_bytes) = self.limits();
        let room = capacity.saturating_sub(self.len);
        let count = (range.end - range.start) as usize;
        if max_bytes.is_none() {
            return count.min(room) as u32;
        }
        let (mut len, mut bytes) = (self.len, self.bytes);
        for i in range.clone() {
            let size = segment::bytes(segment, i..i + 1);
            if !Self::has_room_for((capacity, max_bytes), len, bytes, size) {
                return i - range.start;
            }
            len += 1;
            bytes += size;
        }
        range.end - range.start
    }

    /// `DropNewest`: queues each notification that fits when it arrives and
    /// counts the others in the tail, in order.
    fn push_what_fits(&mut self, segment: &Segment, range: Range<u32>) -> Pushed {
        let mut pushed = Pushed::default();
        let (capacity, max_bytes) = self.limits();
        if max_bytes.is_none() {
            let fit = self.fitting_prefix(segment, range.clone());
            self.append(segment, range.start..range.start + fit);
            let rejected = u64::from(range.end - range.start - fit);
            if rejected > 0 {
                self.tail.missed = self.tail.missed.saturating_add(rejected);
                self.count_dropped(rejected);
            }
            pushed.queued = u64::from(fit);
            pushed.rejected = rejected;
            return pushed;
        }
        let mut run = range.start;
        let mut i = range.start;
        while i < range.end {
            let size = segment::bytes(segment, i..i + 1);
            let queued_len = self.len + (i - run) as usize;
            let queued_bytes = self.bytes + segment::bytes(segment, run..i);
            if Self::has_room_for((capacity, max_bytes), queued_len, queued_bytes, size) {
                i += 1;
                continue;
            }
            // `i` does not fit: queue the run before it, count it in the tail.
            self.append(segment, run..i);
            pushed.queued += u64::from(i - run);
            let rejected = if queued_len >= capacity {
                // Full by count: nothing after it fits either.
                range.end - i
            } else {
                1
            };
            self.tail.missed = self.tail.missed.saturating_add(u64::from(rejected));
            self.count_dropped(u64::from(rejected));
            pushed.rejected += u64::from(rejected);
            i += rejected;
            run = i;
        }
        self.append(segment, run..range.end);
        pushed.queued += u64::from(range.end - run);
        pushed
    }

    /// `DropOldest` and `KeepLatest`: queues `segment[range]` after
    /// discarding the oldest notifications (already queued, then of the
    /// span) until the queue is within its item and byte capacities with
    /// the span in it (a single notification always stays); their count and
    /// gaps move onto what then comes first. Returns how many were dropped.
    ///
    /// The cut is computed first, so the buffer never holds a span more than
    /// the capacity.
    fn push_dropping_oldest(&mut self, segment: &Segment, range: Range<u32>) -> u64 {
        let (capacity, max_bytes) = self.limits();
        let fits = |len: usize, bytes: usize| {
            len <= capacity && (len <= 1 || max_bytes.is_none_or(|max| bytes <= max))
        };
        let mut len = self.len + (range.end - range.start) as usize;
        let mut bytes = self.bytes + segment::bytes(segment, range.clone());
        let mut drop = 0usize;
        let queued = self.spans.iter().map(|s| (&s.segment, s.start, s.end));
        for (seg, start, end) in queued.chain(std::iter::once((segment, range.start, range.end))) {
            if fits(len, bytes) {
                break;
            }
            let (span_len, span_bytes) = ((end - start) as usize, segment::bytes(seg, start..end));
            if len > span_len && !fits(len - span_len, bytes - span_bytes) {
                drop += span_len;
                len -= span_len;
                bytes -= span_bytes;
                continue;
            }
            // The cut falls inside this span (it may take all of it, but
            // never the queue's last notification): the fewest that fit.
            drop += fewest(span_len, |t| {
                let dropped_bytes = segment::bytes(seg, start..start + t as u32);
                fits(len - t, bytes - dropped_bytes)
            });
            break;
        }
        let queued = self.len;
        if drop <= queued {
            self.drop_front(drop);
            self.append(segment, range);
        } else {
            // Everything queued goes (its gaps move to the tail), and the
            // span's own first notifications too.
            self.drop_front(queued);
            let cut = (drop - queued) as u32;
            self.tail.missed = self.tail.missed.saturating_add(u64::from(cut));
            self.count_dropped(u64::from(cut));
            self.append(segment, range.start + cut..range.end);
        }
        drop as u64
    }

    /// Discards the `count` oldest notifications (at most all of them),
    /// moving their count and gaps onto what now comes first (the tail if
    /// nothing is left).
    fn drop_front(&mut self, mut count: usize) {
        if count == 0 {
            return;
        }
        self.count_dropped(count as u64);
        let mut carried = Gaps::default();
        while count > 0 {
            let Some(front) = self.spans.front_mut() else {
                break;
            };
            carried.absorb(front.before);
            let span_len = front.len();
            if count < span_len {
                let cut = front.start + count as u32;
                self.bytes -= segment::bytes(&front.segment, front.start..cut);
                self.len -= count;
                carried.missed = carried.missed.saturating_add(count as u64);
                front.start = cut;
                front.before = Gaps::default();
                front.compact_if_pinning();
                break;
            }
            self.bytes -= front.bytes();
            self.len -= span_len;
            carried.missed = carried.missed.saturating_add(span_len as u64);
            count -= span_len;
            self.spans.pop_front();
        }
        // The dropped notifications stood before everything that remains,
        // so their gaps go first.
        let next = match self.spans.front_mut() {
            Some(front) => &mut front.before,
            None => &mut self.tail,
        };
        carried.absorb(*next);
        *next = carried;
    }

    /// Queues `segment[range]` after everything queued, with the tail's gaps
    /// before it.
    fn append(&mut self, segment: &Segment, range: Range<u32>) {
        if range.start >= range.end {
            return;
        }
        let whole = range.start == 0 && range.end as usize == segment.len();
        let fresh = if whole {
            None
        } else {
            compacted(segment, range.clone())
        };
        let (segment, range) = match fresh {
            Some(fresh) => (fresh, 0..range.end - range.start),
            None => (segment.clone(), range),
        };
        self.reserve_one();
        let span = Span {
            before: std::mem::take(&mut self.tail),
            segment,
            start: range.start,
            end: range.end,
        };
        self.len += span.len();
        self.bytes += span.bytes();
        self.spans.push_back(span);
    }

    /// Grows the buffer by doubling, but never past the item capacity (a
    /// span holds at least one notification), so a steady state never
    /// reallocates.
    fn reserve_one(&mut self) {
        let len = self.spans.len();
        if len < self.spans.capacity() {
            return;
        }
        if len < self.capacity {
            let target = self.capacity.min(len.saturating_mul(2).max(MIN_ALLOCATION));
            self.spans.reserve_exact(target - len);
        } else {
            // A Backpressure overshoot: amortised growth; shrunk back in `rearm`.
            self.spans.reserve(1);
        }
    }

    fn pop_one(&mut self) -> Option<Event> {
        let Some(front) = self.spans.front_mut() else {
            return self.tail.take_next().map(Event::Gap);
        };
        if let Some(gap) = front.before.take_next() {
            return Some(Event::Gap(gap));
        }
        let i = front.start;
        let item = front.segment.get(i as usize)?;
        let notification = item.notification.clone();
        self.bytes -= notification.size();
        self.len -= 1;
        self.delivered += 1;
        front.start += 1;
        if front.start == front.end {
            self.spans.pop_front();
        }
        Some(Event::Notification(notification))
    }

    fn after_drain(&mut self) {
        if let Some(front) = self.spans.front_mut() {
            front.compact_if_pinning();
        }
        if self.is_empty() {
            self.shrink_after_overshoot();
        }
    }

    /// The consumer found the queue empty: a buffer grown past the capacity
    /// (only a `Backpressure` overshoot does that) is given back.
    fn shrink_after_overshoot(&mut self) {
        let bound = self.capacity.max(MIN_ALLOCATION);
        if self.spans.capacity() > bound {
            // Only after a Backpressure overshoot: give the excess back.
            self.spans.shrink_to(bound);
        }
    }
}

/// The smallest `t` in `1..=n` for which `ok(t)` holds, given that `ok` is
/// monotone (false, then true) and `ok(n)` holds.
fn fewest(n: usize, ok: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (1, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    hi
}

/// Takes up to `max` gap items out of `gaps`, in reading order.
fn take_gaps(gaps: &mut Gaps, max: usize) -> Gaps {
    let mut taken = Gaps::default();
    for _ in 0..max {
        match gaps.take_next() {
            Some(Gap::Overflow { missed }) => taken.missed = missed,
            Some(Gap::Reconnected { generation }) => taken.reconnected = Some(generation),
            None => break,
        }
    }
    taken
}

#[cfg(test)]
#[path = "../alloc_tests.rs"]
mod alloc_tests;

#[cfg(test)]
mod tests;
