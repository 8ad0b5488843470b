//! The channel registry: which subscribers listen on which channel, and
//! where each channel's LISTEN stands on the server.
//!
//! # The LISTEN state machine
//!
//! Each channel is in one of four states ([`ListenState`]):
//!
//! ```text
//!   Unlistened --take--> ListenPending --ack--> Listening --take--> UnlistenPending --ack--> Unlistened
//!        ^                   |  fail                ^                    |  fail
//!        +-------------------+                      +--------------------+
//! ```
//!
//! The registry never has more than one LISTEN or UNLISTEN in flight per
//! channel. Whether a channel *should* be LISTENed is simply whether it has
//! subscribers; whenever nothing is in flight and the server's state (as last
//! acknowledged) differs from that, the channel has a pending change, which
//! the next [`take_pending_changes`](ChannelRegistry::take_pending_changes)
//! sends. That one rule resolves the subscribe/unsubscribe races
//! against in-flight batches (invariants 3 and 4: ready means listening,
//! nothing after unsubscribe):
//!
//! - a subscribe during an in-flight UNLISTEN waits; when the UNLISTEN is
//!   acknowledged the channel has subscribers but is not listened, so a
//!   LISTEN becomes pending and the channel ends LISTENed (invariant 4);
//! - the last unsubscribe during an in-flight LISTEN: when the LISTEN is
//!   acknowledged the channel is listened without subscribers, so an
//!   UNLISTEN becomes pending and the channel ends UNLISTENed;
//! - everyone who joins while a LISTEN is in flight shares it, but its
//!   acknowledgement may already have been on its way when they joined, so
//!   [`ack`](ChannelRegistry::ack) names them apart, for the bus to confirm
//!   with a query of its own (invariant 3);
//! - a change undone before it was sent (subscribe then unsubscribe, or the
//!   reverse) sends nothing.
//!
//! Every change pending at one moment goes out in one query
//! (`LISTEN "a"; UNLISTEN "b"`), in the order the channels first needed it.
//! PostgreSQL runs a multi-statement simple query as one implicit
//! transaction, so the batch succeeds or fails as a whole, and LISTEN takes
//! effect at that commit, before the ReadyForQuery the bus treats as the ack.
//!
//! # Readiness and fan-out
//!
//! A subscriber is *ready* once a LISTEN of its channel that covers it has
//! been acknowledged on the current connection. [`subscribers_of`] lists
//! only ready subscribers: notifications reach a subscriber from its ready
//! point on. (PostgreSQL may send notifications between a LISTEN's commit and
//! its ReadyForQuery; they go only to subscribers that were already ready.
//! A new subscriber was not promised them, and one resuming after a
//! reconnection reads its `Gap::Reconnected` after they were committed.)
//! Delivery is gated once more by the subscriber's own flag (`Subscribers`):
//! one that joined a channel already LISTENed, or whose LISTEN was in
//! flight, is listed here at once or at the ack, but the bus sets that flag
//! only with the answer to a query sent after it joined.
//! When the connection is lost every subscriber goes back to waiting.
//!
//! # The ping channel
//!
//! The bus's own ping channel is not in the registry: it has no subscribers
//! and its life follows the connection, not reference counts. The bus puts
//! its LISTEN in front of the relisten batch's SQL itself; because a batch
//! succeeds or fails as a whole, acknowledging the batch covers it too.
//!
//! [`subscribers_of`]: ChannelRegistry::subscribers_of

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

use crate::push_quoted_identifier;

/// Identifies one subscription on a bus.
///
/// Ids are small numbers, unique for the life of the bus and never reused,
/// so a stale id names nobody rather than someone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(u64);

impl SubscriberId {
    /// Wraps a raw number; the bus hands them out in sequence.
    pub(crate) const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number, unique for the life of the bus.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscriber {}", self.0)
    }
}

/// Where a channel's LISTEN stands on the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenState {
    /// Not LISTENed, nothing in flight.
    Unlistened,
    /// A LISTEN is in flight.
    ListenPending,
    /// LISTENed (acknowledged), nothing in flight.
    Listening,
    /// An UNLISTEN is in flight.
    UnlistenPending,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Listen,
    Unlisten,
}

