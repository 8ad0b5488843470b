//! The simulated server driven with raw protocol bytes, built and read with
//! `postgres-protocol` as an independent client.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use pgnotify_testkit::sim_server::{
    AuthMethod, ConnId, FaultPoint, NotifyPlacement, ServerRole, ShutdownMode, SimConfig,
    SimServer, SqlError, SslAnswer,
};
use postgres_protocol::message::{backend, frontend};

/// A backend message, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    AuthOk,
    AuthCleartext,
    AuthMd5([u8; 4]),
    Param(String, String),
    Key(i32),
    Ready,
    Complete(String),
    Columns(Vec<String>),
    Row(Vec<Option<String>>),
    Error {
        severity: String,
        code: String,
        message: String,
    },
    Notice(String),
    Notify {
        pid: i32,
        channel: String,
        payload: String,
    },
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    ParamTypes(Vec<u32>),
    EmptyQuery,
    Other,
}

fn decode(bytes: &[u8]) -> Vec<Msg> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(message) = backend::Message::parse(&mut buf).expect("well-formed server bytes") {
        out.push(simplify(message));
    }
    assert!(buf.is_empty(), "server left a partial message: {buf:?}");
    out
}

fn simplify(message: backend::Message) -> Msg {
    use backend::Message as M;
    match message {
        M::AuthenticationOk => Msg::AuthOk,
        M::AuthenticationCleartextPassword => Msg::AuthCleartext,
        M::AuthenticationMd5Password(body) => Msg::AuthMd5(body.salt()),
        M::ParameterStatus(body) => Msg::Param(
            body.name().unwrap().to_owned(),
            body.value().unwrap().to_owned(),
        ),
        M::BackendKeyData(body) => Msg::Key(body.process_id()),
        M::ReadyForQuery(body) => {
            assert_eq!(body.status(), b'I');
            Msg::Ready
        }
        M::CommandComplete(body) => Msg::Complete(body.tag().unwrap().to_owned()),
        M::RowDescription(body) => Msg::Columns(
            body.fields()
                .map(|f| Ok(f.name().to_owned()))
                .collect()
                .unwrap(),
        ),
        M::DataRow(body) => {
            let buffer = body.buffer();
            let values = body
                .ranges()
                .map(|r| Ok(r.map(|r| String::from_utf8(buffer[r].to_vec()).unwrap())));
            Msg::Row(values.collect().unwrap())
        }
        M::ErrorResponse(body) => {
            let (mut severity, mut code, mut message) =
                (String::new(), String::new(), String::new());
            let mut fields = body.fields();
            while let Some(field) = fields.next().unwrap() {
                match field.type_() {
                    b'V' => severity = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                    b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                    b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                    _ => {}
                }
            }
            Msg::Error {
                severity,
                code,
                message,
            }
        }
        M::NoticeResponse(body) => {
            let mut fields = body.fields();
            let mut code = String::new();
            while let Some(field) = fields.next().unwrap() {
                if field.type_() == b'C' {
                    code = String::from_utf8_lossy(field.value_bytes()).into_owned();
                }
            }
            Msg::Notice(code)
        }
        M::NotificationResponse(body) => Msg::Notify {
            pid: body.process_id(),
            channel: body.channel().unwrap().to_owned(),
            payload: body.message().unwrap().to_owned(),
        },
        M::ParseComplete => Msg::ParseComplete,
        M::BindComplete => Msg::BindComplete,
        M::CloseComplete => Msg::CloseComplete,
        M::NoData => Msg::NoData,
        M::ParameterDescription(body) => Msg::ParamTypes(body.parameters().collect().unwrap()),
        M::EmptyQueryResponse => Msg::EmptyQuery,
        _ => Msg::Other,
    }
}

fn error(code: &str, message: &str) -> Msg {
    Msg::Error {
        severity: "ERROR".into(),
        code: code.into(),
        message: message.into(),
    }
}

fn fatal(code: &str, message: &str) -> Msg {
    Msg::Error {
        severity: "FATAL".into(),
        code: code.into(),
        message: message.into(),
    }
}

/// What a backend ended by `pg_terminate_backend` or a fast shutdown sends.
fn terminated_by_administrator() -> Msg {
    fatal(
        "57P01",
        "terminating connection due to administrator command",
    )
}

