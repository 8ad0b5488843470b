//! A subscriber's end of the bus: a stream of [`Event`]s for one channel.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pgnotify_core::bus::{Consumption, EventBatch, EventRef, SubscriberId, SubscriberStatus};
use pgnotify_core::{ChannelError, EndReason, Event, SubscribeOptions};

use crate::shared::{Shared, SubscriberSlot};
use crate::signal::store_waker;

/// A stream of the notifications on one channel, with in-band gaps, from
/// the moment the server acknowledged the LISTEN.
///
/// Made by [`Listener::subscribe`](crate::Listener::subscribe). Items are
/// [`Event::Notification`]s in the server's order, and [`Event::Gap`]s where
/// notifications may be missing: [`Gap::Overflow`](pgnotify_core::Gap::Overflow)
/// counts exactly what this subscription's overflow policy discarded,
/// [`Gap::Reconnected`](pgnotify_core::Gap::Reconnected) marks an outage.
/// The stream ends (`None`) when the subscription is closed by its policy,
/// when the server refuses the LISTEN after a reconnect, or when the listener
/// closes; [`end_reason`](Self::end_reason) then says which.
///
/// Read it with [`recv`](Self::recv) or as a [`futures_core::Stream`], or a
/// whole batch at a time with [`recv_batch`](Self::recv_batch). Items are
/// taken from the bus in batches (one lock per batch, and no reference count
/// touched per item: the batch holds the shared segments the notifications
/// were fanned out in) into a buffer inside the subscription; `recv` and the
/// stream then yield each notification as an owned [`Event`]: texts of up to
/// 23 bytes are copied (no allocation, no atomic operation), longer ones
/// shared by reference count (moved out when the subscription holds the
/// last reference to its segment), while [`recv_batch`](Self::recv_batch)
/// hands the batch over to be read by reference. It is `Send` and may move
/// between tasks.
///
/// # Capacity
///
/// The subscription's capacity ([`SubscribeOptions::capacity`]) bounds
/// everything delivered to it that the application has not yet taken: the
/// listener's queue *and* the batch buffered here. An item counts until
/// `recv` (or the stream) returns it, or `recv_batch` hands it over; the
/// overflow policy acts exactly at that bound.
///
/// # Dropping
///
/// Dropping a subscription unsubscribes at once: nothing more is queued for
/// it, and when it was the channel's last subscriber the listener sends
/// `UNLISTEN`. A subscription keeps the listener open even after every
/// [`Listener`](crate::Listener) handle is dropped.
pub struct Subscription {
    shared: Arc<Shared>,
    id: SubscriberId,
    channel: String,
    /// The batch taken from the bus and not yet yielded; its notifications
    /// still count against the capacity until yielded.
    batch: EventBatch,
    /// The last batch lent kept items beyond the one returned at once: when
    /// it is used up the bus must hear of it (see `batch_used_up`).
    kept_lent: bool,
    /// Reports to the bus what the application took of `batch`; made at
    /// the first lent batch, so a subscription that never received
    /// anything does not pay for it.
    consumption: Option<Consumption>,
    end: Option<EndReason>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .field("buffered", &self.batch.len())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// Why [`Listener::subscribe`](crate::Listener::subscribe) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The channel name is invalid; nothing was sent.
    Channel(ChannelError),
    /// The server refused to LISTEN on the channel (for example on a hot standby).
    ListenRefused,
    /// The listener is closed.
    Closed,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(e) => write!(f, "invalid channel: {e}"),
            Self::ListenRefused => f.write_str("the server refused to LISTEN on the channel"),
            Self::Closed => f.write_str("the listener is closed"),
        }
    }
}

