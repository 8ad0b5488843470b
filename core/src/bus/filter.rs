//! Per-subscriber filters, applied in the fan-out before anything is queued.
//!
//! A filter decides, for each notification on its subscriber's channel,
//! whether the notification is queued at all. A notification it drops never
//! takes room in the queue, so it can neither push another one out nor be
//! counted in a [`Gap::Overflow`](crate::Gap::Overflow): overflow counts stay
//! exact for what the filter keeps.
//!
//! The fan-out pays one branch per subscriber without a filter (the
//! subscriber's `Option<Filter>` is `None`). The predicate borrows the shared
//! notification and allocates nothing; a subscriber that keeps all of a run's
//! notifications shares the channel's segment, and one that keeps only some
//! queues a segment of its own holding those (one allocation per run).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::Notification;
use crate::bus::stats::Stats;

/// The signature of a subscriber's filter predicate: `true` keeps the
/// notification, `false` drops it before it is queued.
///
/// It sees the whole [`Notification`]: channel, payload and the sending
/// backend's process id.
pub(crate) type Predicate = dyn Fn(&Notification) -> bool + Send + Sync;

/// What one subscriber lets through: an optional predicate and whether the
/// bus's own notifications are skipped.
#[derive(Clone, Default)]
pub(crate) struct Filter {
    predicate: Option<Arc<Predicate>>,
    skip_own: bool,
}

impl Filter {
    pub(crate) fn set_predicate(&mut self, predicate: Arc<Predicate>) {
        self.predicate = Some(predicate);
    }

    pub(crate) fn set_skip_own(&mut self) {
        self.skip_own = true;
    }

    pub(crate) fn skips_own(&self) -> bool {
        self.skip_own
    }

    pub(crate) fn has_predicate(&self) -> bool {
        self.predicate.is_some()
    }

    /// Whether this filter lets everything through (and so need not be
    /// consulted at all).
    pub(crate) fn is_empty(&self) -> bool {
        self.predicate.is_none() && !self.skip_own
    }

    /// Whether `n` is to be queued. `own_pid` is the backend pid of the
    /// connection it arrived on.
    ///
    /// A predicate that panics keeps the notification (losing it silently
    /// would break invariant 2) and is counted in `stats.filter_panics`.
    /// With `panic = "abort"` a panicking predicate aborts the process, as
    /// any panic does.
    pub(crate) fn keeps(&self, n: &Notification, own_pid: Option<i32>, stats: &mut Stats) -> bool {
        if self.skip_own && own_pid == Some(n.process_id) {
            return false;
        }
        let Some(predicate) = &self.predicate else {
            return true;
        };
        match catch_unwind(AssertUnwindSafe(|| predicate(n))) {
            Ok(keep) => keep,
            Err(_panic) => {
                stats.filter_panics += 1;
                true
            }
        }
    }
}

impl PartialEq for Filter {
    /// Two filters are equal when they skip the same own notifications and
    /// share the same predicate (the same `Arc`); closures cannot be compared.
    fn eq(&self, other: &Self) -> bool {
        self.skip_own == other.skip_own
            && match (&self.predicate, &other.predicate) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Filter {}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("predicate", &self.predicate.as_ref().map(|_| "<fn>"))
            .field("skip_own", &self.skip_own)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedStr;

    fn notification(payload: &str, pid: i32) -> Notification {
        Notification {
            channel: SharedStr::from("jobs"),
            payload: SharedStr::from(payload),
            process_id: pid,
        }
    }

    #[test]
    fn an_empty_filter_keeps_everything() {
        let filter = Filter::default();
        let mut stats = Stats::default();
        assert!(filter.is_empty());
        assert!(filter.keeps(&notification("x", 7), Some(7), &mut stats));
    }

    #[test]
    fn skip_own_drops_only_the_current_connections_pid() {
        let mut filter = Filter::default();
        filter.set_skip_own();
        let mut stats = Stats::default();
        assert!(!filter.keeps(&notification("mine", 7), Some(7), &mut stats));
        assert!(filter.keeps(&notification("theirs", 8), Some(7), &mut stats));
        // No connection pid known: nothing is ours.
        assert!(filter.keeps(&notification("unknown", 7), None, &mut stats));
    }

    #[test]
    fn the_predicate_sees_channel_payload_and_pid() {
        let mut filter = Filter::default();
        filter.set_predicate(Arc::new(|n: &Notification| {
            &*n.channel == "jobs" && n.payload.starts_with("keep") && n.process_id == 9
        }));
        let mut stats = Stats::default();
        assert!(filter.keeps(&notification("keep 1", 9), None, &mut stats));
        assert!(!filter.keeps(&notification("keep 2", 10), None, &mut stats));
        assert!(!filter.keeps(&notification("drop", 9), None, &mut stats));
    }

    #[test]
    fn a_panicking_predicate_keeps_the_notification_and_is_counted() {
        let mut filter = Filter::default();
        filter.set_predicate(Arc::new(|n: &Notification| {
            assert!(&*n.payload != "boom", "the predicate rejects its input");
            false
        }));
        let mut stats = Stats::default();
        assert!(!filter.keeps(&notification("fine", 1), None, &mut stats));
        assert!(filter.keeps(&notification("boom", 1), None, &mut stats));
        assert_eq!(stats.filter_panics, 1);
    }

    #[test]
    fn filters_compare_equal_only_when_they_share_the_predicate() {
        let predicate: Arc<Predicate> = Arc::new(|_: &Notification| true);
        let mut a = Filter::default();
        a.set_predicate(predicate.clone());
        let mut b = Filter::default();
        b.set_predicate(predicate);
        let mut c = Filter::default();
        c.set_predicate(Arc::new(|_: &Notification| true));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, Filter::default());
    }
}