fn complete(tag: &str) -> Msg {
    Msg::Complete(tag.into())
}

fn notify(pid: i32, channel: &str, payload: &str) -> Msg {
    Msg::Notify {
        pid,
        channel: channel.into(),
        payload: payload.into(),
    }
}

/// A server plus a virtual clock.
struct Sim {
    server: SimServer,
    now: Instant,
}

impl Sim {
    fn new(config: SimConfig) -> Self {
        Self {
            server: SimServer::new(config),
            now: Instant::now(),
        }
    }

    fn with_seed(seed: u64) -> Self {
        Self::new(SimConfig {
            seed,
            ..SimConfig::default()
        })
    }

    fn send(&mut self, conn: ConnId, build: impl FnOnce(&mut BytesMut)) {
        let mut buf = BytesMut::new();
        build(&mut buf);
        self.server.handle_client_bytes(conn, self.now, &buf);
    }

    fn raw(&mut self, conn: ConnId) -> Vec<u8> {
        let mut out = Vec::new();
        self.server.poll_server_bytes(conn, self.now, &mut out);
        out
    }

    fn read(&mut self, conn: ConnId) -> Vec<Msg> {
        decode(&self.raw(conn))
    }

    fn start(&mut self, conn: ConnId, params: &[(&str, &str)]) {
        self.send(conn, |b| {
            frontend::startup_message(params.iter().copied(), b).unwrap()
        });
    }

    /// Accepts a connection and sends the startup message of user `app`;
    /// the replies are left to read.
    fn start_as_app(&mut self) -> ConnId {
        let conn = self.server.accept(self.now).expect("accepts");
        self.start(conn, &[("user", "app")]);
        conn
    }

    /// Accepts and authenticates a trusted connection, discarding the
    /// startup replies.
    fn connect(&mut self) -> ConnId {
        let conn = self.start_as_app();
        let replies = self.read(conn);
        assert_eq!(
            replies.last(),
            Some(&Msg::Ready),
            "startup replies: {replies:?}"
        );
        conn
    }

    fn query(&mut self, conn: ConnId, sql: &str) -> Vec<Msg> {
        self.send(conn, |b| frontend::query(sql, b).unwrap());
        self.read(conn)
    }

    fn pid(&self, conn: ConnId) -> i32 {
        self.server.backend_pid(conn).unwrap()
    }
}

fn parse(b: &mut BytesMut, name: &str, sql: &str) {
    frontend::parse(name, sql, [], b).unwrap();
}

fn bind_text(b: &mut BytesMut, statement: &str, params: &[&str]) {
    let result = frontend::bind(
        "",
        statement,
        [0i16],
        params.iter(),
        |p, buf| {
            buf.extend_from_slice(p.as_bytes());
            Ok(postgres_protocol::IsNull::No)
        },
        [0i16],
        b,
    );
    assert!(result.is_ok());
}

fn execute_sync(b: &mut BytesMut) {
    frontend::execute("", 0, b).unwrap();
    frontend::sync(b);
}

// ----- startup and authentication -----

#[test]
fn ssl_request_is_refused_then_startup_reports_pg15_parameters_and_pid() {
    let mut sim = Sim::with_seed(1);
    let conn = sim.server.accept(sim.now).unwrap();
    sim.send(conn, frontend::ssl_request);
    assert_eq!(sim.raw(conn), b"N");
    sim.start(
        conn,
        &[
            ("user", "app"),
            ("database", "db"),
            ("application_name", "pgnotify"),
        ],
    );
    let replies = sim.read(conn);
    assert_eq!(replies[0], Msg::AuthOk);
    for expected in [
        ("application_name", "pgnotify"),
        ("client_encoding", "UTF8"),
        ("in_hot_standby", "off"),
        ("server_version", "15.8"),
    ] {
        let param = Msg::Param(expected.0.into(), expected.1.into());
        assert!(replies.contains(&param), "missing {param:?} in {replies:?}");
    }
    assert!(replies.contains(&Msg::Key(sim.pid(conn))));
    assert_eq!(replies.last(), Some(&Msg::Ready));
    assert!(sim.server.is_ready(conn));
    assert_eq!(sim.server.startup_param(conn, "database"), Some("db"));
}

