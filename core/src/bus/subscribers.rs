//! The subscriber table: each subscriber's queue, readiness and the
//! fan-out of one channel's segment to the ready subscribers of that channel.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Instant;

use crate::bus::batch::EventBatch;
use crate::bus::consumption::Consumption;
use crate::bus::filter::Filter;
use crate::bus::output::{BusEvent, SubscriberStatus};
use crate::bus::queue::{Pushed, SubscriberQueue};
use crate::bus::registry::SubscriberId;
use crate::bus::segment::{Segment, SegmentBuilder};
use crate::bus::stats::Stats;
use crate::{EndReason, Event, Gap, OverflowPolicy, SubscribeOptions};

/// Subscriber ids are sequential numbers: hashing them is wasted work on the
/// fan-out path, so the table uses the number itself.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Spread sequential ids over the table's buckets.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Debug)]
struct Subscriber {
    /// Shared with the registry's entry for the channel: no allocation per
    /// subscriber.
    channel: Arc<str>,
    queue: SubscriberQueue,
    /// `None` when the subscriber takes everything: one branch on the hot path.
    /// Boxed: most subscribers have none, and every byte here is paid by
    /// each of them.
    filter: Option<Box<Filter>>,
    ready: bool,
    /// Lived through an outage: a `Gap::Reconnected` is owed before its
    /// next item from the new connection.
    owes_reconnect_gap: bool,
    /// `SubscriberReadable` was sent and the queue not emptied since (a
    /// drain that leaves items sends it again: readiness is level-triggered).
    readable_signalled: bool,
    /// Listed in `Subscribers::holding`.
    holding_back: bool,
}

/// A subscriber holding the connection, and its stall clock: since when,
/// and how far its consumer had got then.
#[derive(Debug, Clone, Copy)]
struct Holding {
    id: SubscriberId,
    since: Instant,
    progress: u64,
}

impl Holding {
    fn start(id: SubscriberId, since: Instant, progress: u64) -> Self {
        Self {
            id,
            since,
            progress,
        }
    }
}

/// Every subscriber, by id.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    next_id: u64,
    table: HashMap<SubscriberId, Subscriber, BuildHasherDefault<IdHasher>>,
    /// The full `Backpressure` and absorbing `Absorb` subscribers, each with
    /// its stall clock: reading is paused while there is any. Short (usually
    /// empty), so a scan is cheaper than an index, and only these pay for a
    /// clock.
    holding: Vec<Holding>,
    /// Builds the segments of filtered subscribers that keep only some
    /// notifications, reusing one buffer.
    scratch: SegmentBuilder,
}

impl Subscribers {
    pub(crate) fn insert(&mut self, channel: Arc<str>, options: SubscribeOptions) -> SubscriberId {
        self.next_id += 1;
        let id = SubscriberId::from_raw(self.next_id);
        self.table.insert(
            id,
            Subscriber {
                channel,
                queue: SubscriberQueue::new(&options),
                filter: options.active_filter().map(Box::new),
                ready: false,
                owes_reconnect_gap: false,
                readable_signalled: false,
                holding_back: false,
            },
        );
        id
    }

    /// Removes `id` entirely and returns its channel, if it was still
    /// registered there (it is not once it has ended).
    pub(crate) fn remove(&mut self, id: SubscriberId) -> Option<Arc<str>> {
        let sub = self.table.remove(&id)?;
        if sub.holding_back {
            self.holding.retain(|h| h.id != id);
        }
        sub.queue.end_reason().is_none().then_some(sub.channel)
    }

    pub(crate) fn status(&self, id: SubscriberId) -> SubscriberStatus {
        match self.table.get(&id) {
            None => SubscriberStatus::Unknown,
            Some(s) => match s.queue.end_reason() {
                Some(reason) => SubscriberStatus::Ended(reason),
                None if s.ready => SubscriberStatus::Ready,
                None => SubscriberStatus::Pending,
            },
        }
    }

    /// How many subscribers hold the connection (reading is paused while
    /// any does).
    pub(crate) fn backpressured(&self) -> usize {
        self.holding.len()
    }

