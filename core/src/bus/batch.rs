//! [`EventBatch`]: a subscriber's items handed over in one move, read by
//! reference without a reference-count operation per item.

use std::collections::VecDeque;
use std::fmt;

use crate::bus::segment::{Gaps, Segment};
use crate::{Event, Gap, Notification, SharedStr};

/// A batch of one subscriber's items, taken from the bus in one hand-off by
/// [`Bus::drain_batch`](crate::bus::Bus::drain_batch).
///
/// The batch holds the shared segments the notifications were fanned out in
/// (one per chunk of input), not a copy of each notification, so taking a
/// batch costs one move per chunk and reading it costs nothing per item:
/// [`iter`](Self::iter) yields [`EventRef`]s that borrow the notifications.
/// Items come in the subscriber's order, gaps where they stand. Owned
/// [`Event`]s are available too ([`pop_front`](Self::pop_front), or
/// `into_iter()`), at the price of a clone per notification: a copy when its
/// texts are short enough to be inline, a reference-count increment per long
/// text otherwise (none when this batch is the last holder of a segment).
///
/// A batch is reusable: [`clear`](Self::clear) it (or let
/// [`Bus::drain_batch`](crate::bus::Bus::drain_batch) append to it) to keep
/// its buffer.
///
/// ```
/// use pgnotify_core::bus::{EventBatch, EventRef};
/// let batch = EventBatch::new();
/// let payloads: usize = batch
///     .iter()
///     .filter_map(EventRef::notification)
///     .map(|n| n.payload.len())
///     .sum();
/// assert_eq!(payloads, 0);
/// ```
#[derive(Default)]
pub struct EventBatch {
    parts: VecDeque<Part>,
    /// Items (notifications and gaps) not yet taken.
    len: usize,
}

/// Some gaps and then the items `start..end` of a segment (gaps only when
/// `segment` is `None` or the range is empty).
pub(crate) struct Part {
    pub(crate) before: Gaps,
    pub(crate) segment: Option<Segment>,
    pub(crate) start: u32,
    pub(crate) end: u32,
    /// Whether this batch holds the only reference to `segment`, so owned
    /// items can be moved out rather than cloned; decided at the first take.
    unique: Option<bool>,
}

impl Part {
    pub(crate) fn new(before: Gaps, segment: Option<Segment>, start: u32, end: u32) -> Self {
        Self {
            before,
            segment,
            start,
            end,
            unique: None,
        }
    }

    fn items(&self) -> usize {
        self.before.items() + (self.end - self.start) as usize
    }

    /// A copy of item `i` of the segment if its texts are inline: a plain
    /// copy, cheaper than `Arc::get_mut`'s atomic compare-and-swap, and it
    /// never writes to a cache line other subscribers read.
    #[inline]
    fn copy_inline(&self, i: usize) -> Option<Notification> {
        let shared = &self.segment.as_ref()?.get(i)?.notification;
        (shared.channel.is_inline() && shared.payload.is_inline()).then(|| shared.clone())
    }

    /// An owned copy of item `i` of the segment: copied when its texts are
    /// inline, moved out when this part holds the segment's last reference,
    /// cloned otherwise.
    fn take(&mut self, i: usize) -> Option<Notification> {
        if let Some(copy) = self.copy_inline(i) {
            return Some(copy);
        }
        let segment = self.segment.as_mut()?;
        let unique = *self
            .unique
            .get_or_insert_with(|| std::sync::Arc::get_mut(segment).is_some());
        let owned = if unique {
            std::sync::Arc::get_mut(segment)
        } else {
            None
        };
        match owned {
            Some(items) => Some(std::mem::replace(
                &mut items.get_mut(i)?.notification,
                placeholder(),
            )),
            None => segment.get(i).map(|item| item.notification.clone()),
        }
    }
}

impl EventBatch {
    /// An empty batch; allocates nothing until items are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Items in the batch, gaps included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every item, keeping the buffer.
    pub fn clear(&mut self) {
        self.parts.clear();
        self.len = 0;
    }

