//! Per-subscriber queue limits and what happens when they are reached.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::Notification;
use crate::bus::filter::Filter;

/// What a subscriber's queue does when a notification arrives and it is full.
///
/// The default, [`Absorb`](Self::Absorb), loses nothing for a consumer that
/// keeps up on average: a burst waits in the server's notification queue,
/// as it does for a plain `LISTEN` client that reads at its own pace. The
/// other policies keep the listener reading whatever happens, so one slow
/// consumer never holds up the others; what they discard is counted and
/// reported in-band as [`Gap::Overflow`](crate::Gap::Overflow).
///
/// The capacity a policy works against counts everything delivered to the
/// subscriber and not yet consumed by the application: the listener's queue
/// plus what the async layer holds on the subscriber's behalf (see
/// [`SubscribeOptions::capacity`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Absorb bursts without loss (the default): while this subscriber is
    /// full the listener stops reading its connection, so the backlog waits
    /// in the server's notification queue and nothing is dropped. Two limits
    /// keep that from doing harm:
    ///
    /// - the **stall limit** ([`SubscribeOptions::stall_limit`], default
    ///   [`DEFAULT_STALL_LIMIT`]): a subscriber that stays full and consumes
    ///   nothing for that long stops holding the connection; it alone drops
    ///   what arrives while it is full (the newest), and reads an exact
    ///   [`Gap::Overflow`](crate::Gap::Overflow) when it catches up, after
    ///   which it absorbs again;
    /// - the **server guard**: while reading is paused the listener watches
    ///   the server's `pg_notification_queue_usage()`; above the configured
    ///   fraction (`server_queue_limit`, default 0.5) every full `Absorb`
    ///   subscriber stops holding the connection in the same way, so a
    ///   pgnotify process can never fill the cluster's notification queue
    ///   (which would make every `NOTIFY` in the cluster fail).
    ///
    /// Both are counted in [`Stats`](crate::bus::Stats) (`stalled_releases`,
    /// `guard_releases`, `dropped_newest`).
    #[default]
    Absorb,
    /// Discard the oldest queued notification to make room.
    DropOldest,
    /// Discard the arriving notification.
    DropNewest,
    /// Keep only the newest notification: a wake-up signal. Replaced ones are
    /// counted as missed.
    KeepLatest,
    /// End the subscription with [`EndReason::Overflowed`](crate::EndReason::Overflowed).
    Close,
    /// Stop reading the socket while this subscriber is full, for as long
    /// as it takes; the server buffers in its notification queue, which is
    /// shared by the whole cluster (8 GB). Nothing is ever discarded, and
    /// neither the stall limit nor the server guard applies: choose it
    /// consciously, a stuck consumer holds the server's queue back for
    /// everyone. [`Absorb`](Self::Absorb) is the bounded form.
    Backpressure,
}

impl OverflowPolicy {
    /// Every policy, for tests and command-line help.
    pub const ALL: [Self; 6] = [
        Self::Absorb,
        Self::DropOldest,
        Self::DropNewest,
        Self::KeepLatest,
        Self::Close,
        Self::Backpressure,
    ];

    /// The policy's name as accepted by [`FromStr`] (`drop-oldest`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Absorb => "absorb",
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
            "unknown overflow policy {:?}; expected one of absorb, drop-oldest, \
             drop-newest, keep-latest, close, backpressure",
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

/// How long a full [`OverflowPolicy::Absorb`] subscriber may consume
/// nothing before it stops holding the connection, unless
/// [`SubscribeOptions::stall_limit`] says otherwise.
///
/// Long enough for a consumer that does real work per notification to get
/// through a full queue's worth of a burst; short enough that one stuck
/// consumer does not hold every other subscriber of the listener for long.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(5);

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
