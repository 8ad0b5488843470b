//! The server guard: while reading is paused for an `Absorb` subscriber,
//! watch how full the server's notification queue is.
//!
//! A listener that stops reading holds back the server's notification queue
//! (8 GB, shared by the whole cluster); if it filled, every `NOTIFY` in the
//! cluster would fail. The listening connection cannot answer how full the
//! queue is while it is paused: its backend is blocked writing the backlog,
//! and any reply would queue behind it. So the bus asks its driver for a
//! second, short session ([`Action::SideCheck`](crate::bus::Action::SideCheck))
//! that runs one `SELECT pg_notification_queue_usage()` and ends. Above the
//! configured fraction, every absorbing subscriber is released (it drops
//! what does not fit, counted exactly) and reading resumes.
//!
//! The same action carries the delivery probe behind a pooler
//! ([`CheckKind::DeliveryProbe`]): a NOTIFY from a second session. The
//! session itself is sans-IO too ([`SideSession`], whichever the check), so
//! every driver pumps bytes and nothing else.

use std::time::{Duration, Instant};

use crate::bus::output::{ConnectTarget, SessionTarget, TlsTarget};
use crate::protocol::{CommandId, Connection, StartupParams, WireEvent};

/// The query the guard runs.
const QUERY: &str = "SELECT pg_notification_queue_usage()";

/// When the guard checks next.
#[derive(Debug, Default)]
pub(crate) struct ServerGuard {
    /// The next check, while reading is paused for an absorbing subscriber.
    next: Option<Instant>,
    /// A check was asked for and has not reported back.
    in_flight: bool,
}

impl ServerGuard {
    /// Reading paused (or stayed paused): schedule a check `interval` from
    /// now unless one is already scheduled or running.
    pub(crate) fn arm(&mut self, now: Instant, interval: Duration) {
        if self.next.is_none() && !self.in_flight {
            self.next = Some(now + interval);
        }
    }

    /// Reading resumed: no check is needed.
    pub(crate) fn disarm(&mut self) {
        self.next = None;
    }

    /// The next check's time, for `poll_timeout`.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a check is due now; if so it counts as started.
    pub(crate) fn start_if_due(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|at| now >= at) && !self.in_flight {
            self.next = None;
            self.in_flight = true;
            return true;
        }
        false
    }

    /// A check reported back.
    pub(crate) fn finished(&mut self) {
        self.in_flight = false;
    }
}

/// What a driver needs to run one check on a short second session: where
/// to connect, how to secure and start the session, and what to run.
/// Carried by [`Action::SideCheck`](crate::bus::Action::SideCheck).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SideCheck {
    /// The host the listening connection is on.
    pub connect: ConnectTarget,
    /// How to run the TLS handshake, if the server accepts TLS.
    pub tls: TlsTarget,
    /// The startup parameters (same credentials as the listener's).
    pub startup: StartupParams,
    /// What the session runs, and so where its result goes.
    pub kind: CheckKind,
}

/// What a second session checks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckKind {
    /// `SELECT pg_notification_queue_usage()`, for the server guard: report
    /// the result with [`Bus::handle_server_queue_usage`](crate::bus::Bus::handle_server_queue_usage).
    QueueUsage,
    /// `NOTIFY channel, 'payload'` from another session, to learn whether
    /// notifications committed elsewhere reach the listener (behind a
    /// pooler, see `session.rs`): report with
    /// [`Bus::handle_delivery_probe`](crate::bus::Bus::handle_delivery_probe).
    DeliveryProbe {
        /// The listener's ping channel.
        channel: String,
        /// A payload the listener will recognise.
        payload: String,
    },
}

impl CheckKind {
    /// The check's result from its statement's rows (or its failure).
    fn outcome(&self, rows: Result<&[Vec<Option<String>>], String>) -> Result<f64, String> {
        match (rows, self) {
            (Ok(rows), Self::QueueUsage) => usage_of(rows),
            (Ok(_), Self::DeliveryProbe { .. }) => Ok(0.0),
            (Err(e), _) => Err(e),
        }
    }

    fn sql(&self) -> String {
        match self {
            Self::QueueUsage => QUERY.to_owned(),
            Self::DeliveryProbe { channel, payload } => {
                let mut sql = String::from("NOTIFY ");
                crate::push_quoted_identifier(&mut sql, channel);
                // The bus makes the payload: no quote or backslash in it.
                sql.push_str(", '");
                sql.push_str(&payload.replace('\'', "''"));
                sql.push('\'');
                sql
            }
        }
    }
}

impl SideCheck {
    /// The one statement the check runs, for a driver that runs statements
    /// on a session of its own rather than through [`session`](Self::session).
    pub fn sql(&self) -> String {
        self.kind.sql()
    }

