//! The connection strings of libpq's documentation ("Connection Strings",
//! "Parameter Key Words", "Environment Variables") and the errors around
//! them, each with the configuration it must give.

use std::net::IpAddr;
use std::time::Duration;

use pgnotify_core::config::{
    Config, ConfigBuilder, ConfigError, HostSpec, Keepalive, SslMode, SslRootCert,
    TargetSessionAttrs,
};

fn tcp(host: &str, port: u16) -> HostSpec {
    HostSpec::tcp(host, port)
}

fn unix(dir: &str, port: u16) -> HostSpec {
    HostSpec::unix(dir, port)
}

/// Everything at its default except what the row says.
fn base() -> ConfigBuilder {
    Config::builder()
}

/// Connection strings that must parse, and the configuration each must give.
fn accepted() -> Vec<(&'static str, ConfigBuilder)> {
    vec![
        // --- libpq docs, keyword/value form ---
        (
            "host=localhost port=5432 dbname=mydb connect_timeout=10",
            base()
                .host(tcp("localhost", 5432))
                .dbname("mydb")
                .connect_timeout(Duration::from_secs(10)),
        ),
        // Client certificate, key and password file paths.
        (
            "host=db sslcert=/c/client.crt sslkey=/c/client.key passfile=/c/pgpass",
            base()
                .host(tcp("db", 5432))
                .ssl_cert("/c/client.crt")
                .ssl_key("/c/client.key")
                .passfile("/c/pgpass"),
        ),
        // The libpq docs' URL with options (a `-c` setting for the session).
        (
            "postgresql://user@localhost:5433/mydb?options=-c%20synchronous_commit%3Doff",
            base()
                .host(tcp("localhost", 5433))
                .user("user")
                .dbname("mydb")
                .options("-c synchronous_commit=off"),
        ),
        // Spaces around '=' and a quoted value with escapes.
        (
            r"host = db  user= 'o\'brien'  password='a \\ b'",
            base()
                .host(tcp("db", 5432))
                .user("o'brien")
                .password(r"a \ b"),
        ),
        // Several hosts, one port each.
        (
            "host=host1,host2,host3 port=1111,2222,3333",
            base().hosts([tcp("host1", 1111), tcp("host2", 2222), tcp("host3", 3333)]),
        ),
        // One port for every host.
        (
            "host=h1,h2 port=6000",
            base().hosts([tcp("h1", 6000), tcp("h2", 6000)]),
        ),
        // An empty entry in the port list takes the default port.
        (
            "host=h1,h2 port=6000,",
            base().hosts([tcp("h1", 6000), tcp("h2", 5432)]),
        ),
        // A host starting with '/' is a socket directory.
        (
            "host=/var/run/postgresql port=5433",
            base().host(unix("/var/run/postgresql", 5433)),
        ),
        // hostaddr skips the name lookup; host stays the name to verify.
        (
            "host=db.example.com hostaddr=192.0.2.7",
            base().host(HostSpec::Tcp {
                host: "db.example.com".into(),
                port: 5432,
                hostaddr: Some("192.0.2.7".parse::<IpAddr>().unwrap()),
            }),
        ),
        // Later parameters override earlier ones.
        ("user=a user=b", base().user("b")),
        // An empty value means "not given".
        ("application_name='' user=''", base()),
        // libpq skips whitespace after '=', so this sets host to "port=1".
        ("host= port=1", base().host(tcp("port=1", 5432))),
        // --- libpq docs, URI form ---
        ("postgresql://", base()),
        (
            "postgresql://localhost",
            base().host(tcp("localhost", 5432)),
        ),
        (
            "postgresql://localhost:5433",
            base().host(tcp("localhost", 5433)),
        ),
        (
            "postgresql://localhost/mydb",
            base().host(tcp("localhost", 5432)).dbname("mydb"),
        ),
        (
            "postgresql://user@localhost",
            base().host(tcp("localhost", 5432)).user("user"),
        ),
        (
            "postgresql://user:secret@localhost",
            base()
                .host(tcp("localhost", 5432))
                .user("user")
                .password("secret"),
        ),
        (
            "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
            base()
                .host(tcp("localhost", 5432))
                .user("other")
                .dbname("otherdb")
                .connect_timeout(Duration::from_secs(10))
                .application_name("myapp"),
        ),
        (
            "postgresql://host1:123,host2:456/somedb?target_session_attrs=any&application_name=myapp",
            base()
                .hosts([tcp("host1", 123), tcp("host2", 456)])
                .dbname("somedb")
                .target_session_attrs(TargetSessionAttrs::Any)
                .application_name("myapp"),
        ),
        (
            "postgresql:///mydb?host=localhost&port=5433",
            base().host(tcp("localhost", 5433)).dbname("mydb"),
        ),
        (
            "postgresql://[2001:db8::1234]/database",
            base().host(tcp("2001:db8::1234", 5432)).dbname("database"),
        ),
        (
            "postgresql:///dbname?host=/var/lib/postgresql",
            base()
                .host(unix("/var/lib/postgresql", 5432))
                .dbname("dbname"),
        ),
        (
            "postgresql://%2Fvar%2Flib%2Fpostgresql/dbname",
            base()
                .host(unix("/var/lib/postgresql", 5432))
                .dbname("dbname"),
        ),
        // --- the rest of the URI grammar ---
        ("postgres://[::1]:5433", base().host(tcp("::1", 5433))),
        // A host without a port among several gets the default port.
        (
            "postgres://h1:5433,h2,[::1]:7/db",
            base()
                .hosts([tcp("h1", 5433), tcp("h2", 5432), tcp("::1", 7)])
                .dbname("db"),
        ),
        // Hosts without ports take a single port= from the query.
        (
            "postgres://h1,h2/db?port=6543",
            base()
                .hosts([tcp("h1", 6543), tcp("h2", 6543)])
                .dbname("db"),
        ),
        (
            "POSTGRESQL://u%20x:p%40ss%3Aw%2Fd@h/d%C3%A9j%C3%A0",
            base()
                .host(tcp("h", 5432))
                .user("u x")
                .password("p@ss:w/d")
                .dbname("déjà"),
        ),
        // An unencoded '@' in the password: the last '@' ends the user info.
        (
            "postgres://u:p@ss@h",
            base().host(tcp("h", 5432)).user("u").password("p@ss"),
        ),
        (
            "postgres://h?sslmode=require&application_name=x",
            base()
                .host(tcp("h", 5432))
                .ssl_mode(SslMode::Require)
                .application_name("x"),
        ),
        // JDBC's ssl=true, accepted by libpq, means sslmode=require.
        (
            "postgres://h?ssl=true",
            base().host(tcp("h", 5432)).ssl_mode(SslMode::Require),
        ),
        (
            "postgres://?host=%2Fvar%2Frun%2Fpostgresql",
            base().host(unix("/var/run/postgresql", 5432)),
        ),
        // --- TLS ---
        (
            "sslmode=verify-full sslrootcert=/etc/ssl/ca.pem",
            base()
                .ssl_mode(SslMode::VerifyFull)
                .ssl_root_cert(SslRootCert::File("/etc/ssl/ca.pem".into())),
        ),
        // sslrootcert=system makes verify-full the default (libpq 16).
        (
            "sslrootcert=system",
            base()
                .ssl_mode(SslMode::VerifyFull)
                .ssl_root_cert(SslRootCert::System),
        ),
        (
            "sslrootcert=./system sslmode=verify-ca",
            base()
                .ssl_mode(SslMode::VerifyCa)
                .ssl_root_cert(SslRootCert::File("./system".into())),
        ),
        ("sslmode=disable", base().ssl_mode(SslMode::Disable)),
        // --- timeouts and keepalives, in libpq's units ---
        // libpq: zero or negative connect_timeout waits forever; 1 means 2.
        ("connect_timeout=0", base()),
        ("connect_timeout=-5", base()),
        (
            "connect_timeout=1",
            base().connect_timeout(Duration::from_secs(2)),
        ),
        (
            "keepalives=0 keepalives_idle=30 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=2500",
            base().keepalive(
                Keepalive::new()
                    .enabled(false)
                    .idle(Duration::from_secs(30))
                    .interval(Duration::from_secs(5))
                    .count(3)
                    .user_timeout(Duration::from_millis(2500)),
            ),
        ),
        // Zero keeps the system default.
        ("keepalives_idle=0", base()),
        (
            "target_session_attrs=read-write",
            base().target_session_attrs(TargetSessionAttrs::ReadWrite),
        ),
        // --- pgnotify's own parameters ---
        (
            "ping_interval=500ms ping_timeout=2 backoff_min=50ms backoff_max=2m \
             backoff_reset_after=1h publish_timeout=0 listen_check_every=6 \
             queue_capacity=16 overflow_policy=keep-latest max_frame_size=64KiB jitter_seed=42",
            base()
                .ping_interval(Duration::from_millis(500))
                .ping_timeout(Duration::from_secs(2))
                .backoff_min(Duration::from_millis(50))
                .backoff_max(Duration::from_secs(120))
                .backoff_reset_after(Duration::from_secs(3600))
                .publish_timeout(Duration::ZERO)
                .listen_check_every(6)
                .queue_capacity(16)
                .overflow_policy(pgnotify_core::OverflowPolicy::KeepLatest)
                .max_frame_len(64 * 1024)
                .seed(42),
        ),
        (
            "backoff_min=1s backoff_max=1s",
            base()
                .backoff_min(Duration::from_secs(1))
                .backoff_max(Duration::from_secs(1)),
        ),
        ("max_frame_size=2MiB", base().max_frame_len(2 << 20)),
        (
            "stall_limit=250ms server_queue_limit=0.001",
            base()
                .stall_limit(Duration::from_millis(250))
                .server_queue_limit(0.001),
        ),
        ("server_queue_limit=25%", base().server_queue_limit(0.25)),
        (
            "overflow_policy=absorb",
            base().overflow_policy(pgnotify_core::OverflowPolicy::Absorb),
        ),
    ]
}

