//! Headless Chromium driven over the DevTools protocol on a pipe.
//!
//! `--dump-dom` prints the page when it has loaded, which for a page that
//! keeps an `EventSource` open is before any event arrives, and
//! `--virtual-time-budget` never expires while that request is pending. So
//! the browser is kept running with `--remote-debugging-pipe` (commands on
//! fd 3, replies on fd 4, each a JSON message ended by a NUL byte), and the
//! test asks the live page for its DOM as often as it needs.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where Debian's `chromium` (what `.ci/run` installs) or an override lives,
/// or `None` after saying why the test skips.
///
/// Without a browser the test skips (printed past the harness's capture), so
/// `cargo test --workspace` on a fresh machine runs every suite; under CI
/// (`CI` set) a missing browser is a failure, as for the pooler tests'
/// PgBouncer (`pgnotify_testkit::pooler::pgbouncer_or_skip`).
pub(crate) fn chromium_or_skip() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PGNOTIFY_CHROMIUM") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let reason = "the browser test needs Chromium and none was found in PATH (chromium, \
                  chromium-browser, google-chrome) or PGNOTIFY_CHROMIUM; install it with \
                  `apt-get install chromium` (.ci/run does this when it is missing)";
    if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
        panic!("{reason} (CI is set, so this is a failure)");
    }
    pgnotify_throwaway::skip(reason);
    None
}

/// A headless Chromium with one page open.
pub(crate) struct Browser {
    child: Child,
    commands: File,
    replies: BufReader<File>,
    session: String,
    next_id: u64,
    profile: PathBuf,
}

impl Browser {
    /// Starts Chromium and opens `url` in a new page.
    pub(crate) fn open(chromium: &Path, url: &str) -> Browser {
        static PROFILES: AtomicU64 = AtomicU64::new(0);
        let profile = std::env::temp_dir().join(format!(
            "pgnotify-chromium-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let (commands_read, commands_write) = pipe();
        let (replies_read, replies_write) = pipe();
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that dropping it kills every helper.
            .process_group(0);
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Move both ends out of the way first, so that placing one on
                // fd 3 cannot close the other if it happens to be fd 4.
                let read = check(libc::fcntl(commands_read, libc::F_DUPFD, 10))?;
                let write = check(libc::fcntl(replies_write, libc::F_DUPFD, 10))?;
                // dup2 clears close-on-exec on the new descriptor.
                check(libc::dup2(read, 3))?;
                check(libc::dup2(write, 4))?;
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("could not start {}: {e}", chromium.display());
        });
        // SAFETY: each descriptor was just created by pipe() and is owned only here.
        let (commands, replies) = unsafe {
            libc::close(commands_read);
            libc::close(replies_write);
            (
                File::from_raw_fd(commands_write),
                File::from_raw_fd(replies_read),
            )
        };
        let mut browser = Browser {
            child,
            commands,
            replies: BufReader::new(replies),
            session: String::new(),
            next_id: 0,
            profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// Evaluates `expression` in the page and returns its value (as JSON).
    pub(crate) fn evaluate(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let reply = self.call(
            Some(&session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(exception) = reply.get("exceptionDetails") {
            panic!("evaluating {expression:?} threw: {exception}");
        }
        reply["result"]["value"].clone()
    }

    /// Evaluates `expression` until `done` accepts its value, for up to
    /// `limit`; panics with `what` and the last value otherwise.
    pub(crate) fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        expression: &str,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.evaluate(expression);
            if done(&value) {
                return value;
            }
            if Instant::now() >= deadline {
                panic!("{what}: not seen within {limit:?}; the page's last answer: {value}");
            }
            // Each evaluation is a round trip to the page; a short pause
            // keeps the poll from spinning a core.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command and reads until its reply, skipping events.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("Chromium stopped taking commands ({method}): {e}"));
        loop {
            let mut reply = Vec::new();
            let n = self
                .replies
                .read_until(0, &mut reply)
                .unwrap_or_else(|e| panic!("reading Chromium's reply to {method}: {e}"));
            assert!(n > 0, "Chromium exited before answering {method}");
            if reply.last() == Some(&0) {
                reply.pop();
            }
            let reply: Value = serde_json::from_slice(&reply).expect("a JSON reply");
            if reply["id"] != json!(id) {
                continue;
            }
            if let Some(error) = reply.get("error") {
                panic!("Chromium refused {method}: {error}");
            }
            return reply["result"].clone();
        }
    }
}

impl Drop for Browser {
    /// Asks Chromium to close, waits briefly, then kills its whole process
    /// group (renderers and helpers included) before removing the profile.
    fn drop(&mut self) {
        let close = b"{\"id\":0,\"method\":\"Browser.close\",\"params\":{}}\0";
        if self.commands.write_all(close).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: signals the process group this browser was started in.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

fn check(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