    /// Whether a subscriber skips the listener's own notifications.
    pub(crate) fn any_skipping_own(&self) -> bool {
        self.table
            .values()
            .any(|s| s.filter.as_ref().is_some_and(|f| f.skips_own()))
    }

    /// Whether an `Absorb` subscriber is among those holding the connection
    /// (the server guard then watches the server's queue).
    pub(crate) fn any_absorbing(&self) -> bool {
        self.holding
            .iter()
            .any(|h| self.table.get(&h.id).is_some_and(|s| s.queue.absorbing()))
    }

    /// The earliest stall deadline of an absorbing subscriber.
    pub(crate) fn next_stall_deadline(&self) -> Option<Instant> {
        self.holding
            .iter()
            .filter_map(|h| {
                let queue = &self.table.get(&h.id)?.queue;
                (queue.policy() == OverflowPolicy::Absorb).then(|| h.since + queue.stall_limit())
            })
            .min()
    }

    /// At their stall deadlines: releases every absorbing subscriber that
    /// consumed nothing within its stall limit, and returns how many. One
    /// that made progress starts its clock again; one whose consumer freed
    /// room meanwhile (by consuming lent items) stops holding the connection.
    pub(crate) fn release_stalled(&mut self, now: Instant) -> u64 {
        let (mut stalled, mut freed) = (Vec::new(), Vec::new());
        for h in &mut self.holding {
            let Some(s) = self.table.get(&h.id) else {
                continue;
            };
            let queue = &s.queue;
            if queue.policy() != OverflowPolicy::Absorb || now < h.since + queue.stall_limit() {
                continue;
            }
            if !queue.blocks_input() {
                freed.push(h.id);
            } else if queue.progress() == h.progress {
                stalled.push(h.id);
            } else {
                *h = Holding::start(h.id, now, queue.progress());
            }
        }
        for &id in &stalled {
            if let Some(s) = self.table.get_mut(&id) {
                s.queue.release();
            }
        }
        for id in stalled.iter().chain(&freed) {
            self.stop_holding(*id);
        }
        stalled.len() as u64
    }

    /// Releases every absorbing subscriber (the server guard tripped);
    /// returns how many.
    pub(crate) fn release_absorbing(&mut self) -> u64 {
        let mut released = 0;
        for id in self.holding.iter().map(|h| h.id).collect::<Vec<_>>() {
            if let Some(s) = self.table.get_mut(&id) {
                if s.queue.release() {
                    released += 1;
                    self.stop_holding(id);
                }
            }
        }
        released
    }

    fn stop_holding(&mut self, id: SubscriberId) {
        if let Some(s) = self.table.get_mut(&id) {
            s.holding_back = false;
        }
        self.holding.retain(|h| h.id != id);
    }

    /// Notifications delivered to `id` and not yet consumed: queued, or lent
    /// and not reported consumed.
    pub(crate) fn pending(&self, id: SubscriberId) -> usize {
        self.table
            .get(&id)
            .map_or(0, |s| s.queue.len() + s.queue.outstanding())
    }

    /// The consumer's end of `id`'s lent-items accounting, once.
    pub(crate) fn take_consumption(
        &mut self,
        id: SubscriberId,
        held_items: u64,
        held_bytes: u64,
    ) -> Option<Consumption> {
        self.table
            .get_mut(&id)?
            .queue
            .take_consumption(held_items, held_bytes)
    }

    /// Whether `id` was ever marked ready (it stays so once ended).
    pub(crate) fn was_ready(&self, id: SubscriberId) -> bool {
        self.table.get(&id).is_some_and(|s| s.ready)
    }

    pub(crate) fn mark_ready(&mut self, id: SubscriberId, events: &mut VecDeque<BusEvent>) {
        if let Some(s) = self.table.get_mut(&id) {
            if !s.ready && s.queue.end_reason().is_none() {
                s.ready = true;
                events.push_back(BusEvent::SubscriberReady(id));
            }
        }
    }