impl Op {
    fn keyword(self) -> &'static str {
        match self {
            Self::Listen => "LISTEN ",
            Self::Unlisten => "UNLISTEN ",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    batch: u64,
    op: Op,
    /// How many subscribers were waiting when the statement went out; those
    /// after them in `waiting` joined while it was in flight. Its
    /// acknowledgement may already have been on its way, with notifications
    /// sent before they joined behind it, so it does not make them ready:
    /// the bus confirms each with a query sent after (see [`Acked`]).
    waiting_before: u32,
}

/// What an acknowledged batch did to its subscribers (see
/// [`ChannelRegistry::ack`]).
#[derive(Debug, Default)]
pub(crate) struct Acked {
    /// Ready now.
    pub(crate) ready: Vec<SubscriberId>,
    /// Joined while the LISTEN was in flight: ready with the answer to a
    /// query sent now.
    pub(crate) to_confirm: Vec<SubscriberId>,
}

/// One channel with subscribers, or with a LISTEN state still to settle.
#[derive(Debug)]
struct Channel {
    /// Shared with the name index: one allocation per channel.
    name: Arc<str>,
    /// Subscribers whose LISTEN is acknowledged on this connection: the
    /// fan-out list.
    ready: Vec<SubscriberId>,
    /// Subscribers waiting for a LISTEN acknowledgement (see
    /// `InFlight::waiting_before` for those that joined while it was in
    /// flight).
    waiting: Vec<SubscriberId>,
    /// The server has acknowledged LISTEN (and no UNLISTEN since).
    listened: bool,
    in_flight: Option<InFlight>,
    /// In `ChannelRegistry::pending`.
    queued: bool,
}

impl Channel {
    fn has_subscribers(&self) -> bool {
        !self.ready.is_empty() || !self.waiting.is_empty()
    }

    fn needs_change(&self) -> bool {
        self.in_flight.is_none() && self.listened != self.has_subscribers()
    }

    fn is_idle(&self) -> bool {
        !self.has_subscribers() && !self.listened && self.in_flight.is_none() && !self.queued
    }

    fn state(&self) -> ListenState {
        match (self.listened, self.in_flight.map(|f| f.op)) {
            (_, Some(Op::Listen)) => ListenState::ListenPending,
            (_, Some(Op::Unlisten)) => ListenState::UnlistenPending,
            (true, None) => ListenState::Listening,
            (false, None) => ListenState::Unlistened,
        }
    }
}

/// The LISTEN/UNLISTEN statements of one query, and the token to settle
/// them with [`ChannelRegistry::ack`] or [`ChannelRegistry::fail`].
///
/// `Batch::default()` is an empty batch that settles nothing: for a new
/// connection whose only LISTEN is the bus's ping channel.
#[derive(Debug, Default)]
#[must_use = "a batch must be sent, then acknowledged or failed"]
pub(crate) struct Batch {
    id: u64,
    sql: String,
    ops: Vec<(u32, Op)>,
}

impl Batch {
    /// The query: `LISTEN "a"; UNLISTEN "b"`, names always quoted.
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    /// Takes the query text out (to hand it to the connection without a
    /// copy); the batch stays valid as a token.
    pub(crate) fn take_sql(&mut self) -> String {
        std::mem::take(&mut self.sql)
    }

    /// How many statements the batch holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }
}

/// A fixed hasher: the registry must not draw randomness from the OS, and
/// its keys are channel names chosen by the application, not by the network.
type NameHasher = BuildHasherDefault<DefaultHasher>;

/// Every channel the bus knows: its subscribers and its LISTEN state.
///
/// Lookups by name are O(1); fan-out is O(subscribers of the channel);
/// nothing is O(all channels) except reconnecting and the convergence
/// getters. Output order (SQL, iteration) depends only on the calls made, so
/// a bus driven the same way produces the same bytes.
#[derive(Debug, Default)]
pub(crate) struct ChannelRegistry {
    slots: Vec<Option<Channel>>,
    free: Vec<u32>,
    by_name: HashMap<Arc<str>, u32, NameHasher>,
    /// Channels that may need a change, in the order they first did.
    pending: Vec<u32>,
    next_batch: u64,
}

impl ChannelRegistry {
    /// An empty registry.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    // ---- getters

