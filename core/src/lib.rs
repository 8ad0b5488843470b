//! The sans-IO heart of pgnotify: one PostgreSQL LISTEN connection, fanned
//! out to any number of subscribers, as a pure state machine.
//!
//! This crate does no IO, reads no clock, spawns nothing and never sleeps.
//! Every input carries the [`Instant`](std::time::Instant) at which it
//! happened, and every output is plain data for a driver to act on, so the
//! same inputs always give the same outputs. That is what lets pgnotify be
//! fuzzed and simulated deterministically; the async crates
//! (`pgnotify-tokio`, `pgnotify-smol`, `pgnotify-async-std`) are thin
//! drivers around it.
//!
//! The crate has three layers:
//!
//! - [`config`]: connection strings (URL and key=value), PG* defaults and
//!   pgnotify's own settings;
//! - [`protocol`]: one physical connection (startup, TLS negotiation,
//!   authentication, commands in flight, notifications);
//! - [`bus`]: the channel registry, the subscriber queues and their overflow
//!   policies, reconnects, pings and publishing.
//!
//! ```
//! use pgnotify_core::{validate_channel, Gap};
//! assert!(validate_channel("jobs").is_ok());
//! assert_eq!(Gap::Overflow { missed: 3 }.to_string(), "3 notifications dropped by the overflow policy");
//! ```

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Where links to this crate go from a crate documented before it (a runtime crate under
// `cargo doc --no-deps`, which documents the workspace in parallel): docs.rs, not plain text.
#![doc(html_root_url = "https://docs.rs/pgnotify-core/0.1.0")]

pub mod bus;
mod channel;
pub mod config;
pub mod durable;
mod event;
pub mod protocol;
mod statement;
mod text;

pub use bus::policy::{
    DEFAULT_CAPACITY, DEFAULT_STALL_LIMIT, OverflowPolicy, SubscribeOptions, UnknownPolicy,
};
pub use channel::{
    ChannelError, MAX_CHANNEL_LEN, MAX_PAYLOAD_LEN, PayloadError, push_quoted_identifier,
    validate_channel, validate_payload,
};
pub use config::{Config, ConfigError};
pub use event::{EndReason, Event, Gap, Notification};
pub use statement::notify_statement;
pub use text::SharedStr;
