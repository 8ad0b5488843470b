//! [`MultiSubscription`]: one stream over several channels.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pgnotify_core::{EndReason, Event};

use crate::subscription::Subscription;

/// One item of a [`MultiSubscription`], with the channel it came on.
///
/// A notification carries its channel too; a gap does not, and it concerns
/// only this channel: `Gap::Overflow { missed }` counts what this channel's
/// queue dropped, and `Gap::Reconnected` stands in each channel's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelEvent {
    /// The channel.
    pub channel: Arc<str>,
    /// The item, as a [`Subscription`] to that channel alone would give it.
    pub event: Event,
}

/// Several channels read as one stream (sqlx's `listen_all`): made by
/// [`Listener::subscribe_all`](crate::Listener::subscribe_all).
///
/// Each channel keeps its own queue, capacity and overflow policy, so one
/// busy channel cannot make another lose anything, and each channel's items
/// keep their order; across channels, the stream takes from each in turn.
/// A channel whose subscription ends leaves the set (see
/// [`ended`](Self::ended)); [`recv`](Self::recv) returns `None` once every
/// one has ended. Dropping it unsubscribes from every channel.
#[derive(Debug)]
pub struct MultiSubscription {
    channels: Vec<(Arc<str>, Subscription)>,
    ended: Vec<(Arc<str>, Option<EndReason>)>,
    /// Where the next poll starts, so that no channel starves the others.
    next: usize,
}

impl MultiSubscription {
    pub(crate) fn new(subscriptions: Vec<Subscription>) -> Self {
        let channels = subscriptions
            .into_iter()
            .map(|s| (Arc::from(s.channel()), s))
            .collect();
        Self {
            channels,
            ended: Vec::new(),
            next: 0,
        }
    }

    /// The next item of any channel, or `None` once every channel's
    /// subscription has ended.
    pub async fn recv(&mut self) -> Option<ChannelEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item of any channel, starting after the channel
    /// served last.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ChannelEvent>> {
        let mut k = 0;
        while k < self.channels.len() {
            let i = (self.next + k) % self.channels.len();
            let (channel, subscription) = &mut self.channels[i];
            match subscription.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    let channel = channel.clone();
                    self.next = (i + 1) % self.channels.len();
                    return Poll::Ready(Some(ChannelEvent { channel, event }));
                }
                Poll::Ready(None) => {
                    let (channel, subscription) = self.channels.remove(i);
                    self.ended.push((channel, subscription.end_reason()));
                    if self.channels.is_empty() {
                        return Poll::Ready(None);
                    }
                    self.next = i % self.channels.len();
                    k = 0;
                }
                Poll::Pending => k += 1,
            }
        }
        if self.channels.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }

    /// The channels still in the set.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(|(channel, _)| &**channel)
    }

    /// The channels whose subscription ended, and why, in the order they
    /// ended.
    pub fn ended(&self) -> &[(Arc<str>, Option<EndReason>)] {
        &self.ended
    }
}

impl futures_core::Stream for MultiSubscription {
    type Item = ChannelEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChannelEvent>> {
        self.get_mut().poll_recv(cx)
    }
}
