//! Arbitrary server bytes, in arbitrary chunks, at every protocol phase;
//! see `pgnotify_testkit::fuzz::server_bytes` for the input format and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgnotify_testkit::fuzz::server_bytes(data));
