//! Connection events: what a [`ConnectionEvent`] is, and the bounded queue
//! each receiver ([`ConnectionEvents`](crate::ConnectionEvents), made by
//! [`Listener::connection_events`](crate::Listener::connection_events)) has
//! under the listener's lock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::task::{Context, Poll, Waker};

use pgnotify_core::bus::BusError;

use crate::signal::store_waker;

/// How many events one [`ConnectionEvents`](crate::ConnectionEvents) holds before the oldest are
/// dropped (and reported as [`ConnectionEvent::Lagged`]).
pub const EVENT_CAPACITY: usize = 64;

/// A change in the listener's connection, as seen by
/// [`ConnectionEvents`](crate::ConnectionEvents).
///
/// Subscriptions learn about outages in-band ([`Gap::Reconnected`](pgnotify_core::Gap));
/// these events are for logs, metrics and health checks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connection is up and every channel is LISTENed on it.
    Connected {
        /// Increases by one per successful connection, starting at 1.
        generation: u64,
    },
    /// The connection was lost; the listener reconnects by itself.
    Disconnected {
        /// Why it was lost.
        error: BusError,
    },
    /// A connection attempt failed; the listener retries with backoff.
    ConnectFailed {
        /// Why it failed.
        error: BusError,
    },
    /// The listener stopped for good on an error reconnecting cannot fix
    /// (LISTEN through a transaction-pooling proxy, with the default
    /// `transaction_pooler=fail`). Every subscription ends with
    /// [`EndReason::Failed`](pgnotify_core::EndReason::Failed); this is
    /// the last event.
    Stopped {
        /// Why.
        error: BusError,
    },
    /// This receiver fell behind: `missed` events were dropped before the
    /// ones that follow.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

impl fmt::Display for ConnectionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected { generation } => write!(f, "connected (generation {generation})"),
            Self::Disconnected { error } => write!(f, "disconnected: {error}"),
            Self::ConnectFailed { error } => write!(f, "connection attempt failed: {error}"),
            Self::Stopped { error } => write!(f, "stopped: {error}"),
            Self::Lagged { missed } => write!(f, "{missed} connection events were missed"),
        }
    }
}

/// One receiver's queue.
#[derive(Debug, Default)]
struct EventQueue {
    items: VecDeque<ConnectionEvent>,
    missed: u64,
    waker: Option<Waker>,
}

/// Every live receiver's queue, by receiver id.
#[derive(Debug, Default)]
pub(crate) struct EventQueues {
    next_id: u64,
    queues: HashMap<u64, EventQueue>,
    ended: bool,
}

impl EventQueues {
    pub(crate) fn add(&mut self) -> u64 {
        self.next_id += 1;
        self.queues.insert(self.next_id, EventQueue::default());
        self.next_id
    }

    /// Appends `event` to every receiver, dropping (and counting) the oldest
    /// where a queue is full.
    pub(crate) fn push(&mut self, event: ConnectionEvent, wake: &mut Vec<Waker>) {
        for queue in self.queues.values_mut() {
            if queue.items.len() == EVENT_CAPACITY {
                queue.items.pop_front();
                queue.missed += 1;
            }
            queue.items.push_back(event.clone());
            wake.extend(queue.waker.take());
        }
    }

    /// The listener is closed: every stream ends once drained.
    pub(crate) fn end(&mut self, wake: &mut Vec<Waker>) {
        self.ended = true;
        wake.extend(self.queues.values_mut().filter_map(|q| q.waker.take()));
    }
}

impl EventQueues {
    /// The next event for receiver `id`: a `Lagged` first if it lost some,
    /// `None` once the listener is closed and its queue is empty (or the
    /// receiver is gone); otherwise pending, with the task's waker kept.
    pub(crate) fn poll_next(&mut self, id: u64, cx: &Context<'_>) -> Poll<Option<ConnectionEvent>> {
        let ended = self.ended;
        let Some(queue) = self.queues.get_mut(&id) else {
            return Poll::Ready(None);
        };
        if queue.missed > 0 {
            let missed = std::mem::take(&mut queue.missed);
            return Poll::Ready(Some(ConnectionEvent::Lagged { missed }));
        }
        if let Some(event) = queue.items.pop_front() {
            return Poll::Ready(Some(event));
        }
        if ended {
            return Poll::Ready(None);
        }
        store_waker(&mut queue.waker, cx);
        Poll::Pending
    }

    /// Forgets receiver `id`.
    pub(crate) fn remove(&mut self, id: u64) {
        self.queues.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let mut queues = EventQueues::default();
        let id = queues.add();
        let mut wake = Vec::new();
        for generation in 1..=(EVENT_CAPACITY as u64 + 6) {
            queues.push(ConnectionEvent::Connected { generation }, &mut wake);
        }
        let queue = &queues.queues[&id];
        assert_eq!(queue.missed, 6);
        assert_eq!(
            queue.items.front(),
            Some(&ConnectionEvent::Connected { generation: 7 })
        );
        assert_eq!(queue.items.len(), EVENT_CAPACITY);
    }

    #[test]
    fn each_receiver_gets_every_event_pushed_after_it_was_added() {
        let mut queues = EventQueues::default();
        let mut wake = Vec::new();
        let early = queues.add();
        queues.push(ConnectionEvent::Connected { generation: 1 }, &mut wake);
        let late = queues.add();
        queues.push(ConnectionEvent::Connected { generation: 2 }, &mut wake);
        assert_eq!(queues.queues[&early].items.len(), 2);
        assert_eq!(
            queues.queues[&late].items,
            [ConnectionEvent::Connected { generation: 2 }]
        );
    }
}
