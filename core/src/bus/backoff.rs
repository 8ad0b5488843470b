//! Reconnect delays: exponential backoff with jitter from a seeded generator.
//!
//! # The schedule
//!
//! The first retry after a connection is lost is immediate: most losses
//! (a server restart, a terminated backend, a failover) are over by the time
//! a new connection can be opened. After that, retry `n` (n >= 1) waits a
//! delay drawn uniformly from
//!
//! ```text
//! [max(min, ceiling_n / 2), ceiling_n]   where   ceiling_n = min(max, min * 2^n)
//! ```
//!
//! so the window doubles each time from `[min, 2·min]` until it is
//! `[max/2, max]`, and no delay after the first is below `min` or above
//! `max`.
//!
//! This is "equal jitter": half the window is fixed, half is random. Full
//! jitter (`[0, ceiling]`) can pick near-zero delays late in an outage and so
//! does not really back off; "decorrelated" jitter depends on the previous
//! delay, so its bounds for attempt `n` are not fixed, which makes invariant 7
//! hard to check. Equal jitter keeps a known window per attempt and still
//! spreads a fleet of listeners that lost the same server over half of it.
//!
//! # What counts: failures, not time
//!
//! The retry number `n` counts failures since the server last proved it
//! works. A connection proves it when it has come up, had every channel's
//! LISTEN acknowledged, **and answered a health ping** (the first ping goes
//! out as soon as the LISTENs are acknowledged, so this takes one round trip
//! more). Then the backoff starts over: when that connection is lost, the
//! next attempt is immediate again, however short the connection's life.
//! What makes the delay grow is only
//!
//! - an attempt that fails (refused, startup error, timeout, read-only
//!   server), once every host has been tried, and
//! - a connection that is lost before its first ping is answered.
//!
//! So a backend terminated every 20 s reconnects at once every time, and a
//! server that accepts connections and then drops them at once is still
//! backed off from up to `backoff_max`: at most one attempt per
//! `backoff_max / 2` once the window is capped, never a hot loop. (A server
//! that answers the ping and only then drops every connection is retried at
//! once each time, paced by its own handshake round trips: each of those
//! connections did deliver, so they are not counted as failures.)
//!
//! Until this rule, the backoff reset only after a connection had stayed up
//! `backoff_reset_after` (30 s). A backend killed every 20 s never got
//! there, so each reconnect waited longer than the last (to a median of
//! 5.2 s, max 10 s, over five minutes), although every attempt succeeded at
//! once. Elapsed time says little about a server; an answered ping says it
//! delivers notifications.
//!
//! `backoff_reset_after` remains as the proof for a connection that cannot
//! answer a ping although it works: while reading is paused on purpose for a
//! `Backpressure` subscriber, the answer sits unread (and the ping's
//! deadline is suspended). A connection that stays listening that long
//! counts as proved too. It is never needed when pings are read, and it
//! keeps existing connection strings valid.

use std::time::Duration;

/// A small, fast, seedable generator (SplitMix64).
///
/// Not for cryptography: it only spreads reconnect attempts. Same seed,
/// same sequence, which keeps the bus deterministic.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number uniformly drawn from `0..=bound`, by multiply-and-shift
    /// (bias below 2^-64 per draw, no division).
    pub(crate) fn below_or_equal(&mut self, bound: u64) -> u64 {
        match bound.checked_add(1) {
            Some(span) => ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64,
            None => self.next_u64(),
        }
    }
}

/// The delays between reconnect attempts.
///
/// The bus asks for [`next_delay`](Self::next_delay) each time an attempt
/// fails or a connection is lost, and calls [`reset`](Self::reset) once a
/// connection has proved the server works (answered a ping, or stayed
/// listening for `backoff_reset_after`; see the module docs), so a server
/// that accepts connections and then drops them at once still gets backed
/// off from.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    rng: SplitMix64,
    /// Delays handed out since the last reset.
    attempt: u32,
}

