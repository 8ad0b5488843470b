//! Saying why a test skips, where the test log shows it.

use std::io::Write;

/// Prints `skipped: <test>: <reason>` on stderr, for a test about to return early because the
/// machine lacks what it needs (an older server, no pooler installed).
///
/// Written to the process's stderr directly rather than with `eprintln!`, which the test
/// harness captures and shows only for failing tests: a skip must be visible in a passing run.
pub fn skip(reason: impl std::fmt::Display) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr().lock(), "skipped: {test}: {reason}");
}
