//! Replays every checked-in fuzz corpus file, and every seed, through the
//! same target functions the fuzzer runs (`pgnotify_testkit::fuzz`), so a
//! regression the fuzzer once found fails a plain `cargo test`.
//!
//! With `PGNOTIFY_WRITE_SEEDS=1` the seeds are (re)written into
//! `fuzz/corpus/<target>/seed-<name>` first.

use std::fs;
use std::path::{Path, PathBuf};

use pgnotify_testkit::fuzz::{self, seeds};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn write_seeds_if_asked(target: &str) {
    if std::env::var_os("PGNOTIFY_WRITE_SEEDS").is_none() {
        return;
    }
    for (name, bytes) in seeds::for_target(target) {
        let path = corpus_dir(target).join(format!("seed-{name}"));
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// Runs every corpus file of `target`, naming the file that fails.
fn replay(target: &str, run: fuzz::Target) -> usize {
    write_seeds_if_asked(target);
    let files = corpus_files(target);
    for path in &files {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
    files.len()
}

fn target(name: &str) -> fuzz::Target {
    fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, run)| *run)
        .expect("a known target")
}

#[test]
fn server_bytes_corpus_replays_clean() {
    let replayed = replay("server_bytes", target("server_bytes"));
    assert!(replayed >= seeds::for_target("server_bytes").len());
}

#[test]
fn conninfo_corpus_replays_clean() {
    let replayed = replay("conninfo", target("conninfo"));
    assert!(replayed >= seeds::for_target("conninfo").len());
}

#[test]
fn bus_ops_corpus_replays_clean() {
    let replayed = replay("bus_ops", target("bus_ops"));
    assert!(replayed >= seeds::for_target("bus_ops").len());
}

#[test]
fn seeds_run_clean_and_are_checked_in() {
    for (target_name, run) in fuzz::TARGETS {
        for (name, bytes) in seeds::for_target(target_name) {
            run(&bytes);
            let path = corpus_dir(target_name).join(format!("seed-{name}"));
            let stored = fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{} is missing ({e}); run with PGNOTIFY_WRITE_SEEDS=1",
                    path.display()
                )
            });
            assert_eq!(
                stored,
                bytes,
                "{} is stale; run with PGNOTIFY_WRITE_SEEDS=1",
                path.display()
            );
        }
    }
}

#[test]
fn seeds_reach_every_start() {
    use pgnotify_testkit::fuzz::server_bytes::Start;
    let starts: Vec<u8> = seeds::for_target("server_bytes")
        .iter()
        .filter_map(|(_, bytes)| bytes.first().copied())
        .collect();
    for start in [
        Start::Disable,
        Start::Prefer,
        Start::Require,
        Start::AuthCleartext,
        Start::AuthMd5,
        Start::AuthSasl,
        Start::Ready,
        Start::InFlight,
    ] {
        assert!(
            starts.contains(&(start as u8)),
            "no seed starts at {start:?}"
        );
    }
}
