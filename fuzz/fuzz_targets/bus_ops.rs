//! Arbitrary API calls, server events and faults through the deterministic
//! simulation, checking the ten invariants (ARCHITECTURE.md, "Invariants") after every step; see
//! `pgnotify_testkit::fuzz::bus_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgnotify_testkit::fuzz::bus_ops(data));
