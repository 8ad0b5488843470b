//! The throwaway PostgreSQL server: authentication, administration, restarts and clean-up.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use pgnotify_testkit::server::{
    AuthMethod, Error, MIN_SUPPORTED_MAJOR, RestartMode, ShutdownMode, TestServer,
};

/// Whether a process with this pid exists.
fn is_alive(pid: u32) -> bool {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Waits (on a pidfd, not by polling) until process `pid` has exited; false on timeout.
fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return !is_alive(pid); // already gone (ESRCH)
    }
    let fd = fd as libc::c_int;
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd; the descriptor is ours and closed right after.
    let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
    // SAFETY: fd is a descriptor we own.
    unsafe { libc::close(fd) };
    ready == 1
}

/// Runs `psql -c sql` as `user` and returns (success, stdout, stderr).
fn psql(
    server: &TestServer,
    user: &str,
    password: Option<&str>,
    sql: &str,
) -> (bool, String, String) {
    let mut cmd = server.psql_command(user);
    match password {
        Some(password) => cmd.env("PGPASSWORD", password),
        None => cmd.env_remove("PGPASSWORD"),
    };
    let output = cmd.args(["-c", sql]).output().expect("psql runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A long-lived `psql` session reading SQL from a pipe, to hold a backend open.
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    fn open(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one query and returns its one-line answer, or `None` when psql ended instead.
    fn query(&mut self, sql: &str) -> Option<String> {
        writeln!(self.stdin, "{sql}").ok()?;
        self.stdin.flush().ok()?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim_end().to_owned()),
            _ => None,
        }
    }

    /// Closes stdin and returns whether psql succeeded and what it printed on stderr.
    fn finish(self) -> (bool, String) {
        drop(self.stdin);
        let output = self.child.wait_with_output().expect("psql exits");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn session_as(server: &TestServer, application_name: &str) -> Session {
    let mut cmd = server.psql_command(server.user());
    cmd.env("PGAPPNAME", application_name);
    let mut session = Session::open(cmd);
    assert_eq!(
        session.query("SELECT 'connected';").as_deref(),
        Some("connected")
    );
    session
}

fn check_password_auth(method: AuthMethod, stored_prefix: &str) {
    let server = TestServer::builder()
        .auth(method)
        .user("alice", "s3cret pass'word")
        .start()
        .unwrap();
    let (ok, out, err) = psql(
        &server,
        "alice",
        Some("s3cret pass'word"),
        "SELECT current_user",
    );
    assert!(
        ok && out == "alice",
        "{method:?}: right password refused: {out} {err}"
    );
    let (ok, _, err) = psql(&server, "alice", Some("wrong"), "SELECT 1");
    assert!(!ok, "{method:?}: wrong password accepted");
    assert!(
        err.contains("password authentication failed for user \"alice\""),
        "{err}"
    );
    let (ok, _, err) = psql(&server, "alice", None, "SELECT 1");
    assert!(!ok, "{method:?}: no password accepted: {err}");

    let rule = server
        .execute("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' AND address = '127.0.0.1'")
        .unwrap();
    assert_eq!(rule, method.hba_keyword());
    let stored = server
        .execute("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'alice'")
        .unwrap();
    assert!(
        stored.starts_with(stored_prefix),
        "{method:?} stored {stored}"
    );
}

#[test]
fn password_auth_accepts_the_right_password_only() {
    check_password_auth(AuthMethod::Password, "SCRAM-SHA-256$");
}

#[test]
fn md5_auth_stores_md5_and_accepts_the_right_password_only() {
    check_password_auth(AuthMethod::Md5, "md5");
}

#[test]
fn scram_auth_accepts_the_right_password_only() {
    check_password_auth(AuthMethod::ScramSha256, "SCRAM-SHA-256$");
}

#[test]
fn trust_auth_lets_any_password_in() {
    let server = TestServer::builder().user("bob", "pw").start().unwrap();
    let (ok, out, err) = psql(&server, "bob", Some("anything"), "SELECT current_user");
    assert!(ok && out == "bob", "{out} {err}");
}

#[test]
fn url_and_conninfo_name_the_first_user_and_the_port() {
    let server = TestServer::builder()
        .user("carol", "p@ss word")
        .user("dave", "x")
        .start()
        .unwrap();
    let port = server.port();
    assert_eq!(server.user(), "carol");
    assert_eq!(
        server.url(),
        format!("postgres://carol:p%40ss%20word@127.0.0.1:{port}/postgres")
    );
    assert_eq!(
        server.conninfo(),
        format!("host=127.0.0.1 port={port} user=carol dbname=postgres password='p@ss word'")
    );
    assert_eq!(
        server.url_as("postgres"),
        format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres")
    );
    assert!(
        server
            .unix_socket_dir()
            .join(format!(".s.PGSQL.{port}"))
            .exists()
    );
}

#[test]
fn settings_from_the_builder_are_applied() {
    // lock_timeout, not idle_session_timeout: the test kit runs PostgreSQL 13, which refuses to
    // start with a setting it does not know (idle_session_timeout is 14+).
    let server = TestServer::builder()
        .setting("lock_timeout", "1s")
        .setting("max_connections", "20")
        .setting("application_name", "it's quoted")
        .start()
        .unwrap();
    assert_eq!(server.execute("SHOW lock_timeout").unwrap(), "1s");
    assert_eq!(server.execute("SHOW max_connections").unwrap(), "20");
    assert_eq!(server.execute("SHOW fsync").unwrap(), "off");
}

#[test]
fn version_is_the_running_servers_and_at_least_the_minimum() {
    let server = TestServer::new().unwrap();
    let version = server.version();
    let num: u32 = server
        .execute("SHOW server_version_num")
        .unwrap()
        .parse()
        .expect("a number");
    assert_eq!(version.major(), num / 10_000, "{version} vs {num}");
    assert!(
        version.at_least(MIN_SUPPORTED_MAJOR),
        "{version} is below {MIN_SUPPORTED_MAJOR}: the test kit should have refused it"
    );
    println!("PostgreSQL {version}");
}

#[test]
fn execute_and_query_return_rows_and_report_errors() {
    let server = TestServer::new().unwrap();
    assert_eq!(server.execute("SELECT 1, 'a'; SELECT 2").unwrap(), "1|a\n2");
    assert_eq!(
        server
            .query("SELECT 1, 'a|b' UNION ALL SELECT 2, NULL")
            .unwrap(),
        vec![
            vec!["1".to_owned(), "a|b".to_owned()],
            vec!["2".to_owned(), String::new()]
        ]
    );
    assert!(server.query("SELECT 1 WHERE false").unwrap().is_empty());
    let error = server
        .execute("SELECT 1; SELECT nonsense; SELECT 3")
        .unwrap_err();
    match &error {
        Error::Sql { message, .. } => assert!(message.contains("nonsense"), "{message}"),
        other => panic!("expected an SQL error, got {other:?}"),
    }
    assert!(
        error.to_string().starts_with("administrative SQL failed: "),
        "{error}"
    );
}

#[test]
fn terminate_backends_ends_sessions_with_that_application_name() {
    let server = TestServer::new().unwrap();
    let victim = session_as(&server, "victim");
    let mut bystander = session_as(&server, "bystander");

    assert_eq!(server.terminate_backends("victim").unwrap(), 1);
    assert_eq!(server.terminate_backends("nobody").unwrap(), 0);

    let mut victim = victim;
    assert_eq!(victim.query("SELECT 'still here';"), None);
    let (ok, stderr) = victim.finish();
    assert!(!ok, "psql survived termination");
    assert!(
        stderr.contains("terminating connection due to administrator command"),
        "{stderr}"
    );
    assert_eq!(
        bystander.query("SELECT 'still here';").as_deref(),
        Some("still here")
    );
}

fn check_restart(mode: RestartMode, shutdown_line: &str, startup_line: &str) {
    let server = TestServer::new().unwrap();
    let port = server.port();
    let old_pid = server.pid().unwrap();
    let mut session = session_as(&server, "before");
    let log_before = server.log().len();

    server.restart(mode).unwrap();

    assert!(!is_alive(old_pid), "old postmaster {old_pid} still alive");
    assert_ne!(server.pid(), Some(old_pid));
    assert_eq!(server.port(), port);
    assert_eq!(
        session.query("SELECT 1;"),
        None,
        "a session survived a {mode:?} restart"
    );
    assert_eq!(server.execute("SELECT 'back'").unwrap(), "back");
    let log = server.log();
    let new = &log[log_before..];
    assert!(
        new.contains(shutdown_line),
        "{mode:?}: no {shutdown_line:?} in:\n{new}"
    );
    assert!(
        new.contains(startup_line),
        "{mode:?}: no {startup_line:?} in:\n{new}"
    );
}

#[test]
fn fast_restart_shuts_down_cleanly_on_the_same_port() {
    check_restart(
        ShutdownMode::Fast,
        "received fast shutdown request",
        "database system was shut down at",
    );
}

#[test]
fn immediate_restart_crashes_and_recovers_on_the_same_port() {
    check_restart(
        ShutdownMode::Immediate,
        "received immediate shutdown request",
        "automatic recovery in progress",
    );
}

#[test]
fn stopped_server_refuses_connections_and_starts_again_on_the_same_port() {
    let server = TestServer::new().unwrap();
    let port = server.port();
    let pid = server.pid().unwrap();

    server.stop().unwrap();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(!is_alive(pid));
    assert!(
        TcpStream::connect(server.addr()).is_err(),
        "something listens on {port}"
    );
    assert!(matches!(server.execute("SELECT 1"), Err(Error::NotRunning)));
    server.stop().unwrap(); // stopping twice is fine

    server.start().unwrap();
    assert!(matches!(server.start(), Err(Error::AlreadyRunning)));
    assert_eq!(server.port(), port);
    assert_eq!(server.execute("SELECT 'again'").unwrap(), "again");
}

/// Every server process (postmaster, background workers, backends) and the data directory.
fn footprint(server: &TestServer) -> (Vec<u32>, PathBuf) {
    let mut pids: Vec<u32> = server
        .execute("SELECT pid FROM pg_stat_activity")
        .unwrap()
        .lines()
        .map(|pid| pid.parse().unwrap())
        .collect();
    pids.push(server.pid().unwrap());
    (pids, server.data_dir().to_owned())
}

fn assert_gone(pids: &[u32], data_dir: &Path) {
    for &pid in pids {
        assert!(
            !is_alive(pid),
            "server process {pid} outlived its TestServer"
        );
    }
    assert!(
        !data_dir.exists(),
        "{} outlived its TestServer",
        data_dir.display()
    );
}

#[test]
fn drop_stops_every_server_process_and_removes_the_data_directory() {
    let server = TestServer::new().unwrap();
    let (pids, data_dir) = footprint(&server);
    assert!(pids.len() > 1 && data_dir.exists());
    drop(server);
    assert_gone(&pids, &data_dir);
}

#[test]
fn a_panicking_test_still_stops_its_server() {
    let seen = Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let server = TestServer::new().unwrap();
        *seen.lock().unwrap() = Some(footprint(&server));
        panic!("deliberate panic with a running server");
    }));
    assert!(result.is_err());
    let (pids, data_dir) = seen.into_inner().unwrap().expect("the server started");
    assert_gone(&pids, &data_dir);
}

