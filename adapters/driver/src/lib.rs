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
//!    MaybeTlsStream plain or TLS, one poll_read/poll_write/poll_flush surface
//!    driver      the task that owns the MaybeTlsStream and drives the Bus
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
//! - `connect()` turns a `HostSpec` into a transport the way libpq does:
//!   the unix socket `dir/.s.PGSQL.<port>`, or name resolution and each
//!   address in turn with `connect_timeout`, then TCP keepalive and
//!   `TCP_USER_TIMEOUT` through `socket2` on [`Transport::socket`].
//! - `MaybeTlsStream` wraps the transport. When the core asks for TLS (the server
//!   accepted SSLRequest), `MaybeTlsStream::start_tls` runs a
//!   `rustls::ClientConnection` over the plain transport, verifying as
//!   `TlsConnector` was told (`require`: any certificate, but the handshake
//!   signature must verify; `verify-ca`: chain only; `verify-full`: chain and
//!   host name), and returns the `tls-server-end-point` channel-binding data
//!   the core needs for SCRAM-SHA-256-PLUS. From then on the same `MaybeTlsStream`
//!   reads and writes through TLS, so the driver loop never knows.
//! - The driver task (one per listener) owns the `MaybeTlsStream`; the `Bus` lives
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
//!
//! # Example
//!
//! A [`Listener`] on a runtime handed over explicitly (the runtime crates'
//! `Listener::connect` finds their own):
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use pgnotify_driver::{Config, Event, Listener, Runtime};
//!
//! # async fn example(runtime: Arc<dyn Runtime>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::parse("postgres://app@localhost/app")?;
//! let listener: Listener = Listener::builder(config).runtime(runtime).connect().await?;
//! let mut orders = listener.subscribe("orders").await?;
//! while let Some(event) = orders.recv().await {
//!     if let Event::Gap(gap) = event {
//!         println!("{gap}: reload the orders");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `json`: `Subscription::json` decodes payloads as any
//!   `serde::Deserialize` type (a payload that does not decode is an item
//!   carrying the error and the raw text, never skipped), and
//!   `Listener::notify_json` serialises and sends, checking the payload
//!   limit after serialisation.
//! - `metrics`: the driver task publishes its statistics through the
//!   `metrics` facade; [`metrics`] lists the names.
//! - `futures-io`: `FuturesIo`, a [`Transport`] over any `futures-io`
//!   stream.
//! - `async-io` (implies `futures-io`): the `async_io` module, TCP and unix
//!   connections and timers on the `async-io` reactor, written once for the
//!   smol and async-std adapters.
//!
//! The driver task reports the connection's life through `tracing`: connects
//! and reconnects (info), losses and failed attempts (warn), protocol errors
//! (error), slow health pings (warn), overflow counts per pass (debug).

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Where links to this crate go from a crate documented before it (a runtime crate under
// `cargo doc --no-deps`, which documents the workspace in parallel): docs.rs, not plain text.
#![doc(html_root_url = "https://docs.rs/pgnotify-driver/0.1.0")]

pub mod api;
#[cfg(feature = "async-io")]
pub mod async_io;
mod callback;
// `pub` inside for the test hooks (feature `test-hooks`); without it, the crate's own.
#[cfg_attr(not(feature = "test-hooks"), allow(unreachable_pub))]
mod connect;
mod driver;
mod durable;
mod event_stream;
mod events;
mod guard;
#[cfg(feature = "json")]
mod json;
mod listener;
mod load;
pub mod metrics;
mod multi;
mod observe;
mod passfile;
mod runtime;
mod shared;
mod side_publish;
mod signal;
mod sql;
// `pub` inside for the test hooks (feature `test-hooks`); without it, the crate's own.
#[cfg_attr(not(feature = "test-hooks"), allow(unreachable_pub))]
mod stream;
mod subscription;
// `pub` inside for the test hooks (feature `test-hooks`); without it, the crate's own.
#[cfg_attr(not(feature = "test-hooks"), allow(unreachable_pub))]
mod tls;
mod tracker;

#[doc(inline)]
pub use api::*;
pub use listener::{AnyRuntime, CurrentRuntime, Listener, ListenerBuilder};
#[cfg(feature = "futures-io")]
pub use runtime::FuturesIo;
pub use runtime::{Alarm, BoxFuture, Runtime, Timer, Transport};
pub use tls::TlsError;

/// Test hooks: the building blocks of the driver task (connecting like
/// libpq, the TLS connector, the plain-or-TLS stream), public only with the
/// unstable `test-hooks` feature for this crate's own tests. Not for
/// applications; they may change or go in any release.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use {
    connect::{ConnectError, connect, set_keepalive},
    stream::MaybeTlsStream,
    tls::{TlsConnector, Verification, tls_server_end_point},
};

