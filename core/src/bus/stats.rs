//! A snapshot of the bus's counters and gauges.

use std::time::Duration;

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
    /// Notifications queued to subscribers (one per subscriber).
    pub notifications_delivered: u64,
    /// Bytes of channel and payload text received, pings excluded.
    pub bytes_received: u64,
    /// Notifications discarded by the `DropOldest` policy.
    pub dropped_oldest: u64,
    /// Notifications discarded by the `DropNewest` policy.
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
    /// Whether reading is paused because a `Backpressure` subscriber is full (gauge).
    pub reading_paused: bool,
    /// Total time reading was paused by `Backpressure`.
    pub paused_for: Duration,
    /// Publishes that succeeded.
    pub published: u64,
    /// Publishes that failed (any reason).
    pub publish_failures: u64,
}