/// Strings that must be refused, and the error each must give.
fn refused() -> Vec<(&'static str, ConfigError)> {
    fn invalid(name: &str, value: &str, reason: &'static str) -> ConfigError {
        ConfigError::InvalidValue {
            name: name.into(),
            value: value.into(),
            reason,
        }
    }
    const PORT: &str = "expected a port number from 1 to 65535";
    vec![
        // Unknown and unsupported parameters are named, never ignored.
        (
            "host=a foo=bar",
            ConfigError::UnknownParameter { name: "foo".into() },
        ),
        (
            "Host=a",
            ConfigError::UnknownParameter {
                name: "Host".into(),
            },
        ),
        (
            "sslpassword=x",
            ConfigError::UnsupportedParameter {
                name: "sslpassword".into(),
            },
        ),
        // Ports.
        ("port=99999", invalid("port", "99999", PORT)),
        ("port=0", invalid("port", "0", PORT)),
        ("port=http", invalid("port", "http", PORT)),
        ("postgres://h:x/db", invalid("port", "x", PORT)),
        (
            "host=a,b,c port=1,2",
            ConfigError::PortCountMismatch { hosts: 3, ports: 2 },
        ),
        (
            "host=a,b hostaddr=10.0.0.1",
            ConfigError::HostaddrCountMismatch {
                hosts: 2,
                hostaddrs: 1,
            },
        ),
        (
            "hostaddr=db.example.com",
            invalid(
                "hostaddr",
                "db.example.com",
                "expected a numeric IPv4 or IPv6 address",
            ),
        ),
        // TLS.
        (
            "sslmode=allow",
            invalid(
                "sslmode",
                "allow",
                "allow (plain text first, TLS only if refused) is not supported; use prefer or disable",
            ),
        ),
        (
            "sslmode=on",
            invalid(
                "sslmode",
                "on",
                "expected disable, prefer, require, verify-ca or verify-full",
            ),
        ),
        (
            "sslrootcert=system sslmode=require",
            ConfigError::SystemRootsNeedVerifyFull {
                ssl_mode: SslMode::Require,
            },
        ),
        (
            "postgres://h?ssl=false",
            invalid(
                "ssl",
                "false",
                "only ssl=true (meaning sslmode=require) is accepted",
            ),
        ),
        // Sessions.
        (
            "target_session_attrs=standby",
            invalid(
                "target_session_attrs",
                "standby",
                "pgnotify needs a server that accepts LISTEN and NOTIFY; use any or read-write",
            ),
        ),
        (
            "target_session_attrs=whatever",
            invalid(
                "target_session_attrs",
                "whatever",
                "expected any or read-write",
            ),
        ),
        // libpq numbers.
        (
            "connect_timeout=ten",
            invalid("connect_timeout", "ten", "expected a whole number"),
        ),
        (
            "keepalives_idle=-1",
            invalid(
                "keepalives_idle",
                "-1",
                "must be from 0 (the system default) to 2147483647",
            ),
        ),
        // pgnotify's own.
        (
            "ping_interval=5x",
            invalid(
                "ping_interval",
                "5x",
                "expected a whole number with an optional unit (ns, us, ms, s, m, h), e.g. 500ms, 5s, 2m; a plain number is seconds",
            ),
        ),
        (
            "ping_interval=25h",
            invalid("ping_interval", "25h", "must be at most 24h"),
        ),
        (
            "ping_interval=0",
            invalid("ping_interval", "0s", "must be greater than zero"),
        ),
        (
            "ping_timeout=0ms",
            invalid("ping_timeout", "0s", "must be greater than zero"),
        ),
        (
            "backoff_min=0",
            invalid("backoff_min", "0s", "must be greater than zero"),
        ),
        (
            "backoff_min=5s backoff_max=1s",
            ConfigError::BackoffRange {
                min: Duration::from_secs(5),
                max: Duration::from_secs(1),
            },
        ),
        // The default maximum (10s) is below this minimum.
        (
            "backoff_min=20s",
            ConfigError::BackoffRange {
                min: Duration::from_secs(20),
                max: Duration::from_secs(10),
            },
        ),
        (
            "queue_capacity=0",
            invalid("queue_capacity", "0", "must be from 1 to 16777216 items"),
        ),
        (
            "queue_capacity=many",
            invalid("queue_capacity", "many", "expected a number of items"),
        ),
        (
            "server_queue_limit=0",
            invalid(
                "server_queue_limit",
                "0",
                "expected a fraction above 0 and at most 1, e.g. 0.5 or 50%",
            ),
        ),
        (
            "server_queue_limit=150%",
            invalid(
                "server_queue_limit",
                "150%",
                "expected a fraction above 0 and at most 1, e.g. 0.5 or 50%",
            ),
        ),
        (
            "stall_limit=soon",
            invalid(
                "stall_limit",
                "soon",
                "expected a whole number with an optional unit (ns, us, ms, s, m, h), e.g. 500ms, 5s, 2m; a plain number is seconds",
            ),
        ),
        (
            "overflow_policy=sometimes",
            invalid(
                "overflow_policy",
                "sometimes",
                "expected absorb, drop-oldest, drop-newest, keep-latest, close or backpressure",
            ),
        ),
        (
            "max_frame_size=10",
            invalid(
                "max_frame_size",
                "10",
                "must be from 16384 bytes (16KiB) to 1073741824 bytes (1GiB)",
            ),
        ),
        (
            "jitter_seed=-1",
            invalid("jitter_seed", "-1", "expected a number from 0 to 2^64-1"),
        ),
        // Syntax: positions, never the text around them.
        (
            "host=a port",
            ConfigError::Syntax {
                position: 11,
                reason: "expected \"=\" after a parameter name",
            },
        ),
        (
            "password='abc",
            ConfigError::Syntax {
                position: 9,
                reason: "unterminated quoted value",
            },
        ),
        (
            "postgres://h/db?connect_timeout",
            ConfigError::Syntax {
                position: 16,
                reason: "expected \"=\" in a query parameter",
            },
        ),
        (
            "postgres://h/db?application_name=a=b",
            ConfigError::Syntax {
                position: 16,
                reason: "extra \"=\" in a query parameter (percent-encode it as %3D)",
            },
        ),
        (
            "postgres://h/%zz",
            ConfigError::Syntax {
                position: 13,
                reason: "invalid percent-encoding (expected % and two hex digits)",
            },
        ),
        (
            "postgres://h/a%00b",
            ConfigError::Syntax {
                position: 14,
                reason: "%00 (a NUL byte) is not allowed",
            },
        ),
        (
            "postgres://h/%FF",
            ConfigError::Syntax {
                position: 13,
                reason: "percent-decoded text is not valid UTF-8",
            },
        ),
        (
            "postgres://[::1/db",
            ConfigError::Syntax {
                position: 11,
                reason: "missing \"]\" after an IPv6 address",
            },
        ),
        (
            "postgres://h%2Ci/db",
            invalid(
                "host",
                "h,i",
                "a host cannot contain a comma, which separates hosts",
            ),
        ),
        (
            "mysql://localhost/db",
            ConfigError::UnsupportedScheme {
                scheme: "mysql".into(),
            },
        ),
    ]
}

