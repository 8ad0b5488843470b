//! Who the listening session is, and the server settings it turns off for
//! itself.
//!
//! **Identity.** The bus recognises its own pings (and, for `skip_own`, its
//! own notifications) by the sender's process id. BackendKeyData cannot be
//! trusted for that: a pooler such as PgBouncer hands each client a made-up
//! pid. So the first statement of a new connection's LISTEN query is
//! `SELECT pg_backend_pid()`, whose answer is the server's own; until it
//! arrives (and if it cannot be read) the BackendKeyData pid stands in.
//!
//! **Session timeouts.** A LISTEN session is idle by nature, so a server's
//! `idle_session_timeout` would end it between pings, and the other
//! statement and transaction timeouts have no business with it either. The
//! bus turns them off for its own session with plain `SET`s (startup
//! options would be refused by PgBouncer-style poolers), sent only after
//! the first ping came back: by then the session is known to be a real,
//! unpooled one, so the settings cannot leak to other clients through a
//! transaction pooler.

use std::time::Instant;

use crate::protocol::QueryResult;

/// What the bus learned of the current connection's session; replaced
/// with a fresh one for every connection.
#[derive(Debug, Default)]
pub(crate) struct SessionFacts {
    /// The server's pid from `pg_backend_pid()`, once the LISTEN query
    /// answered.
    pub(crate) own_pid: Option<i32>,
    /// Whether the session timeouts were turned off.
    pub(crate) timeouts_off: bool,
    /// The delivery probe in progress (behind a pooler only).
    pub(crate) probe: Option<DeliveryProbe>,
    /// Whether the connection was probed already.
    pub(crate) probed: bool,
}

/// A delivery probe in progress: behind a pooler (BackendKeyData's pid is
/// not the server's), a second session NOTIFYs the ping channel with
/// `payload`. A session-mode pool delivers it; a transaction-mode pool
/// cannot, since the listener's server connection is not linked to it
/// between its transactions (its own pings can still come back, on the
/// connection it happens to hold while it sends them).
///
/// The verdict needs no timer of its own. PostgreSQL delivers a session's
/// notifications in commit order, so once the probe's NOTIFY has committed
/// (`notified_at`), the answer to any ping sent after that comes after the
/// probe's notification. A pong for such a ping with no probe before it
/// means the probe was not delivered; no pong at all is a dead connection,
/// which the ping timeout handles.
#[derive(Debug)]
pub(crate) struct DeliveryProbe {
    pub(crate) payload: String,
    /// When the probe's NOTIFY was reported committed.
    pub(crate) notified_at: Option<Instant>,
}

impl DeliveryProbe {
    /// Whether a pong for a ping sent at `ping_sent_at` proves the probe's
    /// notification is not coming.
    pub(crate) fn missed_by(&self, ping_sent_at: Instant) -> bool {
        self.notified_at.is_some_and(|at| ping_sent_at > at)
    }
}

/// Whether the connection sits behind a pooler: the pid BackendKeyData
/// gave is not the server's own.
pub(crate) fn behind_pooler(key_pid: Option<i32>, own_pid: Option<i32>) -> bool {
    matches!((key_pid, own_pid), (Some(key), Some(own)) if key != own)
}

/// A query sent only for its answer, which comes after everything the
/// server sent this session before it: it confirms a ping's verdict
/// (`ping.rs`) and makes a subscriber that joined a LISTENed channel ready.
pub(crate) const ROUND_TRIP_QUERY: &str = "SELECT 1";

/// The first statement of every LISTEN query: the server's own pid.
pub(crate) const BACKEND_PID_QUERY: &str = "SELECT pg_backend_pid()";

/// The pid in the answer to a query that began with [`BACKEND_PID_QUERY`].
pub(crate) fn backend_pid(result: &QueryResult) -> Option<i32> {
    result.rows.first()?.first()?.as_deref()?.parse().ok()
}

/// The settings to turn off, for a server reporting `server_version`.
///
/// Every name must exist on that version, or the whole `SET` query fails:
/// `idle_session_timeout` came with PostgreSQL 14, `transaction_timeout`
/// with 17. An unreadable version gets the ones every supported server has.
fn timeouts_for(server_version: Option<&str>) -> &'static [&'static str] {
    const ALL: [&str; 4] = [
        "statement_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "transaction_timeout",
    ];
    let major = server_version.and_then(|v| {
        let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        v[..digits].parse::<u32>().ok()
    });
    match major {
        Some(17..) => &ALL,
        Some(14..) => &ALL[..3],
        _ => &ALL[..2],
    }
}

/// The query that turns the session timeouts off, for a server reporting
/// `server_version`.
pub(crate) fn timeouts_off(server_version: Option<&str>) -> String {
    let mut sql = String::new();
    for name in timeouts_for(server_version) {
        if !sql.is_empty() {
            sql.push_str("; ");
        }
        sql.push_str("SET ");
        sql.push_str(name);
        sql.push_str(" = 0");
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeouts_turned_off_exist_on_the_server_version() {
        assert_eq!(
            timeouts_off(Some("13.16")),
            "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0"
        );
        assert!(timeouts_off(Some("14.1 (Debian 14.1-1)")).ends_with("idle_session_timeout = 0"));
        assert!(timeouts_off(Some("15devel")).ends_with("idle_session_timeout = 0"));
        assert!(timeouts_off(Some("17.2")).ends_with("transaction_timeout = 0"));
        assert_eq!(timeouts_off(None), timeouts_off(Some("13.0")));
        assert_eq!(timeouts_off(Some("garbage")), timeouts_off(None));
    }

    #[test]
    fn the_pid_is_read_from_the_first_row() {
        let result = |rows: Vec<Vec<Option<String>>>| QueryResult { rows };
        assert_eq!(
            backend_pid(&result(vec![vec![Some("4242".into())]])),
            Some(4242)
        );
        assert_eq!(backend_pid(&result(vec![])), None);
        assert_eq!(backend_pid(&result(vec![vec![None]])), None);
        assert_eq!(backend_pid(&result(vec![vec![Some("x".into())]])), None);
    }
}