/// Reads `key=value` lines from the throwaway-postgres bin until `unix_socket_dir`.
fn read_serve_output(child: &mut Child) -> Vec<(String, String)> {
    let stdout = child.stdout.as_mut().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut pairs = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let (key, value) = line.split_once('=').unwrap();
        pairs.push((key.to_owned(), value.to_owned()));
        if key == "unix_socket_dir" {
            break;
        }
    }
    pairs
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    &pairs.iter().find(|(k, _)| k == key).unwrap().1
}

#[test]
fn a_killed_test_process_leaves_no_server_and_its_directory_is_swept_next_time() {
    let bin = env!("CARGO_BIN_EXE_throwaway-postgres");
    let mut doomed = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pairs = read_serve_output(&mut doomed);
    let pid: u32 = value(&pairs, "pid").parse().unwrap();
    let data_dir = PathBuf::from(value(&pairs, "data_dir"));
    assert!(is_alive(pid) && data_dir.exists());

    doomed.kill().unwrap(); // SIGKILL: no destructor, no exit hook runs
    doomed.wait().unwrap();
    assert!(
        wait_for_exit(pid, Duration::from_secs(30)),
        "postmaster {pid} outlived its process"
    );
    assert!(data_dir.exists(), "nothing could have removed it yet");

    // The next process to start a server sweeps the dead process's directory.
    let mut next = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    read_serve_output(&mut next);
    assert!(!data_dir.exists(), "{} was not swept", data_dir.display());
    drop(next.stdin.take()); // ends it cleanly
    assert!(next.wait().unwrap().success());
}

