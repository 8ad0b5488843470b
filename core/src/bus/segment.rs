//! Segments: the notifications of one channel from one chunk of input,
//! frozen into one shared allocation, and the gap records that stand
//! between the items a subscriber reads.
//!
//! The bus collects the notifications of each channel while it processes
//! one chunk of input and then freezes each channel's list into one
//! [`Segment`]. Every subscriber of that channel queues a *span* of the
//! segment (the segment plus an index range): one reference-count increment
//! per subscriber per chunk, instead of one (or two) per notification. Each
//! item records the running total of the text bytes up to and including it
//! (a prefix sum), so the byte size of any range is one subtraction and the
//! overflow policies work on whole spans arithmetically.
//!
//! # What a span keeps alive
//!
//! A span that retains a few items of a large segment keeps the whole
//! segment alive. [`needs_compaction`] says when a range pins more than
//! [`PIN_FACTOR`] times its own [`cost`]; the queue then copies the range into
//! a fresh segment of its own ([`compact`]), so a queue's retained items never
//! pin more than `PIN_FACTOR` times their own cost. Copying moves only what is
//! kept, at most a quarter of what was released, so it is amortised O(1) per
//! item.

use std::ops::Range;
use std::sync::Arc;

use crate::{Gap, Notification};

/// One notification of a segment, with the running byte total.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) notification: Notification,
    /// [`Notification::size`] summed over this item and every one before it
    /// in the segment.
    end: usize,
}

/// The notifications of one channel from one chunk of input, shared by
/// every subscriber that queued them: one allocation.
pub(crate) type Segment = Arc<[Item]>;

/// A segment holds at most this many items, so a range fits in `u32`s.
pub(crate) const MAX_SEGMENT_ITEMS: usize = u32::MAX as usize;

/// A range may pin at most this many times its own [`cost`] before the queue
/// copies it out of its segment.
pub(crate) const PIN_FACTOR: usize = 4;

/// What one item costs in memory beyond its text: its slot in the segment
/// and the header of the buffer its text lives in (an estimate; the text
/// buffer is one allocation per notification, shared through `Bytes`).
const ITEM_OVERHEAD: usize = std::mem::size_of::<Item>() + 32;

/// Builds segments, reusing one buffer so that freezing a channel's list
/// allocates exactly once (the shared segment itself).
#[derive(Debug, Default)]
pub(crate) struct SegmentBuilder {
    items: Vec<Item>,
    bytes: usize,
}

impl SegmentBuilder {
    /// Appends a notification; returns `false` (and drops nothing) only when
    /// the builder already holds [`MAX_SEGMENT_ITEMS`].
    pub(crate) fn push(&mut self, notification: Notification) -> Result<(), Notification> {
        if self.items.len() >= MAX_SEGMENT_ITEMS {
            return Err(notification);
        }
        self.bytes += notification.size();
        self.items.push(Item {
            notification,
            end: self.bytes,
        });
        Ok(())
    }

    /// How many notifications are waiting to be frozen.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Freezes everything pushed so far into one segment and starts over,
    /// keeping the buffer for the next chunk.
    pub(crate) fn freeze(&mut self) -> Segment {
        self.bytes = 0;
        // `vec::Drain` has an exact length, so this allocates the segment
        // once and moves the items in.
        self.items.drain(..).collect()
    }

    /// Gives the buffer's memory back if a burst made it large.
    pub(crate) fn shrink(&mut self, keep: usize) {
        if self.items.capacity() > keep {
            self.items = Vec::new();
        }
    }
}

/// A segment of the given notifications (for tests and filtered copies).
pub(crate) fn segment_of(notifications: impl IntoIterator<Item = Notification>) -> Segment {
    let mut builder = SegmentBuilder::default();
    for n in notifications {
        // A test or a copy never reaches u32::MAX items.
        let _ = builder.push(n);
    }
    builder.freeze()
}

/// Text bytes of `segment[range]`.
pub(crate) fn bytes(segment: &[Item], range: Range<u32>) -> usize {
    end_of(segment, range.end) - end_of(segment, range.start)
}

/// Text bytes of `segment[..i]`.
fn end_of(segment: &[Item], i: u32) -> usize {
    match i.checked_sub(1) {
        Some(last) => segment.get(last as usize).map_or(0, |item| item.end),
        None => 0,
    }
}

