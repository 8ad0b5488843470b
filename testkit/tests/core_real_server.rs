//! The core's protocol layer against a real PostgreSQL, through the
//! blocking test driver: authentication methods, startup errors, LISTEN and
//! NOTIFY, pipelined publishes, unix sockets, TLS negotiation with a server
//! that has no TLS, and a terminated backend.

mod blocking;

use blocking::{ConnDriver, Stream, WAIT};
use pgnotify_core::protocol::{
    ConnectionError, Phase, StartupParams, TlsNegotiation, TransactionStatus, WireEvent,
};
use pgnotify_testkit::server::{AuthMethod, DATABASE, SUPERUSER, TestServer};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret 'pw'";

fn server_with(auth: AuthMethod) -> TestServer {
    TestServer::builder()
        .auth(auth)
        .user(USER, PASSWORD)
        .start()
        .expect("start PostgreSQL")
}

fn params(user: &str, password: Option<&str>) -> StartupParams {
    let mut p = StartupParams::new(user);
    p.database = Some(DATABASE.to_owned());
    p.password = password.map(str::to_owned);
    p.application_name = Some("pgnotify-core-test".to_owned());
    p.tls = TlsNegotiation::Disable;
    p
}

fn connect(server: &TestServer, params: StartupParams) -> ConnDriver {
    ConnDriver::tcp(server.port(), params)
}

