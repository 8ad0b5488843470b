//! Errors the bus reports: why a connection ended, why a publish failed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{ConnectionError, ServerError};
use crate::{ChannelError, PayloadError};

/// What went wrong with the transport, as the driver saw it.
///
/// The driver hands one of these to [`Bus::handle_closed`](crate::bus::Bus::handle_closed)
/// when connecting fails or an open transport fails or closes. The bus
/// shows it to the application (in [`BusError::Transport`], in
/// [`Stats::last_error`](crate::bus::Stats::last_error)), so the two parts
/// divide the work:
///
/// - [`kind`](Self::kind) says *what* failed, and decides whether retrying
///   can help ([`BusError::is_transient`]: only [`Tls`](TransportErrorKind::Tls)
///   is permanent);
/// - [`message`](Self::message) says *where and why*, without repeating the
///   kind: the address or socket tried, when connecting, and the error text
///   of the OS or TLS library (`io::Error`'s `Display` is right as it is).
///
/// `Display` is always `<the kind's phrase>: <message>` (the phrase alone
/// when the message is empty), whatever the kind:
///
/// ```
/// use pgnotify_core::bus::{TransportError, TransportErrorKind};
///
/// let refused = TransportError::new(
///     TransportErrorKind::Connect,
///     "db.example (192.0.2.7:5432): Connection refused (os error 111)",
/// );
/// assert_eq!(
///     refused.to_string(),
///     "could not connect: db.example (192.0.2.7:5432): Connection refused (os error 111)"
/// );
/// let eof = TransportError::new(TransportErrorKind::Closed, "end of stream");
/// assert_eq!(eof.to_string(), "the connection was closed: end of stream");
/// ```
///
/// A driver that has the typed cause (the `io::Error`, the TLS library's
/// error) attaches it with [`with_source`](Self::with_source), so that
/// [`source()`](std::error::Error::source) returns it and an application
/// can downcast to it; the message still says it in words. Equality compares
/// the kind and the message only: the source is what the message describes.
///
/// ```
/// use std::error::Error;
/// use std::io;
///
/// use pgnotify_core::bus::{TransportError, TransportErrorKind};
///
/// let reset = io::Error::from(io::ErrorKind::ConnectionReset);
/// let e = TransportError::new(TransportErrorKind::Io, reset.to_string()).with_source(reset);
/// let cause = e.source().and_then(|s| s.downcast_ref::<io::Error>());
/// assert_eq!(cause.map(io::Error::kind), Some(io::ErrorKind::ConnectionReset));
/// ```
#[derive(Clone)]
pub struct TransportError {
    /// The kind of failure.
    pub kind: TransportErrorKind,
    /// Where and why, in the driver's words, without the kind's own phrase
    /// (see the type's docs).
    pub message: String,
    /// The typed cause, when the driver gave one.
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl TransportError {
    /// A transport error of `kind`; `message` says where and why.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The error with `source` as its [`source()`](std::error::Error::source):
    /// the typed cause the message describes (an `io::Error`, a TLS error).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
}

impl PartialEq for TransportError {
    /// The kind and the message; the source is what the message describes.
    fn eq(&self, other: &Self) -> bool {
        (self.kind, &self.message) == (other.kind, &other.message)
    }
}

impl Eq for TransportError {}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TransportError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

/// Kinds of [`TransportError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The host name could not be resolved, or resolved to no address.
    Resolve,
    /// The TCP or unix-socket connection could not be opened.
    Connect,
    /// Opening the connection took longer than the driver allowed
    /// ([`ConnectTarget::connect_timeout`](crate::bus::ConnectTarget::connect_timeout)
    /// per address).
    ConnectTimedOut,
    /// The TLS handshake or certificate verification failed: the server's
    /// certificate is not trusted, or the roots could not be loaded. Not
    /// transient (see [`BusError::is_transient`]); a driver reports a
    /// connection that broke during the handshake as [`Io`](Self::Io).
    Tls,
    /// The connection was closed: the server ended the stream, or the
    /// driver stopped.
    Closed,
    /// Reading or writing failed.
    Io,
}