#[test]
fn ssl_request_is_accepted_on_demand() {
    let mut sim = Sim::new(SimConfig {
        ssl: SslAnswer::Accept,
        ..SimConfig::default()
    });
    let conn = sim.server.accept(sim.now).unwrap();
    sim.send(conn, frontend::ssl_request);
    assert_eq!(sim.raw(conn), b"S");
}

#[test]
fn every_backend_gets_a_distinct_pid_and_the_external_pid_is_another() {
    let mut sim = Sim::with_seed(9);
    let conns: Vec<_> = (0..50).map(|_| sim.connect()).collect();
    let mut pids: Vec<_> = conns.iter().map(|&c| sim.pid(c)).collect();
    pids.push(sim.server.external_pid());
    let count = pids.len();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), count);
}

#[test]
fn cleartext_password_is_checked() {
    let config = SimConfig {
        auth: AuthMethod::Cleartext {
            password: "pw".into(),
        },
        ..SimConfig::default()
    };
    let mut sim = Sim::new(config);
    let good = sim.start_as_app();
    assert_eq!(sim.read(good), [Msg::AuthCleartext]);
    sim.send(good, |b| frontend::password_message(b"pw", b).unwrap());
    assert_eq!(sim.read(good).last(), Some(&Msg::Ready));

    let bad = sim.start_as_app();
    sim.read(bad);
    sim.send(bad, |b| frontend::password_message(b"nope", b).unwrap());
    assert_eq!(
        sim.read(bad),
        [fatal(
            "28P01",
            "password authentication failed for user \"app\""
        )]
    );
    assert!(!sim.server.is_open(bad));
}

#[test]
fn md5_password_is_checked_against_the_salted_hash() {
    let config = SimConfig {
        auth: AuthMethod::Md5 {
            password: "pw".into(),
        },
        ..SimConfig::default()
    };
    let mut sim = Sim::new(config);
    let conn = sim.start_as_app();
    let [Msg::AuthMd5(salt)] = sim.read(conn)[..] else {
        panic!("expected an MD5 request")
    };
    let hash = postgres_protocol::authentication::md5_hash(b"app", b"pw", salt);
    sim.send(conn, |b| {
        frontend::password_message(hash.as_bytes(), b).unwrap()
    });
    let replies = sim.read(conn);
    assert_eq!(
        (replies.first(), replies.last()),
        (Some(&Msg::AuthOk), Some(&Msg::Ready))
    );
}