    /// The ready subscribers of `channel`: the ones a notification on it
    /// goes to. Empty for an unknown channel.
    pub(crate) fn subscribers_of(&self, channel: &str) -> &[SubscriberId] {
        self.channel(channel).map_or(&[], |c| &c.ready)
    }

    /// The slot of `channel`, if the registry knows it: a handle for
    /// [`ready_at`](Self::ready_at) and [`name_at`](Self::name_at), valid
    /// until the registry changes.
    pub(crate) fn slot_of(&self, channel: &str) -> Option<u32> {
        self.by_name.get(channel).copied()
    }

    /// The ready subscribers of the channel in `slot` (empty for a free slot).
    pub(crate) fn ready_at(&self, slot: u32) -> &[SubscriberId] {
        self.slot(slot).map_or(&[], |c| &c.ready)
    }

    /// The name of the channel in `slot`.
    pub(crate) fn name_at(&self, slot: u32) -> Option<&str> {
        self.slot(slot).map(|c| &*c.name)
    }

    /// Whether the server has acknowledged LISTEN on `channel` (and nothing
    /// is undoing it).
    pub(crate) fn is_listening(&self, channel: &str) -> bool {
        self.listen_state(channel) == Some(ListenState::Listening)
    }

    /// Where `channel`'s LISTEN stands, if the registry knows the channel.
    pub(crate) fn listen_state(&self, channel: &str) -> Option<ListenState> {
        self.channel(channel).map(Channel::state)
    }

    /// The channels the server has acknowledged LISTEN on (an UNLISTEN may
    /// be in flight), for convergence checks (invariant 5).
    pub(crate) fn listening_channels(&self) -> impl Iterator<Item = &str> {
        self.channels().filter(|c| c.listened).map(|c| &*c.name)
    }

    /// The channels with at least one subscriber, ready or waiting.
    #[cfg(any(test, feature = "test-hooks"))]
    pub(crate) fn subscribed_channels(&self) -> impl Iterator<Item = &str> {
        self.channels()
            .filter(|c| c.has_subscribers())
            .map(|c| &*c.name)
    }

    /// How many channels have at least one subscriber.
    pub(crate) fn channel_count(&self) -> usize {
        self.channels().filter(|c| c.has_subscribers()).count()
    }

    /// Whether nothing is in flight and nothing pending: the server's LISTEN
    /// set equals the set of subscribed channels.
    #[cfg(any(test, feature = "test-hooks"))]
    pub(crate) fn is_settled(&self) -> bool {
        self.channels()
            .all(|c| c.in_flight.is_none() && c.listened == c.has_subscribers())
    }

    // ---- commands

    /// Adds subscriber `id` to `channel` (already validated by the caller)
    /// and returns whether the channel is LISTENed on the current connection
    /// with nothing in flight: it is then in the fan-out list at once, and
    /// the bus makes it ready with the answer to a query sent now.
    /// Otherwise it waits for an [`ack`](Self::ack) that names it.
    pub(crate) fn add(&mut self, channel: &str, id: SubscriberId) -> bool {
        debug_assert!(crate::validate_channel(channel).is_ok(), "{channel:?}");
        let idx = self.index_or_insert(channel);
        let Some(ch) = self.slot_mut(idx) else {
            return false;
        };
        let ready = ch.listened && ch.in_flight.is_none();
        if ready {
            ch.ready.push(id);
        } else {
            ch.waiting.push(id);
        }
        self.touch(idx);
        ready
    }

