//! What the driver task and the handles share: the bus behind one mutex,
//! with the wakers and result slots of everyone waiting on it.
//!
//! Handles ([`Listener`](crate::Listener), [`Subscription`](crate::Subscription),
//! [`ConnectionEvents`](crate::ConnectionEvents)) apply their commands to the
//! bus directly under the lock and then raise the driver's [`Signal`] so that
//! whatever the command produced (a LISTEN, a NOTIFY) is written out. The
//! driver, under the same lock, feeds the bus its inputs, drains its outputs
//! and routes every [`BusEvent`] to the slot it concerns
//! ([`State::dispatch`]); the wakers it collects are woken after unlocking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};
use std::time::Instant;

use pgnotify_core::bus::{Bus, BusError, BusEvent, NotifyError, PublishId, SubscriberId};

use crate::events::{ConnectionEvent, EventQueues};
use crate::runtime::Runtime;
use crate::signal::Signal;

/// The bus, its waiters, and the driver's wake-up signal.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    driver: Signal,
    pub(crate) runtime: Arc<dyn Runtime>,
}

impl Shared {
    pub(crate) fn new(bus: Bus, runtime: Arc<dyn Runtime>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::new(bus)),
            driver: Signal::default(),
            runtime,
        })
    }

    /// Locks the state. A panic while it was held leaves the bus as it was
    /// at the panic; carrying on beats poisoning every handle.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the driver that the bus changed outside its own loop.
    pub(crate) fn wake_driver(&self) {
        self.driver.raise();
    }

    /// Runs an application command on the bus, then wakes the driver so its
    /// output goes out.
    pub(crate) fn command<T>(&self, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        let result = f(&mut self.lock(), self.runtime.now());
        self.wake_driver();
        result
    }

    pub(crate) fn driver_signal(&self) -> &Signal {
        &self.driver
    }
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) bus: Bus,
    pub(crate) subscribers: HashMap<SubscriberId, SubscriberSlot>,
    pub(crate) publishes: HashMap<PublishId, PublishSlot>,
    pub(crate) events: EventQueues,
    pub(crate) lifecycle: Lifecycle,
}

/// A subscription's (or a pending `subscribe`'s) waker. Whether it is
/// ready (`Bus::was_ready`) or readable (`Bus::is_readable`) is the bus's
/// to say: the slot only knows whom to wake.
#[derive(Debug, Default)]
pub(crate) struct SubscriberSlot {
    pub(crate) waker: Option<Waker>,
}

/// A `notify` call waiting for its result.
#[derive(Debug, Default)]
pub(crate) struct PublishSlot {
    pub(crate) waker: Option<Waker>,
    pub(crate) result: Option<Result<(), NotifyError>>,
}

/// The listener's life as `connect` and `close` wait on it: what the bus
/// does not know (its events' errors kept for the waiters, the handles and
/// the task). Whether a connection was ever up is the bus's
/// (`Bus::generation` > 0).
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// The first round of attempts failed for a reason retrying will not fix.
    pub(crate) startup_error: Option<BusError>,
    /// The latest connection failure.
    pub(crate) last_error: Option<BusError>,
    /// Attempts that failed before the first connection was up.
    pub(crate) failed_before_connected: u32,
    /// `close` was called (or every handle is gone): nothing new is accepted.
    pub(crate) closing: bool,
    /// The driver task has ended and dropped the socket.
    pub(crate) driver_stopped: bool,
    /// Every `Listener` handle has been dropped.
    pub(crate) listeners_gone: bool,
    /// Tasks in `connect` or `close`.
    pub(crate) waiters: Vec<Waker>,
}

impl State {
    fn new(bus: Bus) -> Self {
        Self {
            bus,
            subscribers: HashMap::new(),
            publishes: HashMap::new(),
            events: EventQueues::default(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// Closes the bus (`UNLISTEN *`, Terminate) unless it is closing already.
    pub(crate) fn close(&mut self, now: Instant) {
        if !self.lifecycle.closing {
            self.lifecycle.closing = true;
            self.bus.close(now);
        }
    }

    /// Closes the bus once no `Listener` and no `Subscription` is left.
    pub(crate) fn close_if_unused(&mut self, now: Instant) {
        if self.lifecycle.listeners_gone && self.subscribers.is_empty() {
            self.close(now);
        }
    }

    /// Routes one bus event to whoever waits on it, collecting the wakers.
    pub(crate) fn dispatch(&mut self, event: BusEvent, wake: &mut Vec<Waker>) {
        match event {
            // A stale announcement (the subscription took the items under
            // the lock since) wakes no one: the bus says what is queued now.
            BusEvent::SubscriberReadable(id) if !self.bus.is_readable(id) => {}
            BusEvent::SubscriberReady(id)
            | BusEvent::SubscriberReadable(id)
            | BusEvent::SubscriberEnded(id, _) => {
                if let Some(slot) = self.subscribers.get_mut(&id) {
                    wake.extend(slot.waker.take());
                }
            }
            BusEvent::PublishDone(id, result) => {
                // No slot: the caller stopped waiting (dropped its future).
                if let Some(slot) = self.publishes.get_mut(&id) {
                    slot.result = Some(result);
                    wake.extend(slot.waker.take());
                }
            }
            BusEvent::Connected { generation } => {
                self.wake_lifecycle(wake);
                self.events
                    .push(ConnectionEvent::Connected { generation }, wake);
            }
            BusEvent::Disconnected { error } => {
                self.lifecycle.last_error = Some(error.clone());
                self.events
                    .push(ConnectionEvent::Disconnected { error }, wake);
            }
            BusEvent::ConnectFailed {
                error,
                first_attempt,
            } => {
                if self.bus.generation() == 0 {
                    self.lifecycle.failed_before_connected += 1;
                    if first_attempt && !error.is_transient() {
                        self.lifecycle.startup_error = Some(error.clone());
                    }
                }
                self.lifecycle.last_error = Some(error.clone());
                self.wake_lifecycle(wake);
                self.events
                    .push(ConnectionEvent::ConnectFailed { error }, wake);
            }
            BusEvent::Failed { error } => {
                self.lifecycle.last_error = Some(error.clone());
                self.events.push(ConnectionEvent::Stopped { error }, wake);
            }
            BusEvent::Closed => {
                self.lifecycle.closing = true;
                self.wake_lifecycle(wake);
                self.events.end(wake);
            }
            // Events added to the bus later concern no one here yet.
            _ => {}
        }
    }

    /// Wakes every task in `connect` or `close`.
    pub(crate) fn wake_lifecycle(&mut self, wake: &mut Vec<Waker>) {
        wake.append(&mut self.lifecycle.waiters);
    }

    /// Registers a task in `connect` or `close`.
    pub(crate) fn wait_lifecycle(&mut self, cx: &Context<'_>) {
        register(&mut self.lifecycle.waiters, cx);
    }
}

/// Adds the task's waker to `waiters` unless it is there already.
fn register(waiters: &mut Vec<Waker>, cx: &Context<'_>) {
    if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
        waiters.push(cx.waker().clone());
    }
}
