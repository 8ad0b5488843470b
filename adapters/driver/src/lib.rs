//! Runtime-agnostic async glue for pgnotify, written once for every runtime.
//!
//! # Architecture
//!
//! `pgnotify-core` is a sans-IO state machine: it never touches a socket, a
//! clock or an executor. This crate is everything that does, except the few
//! calls that differ between runtimes, which sit behind one seam, the
//! [`Runtime`] trait (in the manner of quinn):
//!
//! ```text
//!  pgnotify-tokio / -smol / -async-std      ~100 lines each: impl Runtime
//!              │  Arc<dyn Runtime>
//!  pgnotify-driver (this crate)
//!    connect     resolve, try each address, connect_timeout, keepalive
//!    tls         rustls (ring) sans-IO: sslmode verification, channel binding
//!    Stream      plain or TLS, one poll_read/poll_write/poll_flush surface
//!    driver      the task that owns the Stream and drives the Bus
//!    Listener, Subscription, ConnectionEvents   the handles, over Arc<Shared>
//!              │  bytes and Instants
//!  pgnotify-core                              no IO at all
//! ```
//!
//! - [`Runtime`] opens TCP and unix sockets (returning a boxed
//!   [`Transport`]: three poll methods, no `futures-io`/tokio trait
//!   dependency), resolves host names, creates re-armable [`Timer`]s and
//!   spawns the driver's task. The traits are object safe, so this crate is
//!   compiled once, not once per runtime.
//! - [`connect()`] turns a `HostSpec` into a transport the way libpq does:
//!   the unix socket `dir/.s.PGSQL.<port>`, or name resolution and each
//!   address in turn with `connect_timeout`, then TCP keepalive and
//!   `TCP_USER_TIMEOUT` through `socket2` on [`Transport::socket`].
//! - [`Stream`] wraps the transport. When the core asks for TLS (the server
//!   accepted SSLRequest), [`Stream::start_tls`] runs a
//!   `rustls::ClientConnection` over the plain transport, verifying as
//!   [`TlsConnector`] was told (`require`: any certificate, but the handshake
//!   signature must verify; `verify-ca`: chain only; `verify-full`: chain and
//!   host name), and returns the `tls-server-end-point` channel-binding data
//!   the core needs for SCRAM-SHA-256-PLUS. From then on the same `Stream`
//!   reads and writes through TLS, so the driver loop never knows.
//! - The driver task (one per listener) owns the `Stream`; the `Bus` lives
//!   behind a mutex shared with the handles. [`Listener`] and
//!   [`Subscription`] apply commands to the bus under that lock and wake the
//!   task; the task feeds the bus what happened on the socket and the timer,
//!   writes what it transmits, and wakes exactly the subscriptions that
//!   became readable, once per chunk read. See the `driver` module's docs
//!   for the loop.
//!
//! Applications use this crate through a runtime crate (`pgnotify-tokio`,
//! `pgnotify-smol`, `pgnotify-async-std`), whose `Listener` is this crate's
//! [`Listener`] with that runtime's [`CurrentRuntime`].

mod callback;
mod connect;
mod driver;
mod events;
#[cfg(feature = "json")]
mod json;
mod listener;
pub mod metrics;
mod observe;
mod runtime;
mod shared;
mod signal;
mod stream;
mod subscription;
pub mod tls;
mod tracker;

pub use callback::CallbackSubscription;
pub use connect::{ConnectError, connect, set_keepalive};
pub use events::{ConnectionEvent, ConnectionEvents, EVENT_CAPACITY};
#[cfg(feature = "json")]
pub use json::{DecodeError, JsonEvent, JsonSubscription, NotifyJsonError};
pub use listener::{AnyRuntime, CurrentRuntime, Listener, ListenerBuilder, ListenerError};
#[cfg(feature = "futures-io")]
pub use runtime::FuturesIo;
pub use runtime::{BoxFuture, Runtime, Timer, Transport};
pub use stream::Stream;
pub use subscription::{SubscribeError, Subscription};
pub use tls::{TlsConnector, TlsError, Verification};
pub use tracker::{DEFAULT_BOUNCE_AFTER, RecoveryTracker, TrackerStats};

pub use pgnotify_core::bus::{
    BusError, EventBatch, EventRef, NEAR_LIMIT_PAYLOAD_LEN, NotifyError, Stats,
};
pub use pgnotify_core::config::{SslMode, SslRootCert};
pub use pgnotify_core::{
    ChannelError, Config, ConfigError, EndReason, Event, Gap, Notification, OverflowPolicy,
    PayloadError, SharedStr, SubscribeOptions,
};

/// The `socket2` crate, re-exported so that runtime crates build
/// [`SockRef`](socket2::SockRef)s for [`Transport::socket`] with the same version.
pub use socket2;

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_can_be_shared_and_moved_between_tasks() {
        send_sync::<Listener>();
        send_sync::<Listener<AnyRuntime>>();
        send::<Subscription>();
        send_sync::<CallbackSubscription>();
        send::<RecoveryTracker>();
        send::<ConnectionEvents>();
        send::<ListenerBuilder>();
    }
}
