//! A snapshot of the bus's counters and gauges.

use std::time::Duration;

/// Payloads of this many bytes or more count as near the server's limit
/// (95 % of the 8000 bytes PostgreSQL refuses), in
/// [`Stats::near_limit_received`] and [`Stats::near_limit_published`].
///
/// A rising count warns that publishers are close to failing with
/// [`PayloadError::TooLong`](crate::PayloadError::TooLong).
///
/// ```
/// assert_eq!(pgnotify_core::bus::NEAR_LIMIT_PAYLOAD_LEN, 7600);
/// ```
pub const NEAR_LIMIT_PAYLOAD_LEN: usize = 7600;

/// Counters and gauges of a bus, taken with [`Bus::stats`](crate::bus::Bus::stats).
///
/// Counters only grow for the life of the bus; gauges describe the moment the
/// snapshot was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Whether a connection is up and listening (gauge).
    pub connected: bool,
    /// The current connection generation (0 before the first connection).
    pub generation: u64,
    /// Channels with at least one subscriber (gauge).
    pub channels: usize,
    /// Live subscribers (gauge).
    pub subscribers: usize,
    /// Notifications received from the server, pings excluded.
    pub notifications_received: u64,
    /// Notifications queued to subscribers, one per subscriber that queued
    /// it (filtered ones excluded). Queued is not taken: see
    /// [`notifications_taken`](Self::notifications_taken).
    ///
    /// Called `notifications_delivered` before issue 22; the name said
    /// more than it counted.
    pub notifications_queued: u64,
    /// Notifications subscribers' drivers took out of their queues
    /// ([`Bus::drain_events`](crate::bus::Bus::drain_events),
    /// [`drain_batch`](crate::bus::Bus::drain_batch),
    /// [`lend_batch`](crate::bus::Bus::lend_batch)); gaps are not counted.
    ///
    /// What was queued and not taken is still queued
    /// ([`queued_items`](Self::queued_items), gaps aside), was discarded from
    /// the queue by `DropOldest` or `KeepLatest`
    /// ([`dropped_oldest`](Self::dropped_oldest),
    /// [`replaced_latest`](Self::replaced_latest)), or went with a queue
    /// that was unsubscribed. Items taken by `lend_batch` count here when
    /// lent; [`lent_items`](Self::lent_items) is what of them the application
    /// has not consumed yet.
    pub notifications_taken: u64,
    /// Bytes of channel and payload text received, pings excluded.
    pub bytes_received: u64,
    /// Notifications discarded by the `DropOldest` policy.
    pub dropped_oldest: u64,
    /// Notifications discarded by the `DropNewest` policy, and by released
    /// `Absorb` subscribers.
    pub dropped_newest: u64,
    /// Notifications replaced under the `KeepLatest` policy.
    pub replaced_latest: u64,
    /// Subscriptions ended by the `Close` policy.
    pub closed_by_overflow: u64,
    /// Items queued across all subscribers (gauge).
    pub queued_items: usize,
    /// Bytes of notification text queued across all subscribers (gauge).
    pub queued_bytes: usize,
    /// The longest queue, in items (gauge).
    pub largest_queue: usize,
    /// Protocol errors seen (each one also replaced the connection).
    pub protocol_errors: u64,
    /// Connections lost after being established.
    pub reconnects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// The last connection error, as text.
    pub last_error: Option<String>,
    /// The last ping's round-trip time.
    pub last_ping_rtt: Option<Duration>,
    /// Pings sent.
    pub pings_sent: u64,
    /// Mismatches between `pg_listening_channels()` and the registry, repaired.
    pub listen_mismatches: u64,
    /// Connections on which turning the server's session timeouts off
    /// failed (the connection keeps listening; a server with
    /// `idle_session_timeout` may then end it between pings).
    pub session_settings_failed: u64,
    /// Whether reading is paused because a `Backpressure` or absorbing
    /// `Absorb` subscriber is full (gauge).
    pub reading_paused: bool,
    /// Total time reading was paused, the current pause included.
    pub paused_for: Duration,
    /// Notifications lent to subscribers' async layers and not yet
    /// consumed by the application (gauge; they count against capacity).
    pub lent_items: usize,
    /// `Absorb` subscribers that consumed nothing within their stall limit
    /// and stopped holding the connection.
    pub stalled_releases: u64,
    /// `Absorb` subscribers released by the server guard.
    pub guard_releases: u64,
    /// Server-queue checks that reported back (successful or not).
    pub guard_checks: u64,
    /// The last `pg_notification_queue_usage()` the guard read, in parts
    /// per million of the server's queue.
    pub server_queue_usage_ppm: Option<u32>,
    /// Why the last failed server-queue check failed.
    pub guard_failures_last: Option<String>,
    /// Publishes that succeeded.
    pub published: u64,
    /// Publishes that failed (any reason).
    pub publish_failures: u64,
    /// Transactions sent to publish (one per `notify` without group
    /// commit; with it, fewer than publishes under load).
    pub publish_transactions: u64,
    /// Group-commit transactions that failed and were sent again call by
    /// call (a group fails whole; only the failing call may fail).
    pub group_retries: u64,
    /// Publish transactions sent on a second session because reading was
    /// paused for a full subscriber (their answer on the listening
    /// connection would have waited behind the unread notifications).
    pub side_publish_transactions: u64,
    /// Notifications a subscriber's filter dropped before queuing them (one
    /// per subscriber); neither delivered nor overflow.
    pub notifications_filtered: u64,
    /// Filter predicates that panicked (the notification was kept).
    pub filter_panics: u64,
    /// Notifications received whose payload is [`NEAR_LIMIT_PAYLOAD_LEN`]
    /// bytes or longer, pings excluded.
    pub near_limit_received: u64,
    /// Publishes accepted whose payload is [`NEAR_LIMIT_PAYLOAD_LEN`] bytes
    /// or longer (counted when queued, whatever their outcome).
    pub near_limit_published: u64,
    /// Callback handlers that panicked, as reported by the driver with
    /// [`Bus::record_handler_panic`](crate::bus::Bus::record_handler_panic).
    pub handler_panics: u64,
    /// Reconnects asked for by a recovery tracker
    /// ([`Bus::recovery_bounce`](crate::bus::Bus::recovery_bounce)): polls
    /// kept finding work while no notification arrived.
    pub tracker_bounces: u64,
}
