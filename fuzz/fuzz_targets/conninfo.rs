//! Arbitrary connection strings: what parses must print back and parse to
//! the same config; see `pgnotify_testkit::fuzz::conninfo`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgnotify_testkit::fuzz::conninfo(data));
