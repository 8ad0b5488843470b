//! Health pings: a NOTIFY to the connection's own ping channel.
//!
//! A ping proves more than a `SELECT 1` would: the notification has to make
//! the full trip through the server's notification queue back to this
//! connection's LISTEN. That is why the first ping right after connecting
//! detects a transaction-pooling proxy, where LISTEN and NOTIFY land on
//! different server sessions. Pings also keep `idle_session_timeout` away.
//!
//! The first answer on a connection is also its proof that the server works
//! (see `backoff.rs`): the first ping goes out as soon as the LISTENs are
//! acknowledged, so a healthy connection proves itself one round trip after
//! it comes up, with no ping beyond the ones liveness already sends.

use std::time::{Duration, Instant};

use crate::push_quoted_identifier;

/// The ping channel of the connection whose backend has `pid`.
pub(crate) fn ping_channel(pid: i32) -> String {
    format!("pgnotify.ping.{pid}")
}

/// How many ping timeouts a ping may wait in all while notifications keep
/// arriving ahead of its answer (a burst the server queued before it read
/// the ping).
const BACKLOG_ALLOWANCE: u32 = 4;

/// The outcome of a ping deadline passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PingFailure {
    /// The ping's NOTIFY and a query after it completed but its
    /// notification never came, on the very first ping of a connection or on
    /// any ping behind a pooler.
    NotificationsNotDelivered,
    /// A ping was not answered in time.
    TimedOut,
}

#[derive(Debug)]
struct Outstanding {
    sent_at: Instant,
    /// `None` while reading is paused on purpose: an unread pong proves nothing.
    deadline: Option<Instant>,
    /// How far notifications arriving may push `deadline` (see
    /// [`Pinger::notifications_arrived`]).
    latest: Option<Instant>,
    first: bool,
    command_done: bool,
    /// A query sent after `command_done` completed: what the server sent
    /// before its answer has all arrived.
    confirmed: bool,
}

/// Schedules pings on one connection and judges their answers.
#[derive(Debug)]
pub(crate) struct Pinger {
    interval: Duration,
    timeout: Duration,
    channel: Option<String>,
    next_at: Option<Instant>,
    outstanding: Option<Outstanding>,
    sent_on_connection: u64,
    last_rtt: Option<Duration>,
    sent_total: u64,
}

