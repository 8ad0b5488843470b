//! What a subscriber sees: notifications, gaps and the end of its stream.

use std::fmt;

use crate::SharedStr;

/// One notification received from the server.
///
/// Cloning is cheap: a channel name or payload of at most
/// [`SharedStr::INLINE_CAPACITY`] bytes is stored inline and copied (no
/// allocation, no atomic operation); longer text shares the bytes parsed from
/// the wire, so every subscriber of a channel holds the same allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The channel it was sent on, exactly as named (case-sensitive).
    pub channel: SharedStr,
    /// The payload; valid UTF-8 because the connection forces `client_encoding=UTF8`.
    pub payload: SharedStr,
    /// The backend process id of the session that sent it. Equal to the
    /// listener's own backend pid for notifications the bus sent itself.
    pub process_id: i32,
}

impl Notification {
    /// The bytes this notification keeps alive, for memory accounting.
    pub fn size(&self) -> usize {
        self.channel.len() + self.payload.len()
    }
}

/// A place in a subscriber's stream where notifications may be missing.
///
/// A consumer that keeps derived state (a cache, a queue cursor) resynchronises
/// from the database when it sees a gap; everything after the gap is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Gap {
    /// Exactly `missed` notifications for this subscriber were discarded by its
    /// overflow policy since the previous item.
    Overflow {
        /// How many were discarded.
        missed: u64,
    },
    /// The connection was lost and re-established; notifications sent in
    /// between may be lost (how many is unknown). Delivered only once the
    /// channel is LISTENed again on the new connection, so nothing after it
    /// is missed.
    Reconnected {
        /// The generation of the new connection (it increases by one per
        /// successful connection).
        generation: u64,
    },
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overflow { missed } => {
                write!(f, "{missed} notifications dropped by the overflow policy")
            }
            Self::Reconnected { generation } => write!(
                f,
                "reconnected (generation {generation}); notifications may have been lost"
            ),
        }
    }
}

/// One item of a subscription's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A notification on the subscribed channel.
    Notification(Notification),
    /// Notifications may be missing here; see [`Gap`].
    Gap(Gap),
}

impl Event {
    /// The notification, if this item is one.
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            Self::Notification(n) => Some(n),
            Self::Gap(_) => None,
        }
    }
}

/// Why a subscription's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The subscriber unsubscribed.
    Unsubscribed,
    /// The queue overflowed and the subscriber's policy is
    /// [`OverflowPolicy::Close`](crate::OverflowPolicy::Close).
    Overflowed,
    /// The bus was closed.
    BusClosed,
    /// The server refused to LISTEN on the channel (for example on a hot standby).
    ListenFailed,
    /// The listener stopped for good on an error reconnecting cannot fix
    /// (LISTEN through a transaction-pooling proxy): the listener's last
    /// error says which.
    Failed,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unsubscribed => "unsubscribed",
            Self::Overflowed => "closed because its queue overflowed (policy Close)",
            Self::BusClosed => "the listener was closed",
            Self::ListenFailed => "the server refused to LISTEN on the channel",
            Self::Failed => "the listener stopped on an error reconnecting cannot fix",
        })
    }
}
