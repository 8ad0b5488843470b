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
//!    (driver loop, Listener, Subscription: next)
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

mod connect;
mod runtime;
mod stream;
pub mod tls;

pub use connect::{ConnectError, connect, set_keepalive};
#[cfg(feature = "futures-io")]
pub use runtime::FuturesIo;
pub use runtime::{BoxFuture, Runtime, Timer, Transport};
pub use stream::Stream;
pub use tls::{TlsConnector, TlsError, Verification};

/// The `socket2` crate, re-exported so that runtime crates build
/// [`SockRef`](socket2::SockRef)s for [`Transport::socket`] with the same version.
pub use socket2;
