//! Ground truth for invariant checks: what the server committed and to whom.

use std::fmt;
use std::time::Instant;

/// The identity of one simulated connection (one backend) on a
/// [`SimServer`](super::SimServer).
///
/// Identifiers count up from 0 in accept order and are never reused, so
/// they stay valid (and answer getters) after the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// One notification the server committed, as recorded in
/// [`SimServer::sent_log`](super::SimServer::sent_log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNotification {
    /// Position in the server's commit order, from 0, without gaps.
    pub seq: u64,
    /// The committing transaction, from 0; notifications of one transaction
    /// share it (after duplicates were collapsed).
    pub txn: u64,
    /// When it was committed.
    pub committed_at: Instant,
    /// The channel, exactly as the listeners see it.
    pub channel: String,
    /// The payload.
    pub payload: String,
    /// The PID carried in the NotificationResponse.
    pub sender_pid: i32,
    /// The sending connection, or `None` for
    /// [`notify_external`](super::SimServer::notify_external).
    pub sender: Option<ConnId>,
    /// Every connection LISTENing on the channel when it was committed: the
    /// ones it was queued to, in [`ConnId`] order.
    pub listeners: Vec<ConnId>,
}

/// Counters of what a [`SimServer`](super::SimServer) has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused at accept.
    pub refused: u64,
    /// Sessions that completed authentication.
    pub sessions: u64,
    /// Query (simple protocol) messages processed.
    pub queries: u64,
    /// Execute (extended protocol) messages processed.
    pub executes: u64,
    /// Statements that ran successfully.
    pub statements: u64,
    /// Transactions committed with an effect (LISTEN, UNLISTEN or NOTIFY).
    pub commits: u64,
    /// Transactions rolled back because of an error.
    pub rollbacks: u64,
    /// ErrorResponse messages sent (ERROR and FATAL).
    pub errors: u64,
    /// Armed faults that fired.
    pub faults_fired: u64,
    /// Notifications committed (the length of the sent log).
    pub notifications: u64,
    /// NotificationResponse messages written to connections.
    pub deliveries: u64,
    /// Connections the server ended (FATAL, termination, shutdown,
    /// malformed input).
    pub server_closes: u64,
    /// CancelRequest packets received.
    pub cancel_requests: u64,
}
