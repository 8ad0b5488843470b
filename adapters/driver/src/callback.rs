//! Callback subscriptions: a handler run for every item of a subscription,
//! on a task of its own.
//!
//! [`Listener::subscribe_fn`] makes an ordinary [`Subscription`] and spawns
//! one task (with the listener's [`Runtime`](crate::Runtime)) that takes its
//! items and awaits `handler(item)` for each, one at a time, in order. The
//! task and the [`CallbackSubscription`] handle share a small [`Control`]:
//! the handle's stop request, the task's waker, and the task's
//! acknowledgement that it has stopped, which
//! [`unsubscribe`](CallbackSubscription::unsubscribe) waits for.
//!
//! A panic in the handler, whether while making the future or while it is
//! polled, is caught around that call alone; the panic is counted (in the
//! handle and in [`Stats::handler_panics`](crate::Stats::handler_panics)) and
//! the next item is handled as usual.

use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use pgnotify_core::{EndReason, Event, SubscribeOptions};

use crate::listener::Listener;
use crate::shared::Shared;
use crate::signal::store_waker;
use crate::subscription::{SubscribeError, Subscription};

impl<R> Listener<R> {
    /// Subscribes to `channel` and runs `handler` for every item, on a task
    /// of its own, in order and one at a time.
    ///
    /// Returns once the server has acknowledged the LISTEN, as
    /// [`subscribe`](Self::subscribe) does. The handler receives every
    /// [`Event`]: notifications and the gaps where some may be missing. It
    /// is async: the next item is handed over only when the future it
    /// returned for the previous one has completed. A synchronous handler
    /// returns a ready future (`std::future::ready(())`).
    ///
    /// A panic in the handler is caught and counted
    /// ([`CallbackSubscription::panics`], [`Stats::handler_panics`](crate::Stats::handler_panics));
    /// the subscription carries on with the next item. State the handler
    /// captured may be left half-updated by the panic.
    ///
    /// The task stops when the returned handle is unsubscribed or dropped,
    /// or when the stream ends (policy `Close`, LISTEN refused, listener
    /// closed).
    ///
    /// ```no_run
    /// # async fn example(listener: pgnotify_driver::Listener) -> Result<(), Box<dyn std::error::Error>> {
    /// use pgnotify_driver::{Event, SubscribeOptions};
    /// let jobs = listener
    ///     .subscribe_fn("jobs", SubscribeOptions::new(), |event: Event| async move {
    ///         if let Some(n) = event.notification() {
    ///             println!("job {}", n.payload);
    ///         }
    ///     })
    ///     .await?;
    /// // ... later: after this returns, the handler is not called again.
    /// jobs.unsubscribe().await;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_fn<F, Fut>(
        &self,
        channel: &str,
        options: SubscribeOptions,
        handler: F,
    ) -> Result<CallbackSubscription, SubscribeError>
    where
        F: FnMut(Event) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = self.shared();
        let subscription = Subscription::register(shared, channel, Some(options))?;
        subscription.ready().await?;
        let control = Arc::new(Control::default());
        let task = run(
            subscription,
            handler,
            Finish {
                control: control.clone(),
                reason: EndReason::BusClosed,
            },
            shared.clone(),
        );
        shared.runtime.spawn(Box::pin(task));
        Ok(CallbackSubscription {
            control,
            channel: channel.to_owned(),
        })
    }
}

/// A subscription whose items are handed to a handler on a task of its own,
/// made by [`Listener::subscribe_fn`].
///
/// # Dropping
///
/// Dropping the handle stops the task: a handler call in progress runs to
/// its end, and no further item is handed over. To know when that has
/// happened, use [`unsubscribe`](Self::unsubscribe) instead.
pub struct CallbackSubscription {
    control: Arc<Control>,
    channel: String,
}

impl fmt::Debug for CallbackSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackSubscription")
            .field("channel", &self.channel)
            .field("panics", &self.panics())
            .field("end_reason", &self.end_reason())
            .finish()
    }
}

impl CallbackSubscription {
    /// The channel this subscription listens on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// How many handler calls have panicked so far.
    ///
    /// ```no_run
    /// # fn example(sub: &pgnotify_driver::CallbackSubscription) {
    /// if sub.panics() > 0 {
    ///     eprintln!("the handler of {} panicked {} times", sub.channel(), sub.panics());
    /// }
    /// # }
    /// ```
    pub fn panics(&self) -> u64 {
        self.control.panics.load(Ordering::Relaxed)
    }