#[test]
fn startup_without_user_is_fatal() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.server.accept(sim.now).unwrap();
    sim.start(conn, &[("database", "db")]);
    assert_eq!(
        sim.read(conn),
        [fatal(
            "28000",
            "no PostgreSQL user name specified in startup packet"
        )]
    );
    assert!(!sim.server.is_open(conn));
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_other_pids() {
    let run = |seed| {
        let mut sim = Sim::new(SimConfig {
            seed,
            auth: AuthMethod::Md5 {
                password: "pw".into(),
            },
            ..SimConfig::default()
        });
        let conn = sim.start_as_app();
        sim.raw(conn)
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

// ----- LISTEN / NOTIFY semantics -----

#[test]
fn own_notification_is_delivered_with_own_pid_before_ready() {
    let mut sim = Sim::with_seed(2);
    let conn = sim.connect();
    assert_eq!(
        sim.query(conn, r#"LISTEN "Jobs""#),
        [complete("LISTEN"), Msg::Ready]
    );
    let pid = sim.pid(conn);
    assert_eq!(
        sim.query(conn, r#"NOTIFY "Jobs", 'it''s here'"#),
        [
            complete("NOTIFY"),
            notify(pid, "Jobs", "it's here"),
            Msg::Ready
        ]
    );
    let sent = &sim.server.sent_log()[0];
    assert_eq!(
        (
            sent.seq,
            sent.channel.as_str(),
            sent.sender_pid,
            sent.sender
        ),
        (0, "Jobs", pid, Some(conn))
    );
    assert_eq!(sim.server.delivered_to(conn), [0]);
}

#[test]
fn notifications_can_be_placed_after_ready() {
    let mut sim = Sim::new(SimConfig {
        notify_placement: NotifyPlacement::AfterReady,
        ..SimConfig::default()
    });
    let conn = sim.connect();
    let pid = sim.pid(conn);
    assert_eq!(
        sim.query(conn, "LISTEN c; NOTIFY c"),
        [
            complete("LISTEN"),
            complete("NOTIFY"),
            Msg::Ready,
            notify(pid, "c", "")
        ]
    );
}

#[test]
fn unquoted_channels_fold_to_lower_case() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.query(conn, r#"LISTEN Foo; LISTEN "Bar""#);
    assert_eq!(sim.server.listening_channels(conn), ["foo", "Bar"]);
    assert_eq!(
        sim.query(conn, "SELECT pg_listening_channels()"),
        [
            Msg::Columns(vec!["pg_listening_channels".into()]),
            Msg::Row(vec![Some("foo".into())]),
            Msg::Row(vec![Some("Bar".into())]),
            complete("SELECT 2"),
            Msg::Ready,
        ]
    );
}

#[test]
fn listen_takes_effect_at_commit_of_its_query() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    let replies = sim.query(conn, "LISTEN c; SELECT pg_listening_channels()");
    assert!(replies.contains(&complete("SELECT 0")), "{replies:?}");
    assert_eq!(sim.server.listening_channels(conn), ["c"]);
    // A NOTIFY in the LISTEN's own transaction reaches the new listener.
    let other = sim.connect();
    let replies = sim.query(other, "LISTEN d; NOTIFY d, 'x'");
    assert!(
        replies.contains(&notify(sim.pid(other), "d", "x")),
        "{replies:?}"
    );
    // UNLISTEN before NOTIFY in one transaction: not delivered to itself.
    let replies = sim.query(other, "UNLISTEN d; NOTIFY d, 'y'");
    assert_eq!(
        replies,
        [complete("UNLISTEN"), complete("NOTIFY"), Msg::Ready]
    );
    assert_eq!(sim.server.sent_log()[1].listeners, []);
}

#[test]
fn idle_listener_gets_other_sessions_notifications_at_once() {
    let mut sim = Sim::with_seed(5);
    let listener = sim.connect();
    let sender = sim.connect();
    sim.query(listener, "LISTEN c");
    sim.query(sender, "SELECT pg_notify('c', 'one')");
    let seq = sim.server.notify_external(sim.now, "c", "two").unwrap();
    assert_eq!(
        sim.read(listener),
        [
            notify(sim.pid(sender), "c", "one"),
            notify(sim.server.external_pid(), "c", "two")
        ]
    );
    assert_eq!(sim.server.delivered_to(listener), [0, seq]);
    assert_eq!(sim.server.sent_log()[0].listeners, [listener]);
}

#[test]
fn backend_in_an_extended_transaction_holds_notifications_until_sync() {
    let mut sim = Sim::with_seed(5);
    let listener = sim.connect();
    sim.query(listener, "LISTEN c");
    sim.send(listener, |b| parse(b, "", "SELECT 1"));
    sim.server.notify_external(sim.now, "c", "held").unwrap();
    assert_eq!(sim.read(listener), [Msg::ParseComplete]);
    sim.send(listener, frontend::sync);
    assert_eq!(
        sim.read(listener),
        [notify(sim.server.external_pid(), "c", "held"), Msg::Ready]
    );
}

#[test]
fn an_error_in_a_multi_statement_query_rolls_back_all_of_it() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.query(conn, "LISTEN keep");
    assert_eq!(
        sim.query(
            conn,
            "LISTEN a; UNLISTEN *; NOTIFY keep, 'x'; SELECT pg_notify('', 'y'); LISTEN b"
        ),
        [
            complete("LISTEN"),
            complete("UNLISTEN"),
            complete("NOTIFY"),
            error("22023", "channel name cannot be empty"),
            Msg::Ready,
        ]
    );
    assert_eq!(sim.server.listening_channels(conn), ["keep"]);
    assert!(sim.server.sent_log().is_empty());
}

#[test]
fn a_syntax_error_anywhere_runs_no_statement() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    assert_eq!(
        sim.query(conn, "LISTEN a; FROBNICATE"),
        [
            error("42601", "syntax error at or near \"FROBNICATE\""),
            Msg::Ready
        ]
    );
    assert!(sim.server.listening_channels(conn).is_empty());
    assert_eq!(sim.query(conn, " ; "), [Msg::EmptyQuery, Msg::Ready]);
}

#[test]
fn duplicates_collapse_within_a_transaction_but_not_across() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    let pid = sim.pid(conn);
    sim.query(conn, "LISTEN c");
    let replies = sim.query(
        conn,
        "NOTIFY c, 'x'; NOTIFY c, 'y'; SELECT pg_notify('c', 'x')",
    );
    let notes: Vec<_> = replies
        .into_iter()
        .filter(|m| matches!(m, Msg::Notify { .. }))
        .collect();
    assert_eq!(notes, [notify(pid, "c", "x"), notify(pid, "c", "y")]);
    sim.query(conn, "NOTIFY c, 'x'");
    let log = sim.server.sent_log();
    assert_eq!(log.len(), 3);
    assert_eq!(
        (log[0].txn, log[1].txn, log[2].txn),
        (log[0].txn, log[0].txn, log[0].txn + 1)
    );
    assert_eq!(
        sim.server
            .commit_external(sim.now, &[("c", "z"), ("c", "z")]),
        Ok(3..4)
    );
}