/// The memory `segment[range]` accounts for: its text plus a fixed
/// overhead per item.
pub(crate) fn cost(segment: &[Item], range: Range<u32>) -> usize {
    bytes(segment, range.clone()) + (range.end - range.start) as usize * ITEM_OVERHEAD
}

/// Whether keeping `range` alive would pin more than [`PIN_FACTOR`] times
/// its own cost.
pub(crate) fn needs_compaction(segment: &Segment, range: Range<u32>) -> bool {
    let whole = cost(segment, 0..segment.len() as u32);
    cost(segment, range).saturating_mul(PIN_FACTOR) < whole
}

/// A fresh segment holding only `segment[range]` (the notifications are
/// shared, not copied: one reference-count increment each).
pub(crate) fn compact(segment: &[Item], range: Range<u32>) -> Segment {
    let items = segment
        .get(range.start as usize..range.end as usize)
        .unwrap_or_default();
    segment_of(items.iter().map(|item| item.notification.clone()))
}

/// The gaps standing before one queued notification, or after the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Gaps {
    /// Notifications discarded by the overflow policy.
    pub(crate) missed: u64,
    /// The generation of the latest reconnection, if there was one.
    pub(crate) reconnected: Option<u64>,
}

impl Gaps {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.missed == 0 && self.reconnected.is_none()
    }

    /// How many gap items a consumer reads for these gaps (0, 1 or 2).
    pub(crate) fn items(&self) -> usize {
        usize::from(self.missed > 0) + usize::from(self.reconnected.is_some())
    }

    /// Folds in gaps that came after these ones.
    pub(crate) fn absorb(&mut self, later: Gaps) {
        self.missed = self.missed.saturating_add(later.missed);
        if later.reconnected.is_some() {
            self.reconnected = later.reconnected;
        }
    }

    /// Takes the next gap to read, the overflow count first.
    pub(crate) fn take_next(&mut self) -> Option<Gap> {
        if self.missed > 0 {
            let missed = std::mem::take(&mut self.missed);
            return Some(Gap::Overflow { missed });
        }
        self.reconnected
            .take()
            .map(|generation| Gap::Reconnected { generation })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedStr;

    fn note(payload: &str) -> Notification {
        Notification {
            channel: SharedStr::from_static("ch"),
            payload: SharedStr::from(payload),
            process_id: 1,
        }
    }

    #[test]
    fn prefix_sums_give_the_bytes_of_any_range() {
        let s = segment_of(["a", "bb", "ccc"].map(note));
        assert_eq!(bytes(&s, 0..3), 3 + 4 + 5);
        assert_eq!(bytes(&s, 1..2), 4);
        assert_eq!(bytes(&s, 2..2), 0);
        assert_eq!(bytes(&s, 0..0), 0);
    }

    #[test]
    fn freezing_reuses_the_builders_buffer() {
        let mut b = SegmentBuilder::default();
        b.push(note("1")).unwrap();
        let first = b.freeze();
        assert_eq!(b.len(), 0);
        b.push(note("22")).unwrap();
        let second = b.freeze();
        assert_eq!((first.len(), second.len()), (1, 1));
        assert_eq!(bytes(&second, 0..1), 4, "the running total restarts");
    }

    #[test]
    fn a_small_range_of_a_large_segment_needs_compaction() {
        let s = segment_of((0..8).map(|i| note(&i.to_string())));
        assert!(!needs_compaction(&s, 0..8));
        assert!(!needs_compaction(&s, 6..8), "a quarter is still fine");
        assert!(needs_compaction(&s, 7..8));
        let c = compact(&s, 7..8);
        assert_eq!(c.len(), 1);
        assert_eq!(&*c[0].notification.payload, "7");
        assert!(!needs_compaction(&c, 0..1));
    }

    #[test]
    fn gaps_read_overflow_before_reconnection() {
        let mut g = Gaps {
            missed: 2,
            reconnected: Some(5),
        };
        assert_eq!(g.items(), 2);
        assert_eq!(g.take_next(), Some(Gap::Overflow { missed: 2 }));
        assert_eq!(g.take_next(), Some(Gap::Reconnected { generation: 5 }));
        assert_eq!(g.take_next(), None);
    }
}
