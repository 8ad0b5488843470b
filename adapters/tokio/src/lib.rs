//! pgnotify on tokio.
//!
//! This crate holds only what differs on tokio: [`TokioRuntime`], the
//! implementation of the driver's [`Runtime`] seam. Everything else (the
//! connection logic, TLS, the driver task, [`Listener`] and
//! [`Subscription`]) lives once in `pgnotify-driver` and is re-exported here.
//! It needs tokio's `rt`, `net` and `time` features and nothing more.
//!
//! # Example
//!
//! One connection for the whole process; each subscription returns once the
//! server has acknowledged its LISTEN, and its stream says where
//! notifications may be missing:
//!
//! ```no_run
//! use pgnotify_tokio::{Event, Gap, Listener};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = Listener::connect("postgres://app@localhost/app").await?;
//! let mut jobs = listener.subscribe("jobs").await?;
//! listener.notify("jobs", "42").await?;
//!
//! while let Some(event) = jobs.recv().await {
//!     match event {
//!         Event::Notification(n) => println!("job {} from pid {}", n.payload, n.process_id),
//!         Event::Gap(Gap::Overflow { missed }) => println!("{missed} dropped: rescan the table"),
//!         Event::Gap(gap) => println!("{gap}: rescan the table"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `json`: typed payloads, `Subscription::json`
//!   (decoded values, undecodable payloads as items, gaps) and
//!   `Listener::notify_json` (the payload limit checked after serialisation).
//! - `metrics`: counters and gauges through the `metrics` facade; the names
//!   are in [`metrics`].
//!
//! The listener logs its connection's life (connected, lost, reconnected,
//! failed attempts, slow pings, protocol errors) through `tracing`.
//!
//! The crate's `examples/` show a job-queue worker woken with
//! `OverflowPolicy::KeepLatest`, a cache that resynchronises on gaps, and a
//! server-sent-events relay (axum) that streams a channel to browsers:
//! `cargo run -p pgnotify-tokio --example sse_relay` (each starts a throwaway
//! PostgreSQL when no `DATABASE_URL` is given).

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use pgnotify_driver::socket2::SockRef;
use pgnotify_driver::{BoxFuture, CurrentRuntime, Runtime, Timer, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Handle;

pub use pgnotify_driver::api::*;

/// One PostgreSQL LISTEN connection shared by any number of subscriptions,
/// on tokio: [`pgnotify_driver::Listener`] with this crate's runtime.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = pgnotify_tokio::Listener::connect("postgres://app@localhost/app").await?;
/// let mut jobs = listener.subscribe("jobs").await?;
/// while let Some(event) = jobs.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
///
#[doc = pgnotify_driver::__listener_methods_doc!()]
pub type Listener = pgnotify_driver::Listener<TokioRuntime>;

/// A builder for a [`Listener`] on tokio.
///
/// Its methods are [`pgnotify_driver::ListenerBuilder`]'s; see [`Listener`]'s list.
pub type ListenerBuilder = pgnotify_driver::ListenerBuilder<TokioRuntime>;

/// The tokio implementation of the driver's [`Runtime`].
///
/// It remembers the runtime it was created in and spawns the driver's task
/// there, so it may be used from any thread afterwards.
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    handle: Handle,
}

impl TokioRuntime {
    /// Uses the tokio runtime this is called from.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`Handle::current`]; see
    /// [`TokioRuntime::try_current`].
    pub fn current() -> Self {
        Self::from_handle(Handle::current())
    }

    /// Uses the tokio runtime this is called from, if any.
    pub fn try_current() -> Option<Self> {
        Handle::try_current().ok().map(Self::from_handle)
    }

    /// Uses the tokio runtime behind `handle`.
    ///
    /// The runtime must have its IO and time drivers enabled
    /// (`Builder::enable_all`).
    pub fn from_handle(handle: Handle) -> Self {
        TokioRuntime { handle }
    }
}

impl Runtime for TokioRuntime {
    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn Transport>>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            // PostgreSQL messages are small; never wait to coalesce them.
            stream.set_nodelay(true)?;
            Ok(Box::new(Stream(stream)) as Box<dyn Transport>)
        })
    }

    #[cfg(unix)]
    fn connect_unix(&self, path: &Path) -> BoxFuture<io::Result<Box<dyn Transport>>> {
        let path = path.to_owned();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(Box::new(Stream(stream)) as Box<dyn Transport>)
        })
    }

    #[cfg(not(unix))]
    fn connect_unix(&self, _path: &Path) -> BoxFuture<io::Result<Box<dyn Transport>>> {
        Box::pin(async { Err(io::ErrorKind::Unsupported.into()) })
    }

    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }

    /// tokio's clock, which its timers use: with tokio's `test-util`
    /// feature and a paused clock, the driver runs on that time.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        let _context = self.handle.enter();
        Box::pin(Sleep(Box::pin(tokio::time::sleep_until(deadline.into()))))
    }

    fn spawn(&self, future: BoxFuture<()>) {
        drop(self.handle.spawn(future));
    }
}

/// A tokio socket as a driver [`Transport`].
#[derive(Debug)]
struct Stream<S>(S);

impl<S> Transport for Stream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static,
    for<'a> SockRef<'a>: From<&'a S>,
{
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        Pin::new(&mut self.0)
            .poll_read(cx, &mut buf)
            .map_ok(|()| buf.filled().len())
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn socket(&self) -> SockRef<'_> {
        SockRef::from(&self.0)
    }
}

/// A tokio sleep as a driver [`Timer`].
///
/// Boxed inside so that it is `Unpin`: the driver creates one timer per
/// connection task, and this keeps the adapter free of `unsafe`.
#[derive(Debug)]
struct Sleep(Pin<Box<tokio::time::Sleep>>);

impl Timer for Sleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.as_mut().reset(deadline.into());
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl CurrentRuntime for TokioRuntime {
    fn current() -> Option<Arc<dyn Runtime>> {
        Self::try_current().map(|rt| Arc::new(rt) as Arc<dyn Runtime>)
    }
}
