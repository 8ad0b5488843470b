//! The publish pipeline: publishes waiting to be sent.
//!
//! Publishes in flight are tracked with the other commands (see
//! `Bus::commands`); this module holds the ones not sent yet: those that
//! arrived while no connection was up, each with the deadline after which
//! it fails, and (with group commit) those that arrived while another
//! publish was in flight, to go out together when it completes
//! (`group.rs`).

use std::collections::VecDeque;
use std::time::Instant;

use crate::bus::error::NotifyError;
use crate::bus::output::PublishId;

/// A publish not sent yet.
#[derive(Debug)]
pub(crate) struct WaitingPublish {
    pub(crate) id: PublishId,
    /// The (channel, payload) pairs: one for `notify`, any number for
    /// `notify_many`.
    pub(crate) items: Vec<(String, String)>,
    /// A `notify_many` batch: a transaction of its own, all or nothing.
    pub(crate) atomic: bool,
    pub(crate) queued_at: Instant,
    pub(crate) deadline: Instant,
}

/// Publishes waiting for a connection, oldest first.
#[derive(Debug, Default)]
pub(crate) struct PublishQueue {
    next_id: u64,
    waiting: VecDeque<WaitingPublish>,
}

impl PublishQueue {
    pub(crate) fn next_id(&mut self) -> PublishId {
        self.next_id += 1;
        PublishId(self.next_id)
    }

    pub(crate) fn push(&mut self, publish: WaitingPublish) {
        self.waiting.push_back(publish);
    }

    /// Puts `publishes` back ahead of everything waiting, in their order.
    pub(crate) fn push_front(&mut self, publishes: Vec<WaitingPublish>) {
        for publish in publishes.into_iter().rev() {
            self.waiting.push_front(publish);
        }
    }

    /// Takes every waiting publish, oldest first, to send now.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = WaitingPublish> + '_ {
        self.waiting.drain(..)
    }

    /// Removes the publishes whose deadline has passed, with their error.
    pub(crate) fn expire(&mut self, now: Instant, mut done: impl FnMut(PublishId, NotifyError)) {
        // Deadlines grow with arrival order (same timeout for all), so the
        // expired ones are at the front.
        while let Some(front) = self.waiting.front() {
            if now < front.deadline {
                break;
            }
            let p = self.waiting.pop_front().expect("front exists");
            done(
                p.id,
                NotifyError::NotConnected {
                    waited: now - p.queued_at,
                },
            );
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.waiting.front().map(|p| p.deadline)
    }
}
