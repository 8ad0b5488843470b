//! The names of the metrics a listener publishes with the `metrics` feature.
//!
//! With the feature on, every listener's task publishes its [`Stats`] through
//! the [`metrics`](https://docs.rs/metrics) facade to whatever recorder the
//! application installed (Prometheus, StatsD, ...). It publishes after each
//! pass of its loop that read input or produced events, as differences from
//! the previous pass, so the cost is a few atomic additions per chunk read,
//! never per notification. Counters and gauges are adjusted by differences,
//! so several listeners in one process add up (two connected listeners make
//! [`CONNECTED`] 2), and a listener's gauges go back to zero when it stops.
//!
//! Handles are registered when the listener is created: install the recorder
//! before connecting.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | [`SUBSCRIBERS`] | gauge | live subscriptions |
//! | [`CHANNELS`] | gauge | channels with at least one subscriber |
//! | [`CONNECTED`] | gauge | listeners whose connection is up and listening (0 or 1 each) |
//! | [`QUEUED`] | gauge | items waiting in subscriber queues |
//! | [`NOTIFICATIONS`] | counter | notifications received from the server (pings excluded) |
//! | [`NOTIFICATIONS_QUEUED`] | counter | notifications queued to subscribers (one per subscriber) |
//! | [`NOTIFICATIONS_TAKEN`] | counter | notifications subscriptions took out of their queues (queued is not taken: the difference was dropped from a queue or is still in one) |
//! | [`BYTES`] | counter | bytes of channel and payload text received |
//! | [`DROPPED`] | counter, label `policy` | notifications discarded by an overflow policy: `drop_oldest`, `drop_newest`, `keep_latest` (replaced), `close` (subscriptions ended) |
//! | [`RECONNECTS`] | counter | connections lost after being established |
//! | [`CONNECT_FAILURES`] | counter | failed connection attempts |
//! | [`PING_RTT`] | histogram, seconds | round-trip time of each answered health ping |
//! | [`FILTERED`] | counter | notifications a subscriber's filter dropped before queuing (one per subscriber) |
//! | [`NEAR_LIMIT`] | counter, label `direction` | payloads of 7,600 bytes or more (95 % of the server's limit): `received`, `published` |
//! | [`PANICS`] | counter, label `source` | panics caught: `filter` (predicate; the notification was kept), `handler` (callback) |
//! | [`TRACKER_BOUNCES`] | counter | reconnects asked for by a recovery tracker |
//!
//! [`Stats`]: pgnotify_core::bus::Stats

/// Gauge: live subscriptions.
pub const SUBSCRIBERS: &str = "pgnotify_subscribers";
/// Gauge: channels with at least one subscriber.
pub const CHANNELS: &str = "pgnotify_channels";
/// Gauge: 1 per listener whose connection is up and listening.
pub const CONNECTED: &str = "pgnotify_connected";
/// Gauge: items waiting in subscriber queues.
pub const QUEUED: &str = "pgnotify_queued_items";
/// Counter: notifications received from the server, pings excluded.
pub const NOTIFICATIONS: &str = "pgnotify_notifications_received_total";
/// Counter: notifications queued to subscribers (one per subscriber);
/// [`Stats::notifications_queued`](pgnotify_core::bus::Stats::notifications_queued).
/// Named `DELIVERED` (`pgnotify_notifications_delivered_total`) before
/// issue 22.
pub const NOTIFICATIONS_QUEUED: &str = "pgnotify_notifications_queued_total";
/// Counter: notifications subscriptions took out of their queues;
/// [`Stats::notifications_taken`](pgnotify_core::bus::Stats::notifications_taken).
pub const NOTIFICATIONS_TAKEN: &str = "pgnotify_notifications_taken_total";
/// Counter: bytes of channel and payload text received, pings excluded.
pub const BYTES: &str = "pgnotify_received_bytes_total";
/// Counter, labelled `policy`: notifications discarded by overflow policies.
pub const DROPPED: &str = "pgnotify_dropped_total";
/// Counter: connections lost after being established.
pub const RECONNECTS: &str = "pgnotify_reconnects_total";
/// Counter: failed connection attempts.
pub const CONNECT_FAILURES: &str = "pgnotify_connect_failures_total";
/// Histogram: round-trip time of each answered health ping, in seconds.
pub const PING_RTT: &str = "pgnotify_ping_rtt_seconds";
/// Counter: notifications dropped by subscriber filters before queuing.
pub const FILTERED: &str = "pgnotify_filtered_total";
/// Counter, labelled `direction` (`received`, `published`): payloads of
/// [`NEAR_LIMIT_PAYLOAD_LEN`](pgnotify_core::bus::NEAR_LIMIT_PAYLOAD_LEN) bytes or more.
pub const NEAR_LIMIT: &str = "pgnotify_near_limit_payloads_total";
/// Counter, labelled `source` (`filter`, `handler`): panics caught.
pub const PANICS: &str = "pgnotify_panics_total";
/// Counter: reconnects asked for by a recovery tracker.
pub const TRACKER_BOUNCES: &str = "pgnotify_tracker_bounces_total";

#[cfg(feature = "metrics")]
pub(crate) use publish::Published;

#[cfg(feature = "metrics")]
mod publish {
    use ::metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
    use pgnotify_core::bus::Stats;

