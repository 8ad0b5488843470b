//! [`Keepalive`]: TCP keepalive and user-timeout settings for the driver.

use std::time::Duration;

/// TCP keepalive settings the driver applies to its socket (libpq's
/// `keepalives`, `keepalives_idle`, `keepalives_interval`,
/// `keepalives_count` and `tcp_user_timeout`).
///
/// `None` leaves the operating system's default, as a libpq value of zero
/// does. Unix-domain sockets ignore all of it. pgnotify's own pings detect a
/// dead connection regardless; keepalives only make it faster when set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Keepalive {
    /// Whether to turn TCP keepalives on (`keepalives`, default on).
    pub enabled: bool,
    /// Idle time before the first probe (`keepalives_idle`, whole seconds).
    pub idle: Option<Duration>,
    /// Time between probes (`keepalives_interval`, whole seconds).
    pub interval: Option<Duration>,
    /// Probes lost before the connection is dropped (`keepalives_count`).
    pub count: Option<u32>,
    /// How long sent data may stay unacknowledged before the connection is
    /// dropped (`tcp_user_timeout`, whole milliseconds; Linux `TCP_USER_TIMEOUT`).
    pub user_timeout: Option<Duration>,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            enabled: true,
            idle: None,
            interval: None,
            count: None,
            user_timeout: None,
        }
    }
}

impl Keepalive {
    /// Keepalives on, every timing left to the operating system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns keepalives on or off.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the idle time before the first probe (rounded down to seconds
    /// when written as a connection string).
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// Sets the time between probes.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Sets how many probes may go unanswered.
    pub fn count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// Sets `TCP_USER_TIMEOUT`.
    pub fn user_timeout(mut self, timeout: Duration) -> Self {
        self.user_timeout = Some(timeout);
        self
    }
}