#[test]
fn channel_and_payload_limits_match_postgres() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    let long = "x".repeat(70);
    let replies = sim.query(conn, &format!("LISTEN \"{long}\""));
    assert_eq!(
        replies,
        [Msg::Notice("42622".into()), complete("LISTEN"), Msg::Ready]
    );
    assert_eq!(sim.server.listening_channels(conn), ["x".repeat(63)]);
    assert_eq!(
        sim.query(conn, &format!("SELECT pg_notify('{long}', '')")),
        [error("22023", "channel name too long"), Msg::Ready]
    );
    let big = "p".repeat(8000);
    assert_eq!(
        sim.query(conn, &format!("NOTIFY c, '{big}'")),
        [error("22023", "payload string too long"), Msg::Ready]
    );
    assert_eq!(
        sim.query(conn, &format!("NOTIFY c, '{}'", &big[1..])).len(),
        2
    );
    assert!(sim.server.notify_external(sim.now, &long, "").is_err());
}

#[test]
fn show_and_select_answer_with_rows() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    assert_eq!(
        sim.query(conn, "SHOW transaction_read_only; SELECT 1"),
        [
            Msg::Columns(vec!["transaction_read_only".into()]),
            Msg::Row(vec![Some("off".into())]),
            complete("SHOW"),
            Msg::Columns(vec!["?column?".into()]),
            Msg::Row(vec![Some("1".into())]),
            complete("SELECT 1"),
            Msg::Ready,
        ]
    );
}

// ----- extended protocol -----

#[test]
fn pipelined_extended_publishes_fail_one_by_one() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    let pid = sim.pid(conn);
    sim.query(conn, "LISTEN c");
    let big = "p".repeat(8000);
    sim.send(conn, |b| {
        parse(b, "publish", "SELECT pg_notify($1, $2)");
        frontend::sync(b);
        for payload in ["one", big.as_str(), "three"] {
            bind_text(b, "publish", &["c", payload]);
            execute_sync(b);
        }
    });
    assert_eq!(
        sim.read(conn),
        [
            Msg::ParseComplete,
            Msg::Ready,
            Msg::BindComplete,
            Msg::Row(vec![Some(String::new())]),
            complete("SELECT 1"),
            notify(pid, "c", "one"),
            Msg::Ready,
            Msg::BindComplete,
            error("22023", "payload string too long"),
            Msg::Ready,
            Msg::BindComplete,
            Msg::Row(vec![Some(String::new())]),
            complete("SELECT 1"),
            notify(pid, "c", "three"),
            Msg::Ready,
        ]
    );
    assert_eq!(sim.server.sent_log().len(), 2);
}

#[test]
fn one_failure_before_sync_rolls_back_the_whole_batch() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.send(conn, |b| {
        parse(b, "", "SELECT pg_notify($1, $2)");
        bind_text(b, "", &["c", "kept?"]);
        frontend::execute("", 0, b).unwrap();
        bind_text(b, "", &["", "bad"]);
        frontend::execute("", 0, b).unwrap();
        bind_text(b, "", &["c", "skipped"]);
        execute_sync(b);
    });
    assert_eq!(
        sim.read(conn),
        [
            Msg::ParseComplete,
            Msg::BindComplete,
            Msg::Row(vec![Some(String::new())]),
            complete("SELECT 1"),
            Msg::BindComplete,
            error("22023", "channel name cannot be empty"),
            Msg::Ready,
        ]
    );
    assert!(sim.server.sent_log().is_empty());
}