/// The methods of [`Listener`] and [`ListenerBuilder`] as a doc section, for the runtime crates'
/// `Listener` and `ListenerBuilder` type aliases: rustdoc shows a type alias's inherent methods
/// only through script that reads the generic struct's documentation, which docs.rs does not
/// build next to a runtime crate's. Not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! __listener_methods_doc {
    () => {
        "# Methods\n\n\
The alias's methods are [`pgnotify_driver::Listener`]'s:\n\n\
- [`connect`](pgnotify_driver::Listener::connect)`(url)`: connects to the server a libpq \
connection string names (URL or `key=value`, the `PG*` variables and libpq's files as \
defaults); [`connect_with`](pgnotify_driver::Listener::connect_with)`(config)` for a ready \
[`Config`](pgnotify_driver::Config); [`builder`](pgnotify_driver::Listener::builder)`(config)` \
for another runtime or a bound on the first connection.\n\
- [`subscribe`](pgnotify_driver::Listener::subscribe)`(channel)`, \
[`subscribe_with`](pgnotify_driver::Listener::subscribe_with)`(channel, options)`: a \
[`Subscription`](pgnotify_driver::Subscription), returned once the server acknowledged the LISTEN.\n\
- [`subscribe_all`](pgnotify_driver::Listener::subscribe_all), \
[`subscribe_all_with`](pgnotify_driver::Listener::subscribe_all_with): one \
[`MultiSubscription`](pgnotify_driver::MultiSubscription) over several channels.\n\
- [`subscribe_fn`](pgnotify_driver::Listener::subscribe_fn)`(channel, handler)`: a handler run \
for every item on a task of its own ([`CallbackSubscription`](pgnotify_driver::CallbackSubscription)).\n\
- [`recovery_tracker`](pgnotify_driver::Listener::recovery_tracker)`(channel)`: a \
[`RecoveryTracker`](pgnotify_driver::RecoveryTracker) that bounces the connection when a fallback \
poll keeps finding work no notification announced.\n\
- [`notify`](pgnotify_driver::Listener::notify)`(channel, payload)`, \
[`notify_many`](pgnotify_driver::Listener::notify_many)`(items)` (one transaction), and \
`notify_json` with the `json` feature: publish, with exactly one result each.\n\
- [`durable`](pgnotify_driver::Listener::durable)`()`, \
[`durable_in`](pgnotify_driver::Listener::durable_in)`(schema)`, \
[`notify_durable`](pgnotify_driver::Listener::notify_durable)`(channel, payload)`: durable channels \
([`Durable`](pgnotify_driver::Durable)): messages kept in a table, received exactly once across \
reconnects and overflows, payloads beyond 8,000 bytes.\n\
- [`listening_channels`](pgnotify_driver::Listener::listening_channels), \
[`stats`](pgnotify_driver::Listener::stats), \
[`backend_pid`](pgnotify_driver::Listener::backend_pid), \
[`connection_events`](pgnotify_driver::Listener::connection_events): what the listener is doing.\n\
- [`bounce`](pgnotify_driver::Listener::bounce): drop the connection and reconnect at once; \
[`close`](pgnotify_driver::Listener::close): close and wait until the connection is gone.\n\n\
The builder's, [`pgnotify_driver::ListenerBuilder`]'s: \
[`give_up_after`](pgnotify_driver::ListenerBuilder::give_up_after), \
[`first_connect_rounds`](pgnotify_driver::ListenerBuilder::first_connect_rounds), \
[`retry_forever`](pgnotify_driver::ListenerBuilder::retry_forever), \
[`runtime`](pgnotify_driver::ListenerBuilder::runtime), then \
[`connect`](pgnotify_driver::ListenerBuilder::connect)."
    };
}

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