#[test]
fn libpq_examples_give_the_documented_configuration() {
    for (input, expected) in accepted() {
        let expected = expected
            .build()
            .unwrap_or_else(|e| panic!("the expectation for {input:?} is itself invalid: {e}"));
        match Config::parse(input) {
            Ok(got) => assert!(
                got == expected,
                "{input:?}\n  expected {}\n       got {}",
                expected.to_conninfo(),
                got.to_conninfo()
            ),
            Err(e) => panic!(
                "{input:?} should parse to {}, got error: {e}",
                expected.to_conninfo()
            ),
        }
    }
}

#[test]
fn malformed_strings_are_refused_with_an_error_naming_the_problem() {
    for (input, expected) in refused() {
        match Config::parse(input) {
            Err(got) => assert_eq!(got, expected, "{input:?}: expected {expected}, got {got}"),
            Ok(config) => panic!("{input:?} should be refused with {expected}, got {config}"),
        }
    }
}

#[test]
fn every_accepted_string_round_trips_through_to_conninfo() {
    for (input, _) in accepted() {
        let config = Config::parse(input).unwrap();
        let printed = config.to_conninfo();
        let reparsed = Config::parse(&printed)
            .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which fails: {e}"));
        assert!(
            reparsed == config,
            "{input:?} printed as {printed:?} parses differently"
        );
    }
}