    /// Removes subscriber `id` from `channel`; returns whether it was there.
    /// When the last subscriber leaves, an UNLISTEN becomes pending (or, if
    /// a LISTEN is in flight, follows its acknowledgement).
    pub(crate) fn remove(&mut self, channel: &str, id: SubscriberId) -> bool {
        let Some(&idx) = self.by_name.get(channel) else {
            return false;
        };
        let Some(ch) = self.slot_mut(idx) else {
            return false;
        };
        let found = remove_id(&mut ch.ready, id) || {
            match ch.waiting.iter().position(|&x| x == id) {
                Some(pos) => {
                    ch.waiting.remove(pos);
                    if let Some(f) = &mut ch.in_flight
                        && (pos as u32) < f.waiting_before
                    {
                        f.waiting_before -= 1;
                    }
                    true
                }
                None => false,
            }
        };
        if found {
            self.touch(idx);
        }
        found
    }

    /// Takes every change pending now as one batch (`None` if there is
    /// none); its channels are in flight until [`ack`](Self::ack) or
    /// [`fail`](Self::fail). Channels with a statement already in flight are
    /// left for a later batch.
    pub(crate) fn take_pending_changes(&mut self) -> Option<Batch> {
        let id = self.next_batch;
        let mut sql = String::new();
        let mut ops = Vec::new();
        let mut pending = std::mem::take(&mut self.pending);
        for &idx in &pending {
            let Some(ch) = self.slot_mut(idx) else {
                continue;
            };
            ch.queued = false;
            if !ch.needs_change() {
                self.release_if_idle(idx);
                continue;
            }
            let op = if ch.listened {
                Op::Unlisten
            } else {
                Op::Listen
            };
            if !sql.is_empty() {
                sql.push_str("; ");
            }
            sql.push_str(op.keyword());
            push_quoted_identifier(&mut sql, &ch.name);
            ch.in_flight = Some(InFlight {
                batch: id,
                op,
                waiting_before: ch.waiting.len() as u32,
            });
            ops.push((idx, op));
        }
        pending.clear();
        self.pending = pending;
        if ops.is_empty() {
            return None;
        }
        self.next_batch += 1;
        Some(Batch { id, sql, ops })
    }

    /// The batch for a new connection: every channel with subscribers, in
    /// one query. The same as [`take_pending_changes`](Self::take_pending_changes)
    /// right after [`connection_lost`](Self::connection_lost), named for
    /// what it is used for.
    pub(crate) fn relisten_all(&mut self) -> Option<Batch> {
        debug_assert!(
            self.channels()
                .all(|c| c.in_flight.is_none() && !c.listened),
            "relisten_all on a connection that is not new"
        );
        self.take_pending_changes()
    }

    /// The server acknowledged `batch` (ReadyForQuery after it, no error).
    /// Returns the subscribers that became ready, those waiting on its
    /// channels' LISTENs, and apart from them the ones that joined while it
    /// was in flight, which need a query of their own (see `Channel::late`).
    /// Changes that became due meanwhile (a LISTEN after an UNLISTEN, or the
    /// reverse) are now pending.
    pub(crate) fn ack(&mut self, batch: Batch) -> Acked {
        let mut acked = Acked::default();
        for (idx, f) in self.settle(&batch) {
            let Some(ch) = self.slot_mut(idx) else {
                continue;
            };
            match f.op {
                Op::Listen => {
                    ch.listened = true;
                    let before = (f.waiting_before as usize).min(ch.waiting.len());
                    acked.ready.extend_from_slice(&ch.waiting[..before]);
                    acked.to_confirm.extend_from_slice(&ch.waiting[before..]);
                    ch.ready.append(&mut ch.waiting);
                }
                Op::Unlisten => ch.listened = false,
            }
            self.touch(idx);
        }
        acked
    }

    /// The server rejected `batch`: none of it took effect (a multi-statement
    /// query is one transaction). Returns the subscribers waiting on its
    /// LISTENs; they keep waiting and the LISTEN is pending again, so the
    /// bus either ends them (`EndReason::ListenFailed`) and removes them, or
    /// lets the next batch retry. A failed UNLISTEN is retried.
    pub(crate) fn fail(&mut self, batch: Batch) -> Vec<SubscriberId> {
        let mut waiting = Vec::new();
        for (idx, f) in self.settle(&batch) {
            let Some(ch) = self.slot_mut(idx) else {
                continue;
            };
            // The next LISTEN goes out after the late ones joined.
            if f.op == Op::Listen {
                waiting.extend_from_slice(&ch.waiting);
            }
            self.touch(idx);
        }
        waiting
    }