impl Pinger {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            channel: None,
            next_at: None,
            outstanding: None,
            sent_on_connection: 0,
            last_rtt: None,
            sent_total: 0,
        }
    }

    /// A connection is listening on `channel`: ping at once.
    pub(crate) fn start(&mut self, now: Instant, channel: String) {
        self.channel = Some(channel);
        self.next_at = Some(now);
        self.outstanding = None;
        self.sent_on_connection = 0;
    }

    /// The connection is gone.
    pub(crate) fn stop(&mut self) {
        self.channel = None;
        self.next_at = None;
        self.outstanding = None;
    }

    pub(crate) fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// If a ping is due, returns the SQL to send and marks it sent.
    pub(crate) fn due(&mut self, now: Instant, paused: bool) -> Option<String> {
        let channel = self.channel.as_ref()?;
        if self.outstanding.is_some() || self.next_at.is_none_or(|at| now < at) {
            return None;
        }
        let mut sql = String::from("NOTIFY ");
        push_quoted_identifier(&mut sql, channel);
        self.outstanding = Some(Outstanding {
            sent_at: now,
            deadline: (!paused).then(|| now + self.timeout),
            latest: (!paused).then(|| now + BACKLOG_ALLOWANCE * self.timeout),
            first: self.sent_on_connection == 0,
            command_done: false,
            confirmed: false,
        });
        self.next_at = None;
        self.sent_on_connection += 1;
        self.sent_total += 1;
        Some(sql)
    }

    /// How many pings this connection has sent.
    pub(crate) fn sent_on_connection(&self) -> u64 {
        self.sent_on_connection
    }

    /// The ping's notification arrived; returns when the ping it answered
    /// was sent, or `None` if no ping was outstanding (a connection that
    /// answers one has proved itself, which resets the reconnect backoff).
    pub(crate) fn answered(&mut self, now: Instant) -> Option<Instant> {
        let out = self.outstanding.take()?;
        self.last_rtt = Some(now.saturating_duration_since(out.sent_at));
        self.next_at = Some(now + self.interval);
        Some(out.sent_at)
    }

    /// The ping's NOTIFY command completed. Returns whether its notification
    /// is still missing; the bus then sends a query to confirm the verdict
    /// (see [`Pinger::check`]) and reports its completion to
    /// [`Pinger::confirmed`].
    pub(crate) fn command_done(&mut self) -> bool {
        match &mut self.outstanding {
            Some(out) => {
                out.command_done = true;
                true
            }
            None => false,
        }
    }

    /// A query sent after the ping's NOTIFY completed has completed too
    /// (with rows or an error: either way the server answered, in order).
    pub(crate) fn confirmed(&mut self) {
        if let Some(out) = &mut self.outstanding
            && out.command_done
        {
            out.confirmed = true;
        }
    }

    /// Reading was paused on purpose: suspend the deadline.
    pub(crate) fn pause(&mut self) {
        if let Some(out) = &mut self.outstanding {
            out.deadline = None;
        }
    }

    /// Reading resumed: the deadline starts afresh.
    pub(crate) fn resume(&mut self, now: Instant) {
        if let Some(out) = &mut self.outstanding {
            out.deadline = Some(now + self.timeout);
            out.latest = Some(now + BACKLOG_ALLOWANCE * self.timeout);
        }
    }

    /// Notifications are still arriving: the server is busy writing a
    /// backlog it queued before it could read the ping, and the pong stands
    /// behind it. The deadline moves to a full timeout from now, but never
    /// past [`BACKLOG_ALLOWANCE`] timeouts from when it started, so a
    /// connection that floods and never answers is still replaced.
    pub(crate) fn notifications_arrived(&mut self, now: Instant) {
        if let Some(out) = &mut self.outstanding
            && let (Some(deadline), Some(latest)) = (out.deadline, out.latest)
        {
            out.deadline = Some(deadline.max(now + self.timeout).min(latest));
        }
    }

    /// Whether the outstanding ping has failed by `now`.
    ///
    /// An unanswered ping is a dead connection unless the server is known to
    /// have answered around it: its NOTIFY completed, and so did a query sent
    /// after that. Whatever the server sent before that query's answer,
    /// including the ping's notification (PostgreSQL sends a session's own
    /// notifications before the ReadyForQuery that ends the NOTIFY; a client
    /// must also cope with them right after it), has then arrived. So the
    /// connection works and the notification went elsewhere. On the first
    /// ping that is the pooler's signature. Later, it is only trusted
    /// `behind_pooler`: a transaction-mode pool may run one ping on the
    /// server session that holds the LISTEN and the next on another.
    /// Directly connected, the same sign is a mystery a reconnect may clear.
    /// A NOTIFY that completed with no confirmation after it proves nothing:
    /// the connection may have died right after the command.
    pub(crate) fn check(&self, now: Instant, behind_pooler: bool) -> Option<PingFailure> {
        let out = self.outstanding.as_ref()?;
        let deadline = out.deadline?;
        if now < deadline {
            return None;
        }
        Some(if out.confirmed && (out.first || behind_pooler) {
            PingFailure::NotificationsNotDelivered
        } else {
            PingFailure::TimedOut
        })
    }

    /// The next instant the pinger needs a `handle_timeout`.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.channel.as_ref()?;
        match &self.outstanding {
            Some(out) => out.deadline,
            None => self.next_at,
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    pub(crate) fn sent_total(&self) -> u64 {
        self.sent_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinger() -> (Pinger, Instant) {
        (
            Pinger::new(Duration::from_secs(10), Duration::from_secs(5)),
            Instant::now(),
        )
    }

    #[test]
    fn first_ping_goes_out_at_once_then_every_interval_after_the_answer() {
        let (mut p, t0) = pinger();
        p.start(t0, ping_channel(42));
        assert_eq!(
            p.due(t0, false).as_deref(),
            Some("NOTIFY \"pgnotify.ping.42\"")
        );
        assert_eq!(p.due(t0, false), None, "one ping at a time");
        assert_eq!(p.answered(t0 + Duration::from_millis(3)), Some(t0));
        assert!(
            p.answered(t0 + Duration::from_millis(4)).is_none(),
            "a second answer to the same ping answers nothing"
        );
        assert_eq!(p.last_rtt(), Some(Duration::from_millis(3)));
        assert_eq!(
            p.next_timeout(),
            Some(t0 + Duration::from_millis(3) + Duration::from_secs(10))
        );
        assert_eq!(p.due(t0 + Duration::from_secs(10), false), None);
        assert!(
            p.due(
                t0 + Duration::from_millis(3) + Duration::from_secs(10),
                false
            )
            .is_some()
        );
    }

    /// A pinger whose first ping was answered at once; the second went out
    /// at the returned instant.
    fn second_ping_sent() -> (Pinger, Instant) {
        let (mut p, t0) = pinger();
        p.start(t0, ping_channel(1));
        p.due(t0, false).unwrap();
        p.answered(t0);
        let t1 = t0 + Duration::from_secs(10);
        p.due(t1, false).unwrap();
        (p, t1)
    }

    #[test]
    fn unanswered_first_ping_with_completed_notify_and_confirmation_blames_the_pooler() {
        let (mut p, t0) = pinger();
        p.start(t0, ping_channel(1));
        p.due(t0, false).unwrap();
        assert!(p.command_done(), "no answer yet: confirm");
        p.confirmed();
        assert_eq!(p.check(t0 + Duration::from_secs(4), false), None);
        assert_eq!(
            p.check(t0 + Duration::from_secs(5), false),
            Some(PingFailure::NotificationsNotDelivered)
        );
    }

    #[test]
    fn later_unanswered_ping_times_out() {
        let (p, t1) = second_ping_sent();
        assert_eq!(
            p.check(t1 + Duration::from_secs(5), false),
            Some(PingFailure::TimedOut)
        );
    }

    #[test]
    fn later_ping_with_completed_notify_times_out_directly_and_blames_a_pooler() {
        let (mut p, t1) = second_ping_sent();
        p.command_done();
        p.confirmed();
        let late = t1 + Duration::from_secs(5);
        assert_eq!(p.check(late, false), Some(PingFailure::TimedOut));
        assert_eq!(
            p.check(late, true),
            Some(PingFailure::NotificationsNotDelivered),
            "behind a pooler the next ping may have run on another server session"
        );
    }

    #[test]
    fn a_completed_notify_without_confirmation_may_be_a_connection_that_died_after_it() {
        let (mut p, t0) = pinger();
        p.start(t0, ping_channel(1));
        p.due(t0, false).unwrap();
        p.command_done();
        assert_eq!(
            p.check(t0 + Duration::from_secs(5), true),
            Some(PingFailure::TimedOut),
            "the notification may have been on its way when the connection went dark"
        );
    }

    #[test]
    fn a_confirmation_counts_only_after_the_pings_own_command() {
        let (mut p, t0) = pinger();
        p.start(t0, ping_channel(1));
        p.due(t0, false).unwrap();
        assert!(p.command_done());
        p.answered(t0 + Duration::from_millis(1));
        assert!(!p.command_done(), "answered: nothing to confirm");
        let t1 = t0 + Duration::from_secs(11);
        p.due(t1, false).unwrap();
        // The previous ping's confirmation completes before this ping's NOTIFY.
        p.confirmed();
        p.command_done();
        assert_eq!(
            p.check(t1 + Duration::from_secs(5), true),
            Some(PingFailure::TimedOut)
        );
    }

    #[test]
    fn an_unanswered_ping_whose_notify_never_completed_is_a_dead_connection_even_behind_a_pooler() {
        let (mut p, t0) = pinger();
        p.start(t0, ping_channel(1));
        p.due(t0, false).unwrap();
        assert_eq!(
            p.check(t0 + Duration::from_secs(5), true),
            Some(PingFailure::TimedOut)
        );
    }

    #[test]
    fn paused_reading_suspends_the_deadline_and_resume_restarts_it() {
        let (mut p, t0) = pinger();
        p.start(t0, ping_channel(1));
        p.due(t0, false).unwrap();
        p.pause();
        assert_eq!(p.check(t0 + Duration::from_secs(60), false), None);
        assert_eq!(p.next_timeout(), None);
        let t1 = t0 + Duration::from_secs(60);
        p.resume(t1);
        assert_eq!(p.check(t1 + Duration::from_secs(4), false), None);
        assert!(p.check(t1 + Duration::from_secs(5), false).is_some());
    }
}
