//! Errors the bus reports: why a connection ended, why a publish failed.

use std::fmt;
use std::time::Duration;

use crate::protocol::{ConnectionError, ServerError};
use crate::{ChannelError, PayloadError};

/// What went wrong with the transport, as the driver saw it.
///
/// The driver hands one of these to [`Bus::handle_closed`](crate::bus::Bus::handle_closed)
/// when connecting fails or an open transport fails or closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    /// The kind of failure.
    pub kind: TransportErrorKind,
    /// The driver's description (for example the OS error). For the
    /// connecting kinds (`Resolve`, `Connect`, `ConnectTimedOut`) it is a
    /// whole sentence naming the target and is displayed alone.
    pub message: String,
}

impl TransportError {
    /// A transport error of `kind` with a description.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Kinds of [`TransportError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The host name could not be resolved.
    Resolve,
    /// The TCP or unix-socket connection could not be opened.
    Connect,
    /// Opening the connection took longer than `connect_timeout`.
    ConnectTimedOut,
    /// The TLS handshake or certificate verification failed: the server's
    /// certificate is not trusted, or the roots could not be loaded. Not
    /// transient (see [`BusError::is_transient`]); a driver reports a
    /// connection that broke during the handshake as [`Io`](Self::Io).
    Tls,
    /// The server closed the connection.
    Closed,
    /// Reading or writing failed.
    Io,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TransportErrorKind::Resolve => "could not resolve the host",
            TransportErrorKind::Connect => "could not connect",
            TransportErrorKind::ConnectTimedOut => "connecting timed out",
            TransportErrorKind::Tls => "TLS failed",
            TransportErrorKind::Closed => "the server closed the connection",
            TransportErrorKind::Io => "the connection failed",
        };
        let describes_itself = matches!(
            self.kind,
            TransportErrorKind::Resolve
                | TransportErrorKind::Connect
                | TransportErrorKind::ConnectTimedOut
        );
        if self.message.is_empty() {
            f.write_str(what)
        } else if describes_itself {
            // Connecting fails with a sentence naming the target already
            // ("could not connect to 10.0.0.1:5432: ..."); don't say it twice.
            f.write_str(&self.message)
        } else {
            write!(f, "{what}: {}", self.message)
        }
    }
}

impl std::error::Error for TransportError {}

/// Why the bus lost (or could not establish) a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusError {
    /// The transport failed.
    Transport(TransportError),
    /// The connection protocol failed: a protocol violation, a fatal server
    /// error (terminated backend, shutdown) or an authentication failure.
    Connection(ConnectionError),
    /// The server did not finish the startup handshake in time.
    StartupTimedOut {
        /// The time allowed.
        timeout: Duration,
    },
    /// Startup finished, but the server did not acknowledge the connection's
    /// LISTENs in time (the same per-attempt budget as
    /// [`StartupTimedOut`](Self::StartupTimedOut): `connect_timeout`, or
    /// `ping_interval + ping_timeout` when it is unset).
    ListenTimedOut {
        /// The time allowed for the whole attempt.
        timeout: Duration,
    },
    /// A health ping was not answered in time: the connection is presumed dead.
    PingTimedOut {
        /// The ping timeout.
        timeout: Duration,
    },
    /// The first ping's notification never came back although the server
    /// answered the NOTIFY itself.
    NotificationsNotDelivered,
    /// The server refused to LISTEN (for example "cannot execute LISTEN
    /// during recovery" on a hot standby).
    ListenRefused(ServerError),
    /// `target_session_attrs=read-write` and this server is a hot standby or read-only.
    ReadOnlyServer,
    /// [`Bus::bounce`](crate::bus::Bus::bounce) was called.
    Bounced,
}

impl BusError {
    /// Whether retrying may help.
    ///
    /// The first connection attempt reports non-transient failures to the
    /// application (wrong password, missing database, TLS refused or not
    /// trusted, LISTEN refused) instead of retrying them forever in silence.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connection(e) => e.is_transient(),
            Self::Transport(e) => e.kind != TransportErrorKind::Tls,
            Self::ListenRefused(_) | Self::NotificationsNotDelivered => false,
            Self::StartupTimedOut { .. }
            | Self::ListenTimedOut { .. }
            | Self::PingTimedOut { .. }
            | Self::ReadOnlyServer
            | Self::Bounced => true,
        }
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => e.fmt(f),
            Self::Connection(e) => e.fmt(f),
            Self::StartupTimedOut { timeout } => {
                write!(f, "the server did not complete the startup within {timeout:?}")
            }
            Self::ListenTimedOut { timeout } => write!(
                f,
                "LISTEN was not acknowledged within {timeout:?} of starting the connection"
            ),
            Self::PingTimedOut { timeout } => write!(
                f,
                "a health ping was not answered within {timeout:?}; the connection is presumed dead"
            ),
            Self::NotificationsNotDelivered => f.write_str(
                "the server accepted NOTIFY but the notification never reached this connection's \
                 LISTEN; a transaction-pooling proxy (such as PgBouncer in transaction mode) is the \
                 likely cause: connect to PostgreSQL directly or through session pooling",
            ),
            Self::ListenRefused(e) => write!(f, "the server refused LISTEN: {e}"),
            Self::ReadOnlyServer => f.write_str(
                "the server is a hot standby or read-only and target_session_attrs=read-write",
            ),
            Self::Bounced => f.write_str("the connection was bounced on request"),
        }
    }
}

impl std::error::Error for BusError {}

/// Why a `notify` failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyError {
    /// The channel name is invalid; nothing was sent.
    Channel(ChannelError),
    /// The payload is invalid; nothing was sent.
    Payload(PayloadError),
    /// The server refused the notification (for example "cannot execute
    /// NOTIFY during recovery", or its notification queue is full).
    Server(ServerError),
    /// The connection died while the publish was in flight: the server may
    /// or may not have committed it. It is not retried: resend it if a
    /// duplicate is harmless.
    OutcomeUnknown {
        /// Why the connection died.
        cause: BusError,
    },
    /// The bus stayed disconnected for longer than `publish_timeout`.
    NotConnected {
        /// How long the publish waited.
        waited: Duration,
    },
    /// A `notify_many` batch holds the same (channel, payload) twice, at
    /// this index: PostgreSQL would deliver it once. Nothing was sent.
    Duplicate {
        /// The index of the second occurrence.
        index: usize,
    },
    /// The bus is closed.
    Closed,
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(e) => write!(f, "invalid channel: {e}"),
            Self::Payload(e) => write!(f, "invalid payload: {e}"),
            Self::Server(e) => write!(f, "the server refused the notification: {e}"),
            Self::OutcomeUnknown { cause } => write!(
                f,
                "the connection died while the notification was in flight, so whether it was \
                 sent is unknown ({cause})"
            ),
            Self::NotConnected { waited } => {
                write!(
                    f,
                    "not connected to the server for {waited:?}; the notification was not sent"
                )
            }
            Self::Duplicate { index } => write!(
                f,
                "item {index} of the batch repeats an earlier (channel, payload) pair, which \
                 PostgreSQL would deliver only once in one transaction; nothing was sent"
            ),
            Self::Closed => f.write_str("the listener is closed"),
        }
    }
}

impl std::error::Error for NotifyError {}

impl From<ChannelError> for NotifyError {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}

impl From<PayloadError> for NotifyError {
    fn from(e: PayloadError) -> Self {
        Self::Payload(e)
    }
}