    /// Where and how the check's session connects.
    pub fn target(&self) -> SessionTarget {
        SessionTarget {
            connect: self.connect.clone(),
            tls: self.tls.clone(),
            startup: self.startup.clone(),
        }
    }

    /// The check's result from what its statement returned (its rows, or
    /// why it failed): the fraction of the server's notification queue in
    /// use, or 0 for a delivery probe whose NOTIFY went through.
    pub fn outcome(&self, rows: Result<&[Vec<Option<String>>], String>) -> Result<f64, String> {
        self.kind.outcome(rows)
    }

    /// The sans-IO session that runs the check once the transport is open.
    pub fn session(&self) -> SideSession {
        SideSession {
            conn: Connection::new(self.startup.clone()),
            kind: self.kind.clone(),
            query: None,
            outcome: None,
        }
    }
}

/// What a [`SideSession`] needs next.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SessionStatus {
    /// Run the TLS handshake on the transport, then call
    /// [`SideSession::handle_tls_established`].
    StartTls,
    /// Write what [`SideSession::poll_transmit`] gives and read more.
    Running,
    /// Finished: the fraction of the server's notification queue in use
    /// (0 for a delivery probe, whose NOTIFY went through), or why it
    /// failed. Write what is left (the Terminate
    /// message), then close the transport.
    Done(Result<f64, String>),
}

/// One short session that runs a [`CheckKind`] (asks the server how full
/// its notification queue is, or sends a delivery probe) and terminates.
#[derive(Debug)]
pub struct SideSession {
    conn: Connection,
    kind: CheckKind,
    query: Option<CommandId>,
    outcome: Option<Result<f64, String>>,
}

impl SideSession {
    /// Bytes read from the transport.
    pub fn handle_input(&mut self, data: &[u8]) {
        self.conn.handle_input(data);
    }

    /// The TLS handshake finished (with the channel-binding data, if any).
    pub fn handle_tls_established(&mut self, channel_binding: Option<Vec<u8>>) {
        self.conn.handle_tls_established(channel_binding);
    }

    /// The transport failed or closed.
    pub fn handle_closed(&mut self, reason: &str) {
        if self.outcome.is_none() {
            self.outcome = Some(Err(format!("the connection closed: {reason}")));
        }
    }

    /// Appends bytes to write; true if there were any.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        self.conn.poll_transmit(buf)
    }

    /// Where the session stands, after handling what the connection said.
    pub fn poll_status(&mut self) -> SessionStatus {
        while self.outcome.is_none() {
            let Some(event) = self.conn.poll_event() else {
                break;
            };
            match event {
                WireEvent::StartTls => return SessionStatus::StartTls,
                WireEvent::Ready => {
                    self.query = Some(self.conn.simple_query(self.kind.sql()));
                }
                WireEvent::CommandComplete { id, result } if Some(id) == self.query => {
                    let rows = result.as_ref().map(|r| &r.rows[..]);
                    self.outcome = Some(self.kind.outcome(rows.map_err(ToString::to_string)));
                    self.conn.terminate();
                }
                WireEvent::Failed(e) => self.outcome = Some(Err(e.to_string())),
                _ => {}
            }
        }
        match &self.outcome {
            Some(outcome) => SessionStatus::Done(outcome.clone()),
            None => SessionStatus::Running,
        }
    }
}

/// The one value of the guard's query, as a fraction.
fn usage_of(rows: &[Vec<Option<String>>]) -> Result<f64, String> {
    let text = rows
        .first()
        .and_then(|row| row.first())
        .and_then(|value| value.as_deref())
        .ok_or("pg_notification_queue_usage() returned no value")?;
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| format!("pg_notification_queue_usage() returned {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_spaced_by_the_interval_and_one_at_a_time() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut guard = ServerGuard::default();
        guard.arm(t0, second);
        assert_eq!(guard.deadline(), Some(t0 + second));
        assert!(!guard.start_if_due(t0));
        assert!(guard.start_if_due(t0 + second));
        guard.arm(t0 + second, second);
        assert_eq!(guard.deadline(), None, "no second check while one runs");
        guard.finished();
        guard.arm(t0 + 2 * second, second);
        assert_eq!(guard.deadline(), Some(t0 + 3 * second));
        guard.disarm();
        assert_eq!(guard.deadline(), None);
    }

    #[test]
    fn usage_parses_the_servers_double_and_rejects_the_rest() {
        let row = |v: Option<&str>| vec![vec![v.map(str::to_owned)]];
        assert_eq!(usage_of(&row(Some("0.25"))), Ok(0.25));
        assert_eq!(usage_of(&row(Some("1.9e-05"))), Ok(1.9e-05));
        assert!(usage_of(&row(None)).is_err());
        assert!(usage_of(&row(Some("lots"))).is_err());
        assert!(usage_of(&[]).is_err());
    }
}