    /// The items in order, by reference: no clone, no reference count.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            parts: self.parts.iter(),
            current: None,
        }
    }

    /// Takes the first item out as an owned [`Event`].
    ///
    /// A notification whose texts are stored inline (short ones, see
    /// [`SharedStr::INLINE_CAPACITY`]) is copied: no allocation, no atomic
    /// operation. One with longer text is moved out when the batch holds
    /// the last reference to its segment, and otherwise cloned (a
    /// reference-count increment per long text).
    #[inline]
    pub fn pop_front(&mut self) -> Option<Event> {
        // The common case, kept small enough to be inlined into the
        // caller's loop (`Subscription::recv` is called once per item): a
        // short notification that is neither behind a gap nor the last of
        // its part, so nothing but the cursor changes.
        if let Some(part) = self.parts.front_mut() {
            if part.before.is_empty() && part.end - part.start > 1 {
                if let Some(notification) = part.copy_inline(part.start as usize) {
                    part.start += 1;
                    self.len -= 1;
                    return Some(Event::Notification(notification));
                }
            }
        }
        self.pop_front_slow()
    }

    /// [`pop_front`](Self::pop_front) for the other cases: gaps, long text,
    /// the end of a part.
    fn pop_front_slow(&mut self) -> Option<Event> {
        loop {
            let part = self.parts.front_mut()?;
            if let Some(gap) = part.before.take_next() {
                self.len -= 1;
                return Some(Event::Gap(gap));
            }
            if part.start < part.end {
                let i = part.start as usize;
                part.start += 1;
                self.len -= 1;
                let notification = part.take(i)?;
                if part.start == part.end {
                    self.parts.pop_front();
                }
                return Some(Event::Notification(notification));
            }
            self.parts.pop_front();
        }
    }

    /// Moves every item of `other` to the end of this batch, leaving
    /// `other` empty (no item is cloned).
    pub fn append(&mut self, other: &mut EventBatch) {
        self.len += std::mem::take(&mut other.len);
        self.parts.append(&mut other.parts);
    }

    pub(crate) fn push_part(&mut self, part: Part) {
        let items = part.items();
        if items > 0 {
            self.len += items;
            if self.parts.capacity() == 0 {
                // Most batches hold one part (one chunk of one channel):
                // start with room for one, not the default four.
                self.parts.reserve_exact(1);
            }
            self.parts.push_back(part);
        }
    }
}

/// What a notification moved out of a uniquely held segment leaves behind:
/// static empty text, no allocation.
fn placeholder() -> Notification {
    Notification {
        channel: SharedStr::default(),
        payload: SharedStr::default(),
        process_id: 0,
    }
}

impl fmt::Debug for EventBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One item of an [`EventBatch`], borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventRef<'a> {
    /// A notification on the subscribed channel.
    Notification(&'a Notification),
    /// Notifications may be missing here; see [`Gap`].
    Gap(Gap),
}

impl<'a> EventRef<'a> {
    /// The notification, if this item is one.
    pub fn notification(self) -> Option<&'a Notification> {
        match self {
            Self::Notification(n) => Some(n),
            Self::Gap(_) => None,
        }
    }

    /// An owned copy (the notification's text is shared, not copied).
    pub fn to_event(self) -> Event {
        match self {
            Self::Notification(n) => Event::Notification(n.clone()),
            Self::Gap(g) => Event::Gap(g),
        }
    }
}

/// The items of an [`EventBatch`] by reference, from [`EventBatch::iter`].
pub struct Iter<'a> {
    parts: std::collections::vec_deque::Iter<'a, Part>,
    /// The part being read, its gaps not yet yielded, the next index.
    current: Option<(&'a Part, Gaps, u32)>,
}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = EventRef<'a>;

    fn next(&mut self) -> Option<EventRef<'a>> {
        loop {
            let (part, gaps, next) = match &mut self.current {
                Some(current) => current,
                None => {
                    let part = self.parts.next()?;
                    self.current.insert((part, part.before, part.start))
                }
            };
            if let Some(gap) = gaps.take_next() {
                return Some(EventRef::Gap(gap));
            }
            if *next < part.end {
                let i = *next as usize;
                *next += 1;
                if let Some(item) = part.segment.as_ref().and_then(|s| s.get(i)) {
                    return Some(EventRef::Notification(&item.notification));
                }
            }
            self.current = None;
        }
    }
}

