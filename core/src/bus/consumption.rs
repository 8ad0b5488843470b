//! Items lent to a subscriber's async layer and not yet consumed by the
//! application, so that a queue's capacity bounds them too.
//!
//! A driver takes a subscriber's items in batches (one lock per batch) and
//! hands them to the application one by one. Until the application has
//! taken an item, the item is still "in the queue" as far as the capacity
//! is concerned: otherwise a stalled reader could hold a whole batch *and*
//! a full queue, twice the capacity, with no overflow counted (issue 21).
//!
//! So a batch taken with [`Bus::lend_batch`](crate::bus::Bus::lend_batch)
//! stays charged to the subscriber's capacity, and the driver reports what
//! the application consumed through the subscriber's [`Consumption`]: two
//! plain atomic stores per item, written by one thread and read by the bus
//! only when it queues for that subscriber, so reporting costs no lock and
//! no contended cache line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals of what the application consumed, shared between the
/// consumer (the only writer) and the bus.
#[derive(Debug, Default)]
struct Totals {
    items: AtomicU64,
    bytes: AtomicU64,
}

/// The consumer's end: records what the application took of the items lent
/// to it, so the bus can charge only what is still held.
///
/// Made by [`Bus::take_consumption`](crate::bus::Bus::take_consumption),
/// once per subscriber. There is one writer per subscriber, so recording
/// reads back its own last totals and stores the new ones (no
/// read-modify-write instruction), and the handle is one pointer.
///
/// ```
/// use std::time::Instant;
/// use pgnotify_core::bus::Bus;
/// use pgnotify_core::config::Config;
///
/// let mut bus = Bus::new(Config::default(), Instant::now());
/// let id = bus.subscribe("jobs", Default::default()).unwrap();
/// let mut consumption = bus.take_consumption(id, 0, 0).unwrap();
/// assert!(bus.take_consumption(id, 0, 0).is_none(), "one consumer per subscriber");
/// consumption.record(1, 16); // the application took a 16-byte notification
/// ```
#[derive(Debug)]
pub struct Consumption {
    totals: Arc<Totals>,
}

impl Consumption {
    /// Records that the application took `items` notifications holding
    /// `bytes` of text ([`Notification::size`](crate::Notification::size)).
    ///
    /// Takes `&mut self`: this handle is the only writer, so reading the
    /// totals back and storing them is exact.
    pub fn record(&mut self, items: u64, bytes: u64) {
        let totals = &*self.totals;
        let new_items = totals.items.load(Ordering::Relaxed) + items;
        let new_bytes = totals.bytes.load(Ordering::Relaxed) + bytes;
        // Bytes first, items last with Release: a reader that sees the new
        // item count (Acquire) sees bytes at least as new.
        totals.bytes.store(new_bytes, Ordering::Relaxed);
        totals.items.store(new_items, Ordering::Release);
    }
}

/// The bus's end: what was lent and how much of it is still held.
#[derive(Debug, Default)]
pub(crate) struct Lent {
    totals: Option<Arc<Totals>>,
    items: u64,
    bytes: u64,
}

impl Lent {
    /// The consumer's end, the first time it is asked for. Until then
    /// nothing lent is counted as outstanding; from then on, what was lent
    /// before counts as consumed except `held_items` notifications of
    /// `held_bytes` the consumer still holds.
    pub(crate) fn take_consumption(
        &mut self,
        held_items: u64,
        held_bytes: u64,
    ) -> Option<Consumption> {
        if self.totals.is_some() {
            return None;
        }
        let items = self.items.saturating_sub(held_items);
        let bytes = self.bytes.saturating_sub(held_bytes);
        let totals = Arc::new(Totals {
            items: AtomicU64::new(items),
            bytes: AtomicU64::new(bytes),
        });
        self.totals = Some(totals.clone());
        Some(Consumption { totals })
    }

    /// Records `items` notifications of `bytes` lent to the consumer.
    pub(crate) fn lend(&mut self, items: u64, bytes: u64) {
        self.items += items;
        self.bytes += bytes;
    }

    /// Notifications and bytes lent and not yet consumed.
    pub(crate) fn outstanding(&self) -> (usize, usize) {
        let Some(totals) = &self.totals else {
            return (0, 0);
        };
        let items = totals.items.load(Ordering::Acquire);
        let bytes = totals.bytes.load(Ordering::Relaxed);
        (
            self.items.saturating_sub(items) as usize,
            self.bytes.saturating_sub(bytes) as usize,
        )
    }

    /// How many notifications the consumer has reported consumed so far;
    /// a change means it is making progress.
    pub(crate) fn consumed(&self) -> u64 {
        self.totals
            .as_ref()
            .map_or(0, |t| t.items.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_late_consumption_counts_only_what_is_still_held() {
        let mut lent = Lent::default();
        lent.lend(3, 30);
        assert_eq!(lent.outstanding(), (0, 0), "untracked until asked for");
        let mut consumption = lent.take_consumption(2, 20).unwrap();
        assert_eq!(lent.outstanding(), (2, 20));
        consumption.record(2, 20);
        assert_eq!(lent.outstanding(), (0, 0));
    }

    use super::*;

    #[test]
    fn outstanding_is_what_was_lent_minus_what_was_recorded() {
        let mut lent = Lent::default();
        assert_eq!(lent.outstanding(), (0, 0), "nothing lent yet");
        let mut consumption = lent.take_consumption(0, 0).unwrap();
        assert!(lent.take_consumption(0, 0).is_none());
        lent.lend(5, 50);
        assert_eq!(lent.outstanding(), (5, 50));
        consumption.record(2, 20);
        assert_eq!(lent.outstanding(), (3, 30));
        assert_eq!(lent.consumed(), 2);
        consumption.record(3, 30);
        assert_eq!(lent.outstanding(), (0, 0));
    }

    #[test]
    fn recording_more_than_lent_never_underflows() {
        let mut lent = Lent::default();
        let mut consumption = lent.take_consumption(0, 0).unwrap();
        consumption.record(1, 10);
        assert_eq!(lent.outstanding(), (0, 0));
    }
}