    /// The connection is gone: nothing is LISTENed, nothing is in flight
    /// (batches not yet settled are void; settling them later does nothing).
    /// Every subscriber waits again, and every channel with subscribers
    /// needs LISTEN on the next connection ([`relisten_all`](Self::relisten_all)).
    pub(crate) fn connection_lost(&mut self) {
        self.pending.clear();
        for idx in 0..self.slots.len() as u32 {
            let Some(ch) = self.slot_mut(idx) else {
                continue;
            };
            ch.listened = false;
            ch.in_flight = None;
            ch.queued = false;
            // Ready ones first, so they keep their fan-out order.
            let mut waiting = std::mem::take(&mut ch.ready);
            waiting.append(&mut ch.waiting);
            ch.waiting = waiting;
            self.touch(idx);
        }
    }

    // ---- internals

    fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.slots.iter().flatten()
    }

    fn channel(&self, name: &str) -> Option<&Channel> {
        self.by_name.get(name).and_then(|&idx| self.slot(idx))
    }

    /// The registry's copy of `channel`'s name, for others to share.
    pub(crate) fn shared_name(&self, channel: &str) -> Option<Arc<str>> {
        let idx = *self.by_name.get(channel)?;
        self.slot(idx).map(|ch| ch.name.clone())
    }

    fn slot(&self, idx: u32) -> Option<&Channel> {
        self.slots.get(idx as usize).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, idx: u32) -> Option<&mut Channel> {
        self.slots.get_mut(idx as usize).and_then(Option::as_mut)
    }

