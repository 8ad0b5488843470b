//! The std-only example driver of pgnotify-core (`core/examples/blocking.rs`)
//! against a real server, so "embed it anywhere" is shown, not claimed.
//!
//! Cargo gives tests no path to another package's example binary, and a
//! nested `cargo run` would wait for the build lock this test run holds; so
//! the example's source is compiled here as a module and its `run`, the
//! whole of what `main` does after parsing its arguments, is called on a
//! thread with the server's URL. Every line it prints comes back through a
//! channel.

#[allow(dead_code)] // the example's `main`
#[path = "../../core/examples/blocking.rs"]
mod example;

use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pgnotify_core::Config;
use pgnotify_testkit::server::TestServer;

/// How long any one expected line may take.
const WAIT: Duration = Duration::from_secs(30);

const APP: &str = "blocking-example";

/// A `Write` that sends each line to the test.
struct Lines {
    partial: Vec<u8>,
    to_test: Sender<String>,
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            // The test may have stopped listening: the example goes on.
            let _ = self.to_test.send(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A line waited for: what it is, and how to know it.
type Wanted<'a> = (&'a str, &'a dyn Fn(&str) -> bool);

/// The example running on a thread, and what it printed.
struct Running {
    lines: Receiver<String>,
    seen: Vec<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Running {
    fn start(url: &str, channel: &str, payloads: &[&str]) -> Self {
        let config = Config::parse(url).expect("the server's URL parses");
        let channel = channel.to_owned();
        let payloads: Vec<String> = payloads.iter().map(|p| (*p).to_owned()).collect();
        let (to_test, lines) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut out = Lines {
                partial: Vec::new(),
                to_test,
            };
            example::run(config, &channel, &payloads, &mut out, &flag).map_err(|e| e.to_string())
        });
        Self {
            lines,
            seen: Vec::new(),
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for a line that satisfies `pred`, in order after the last one
    /// waited for, and returns it. Panics after [`WAIT`] with every line.
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "expected a line {what} within {WAIT:?}, got only:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits until each of `wanted` has matched a line, in any order, and
    /// returns the lines that matched, in the order of `wanted`.
    fn expect_each(&mut self, wanted: &[Wanted<'_>]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; wanted.len()];
        while found.iter().any(Option::is_none) {
            let missing: Vec<&str> = wanted
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|((what, _), _)| *what)
                .collect();
            let line = self.expect(&missing.join(", "), |_| true);
            if let Some(i) = (0..wanted.len()).find(|&i| found[i].is_none() && wanted[i].1(&line)) {
                found[i] = Some(line);
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Stops the example (it closes its bus) and returns how `run` ended.
    fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("running");
        thread.join().expect("the example did not panic")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn payload_of(line: &str) -> Option<&str> {
    line.strip_prefix("notification jobs ")?
        .split_once(" payload=")
        .map(|(_, payload)| payload)
}

/// The run: subscribe, notify, kill the backend, the gap, receive
/// again; against a server that offers TLS, with the default
/// `sslmode=prefer`, which a driver without TLS must connect to in plain
/// text. A burst of 1,000 in one transaction, taken in batches of 64,
/// arrives whole and in order; and `close` ends the session.
#[test]
fn the_blocking_example_listens_publishes_and_comes_back_after_its_backend_is_killed() {
    let (cert, key) = self_signed_certificate();
    let server = TestServer::builder()
        .ssl(cert, key)
        .start()
        .expect("a server");
    let url = format!("{}?application_name={APP}", server.url());
    let mut example = Running::start(&url, "jobs", &["hello"]);

    example.expect_each(&[
        ("ready jobs", &|l| l == "ready jobs"),
        ("connected generation=1", &|l| l == "connected generation=1"),
    ]);
    let own = example.expect_each(&[
        ("its own notification", &|l| payload_of(l) == Some("hello")),
        ("published", &|l| l == "published"),
    ]);
    let own = &own[0];
    let backend = server
        .query(&format!(
            "SELECT pid, ssl FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
             WHERE application_name = '{APP}'"
        ))
        .expect("query");
    assert_eq!(backend.len(), 1, "one listening session: {backend:?}");
    assert_eq!(
        backend[0][1], "f",
        "plain text, though the server offers TLS"
    );
    assert!(
        own.contains(&format!("pid={} ", backend[0][0])),
        "{own} names the listening backend"
    );

    server.execute("NOTIFY jobs, 'from psql'").expect("notify");
    example.expect("the notification from psql", |l| {
        payload_of(l) == Some("from psql")
    });

    server
        .execute("SELECT pg_notify('jobs', 'burst ' || i) FROM generate_series(1, 1000) i")
        .expect("burst");
    for i in 1..=1000 {
        let want = format!("burst {i}");
        let line = example.expect(&format!("burst {i}"), |l| l.starts_with("notification"));
        assert_eq!(
            payload_of(&line),
            Some(want.as_str()),
            "in order, none missing"
        );
    }

    assert_eq!(server.terminate_backends(APP).expect("terminate"), 1);
    example.expect("disconnected", |l| l.starts_with("disconnected: "));
    let gap = example.expect_each(&[
        ("the reconnect gap", &|l| l.starts_with("gap: ")),
        ("connected generation=2", &|l| l == "connected generation=2"),
    ]);
    assert!(gap[0].contains("reconnected (generation 2)"), "{}", gap[0]);

    server.execute("NOTIFY jobs, 'after'").expect("notify");
    example.expect("the notification after the gap", |l| {
        payload_of(l) == Some("after")
    });

    assert_eq!(example.stop(), Ok(()));
    let deadline = Instant::now() + WAIT;
    let sessions = || {
        server
            .query(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}'"
            ))
            .expect("query")[0][0]
            .clone()
    };
    while sessions() != "0" {
        assert!(Instant::now() < deadline, "the session outlived close");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_blocking_example_refuses_an_sslmode_that_needs_tls() {
    let config = Config::parse("postgres://app@127.0.0.1:1/app?sslmode=require").expect("valid");
    let stop = AtomicBool::new(false);
    let error = example::run(config, "jobs", &[], &mut io::sink(), &stop)
        .expect_err("a driver without TLS cannot satisfy require");
    assert!(
        error.to_string().contains("sslmode=require requires TLS"),
        "{error}"
    );
}

/// A self-signed certificate and key for `localhost`, made with the `openssl`
/// command (which the PostgreSQL packages depend on).
fn self_signed_certificate() -> (Vec<u8>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("blocking-example-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let pair = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    pair
}
