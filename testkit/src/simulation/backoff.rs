//! The reference model of reconnecting (invariant 7): which host comes
//! next, and the window each backoff delay must fall in.
//!
//! The retry count starts over when a connection proves the server works:
//! the world saw the answer to one of its health pings reach the bus, or
//! (when none could be read) it stayed listening for `backoff_reset_after`.
//! Every failed attempt and every connection lost before that proof adds
//! one.

use std::time::{Duration, Instant};

use super::check::Violation;

/// What the model expects of the next `Action::Connect`.
#[derive(Debug, Clone, Copy)]
struct Expected {
    failed_at: Instant,
    host: usize,
    /// The delay's window.
    window: (Duration, Duration),
    /// An immediate retry is also acceptable: the backoff's reset fell on
    /// the same instant as the loss, so either order is correct, or the
    /// bus may or may not have read a ping answer it held.
    or_immediate: bool,
    /// The bus's first attempt, not a retry.
    initial: bool,
}

/// Follows the bus's attempts and checks each against invariant 7 (reconnect: first retry at once,
/// then exponential backoff with jitter, reset once a connection proved the server works).
#[derive(Debug)]
pub(crate) struct BackoffModel {
    min: Duration,
    max: Duration,
    reset_after: Duration,
    hosts: usize,
    /// Delays handed out since the last reset.
    attempt: u32,
    healthy_at: Option<Instant>,
    /// A ping answer reached the bus while it was holding input for a full
    /// `Backpressure` queue: the bus handles it once that queue drains, which
    /// the model cannot see, so the next loss may or may not retry at once.
    maybe_proved: bool,
    /// The host of the attempt in progress.
    host: usize,
    expected: Option<Expected>,
    /// Delays between a failure and the next attempt (for the report).
    pub(crate) delays: Vec<Duration>,
}

impl BackoffModel {
    pub(crate) fn new(
        start: Instant,
        min: Duration,
        max: Duration,
        reset_after: Duration,
        hosts: usize,
    ) -> Self {
        Self {
            min: min.min(max),
            max,
            reset_after,
            hosts,
            attempt: 0,
            healthy_at: None,
            maybe_proved: false,
            host: 0,
            expected: Some(Expected {
                failed_at: start,
                host: 0,
                window: (Duration::ZERO, Duration::ZERO),
                or_immediate: false,
                initial: true,
            }),
            delays: Vec::new(),
        }
    }

    fn window(&self, attempt: u32) -> (Duration, Duration) {
        if attempt == 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.min.saturating_mul(factor).min(self.max);
        ((ceiling / 2).max(self.min), ceiling)
    }

    /// `bounce` resets the backoff; an attempt follows at once.
    pub(crate) fn bounced(&mut self, now: Instant) {
        self.attempt = 0;
        if let Some(e) = &mut self.expected {
            // Waiting out a delay: the attempt starts at once.
            e.failed_at = now;
            e.window = (Duration::ZERO, Duration::ZERO);
            e.or_immediate = false;
        }
    }

    pub(crate) fn closed(&mut self) {
        self.expected = None;
    }

    /// The bus asked to connect to `host` at `now`.
    pub(crate) fn connect(&mut self, now: Instant, host: usize) -> Result<(), Violation> {
        let Some(e) = self.expected.take() else {
            return Err(Violation::new(
                7,
                format!(
                    "expected no connection attempt (connected or closed), got one to host {host}"
                ),
            ));
        };
        if host != e.host {
            return Err(Violation::new(
                7,
                format!(
                    "expected the next attempt on host {}, got host {host}",
                    e.host
                ),
            ));
        }
        let delay = now.saturating_duration_since(e.failed_at);
        let (lo, hi) = e.window;
        if e.or_immediate && delay.is_zero() {
            // The bus reset its backoff first: this was retry 0.
            self.attempt = 1;
        } else if !(lo <= delay && delay <= hi) {
            return Err(Violation::new(
                7,
                format!(
                    "expected a backoff delay in [{lo:?}, {hi:?}]{} (retry {} since reset), got {delay:?}",
                    if e.or_immediate { " or 0" } else { "" },
                    self.attempt
                ),
            ));
        }
        if !e.initial {
            self.delays.push(delay);
        }
        self.host = host;
        Ok(())
    }

    /// A connection came up at `now`; it is not proved yet.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.healthy_at = Some(now + self.reset_after);
        self.maybe_proved = false;
    }

    /// The bus was handed the answer to a health ping of the connection
    /// that is up: it has proved the server works, and the next loss retries
    /// at once. `handled` is false when the bus may have held it unread (see
    /// `maybe_proved`).
    pub(crate) fn ping_answered(&mut self, handled: bool) {
        if !handled {
            self.maybe_proved |= self.healthy_at.is_some();
        } else if self.healthy_at.take().is_some() {
            self.attempt = 0;
            self.maybe_proved = false;
        }
    }

    /// The connection in progress failed (`listening`: it had been up).
    pub(crate) fn failed(&mut self, now: Instant, listening: bool) {
        let mut or_immediate = false;
        if let Some(at) = self.healthy_at.take() {
            if now > at {
                self.attempt = 0;
            } else if now == at || self.maybe_proved {
                or_immediate = self.attempt > 0;
            }
        }
        self.maybe_proved = false;
        let round_complete = listening || self.host + 1 >= self.hosts;
        let host = if listening {
            0
        } else {
            (self.host + 1) % self.hosts
        };
        let window = if round_complete {
            let w = self.window(self.attempt);
            self.attempt = self.attempt.saturating_add(1);
            w
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        self.expected = Some(Expected {
            failed_at: now,
            host,
            window,
            or_immediate,
            initial: false,
        });
    }
}
