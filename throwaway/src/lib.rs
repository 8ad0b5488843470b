//! Throwaway PostgreSQL servers for tests and demos: a real server ([`server::TestServer`]) run
//! from the machine's own PostgreSQL binaries in a private directory on a free loopback port,
//! and a real PgBouncer in front of one ([`pooler::TestPgBouncer`]); both are shut down and
//! their directories removed on drop.
//!
//! ```no_run
//! use pgnotify_throwaway::server::TestServer;
//!
//! let server = TestServer::new()?;
//! println!("connect with {}", server.url());
//! # Ok::<(), pgnotify_throwaway::server::Error>(())
//! ```
//!
//! This is the part of pgnotify's test kit that the `pgnotify demo` command needs too, so it is
//! published on its own; `pgnotify-testkit` (unpublished) re-exports it unchanged.
//! Unix only: the servers run as the unprivileged `postgres` user when the process is root.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod pooler;
pub mod server;
mod skip;

pub use skip::skip;