/// A self-signed certificate and key for `localhost`, made with the `openssl` command (which
/// the PostgreSQL packages depend on).
fn self_signed_certificate() -> (Vec<u8>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("testkit-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
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

#[test]
fn ssl_server_accepts_tls_and_hostssl_lines_can_demand_it() {
    let (cert, key) = self_signed_certificate();
    let server = TestServer::builder()
        .ssl(cert, key)
        .hba_line("hostnossl all all 127.0.0.1/32 reject")
        .start()
        .unwrap();
    let key_mode = std::fs::metadata(server.data_dir().join("server.key"))
        .map(|meta| std::os::unix::fs::PermissionsExt::mode(&meta.permissions()))
        .unwrap();
    assert_eq!(key_mode & 0o777, 0o600);

    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let mut tls = server.psql_command("postgres");
    let output = tls
        .env("PGSSLMODE", "require")
        .args(["-c", sql])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "t");

    let mut plain = server.psql_command("postgres");
    let output = plain
        .env("PGSSLMODE", "disable")
        .args(["-c", sql])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a plain connection got past hostnossl reject"
    );
    // PostgreSQL 14 reworded the rejection ("SSL off" became "no encryption").
    let wording = if server.version().at_least(14) {
        "no encryption"
    } else {
        "SSL off"
    };
    assert!(
        stderr.contains(wording),
        "expected {wording:?} in: {stderr}"
    );
}
