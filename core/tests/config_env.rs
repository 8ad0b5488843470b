//! PG* environment variables as defaults: handed over, never read.

use std::path::Path;
use std::time::Duration;

use pgnotify_core::config::{Config, ConfigError, HostSpec, SslMode, TargetSessionAttrs};

#[test]
fn every_supported_variable_sets_its_parameter() {
    let env = [
        ("PGHOST", "db1,db2"),
        ("PGPORT", "6001,6002"),
        ("PGUSER", "app"),
        ("PGPASSWORD", "pw"),
        ("PGDATABASE", "orders"),
        ("PGAPPNAME", "worker"),
        ("PGSSLMODE", "verify-ca"),
        ("PGSSLROOTCERT", "/ca.pem"),
        ("PGCONNECT_TIMEOUT", "7"),
        ("PGTARGETSESSIONATTRS", "read-write"),
    ];
    let config = Config::from_env(env).unwrap();
    assert_eq!(
        config.hosts(),
        [HostSpec::tcp("db1", 6001), HostSpec::tcp("db2", 6002)]
    );
    assert_eq!(config.user(), "app");
    assert_eq!(config.password(), Some("pw"));
    assert_eq!(config.dbname(), "orders");
    assert_eq!(config.application_name(), Some("worker"));
    assert_eq!(config.ssl_mode(), SslMode::VerifyCa);
    assert_eq!(config.ssl_root_cert(), Some(Path::new("/ca.pem")));
    assert!(!config.ssl_system_roots());
    assert_eq!(config.connect_timeout(), Some(Duration::from_secs(7)));
    assert_eq!(config.target_session_attrs(), TargetSessionAttrs::ReadWrite);
}

#[test]
fn pghostaddr_gives_the_address_to_connect_to() {
    let config = Config::from_env([("PGHOST", "db"), ("PGHOSTADDR", "::1")]).unwrap();
    assert_eq!(
        config.hosts(),
        [HostSpec::Tcp {
            host: "db".into(),
            port: 5432,
            hostaddr: Some("::1".parse().unwrap())
        }]
    );
}

#[test]
fn explicit_parameters_win_over_the_environment() {
    let env = [
        ("PGHOST", "envhost"),
        ("PGUSER", "envuser"),
        ("PGSSLMODE", "disable"),
    ];
    let config = Config::parse_with_env("postgres://me@realhost/db?sslmode=require", env).unwrap();
    assert_eq!(config.hosts(), [HostSpec::tcp("realhost", 5432)]);
    assert_eq!(config.user(), "me");
    assert_eq!(config.ssl_mode(), SslMode::Require);
}

#[test]
fn lists_from_different_sources_are_paired_as_in_libpq() {
    // The hosts come from the environment, the ports from the string.
    let config = Config::parse_with_env("port=1,2", [("PGHOST", "a,b")]).unwrap();
    assert_eq!(
        config.hosts(),
        [HostSpec::tcp("a", 1), HostSpec::tcp("b", 2)]
    );
}

#[test]
fn an_explicit_empty_value_hides_the_variable() {
    let config = Config::parse_with_env("host=''", [("PGHOST", "envhost")]).unwrap();
    assert_eq!(config.hosts(), [HostSpec::tcp("localhost", 5432)]);
}

#[test]
fn a_bad_variable_overridden_by_the_string_is_never_looked_at() {
    let config = Config::parse_with_env("port=5433", [("PGPORT", "nonsense")]).unwrap();
    assert_eq!(config.hosts(), [HostSpec::tcp("localhost", 5433)]);
}

#[test]
fn a_bad_variable_is_an_error_naming_the_variable() {
    let e = Config::parse_with_env("host=h", [("PGPORT", "nonsense")]).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Environment { variable, source }
            if variable == "PGPORT" && matches!(**source, ConfigError::InvalidValue { ref name, .. } if name == "port")),
        "got {e:?}"
    );
    assert_eq!(
        e.to_string(),
        "environment variable PGPORT: invalid value \"nonsense\" for connection parameter \"port\": \
         expected a port number from 1 to 65535"
    );
    assert!(std::error::Error::source(&e).is_some());
    let e = Config::from_env([("PGSSLMODE", "allow")]).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Environment { variable, .. } if variable == "PGSSLMODE"),
        "got {e:?}"
    );
}

#[test]
fn the_user_falls_back_on_pguser_then_user_then_logname_then_postgres() {
    let user = |env: &[(&str, &str)]| {
        Config::from_env(env.iter().copied())
            .unwrap()
            .user()
            .to_owned()
    };
    assert_eq!(
        user(&[("PGUSER", "a"), ("USER", "b"), ("LOGNAME", "c")]),
        "a"
    );
    assert_eq!(user(&[("USER", "b"), ("LOGNAME", "c")]), "b");
    assert_eq!(user(&[("LOGNAME", "c")]), "c");
    assert_eq!(user(&[]), "postgres");
    // The database follows the user.
    assert_eq!(
        Config::from_env([("USER", "alice")]).unwrap().dbname(),
        "alice"
    );
}

#[test]
fn unrelated_variables_are_ignored() {
    let config =
        Config::from_env([("PATH", "/bin"), ("PGSSLCRL", "/x.pem"), ("HOME", "/root")]).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn pgoptions_gives_the_options_and_the_string_wins() {
    let config = Config::from_env([("PGOPTIONS", "-c x=y")]).unwrap();
    assert_eq!(config.options(), Some("-c x=y"));
    let config = Config::parse_with_env("options='-c a=b'", [("PGOPTIONS", "-c x=y")]).unwrap();
    assert_eq!(config.options(), Some("-c a=b"));
}

#[test]
fn the_environment_map_can_be_owned_strings_like_std_env_vars() {
    let env: Vec<(String, String)> = vec![("PGDATABASE".into(), "db".into())];
    assert_eq!(Config::parse_with_env("", env).unwrap().dbname(), "db");
}

#[test]
fn a_service_gives_defaults_between_the_string_and_the_environment() {
    use pgnotify_core::config::ServiceFile;
    let user_file = ServiceFile::parse("[s]\nhost=svc\nport=6000\ndbname=svcdb\n").unwrap();
    let system_file = ServiceFile::parse("[s]\nhost=system\n[t]\nport=notaport\n").unwrap();
    let files = [user_file, system_file];
    let env = [
        ("PGHOST", "envhost"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
    ];
    let config = Config::parse_with_services("service=s dbname=mine", env, &files).unwrap();
    assert_eq!(
        config.hosts(),
        [HostSpec::tcp("svc", 6000)],
        "the service beats PGHOST"
    );
    assert_eq!(config.dbname(), "mine", "the string beats the service");
    assert_eq!(
        config.user(),
        "envuser",
        "the environment fills in the rest"
    );
    let config = Config::parse_with_services("", [("PGSERVICE", "s")], &files).unwrap();
    assert_eq!(config.dbname(), "svcdb", "PGSERVICE names the service");
    assert_eq!(
        Config::parse_with_services("service=u", env, &files),
        Err(ConfigError::ServiceNotFound { name: "u".into() })
    );
    assert_eq!(
        Config::parse("service=s"),
        Err(ConfigError::ServiceNotFound { name: "s".into() }),
        "without files a service cannot be found"
    );
    let bad = Config::parse_with_services("service=t", env, &files).unwrap_err();
    assert!(
        matches!(bad, ConfigError::Service { ref name, .. } if name == "t"),
        "{bad}"
    );
}
