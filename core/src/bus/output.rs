//! What the bus asks of its driver ([`Action`]) and tells it ([`BusEvent`]),
//! and [`Output`], the three outputs of the drive loop as one.

use std::path::PathBuf;
use std::time::Duration;

use crate::EndReason;
use crate::bus::error::{BusError, NotifyError};
use crate::bus::guard::SideCheck;
use crate::bus::registry::SubscriberId;
use crate::config::{HostSpec, Keepalive, SslMode, SslRootCert};
use crate::protocol::StartupParams;

/// Identifies one `notify` call until its [`BusEvent::PublishDone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishId(pub(crate) u64);

impl PublishId {
    /// The raw number, unique for the life of the bus.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// Something the driver must do for the bus.
// One action per connection attempt or side check: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a transport to this host, then call
    /// [`Bus::handle_connected`](crate::bus::Bus::handle_connected), or
    /// [`Bus::handle_closed`](crate::bus::Bus::handle_closed) if it fails.
    /// Comes only when no transport is open or opening.
    Connect(ConnectTarget),
    /// The server accepted TLS: run the handshake on the open transport, then
    /// call [`Bus::handle_tls_established`](crate::bus::Bus::handle_tls_established)
    /// (or `handle_closed` with a TLS error).
    StartTls(TlsTarget),
    /// Flush what `poll_transmit` gave, then close the transport, or
    /// abandon the connect or TLS handshake in progress. The bus already
    /// knows; no `handle_closed` is needed.
    Disconnect,
    /// Open a second, short session beside the listening one with these
    /// settings, run it with [`SideCheck::session`](crate::bus::SideCheck::session)
    /// and report its result by its [`kind`](crate::bus::SideCheck::kind):
    /// the server guard's queue reading while reading is paused for an
    /// absorbing subscriber ([`CheckKind::QueueUsage`](crate::bus::CheckKind::QueueUsage),
    /// to [`Bus::handle_server_queue_usage`](crate::bus::Bus::handle_server_queue_usage);
    /// see the server guard on [`OverflowPolicy::Absorb`](crate::OverflowPolicy::Absorb)),
    /// or the delivery probe behind a pooler
    /// ([`CheckKind::DeliveryProbe`](crate::bus::CheckKind::DeliveryProbe), to
    /// [`Bus::handle_delivery_probe`](crate::bus::Bus::handle_delivery_probe)).
    /// The listening connection is not touched. A driver that cannot run it
    /// should report an error, so the bus keeps its schedule. Was
    /// `CheckServerQueue(ServerQueueCheck)`, named when the guard was its only use.
    SideCheck(SideCheck),
    /// Send these publishes in one transaction on a short second session,
    /// because reading is paused and the listening connection's answer
    /// would wait behind the notifications nobody reads; report the outcome
    /// with [`Bus::handle_side_publish`](crate::bus::Bus::handle_side_publish).
    /// See [`SidePublish`](crate::bus::SidePublish).
    SidePublish(crate::bus::SidePublish),
}

/// Where and how to open a transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTarget {
    /// The host (TCP or unix socket directory) and port.
    pub host: HostSpec,
    /// Give up opening one address after this long (the `connect_timeout`
    /// setting), then try the host's next address, if any. `None`: no limit
    /// of the driver's own; the bus's deadline for the whole attempt (in
    /// [`Bus::poll_timeout`](crate::bus::Bus::poll_timeout)) still applies.
    pub connect_timeout: Option<Duration>,
    /// TCP keepalive and `TCP_USER_TIMEOUT` settings to apply.
    pub keepalive: Keepalive,
}

