//! [`ConnectionEvents`]: one receiver of the listener's connection events,
//! a stream over its queue in [`EventQueues`](crate::events::EventQueues).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::events::ConnectionEvent;
use crate::shared::Shared;

/// A stream of [`ConnectionEvent`]s from the moment it was created, ending
/// when the listener is closed.
///
/// Each receiver has its own queue of [`EVENT_CAPACITY`](crate::EVENT_CAPACITY) events; one that
/// falls behind loses the oldest and gets a [`ConnectionEvent::Lagged`]
/// first. A receiver does not keep the listener open. Implements
/// [`futures_core::Stream`].
pub struct ConnectionEvents {
    shared: Arc<Shared>,
    id: u64,
}

impl fmt::Debug for ConnectionEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionEvents")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ConnectionEvents {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let id = shared.lock().events.add();
        Self { shared, id }
    }

    /// Waits for the next event; `None` once the listener is closed and
    /// every event has been taken.
    ///
    /// Cancel safe: an event is taken only when this returns it.
    pub async fn recv(&mut self) -> Option<ConnectionEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event, registering the task to be woken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ConnectionEvent>> {
        self.shared.lock().events.poll_next(self.id, cx)
    }
}

impl futures_core::Stream for ConnectionEvents {
    type Item = ConnectionEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnectionEvent>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for ConnectionEvents {
    fn drop(&mut self) {
        self.shared.lock().events.remove(self.id);
    }
}
