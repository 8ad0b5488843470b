//! The password never appears in `Debug`, `Display` or any error.

use pgnotify_core::config::{Config, ConfigError};

const SECRET: &str = "Sup3rS3cret";

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

fn check_error(input: &str, e: &ConfigError) {
    assert_hidden(input, &e.to_string());
    assert_hidden(input, &format!("{e:?}"));
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        assert_hidden(input, &inner.to_string());
        source = inner.source();
    }
}

#[test]
fn neither_configs_nor_errors_show_the_password() {
    let inputs = [
        // Accepted.
        "postgres://u:Sup3rS3cret@h/db".to_owned(),
        "password=Sup3rS3cret".to_owned(),
        "password='Sup3rS3cret with spaces'".to_owned(),
        // Refused, with the password nearby or inside the faulty part.
        "password=Sup3rS3cret bogus=1".to_owned(),
        "password=Sup3rS3cret port=x".to_owned(),
        "password='Sup3rS3cret".to_owned(),
        "password=Sup3rS3cret\0".to_owned(),
        "postgres://u:Sup3rS3cret%zz@h/db".to_owned(),
        "postgres://u:Sup3rS3cret%00@h/db".to_owned(),
        "postgres://u:Sup3rS3cret%FF@h/db".to_owned(),
        "postgres://u:Sup3rS3cret@h:99999/db".to_owned(),
        "postgres://u:Sup3rS3cret@[::1/db".to_owned(),
        "postgres://u:Sup3rS3cret@h/db?x".to_owned(),
        "mysql://u:Sup3rS3cret@h/db".to_owned(),
        "postgres://u:Sup3rS3cret@h/db?backoff_min=1h".to_owned(),
    ];
    let mut accepted = 0;
    for input in &inputs {
        match Config::parse(input) {
            Ok(config) => {
                accepted += 1;
                assert_eq!(config.password().map(|p| p.contains(SECRET)), Some(true));
                assert_hidden(input, &format!("{config:?}"));
                assert_hidden(input, &format!("{config:#?}"));
                assert_hidden(input, &config.to_string());
                assert_hidden(input, &format!("{:?}", config.to_builder()));
                assert!(
                    config.to_conninfo().contains(SECRET),
                    "to_conninfo keeps the password"
                );
            }
            Err(e) => check_error(input, &e),
        }
    }
    assert_eq!(accepted, 3, "the accepted inputs above must stay accepted");
}

#[test]
fn environment_errors_do_not_show_the_password() {
    let e = Config::from_env([("PGPASSWORD", "Sup3rS3cret\0"), ("PGHOST", "h")]).unwrap_err();
    check_error("PGPASSWORD with a NUL", &e);
    assert!(matches!(e, ConfigError::Environment { .. }), "got {e:?}");
}

#[test]
fn a_password_error_still_names_the_parameter() {
    let e = Config::parse("password=Sup3rS3cret\0").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value \"<redacted>\" for connection parameter \"password\": must not contain a NUL byte"
    );
}

#[test]
fn display_is_a_connection_string_with_the_password_replaced() {
    let config = Config::parse("postgres://u:Sup3rS3cret@h/db").unwrap();
    assert_eq!(
        config.to_string(),
        "host=h port=5432 user=u password=<redacted> dbname=db"
    );
}
