//! The `pgnotify` binary, run as a user would, against throwaway servers.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pgnotify_testkit::scripted::{Script, ScriptedServer};
use pgnotify_testkit::server::TestServer;

/// The JSON line format, the same file the binary is built with: every JSON
/// line these tests read is checked against it (`checked`).
#[allow(dead_code)] // the binary's --help text, unused here
#[path = "../src/schema.rs"]
mod schema;

/// How long a test waits for one line before it fails (a hang guard, not a
/// synchronisation: every wait is for a line the binary must print).
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The variables that would point the binary somewhere other than the test's server.
const CONNECTION_VARIABLES: [&str; 10] = [
    "DATABASE_URL",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGAPPNAME",
    "PGSERVICE",
    "PGSERVICEFILE",
];

fn pgnotify() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgnotify"));
    for variable in CONNECTION_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// `line`, after checking it against the schema if it is a JSON line (the
/// text format's lines start with `[` or `--`).
fn checked(line: String) -> String {
    if line.starts_with('{') {
        if let Err(e) = schema::check(&line) {
            panic!("a JSON line outside the schema: {e}");
        }
    }
    line
}

/// Every line of `stdout`, checked against the schema.
fn check_all(stdout: &[u8]) {
    for line in String::from_utf8_lossy(stdout).lines() {
        checked(line.to_owned());
    }
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run pgnotify")
}

