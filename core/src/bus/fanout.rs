//! Deferred fan-out: the notifications of one run of input, collected per
//! channel and frozen into one shared segment each.
//!
//! While the bus processes the events of one input, each notification is
//! appended to its channel's pending list instead of being queued to every
//! subscriber at once. When the run ends, each touched channel's list is
//! frozen into one [`Segment`] and every subscriber of the channel queues one
//! span of it: one reference-count increment per subscriber per run, not per
//! notification. A run ends at the end of the input and before any other
//! event of the connection (a command completing, the connection failing),
//! so everything that changes who is subscribed or ready, or that pushes a
//! gap, sees the notifications before it already queued, exactly as when
//! each was fanned out on arrival.
//!
//! Only the channels touched in the run are visited (in the order they were
//! first touched), so a flush is O(channels touched + their subscribers),
//! never O(all channels) or O(all subscribers).

use crate::Notification;
use crate::bus::registry::ChannelRegistry;
use crate::bus::segment::{Segment, SegmentBuilder};

/// Pending lists kept with their buffer for the next run: the first few
/// (the busiest channels of a burst) keep a large one, the others a small one.
const KEEP_LARGE: usize = 4;
const LARGE_BUFFER: usize = 4096;
const SMALL_BUFFER: usize = 64;

/// One channel's notifications of the current run.
#[derive(Debug)]
struct Pending {
    slot: u32,
    builder: SegmentBuilder,
}

/// The notifications of the current run of input, by channel.
#[derive(Debug, Default)]
pub(crate) struct PendingFanOut {
    /// By registry slot: 1 + the index in `channels` of the slot's pending
    /// list while it has one in this run, 0 otherwise.
    by_slot: Vec<u32>,
    /// The touched channels' lists, first-touched first; entries from
    /// `touched` on are spare buffers.
    channels: Vec<Pending>,
    touched: usize,
    /// The slot of the previous notification's channel: a burst on one
    /// channel is looked up by name once.
    last: Option<u32>,
}

impl PendingFanOut {
    /// Whether nothing is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.touched == 0
    }

    /// Adds `n` to its channel's pending list, or drops it when its channel
    /// has no ready subscriber (nobody was promised it). Gives it back when
    /// the list is full; the caller then flushes and adds it again.
    pub(crate) fn add(
        &mut self,
        registry: &ChannelRegistry,
        n: Notification,
    ) -> Result<(), Notification> {
        let slot = match self.last {
            Some(slot) if registry.name_at(slot) == Some(&*n.channel) => slot,
            _ => match registry.slot_of(&n.channel) {
                Some(slot) => {
                    self.last = Some(slot);
                    slot
                }
                None => return Ok(()),
            },
        };
        if registry.ready_at(slot).is_empty() {
            return Ok(());
        }
        let i = slot as usize;
        if self.by_slot.len() <= i {
            self.by_slot.resize(i + 1, 0);
        }
        let index = match self.by_slot[i] {
            0 => {
                if self.touched == self.channels.len() {
                    self.channels.push(Pending {
                        slot,
                        builder: SegmentBuilder::default(),
                    });
                }
                self.channels[self.touched].slot = slot;
                self.touched += 1;
                self.by_slot[i] = self.touched as u32;
                self.touched - 1
            }
            k => k as usize - 1,
        };
        self.channels[index].builder.push(n)
    }

    /// Ends the run: hands each touched channel's frozen segment to `f`,
    /// first-touched first, and forgets the run.
    pub(crate) fn flush(&mut self, mut f: impl FnMut(u32, Segment)) {
        for (index, pending) in self.channels[..self.touched].iter_mut().enumerate() {
            if let Some(entry) = self.by_slot.get_mut(pending.slot as usize) {
                *entry = 0;
            }
            let segment = pending.builder.freeze();
            pending.builder.shrink(if index < KEEP_LARGE {
                LARGE_BUFFER
            } else {
                SMALL_BUFFER
            });
            f(pending.slot, segment);
        }
        self.touched = 0;
        self.last = None;
    }
}
