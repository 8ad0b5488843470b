//! How a simulated server is set up: seed, role, authentication, quirks.

use std::time::Duration;

/// The configuration of one [`SimServer`](super::SimServer).
///
/// Build it with struct update syntax from the default, which is a trusting
/// PostgreSQL 15 primary that answers SSLRequest with `N`:
///
/// ```
/// use pgnotify_testkit::sim_server::{AuthMethod, SimConfig};
/// let config = SimConfig {
///     seed: 7,
///     auth: AuthMethod::Md5 { password: "secret".into() },
///     ..SimConfig::default()
/// };
/// assert_eq!(config.server_version, "15.8");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Seed for every arbitrary choice the server makes (backend PIDs, secret
    /// keys, MD5 salts): the same seed and inputs give the same bytes.
    pub seed: u64,
    /// Whether the server runs as a primary or as a hot standby.
    pub role: ServerRole,
    /// How clients authenticate.
    pub auth: AuthMethod,
    /// The answer to an SSLRequest.
    pub ssl: SslAnswer,
    /// The `server_version` reported in ParameterStatus.
    pub server_version: String,
    /// Where a backend's queued notifications go relative to ReadyForQuery.
    pub notify_placement: NotifyPlacement,
    /// How long every reply is held back before the client can read it, for
    /// new connections ([`SimServer::delay_replies`](super::SimServer::delay_replies)
    /// changes it per connection).
    pub reply_delay: Duration,
    /// The largest frontend message accepted; a longer one is a protocol
    /// violation (FATAL 08P01) rather than an allocation.
    pub max_message_len: usize,
    /// PostgreSQL's `idle_session_timeout`: a session idle this long between
    /// commands is ended with FATAL 57P05. `None` (the default) disables it.
    pub idle_session_timeout: Option<Duration>,
    /// BackendKeyData carries a pid other than the backend's own (which
    /// notifications and `pg_backend_pid()` show), as behind PgBouncer.
    pub made_up_backend_pid: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            role: ServerRole::Primary,
            auth: AuthMethod::Trust,
            ssl: SslAnswer::Refuse,
            server_version: "15.8".to_owned(),
            notify_placement: NotifyPlacement::BeforeReady,
            reply_delay: Duration::ZERO,
            max_message_len: 1 << 20,
            idle_session_timeout: None,
            made_up_backend_pid: false,
        }
    }
}

/// Whether a simulated server accepts writes or is a hot standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerRole {
    /// A read-write primary: LISTEN and NOTIFY work.
    #[default]
    Primary,
    /// A hot standby in recovery: `in_hot_standby=on`,
    /// `transaction_read_only=on`, LISTEN and NOTIFY fail with 25006.
    Standby,
}

/// How a simulated server authenticates a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// No password is asked for (`trust` in pg_hba.conf).
    #[default]
    Trust,
    /// AuthenticationCleartextPassword; every user has this password.
    Cleartext {
        /// The password every user must send.
        password: String,
    },
    /// AuthenticationMD5Password with a salt drawn from the seed; every user
    /// has this password.
    Md5 {
        /// The password every user must prove.
        password: String,
    },
}

/// The one-byte answer to an SSLRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslAnswer {
    /// `N`: the server does not do TLS; the client continues in plain text.
    #[default]
    Refuse,
    /// `S`: the server agrees to TLS. No handshake is simulated: the
    /// connection then continues in plain text as if the TLS layer were
    /// transparent, so a driver under test must skip its handshake.
    Accept,
}

/// Where queued NotificationResponse messages go at the end of a command.
///
/// PostgreSQL 14 and later send the notifications that arrived during a
/// command just before its ReadyForQuery; a client must cope with them on
/// either side, so the simulation can put them after it instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyPlacement {
    /// Before ReadyForQuery, as PostgreSQL 14+ does.
    #[default]
    BeforeReady,
    /// Right after ReadyForQuery, as if they arrived while idle.
    AfterReady,
}
