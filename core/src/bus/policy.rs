//! Per-subscriber queue limits and what happens when they are reached.
//!
//! [`SubscribeOptions`] lives in its own module (`bus/options.rs`) and is
//! re-exported here, so `bus::policy::SubscribeOptions` still names it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use super::options::SubscribeOptions;

/// What a subscriber's queue does when a notification arrives and it is full.
///
/// The default, [`Absorb`](Self::Absorb), loses nothing for a consumer that
/// keeps up on average: a burst waits in the server's notification queue,
/// as it does for a plain `LISTEN` client that reads at its own pace. The
/// other policies keep the listener reading whatever happens, so one slow
/// consumer never holds up the others; what they discard is counted and
/// reported in-band as [`Gap::Overflow`](crate::Gap::Overflow).
///
/// The capacity a policy works against counts everything delivered to the
/// subscriber and not yet consumed by the application: the listener's queue
/// plus what the async layer holds on the subscriber's behalf (see
/// [`SubscribeOptions::capacity`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Absorb bursts without loss (the default): while this subscriber is
    /// full the listener stops reading its connection, so the backlog waits
    /// in the server's notification queue and nothing is dropped. Two limits
    /// keep that from doing harm:
    ///
    /// - the **stall limit** ([`SubscribeOptions::stall_limit`], default
    ///   [`DEFAULT_STALL_LIMIT`]): a subscriber that stays full and consumes
    ///   nothing for that long stops holding the connection; it alone drops
    ///   what arrives while it is full (the newest), and reads an exact
    ///   [`Gap::Overflow`](crate::Gap::Overflow) when it catches up, after
    ///   which it absorbs again;
    /// - the **server guard**: while reading is paused the listener watches
    ///   the server's `pg_notification_queue_usage()`; above the configured
    ///   fraction (`server_queue_limit`, default 0.5) every full `Absorb`
    ///   subscriber stops holding the connection in the same way, so a
    ///   pgnotify process can never fill the cluster's notification queue
    ///   (which would make every `NOTIFY` in the cluster fail).
    ///
    /// Both are counted in [`Stats`](crate::bus::Stats) (`stalled_releases`,
    /// `guard_releases`, `dropped_newest`).
    #[default]
    Absorb,
    /// Discard the oldest queued notification to make room.
    DropOldest,
    /// Discard the arriving notification.
    DropNewest,
    /// Keep only the newest notification: a wake-up signal. Replaced ones are
    /// counted as missed.
    KeepLatest,
    /// End the subscription with [`EndReason::Overflowed`](crate::EndReason::Overflowed).
    Close,
    /// Stop reading the socket while this subscriber is full, for as long
    /// as it takes; the server buffers in its notification queue, which is
    /// shared by the whole cluster (8 GB). Nothing is ever discarded, and
    /// neither the stall limit nor the server guard applies: choose it
    /// consciously, a stuck consumer holds the server's queue back for
    /// everyone. [`Absorb`](Self::Absorb) is the bounded form.
    Backpressure,
}

impl OverflowPolicy {
    /// Every policy, for tests and command-line help.
    pub const ALL: [Self; 6] = [
        Self::Absorb,
        Self::DropOldest,
        Self::DropNewest,
        Self::KeepLatest,
        Self::Close,
        Self::Backpressure,
    ];

    /// The policy's name as accepted by [`FromStr`] (`drop-oldest`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Absorb => "absorb",
            Self::DropOldest => "drop-oldest",
            Self::DropNewest => "drop-newest",
            Self::KeepLatest => "keep-latest",
            Self::Close => "close",
            Self::Backpressure => "backpressure",
        }
    }
}

impl fmt::Display for OverflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`OverflowPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown overflow policy {:?}; expected one of absorb, drop-oldest, \
             drop-newest, keep-latest, close, backpressure",
            self.0
        )
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for OverflowPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|p| p.name() == normalized || p.name().replace('-', "") == normalized)
            .ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

/// The default number of items a subscriber's queue holds.
pub const DEFAULT_CAPACITY: usize = 1024;

/// How long a full [`OverflowPolicy::Absorb`] subscriber may consume
/// nothing before it stops holding the connection, unless
/// [`SubscribeOptions::stall_limit`] says otherwise.
///
/// Long enough for a consumer that does real work per notification to get
/// through a full queue's worth of a burst; short enough that one stuck
/// consumer does not hold every other subscriber of the listener for long.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_from_their_names_and_common_spellings() {
        for p in OverflowPolicy::ALL {
            assert_eq!(p.name().parse::<OverflowPolicy>(), Ok(p));
        }
        assert_eq!(
            "KeepLatest".parse::<OverflowPolicy>(),
            Ok(OverflowPolicy::KeepLatest)
        );
        assert_eq!(
            "drop_oldest".parse::<OverflowPolicy>(),
            Ok(OverflowPolicy::DropOldest)
        );
        assert!("sometimes".parse::<OverflowPolicy>().is_err());
    }
}
