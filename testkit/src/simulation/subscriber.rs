//! The reference model of one subscriber: when it was owed notifications,
//! and the running check of what it drained (invariants 1–4 and 6).

use pgnotify_core::bus::{Consumption, EventBatch, SubscriberId};
use pgnotify_core::{EndReason, Event, Gap, OverflowPolicy};

use super::check::{CheckCounts, Violation};
use super::notes::{LinkId, Notes};

/// How a simulated consumer takes its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumer {
    /// Drains everything after every step.
    Fast,
    /// Drains a few items each time virtual time advances.
    Slow,
    /// Never drains until the schedule ends.
    Never,
    /// Drains one batch each time the bus announces it
    /// (`SubscriberReadable`), and at no other time: a driver that relies
    /// on level-triggered readiness.
    Announced,
}

/// A stretch of time during which the subscriber was owed every
/// notification on its channel committed to `link`'s LISTEN: from its
/// ready point (`from`, a global note index) to `to`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) link: LinkId,
    pub(crate) from: usize,
    pub(crate) to: Option<usize>,
}

/// One subscriber as the model sees it.
#[derive(Debug)]
pub(crate) struct SubModel {
    pub(crate) id: SubscriberId,
    pub(crate) channel: String,
    pub(crate) policy: OverflowPolicy,
    pub(crate) capacity: usize,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) consumer: Consumer,
    pub(crate) batch: usize,
    /// The first note it could receive: the first one the bus had not read
    /// from its connection when `subscribe` was called.
    pub(crate) subscribed_at: usize,
    pub(crate) ready: bool,
    pub(crate) windows: Vec<Window>,
    pub(crate) ended: Option<EndReason>,
    pub(crate) unsubscribed: bool,
    /// Its stream ended and everything was drained.
    pub(crate) finished: bool,
    /// Connections it was ready on that were lost.
    pub(crate) outages: u32,
    // The transcript so far.
    last: Option<(usize, LinkId)>,
    overflow: u64,
    reconnect: Option<u64>,
    last_reconnect: u64,
    pub(crate) delivered: u64,
    recent: Vec<String>,
    /// A consumer that takes lent batches (as the driver's `Subscription`
    /// does) and consumes them a few items at a time, reporting each.
    pub(crate) lending: Option<Lending>,
}

/// A lending consumer's batch not yet consumed, and its report channel.
#[derive(Debug)]
pub(crate) struct Lending {
    pub(crate) held: EventBatch,
    pub(crate) consumption: Consumption,
}

