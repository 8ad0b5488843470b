//! What the driver reports about itself: `tracing` events and, with the
//! `metrics` feature, metrics.
//!
//! The driver calls [`Observer::event`] for every [`BusEvent`] it dispatches
//! and [`Observer::after_pass`] after each pass of its loop; this module is
//! the one place that turns them into log lines and metrics. Nothing here runs
//! per notification: lifecycle events are rare, and statistics are compared
//! at most once per [`OBSERVE_INTERVAL`] (a [`Bus::stats`] walks every
//! subscriber: about 130 µs for 10,000), only when a subscriber of `tracing`
//! wants the levels used or the `metrics` feature is on. Changes within an
//! interval are published at its end ([`Observer::deadline`]), and lifecycle
//! events are published at once.
//!
//! | what | level |
//! |---|---|
//! | first connection up | info |
//! | reconnected (with the generation) | info |
//! | connection lost (with the error) | warn; error for a protocol violation |
//! | connection attempt failed | warn; error when it ends the first round and retrying cannot help |
//! | listener closed | info |
//! | overflow policies discarded notifications (counts per policy, per interval) | debug |
//! | reading paused / resumed by a full `Backpressure` subscriber | debug |
//! | a health ping took more than half the ping timeout | warn |
//! | a subscription ended other than by unsubscribing, a publish failed | debug |

use std::time::{Duration, Instant};

use pgnotify_core::EndReason;
use pgnotify_core::bus::{Bus, BusError, BusEvent, Stats};
use pgnotify_core::protocol::ConnectionError;
use tracing::Level;

/// The shortest time between two looks at the bus's statistics.
pub(crate) const OBSERVE_INTERVAL: Duration = Duration::from_millis(100);

/// The driver's reporter: remembers the last statistics to report differences.
#[derive(Debug)]
pub(crate) struct Observer {
    last: Stats,
    /// When `last` was taken; `None` to take the next at once.
    taken_at: Option<Instant>,
    /// A pass went unobserved since `taken_at`.
    unobserved: bool,
    /// Pings slower than this are reported.
    slow_ping: Duration,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Published,
}

impl Observer {
    pub(crate) fn new(bus: &Bus) -> Self {
        Self {
            last: Stats::default(),
            taken_at: None,
            unobserved: false,
            slow_ping: bus.config().ping_timeout() / 2,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Published::register(),
        }
    }

    /// Reports one event the driver is about to dispatch.
    pub(crate) fn event(&mut self, event: &BusEvent, bus: &Bus) {
        if matches!(
            event,
            BusEvent::Connected { .. }
                | BusEvent::Disconnected { .. }
                | BusEvent::ConnectFailed { .. }
                | BusEvent::Failed { .. }
                | BusEvent::Closed
        ) {
            // The connection's state changed: publish it with this pass.
            self.taken_at = None;
        }
        match event {
            BusEvent::Connected { generation: 1 } => {
                tracing::info!(backend_pid = bus.backend_pid(), "connected and listening");
            }
            BusEvent::Connected { generation } => tracing::info!(
                generation,
                backend_pid = bus.backend_pid(),
                "reconnected; every channel is LISTENed again and subscriptions see a reconnect gap"
            ),
            BusEvent::Disconnected { error } if is_protocol_error(error) => tracing::error!(
                %error,
                "protocol error: the server sent something unexpected; reconnecting"
            ),
            BusEvent::Disconnected { error } => {
                tracing::warn!(%error, "connection lost; reconnecting");
            }
            BusEvent::ConnectFailed {
                error,
                first_attempt: true,
            } if !error.is_transient() => tracing::error!(
                %error,
                "could not connect, and retrying will not help"
            ),
            BusEvent::ConnectFailed { error, .. } if is_protocol_error(error) => {
                tracing::error!(%error, "protocol error while connecting; retrying");
            }
            BusEvent::ConnectFailed { error, .. } => {
                tracing::warn!(%error, "connection attempt failed; retrying");
            }
            BusEvent::Failed { error } => {
                tracing::error!(%error, "the listener stopped: reconnecting cannot fix this");
            }
            BusEvent::Closed => tracing::info!("listener closed"),
            BusEvent::SubscriberEnded(id, reason) if *reason != EndReason::Unsubscribed => {
                tracing::debug!(subscriber = id.as_u64(), %reason, "subscription ended");
            }
            BusEvent::PublishDone(_, Err(error)) => tracing::debug!(%error, "notify failed"),
            _ => {}
        }
    }

