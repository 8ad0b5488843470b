//! Errors a test arms in advance, fired by the next matching operation.

use super::error::SqlError;

/// Where an armed error fires; see [`SimServer::fail_next`](super::SimServer::fail_next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
    /// The next StartupMessage (before authentication). PostgreSQL makes
    /// every startup error FATAL, and so does the simulation.
    Startup,
    /// The next Query or Execute message, before any statement runs.
    Query,
    /// The next LISTEN statement.
    Listen,
    /// The next UNLISTEN statement (either form).
    Unlisten,
    /// The next NOTIFY statement or `pg_notify` call.
    Notify,
    /// The next commit of a transaction that LISTENs, UNLISTENs or
    /// NOTIFYs, as when the notification queue is full (54000): the whole
    /// transaction is rolled back.
    Commit,
}

/// The armed errors in the order they were armed.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: Vec<(FaultPoint, SqlError)>,
    fired: u64,
}

impl Faults {
    pub(crate) fn arm(&mut self, point: FaultPoint, error: SqlError) {
        self.armed.push((point, error));
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }

    pub(crate) fn armed(&self) -> usize {
        self.armed.len()
    }

    pub(crate) fn fired(&self) -> u64 {
        self.fired
    }

    /// Takes the oldest error armed at `point`, if any.
    pub(crate) fn take(&mut self, point: FaultPoint) -> Option<SqlError> {
        let index = self.armed.iter().position(|(p, _)| *p == point)?;
        self.fired += 1;
        Some(self.armed.remove(index).1)
    }
}
