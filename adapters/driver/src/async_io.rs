//! Sockets and timers on the `async-io` reactor, for the runtimes built on it.
//!
//! smol and async-std both run their IO and timers on `async-io`, so
//! connecting, wrapping the socket and arming a timer are the same code for
//! both; only spawning and name resolution (each uses its own blocking
//! pool) differ. Their [`Runtime`](crate::Runtime) implementations call these
//! functions. Needs the `async-io` feature; the futures they return must be
//! polled where an `async-io` reactor runs (any smol or async-std task).
//!
//! ```no_run
//! use std::io;
//! use std::net::SocketAddr;
//!
//! # async fn example(addr: SocketAddr) -> io::Result<()> {
//! let transport = pgnotify_driver::async_io::connect_tcp(addr).await?;
//! println!("connected: {transport:?}");
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use ::async_io::Async;

use crate::runtime::{BoxFuture, FuturesIo, Timer, Transport};

/// What a runtime on the `async-io` reactor does its own way: spawning and
/// name resolution (each uses its own blocking pool). Implementing it makes
/// the type a [`Runtime`](crate::Runtime) whose sockets and timers are this
/// module's, so smol and async-std write only these two methods.
pub trait AsyncIoExecutor: Send + Sync + std::fmt::Debug + 'static {
    /// Resolves `host` to socket addresses, as [`Runtime::resolve`](crate::Runtime::resolve).
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>>;

    /// Spawns `future` to run to completion, detached, as
    /// [`Runtime::spawn`](crate::Runtime::spawn).
    fn spawn(&self, future: BoxFuture<()>);
}

impl<E: AsyncIoExecutor> crate::Runtime for E {
    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn Transport>>> {
        connect_tcp(addr)
    }

    fn connect_unix(&self, path: &Path) -> BoxFuture<io::Result<Box<dyn Transport>>> {
        connect_unix(path)
    }

    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        AsyncIoExecutor::resolve(self, host, port)
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        new_timer(deadline)
    }

    fn spawn(&self, future: BoxFuture<()>) {
        AsyncIoExecutor::spawn(self, future);
    }
}

/// Opens a TCP connection to `addr`, with `TCP_NODELAY` set.
///
/// For [`Runtime::connect_tcp`](crate::Runtime::connect_tcp).
pub fn connect_tcp(addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn Transport>>> {
    Box::pin(async move {
        let stream = Async::<TcpStream>::connect(addr).await?;
        // PostgreSQL messages are small; never wait to coalesce them.
        stream.get_ref().set_nodelay(true)?;
        Ok(Box::new(FuturesIo(stream)) as Box<dyn Transport>)
    })
}

/// Opens a connection to the unix-domain socket at `path`; an error of kind
/// [`io::ErrorKind::Unsupported`] where there are none.
///
/// For [`Runtime::connect_unix`](crate::Runtime::connect_unix).
pub fn connect_unix(path: &Path) -> BoxFuture<io::Result<Box<dyn Transport>>> {
    #[cfg(unix)]
    {
        let path = path.to_owned();
        Box::pin(async move {
            let stream = Async::<std::os::unix::net::UnixStream>::connect(path).await?;
            Ok(Box::new(FuturesIo(stream)) as Box<dyn Transport>)
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Box::pin(async { Err(io::ErrorKind::Unsupported.into()) })
    }
}

/// Creates an `async-io` timer that fires at `deadline`.
///
/// For [`Runtime::new_timer`](crate::Runtime::new_timer).
pub fn new_timer(deadline: Instant) -> Pin<Box<dyn Timer>> {
    Box::pin(AsyncIoTimer(::async_io::Timer::at(deadline)))
}

/// An `async-io` timer as a driver [`Timer`].
#[derive(Debug)]
struct AsyncIoTimer(::async_io::Timer);

impl Timer for AsyncIoTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.set_at(deadline);
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}
