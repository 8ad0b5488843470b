//! What the bus logs through `tracing`, where it happens: a slow health
//! ping, reading paused and resumed for a full `Backpressure` subscriber,
//! and what the overflow policies discarded.
//!
//! `tracing` does no IO itself (the application's subscriber does), so the
//! core may log as quinn-proto does. Nothing here runs per notification: an
//! overflow summary is written at most once per [`SUMMARY_INTERVAL`] of the
//! time the driver passes in, with the counts since the last one. The
//! driver logs the connection's life from the events it dispatches
//! (`observe.rs`), and publishes metrics from [`Stats`] at most as often.

use std::time::{Duration, Instant};

use tracing::Level;

use super::stats::Stats;

/// The shortest time between two overflow summaries.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_millis(100);

/// A health ping answered after `rtt`: a warning when that is more than
/// half the ping timeout, which the connection was close to failing.
pub(crate) fn ping_answered(rtt: Duration, ping_timeout: Duration) {
    if is_slow(rtt, ping_timeout) {
        tracing::warn!(
            ?rtt,
            ?ping_timeout,
            "slow health ping: the server or the network is lagging"
        );
    }
}

fn is_slow(rtt: Duration, ping_timeout: Duration) -> bool {
    rtt > ping_timeout / 2
}

pub(crate) fn reading_paused() {
    tracing::debug!("reading paused: a Backpressure subscriber is full");
}

pub(crate) fn reading_resumed(paused_for: Duration) {
    tracing::debug!(?paused_for, "reading resumed");
}

pub(crate) fn side_session_unavailable(why: &str) {
    tracing::warn!(
        error = why,
        "could not open a second session to publish while reading is paused; publishing on \
         the listening connection, where answers wait until reading resumes"
    );
}

/// What the overflow policies discarded, by policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Discarded {
    drop_oldest: u64,
    drop_newest: u64,
    keep_latest: u64,
    closed: u64,
}

impl Discarded {
    fn of(stats: &Stats) -> Self {
        Self {
            drop_oldest: stats.dropped_oldest,
            drop_newest: stats.dropped_newest,
            keep_latest: stats.replaced_latest,
            closed: stats.closed_by_overflow,
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            drop_oldest: self.drop_oldest.saturating_sub(earlier.drop_oldest),
            drop_newest: self.drop_newest.saturating_sub(earlier.drop_newest),
            keep_latest: self.keep_latest.saturating_sub(earlier.keep_latest),
            closed: self.closed.saturating_sub(earlier.closed),
        }
    }

    fn is_empty(self) -> bool {
        self == Self::default()
    }
}

/// The overflow summary: the bus's own counters when it was last written.
#[derive(Debug, Default)]
pub(crate) struct OverflowLog {
    written: Discarded,
    written_at: Option<Instant>,
}

impl OverflowLog {
    /// After a fan-out or a timer: writes what was discarded since the last
    /// summary, unless that was less than [`SUMMARY_INTERVAL`] ago (the rest
    /// waits for the next call after the interval; the ping timer makes one
    /// at least every ping interval).
    pub(crate) fn maybe_write(&mut self, now: Instant, stats: &Stats) {
        if !tracing::enabled!(Level::DEBUG) {
            return;
        }
        if let Some(new) = self.due(now, Discarded::of(stats)) {
            tracing::debug!(
                drop_oldest = new.drop_oldest,
                drop_newest = new.drop_newest,
                keep_latest = new.keep_latest,
                closed = new.closed,
                "overflow policies discarded notifications; subscribers see overflow gaps"
            );
        }
    }

    /// What to write now, if anything; it then counts as written.
    fn due(&mut self, now: Instant, total: Discarded) -> Option<Discarded> {
        let recent = self
            .written_at
            .is_some_and(|at| now.saturating_duration_since(at) < SUMMARY_INTERVAL);
        let new = total.since(self.written);
        if recent || new.is_empty() {
            return None;
        }
        self.written = total;
        self.written_at = Some(now);
        Some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_slow_past_half_the_timeout() {
        let timeout = Duration::from_secs(2);
        assert!(!is_slow(Duration::from_millis(900), timeout));
        assert!(!is_slow(Duration::from_secs(1), timeout));
        assert!(is_slow(Duration::from_millis(1100), timeout));
    }

    #[test]
    fn overflow_is_summed_up_once_per_interval_with_the_counts_since() {
        let mut log = OverflowLog::default();
        let t0 = Instant::now();
        let mut total = Discarded::default();
        assert_eq!(log.due(t0, total), None, "nothing discarded");
        total.keep_latest = 40;
        total.drop_oldest = 2;
        assert_eq!(log.due(t0, total), Some(total));
        total.drop_newest = 5;
        assert_eq!(
            log.due(t0 + Duration::from_millis(50), total),
            None,
            "too soon"
        );
        let later = log.due(t0 + SUMMARY_INTERVAL, total);
        assert_eq!(
            later,
            Some(Discarded {
                drop_newest: 5,
                ..Discarded::default()
            }),
            "only what is new since the last summary"
        );
        assert_eq!(log.due(t0 + 3 * SUMMARY_INTERVAL, total), None);
    }
}
