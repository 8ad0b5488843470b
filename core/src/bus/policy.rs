//! Per-subscriber queue limits and what happens when they are reached.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::Notification;
use crate::bus::filter::Filter;

/// What a subscriber's queue does when a notification arrives and it is full.
///
/// Every policy except `Backpressure` keeps the listener reading, so one slow
/// consumer never holds up the others; the discarded notifications are
/// counted and reported in-band as [`Gap::Overflow`](crate::Gap::Overflow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Discard the oldest queued notification to make room (the default).
    #[default]
    DropOldest,
    /// Discard the arriving notification.
    DropNewest,
    /// Keep only the newest notification: a wake-up signal. Replaced ones are
    /// counted as missed.
    KeepLatest,
    /// End the subscription with [`EndReason::Overflowed`](crate::EndReason::Overflowed).
    Close,
    /// Stop reading the socket while this subscriber is full; the server
    /// buffers in its notification queue, which is shared by the whole
    /// cluster (8 GB). Choose it consciously: a stuck consumer holds the
    /// server's queue back for everyone.
    Backpressure,
}

impl OverflowPolicy {
    /// Every policy, for tests and command-line help.
    pub const ALL: [Self; 5] = [
        Self::DropOldest,
        Self::DropNewest,
        Self::KeepLatest,
        Self::Close,
        Self::Backpressure,
    ];

    /// The policy's name as accepted by [`FromStr`] (`drop-oldest`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::DropOldest => "drop-oldest",
            Self::DropNewest => "drop-newest",
            Self::KeepLatest => "keep-latest",
            Self::Close => "close",
            Self::Backpressure => "backpressure",
        }
    }
}

impl fmt::Display for OverflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`OverflowPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown overflow policy {:?}; expected one of drop-oldest, drop-newest, \
             keep-latest, close, backpressure",
            self.0
        )
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for OverflowPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|p| p.name() == normalized || p.name().replace('-', "") == normalized)
            .ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

/// The default number of items a subscriber's queue holds.
pub const DEFAULT_CAPACITY: usize = 1024;

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
    filter: Filter,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SubscribeOptions {
    /// [`DEFAULT_CAPACITY`] items, no byte limit, [`OverflowPolicy::DropOldest`].
    pub fn new() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            max_bytes: None,
            policy: OverflowPolicy::DropOldest,
            filter: Filter::default(),
        }
    }

    /// Sets the capacity in items (at least 1; 0 is raised to 1).
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
    fn policies_parse_from_their_names_and_common_spellings() {
        for p in OverflowPolicy::ALL {
            assert_eq!(p.name().parse::<OverflowPolicy>(), Ok(p));
        }
        assert_eq!(
            "KeepLatest".parse::<OverflowPolicy>(),
            Ok(OverflowPolicy::KeepLatest)
        );
        assert_eq!(
            "drop_oldest".parse::<OverflowPolicy>(),
            Ok(OverflowPolicy::DropOldest)
        );
        assert!("sometimes".parse::<OverflowPolicy>().is_err());
    }

    #[test]
    fn zero_capacity_is_raised_to_one() {
        assert_eq!(SubscribeOptions::new().capacity(0).capacity_items(), 1);
    }
}
