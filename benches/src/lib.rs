//! Benchmarks for pgnotify.
//!
//! The library holds the workloads the benchmarks share, so the criterion
//! micro-benchmarks (`benches/fanout.rs`) and the allocation test
//! (`tests/alloc_per_delivery.rs`) measure exactly the same thing:
//!
//! - [`frames`]: NotificationResponse frames crafted in memory, grouped in
//!   chunks the size of a realistic socket read;
//! - [`sim_bus`]: a [`Bus`](pgnotify_core::bus::Bus) carried through startup
//!   and LISTEN by the testkit's simulated server;
//! - [`fanout`]: one fan-out workload ([`Scenario`](fanout::Scenario)) run
//!   through pgnotify ([`PgnotifyFanout`](fanout::PgnotifyFanout)) and
//!   through the `tokio::sync::broadcast<String>` baseline
//!   ([`BroadcastFanout`](fanout::BroadcastFanout)).

pub mod fanout;
pub mod frames;
pub mod sim_bus;