fn server_error_code(result: Result<(), ConnectionError>) -> String {
    match result {
        Err(ConnectionError::Server(e)) => e.code().to_owned(),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The right password reaches Ready; a wrong one gets the server's 28P01 as
/// a non-transient `ConnectionError::Server`.
fn check_password_method(auth: AuthMethod) {
    let server = server_with(auth);

    let mut ok = connect(&server, params(USER, Some(PASSWORD)));
    assert_eq!(ok.wait_ready(), Ok(()), "{auth:?}: the right password");
    assert_eq!(ok.conn().phase(), Phase::Ready);
    let who = ok.query("SELECT current_user", &mut Vec::new()).unwrap();
    assert_eq!(who.rows, [[Some(USER.to_owned())]]);
    ok.terminate();

    let mut bad = connect(&server, params(USER, Some("wrong")));
    let result = bad.wait_ready();
    let Err(error) = &result else {
        panic!("{auth:?}: a wrong password got in");
    };
    assert!(!error.is_transient(), "{auth:?}: {error} is not transient");
    assert_eq!(server_error_code(result), "28P01", "{auth:?}");
    assert_eq!(bad.conn().phase(), Phase::Failed);
}

#[test]
fn trust_login_reaches_ready_with_server_facts_recorded() {
    let server = TestServer::new().unwrap();
    let mut c = connect(&server, params(SUPERUSER, None));
    assert_eq!(c.wait_ready(), Ok(()));
    let conn = c.conn();
    assert!(conn.backend_pid().is_some_and(|pid| pid > 0));
    assert!(conn.secret_key().is_some());
    assert_eq!(conn.transaction_status(), Some(TransactionStatus::Idle));
    let version = conn.server_version().expect("server_version reported");
    let major: u32 = version
        .split(['.', ' '])
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("unexpected server_version {version:?}"));
    assert_eq!(
        major,
        server.version().major(),
        "server_version {version} vs the test kit's {}",
        server.version()
    );
    // Servers report in_hot_standby from 14 on; pgnotify reads it only when it is there.
    let expected = server.version().at_least(14).then_some(false);
    assert_eq!(conn.in_hot_standby(), expected, "server_version {version}");
    assert_eq!(conn.server_parameter("client_encoding"), Some("UTF8"));
    assert_eq!(
        conn.server_parameter("application_name"),
        Some("pgnotify-core-test")
    );

    // The server agrees about who we are.
    let pid = c.conn().backend_pid().unwrap();
    let rows = c.query("SELECT pg_backend_pid()", &mut Vec::new()).unwrap();
    assert_eq!(rows.rows, [[Some(pid.to_string())]]);
}

#[test]
fn cleartext_password_login_checks_the_password() {
    check_password_method(AuthMethod::Password);
}

#[test]
fn md5_login_checks_the_password() {
    check_password_method(AuthMethod::Md5);
}

#[test]
fn scram_sha_256_login_checks_the_password() {
    check_password_method(AuthMethod::ScramSha256);
}

#[test]
fn unknown_database_fails_startup_with_3d000() {
    let server = TestServer::new().unwrap();
    let mut p = params(SUPERUSER, None);
    p.database = Some("no_such_database".to_owned());
    let mut c = connect(&server, p);
    let result = c.wait_ready();
    assert!(result.as_ref().is_err_and(|e| !e.is_transient()));
    assert_eq!(server_error_code(result), "3D000");
}

#[test]
fn listen_receives_notify_from_another_session_and_from_itself() {
    let server = TestServer::new().unwrap();
    let mut c = connect(&server, params(SUPERUSER, None));
    c.wait_ready().unwrap();
    let own_pid = c.conn().backend_pid().unwrap();
    // A quoted, mixed-case name with a space: case must survive.
    c.query(r#"LISTEN "Jobs Queue""#, &mut Vec::new()).unwrap();

    let admin_pid = server
        .execute(r#"SELECT pg_backend_pid(); NOTIFY "Jobs Queue", 'from admin'"#)
        .unwrap();
    let n = c.wait_notification();
    assert_eq!(&*n.channel, "Jobs Queue");
    assert_eq!(&*n.payload, "from admin");
    assert_eq!(n.process_id.to_string(), admin_pid.trim());
    assert_ne!(n.process_id, own_pid);

    // Our own NOTIFY is delivered to us, after the command's reply or
    // before it, tagged with our pid.
    let mut seen = Vec::new();
    c.query(r#"NOTIFY "Jobs Queue", 'from me'"#, &mut seen)
        .unwrap();
    let n = match seen.pop() {
        Some(n) => n,
        None => c.wait_notification(),
    };
    assert_eq!(&*n.payload, "from me");
    assert_eq!(n.process_id, own_pid);

    // Folded case is another channel: nothing arrives for it.
    server
        .execute("NOTIFY jobs_queue, 'x'; NOTIFY \"Jobs Queue\", 'marker'")
        .unwrap();
    assert_eq!(&*c.wait_notification().payload, "marker");
}

#[test]
fn pipelined_publishes_fail_one_at_a_time() {
    let server = TestServer::new().unwrap();
    let mut c = connect(&server, params(SUPERUSER, None));
    c.wait_ready().unwrap();
    let own_pid = c.conn().backend_pid().unwrap();
    c.query("LISTEN pipe", &mut Vec::new()).unwrap();

    let too_long = "x".repeat(8000);
    let payloads = ["one", "two", too_long.as_str(), "four", "five"];
    let ids: Vec<_> = payloads
        .iter()
        .map(|p| c.conn().publish("pipe", p))
        .collect();
    assert_eq!(c.conn().commands_in_flight(), payloads.len());
    c.flush(); // all five go out in one write: a real pipeline

    let mut notes = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let result = c.wait_command(*id, &mut notes);
        if i == 2 {
            let e = result.expect_err("an 8000-byte payload is refused");
            assert_eq!(e.code(), "22023", "{e}");
            assert_eq!(e.severity(), "ERROR");
        } else {
            assert!(result.is_ok(), "publish {i}: {result:?}");
        }
    }
    assert_eq!(c.conn().commands_in_flight(), 0);
    while notes.len() < 4 {
        notes.push(c.wait_notification());
    }
    let got: Vec<&str> = notes.iter().map(|n| &*n.payload).collect();
    assert_eq!(got, ["one", "two", "four", "five"]);
    assert!(notes.iter().all(|n| n.process_id == own_pid));
}

#[test]
fn publishes_survive_a_session_reset_between_them() {
    let server = TestServer::new().unwrap();
    let mut c = connect(&server, params(SUPERUSER, None));
    c.wait_ready().unwrap();
    let mut notes = Vec::new();
    let first = c.conn().publish("d", "1");
    c.flush();
    assert!(c.wait_command(first, &mut notes).is_ok());

    // A pooler (or a user) resets the session between two publishes, as a
    // transaction-pooling proxy does by handing the next one to another
    // server connection: nothing of the first publish is relied on.
    c.query("DISCARD ALL", &mut notes).unwrap();
    let second = c.conn().publish("d", "2");
    c.flush();
    assert!(c.wait_command(second, &mut notes).is_ok());
    c.query("DEALLOCATE ALL", &mut notes).unwrap();
    let third = c.conn().publish("d", "3");
    c.flush();
    assert!(c.wait_command(third, &mut notes).is_ok());
}

#[test]
fn unix_socket_login_with_scram_reaches_ready() {
    let server = server_with(AuthMethod::ScramSha256);
    let path = server
        .unix_socket_dir()
        .join(format!(".s.PGSQL.{}", server.port()));
    let stream = Stream::unix(&path).expect("connect to the unix socket");
    let mut c = ConnDriver::start(stream, params(USER, Some(PASSWORD)));
    assert_eq!(c.wait_ready(), Ok(()));
    let rows = c
        .query(
            "SELECT client_addr IS NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(
        rows.rows,
        [[Some("t".to_owned())]],
        "not a unix-socket session"
    );
}

#[test]
fn prefer_tls_continues_in_plaintext_when_the_server_has_no_ssl() {
    let server = TestServer::new().unwrap();
    let mut p = params(SUPERUSER, None);
    p.tls = TlsNegotiation::Prefer;
    let mut c = connect(&server, p);
    assert_eq!(c.wait_ready(), Ok(()));
    let rows = c
        .query(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(rows.rows, [[Some("f".to_owned())]]);
}

#[test]
fn require_tls_fails_clearly_when_the_server_has_no_ssl() {
    let server = TestServer::new().unwrap();
    let mut p = params(SUPERUSER, None);
    p.tls = TlsNegotiation::Require;
    let mut c = connect(&server, p);
    let result = c.wait_ready();
    assert_eq!(result, Err(ConnectionError::TlsRefused));
    let error = result.unwrap_err();
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains("refused TLS") && text.contains("sslmode=require"),
        "unclear message: {text}"
    );
    // Nothing more goes to the server: no startup in plaintext.
    let mut sent = Vec::new();
    assert!(!c.conn().poll_transmit(&mut sent), "sent {sent:?}");
}

#[test]
fn terminated_backend_fails_the_connection_with_57p01() {
    let server = TestServer::new().unwrap();
    let mut p = params(SUPERUSER, None);
    p.application_name = Some("pgnotify-victim".to_owned());
    let mut c = connect(&server, p);
    c.wait_ready().unwrap();
    c.query("LISTEN x", &mut Vec::new()).unwrap();
    assert_eq!(server.terminate_backends("pgnotify-victim").unwrap(), 1);

    let deadline = std::time::Instant::now() + WAIT;
    let error = loop {
        match c.next_event() {
            Some(WireEvent::Failed(e)) => break e,
            Some(_) => {}
            None => panic!("no Failed before eof={} / deadline", c.saw_eof()),
        }
        assert!(std::time::Instant::now() < deadline);
    };
    match &error {
        ConnectionError::Server(e) => {
            assert_eq!(e.code(), "57P01", "{e}");
            assert!(e.is_fatal());
        }
        other => panic!("expected a FATAL 57P01, got {other:?}"),
    }
    assert!(
        error.is_transient(),
        "an administrator's terminate is transient"
    );
    assert_eq!(c.conn().phase(), Phase::Failed);
}
