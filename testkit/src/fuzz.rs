//! The bodies of the fuzz targets in `fuzz/`, kept here so that a plain
//! `cargo test` replays every checked-in corpus file through the same code
//! (`testkit/tests/fuzz_corpus_replay.rs`); the cargo-fuzz targets are
//! one-line calls into this module.
//!
//! - [`server_bytes()`]: arbitrary server bytes, in arbitrary chunks, at every
//!   phase of one protocol connection (invariant 9, bad input: a typed error, never a panic);
//! - [`conninfo()`]: arbitrary connection strings through the parser and back;
//! - [`bus_ops()`]: arbitrary API calls, server events and faults through the
//!   deterministic simulation, the ten invariants (ARCHITECTURE.md,
//!   "Invariants") checked after every step.
//!
//! Each target panics when a property fails, which is what the fuzzer and
//! the replay test report.

pub mod bus_ops;
pub mod conninfo;
pub mod seeds;
pub mod server_bytes;
pub mod wire;

pub use bus_ops::bus_ops;
pub use conninfo::conninfo;
pub use server_bytes::server_bytes;

/// A target body: one input, panicking when a property fails.
pub type Target = fn(&[u8]);

/// The targets by name, as their corpus directories are named.
pub const TARGETS: [(&str, Target); 3] = [
    ("server_bytes", server_bytes),
    ("conninfo", conninfo),
    ("bus_ops", bus_ops),
];