/// How to run the TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsTarget {
    /// The name to verify the certificate against (`verify-full`) and send as SNI.
    pub server_name: String,
    /// What to verify.
    pub ssl_mode: SslMode,
    /// The CA certificates to trust (`sslrootcert`). `None` means none was
    /// configured: as libpq, the driver then reads `~/.postgresql/root.crt`
    /// for the verifying modes.
    pub root_cert: Option<SslRootCert>,
    /// The client certificate and key files (`sslcert`, `sslkey`); `None`
    /// means libpq's defaults, `~/.postgresql/postgresql.crt` and `.key`,
    /// used only if the certificate file exists.
    pub client_cert: Option<PathBuf>,
    /// See [`client_cert`](Self::client_cert).
    pub client_key: Option<PathBuf>,
}

/// Where and how to open another session as the listener's user, on the
/// host the listener is on: what a driver needs for a connection of its own
/// (durable channels read their tables on one, see
/// [`Bus::session_target`](crate::bus::Bus::session_target)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionTarget {
    /// The host and how to open the transport.
    pub connect: ConnectTarget,
    /// How to run the TLS handshake, if the server accepts TLS.
    pub tls: TlsTarget,
    /// The startup parameters: the listener's credentials, its application
    /// name with the session's role after it.
    pub startup: StartupParams,
}

/// Where a subscriber stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriberStatus {
    /// Waiting for the server to acknowledge LISTEN.
    Pending,
    /// Listening: every notification committed from now on is delivered or
    /// covered by a gap.
    Ready,
    /// The stream has ended; queued items may still be drained. The entry
    /// stays until [`Bus::unsubscribe`](crate::bus::Bus::unsubscribe), which
    /// a driver calls when the subscription handle is dropped.
    Ended(EndReason),
    /// No such subscriber (never existed, or unsubscribed).
    Unknown,
}

/// Something that happened on the bus, for the driver to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusEvent {
    /// The server acknowledged the subscriber's LISTEN: `subscribe` may complete.
    SubscriberReady(SubscriberId),
    /// The subscriber has items queued: wake its task, or drain it. Sent
    /// when its queue becomes non-empty, and again after every drain that
    /// leaves items queued, so a driver that drains once per announcement,
    /// in batches of any size, takes everything (readiness is
    /// level-triggered; see [`Bus`](crate::bus::Bus)). May be stale: the
    /// items may have been taken already.
    SubscriberReadable(SubscriberId),
    /// The subscriber's stream ended (queued items remain readable).
    SubscriberEnded(SubscriberId, EndReason),
    /// A `notify` finished.
    PublishDone(PublishId, Result<(), NotifyError>),
    /// A connection is up and every channel is LISTENed on it.
    Connected {
        /// Increases by one per successful connection.
        generation: u64,
    },
    /// The connection was lost; the bus reconnects by itself.
    Disconnected {
        /// Why.
        error: BusError,
    },
    /// A connection attempt failed.
    ConnectFailed {
        /// Why.
        error: BusError,
        /// Whether this failure completes the first round of attempts: the
        /// bus has never been connected and every configured host has now
        /// been tried once. A driver's `connect()` fails on such an event
        /// when the error is not transient ([`BusError::is_transient`]): a
        /// wrong password or a missing database will not fix itself.
        first_attempt: bool,
    },
    /// The bus stopped for good on an error reconnecting cannot fix (a
    /// transaction-pooling proxy under `transaction_pooler=fail`). Every
    /// subscriber has ended with [`EndReason::Failed`](crate::EndReason::Failed);
    /// [`Closed`](Self::Closed) follows.
    Failed {
        /// Why.
        error: BusError,
    },
    /// `close` finished: no connection remains and none will be made.
    Closed,
}

/// One output of the bus, as [`Bus::poll_output`](crate::bus::Bus::poll_output)
/// gives them: the drive loop's three outputs (transmit, actions, events)
/// through one method, in the contract's order.
// One per action or event, handled at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Bytes were appended to the caller's buffer: write all of them to the
    /// transport before anything else.
    Transmit,
    /// Something the driver must do (connect, start TLS, disconnect, run a
    /// second session).
    Action(Action),
    /// Something that happened (a subscriber readable, a publish done, a
    /// connection up or lost).
    Event(BusEvent),
}