    /// Ends `id` with `reason`; returns its channel so the caller can
    /// deregister it. Queued items stay readable.
    pub(crate) fn end(
        &mut self,
        id: SubscriberId,
        reason: EndReason,
        events: &mut VecDeque<BusEvent>,
    ) -> Option<Arc<str>> {
        let s = self.table.get_mut(&id)?;
        if s.queue.end_reason().is_some() {
            return None;
        }
        s.queue.end(reason);
        if s.holding_back {
            s.holding_back = false;
            self.holding.retain(|h| h.id != id);
        }
        events.push_back(BusEvent::SubscriberEnded(id, reason));
        Some(s.channel.clone())
    }

    pub(crate) fn end_all(&mut self, reason: EndReason, events: &mut VecDeque<BusEvent>) {
        let mut ids: Vec<SubscriberId> = self.table.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.end(id, reason, events);
        }
    }

    /// Every ready subscriber lived through the outage that just began.
    pub(crate) fn expect_reconnect_gaps(&mut self) {
        for s in self.table.values_mut() {
            if s.ready && s.queue.end_reason().is_none() {
                s.owes_reconnect_gap = true;
            }
        }
    }

    /// The new connection's LISTENs are acknowledged: every subscriber still
    /// owed a gap gets it now.
    pub(crate) fn push_pending_reconnect_gaps(
        &mut self,
        generation: u64,
        events: &mut VecDeque<BusEvent>,
    ) {
        let mut ids: Vec<SubscriberId> = self
            .table
            .iter()
            .filter(|(_, s)| s.owes_reconnect_gap)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in ids {
            if let Some(s) = self.table.get_mut(&id) {
                s.owes_reconnect_gap = false;
                s.queue.push_gap(Gap::Reconnected { generation });
                signal_readable(id, s, events);
            }
        }
    }

    /// Pushes a reconnect gap to `ids` (their LISTEN was found missing).
    pub(crate) fn push_reconnect_gap(
        &mut self,
        ids: &[SubscriberId],
        generation: u64,
        events: &mut VecDeque<BusEvent>,
    ) {
        for &id in ids {
            if let Some(s) = self.table.get_mut(&id) {
                s.queue.push_gap(Gap::Reconnected { generation });
                signal_readable(id, s, events);
            }
        }
    }

    /// Queues `segment` (notifications of one channel from one run of
    /// input, in order) to each of `ids` (the ready subscribers of that
    /// channel) and returns the subscribers that ended because of it
    /// (policy `Close`), with their channel, for the caller to deregister.
    ///
    /// This is the hot path: per subscriber one table lookup, one span
    /// queued (one reference-count increment for the whole segment) and no
    /// allocation. A subscriber's filter runs first, on every notification
    /// (`own_pid` is the backend pid of the connection they arrived on);
    /// what it drops is never queued, so it takes no capacity and counts as
    /// no overflow. A filtered subscriber that keeps only some notifications
    /// queues a segment of its own holding those (one allocation per run).
    pub(crate) fn fan_out(
        &mut self,
        now: Instant,
        ids: &[SubscriberId],
        segment: &Segment,
        own_pid: Option<i32>,
        events: &mut VecDeque<BusEvent>,
        stats: &mut Stats,
    ) -> Vec<(SubscriberId, Arc<str>)> {
        let count = segment.len() as u32;
        let mut ended = Vec::new();
        for &id in ids {
            let Some(s) = self.table.get_mut(&id) else {
                continue;
            };
            if !s.ready {
                // Joined while input was held back (`Bus::subscribe`): what
                // the connection read before it joined is not its own.
                continue;
            }
            let pushed = match &s.filter {
                None => s.queue.push_span(segment, 0..count),
                Some(filter) => {
                    match keep_filtered(segment, filter, own_pid, stats, &mut self.scratch) {
                        Kept::All => s.queue.push_span(segment, 0..count),
                        Kept::Some(kept) => s.queue.push_span(&kept, 0..kept.len() as u32),
                        Kept::None => continue,
                    }
                }
            };
            if pushed == Pushed::default() {
                // The queue has ended: nothing more is delivered to it.
                continue;
            }
            stats.notifications_queued += pushed.queued;
            if s.queue.policy() == OverflowPolicy::KeepLatest {
                stats.replaced_latest += pushed.replaced;
            } else {
                stats.dropped_oldest += pushed.replaced;
            }
            stats.dropped_newest += pushed.rejected;
            if pushed.ended {
                stats.closed_by_overflow += 1;
                events.push_back(BusEvent::SubscriberEnded(id, EndReason::Overflowed));
                ended.push((id, s.channel.clone()));
            }
            if s.queue.blocks_input() && !s.holding_back {
                s.holding_back = true;
                self.holding
                    .push(Holding::start(id, now, s.queue.progress()));
            }
            signal_readable(id, s, events);
        }
        ended
    }

    /// Hands up to `max` items of `id` over to `out` by reference (whole
    /// spans, no clone per item); `lend`: the notifications stay charged to
    /// `id`'s capacity until its consumer reports them consumed. Counts the
    /// notifications taken in `stats`.
    pub(crate) fn drain_batch(
        &mut self,
        now: Instant,
        id: SubscriberId,
        out: &mut EventBatch,
        max: usize,
        lend: bool,
        drained: Drained<'_>,
    ) -> SubscriberStatus {
        let Some(s) = self.table.get_mut(&id) else {
            return SubscriberStatus::Unknown;
        };
        let before = s.queue.len();
        if lend {
            s.queue.lend_batch(out, max);
        } else {
            s.queue.drain_batch(out, max);
        }
        drained.stats.notifications_taken += (before - s.queue.len()) as u64;
        self.after_drain(now, id, drained.events)
    }

    /// Moves up to `max` items of `id` into `out`. Counts the notifications
    /// taken in `stats`.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        id: SubscriberId,
        out: &mut Vec<Event>,
        max: usize,
        drained: Drained<'_>,
    ) -> SubscriberStatus {
        let Some(s) = self.table.get_mut(&id) else {
            return SubscriberStatus::Unknown;
        };
        let before = s.queue.len();
        s.queue.drain_into(out, max);
        drained.stats.notifications_taken += (before - s.queue.len()) as u64;
        self.after_drain(now, id, drained.events)
    }

    /// Whether `id` has anything queued (a notification or a gap).
    pub(crate) fn is_readable(&self, id: SubscriberId) -> bool {
        self.table.get(&id).is_some_and(|s| !s.queue.is_empty())
    }

    /// After `id`'s consumer came for items: announces it again if items
    /// remain (readiness is level-triggered, so a bounded drain never
    /// strands the rest), re-arms the signal once it is empty, and releases
    /// backpressure; returns its status.
    fn after_drain(
        &mut self,
        now: Instant,
        id: SubscriberId,
        events: &mut VecDeque<BusEvent>,
    ) -> SubscriberStatus {
        if let Some(s) = self.table.get_mut(&id) {
            if s.queue.is_empty() {
                s.readable_signalled = false;
            } else {
                s.readable_signalled = true;
                events.push_back(BusEvent::SubscriberReadable(id));
            }
            if s.holding_back {
                if s.queue.blocks_input() {
                    // Still full after taking some: the stall clock starts again.
                    let progress = s.queue.progress();
                    if let Some(h) = self.holding.iter_mut().find(|h| h.id == id) {
                        *h = Holding::start(id, now, progress);
                    }
                } else {
                    self.stop_holding(id);
                }
            }
        }
        self.status(id)
    }

    pub(crate) fn fill_stats(&self, stats: &mut Stats) {
        stats.subscribers = 0;
        stats.queued_items = 0;
        stats.queued_bytes = 0;
        stats.largest_queue = 0;
        for s in self.table.values() {
            if s.queue.end_reason().is_none() {
                stats.subscribers += 1;
            }
            stats.queued_items += s.queue.len();
            stats.lent_items += s.queue.outstanding();
            stats.queued_bytes += s.queue.bytes();
            stats.largest_queue = stats.largest_queue.max(s.queue.len());
        }
    }
}