    /// Reports what changed in the bus's statistics, unless it did less than
    /// [`OBSERVE_INTERVAL`] ago (then [`deadline`](Self::deadline) asks for
    /// another pass).
    pub(crate) fn after_pass(&mut self, bus: &Bus, now: Instant) {
        if !cfg!(feature = "metrics") && !tracing::enabled!(Level::WARN) {
            return;
        }
        if self
            .taken_at
            .is_some_and(|at| now.saturating_duration_since(at) < OBSERVE_INTERVAL)
        {
            self.unobserved = true;
            return;
        }
        self.taken_at = Some(now);
        self.unobserved = false;
        self.observe(bus);
    }

    /// When the driver should run a pass so that unobserved changes are
    /// reported.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let at = self.taken_at.filter(|_| self.unobserved)?;
        at.checked_add(OBSERVE_INTERVAL)
    }

    fn observe(&mut self, bus: &Bus) {
        let stats = bus.stats();
        #[cfg(feature = "metrics")]
        self.metrics.update(&self.last, &stats);
        self.trace_changes(&stats);
        self.last = stats;
    }

    fn trace_changes(&self, new: &Stats) {
        let old = &self.last;
        if let Some(rtt) = new.last_ping_rtt {
            if new.last_ping_rtt != old.last_ping_rtt && rtt > self.slow_ping {
                tracing::warn!(
                    ?rtt,
                    ping_timeout = ?self.slow_ping * 2,
                    "slow health ping: the server or the network is lagging"
                );
            }
        }
        if tracing::enabled!(Level::DEBUG) {
            let drop_oldest = new.dropped_oldest - old.dropped_oldest.min(new.dropped_oldest);
            let drop_newest = new.dropped_newest - old.dropped_newest.min(new.dropped_newest);
            let keep_latest = new.replaced_latest - old.replaced_latest.min(new.replaced_latest);
            let closed =
                new.closed_by_overflow - old.closed_by_overflow.min(new.closed_by_overflow);
            if drop_oldest + drop_newest + keep_latest + closed > 0 {
                tracing::debug!(
                    drop_oldest,
                    drop_newest,
                    keep_latest,
                    closed,
                    largest_queue = new.largest_queue,
                    "overflow policies discarded notifications; subscribers see overflow gaps"
                );
            }
            if new.reading_paused != old.reading_paused {
                if new.reading_paused {
                    tracing::debug!("reading paused: a Backpressure subscriber is full");
                } else {
                    tracing::debug!(paused_for = ?new.paused_for, "reading resumed");
                }
            }
        }
    }
}

impl Observer {
    /// The driver stopped: reports the last changes, then takes back this
    /// listener's share of the gauges. Called once, before the listener
    /// reports itself stopped.
    pub(crate) fn stopped(&mut self, bus: &Bus) {
        if cfg!(feature = "metrics") || tracing::enabled!(Level::WARN) {
            self.observe(bus);
        }
        #[cfg(feature = "metrics")]
        self.metrics.withdraw(&mut self.last);
    }
}