    /// Why the task stopped, once it has; `None` while it runs.
    ///
    /// [`EndReason::Unsubscribed`] after [`unsubscribe`](Self::unsubscribe);
    /// otherwise the reason the stream ended.
    ///
    /// ```no_run
    /// # fn example(sub: &pgnotify_driver::CallbackSubscription) {
    /// if let Some(reason) = sub.end_reason() {
    ///     eprintln!("{} stopped: {reason}", sub.channel());
    /// }
    /// # }
    /// ```
    pub fn end_reason(&self) -> Option<EndReason> {
        self.control.lock().finished
    }

    /// Stops the task and waits until it has acknowledged: when this
    /// returns, the handler is not running and will not be called again.
    /// A handler call in progress is awaited to its end.
    ///
    /// Do not await this from inside the subscription's own handler (it
    /// would wait for itself); drop the handle there instead.
    ///
    /// ```no_run
    /// # async fn example(sub: pgnotify_driver::CallbackSubscription) {
    /// sub.unsubscribe().await;
    /// # }
    /// ```
    pub async fn unsubscribe(self) {
        self.control.request_stop();
        poll_fn(|cx| {
            let mut state = self.control.lock();
            if state.finished.is_some() {
                return Poll::Ready(());
            }
            if !state.stop_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                state.stop_waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }
}

impl Drop for CallbackSubscription {
    fn drop(&mut self) {
        self.control.request_stop();
    }
}

/// What the handle and its task share.
#[derive(Debug, Default)]
struct Control {
    state: Mutex<ControlState>,
    panics: AtomicU64,
}

#[derive(Debug, Default)]
struct ControlState {
    /// The handle asked the task to stop.
    stop: bool,
    /// The task, while it waits for an item.
    task: Option<Waker>,
    /// The task has stopped, and why.
    finished: Option<EndReason>,
    /// Tasks in `unsubscribe`.
    stop_waiters: Vec<Waker>,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, ControlState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_stop(&self) {
        let task = {
            let mut state = self.lock();
            state.stop = true;
            state.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
    }

    /// Whether a stop was requested; registers the task to be woken when
    /// one is.
    fn poll_stop(&self, cx: &Context<'_>) -> bool {
        let mut state = self.lock();
        if !state.stop {
            store_waker(&mut state.task, cx);
        }
        state.stop
    }
}

/// Marks the task finished when it ends, however it ends (also when its
/// runtime drops it), and wakes `unsubscribe`.
struct Finish {
    control: Arc<Control>,
    reason: EndReason,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let waiters = {
            let mut state = self.control.lock();
            state.finished = Some(self.reason);
            state.task = None;
            std::mem::take(&mut state.stop_waiters)
        };
        for waiter in waiters {
            waiter.wake();
        }
    }
}

/// What the task does next.
enum Next {
    Item(Event),
    Stop,
    End(EndReason),
}

/// The task: hands each item to `handler`, until stopped or the stream ends.
async fn run<F, Fut>(
    mut subscription: Subscription,
    mut handler: F,
    mut finish: Finish,
    shared: Arc<Shared>,
) where
    F: FnMut(Event) -> Fut,
    Fut: Future<Output = ()>,
{
    subscription.track_consumption();
    finish.reason = loop {
        let next = poll_fn(|cx| {
            // Checked before every item, so a stop is honoured between two
            // handler calls even when a batch is buffered.
            if finish.control.poll_stop(cx) {
                return Poll::Ready(Next::Stop);
            }
            subscription.poll_recv_held(cx).map(|item| match item {
                Some(event) => Next::Item(event),
                None => Next::End(subscription.end_reason().unwrap_or(EndReason::BusClosed)),
            })
        })
        .await;
        match next {
            Next::Item(event) => {
                // The item counts against the capacity until its handler
                // is done with it.
                let consumed = event.notification().map(|n| n.size());
                if !call_catching_panics(&mut handler, event).await {
                    finish.control.panics.fetch_add(1, Ordering::Relaxed);
                    shared.lock().bus.record_handler_panic();
                }
                subscription.consumed_size(consumed);
            }
            Next::Stop => break EndReason::Unsubscribed,
            Next::End(reason) => break reason,
        }
    };
    // Unsubscribe before acknowledging, so nothing more is queued for it.
    drop(subscription);
    drop(finish);
}

/// Runs `handler(event)` to completion; `false` if it panicked, while making
/// the future or while polling it.
async fn call_catching_panics<F, Fut>(handler: &mut F, event: Event) -> bool
where
    F: FnMut(Event) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(future) = catch_unwind(AssertUnwindSafe(|| handler(event))) else {
        return false;
    };
    let mut future = std::pin::pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(())) => Poll::Ready(true),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_panic) => Poll::Ready(false),
        },
    )
    .await
}
