//! SubscribeOptions: how one subscription queues (capacity, byte limit,
//! overflow policy, stall limit) and what it filters out before queuing.

use std::sync::Arc;
use std::time::Duration;

use crate::Notification;
use crate::bus::filter::Filter;
use crate::bus::policy::{DEFAULT_CAPACITY, DEFAULT_STALL_LIMIT, OverflowPolicy};

/// How one subscription queues: capacity in items (and optionally bytes) and
/// the overflow policy.
///
/// ```
/// use pgnotify_core::{OverflowPolicy, SubscribeOptions};
/// let wake_up = SubscribeOptions::new().capacity(1).policy(OverflowPolicy::KeepLatest);
/// assert_eq!(wake_up.capacity_items(), 1);
/// ```
///
/// A [`filter`](Self::filter) or [`skip_own`](Self::skip_own) drops
/// notifications before they are queued. Options compare equal when their
/// limits and policy are equal and they share the same filter predicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    capacity: usize,
    max_bytes: Option<usize>,
    policy: OverflowPolicy,
    stall_limit: Duration,
    filter: Filter,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SubscribeOptions {
    /// [`DEFAULT_CAPACITY`] items, no byte limit, [`OverflowPolicy::Absorb`]
    /// with a [`DEFAULT_STALL_LIMIT`] stall limit.
    pub fn new() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            max_bytes: None,
            policy: OverflowPolicy::Absorb,
            stall_limit: DEFAULT_STALL_LIMIT,
            filter: Filter::default(),
        }
    }

    /// Sets the capacity in items (at least 1; 0 is raised to 1).
    ///
    /// The capacity bounds everything delivered to the subscriber and not
    /// yet consumed by the application: the listener's queue plus what the
    /// async layer holds for it (the items a `Subscription` took in its last
    /// batch and has not yet returned from `recv`, the item a callback
    /// handler is still running on). What `recv_batch` hands over is the
    /// caller's and no longer counted. The overflow policy acts exactly at
    /// that bound, with two documented exceptions: `KeepLatest` always keeps
    /// the newest notification queued (it is a wake-up), and a full
    /// `Backpressure` or absorbing queue may hold the notifications of the
    /// one read that filled it on top (nothing is lost; reading stops).
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = items.max(1);
        self
    }

    /// Also limits the queue to `bytes` of channel and payload text. A single
    /// notification larger than the limit is still accepted into an empty queue.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Sets the overflow policy.
    pub fn policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets how long a full [`OverflowPolicy::Absorb`] subscriber may
    /// consume nothing before it stops holding the connection and drops
    /// what arrives for it (counted exactly) until it catches up. Ignored
    /// by the other policies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pgnotify_core::SubscribeOptions;
    /// let patient = SubscribeOptions::new().stall_limit(Duration::from_secs(60));
    /// assert_eq!(patient.stall_limit_duration(), Duration::from_secs(60));
    /// ```
    pub fn stall_limit(mut self, limit: Duration) -> Self {
        self.stall_limit = limit;
        self
    }

    /// The stall limit of an [`OverflowPolicy::Absorb`] subscriber.
    pub fn stall_limit_duration(&self) -> Duration {
        self.stall_limit
    }

    /// The capacity in items.
    pub fn capacity_items(&self) -> usize {
        self.capacity
    }

    /// The byte limit, if any.
    pub fn capacity_bytes(&self) -> Option<usize> {
        self.max_bytes
    }

    /// The overflow policy.
    pub fn overflow_policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// Queues only the notifications for which `predicate` returns `true`.
    ///
    /// The predicate runs in the listener's fan-out, under its lock, for
    /// every notification on the channel: keep it short and never block in
    /// it. A notification it drops is never queued, so it takes no capacity
    /// and is not counted in a [`Gap::Overflow`](crate::Gap::Overflow);
    /// overflow counts stay exact for what it keeps. It sees the channel,
    /// the payload and the sender's process id. A predicate that panics
    /// keeps the notification, and the panic is counted in
    /// [`Stats::filter_panics`](crate::bus::Stats::filter_panics). A second
    /// call replaces the first predicate.
    ///
    /// ```
    /// use pgnotify_core::SubscribeOptions;
    /// let urgent = SubscribeOptions::new().filter(|n| n.payload.starts_with("urgent:"));
    /// assert!(urgent.has_filter());
    /// ```
    pub fn filter<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Notification) -> bool + Send + Sync + 'static,
    {
        self.filter.set_predicate(Arc::new(predicate));
        self
    }

    /// Skips the notifications this listener sent itself: those carrying
    /// the backend process id of its current connection. Combines with
    /// [`filter`](Self::filter) (both must keep a notification).
    ///
    /// ```
    /// use pgnotify_core::SubscribeOptions;
    /// let others_only = SubscribeOptions::new().skip_own();
    /// assert!(others_only.skips_own());
    /// ```
    pub fn skip_own(mut self) -> Self {
        self.filter.set_skip_own();
        self
    }

    /// Whether a [`filter`](Self::filter) predicate is set.
    pub fn has_filter(&self) -> bool {
        self.filter.has_predicate()
    }

    /// Whether the listener's own notifications are skipped ([`skip_own`](Self::skip_own)).
    pub fn skips_own(&self) -> bool {
        self.filter.skips_own()
    }

    /// The filter, or `None` when it lets everything through.
    pub(crate) fn active_filter(&self) -> Option<Filter> {
        (!self.filter.is_empty()).then(|| self.filter.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_capacity_is_raised_to_one() {
        assert_eq!(SubscribeOptions::new().capacity(0).capacity_items(), 1);
    }
}
