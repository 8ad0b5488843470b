//! pgnotify on async-std.
//!
//! async-std has been discontinued upstream and points its users to smol;
//! this adapter stays, thin, for code that still runs on it. Prefer
//! `pgnotify-smol`.
//!
//! This crate holds only what differs on async-std: [`AsyncStdRuntime`], the
//! implementation of the driver's [`Runtime`] seam. Everything else (the
//! connection logic, TLS, the driver task, [`Listener`] and
//! [`Subscription`]) lives once in `pgnotify-driver` and is re-exported here.
//!
//! # Example
//!
//! One connection for the whole process; each subscription returns once the
//! server has acknowledged its LISTEN, and its stream says where
//! notifications may be missing:
//!
//! ```no_run
//! use pgnotify_async_std::{Event, Gap, Listener};
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

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use async_std::net::ToSocketAddrs;
use pgnotify_driver::async_io::AsyncIoExecutor;
use pgnotify_driver::{BoxFuture, CurrentRuntime, Runtime};

pub use pgnotify_driver::api::*;

/// One PostgreSQL LISTEN connection shared by any number of subscriptions,
/// on async-std: [`pgnotify_driver::Listener`] with this crate's runtime.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = pgnotify_async_std::Listener::connect("postgres://app@localhost/app").await?;
/// let mut jobs = listener.subscribe("jobs").await?;
/// while let Some(event) = jobs.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
///
#[doc = pgnotify_driver::__listener_methods_doc!()]
pub type Listener = pgnotify_driver::Listener<AsyncStdRuntime>;

/// A builder for a [`Listener`] on async-std.
///
/// Its methods are [`pgnotify_driver::ListenerBuilder`]'s; see [`Listener`]'s list.
pub type ListenerBuilder = pgnotify_driver::ListenerBuilder<AsyncStdRuntime>;

/// The async-std implementation of the driver's [`Runtime`].
///
/// The driver's task is spawned with [`async_std::task::spawn`]. Sockets
/// and timers come from `async-io`, the reactor async-std itself runs on
/// (through `pgnotify_driver::async_io`, shared with smol).
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdRuntime;

impl AsyncIoExecutor for AsyncStdRuntime {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok((host.as_str(), port).to_socket_addrs().await?.collect()) })
    }

    fn spawn(&self, future: BoxFuture<()>) {
        drop(async_std::task::spawn(future));
    }
}

impl CurrentRuntime for AsyncStdRuntime {
    fn current() -> Option<Arc<dyn Runtime>> {
        Some(Arc::new(AsyncStdRuntime))
    }
}