impl<'a> IntoIterator for &'a EventBatch {
    type Item = EventRef<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The items of an [`EventBatch`] as owned [`Event`]s.
#[derive(Debug)]
pub struct IntoIter(EventBatch);

impl Iterator for IntoIter {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.0.pop_front()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.len, Some(self.0.len))
    }
}

impl ExactSizeIterator for IntoIter {}

impl IntoIterator for EventBatch {
    type Item = Event;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::segment::segment_of;

    /// A notification whose payload is too long to be stored inline.
    fn note(i: u32) -> Notification {
        Notification {
            channel: SharedStr::from_static("ch"),
            payload: SharedStr::from(format!("payload {i} of a batch, longer than 23 bytes")),
            process_id: 1,
        }
    }

    /// A notification whose texts are both stored inline.
    fn short_note(i: u32) -> Notification {
        Notification {
            channel: SharedStr::from("ch"),
            payload: SharedStr::from(i.to_string()),
            process_id: 1,
        }
    }

    fn batch_of_two_parts(segment: &Segment) -> EventBatch {
        let mut batch = EventBatch::new();
        batch.push_part(Part::new(
            Gaps {
                missed: 2,
                reconnected: None,
            },
            Some(segment.clone()),
            1,
            3,
        ));
        batch.push_part(Part::new(
            Gaps {
                missed: 0,
                reconnected: Some(4),
            },
            None,
            0,
            0,
        ));
        batch
    }

    #[test]
    fn iter_reads_gaps_then_items_in_order_without_taking_them() {
        let segment = segment_of((0..4).map(note));
        let batch = batch_of_two_parts(&segment);
        assert_eq!(batch.len(), 4);
        let events: Vec<Event> = batch.iter().map(EventRef::to_event).collect();
        assert_eq!(
            events,
            [
                Event::Gap(Gap::Overflow { missed: 2 }),
                Event::Notification(note(1)),
                Event::Notification(note(2)),
                Event::Gap(Gap::Reconnected { generation: 4 }),
            ]
        );
        assert_eq!(batch.len(), 4, "iterating takes nothing");
        let owned: Vec<Event> = batch.into_iter().collect();
        assert_eq!(owned, events);
    }

    #[test]
    fn pop_front_moves_items_out_of_a_segment_it_alone_holds() {
        let segment = segment_of((0..4).map(note));
        let mut batch = batch_of_two_parts(&segment);
        let payload_ptr = segment[1].notification.payload.as_ptr();
        drop(segment);
        assert_eq!(
            batch.pop_front(),
            Some(Event::Gap(Gap::Overflow { missed: 2 }))
        );
        let Some(Event::Notification(n)) = batch.pop_front() else {
            panic!("a notification comes second");
        };
        assert_eq!(n, note(1));
        assert_eq!(n.payload.as_ptr(), payload_ptr, "moved, not copied");
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn pop_front_clones_from_a_segment_still_shared() {
        let segment = segment_of((0..4).map(note));
        let mut batch = batch_of_two_parts(&segment);
        batch.pop_front();
        assert_eq!(batch.pop_front(), Some(Event::Notification(note(1))));
        assert_eq!(
            segment[1].notification.payload,
            note(1).payload,
            "left in place"
        );
    }

    #[test]
    fn pop_front_copies_inline_notifications_even_from_a_segment_it_alone_holds() {
        let segment = segment_of((0..4).map(short_note));
        let mut batch = batch_of_two_parts(&segment);
        let weak = std::sync::Arc::downgrade(&segment);
        drop(segment);
        batch.pop_front();
        assert_eq!(batch.pop_front(), Some(Event::Notification(short_note(1))));
        let segment = weak.upgrade().expect("the batch still holds the segment");
        assert_eq!(
            segment[1].notification,
            short_note(1),
            "copied, not replaced by a placeholder"
        );
    }
}
