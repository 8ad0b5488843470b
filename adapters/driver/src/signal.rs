//! A one-bit wake-up for the driver task: "the bus changed, drain it".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// A flag plus the waker of the one task that waits on it, as
/// `futures::task::AtomicWaker` is used: handles [`raise`](Signal::raise) it
/// after changing the bus under the lock, and the driver task
/// [`poll`](Signal::poll)s it. Raising it twice before the driver looks
/// wakes the driver once.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Sets the flag and wakes the waiting task, unless the flag was already
    /// set (then the task has been woken and has yet to look).
    pub(crate) fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(waker) = waker.as_ref() {
                waker.wake_by_ref();
            }
        }
    }

    /// Takes the flag: `Ready` if it was set. The waker is registered before
    /// the flag is read, so a `raise` racing with this call is never lost.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            match waker.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        if self.raised.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Stores the task's waker in `slot`, cloning only when it changed.
pub(crate) fn store_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn raising_twice_before_the_task_looks_wakes_it_once() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let signal = Signal::default();
        assert!(signal.poll(&mut cx).is_pending());
        signal.raise();
        signal.raise();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(signal.poll(&mut cx).is_ready());
        assert!(signal.poll(&mut cx).is_pending());
        signal.raise();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
