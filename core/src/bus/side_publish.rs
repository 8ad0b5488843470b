//! Publishing beside the listening connection while reading is paused.
//!
//! While a full `Absorb` or `Backpressure` subscriber pauses reading, the
//! answer to a publish sent on the listening connection waits behind the
//! notifications nobody reads. A consumer that publishes from the loop that
//! drains its own subscription (take a job, publish that it is done) would
//! wait for itself: with the default `Absorb` until its stall limit dropped
//! notifications, with `Backpressure` for ever. So while reading is paused
//! the bus sends publishes on a short second session instead
//! ([`Action::SidePublish`](crate::bus::Action::SidePublish)), reported back
//! through [`Bus::handle_side_publish`](crate::bus::Bus::handle_side_publish).
//!
//! - One side transaction at a time, so calls keep their order; group
//!   commit gathers what arrives meanwhile into the next one.
//! - A publish already sent on the listening connection stays there: it may
//!   have committed, so it is never sent twice. It completes when reading
//!   resumes.
//! - Not while a subscriber skips the listener's own notifications
//!   (`skip_own`): those of a second session carry another pid, so they
//!   would reach it.
//! - Only with a driver that runs the action: it says so with
//!   [`Bus::enable_side_publishes`](crate::bus::Bus::enable_side_publishes).
//! - A side session that cannot be opened (the server is at
//!   `max_connections`, say) sends its publishes on the listening
//!   connection after all, as before, and no side session is tried again
//!   until reading resumes.

use std::collections::HashMap;

use crate::bus::output::SessionTarget;
use crate::bus::publish::WaitingPublish;
use crate::protocol::ServerError;

/// Identifies one [`SidePublish`] until its outcome is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SidePublishId(pub(crate) u64);

/// Publishes to send in one transaction on a short second session, carried
/// by [`Action::SidePublish`](crate::bus::Action::SidePublish).
///
/// Run [`statement`](Self::statement) for each item, in order, in one
/// transaction, then report with
/// [`Bus::handle_side_publish`](crate::bus::Bus::handle_side_publish).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SidePublish {
    /// What to report the outcome under.
    pub id: SidePublishId,
    /// Where and how to open the session (the listener's host and
    /// credentials).
    pub session: SessionTarget,
    /// The (channel, payload) pairs, validated already.
    pub items: Vec<(String, String)>,
}

impl SidePublish {
    /// The statement to run once per item, with the channel and the
    /// payload as its two text parameters (what the listening connection
    /// sends too).
    pub fn statement(&self) -> &'static str {
        crate::protocol::PUBLISH_SQL
    }
}

/// How a [`SidePublish`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SidePublishOutcome {
    /// The transaction committed.
    Committed,
    /// The server refused it; nothing was delivered.
    Refused(ServerError),
    /// The session could not be opened, so nothing was sent: the bus sends
    /// the publishes on the listening connection instead.
    NotSent(String),
    /// The session was lost after the transaction was sent: it may or may
    /// not have committed.
    Lost(String),
}

/// The side transactions in flight, and whether side sessions work.
#[derive(Debug, Default)]
pub(crate) struct SidePublishes {
    /// The driver runs [`SidePublish`] actions (off until it says so: a
    /// driver that ignored them would leave publishes waiting for ever).
    enabled: bool,
    next_id: u64,
    in_flight: HashMap<SidePublishId, Vec<WaitingPublish>>,
    /// A side session could not be opened during this pause.
    unavailable: bool,
}

impl SidePublishes {
    /// Whether a side transaction is in flight (the next one waits for it).
    pub(crate) fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Whether side sessions are worth trying.
    pub(crate) fn available(&self) -> bool {
        self.enabled && !self.unavailable
    }

    pub(crate) fn enable(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Records `publishes` as sent in a new side transaction.
    pub(crate) fn start(&mut self, publishes: Vec<WaitingPublish>) -> SidePublishId {
        self.next_id += 1;
        let id = SidePublishId(self.next_id);
        self.in_flight.insert(id, publishes);
        id
    }

    /// The publishes of side transaction `id`, which ended; `None` if it
    /// is unknown (reported twice, or failed at close already).
    pub(crate) fn finish(&mut self, id: SidePublishId) -> Option<Vec<WaitingPublish>> {
        self.in_flight.remove(&id)
    }

    /// A side session could not be opened: none is tried again until
    /// reading resumes.
    pub(crate) fn mark_unavailable(&mut self) {
        self.unavailable = true;
    }

    /// Reading resumed: the next pause tries side sessions again.
    pub(crate) fn reading_resumed(&mut self) {
        self.unavailable = false;
    }

    /// Every side transaction in flight, oldest first, to fail at close.
    pub(crate) fn take_all(&mut self) -> Vec<WaitingPublish> {
        let mut all: Vec<_> = self.in_flight.drain().collect();
        all.sort_by_key(|(id, _)| *id);
        all.into_iter()
            .flat_map(|(_, publishes)| publishes)
            .collect()
    }
}