/// Where a drain reports: the bus's events (a re-announcement) and its
/// counters (notifications taken).
pub(crate) struct Drained<'a> {
    pub(crate) events: &'a mut VecDeque<BusEvent>,
    pub(crate) stats: &'a mut Stats,
}

/// What a subscriber's filter kept of a segment.
enum Kept {
    /// Every notification: the shared segment is queued as it is.
    All,
    /// Some: a segment of its own holding those.
    Some(Segment),
    /// None.
    None,
}

/// Runs `filter` on every notification of `segment`, once each, in order.
fn keep_filtered(
    segment: &Segment,
    filter: &Filter,
    own_pid: Option<i32>,
    stats: &mut Stats,
    scratch: &mut SegmentBuilder,
) -> Kept {
    let mut first_dropped = None;
    for (i, item) in segment.iter().enumerate() {
        let n = &item.notification;
        if filter.keeps(n, own_pid, stats) {
            if first_dropped.is_some() {
                // Cannot be full: it holds fewer than the segment.
                let _ = scratch.push(n.clone());
            }
            continue;
        }
        stats.notifications_filtered += 1;
        if first_dropped.is_none() {
            first_dropped = Some(i);
            for kept in &segment[..i] {
                let _ = scratch.push(kept.notification.clone());
            }
        }
    }
    match first_dropped {
        None => Kept::All,
        Some(_) if scratch.len() == 0 => Kept::None,
        Some(_) => Kept::Some(scratch.freeze()),
    }
}