#[test]
fn errors_read_as_sentences_that_name_the_parameter_and_value() {
    let e = Config::parse("port=99999").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value \"99999\" for connection parameter \"port\": expected a port number from 1 to 65535"
    );
    let e = Config::parse("ping_intervall=5s").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown connection parameter \"ping_intervall\""
    );
}

#[test]
fn a_parsed_config_has_the_documented_defaults() {
    let config = Config::parse("").unwrap();
    assert_eq!(config.hosts(), [tcp("localhost", 5432)]);
    assert_eq!(config.user(), "postgres");
    assert_eq!(config.dbname(), "postgres");
    assert_eq!(config.password(), None);
    assert_eq!(config.ssl_mode(), SslMode::Prefer);
    assert_eq!(config.ssl_root_cert(), None);
    assert!(!config.ssl_system_roots());
    assert_eq!(config.connect_timeout(), None);
    assert_eq!(config.keepalive(), &Keepalive::new());
    assert!(config.keepalive().enabled);
    assert_eq!(config.target_session_attrs(), TargetSessionAttrs::Any);
    assert_eq!(config.ping_interval(), Duration::from_secs(10));
    assert_eq!(config.ping_timeout(), Duration::from_secs(5));
    assert_eq!(config.backoff_min(), Duration::from_millis(100));
    assert_eq!(config.backoff_max(), Duration::from_secs(10));
    assert_eq!(config.backoff_reset_after(), Duration::from_secs(30));
    assert_eq!(config.publish_timeout(), Duration::from_secs(5));
    assert_eq!(config.listen_check_every(), 0);
    assert_eq!(
        config.default_subscribe_options(),
        pgnotify_core::SubscribeOptions::new()
    );
    assert_eq!(config.max_frame_len(), 1024 * 1024);
    assert_eq!(config.seed(), 0);
    assert_eq!(config.explicit_seed(), None);
    assert_eq!(config, Config::default());
    assert_eq!(Config::builder().build().unwrap(), Config::default());
}

