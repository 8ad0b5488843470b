//! What the driver reports about itself: `tracing` events for the
//! connection's life and, with the `metrics` feature, metrics.
//!
//! The driver calls [`Observer::event`] for every [`BusEvent`] it dispatches
//! and [`Observer::after_pass`] after each pass of its loop; this module is
//! the one place that turns them into log lines and metrics. What happens
//! inside the bus (a slow health ping, reading paused and resumed, overflow
//! summaries) the core logs itself where it happens (`core/src/bus/log.rs`).
//! Nothing here runs per notification: lifecycle events are rare, and with
//! the `metrics` feature the statistics are read at most once per
//! [`OBSERVE_INTERVAL`] (a [`Bus::stats`] walks every subscriber: about
//! 130 µs for 10,000); changes within an interval are published at its end
//! ([`Observer::deadline`]), and lifecycle events at once.
//!
//! | what | level | where |
//! |---|---|---|
//! | first connection up | info | here |
//! | reconnected (with the generation) | info | here |
//! | connection lost (with the error) | warn; error for a protocol violation | here |
//! | connection attempt failed | warn; error when it ends the first round and retrying cannot help | here |
//! | listener closed | info | here |
//! | a subscription ended other than by unsubscribing, a publish failed | debug | here |
//! | a health ping took more than half the ping timeout | warn | the core |
//! | reading paused / resumed by a full `Backpressure` subscriber | debug | the core |
//! | overflow policies discarded notifications (counts per policy, at most every 100 ms) | debug | the core |

use std::time::{Duration, Instant};

use pgnotify_core::EndReason;
use pgnotify_core::bus::{Bus, BusError, BusEvent, Stats};
use pgnotify_core::protocol::ConnectionError;

/// The shortest time between two looks at the bus's statistics.
pub(crate) const OBSERVE_INTERVAL: Duration = Duration::from_millis(100);

/// The driver's reporter: with the `metrics` feature, remembers the last
/// statistics published, to publish differences.
#[derive(Debug)]
pub(crate) struct Observer {
    last: Stats,
    /// When `last` was taken; `None` to take the next at once.
    taken_at: Option<Instant>,
    /// A pass went unobserved since `taken_at`.
    unobserved: bool,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Published,
}

impl Observer {
    pub(crate) fn new() -> Self {
        Self {
            last: Stats::default(),
            taken_at: None,
            unobserved: false,
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

    /// Publishes what changed in the bus's statistics (with the `metrics`
    /// feature), unless it did less than [`OBSERVE_INTERVAL`] ago (then
    /// [`deadline`](Self::deadline) asks for another pass).
    pub(crate) fn after_pass(&mut self, bus: &Bus, now: Instant) {
        if !cfg!(feature = "metrics") {
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
        self.last = stats;
    }
}

impl Observer {
    /// The driver stopped: reports the last changes, then takes back this
    /// listener's share of the gauges. Called once, before the listener
    /// reports itself stopped.
    pub(crate) fn stopped(&mut self, bus: &Bus) {
        if cfg!(feature = "metrics") {
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
        let mut observer = Observer::new();
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
        let mut observer = Observer::new();
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
    #[cfg(feature = "metrics")]
    fn statistics_are_looked_at_once_per_interval_and_the_rest_at_its_end() {
        let bus = bus();
        let mut observer = Observer::new();
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
}