fn signal_readable(id: SubscriberId, s: &mut Subscriber, events: &mut VecDeque<BusEvent>) {
    if !s.readable_signalled && !s.queue.is_empty() {
        s.readable_signalled = true;
        events.push_back(BusEvent::SubscriberReadable(id));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bus::segment::segment_of;
    use crate::{Notification, SharedStr};

    fn burst(n: u32) -> Segment {
        segment_of((1..=n).map(|i| Notification {
            channel: SharedStr::from_static("jobs"),
            payload: SharedStr::from(i.to_string()),
            process_id: 1,
        }))
    }

    #[test]
    fn an_absorbing_subscriber_is_released_only_after_its_stall_limit_without_progress() {
        let limit = Duration::from_secs(5);
        let mut subs = Subscribers::default();
        let (mut events, mut stats) = (VecDeque::new(), Stats::default());
        let id = subs.insert(
            Arc::from("jobs"),
            SubscribeOptions::new().capacity(2).stall_limit(limit),
        );
        subs.mark_ready(id, &mut events);
        let mut consumption = subs.take_consumption(id, 0, 0).unwrap();
        let t0 = Instant::now();
        subs.fan_out(t0, &[id], &burst(2), None, &mut events, &mut stats);
        assert_eq!(subs.backpressured(), 1, "full: it holds the connection");
        assert_eq!(subs.next_stall_deadline(), Some(t0 + limit));
        assert_eq!(subs.release_stalled(t0 + limit / 2), 0, "not yet due");
        // It takes a lent batch: still full (the batch counts), clock restarted.
        let mut batch = EventBatch::new();
        let drained = Drained {
            events: &mut events,
            stats: &mut stats,
        };
        subs.drain_batch(t0 + limit / 2, id, &mut batch, usize::MAX, true, drained);
        assert_eq!(subs.backpressured(), 1);
        assert_eq!(subs.next_stall_deadline(), Some(t0 + limit / 2 + limit));
        // It consumes one item before the deadline: room, so it stops
        // holding the connection at the deadline even without a drain.
        consumption.record(1, 5);
        let t1 = t0 + limit / 2 + limit;
        assert_eq!(subs.release_stalled(t1), 0, "it consumed one");
        assert_eq!(subs.backpressured(), 0, "room again: reading resumes");
        // Full again, with progress but still full at the deadline: the
        // clock restarts; then nothing for a whole limit: released.
        subs.fan_out(t1, &[id], &burst(1), None, &mut events, &mut stats);
        assert_eq!(subs.backpressured(), 1);
        consumption.record(1, 5);
        subs.fan_out(t1, &[id], &burst(1), None, &mut events, &mut stats);
        assert_eq!(subs.release_stalled(t1 + limit), 0, "it consumed another");
        assert_eq!(subs.next_stall_deadline(), Some(t1 + 2 * limit));
        assert_eq!(subs.release_stalled(t1 + 2 * limit), 1);
        assert_eq!(subs.backpressured(), 0);
        assert_eq!(subs.next_stall_deadline(), None);
    }
}