impl TransportErrorKind {
    /// The phrase `Display` puts before a [`TransportError`]'s message.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::Resolve => "could not resolve the host name",
            Self::Connect => "could not connect",
            Self::ConnectTimedOut => "connecting timed out",
            Self::Tls => "TLS failed",
            Self::Closed => "the connection was closed",
            Self::Io => "the connection failed",
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phrase = self.kind.phrase();
        if self.message.is_empty() {
            f.write_str(phrase)
        } else {
            write!(f, "{phrase}: {}", self.message)
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source: &(dyn std::error::Error + 'static) = self.source.as_deref()?;
        Some(source)
    }
}

/// Why the bus lost (or could not establish) a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusError {
    /// The transport failed.
    Transport(TransportError),
    /// The connection protocol failed: a protocol violation, a fatal server
    /// error (terminated backend, shutdown) or an authentication failure.
    Connection(ConnectionError),
    /// A connection attempt took too long: from
    /// [`Action::Connect`](crate::bus::Action::Connect) to the end of the
    /// startup (transport, TLS, authentication, startup, the read-only
    /// check), or the LISTENs of the new connection after it, each longer
    /// than `connect_timeout` (when unset, `ping_interval + ping_timeout`,
    /// 15 s by default). See "Timeouts" on [`Bus`](crate::bus::Bus).
    StartupTimedOut {
        /// The time allowed: `connect_timeout`, or `ping_interval +
        /// ping_timeout` when it is unset.
        timeout: Duration,
    },
    /// Startup finished, but the server did not acknowledge the connection's
    /// LISTENs in time: a budget of its own, as long as the one of
    /// [`StartupTimedOut`](Self::StartupTimedOut) (`connect_timeout`, or
    /// `ping_interval + ping_timeout` when it is unset).
    ListenTimedOut {
        /// The time allowed for the whole attempt.
        timeout: Duration,
    },
    /// A health ping was not answered in time: the connection is presumed dead.
    PingTimedOut {
        /// The ping timeout (the `ping_timeout` setting).
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

    /// The error's text, to follow a phrase that already says "could not
    /// connect": a [`TransportErrorKind::Connect`] error gives only where
    /// and why, so that the message does not say it twice.
    ///
    /// ```
    /// use pgnotify_core::bus::{BusError, TransportError, TransportErrorKind};
    ///
    /// let refused = BusError::Transport(TransportError::new(
    ///     TransportErrorKind::Connect,
    ///     "127.0.0.1:1: Connection refused",
    /// ));
    /// assert_eq!(refused.to_string(), "could not connect: 127.0.0.1:1: Connection refused");
    /// assert_eq!(
    ///     format!("could not connect to the server: {}", refused.after_could_not_connect()),
    ///     "could not connect to the server: 127.0.0.1:1: Connection refused"
    /// );
    /// ```
    pub fn after_could_not_connect(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Transport(e)
                if e.kind == TransportErrorKind::Connect && !e.message.is_empty() =>
            {
                std::borrow::Cow::Borrowed(&e.message)
            }
            other => std::borrow::Cow::Owned(other.to_string()),
        }
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => e.fmt(f),
            Self::Connection(e) => e.fmt(f),
            Self::StartupTimedOut { timeout } => {
                write!(
                    f,
                    "connecting to the server took longer than {timeout:?} (connect_timeout; \
                     ping_interval + ping_timeout when it is unset)"
                )
            }
            Self::ListenTimedOut { timeout } => write!(
                f,
                "LISTEN was not acknowledged within {timeout:?} of the end of startup \
                 (connect_timeout; ping_interval + ping_timeout when it is unset)"
            ),
            Self::PingTimedOut { timeout } => write!(
                f,
                "a health ping was not answered within {timeout:?} (ping_timeout); the \
                 connection is presumed dead"
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

impl std::error::Error for BusError {
    /// The server's refusal of LISTEN. `Transport` and `Connection` show
    /// their error's `Display` as their own, so they give its source (as a
    /// transparent wrapper does), not the error itself a second time.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport(e) => e.source(),
            Self::Connection(e) => e.source(),
            Self::ListenRefused(e) => Some(e),
            _ => None,
        }
    }
}

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

impl std::error::Error for NotifyError {
    /// The error this one wraps: the invalid channel or payload, the
    /// server's refusal, or why the connection died.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Channel(e) => Some(e),
            Self::Payload(e) => Some(e),
            Self::Server(e) => Some(e),
            Self::OutcomeUnknown { cause } => Some(cause),
            _ => None,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::io;

    use super::*;
    use crate::protocol::{ConnectionError, ServerError};

    #[test]
    fn wrapped_errors_are_their_source() {
        let refused = ServerError::new("ERROR", "25006", "read-only");
        let notify = NotifyError::Server(refused.clone());
        let source = notify
            .source()
            .and_then(|s| s.downcast_ref::<ServerError>());
        assert_eq!(source, Some(&refused), "NotifyError::Server's source");

        let listen = BusError::ListenRefused(refused.clone());
        let source = listen
            .source()
            .and_then(|s| s.downcast_ref::<ServerError>());
        assert_eq!(source, Some(&refused), "BusError::ListenRefused's source");

        let ended = BusError::Connection(ConnectionError::Server(refused.clone()));
        let source = ended.source().and_then(|s| s.downcast_ref::<ServerError>());
        assert_eq!(
            source,
            Some(&refused),
            "transparent: the connection error's source"
        );

        let lost = NotifyError::OutcomeUnknown { cause: listen };
        assert!(lost.source().is_some_and(|s| s.is::<BusError>()));
    }

    #[test]
    fn transport_error_keeps_its_typed_cause_out_of_equality_and_display() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let text = reset.to_string();
        let with = TransportError::new(TransportErrorKind::Io, text.clone()).with_source(reset);
        let without = TransportError::new(TransportErrorKind::Io, text);
        assert_eq!(with, without);
        assert_eq!(with.to_string(), without.to_string());
        assert!(without.source().is_none());
        let bus = BusError::Transport(with);
        let cause = bus.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(
            cause.map(io::Error::kind),
            Some(io::ErrorKind::ConnectionReset)
        );
    }
}