#[test]
fn describe_reports_text_parameters_and_a_void_column() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.send(conn, |b| {
        parse(b, "s", "select PG_NOTIFY($1, $2)");
        frontend::describe(b'S', "s", b).unwrap();
        parse(b, "l", "LISTEN x");
        frontend::describe(b'S', "l", b).unwrap();
        frontend::close(b'S', "s", b).unwrap();
        frontend::sync(b);
    });
    assert_eq!(
        sim.read(conn),
        [
            Msg::ParseComplete,
            Msg::ParamTypes(vec![25, 25]),
            Msg::Columns(vec!["pg_notify".into()]),
            Msg::ParseComplete,
            Msg::ParamTypes(vec![]),
            Msg::NoData,
            Msg::CloseComplete,
            Msg::Ready,
        ]
    );
}

#[test]
fn extended_errors_skip_to_sync() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.send(conn, |b| {
        bind_text(b, "missing", &[]);
        parse(b, "", "LISTEN c");
        execute_sync(b);
        parse(b, "", "LISTEN c");
        bind_text(b, "", &["surplus"]);
        execute_sync(b);
    });
    assert_eq!(
        sim.read(conn),
        [
            error("26000", "prepared statement \"missing\" does not exist"),
            Msg::Ready,
            Msg::ParseComplete,
            error(
                "08P01",
                "bind message supplies 1 parameters, but prepared statement \"\" requires 0"
            ),
            Msg::Ready,
        ]
    );
    assert!(sim.server.listening_channels(conn).is_empty());
    assert!(sim.server.is_ready(conn));
}

// ----- faults -----

#[test]
fn armed_errors_fail_the_next_matching_operation_once() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.server
        .fail_next(FaultPoint::Listen, SqlError::error("53100", "disk full"));
    assert_eq!(
        sim.query(conn, "LISTEN a"),
        [error("53100", "disk full"), Msg::Ready]
    );
    assert_eq!(
        sim.query(conn, "LISTEN a"),
        [complete("LISTEN"), Msg::Ready]
    );

    sim.server
        .fail_next(FaultPoint::Notify, SqlError::error("XX000", "boom"));
    assert_eq!(
        sim.query(conn, "SELECT pg_notify('a', 'b')"),
        [error("XX000", "boom"), Msg::Ready]
    );

    sim.server
        .fail_next(FaultPoint::Query, SqlError::error("57014", "canceled"));
    assert_eq!(
        sim.query(conn, "SELECT 1"),
        [error("57014", "canceled"), Msg::Ready]
    );

    let queue_full = SqlError::error("54000", "too many notifications in the NOTIFY queue");
    sim.server.fail_next(FaultPoint::Commit, queue_full);
    assert_eq!(
        sim.query(conn, "UNLISTEN a; NOTIFY a"),
        [
            complete("UNLISTEN"),
            complete("NOTIFY"),
            error("54000", "too many notifications in the NOTIFY queue"),
            Msg::Ready,
        ]
    );
    assert_eq!(sim.server.listening_channels(conn), ["a"]);
    assert!(sim.server.sent_log().is_empty());

    sim.server
        .fail_next(FaultPoint::Unlisten, SqlError::fatal("XX000", "crash"));
    assert_eq!(sim.query(conn, "UNLISTEN *"), [fatal("XX000", "crash")]);
    assert!(!sim.server.is_open(conn));
    assert_eq!(sim.server.stats().faults_fired, 5);
    assert_eq!(sim.server.armed_faults(), 0);
}

#[test]
fn startup_fault_is_fatal() {
    let mut sim = Sim::with_seed(0);
    sim.server.fail_next(
        FaultPoint::Startup,
        SqlError::error("57P03", "the database system is starting up"),
    );
    let conn = sim.start_as_app();
    assert_eq!(
        sim.read(conn),
        [fatal("57P03", "the database system is starting up")]
    );
    assert!(!sim.server.is_open(conn));
}

