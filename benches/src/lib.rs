//! Benchmarks for pgnotify.
//!
//! Criterion micro-benchmarks of the core and end-to-end bench binaries
//! against peers will live here; none are written yet.
