//! Test kit for pgnotify: a real throwaway PostgreSQL server ([`server::TestServer`]), a real
//! throwaway PgBouncer in front of one ([`pooler::TestPgBouncer`]), a fault-injecting TCP proxy
//! ([`proxy::FaultProxy`]) and a simulated server for deterministic tests ([`sim`]).

pub mod fuzz;
pub mod pooler;
pub mod proxy;
pub mod scripted;
pub mod server;
pub mod sim;
pub mod simulation;
mod skip;

pub use skip::skip;