#[test]
fn hot_standby_rejects_listen_and_notify_and_reports_promotion() {
    let mut sim = Sim::new(SimConfig {
        role: ServerRole::Standby,
        ..SimConfig::default()
    });
    let conn = sim.start_as_app();
    assert!(
        sim.read(conn)
            .contains(&Msg::Param("in_hot_standby".into(), "on".into()))
    );
    assert_eq!(
        sim.query(conn, "LISTEN c"),
        [
            error("25006", "cannot execute LISTEN during recovery"),
            Msg::Ready
        ]
    );
    assert_eq!(
        sim.query(conn, "SELECT pg_notify('c', '')"),
        [
            error("25006", "cannot execute NOTIFY during recovery"),
            Msg::Ready
        ]
    );
    assert_eq!(
        sim.query(conn, "UNLISTEN *"),
        [complete("UNLISTEN"), Msg::Ready]
    );
    assert!(
        sim.query(conn, "SHOW transaction_read_only")
            .contains(&Msg::Row(vec![Some("on".into())]))
    );
    assert!(sim.server.notify_external(sim.now, "c", "").is_err());

    sim.server.set_role(ServerRole::Primary);
    assert_eq!(
        sim.query(conn, "LISTEN c"),
        [
            complete("LISTEN"),
            Msg::Param("in_hot_standby".into(), "off".into()),
            Msg::Ready
        ]
    );
}

#[test]
fn terminated_backend_sends_57p01_then_ends_and_stops_listening() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.query(conn, "LISTEN c");
    sim.server.terminate(conn, sim.now);
    assert!(sim.server.is_open(conn), "open until the FATAL is read");
    assert_eq!(sim.read(conn), [terminated_by_administrator()]);
    assert!(!sim.server.is_open(conn));
    assert!(sim.server.listening_channels(conn).is_empty());
    sim.server.notify_external(sim.now, "c", "").unwrap();
    assert_eq!(sim.server.sent_log()[0].listeners, []);
    assert_eq!(sim.query(conn, "SELECT 1"), []);
}

#[test]
fn shutdown_ends_every_backend_and_refuses_until_restart() {
    let mut sim = Sim::with_seed(0);
    let a = sim.connect();
    let b = sim.connect();
    sim.server.shutdown(sim.now, ShutdownMode::Fast);
    for conn in [a, b] {
        assert_eq!(sim.read(conn), [terminated_by_administrator()]);
        assert!(!sim.server.is_open(conn));
    }
    assert!(sim.server.accept(sim.now).is_err());
    sim.server.restart();
    let c = sim.connect();
    assert_ne!(sim.pid(c), sim.pid(a));

    sim.server.shutdown(sim.now, ShutdownMode::Crash);
    assert_eq!(sim.read(c), []);
    assert!(!sim.server.is_open(c));
}

#[test]
fn black_holed_connection_swallows_everything_and_stays_open() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.query(conn, "LISTEN c");
    sim.server.black_hole(conn);
    assert_eq!(sim.query(conn, "LISTEN d"), []);
    sim.server.notify_external(sim.now, "c", "lost").unwrap();
    assert_eq!(sim.read(conn), []);
    assert_eq!(
        sim.server.sent_log()[0].listeners,
        [conn],
        "the backend still listens"
    );
    assert!(sim.server.delivered_to(conn).is_empty());
    sim.server.terminate(conn, sim.now);
    assert!(sim.server.is_open(conn), "the client never sees the end");
    sim.server.disconnect(conn);
    assert!(!sim.server.is_open(conn));
}

#[test]
fn delayed_replies_are_held_until_their_time_in_order() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    assert_eq!(sim.server.next_wakeup(), None);
    sim.server.delay_replies(conn, Duration::from_millis(100));
    let start = sim.now;
    assert_eq!(sim.query(conn, "LISTEN c"), []);
    assert_eq!(
        sim.server.next_wakeup(),
        Some(start + Duration::from_millis(100))
    );
    sim.now += Duration::from_millis(10);
    sim.server.delay_replies(conn, Duration::ZERO);
    sim.server.notify_external(sim.now, "c", "x").unwrap();
    assert_eq!(sim.read(conn), [], "later bytes never overtake held ones");
    sim.now = start + Duration::from_millis(100);
    assert_eq!(
        sim.read(conn),
        [
            complete("LISTEN"),
            Msg::Ready,
            notify(sim.server.external_pid(), "c", "x")
        ]
    );
    assert_eq!(sim.server.next_wakeup(), None);
}