fn notify(server: &TestServer, channel: &str, payload: &str) {
    let output = run(pgnotify().args(["--url", &server.url(), "notify", channel, payload]));
    assert!(
        output.status.success(),
        "notify failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running `pgnotify listen`, read line by line; killed when dropped.
struct Listen {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Listen {
    /// Starts `pgnotify --url URL listen ARGS...` and waits for its
    /// `listening` line (or the first line, for `--format text`).
    fn start(server: &TestServer, args: &[&str]) -> Self {
        let mut child = pgnotify()
            .args(["--url", &server.url(), "listen"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgnotify listen");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listen = Self { child, lines };
        let first = listen.next_line();
        assert!(
            first.contains(r#""type":"listening""#) || first.starts_with("-- listening on"),
            "expected the listening line first, got {first:?}"
        );
        listen
    }

    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => checked(line),
            Err(_) => {
                let _ = self.child.kill();
                let output = stderr_after_exit(&mut self.child);
                panic!("no line from pgnotify listen within {LINE_TIMEOUT:?}; stderr: {output}");
            }
        }
    }

    /// Sends SIGINT and returns the exit status and stderr.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let status = self.child.wait().expect("wait for pgnotify listen");
        (status, stderr_after_exit(&mut self.child))
    }
}

/// Everything an exited (or killed) child wrote on stderr.
fn stderr_after_exit(child: &mut Child) -> String {
    let _ = child.wait();
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
    }
    text
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A JSON line without its `"ts"` and `"v"` (asserting they are there and
/// well formed), for comparing the rest exactly.
fn unstamped(line: &str) -> String {
    let (body, stamp) = line
        .rsplit_once(r#","ts":""#)
        .unwrap_or_else(|| panic!("no ts in {line:?}"));
    let ts = stamp
        .strip_suffix(r#"","v":1}"#)
        .unwrap_or_else(|| panic!("no v:1 at the end of {line:?}"));
    // 2026-11-29T23:07:28.123Z
    assert_eq!(ts.len(), 24, "ts {ts:?}");
    assert!(
        ts.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            23 => b == b'Z',
            _ => b.is_ascii_digit(),
        }),
        "ts {ts:?}"
    );
    format!("{body}}}")
}

/// Runs `pgnotify --url URL listen ARGS...` to its end with stdout and
/// stderr collected, sending `payloads` once it is listening.
fn listen_until_exit(server: &TestServer, args: &[&str], payloads: &[&str]) -> Output {
    let mut child = pgnotify()
        .args(["--url", &server.url(), "listen"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgnotify listen");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("the listening line");
    assert!(
        first.contains(r#""type":"listening""#),
        "first line {first:?}"
    );
    for payload in payloads {
        notify(server, "jobs", payload);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read stdout");
    let mut output = child.wait_with_output().expect("wait for pgnotify listen");
    output.stdout = format!("{first}{rest}").into_bytes();
    check_all(&output.stdout);
    output
}

fn notification_payloads(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(r#""type":"notification""#))
        .map(|line| {
            let start = line.find(r#""payload":""#).expect("a payload") + 11;
            let end = line.find(r#"","pid":"#).expect("a pid");
            line[start..end].to_owned()
        })
        .collect()
}

#[test]
fn listen_prints_a_notification_sent_by_notify_as_a_json_line() {
    let server = TestServer::new().expect("start server");
    let mut listen = Listen::start(&server, &["jobs"]);
    notify(&server, "jobs", "say \"hi\"\n\\ok");
    let line = listen.next_line();
    assert!(
        line.starts_with(
            r#"{"type":"notification","channel":"jobs","payload":"say \"hi\"\n\\ok","pid":"#
        ),
        "unexpected line {line:?}"
    );
}

#[test]
fn notify_without_payload_sends_each_stdin_line_in_order() {
    let server = TestServer::new().expect("start server");
    let mut listen = Listen::start(&server, &["lines"]);
    let mut child = pgnotify()
        .args(["--url", &server.url(), "notify", "lines"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgnotify notify");
    let payloads: Vec<String> = (1..=50).map(|n| format!("line {n}")).collect();
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all((payloads.join("\n") + "\n").as_bytes())
        .expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("wait for notify");
    assert!(output.status.success(), "notify: {}", stderr_of(&output));
    for payload in payloads {
        let line = listen.next_line();
        assert!(
            line.contains(&format!(r#""payload":"{payload}""#)),
            "expected {payload:?} next, got {line:?}"
        );
    }
}

#[test]
fn notify_reports_the_failed_stdin_line_and_exits_non_zero() {
    let server = TestServer::new().expect("start server");
    let mut child = pgnotify()
        .args(["--url", &server.url(), "notify", "lines"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgnotify notify");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let too_long = "x".repeat(8000);
    write!(stdin, "fine\n{too_long}\nalso fine\n").expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("wait for notify");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("line 2: invalid payload: payload is 8000 bytes long"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("1 of 3 notifications failed"),
        "stderr: {stderr}"
    );
}

#[test]
fn listen_text_format_prints_channel_payload_and_pid_on_one_line() {
    let server = TestServer::new().expect("start server");
    let mut listen = Listen::start(&server, &["--format", "text", "Jobs"]);
    notify(&server, "Jobs", "two\nlines");
    let line = listen.next_line();
    assert!(
        line.starts_with("[Jobs] two\\nlines  (pid "),
        "unexpected line {line:?}"
    );
}

#[test]
fn listen_marks_a_terminated_backend_with_connection_and_gap_lines() {
    let server = TestServer::new().expect("start server");
    let mut listen = Listen::start(&server, &["jobs"]);
    assert_eq!(server.terminate_backends("pgnotify").expect("terminate"), 1);
    let mut lines = Vec::new();
    while !lines
        .last()
        .is_some_and(|l: &String| l.contains(r#""type":"gap""#))
    {
        lines.push(listen.next_line());
    }
    assert!(
        lines[0].starts_with(r#"{"type":"disconnected","error":"#),
        "lines: {lines:#?}"
    );
    // A server error: its SQLSTATE (57P01, admin_shutdown) in "code".
    assert!(
        lines[0].contains(r#","code":"57P01","ts":"#),
        "lines: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| unstamped(line) == r#"{"type":"connected","generation":2}"#),
        "lines: {lines:#?}"
    );
    assert_eq!(
        lines.last().map(|line| unstamped(line)).as_deref(),
        Some(r#"{"type":"gap","kind":"reconnected","generation":2,"channel":"jobs"}"#)
    );
    notify(&server, "jobs", "after");
    assert!(listen.next_line().contains(r#""payload":"after""#));
}

#[test]
fn listen_exits_cleanly_on_ctrl_c_and_leaves_no_session() {
    let server = TestServer::new().expect("start server");
    let listen = Listen::start(&server, &["jobs"]);
    let (status, stderr) = listen.interrupt();
    assert!(status.success(), "status {status}, stderr {stderr:?}");
    // Nothing but the summary.
    assert!(
        stderr.starts_with("pgnotify: 0 notifications, 0 gaps, 0 reconnects in ")
            && stderr.ends_with("s\n")
            && stderr.lines().count() == 1,
        "stderr {stderr:?}"
    );
    let sessions = server
        .execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgnotify'")
        .expect("count sessions");
    // close() waits until the socket is closed; the backend may still be exiting.
    assert!(
        sessions == "0" || sessions == "1",
        "unexpected count {sessions}"
    );
}

#[test]
fn a_bad_channel_name_is_a_one_line_usage_error_before_connecting() {
    // Port 1: nothing listens there, so a connection attempt would fail differently.
    for name in ["", &"x".repeat(64)] {
        let output = run(pgnotify().args(["--url", "postgres://127.0.0.1:1/x", "listen", name]));
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
        assert!(
            stderr.starts_with("pgnotify: bad channel"),
            "stderr: {stderr}"
        );
    }
}

#[test]
fn unknown_options_and_policies_are_one_line_usage_errors() {
    for args in [
        &["listen", "--policy", "sometimes", "jobs"][..],
        &["listen", "--fromat", "text", "jobs"],
        &["listen"],
        &["notify"],
    ] {
        let output = run(pgnotify().args(args));
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("pgnotify: "), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unreachable_server_gives_up_after_the_connect_timeout_with_one_line() {
    let output = run(pgnotify().args([
        "--url",
        "postgres://127.0.0.1:1/x",
        "--connect-timeout",
        "300ms",
        "listen",
        "jobs",
    ]));
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("pgnotify: could not connect to 127.0.0.1:1 within 300ms"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("refused"), "stderr: {stderr}");
    assert_eq!(
        stderr.matches("could not connect").count(),
        1,
        "said once: {stderr}"
    );
}

/// Issue 14: a server that never finishes the startup. The CLI cuts each
/// attempt to end within its own `--connect-timeout`, so its one line
/// names the cause rather than only the time.
#[test]
fn a_server_that_never_finishes_startup_is_named_in_the_give_up_line() {
    let server = ScriptedServer::start(Script::NoticesDuringStartup).expect("a scripted server");
    let url = format!("{}?sslmode=disable", server.url());
    let output = run(pgnotify().args(["--url", &url, "--connect-timeout", "3s", "listen", "jobs"]));
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("took longer than 2s"), "stderr: {stderr}");
}

/// Issue 14: an error answer to SSLRequest (a man in the middle's "bad
/// password") is retried, and its text never reaches the terminal.
#[test]
fn an_injected_error_before_tls_is_retried_and_never_printed() {
    let server = ScriptedServer::start(Script::ErrorAnswerToSslRequest).expect("a scripted server");
    let url = format!("{}?sslmode=require", server.url());
    let output = run(pgnotify().args(["--url", &url, "--connect-timeout", "1s", "listen", "jobs"]));
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains("refused or broke the SSL request"),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("password") && !stderr.contains('\x1b'),
        "stderr: {stderr}"
    );
    assert!(server.accepted().len() >= 2, "retried: {stderr}");
}

/// Issue 15: libpq's service file, named by `service=` or `PGSERVICE`
/// and found through `PGSERVICEFILE`, gives the server to connect to.
#[test]
fn a_service_file_names_the_server() {
    let server = TestServer::new().expect("a server");
    let dir = std::env::temp_dir().join(format!("pgnotify-cli-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let file = dir.join("pg_service.conf");
    std::fs::write(
        &file,
        format!(
            "# a test service\n[pgnotify-test]\nhost=127.0.0.1\nport={}\nuser={}\ndbname=postgres\nsslmode=disable\n",
            server.port(),
            server.user()
        ),
    )
    .expect("write the service file");
    for (url, service) in [
        (Some("service=pgnotify-test"), None),
        (None, Some("pgnotify-test")),
    ] {
        let mut command = pgnotify();
        command.env("PGSERVICEFILE", &file);
        if let Some(url) = url {
            command.args(["--url", url]);
        }
        if let Some(service) = service {
            command.env("PGSERVICE", service);
        }
        let output =
            run(command.args(["--connect-timeout", "10s", "notify", "jobs", "via service"]));
        assert!(
            output.status.success(),
            "{url:?} {service:?}: {}",
            stderr_of(&output)
        );
    }
    let output = run(pgnotify().env("PGSERVICEFILE", &file).args([
        "--url",
        "service=missing",
        "notify",
        "jobs",
        "x",
    ]));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("definition of service \"missing\" not found"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_runs_to_completion_with_both_gaps_and_the_stats() {
    let output = run(pgnotify().arg("demo"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {}\n{stdout}",
        stderr_of(&output)
    );
    for expected in [
        "5 subscriptions on 2 channels share 1 connection",
        "the server agrees: 1 session",
        "dashboard <- GAP (overflow): 17 notifications dropped by the overflow policy",
        "pg_terminate_backend(",
        "GAP (reconnect): reconnected (generation 2)",
        "NOTIFY after the gap: cache <- \"order 22 created\"",
        "notifications received   24",
        "dropped (drop-oldest)    17",
        "stopped and removed the server",
    ] {
        assert!(
            stdout.contains(expected),
            "demo output lacks {expected:?}:\n{stdout}"
        );
    }
}

#[test]
fn demo_against_a_given_server_reconnects_with_bounce() {
    let server = TestServer::new().expect("start server");
    let output = run(pgnotify().args(["--url", &server.url(), "demo"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {}\n{stdout}",
        stderr_of(&output)
    );
    assert!(stdout.contains("Listener::bounce()"), "{stdout}");
    assert!(
        stdout.contains("GAP (reconnect): reconnected (generation 2)"),
        "{stdout}"
    );
    assert!(!stdout.contains("starting a throwaway"), "{stdout}");
}

#[test]
fn every_json_line_carries_an_rfc3339_timestamp_and_the_format_version() {
    let server = TestServer::new().expect("start server");
    let mut listen = Listen::start(&server, &["jobs"]);
    notify(&server, "jobs", "42");
    let line = listen.next_line();
    assert!(
        unstamped(&line)
            .starts_with(r#"{"type":"notification","channel":"jobs","payload":"42","pid":"#),
        "line {line:?}"
    );
}

#[test]
fn a_repeated_channel_is_listened_on_and_printed_once() {
    let server = TestServer::new().expect("start server");
    let output = listen_until_exit(
        &server,
        &["jobs", "jobs", "--count", "2", "--timeout", "30s"],
        &["a", "b"],
    );
    assert!(output.status.success(), "stderr {}", stderr_of(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(r#"{"type":"listening","channels":["jobs"],"#),
        "stdout {stdout}"
    );
    assert_eq!(
        notification_payloads(&output),
        ["a", "b"],
        "stdout {stdout}"
    );
}

#[test]
fn count_exits_zero_after_n_notifications_with_a_summary() {
    let server = TestServer::new().expect("start server");
    let output = listen_until_exit(&server, &["--count", "2", "jobs"], &["1", "2", "3"]);
    assert!(output.status.success(), "stderr {}", stderr_of(&output));
    assert_eq!(notification_payloads(&output), ["1", "2"]);
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with("pgnotify: 2 notifications, 0 gaps, 0 reconnects in "),
        "stderr {stderr:?}"
    );
}

#[test]
fn until_payload_exits_zero_after_the_matching_notification() {
    let server = TestServer::new().expect("start server");
    let output = listen_until_exit(
        &server,
        &["--until-payload", "done 42", "--timeout", "30s", "jobs"],
        &["done 41", "done 42", "later"],
    );
    assert!(output.status.success(), "stderr {}", stderr_of(&output));
    assert_eq!(notification_payloads(&output), ["done 41", "done 42"]);
}

#[test]
fn timeout_exits_three_when_too_few_notifications_arrived() {
    let server = TestServer::new().expect("start server");
    let output = listen_until_exit(
        &server,
        &["--count", "2", "--timeout", "1s", "jobs"],
        &["1"],
    );
    assert_eq!(
        output.status.code(),
        Some(3),
        "stderr {}",
        stderr_of(&output)
    );
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with("pgnotify: 1 notifications, 0 gaps, 0 reconnects in ")
            && stderr.ends_with("pgnotify: timed out: 1 of 2 notifications arrived within 1s\n"),
        "stderr {stderr:?}"
    );
    // A bare --timeout succeeds once something arrived, and fails if nothing did.
    let output = listen_until_exit(&server, &["--timeout", "1s", "jobs"], &["x"]);
    assert!(output.status.success(), "stderr {}", stderr_of(&output));
    let output = listen_until_exit(&server, &["--timeout", "500ms", "jobs"], &[]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "stderr {}",
        stderr_of(&output)
    );
    assert!(
        stderr_of(&output).ends_with("pgnotify: timed out: no notification within 500ms\n"),
        "stderr {:?}",
        stderr_of(&output)
    );
}

#[test]
fn verbose_shows_the_librarys_log_on_stderr() {
    let server = TestServer::new().expect("start server");
    let output = listen_until_exit(&server, &["-v", "--count", "1", "jobs"], &["x"]);
    assert!(output.status.success(), "stderr {}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(
        stderr
            .lines()
            .any(|line| line.contains(" INFO pgnotify_driver") && line.contains("connected")),
        "stderr {stderr:?}"
    );
    // Without -v, nothing but the summary.
    let output = listen_until_exit(&server, &["--count", "1", "jobs"], &["x"]);
    assert_eq!(
        stderr_of(&output).lines().count(),
        1,
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn notify_sends_a_whole_file_or_all_of_stdin_as_one_payload() {
    let server = TestServer::new().expect("start server");
    let mut listen = Listen::start(&server, &["jobs"]);
    let path = std::env::temp_dir().join(format!("pgnotify-cli-payload-{}", std::process::id()));
    std::fs::write(&path, "{\"id\": 42}\nsecond line\n").expect("write the payload file");
    let output = run(pgnotify()
        .args(["--url", &server.url(), "notify", "--file"])
        .arg(&path)
        .arg("jobs"));
    let _ = std::fs::remove_file(&path);
    assert!(output.status.success(), "stderr {}", stderr_of(&output));
    assert!(
        listen
            .next_line()
            .contains(r#""payload":"{\"id\": 42}\nsecond line\n""#),
        "the file's text, newlines included"
    );

    let mut child = pgnotify()
        .args(["--url", &server.url(), "notify", "--stdin-whole", "jobs"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start pgnotify notify");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"a\nb\n")
        .expect("write stdin");
    assert!(child.wait().expect("wait").success());
    assert!(listen.next_line().contains(r#""payload":"a\nb\n""#));

    // A payload and --file together are a usage error.
    let output =
        run(pgnotify().args(["--url", &server.url(), "notify", "--file", "x", "jobs", "p"]));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn listen_help_lists_the_schema_every_type_kind_and_field() {
    let output = run(pgnotify().args(["listen", "--help"]));
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    // Types at an indent of 2, a gap's kinds below it at 20.
    let types = schema::TYPES.iter().map(|t| (2, t));
    for (indent, t) in types.chain(schema::GAP_KINDS.iter().map(|k| (20, k))) {
        let start = format!("{:indent$}{} ", "", t.name);
        let line = help
            .lines()
            .find(|line| line.starts_with(&start))
            .unwrap_or_else(|| panic!("no line for {} in:\n{help}", t.name));
        for field in t.fields {
            assert!(line.contains(field.name), "{}: {line}", field.name);
        }
    }
    assert!(help.contains("SQLSTATE"), "{help}");
}

#[test]
fn completions_print_a_script_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_pgnotify()"),
        ("zsh", "#compdef pgnotify"),
        ("fish", "complete -c pgnotify"),
        ("elvish", "edit:completion:arg-completer[pgnotify]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let output = run(pgnotify().args(["completions", shell]));
        assert!(output.status.success(), "{shell}: {}", stderr_of(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains(marker),
            "{shell} lacks {marker:?}:\n{script}"
        );
        for word in [
            "listen",
            "notify",
            "until-payload",
            "connect-timeout",
            "install",
            "prune",
            "durable",
            "since",
            "keep-last",
        ] {
            assert!(script.contains(word), "{shell} lacks {word:?}");
        }
    }
    // No server is needed, nor read from a bad environment.
    let output = run(pgnotify()
        .env("DATABASE_URL", "not a url")
        .args(["completions", "zsh"]));
    assert!(output.status.success(), "{}", stderr_of(&output));
    let output = run(pgnotify().args(["completions", "tcsh"]));
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr_of(&output).lines().count(), 1);
}

#[test]
fn man_prints_a_roff_page_naming_every_subcommand() {
    let output = run(pgnotify().env("DATABASE_URL", "not a url").arg("man"));
    assert!(output.status.success(), "{}", stderr_of(&output));
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(page.contains(".TH pgnotify 1"), "{page}");
    for word in [
        ".SH NAME",
        ".SH SYNOPSIS",
        "listen",
        "notify",
        "demo",
        "completions",
        "install",
        "prune",
    ] {
        assert!(page.contains(word), "{word:?} missing from:\n{page}");
    }
    let help = run(pgnotify().arg("--help"));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("completions") && help.contains("man "),
        "{help}"
    );
}

#[test]
fn listen_help_names_every_json_type_and_gap_kind() {
    let output = run(pgnotify().args(["listen", "--help"]));
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for word in [
        "listening",
        "notification",
        "gap",
        "overflow",
        "reconnected",
        "connected",
        "disconnected",
        "connect_failed",
        "stopped",
        "events_lagged",
        "connection",
        "end",
        "other",
        "message",
        "position",
        "expired",
        "\"ts\"",
        "\"v\":1",
        "--count",
        "--until-payload",
        "--timeout",
        "--verbose",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

/// `pgnotify --url URL ARGS...`, run to its end.
fn pgnotify_at(server: &TestServer, args: &[&str]) -> Output {
    let output = run(pgnotify().args(["--url", &server.url()]).args(args));
    check_all(&output.stdout);
    output
}

/// Runs `ARGS...` and returns its stdout, failing the test if it failed.
fn succeeds(server: &TestServer, args: &[&str]) -> String {
    let output = pgnotify_at(server, args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        stderr_of(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `"message"` lines of `stdout` as (position, payload).
fn durable_messages(stdout: &str) -> Vec<(u64, String)> {
    stdout
        .lines()
        .filter(|line| line.contains(r#""type":"message""#))
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            (
                value["position"].as_u64().expect("a position"),
                value["payload"].as_str().expect("a payload").to_owned(),
            )
        })
        .collect()
}

#[test]
fn install_twice_then_a_100_kb_durable_message_is_listened_to_from_position_0() {
    let server = TestServer::new().expect("start server");
    let first = succeeds(&server, &["install"]);
    assert!(
        first.starts_with(r#"installed durable channels in schema "pgnotify" (version 1"#),
        "{first}"
    );
    let again = succeeds(&server, &["install"]);
    assert!(
        again.starts_with(r#"durable channels in schema "pgnotify" were already installed"#),
        "{again}"
    );
    let big: String = (0..100_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let ticket = succeeds(&server, &["notify", "--durable", "orders", &big]);
    assert!(
        ticket.trim().parse::<u64>().is_ok(),
        "the ticket, got {ticket:?}"
    );
    // Plain notify keeps refusing what NOTIFY cannot carry, before connecting.
    let plain = pgnotify_at(&server, &["notify", "orders", &big]);
    assert_eq!(plain.status.code(), Some(2), "{}", stderr_of(&plain));

    let stdout = succeeds(
        &server,
        &[
            "listen",
            "--durable",
            "--since",
            "0",
            "--count",
            "1",
            "--timeout",
            "30s",
            "orders",
        ],
    );
    let mut lines = stdout.lines();
    let listening = lines.next().expect("the listening line");
    assert!(
        listening.starts_with(r#"{"type":"listening","channels":["orders"],"#)
            && listening.contains(r#""cursor":0,"#),
        "{listening}"
    );
    assert_eq!(durable_messages(&stdout), [(1, big)]);
}

#[test]
fn listen_durable_prints_live_messages_with_their_position_as_json_and_text() {
    let server = TestServer::new().expect("start server");
    succeeds(&server, &["install", "--schema", "outbox"]);
    succeeds(
        &server,
        &[
            "notify",
            "--durable",
            "--schema",
            "outbox",
            "jobs",
            "before",
        ],
    );
    let mut json = Listen::start(&server, &["--durable", "--schema", "outbox", "jobs"]);
    let mut text = Listen::start(
        &server,
        &[
            "--durable",
            "--schema",
            "outbox",
            "--since",
            "0",
            "--format",
            "text",
            "jobs",
        ],
    );
    // One per line of stdin, in order, each ticket on a line of its own.
    let mut child = pgnotify()
        .args([
            "--url",
            &server.url(),
            "notify",
            "--durable",
            "--schema",
            "outbox",
            "jobs",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgnotify notify");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"a \"b\"\nc\n")
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for notify");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);

    let first = unstamped(&json.next_line());
    assert_eq!(
        first,
        r#"{"type":"message","channel":"jobs","position":2,"payload":"a \"b\""}"#
    );
    assert!(json.next_line().contains(r#""position":3,"payload":"c","#));
    for expected in [
        "[jobs] before  (position 1)",
        "[jobs] a \"b\"  (position 2)",
        "[jobs] c  (position 3)",
    ] {
        assert_eq!(text.next_line(), expected);
    }
    let (status, stderr) = json.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.starts_with("pgnotify: 2 messages, 0 expired, 0 reconnects in "),
        "{stderr}"
    );
}

#[test]
fn prune_deletes_old_messages_and_a_listener_behind_them_gets_an_expired_gap() {
    let server = TestServer::new().expect("start server");
    succeeds(&server, &["install"]);
    for i in 1..=5 {
        succeeds(&server, &["notify", "--durable", "old", &format!("m{i}")]);
    }
    let pruned = succeeds(&server, &["prune", "--keep-last", "2"]);
    assert_eq!(pruned, "pruned 3 messages from schema \"pgnotify\"\n");
    let stdout = succeeds(
        &server,
        &[
            "listen",
            "--durable",
            "--since",
            "0",
            "--count",
            "2",
            "--timeout",
            "30s",
            "old",
        ],
    );
    let expired = stdout
        .lines()
        .find(|line| line.contains(r#""kind":"expired""#))
        .unwrap_or_else(|| panic!("no expired gap in {stdout}"));
    assert_eq!(
        unstamped(expired),
        r#"{"type":"gap","kind":"expired","missed":3,"through":3,"channel":"old"}"#
    );
    assert_eq!(
        durable_messages(&stdout),
        [(4, "m4".to_owned()), (5, "m5".to_owned())]
    );
    // Text: the gap says what it is.
    let text = succeeds(
        &server,
        &[
            "listen",
            "--durable",
            "--since",
            "1",
            "--count",
            "1",
            "--format",
            "text",
            "old",
        ],
    );
    assert!(
        text.contains("[old] GAP: expired: 2 messages no longer available (through position 3)"),
        "{text}"
    );
    let by_age = succeeds(&server, &["prune", "--max-age", "0s"]);
    assert_eq!(by_age, "pruned 2 messages from schema \"pgnotify\"\n");
    // Neither --max-age nor --keep-last: a usage error.
    let output = pgnotify_at(&server, &["prune"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
}

#[test]
fn durable_commands_without_install_say_to_run_pgnotify_install() {
    let server = TestServer::new().expect("start server");
    for args in [
        &["notify", "--durable", "jobs", "x"][..],
        &["listen", "--durable", "--timeout", "30s", "jobs"],
        &["prune", "--keep-last", "1"],
    ] {
        let output = pgnotify_at(&server, args);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("pgnotify: could not ")
                && stderr.contains(
                    r#"durable channels are not installed in schema "pgnotify" (run `pgnotify install`"#
                ),
            "{args:?}: {stderr}"
        );
    }
    // Bad names and options are usage errors, before connecting.
    for args in [
        &["listen", "--durable", "a", "b"][..],
        &["listen", "--since", "0", "a"],
        &["listen", "--durable", "--since", "soon", "a"],
        &["install", "--schema", "no-dashes"],
        &["notify", "--schema", "outbox", "a", "b"],
    ] {
        let output = pgnotify_at(&server, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr_of(&output)
        );
        assert_eq!(stderr_of(&output).lines().count(), 1, "{args:?}");
    }
}

#[test]
fn listen_durable_times_out_with_three_and_stops_at_the_payload_waited_for() {
    let server = TestServer::new().expect("start server");
    succeeds(&server, &["install"]);
    let output = pgnotify_at(
        &server,
        &[
            "listen",
            "--durable",
            "--count",
            "1",
            "--timeout",
            "500ms",
            "quiet",
        ],
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.starts_with("pgnotify: 0 messages, 0 expired, 0 reconnects in ")
            && stderr.ends_with("pgnotify: timed out: 0 of 1 messages arrived within 500ms\n"),
        "{stderr:?}"
    );
    for payload in ["a", "done", "after"] {
        succeeds(&server, &["notify", "--durable", "quiet", payload]);
    }
    let stdout = succeeds(
        &server,
        &[
            "listen",
            "--durable",
            "--since",
            "0",
            "--until-payload",
            "done",
            "--timeout",
            "30s",
            "quiet",
        ],
    );
    assert_eq!(
        durable_messages(&stdout),
        [(1, "a".to_owned()), (2, "done".to_owned())]
    );
}