    fn index_or_insert(&mut self, name: &str) -> u32 {
        if let Some(&idx) = self.by_name.get(name) {
            return idx;
        }
        let name: Arc<str> = Arc::from(name);
        let channel = Channel {
            name: name.clone(),
            ready: Vec::new(),
            waiting: Vec::new(),
            listened: false,
            in_flight: None,
            queued: false,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = Some(channel);
                idx
            }
            None => {
                self.slots.push(Some(channel));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_name.insert(name, idx);
        idx
    }

    /// Clears the in-flight marks `batch` set, returning the statements
    /// that were still current (a stale batch, from before a lost
    /// connection, settles nothing).
    fn settle(&mut self, batch: &Batch) -> Vec<(u32, InFlight)> {
        let mut current = Vec::with_capacity(batch.ops.len());
        for &(idx, op) in &batch.ops {
            let Some(ch) = self.slot_mut(idx) else {
                continue;
            };
            if let Some(f) = ch.in_flight
                && f.batch == batch.id
                && f.op == op
            {
                ch.in_flight = None;
                current.push((idx, f));
            }
        }
        current
    }

    /// Queues the channel if it needs a change, or forgets it if it is idle.
    fn touch(&mut self, idx: u32) {
        let Some(ch) = self.slot_mut(idx) else {
            return;
        };
        if ch.needs_change() {
            if !ch.queued {
                ch.queued = true;
                self.pending.push(idx);
            }
        } else {
            self.release_if_idle(idx);
        }
    }

    /// Forgets a channel with no subscribers, no LISTEN and nothing in
    /// flight or queued, so unused channels cost nothing. A channel with a
    /// batch in flight is never released, so a batch's slot indices stay
    /// valid until it is settled.
    fn release_if_idle(&mut self, idx: u32) {
        if !self.slot(idx).is_some_and(Channel::is_idle) {
            return;
        }
        if let Some(ch) = self.slots[idx as usize].take() {
            self.by_name.remove(&*ch.name);
            self.free.push(idx);
        }
    }
}

fn remove_id(ids: &mut Vec<SubscriberId>, id: SubscriberId) -> bool {
    match ids.iter().position(|&x| x == id) {
        Some(pos) => {
            // `remove`, not `swap_remove`: fan-out order stays the order of
            // subscription, which keeps wake-ups deterministic and fair.
            ids.remove(pos);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> SubscriberId {
        SubscriberId::from_raw(n)
    }

    fn sql(batch: &Option<Batch>) -> Option<&str> {
        batch.as_ref().map(Batch::sql)
    }

    /// A registry with `channel` LISTENed and subscriber 1 ready on it.
    fn listening(channel: &str) -> ChannelRegistry {
        let mut r = ChannelRegistry::new();
        assert!(!r.add(channel, id(1)));
        let b = r.take_pending_changes().expect("a LISTEN");
        assert_eq!(r.ack(b).ready, [id(1)]);
        assert_eq!(r.listen_state(channel), Some(ListenState::Listening));
        r
    }

    #[test]
    fn first_subscriber_waits_for_the_listen_ack() {
        let mut r = ChannelRegistry::new();
        assert!(!r.add("jobs", id(1)), "not ready before the LISTEN");
        assert_eq!(r.subscribers_of("jobs"), &[]);
        let b = r.take_pending_changes();
        assert_eq!(sql(&b), Some(r#"LISTEN "jobs""#));
        assert_eq!(r.listen_state("jobs"), Some(ListenState::ListenPending));
        assert_eq!(r.ack(b.unwrap()).ready, [id(1)]);
        assert_eq!(r.subscribers_of("jobs"), &[id(1)]);
        assert!(r.is_settled());
    }

    #[test]
    fn subscriber_to_a_listening_channel_is_ready_at_once_and_sends_nothing() {
        let mut r = listening("jobs");
        assert!(r.add("jobs", id(2)));
        assert_eq!(r.subscribers_of("jobs"), &[id(1), id(2)]);
        assert!(r.take_pending_changes().is_none());
    }

    #[test]
    fn subscribers_joining_during_an_inflight_listen_share_it_and_are_confirmed_after_its_ack() {
        let mut r = ChannelRegistry::new();
        r.add("jobs", id(1));
        let b = r.take_pending_changes().unwrap();
        assert!(!r.add("jobs", id(2)));
        assert!(!r.add("jobs", id(3)));
        assert!(r.take_pending_changes().is_none(), "no second LISTEN");
        let acked = r.ack(b);
        assert_eq!(acked.ready, [id(1)]);
        assert_eq!(
            acked.to_confirm,
            [id(2), id(3)],
            "the acknowledgement may have been on its way when they joined"
        );
        assert_eq!(r.subscribers_of("jobs"), &[id(1), id(2), id(3)]);
    }

    #[test]
    fn a_late_joiner_of_a_failed_listen_waits_for_the_retry() {
        let mut r = ChannelRegistry::new();
        r.add("jobs", id(1));
        let b = r.take_pending_changes().unwrap();
        r.add("jobs", id(2));
        assert_eq!(r.fail(b), [id(1), id(2)]);
        let retry = r.take_pending_changes().unwrap();
        let acked = r.ack(retry);
        assert_eq!(
            acked.ready,
            [id(1), id(2)],
            "the retry went out after it joined"
        );
        assert!(acked.to_confirm.is_empty());
    }

    #[test]
    fn subscribe_during_inflight_unlisten_ends_listening() {
        let mut r = listening("jobs");
        r.remove("jobs", id(1));
        let unlisten = r.take_pending_changes();
        assert_eq!(sql(&unlisten), Some(r#"UNLISTEN "jobs""#));
        assert!(
            !r.add("jobs", id(2)),
            "must wait: the UNLISTEN will drop the LISTEN"
        );
        assert!(
            r.take_pending_changes().is_none(),
            "one statement in flight per channel"
        );
        assert_eq!(r.ack(unlisten.unwrap()).ready, []);
        let listen = r.take_pending_changes();
        assert_eq!(sql(&listen), Some(r#"LISTEN "jobs""#));
        assert_eq!(r.ack(listen.unwrap()).ready, [id(2)]);
        assert_eq!(r.listen_state("jobs"), Some(ListenState::Listening));
        assert!(r.is_settled());
    }

    #[test]
    fn last_unsubscribe_during_inflight_listen_ends_unlistened() {
        let mut r = ChannelRegistry::new();
        r.add("jobs", id(1));
        let listen = r.take_pending_changes().unwrap();
        assert!(r.remove("jobs", id(1)));
        assert_eq!(r.ack(listen).ready, [], "nobody left to be ready");
        let unlisten = r.take_pending_changes();
        assert_eq!(sql(&unlisten), Some(r#"UNLISTEN "jobs""#));
        assert_eq!(r.ack(unlisten.unwrap()).ready, []);
        assert_eq!(r.listen_state("jobs"), None, "an idle channel is forgotten");
        assert!(r.is_settled());
        assert_eq!(r.listening_channels().count(), 0);
    }

    #[test]
    fn change_undone_before_it_is_sent_sends_nothing() {
        let mut r = ChannelRegistry::new();
        r.add("a", id(1));
        r.remove("a", id(1));
        assert!(r.take_pending_changes().is_none());
        let mut r = listening("b");
        r.remove("b", id(1));
        assert!(r.add("b", id(2)), "still LISTENed: ready at once");
        assert!(r.take_pending_changes().is_none());
    }

    #[test]
    fn every_change_pending_at_one_moment_goes_out_in_one_query() {
        let mut r = listening("old");
        r.add("b", id(2));
        r.remove("old", id(1));
        r.add("A", id(3));
        r.add(r#"we"ird"#, id(4));
        r.add("b", id(5));
        let b = r.take_pending_changes().unwrap();
        assert_eq!(
            b.sql(),
            r#"LISTEN "b"; UNLISTEN "old"; LISTEN "A"; LISTEN "we""ird""#
        );
        assert_eq!(b.len(), 4);
        assert!(r.take_pending_changes().is_none());
        let mut ready = r.ack(b).ready;
        ready.sort();
        assert_eq!(ready, [id(2), id(3), id(4), id(5)]);
        let mut listening: Vec<_> = r.listening_channels().collect();
        listening.sort();
        assert_eq!(listening, ["A", "b", r#"we"ird"#]);
    }

    #[test]
    fn failed_listen_reports_its_waiters_and_can_be_retried() {
        let mut r = ChannelRegistry::new();
        r.add("a", id(1));
        r.add("b", id(2));
        let b = r.take_pending_changes().unwrap();
        r.add("a", id(3));
        let mut failed = r.fail(b);
        failed.sort();
        assert_eq!(
            failed,
            [id(1), id(2), id(3)],
            "the whole batch took no effect"
        );
        assert_eq!(r.subscribers_of("a"), &[]);
        // The bus ends "b"'s subscriber and retries "a".
        r.remove("b", id(2));
        let retry = r.take_pending_changes();
        assert_eq!(sql(&retry), Some(r#"LISTEN "a""#));
        assert_eq!(r.ack(retry.unwrap()).ready, [id(1), id(3)]);
        assert_eq!(r.listen_state("b"), None);
    }

    #[test]
    fn failed_unlisten_is_retried_and_keeps_the_channel_listened() {
        let mut r = listening("a");
        r.remove("a", id(1));
        let b = r.take_pending_changes().unwrap();
        assert_eq!(r.fail(b), []);
        assert!(r.is_listening("a"));
        assert_eq!(sql(&r.take_pending_changes()), Some(r#"UNLISTEN "a""#));
    }

    #[test]
    fn connection_lost_relistens_every_subscribed_channel_in_one_batch() {
        let mut r = listening("a");
        r.add("b", id(2));
        let inflight = r.take_pending_changes().unwrap(); // LISTEN "b"
        r.add("c", id(3));
        r.remove("a", id(1));
        r.add("a", id(4));
        r.add("gone", id(5));
        r.remove("gone", id(5));
        r.connection_lost();
        assert_eq!(
            r.subscribers_of("a"),
            &[],
            "nobody is ready without a connection"
        );
        assert_eq!(r.listening_channels().count(), 0);
        // A batch of the old connection settles nothing.
        assert_eq!(r.ack(inflight).ready, []);
        let relisten = r.relisten_all().unwrap();
        assert_eq!(relisten.sql(), r#"LISTEN "a"; LISTEN "b"; LISTEN "c""#);
        let mut ready = r.ack(relisten).ready;
        ready.sort();
        assert_eq!(ready, [id(2), id(3), id(4)]);
        assert!(r.is_settled());
        assert_eq!(r.listen_state("gone"), None);
    }

    #[test]
    fn stale_batch_after_reconnect_does_not_settle_the_new_one() {
        let mut r = ChannelRegistry::new();
        r.add("a", id(1));
        let old = r.take_pending_changes().unwrap();
        r.connection_lost();
        let new = r.relisten_all().unwrap();
        assert_eq!(r.fail(old), [], "the old batch is void");
        assert_eq!(r.listen_state("a"), Some(ListenState::ListenPending));
        assert_eq!(r.ack(new).ready, [id(1)]);
    }

    #[test]
    fn removing_an_unknown_subscriber_changes_nothing() {
        let mut r = listening("a");
        assert!(!r.remove("a", id(9)));
        assert!(!r.remove("nope", id(1)));
        assert!(r.take_pending_changes().is_none());
        assert_eq!(r.subscribers_of("a"), &[id(1)]);
    }

    #[test]
    fn channel_names_are_case_sensitive() {
        let mut r = ChannelRegistry::new();
        r.add("Jobs", id(1));
        r.add("jobs", id(2));
        let b = r.take_pending_changes().unwrap();
        assert_eq!(b.sql(), r#"LISTEN "Jobs"; LISTEN "jobs""#);
        r.ack(b);
        assert_eq!(r.subscribers_of("Jobs"), &[id(1)]);
        assert_eq!(r.subscribers_of("jobs"), &[id(2)]);
        assert_eq!(r.channel_count(), 2);
    }

    #[test]
    fn subscribed_and_listening_sets_converge_when_settled() {
        let mut r = ChannelRegistry::new();
        for (n, ch) in ["a", "b", "c", "d"].iter().enumerate() {
            r.add(ch, id(n as u64));
        }
        let b = r.take_pending_changes().unwrap();
        r.remove("b", id(1));
        r.add("e", id(9));
        r.ack(b);
        while let Some(b) = r.take_pending_changes() {
            r.ack(b);
        }
        let mut subscribed: Vec<_> = r.subscribed_channels().collect();
        let mut listening: Vec<_> = r.listening_channels().collect();
        subscribed.sort();
        listening.sort();
        assert_eq!(subscribed, listening);
        assert_eq!(subscribed, ["a", "c", "d", "e"]);
    }

    #[test]
    fn idle_channels_are_forgotten_and_slots_reused() {
        let mut r = ChannelRegistry::new();
        for round in 0..100 {
            let name = format!("ch{round}");
            r.add(&name, id(round));
            let b = r.take_pending_changes().unwrap();
            r.ack(b);
            r.remove(&name, id(round));
            let b = r.take_pending_changes().unwrap();
            r.ack(b);
        }
        assert_eq!(r.slots.len(), 1, "one slot, reused");
        assert!(r.by_name.is_empty());
    }

    #[test]
    fn memory_per_channel_and_per_subscriber() {
        let entry = std::mem::size_of::<(Arc<str>, u32)>() + 1; // + hashbrown control byte
        let slot = std::mem::size_of::<Option<Channel>>();
        let name_heap = 16 + 8; // Arc header + an 8-byte name
        println!(
            "per channel: {slot} bytes slot + {entry} bytes index entry + {name_heap} bytes name \
             (Arc header 16 + name) + subscriber list; per subscriber in the registry: {} bytes",
            std::mem::size_of::<SubscriberId>()
        );
        assert!(slot <= 96, "a channel slot grew to {slot} bytes");
    }
}