#[test]
fn refusing_server_turns_connections_away() {
    let mut sim = Sim::with_seed(0);
    sim.server.set_refusing(true);
    assert!(sim.server.accept(sim.now).is_err());
    sim.server.set_refusing(false);
    sim.connect();
    assert_eq!(
        (sim.server.stats().refused, sim.server.stats().accepted),
        (1, 1)
    );
}

#[test]
fn idle_session_timeout_ends_idle_sessions() {
    let mut sim = Sim::new(SimConfig {
        idle_session_timeout: Some(Duration::from_secs(5)),
        ..SimConfig::default()
    });
    let conn = sim.connect();
    let deadline = sim.now + Duration::from_secs(5);
    assert_eq!(sim.server.next_wakeup(), Some(deadline));
    sim.now += Duration::from_secs(4);
    sim.query(conn, "SELECT 1");
    assert_eq!(
        sim.server.next_wakeup(),
        Some(sim.now + Duration::from_secs(5))
    );
    sim.server.handle_timeout(deadline);
    assert!(sim.server.is_ready(conn));
    sim.now += Duration::from_secs(5);
    sim.server.handle_timeout(sim.now);
    assert_eq!(
        sim.read(conn),
        [fatal(
            "57P05",
            "terminating connection due to idle-session timeout"
        )]
    );
}

#[test]
fn client_disconnect_drops_the_backend_listens() {
    let mut sim = Sim::with_seed(0);
    let conn = sim.connect();
    sim.query(conn, "LISTEN c");
    sim.server.disconnect(conn);
    assert!(!sim.server.is_open(conn));
    sim.server.notify_external(sim.now, "c", "").unwrap();
    assert_eq!(sim.server.sent_log()[0].listeners, []);
}

#[test]
fn cancel_request_closes_its_connection() {
    let mut sim = Sim::with_seed(0);
    let target = sim.connect();
    let conn = sim.server.accept(sim.now).unwrap();
    let pid = sim.pid(target);
    sim.send(conn, |b| frontend::cancel_request(pid, 0, b));
    assert_eq!(sim.raw(conn), b"");
    assert!(!sim.server.is_open(conn));
    assert_eq!(sim.server.stats().cancel_requests, 1);
}

// ----- robustness -----

#[test]
fn malformed_frames_get_fatal_08p01_and_close() {
    let cases: [&[u8]; 4] = [
        b"Z\0\0\0\x04",       // not a frontend message type
        b"Q\xff\xff\xff\xff", // negative length
        b"Q\0\0\0\x02",       // length below 4
        b"Q\0\0\0\x06ab",     // query without its terminator
    ];
    for bytes in cases {
        let mut sim = Sim::with_seed(0);
        let conn = sim.connect();
        sim.server.handle_client_bytes(conn, sim.now, bytes);
        let replies = sim.read(conn);
        assert!(
            matches!(&replies[..], [Msg::Error { severity, code, .. }] if severity == "FATAL" && code == "08P01"),
            "{bytes:?} gave {replies:?}"
        );
        assert!(!sim.server.is_open(conn));
    }
    let mut sim = Sim::with_seed(0);
    let conn = sim.server.accept(sim.now).unwrap();
    sim.server.handle_client_bytes(conn, sim.now, &[0, 0, 0, 3]);
    assert!(matches!(&sim.read(conn)[..], [Msg::Error { code, .. }] if code == "08P01"));
}

#[test]
fn oversized_message_is_rejected_before_it_is_buffered() {
    let mut sim = Sim::new(SimConfig {
        max_message_len: 64,
        ..SimConfig::default()
    });
    let conn = sim.connect();
    sim.server
        .handle_client_bytes(conn, sim.now, b"Q\0\x10\0\0");
    assert!(matches!(&sim.read(conn)[..], [Msg::Error { code, .. }] if code == "08P01"));
}

#[test]
fn arbitrary_bytes_never_panic_and_replies_stay_well_formed() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2000 {
        let mut sim = Sim::with_seed(round);
        let conn = if round % 2 == 0 {
            sim.connect()
        } else {
            sim.server.accept(sim.now).unwrap()
        };
        let len = (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 3 == 0 && !bytes.is_empty() {
            bytes[0] = b"QPBDESHXCp"[(next() % 10) as usize];
        }
        sim.server.handle_client_bytes(conn, sim.now, &bytes);
        let raw = sim.raw(conn);
        if raw != b"N" {
            decode(&raw);
        }
    }
}