impl Backoff {
    /// A backoff between `min` and `max` (a `min` above `max` is lowered to
    /// it), with jitter drawn from `seed`.
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min: min.min(max),
            max,
            rng: SplitMix64::new(seed),
            attempt: 0,
        }
    }

    /// How many delays were handed out since the last reset.
    #[cfg(test)]
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The window the delay of retry `attempt` (counted from 0) is drawn
    /// from; `(0, 0)` for the first. For tests and the simulation's checks.
    pub(crate) fn window(&self, attempt: u32) -> (Duration, Duration) {
        if attempt == 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        // min * 2^attempt, saturating, then capped at max.
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.min.saturating_mul(factor).min(self.max);
        let floor = (ceiling / 2).max(self.min);
        (floor, ceiling)
    }

    /// The delay before the next attempt: zero the first time after a reset,
    /// then within [`window`](Self::window) of the attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let (floor, ceiling) = self.window(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let span = ceiling.saturating_sub(floor);
        // Nanoseconds fit u64 for 584 years; saturate beyond.
        let span_nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        floor.saturating_add(Duration::from_nanos(self.rng.below_or_equal(span_nanos)))
    }

    /// Starts over: the next retry is immediate again. The generator is not
    /// reset, so two outages do not repeat the same delays.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn first_retry_is_immediate() {
        let mut b = Backoff::new(MIN, MAX, 1);
        assert_eq!(b.next_delay(), Duration::ZERO);
        assert!(b.next_delay() >= MIN);
    }

    #[test]
    fn delays_stay_within_min_and_max_and_their_window() {
        for seed in 0..200 {
            let mut b = Backoff::new(MIN, MAX, seed);
            b.next_delay();
            for attempt in 1..40 {
                let (floor, ceiling) = b.window(attempt);
                let d = b.next_delay();
                assert!(
                    floor <= d && d <= ceiling,
                    "seed {seed} attempt {attempt}: {d:?} outside {floor:?}..={ceiling:?}"
                );
                assert!(MIN <= d && d <= MAX, "seed {seed} attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn windows_double_from_min_until_capped_at_max() {
        let b = Backoff::new(MIN, MAX, 0);
        assert_eq!(b.window(1), (MIN, MIN * 2));
        assert_eq!(b.window(2), (MIN * 2, MIN * 4));
        assert_eq!(b.window(3), (MIN * 4, MIN * 8));
        assert_eq!(b.window(7), (MAX / 2, MAX), "100ms * 128 is capped at 10s");
        assert_eq!(b.window(u32::MAX), (MAX / 2, MAX));
    }

    #[test]
    fn delays_grow_on_average_and_are_jittered() {
        let mut b = Backoff::new(MIN, MAX, 7);
        b.next_delay();
        let early: Vec<_> = (0..3).map(|_| b.next_delay()).collect();
        let late: Vec<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(
            early.iter().max() < late.iter().min(),
            "{early:?} then {late:?}"
        );
        let distinct: std::collections::BTreeSet<_> = late.iter().collect();
        assert!(
            distinct.len() > 10,
            "capped delays are not jittered: {late:?}"
        );
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let run = |seed| {
            let mut b = Backoff::new(MIN, MAX, seed);
            (0..30).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn reset_makes_the_next_retry_immediate_again() {
        let mut b = Backoff::new(MIN, MAX, 3);
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(b.attempts(), 5);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay(), Duration::ZERO);
        let d = b.next_delay();
        assert!((MIN..=MIN * 2).contains(&d), "{d:?}");
    }

    #[test]
    fn degenerate_bounds_do_not_panic() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1), 0);
        b.next_delay();
        assert_eq!(
            b.next_delay(),
            Duration::from_secs(1),
            "min above max is lowered to max"
        );
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 0);
        for _ in 0..100 {
            assert_eq!(b.next_delay(), Duration::ZERO);
        }
        let mut b = Backoff::new(Duration::MAX, Duration::MAX, 0);
        for _ in 0..5 {
            b.next_delay();
        }
    }

    #[test]
    fn splitmix_draws_cover_the_whole_range() {
        let mut rng = SplitMix64::new(0);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let x = rng.below_or_equal(4);
            seen[x as usize] = true;
        }
        assert_eq!(seen, [true; 5]);
        assert_eq!(rng.below_or_equal(0), 0);
        rng.below_or_equal(u64::MAX);
    }
}