impl std::error::Error for SubscribeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Channel(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ChannelError> for SubscribeError {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}

impl Subscription {
    /// Adds a subscriber to the bus; it is not ready yet (see [`ready`](Self::ready)).
    pub(crate) fn register(
        shared: &Arc<Shared>,
        channel: &str,
        options: Option<SubscribeOptions>,
    ) -> Result<Self, SubscribeError> {
        let id = shared.command(|state, _| {
            if state.lifecycle.closing {
                return Err(SubscribeError::Closed);
            }
            let options = options.unwrap_or_else(|| state.bus.config().default_subscribe_options());
            let id = state.bus.subscribe(channel, options)?;
            state.subscribers.insert(id, SubscriberSlot::default());
            Ok(id)
        })?;
        Ok(Self {
            shared: shared.clone(),
            id,
            channel: channel.to_owned(),
            batch: EventBatch::new(),
            kept_lent: false,
            consumption: None,
            end: None,
        })
    }

    /// Waits until the server has acknowledged the LISTEN.
    pub(crate) async fn ready(&self) -> Result<(), SubscribeError> {
        std::future::poll_fn(|cx| {
            let mut state = self.shared.lock();
            let status = state.bus.subscriber_status(self.id);
            let acknowledged = state.bus.was_ready(self.id);
            let stopped = state.lifecycle.driver_stopped;
            let Some(slot) = state.subscribers.get_mut(&self.id) else {
                return Poll::Ready(Err(SubscribeError::Closed));
            };
            if acknowledged {
                // The waiting task's waker is no longer needed; keeping it
                // would keep whatever owns it (a finished join) alive.
                slot.waker = None;
                return Poll::Ready(Ok(()));
            }
            match status {
                SubscriberStatus::Ended(EndReason::ListenFailed) => {
                    Poll::Ready(Err(SubscribeError::ListenRefused))
                }
                SubscriberStatus::Ended(_) | SubscriberStatus::Unknown => {
                    Poll::Ready(Err(SubscribeError::Closed))
                }
                _ if stopped => Poll::Ready(Err(SubscribeError::Closed)),
                _ => {
                    store_waker(&mut slot.waker, cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The channel this subscription listens on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Why the stream ended, once [`recv`](Self::recv) has returned `None`.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end.filter(|_| self.batch.is_empty())
    }

    /// Waits for the next item; `None` when the stream has ended.
    ///
    /// Cancel safe: an item is removed only when this returns it.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item, registering the task to be woken when one
    /// arrives.
    #[inline]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let polled = self.poll_recv_held(cx);
        if let Poll::Ready(Some(event)) = &polled {
            self.consumed(event);
            if self.batch.is_empty() {
                self.batch_used_up();
            }
        }
        polled
    }

    /// [`poll_recv`](Self::poll_recv) without reporting the item consumed:
    /// a callback reports it with [`consumed`](Self::consumed) once its
    /// handler has finished with it, so the item it works on counts
    /// against the capacity.
    #[inline]
    pub(crate) fn poll_recv_held(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        // Inlined into the caller's loop: most calls find an item in the
        // batch already taken, and then cost a copy, not a call chain.
        match self.batch.pop_front() {
            Some(event) => Poll::Ready(Some(event)),
            None => self.poll_take(cx),
        }
    }

    /// The batch is used up: come back for more now rather than at the
    /// next call, so the bus learns at once that the lent items were
    /// consumed (a full queue stops holding the connection). Same one lock
    /// per batch.
    ///
    /// A batch of one needs none of this (its item was returned at once,
    /// counted nowhere): at a low rate that keeps the lock to one per
    /// notification.
    #[cold]
    fn batch_used_up(&mut self) {
        if self.kept_lent && self.end.is_none() && self.refill() {
            self.shared.wake_driver();
        }
    }

    /// [`poll_recv`](Self::poll_recv) once the batch taken before is empty:
    /// takes the next one from the bus.
    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if self.end.is_some() {
            return Poll::Ready(None);
        }
        if self.take_batch(cx, true) {
            // A full queue was drained: reading may resume.
            self.shared.wake_driver();
        }
        match self.batch.pop_front() {
            Some(event) => Poll::Ready(Some(event)),
            None if self.end.is_some() => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// Counts what is lent from now on against the capacity, even a batch
    /// of one: a callback holds its item while its handler runs.
    pub(crate) fn track_consumption(&mut self) {
        if self.consumption.is_none() {
            let (items, bytes) = notifications_in(&self.batch);
            self.consumption = self
                .shared
                .lock()
                .bus
                .take_consumption(self.id, items, bytes);
        }
    }

    /// Reports a notification of `size` bytes (or a gap: `None`) consumed.
    #[inline]
    pub(crate) fn consumed_size(&mut self, size: Option<usize>) {
        if let (Some(size), Some(consumption)) = (size, self.consumption.as_mut()) {
            consumption.record(1, size as u64);
        }
    }

    /// Reports `event`, taken from the lent batch, consumed by the
    /// application: it no longer counts against the capacity.
    #[inline]
    pub(crate) fn consumed(&mut self, event: &Event) {
        self.consumed_size(event.notification().map(|n| n.size()));
    }

    /// Waits for the next items and appends them all to `out`; returns how
    /// many (gaps count as items), or 0 when the stream has ended.
    ///
    /// The zero-copy way to read: `out` receives the shared segments the
    /// notifications were fanned out in, so a burst costs one lock and a
    /// few reference counts, however many notifications it holds. Read it
    /// with [`EventBatch::iter`], then [`clear`](EventBatch::clear) it for
    /// the next call.
    ///
    /// ```no_run
    /// # async fn run(mut subscription: pgnotify_driver::Subscription) {
    /// use pgnotify_driver::{EventBatch, EventRef};
    /// let mut batch = EventBatch::new();
    /// while subscription.recv_batch(&mut batch).await > 0 {
    ///     for item in &batch {
    ///         match item {
    ///             EventRef::Notification(n) => println!("{}", n.payload),
    ///             EventRef::Gap(gap) => println!("resynchronise: {gap}"),
    ///             _ => {}
    ///         }
    ///     }
    ///     batch.clear();
    /// }
    /// # }
    /// ```
    ///
    /// Cancel safe: items are moved into `out` only when this returns.
    pub async fn recv_batch(&mut self, out: &mut EventBatch) -> usize {
        std::future::poll_fn(|cx| self.poll_recv_batch(cx, out)).await
    }

    /// Polls for the next items, appending them all to `out` (see
    /// [`recv_batch`](Self::recv_batch)); `Ready(0)` when the stream has ended.
    pub fn poll_recv_batch(&mut self, cx: &mut Context<'_>, out: &mut EventBatch) -> Poll<usize> {
        if self.batch.is_empty() {
            // Taken straight for the caller: nothing is lent.
            if self.end.is_none() && self.take_batch(cx, false) {
                // A full queue was drained: reading may resume.
                self.shared.wake_driver();
            }
        } else if let Some(consumption) = self.consumption.as_mut() {
            // Lent to an earlier `recv`; handed over now.
            let (items, bytes) = notifications_in(&self.batch);
            consumption.record(items, bytes);
        }
        let taken = self.batch.len();
        if taken > 0 {
            out.append(&mut self.batch);
            return Poll::Ready(taken);
        }
        if self.end.is_some() {
            Poll::Ready(0)
        } else {
            Poll::Pending
        }
    }

    /// Moves everything queued for this subscriber into `batch` under one
    /// lock (`lend`: still charged to the capacity until yielded);
    /// registers the task's waker when there is nothing. Taking everything
    /// keeps the bus's level-triggered readiness to one `SubscriberReadable`
    /// per non-empty queue: a drain that left items would be announced again. Returns whether
    /// the driver must be woken because reading may resume.
    fn take_batch(&mut self, cx: &Context<'_>, lend: bool) -> bool {
        self.take(Some(cx), lend)
    }

    /// Lends the next batch right after the last one was used up, without
    /// registering a waker (the caller returns an item, not `Pending`: a
    /// waker kept now would be stale). Returns whether the driver must be
    /// woken.
    fn refill(&mut self) -> bool {
        self.take(None, true)
    }

    fn take(&mut self, cx: Option<&Context<'_>>, lend: bool) -> bool {
        let mut state = self.shared.lock();
        let paused = !state.bus.wants_input();
        let now = self.shared.runtime.now();
        let status = if lend {
            let status = state
                .bus
                .lend_batch(now, self.id, &mut self.batch, usize::MAX);
            let returned_now = usize::from(cx.is_some());
            self.kept_lent = self.batch.len() > returned_now;
            if self.consumption.is_none() {
                // `recv` hands one item over at once; only what stays in
                // the batch needs counting, and only then is the handle made.
                let (items, bytes) = notifications_in(&self.batch);
                if items > returned_now as u64 {
                    self.consumption = state.bus.take_consumption(self.id, items, bytes);
                }
            }
            status
        } else {
            state
                .bus
                .drain_batch(now, self.id, &mut self.batch, usize::MAX)
        };
        match status {
            SubscriberStatus::Ended(reason) => self.end = Some(reason),
            SubscriberStatus::Unknown => self.end = Some(EndReason::BusClosed),
            _ => {}
        }
        if !self.batch.is_empty() {
            // Items in hand: a waker stored while waiting is stale now.
            if let Some(slot) = state.subscribers.get_mut(&self.id) {
                slot.waker = None;
            }
        } else if self.end.is_none() {
            if let (Some(slot), Some(cx)) = (state.subscribers.get_mut(&self.id), cx) {
                store_waker(&mut slot.waker, cx);
            }
            // Caught up and going idle: give the batch's buffer back, so an
            // idle subscription costs the same after traffic as before.
            self.batch = EventBatch::new();
        }
        paused && state.bus.wants_input()
    }
}

/// The notifications in `batch` and their bytes of text.
fn notifications_in(batch: &EventBatch) -> (u64, u64) {
    batch
        .iter()
        .filter_map(EventRef::notification)
        .fold((0, 0), |(items, bytes), n| {
            (items + 1, bytes + n.size() as u64)
        })
}

impl futures_core::Stream for Subscription {
    type Item = Event;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_recv(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.batch.len(), None)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.command(|state, now| {
            state.bus.unsubscribe(now, self.id);
            state.subscribers.remove(&self.id);
            state.close_if_unused(now);
        });
    }
}