impl SubModel {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: SubscriberId,
        channel: String,
        policy: OverflowPolicy,
        capacity: usize,
        max_bytes: Option<usize>,
        consumer: Consumer,
        batch: usize,
        subscribed_at: usize,
    ) -> Self {
        Self {
            id,
            channel,
            policy,
            capacity,
            max_bytes,
            consumer,
            batch,
            subscribed_at,
            ready: false,
            windows: Vec::new(),
            ended: None,
            unsubscribed: false,
            finished: false,
            outages: 0,
            last: None,
            overflow: 0,
            reconnect: None,
            last_reconnect: 0,
            delivered: 0,
            recent: Vec::new(),
            lending: None,
        }
    }

    /// Subscribed and not ended: notifications may still come.
    pub(crate) fn live(&self) -> bool {
        !self.unsubscribed && self.ended.is_none()
    }

    /// The open window, if the subscriber is owed notifications now.
    pub(crate) fn open_window(&self) -> Option<&Window> {
        self.windows.last().filter(|w| w.to.is_none())
    }

    pub(crate) fn open(&mut self, link: LinkId, from: usize) {
        self.close(from);
        self.windows.push(Window {
            link,
            from,
            to: None,
        });
    }

    pub(crate) fn close(&mut self, to: usize) {
        if let Some(w) = self.windows.last_mut()
            && w.to.is_none()
        {
            w.to = Some(to);
        }
    }

    /// The most notifications its queue may hold: the capacity, or under
    /// `Backpressure` the documented overshoot of one read.
    pub(crate) fn item_bound(&self, chunk_notifications: u64) -> u64 {
        match self.policy {
            // It keeps its newest even while the consumer holds one.
            OverflowPolicy::KeepLatest if self.lending.is_some() => 2,
            OverflowPolicy::KeepLatest => 1,
            // Reading stops once full, but the chunk being read is pushed
            // whole (`capacity - 1 + n`), and a new connection is read while
            // full until its LISTENs are acknowledged (`capacity + n`).
            // An `Absorb` queue holds like `Backpressure` until released,
            // then takes nothing more while full.
            OverflowPolicy::Backpressure | OverflowPolicy::Absorb => {
                self.capacity as u64 + chunk_notifications.max(1)
            }
            _ => self.capacity as u64,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} on {:?} ({:?}, capacity {}{}), recent items [{}]",
            self.id,
            self.channel,
            self.policy,
            self.capacity,
            self.max_bytes
                .map(|b| format!(", {b} bytes"))
                .unwrap_or_default(),
            self.recent.join(", ")
        )
    }

    fn remember(&mut self, item: String) {
        if self.recent.len() == 16 {
            self.recent.remove(0);
        }
        self.recent.push(item);
    }

    /// Notifications owed to it on `link` with a global index in `lo..hi`.
    fn owed(&self, notes: &Notes, link: LinkId, lo: usize, hi: usize) -> (u64, Vec<usize>) {
        let mut count = 0;
        let mut list = Vec::new();
        for w in self.windows.iter().filter(|w| w.link == link) {
            let a = lo.max(w.from);
            let b = hi.min(w.to.unwrap_or(usize::MAX));
            count += notes.count_written(link, &self.channel, a, b);
            if list.len() < 12 {
                list.extend(notes.list_written(link, &self.channel, a, b));
            }
        }
        (count, list)
    }

    /// Checks one drained batch: order, gaps, counts (invariants 1–3), and
    /// its size (invariant 6, when the batch emptied the queue).
    pub(crate) fn take_batch(
        &mut self,
        notes: &Notes,
        batch: &[Event],
        emptied: bool,
        generation: u64,
        chunk_notifications: u64,
        checks: &mut CheckCounts,
    ) -> Result<(), Violation> {
        if self.unsubscribed && !batch.is_empty() {
            return Err(Violation::new(
                4,
                format!(
                    "expected nothing after unsubscribe, got {} items for {}",
                    batch.len(),
                    self.describe()
                ),
            ));
        }
        checks.hit(4);
        let mut notifications = 0u64;
        let mut bytes = 0usize;
        for event in batch {
            match event {
                Event::Notification(n) => {
                    notifications += 1;
                    bytes += n.size();
                    self.remember(format!("n:{}", short(&n.payload)));
                    self.take_notification(notes, &n.channel, &n.payload, n.process_id, checks)?;
                }
                Event::Gap(Gap::Overflow { missed }) => {
                    self.remember(format!("overflow{{{missed}}}"));
                    if *missed == 0 {
                        return Err(Violation::new(
                            2,
                            format!(
                                "expected overflow gaps to count > 0, got 0 for {}",
                                self.describe()
                            ),
                        ));
                    }
                    self.overflow += missed;
                }
                Event::Gap(Gap::Reconnected { generation: g }) => {
                    self.remember(format!("reconnected{{{g}}}"));
                    checks.hit(7);
                    if *g <= self.last_reconnect || *g > generation || *g < 2 {
                        return Err(Violation::new(
                            7,
                            format!(
                                "expected Reconnected generations increasing, after {} and at most \
                                 the bus's {generation}, got {g} for {}",
                                self.last_reconnect,
                                self.describe()
                            ),
                        ));
                    }
                    if self.outages == 0 {
                        return Err(Violation::new(
                            2,
                            format!(
                                "expected a Reconnected gap only after an outage the subscriber \
                                 lived through, got one for {}",
                                self.describe()
                            ),
                        ));
                    }
                    self.last_reconnect = *g;
                    self.reconnect = Some(*g);
                }
                other => {
                    return Err(Violation::new(
                        1,
                        format!("expected notifications and gaps, got {other:?}"),
                    ));
                }
            }
        }
        if emptied {
            checks.hit(6);
            let bound = self.item_bound(chunk_notifications);
            let holds = matches!(
                self.policy,
                OverflowPolicy::Backpressure | OverflowPolicy::Absorb
            );
            let over_bytes =
                !holds && notifications > 1 && self.max_bytes.is_some_and(|max| bytes > max);
            if notifications > bound || over_bytes {
                return Err(Violation::new(
                    6,
                    format!(
                        "expected at most {bound} queued notifications{}, drained {notifications} \
                         ({bytes} bytes) at once from {}",
                        self.max_bytes
                            .map(|b| format!(" and {b} bytes"))
                            .unwrap_or_default(),
                        self.describe()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn take_notification(
        &mut self,
        notes: &Notes,
        channel: &str,
        payload: &str,
        pid: i32,
        checks: &mut CheckCounts,
    ) -> Result<(), Violation> {
        checks.hit(1);
        let Some(gi) = notes.find(channel, payload) else {
            return Err(Violation::new(
                1,
                format!(
                    "expected only committed notifications, got {channel:?} {:?} for {}",
                    short(payload),
                    self.describe()
                ),
            ));
        };
        let note = &notes.all[gi];
        if channel != self.channel || pid != note.sender_pid {
            return Err(Violation::new(
                1,
                format!(
                    "expected channel {:?} and pid {}, got {channel:?} pid {pid} for {}",
                    self.channel,
                    note.sender_pid,
                    self.describe()
                ),
            ));
        }
        let Some(link) = note.written else {
            return Err(Violation::new(
                1,
                format!(
                    "expected a notification the server wrote to the bus's connection, got #{gi} \
                     (host {} seq {}) which it never wrote, for {}",
                    note.host,
                    note.seq,
                    self.describe()
                ),
            ));
        };
        checks.hit(2);
        let after = match self.last {
            Some((a, la)) => {
                if gi <= a {
                    return Err(Violation::new(
                        1,
                        format!(
                            "expected notifications in commit order, got #{gi} after #{a} for {}",
                            self.describe()
                        ),
                    ));
                }
                if la != link && self.reconnect.is_none() {
                    return Err(Violation::new(
                        2,
                        format!(
                            "expected a Reconnected gap between items of two connections, got \
                             #{a} from {la:?} then #{gi} from {link:?} with none, for {}",
                            self.describe()
                        ),
                    ));
                }
                if self.reconnect.is_none() {
                    let dropped = notes.count_written(link, channel, a + 1, gi);
                    if dropped != self.overflow {
                        return Err(Violation::new(
                            2,
                            format!(
                                "expected overflow gaps counting exactly the {dropped} \
                                 notifications {:?} between #{a} and #{gi}, got {} for {}",
                                notes.list_written(link, channel, a + 1, gi),
                                self.overflow,
                                self.describe()
                            ),
                        ));
                    }
                }
                a + 1
            }
            None => {
                if self.reconnect.is_none() && self.windows.first().is_some_and(|w| w.link == link)
                {
                    let could = notes.count_written(link, channel, self.subscribed_at, gi);
                    if self.overflow > could {
                        return Err(Violation::new(
                            2,
                            format!(
                                "expected overflow gaps to count at most the {could} notifications \
                                 written since subscribe, got {} before #{gi} for {}",
                                self.overflow,
                                self.describe()
                            ),
                        ));
                    }
                }
                0
            }
        };
        checks.hit(3);
        let (owed, list) = self.owed(notes, link, after, gi);
        if owed > self.overflow && (self.reconnect.is_some() || self.last.is_none()) {
            return Err(Violation::new(
                3,
                format!(
                    "expected the {owed} owed notifications {list:?} before #{gi} delivered or \
                     counted, got overflow {} for {}",
                    self.overflow,
                    self.describe()
                ),
            ));
        }
        self.last = Some((gi, link));
        self.overflow = 0;
        self.reconnect = None;
        self.delivered += 1;
        Ok(())
    }

    /// At a quiet point after a full drain, on connection `current`: every
    /// notification owed since the last item was delivered or is counted.
    pub(crate) fn check_tail(
        &self,
        notes: &Notes,
        current: LinkId,
        checks: &mut CheckCounts,
    ) -> Result<(), Violation> {
        if !self.live() || !self.ready {
            return Ok(());
        }
        checks.hit(3);
        let Some(window) = self.open_window() else {
            return Err(Violation::new(
                3,
                format!(
                    "expected a ready subscriber LISTENing on the current connection {current:?}, \
                     got none for {}",
                    self.describe()
                ),
            ));
        };
        if window.link != current {
            return Err(Violation::new(
                3,
                format!(
                    "expected the open window on {current:?}, got {:?} for {}",
                    window.link,
                    self.describe()
                ),
            ));
        }
        let end = notes.len();
        match self.last {
            Some((a, la)) if la == current && self.reconnect.is_none() => {
                checks.hit(2);
                let dropped = notes.count_written(current, &self.channel, a + 1, end);
                if dropped != self.overflow {
                    return Err(Violation::new(
                        2,
                        format!(
                            "expected trailing overflow gaps counting exactly the {dropped} \
                             notifications {:?} after #{a}, got {} for {}",
                            notes.list_written(current, &self.channel, a + 1, end),
                            self.overflow,
                            self.describe()
                        ),
                    ));
                }
            }
            last => {
                let lived_through_outage = self.windows.iter().any(|w| w.link != current);
                let from_old_link = last.is_some_and(|(_, la)| la != current);
                if (from_old_link || (last.is_none() && lived_through_outage))
                    && self.reconnect.is_none()
                {
                    return Err(Violation::new(
                        2,
                        format!(
                            "expected a Reconnected gap after the outage, got none for {}",
                            self.describe()
                        ),
                    ));
                }
                let after = last.map_or(0, |(a, _)| a + 1);
                let (owed, list) = self.owed(notes, current, after, end);
                if owed > self.overflow {
                    return Err(Violation::new(
                        3,
                        format!(
                            "expected the {owed} owed notifications {list:?} delivered or counted, \
                             got overflow {} for {}",
                            self.overflow,
                            self.describe()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn short(s: &str) -> String {
    s.chars().take(12).collect()
}
