//! pgnotify on smol.
//!
//! This crate holds only what differs on smol: [`SmolRuntime`], the
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
//! use pgnotify_smol::{Event, Gap, Listener};
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

use pgnotify_driver::async_io::AsyncIoExecutor;
use pgnotify_driver::{BoxFuture, CurrentRuntime, Runtime};

pub use pgnotify_driver::api::*;

/// One PostgreSQL LISTEN connection shared by any number of subscriptions,
/// on smol: [`pgnotify_driver::Listener`] with this crate's runtime.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = pgnotify_smol::Listener::connect("postgres://app@localhost/app").await?;
/// let mut jobs = listener.subscribe("jobs").await?;
/// while let Some(event) = jobs.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
///
#[doc = pgnotify_driver::__listener_methods_doc!()]
pub type Listener = pgnotify_driver::Listener<SmolRuntime>;

/// A builder for a [`Listener`] on smol.
///
/// Its methods are [`pgnotify_driver::ListenerBuilder`]'s; see [`Listener`]'s list.
pub type ListenerBuilder = pgnotify_driver::ListenerBuilder<SmolRuntime>;

/// The smol implementation of the driver's [`Runtime`].
///
/// The driver's task is spawned on smol's global executor
/// ([`smol::spawn`]), which runs on its own threads: no executor needs to be
/// driven by the application for pgnotify to make progress. Sockets and
/// timers come from `async-io`, smol's reactor (through
/// `pgnotify_driver::async_io`, shared with async-std).
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl AsyncIoExecutor for SmolRuntime {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { smol::net::resolve((host.as_str(), port)).await })
    }

    fn spawn(&self, future: BoxFuture<()>) {
        smol::spawn(future).detach();
    }
}

impl CurrentRuntime for SmolRuntime {
    fn current() -> Option<Arc<dyn Runtime>> {
        Some(Arc::new(SmolRuntime))
    }
}
