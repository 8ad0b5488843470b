//! Test kit for pgnotify: a real throwaway PostgreSQL server ([`server::TestServer`]), a real
//! throwaway PgBouncer in front of one ([`pooler::TestPgBouncer`]), a fault-injecting TCP proxy
//! ([`proxy::FaultProxy`]) and a simulated server for deterministic tests ([`sim_server`]).
//!
//! [`server`], [`pooler`] and [`skip`] are `pgnotify-throwaway`'s, re-exported unchanged (that
//! crate is published, for the `pgnotify demo` command; this one is not).

pub mod fuzz;
pub mod proxy;
pub mod scripted;
pub mod sim_server;
pub mod simulation;

pub use pgnotify_throwaway::{pooler, server, skip};
