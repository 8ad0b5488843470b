//! The recovery tracker: for consumers that also poll the database as a
//! fallback, a bounce when polls keep finding work that no notification
//! announced.
//!
//! Pings prove that the listener's connection delivers its own
//! notifications; they cannot prove that another session's NOTIFYs on an
//! application channel still arrive (a LISTEN lost on the server, a proxy in
//! the way). A consumer that polls as a fallback can: if its polls keep
//! finding work while not one notification arrived on the channel, the
//! LISTEN path is broken, and a reconnect (which LISTENs everything again)
//! is the repair.
//!
//! The tracker watches the channel through a subscription of its own whose
//! [filter](pgnotify_core::SubscribeOptions::filter) counts every
//! notification and queues none: it takes nothing from anyone else's
//! subscription, costs no queue memory, and keeps the channel LISTENed for
//! as long as the tracker lives.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pgnotify_core::SubscribeOptions;

use crate::listener::Listener;
use crate::shared::Shared;
use crate::subscription::{SubscribeError, Subscription};

/// How many consecutive polls that found work, without a notification in
/// between, make a [`RecoveryTracker`] bounce the connection by default.
pub const DEFAULT_BOUNCE_AFTER: u32 = 5;

impl<R> Listener<R> {
    /// A [`RecoveryTracker`] for `channel` that bounces after
    /// [`DEFAULT_BOUNCE_AFTER`] polls found work without a notification.
    ///
    /// Returns once the channel is LISTENed. See [`RecoveryTracker::new`].
    ///
    /// ```no_run
    /// # async fn example(listener: pgnotify_driver::Listener) -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn poll_jobs_table() -> bool { false }
    /// let mut tracker = listener.recovery_tracker("jobs").await?;
    /// loop {
    ///     let found = poll_jobs_table().await; // the fallback poll
    ///     if tracker.polled(found) {
    ///         eprintln!("jobs found without notifications: reconnected the listener");
    ///     }
    ///     # break;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recovery_tracker(&self, channel: &str) -> Result<RecoveryTracker, SubscribeError> {
        RecoveryTracker::new(self, channel, DEFAULT_BOUNCE_AFTER).await
    }
}

/// Bounces the listener's connection when fallback polls keep finding work
/// that no notification on the channel announced.
///
/// Call [`polled`](Self::polled) after each fallback poll of the database,
/// with whether it found work. Every notification that arrives on the
/// channel (from any session, the listener's own included) resets the
/// streak, and so does a poll that found nothing; `bounce_after`
/// consecutive polls that found work with no notification in between make
/// the tracker call [`Listener::bounce`] (counted in
/// [`Stats::tracker_bounces`](crate::Stats::tracker_bounces)) and start a
/// new streak. A `bounce_after` of 0 never bounces, but still keeps count.
///
/// The tracker holds a subscription of its own on the channel (it appears
/// in [`Stats::subscribers`](crate::Stats::subscribers), and the
/// notifications it counts in
/// [`Stats::notifications_filtered`](crate::Stats::notifications_filtered)),
/// so like a [`Subscription`] it keeps the listener open while it lives.
pub struct RecoveryTracker {
    shared: Arc<Shared>,
    /// Keeps the channel LISTENed; its filter counts into `seen` and queues nothing.
    watch: Subscription,
    seen: Arc<AtomicU64>,
    seen_at_last_poll: u64,
    bounce_after: u32,
    stats: TrackerStats,
}

impl fmt::Debug for RecoveryTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryTracker")
            .field("channel", &self.watch.channel())
            .field("bounce_after", &self.bounce_after)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A [`RecoveryTracker`]'s counters, from [`RecoveryTracker::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackerStats {
    /// Consecutive polls that found work since the last notification (or
    /// bounce).
    pub streak: u32,
    /// Bounces this tracker caused.
    pub bounces: u64,
    /// Polls reported with [`RecoveryTracker::polled`].
    pub polls: u64,
    /// Notifications seen on the channel since the tracker was made.
    pub notifications: u64,
}

impl RecoveryTracker {
    /// A tracker for `channel` on `listener` that bounces after
    /// `bounce_after` consecutive polls found work without a notification
    /// (0: never bounce).
    ///
    /// Returns once the channel is LISTENed, so notifications from then on
    /// are seen.
    ///
    /// ```no_run
    /// # async fn example(listener: pgnotify_driver::Listener) -> Result<(), Box<dyn std::error::Error>> {
    /// use pgnotify_driver::RecoveryTracker;
    /// let mut tracker = RecoveryTracker::new(&listener, "jobs", 3).await?;
    /// tracker.polled(true);
    /// assert_eq!(tracker.stats().streak, 1);
    /// # Ok(()) }
    /// ```
    pub async fn new<R>(
        listener: &Listener<R>,
        channel: &str,
        bounce_after: u32,
    ) -> Result<Self, SubscribeError> {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let options = SubscribeOptions::new().capacity(1).filter(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            false
        });
        let shared = listener.shared();
        let watch = Subscription::register(shared, channel, Some(options))?;
        watch.ready().await?;
        Ok(Self {
            shared: shared.clone(),
            watch,
            seen,
            seen_at_last_poll: 0,
            bounce_after,
            stats: TrackerStats::default(),
        })
    }

    /// Records one fallback poll and whether it `found` work; returns
    /// whether this poll made the tracker bounce the connection.
    ///
    /// ```no_run
    /// # fn example(tracker: &mut pgnotify_driver::RecoveryTracker) {
    /// if tracker.polled(true) {
    ///     // The listener is reconnecting; subscriptions will see Gap::Reconnected.
    /// }
    /// # }
    /// ```
    pub fn polled(&mut self, found: bool) -> bool {
        self.stats.polls += 1;
        let seen = self.seen.load(Ordering::Relaxed);
        if seen != self.seen_at_last_poll {
            self.seen_at_last_poll = seen;
            self.stats.streak = 0;
        }
        self.stats.notifications = seen;
        if !found {
            self.stats.streak = 0;
            return false;
        }
        self.stats.streak = self.stats.streak.saturating_add(1);
        if self.bounce_after == 0 || self.stats.streak < self.bounce_after {
            return false;
        }
        self.stats.streak = 0;
        self.stats.bounces += 1;
        self.shared
            .command(|state, now| state.bus.recovery_bounce(now));
        true
    }

    /// The streak, bounce and poll counts.
    ///
    /// ```no_run
    /// # fn example(tracker: &pgnotify_driver::RecoveryTracker) {
    /// let stats = tracker.stats();
    /// println!("{} polls found work unannounced; {} bounces", stats.streak, stats.bounces);
    /// # }
    /// ```
    pub fn stats(&self) -> TrackerStats {
        TrackerStats {
            notifications: self.seen.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    /// The channel this tracker watches.
    pub fn channel(&self) -> &str {
        self.watch.channel()
    }
}