    use super::*;

    /// One listener's metric handles, and the values its gauges contributed.
    pub(crate) struct Published {
        subscribers: Gauge,
        channels: Gauge,
        connected: Gauge,
        queued: Gauge,
        notifications: Counter,
        queued_total: Counter,
        taken: Counter,
        bytes: Counter,
        dropped_oldest: Counter,
        dropped_newest: Counter,
        replaced_latest: Counter,
        closed_by_overflow: Counter,
        reconnects: Counter,
        connect_failures: Counter,
        ping_rtt: Histogram,
        filtered: Counter,
        near_limit_received: Counter,
        near_limit_published: Counter,
        filter_panics: Counter,
        handler_panics: Counter,
        tracker_bounces: Counter,
    }

    impl std::fmt::Debug for Published {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Published").finish_non_exhaustive()
        }
    }

    impl Published {
        /// Registers the handles with the recorder installed now.
        pub(crate) fn register() -> Self {
            Self {
                subscribers: gauge!(SUBSCRIBERS),
                channels: gauge!(CHANNELS),
                connected: gauge!(CONNECTED),
                queued: gauge!(QUEUED),
                notifications: counter!(NOTIFICATIONS),
                queued_total: counter!(NOTIFICATIONS_QUEUED),
                taken: counter!(NOTIFICATIONS_TAKEN),
                bytes: counter!(BYTES),
                dropped_oldest: counter!(DROPPED, "policy" => "drop_oldest"),
                dropped_newest: counter!(DROPPED, "policy" => "drop_newest"),
                replaced_latest: counter!(DROPPED, "policy" => "keep_latest"),
                closed_by_overflow: counter!(DROPPED, "policy" => "close"),
                reconnects: counter!(RECONNECTS),
                connect_failures: counter!(CONNECT_FAILURES),
                ping_rtt: histogram!(PING_RTT),
                filtered: counter!(FILTERED),
                near_limit_received: counter!(NEAR_LIMIT, "direction" => "received"),
                near_limit_published: counter!(NEAR_LIMIT, "direction" => "published"),
                filter_panics: counter!(PANICS, "source" => "filter"),
                handler_panics: counter!(PANICS, "source" => "handler"),
                tracker_bounces: counter!(TRACKER_BOUNCES),
            }
        }

        /// Publishes what changed from `old` to `new`.
        pub(crate) fn update(&self, old: &Stats, new: &Stats) {
            let count = |counter: &Counter, old: u64, new: u64| {
                if new > old {
                    counter.increment(new - old);
                }
            };
            count(
                &self.notifications,
                old.notifications_received,
                new.notifications_received,
            );
            count(
                &self.queued_total,
                old.notifications_queued,
                new.notifications_queued,
            );
            count(
                &self.taken,
                old.notifications_taken,
                new.notifications_taken,
            );
            count(&self.bytes, old.bytes_received, new.bytes_received);
            count(&self.dropped_oldest, old.dropped_oldest, new.dropped_oldest);
            count(&self.dropped_newest, old.dropped_newest, new.dropped_newest);
            count(
                &self.replaced_latest,
                old.replaced_latest,
                new.replaced_latest,
            );
            count(
                &self.closed_by_overflow,
                old.closed_by_overflow,
                new.closed_by_overflow,
            );
            count(&self.reconnects, old.reconnects, new.reconnects);
            count(
                &self.connect_failures,
                old.connect_failures,
                new.connect_failures,
            );
            count(
                &self.filtered,
                old.notifications_filtered,
                new.notifications_filtered,
            );
            count(
                &self.near_limit_received,
                old.near_limit_received,
                new.near_limit_received,
            );
            count(
                &self.near_limit_published,
                old.near_limit_published,
                new.near_limit_published,
            );
            count(&self.filter_panics, old.filter_panics, new.filter_panics);
            count(&self.handler_panics, old.handler_panics, new.handler_panics);
            count(
                &self.tracker_bounces,
                old.tracker_bounces,
                new.tracker_bounces,
            );

            let level = |gauge: &Gauge, old: usize, new: usize| {
                if new != old {
                    gauge.increment(new as f64 - old as f64);
                }
            };
            level(&self.subscribers, old.subscribers, new.subscribers);
            level(&self.channels, old.channels, new.channels);
            level(&self.queued, old.queued_items, new.queued_items);
            level(&self.connected, old.connected.into(), new.connected.into());

            if let Some(rtt) = new
                .last_ping_rtt
                .filter(|_| new.last_ping_rtt != old.last_ping_rtt)
            {
                self.ping_rtt.record(rtt);
            }
        }

        /// Takes back this listener's share of the gauges, as it stops.
        /// `last` becomes what was published, so a second call changes nothing.
        pub(crate) fn withdraw(&self, last: &mut Stats) {
            let zeroed = gauges_zeroed(last);
            self.update(last, &zeroed);
            *last = zeroed;
        }
    }

    /// `stats` with every gauge at zero and the counters unchanged.
    fn gauges_zeroed(stats: &Stats) -> Stats {
        let mut zero = stats.clone();
        zero.subscribers = 0;
        zero.channels = 0;
        zero.queued_items = 0;
        zero.connected = false;
        zero
    }
}