#[test]
fn to_builder_keeps_every_setting() {
    let config = Config::parse(
        "postgres://u:pw@h1:1,h2/db?sslrootcert=system&ping_interval=3s&jitter_seed=9&keepalives=0",
    )
    .unwrap();
    assert_eq!(config.to_builder().build().unwrap(), config);
    let changed = config
        .to_builder()
        .ping_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(changed.ping_interval(), Duration::from_secs(1));
    assert_eq!(changed.hosts(), config.hosts());
}

#[test]
fn builder_refuses_what_a_connection_string_could_not_express() {
    let cases: Vec<(ConfigBuilder, &str)> = vec![
        (base().host(tcp("a,b", 1)), "host"),
        (base().host(tcp("", 1)), "host"),
        (base().host(tcp("/tmp", 1)), "host"),
        (base().host(unix("relative/dir", 1)), "host"),
        (base().host(tcp("h", 0)), "port"),
        (base().user(""), "user"),
        (base().dbname("a\0b"), "dbname"),
        (
            base().ssl_root_cert(SslRootCert::File("system".into())),
            "sslrootcert",
        ),
        (
            base().connect_timeout(Duration::from_millis(1500)),
            "connect_timeout",
        ),
        (
            base().keepalive(Keepalive::new().idle(Duration::from_millis(10))),
            "keepalives_idle",
        ),
        (
            base().keepalive(Keepalive::new().user_timeout(Duration::from_micros(10))),
            "tcp_user_timeout",
        ),
        (base().max_frame_len(usize::MAX), "max_frame_size"),
        (base().queue_capacity(0), "queue_capacity"),
        (
            base().publish_timeout(Duration::from_secs(86_401)),
            "publish_timeout",
        ),
    ];
    for (builder, parameter) in cases {
        let debug = format!("{builder:?}");
        match builder.build() {
            Err(ConfigError::InvalidValue { name, .. }) => {
                assert_eq!(name, parameter, "for {debug}")
            }
            other => panic!("{debug} should be refused for {parameter}, got {other:?}"),
        }
    }
}

#[test]
fn system_roots_and_a_root_file_are_told_apart() {
    let system = Config::parse("sslrootcert=system").unwrap();
    assert!(system.ssl_system_roots());
    assert_eq!(system.ssl_root_cert(), None);
    assert_eq!(system.ssl_mode(), SslMode::VerifyFull);
    let file = Config::parse("sslrootcert=/ca.pem").unwrap();
    assert!(!file.ssl_system_roots());
    assert_eq!(file.ssl_root_cert(), Some(std::path::Path::new("/ca.pem")));
}

#[test]
fn a_one_second_connect_timeout_becomes_two_as_in_libpq() {
    let config = base()
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(config.connect_timeout(), Some(Duration::from_secs(2)));
}

#[test]
fn config_is_send_sync_and_static() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Config>();
    assert_send_sync::<ConfigError>();
}