fn is_protocol_error(error: &BusError) -> bool {
    matches!(error, BusError::Connection(ConnectionError::Protocol(_)))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use pgnotify_core::Config;
    use pgnotify_core::bus::{TransportError, TransportErrorKind};
    use pgnotify_core::protocol::ProtocolError;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::*;

    /// A `tracing` subscriber that keeps each event as "LEVEL message".
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<String>>>);

    struct Message<'a>(&'a mut String);

    impl Visit for Message<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                *self.0 = format!("{value:?}");
            }
        }
    }

    impl Subscriber for Captured {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut message = String::new();
            event.record(&mut Message(&mut message));
            let line = format!("{} {message}", event.metadata().level());
            self.0.lock().unwrap().push(line);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Runs `f` with a capturing subscriber; returns what it logged.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        let captured = Captured::default();
        tracing::subscriber::with_default(captured.clone(), f);
        captured.0.lock().unwrap().clone()
    }

    fn bus() -> Bus {
        let config = Config::parse("postgres://localhost?ping_timeout=2s").unwrap();
        Bus::new(config, Instant::now())
    }

    fn transport_error() -> BusError {
        BusError::Transport(TransportError::new(TransportErrorKind::Io, "reset"))
    }

    #[test]
    fn connection_life_is_logged_at_its_levels() {
        let bus = bus();
        let mut observer = Observer::new(&bus);
        let protocol =
            BusError::Connection(ConnectionError::Protocol(ProtocolError::UnknownMessage {
                tag: b'?',
            }));
        let lines = logged(|| {
            for event in [
                BusEvent::Connected { generation: 1 },
                BusEvent::Disconnected {
                    error: transport_error(),
                },
                BusEvent::ConnectFailed {
                    error: transport_error(),
                    first_attempt: false,
                },
                BusEvent::Connected { generation: 2 },
                BusEvent::Disconnected { error: protocol },
                BusEvent::Closed,
            ] {
                observer.event(&event, &bus);
            }
        });
        let levels: Vec<_> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            levels,
            ["INFO", "WARN", "WARN", "INFO", "ERROR", "INFO"],
            "{lines:#?}"
        );
        assert!(lines[3].contains("reconnected"), "{lines:#?}");
        assert!(lines[4].contains("protocol error"), "{lines:#?}");
    }

    #[test]
    fn a_first_round_that_retrying_cannot_fix_is_an_error() {
        let bus = bus();
        let mut observer = Observer::new(&bus);
        let lines = logged(|| {
            observer.event(
                &BusEvent::ConnectFailed {
                    error: BusError::NotificationsNotDelivered,
                    first_attempt: true,
                },
                &bus,
            );
        });
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].starts_with("ERROR"), "{lines:#?}");
    }

    #[test]
    fn a_ping_slower_than_half_the_timeout_is_a_warning_once() {
        let bus = bus();
        let mut observer = Observer::new(&bus);
        let mut stats = Stats::default();
        let lines = logged(|| {
            stats.last_ping_rtt = Some(Duration::from_millis(900));
            observer.trace_changes(&stats);
            observer.last = stats.clone();
            stats.last_ping_rtt = Some(Duration::from_millis(1100));
            observer.trace_changes(&stats);
            observer.last = stats.clone();
            // The same answer seen again is not a new slow ping.
            observer.trace_changes(&stats);
        });
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].starts_with("WARN slow health ping"), "{lines:#?}");
    }

    #[test]
    fn statistics_are_looked_at_once_per_interval_and_the_rest_at_its_end() {
        let bus = bus();
        let mut observer = Observer::new(&bus);
        let start = Instant::now();
        logged(|| {
            observer.after_pass(&bus, start);
            assert_eq!(observer.deadline(), None, "nothing left unobserved");
            observer.after_pass(&bus, start + Duration::from_millis(10));
            assert_eq!(observer.deadline(), Some(start + OBSERVE_INTERVAL));
            observer.after_pass(&bus, start + OBSERVE_INTERVAL);
            assert_eq!(observer.deadline(), None, "observed at the deadline");
            // A connection event is published with its own pass.
            observer.event(&BusEvent::Closed, &bus);
            observer.after_pass(&bus, start + OBSERVE_INTERVAL + Duration::from_millis(1));
            assert_eq!(observer.deadline(), None);
        });
    }

    #[test]
    fn overflow_is_reported_once_per_pass_with_the_counts() {
        let bus = bus();
        let mut observer = Observer::new(&bus);
        let mut stats = Stats::default();
        let lines = logged(|| {
            stats.replaced_latest = 40;
            stats.dropped_oldest = 2;
            observer.trace_changes(&stats);
            observer.last = stats.clone();
            observer.trace_changes(&stats);
        });
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with("DEBUG overflow policies"),
            "{lines:#?}"
        );
    }
}
