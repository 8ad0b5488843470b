//! The seed corpora: a few valid conversations and connection strings for
//! the fuzzer to start from.
//!
//! They are written from code so that they stay valid as the targets'
//! input formats evolve; `testkit/tests/fuzz_corpus_replay.rs` runs them on
//! every test run and writes them into `fuzz/corpus/<target>/seed-<name>`
//! when `PGNOTIFY_WRITE_SEEDS` is set.

use super::server_bytes::{Script, Start, flags, op};
use super::wire;

/// The seeds of a target, by name (`server_bytes`, `conninfo` or `bus_ops`).
pub fn for_target(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    match target {
        "server_bytes" => server_bytes(),
        "conninfo" => conninfo(),
        "bus_ops" => super::bus_ops::seeds(),
        _ => Vec::new(),
    }
}

fn startup_trust() -> Vec<u8> {
    [wire::auth_ok(), wire::startup_tail()].concat()
}

fn notification_stream() -> Vec<u8> {
    [
        wire::notification(4242, "jobs", "1"),
        wire::notification(4242, "jobs", ""),
        wire::notice_response("there is no transaction in progress"),
        wire::notification(7, "Mixed Case", "{\"id\": 42, \"é\": \"ü\"}"),
        wire::parameter_status("in_hot_standby", "on"),
        wire::notification(7, "jobs", "last"),
    ]
    .concat()
}

/// Replies to the three commands of [`Start::InFlight`]: `LISTEN`, a publish
/// (Parse, Bind, Execute, Sync) and a two-statement query.
fn in_flight_replies() -> Vec<u8> {
    [
        wire::command_complete("LISTEN"),
        wire::ready_for_query(b'I'),
        wire::parse_complete(),
        wire::bind_complete(),
        wire::notification(4242, "fuzz", "payload"),
        wire::data_row(&[Some("")]),
        wire::command_complete("SELECT 1"),
        wire::ready_for_query(b'I'),
        wire::row_description(&["?column?"]),
        wire::data_row(&[Some("1")]),
        wire::command_complete("SELECT 1"),
        wire::row_description(&["?column?"]),
        wire::data_row(&[None]),
        wire::command_complete("SELECT 1"),
        wire::ready_for_query(b'I'),
    ]
    .concat()
}

fn in_flight_errors() -> Vec<u8> {
    [
        wire::error_response("ERROR", "25006", "cannot execute LISTEN during recovery"),
        wire::ready_for_query(b'I'),
        wire::error_response("ERROR", "42883", "function pg_notify does not exist"),
        wire::ready_for_query(b'I'),
        wire::empty_query_response(),
        wire::ready_for_query(b'E'),
        wire::error_response(
            "FATAL",
            "57P01",
            "terminating connection due to administrator command",
        ),
    ]
    .concat()
}

fn server_bytes() -> Vec<(&'static str, Vec<u8>)> {
    let pw = flags::PASSWORD;
    let tls = 2 << flags::TRANSPORT_SHIFT;
    let refused = 1 << flags::TRANSPORT_SHIFT;
    let small_cap = 2 << flags::CAP_SHIFT;
    vec![
        (
            "disable-trust",
            Script::new(Start::Disable, 0)
                .feed(&[startup_trust(), notification_stream()].concat())
                .into_bytes(),
        ),
        (
            "disable-trust-bytewise",
            Script::new(Start::Disable, 0)
                .rest_bytewise(&[startup_trust(), notification_stream()].concat())
                .into_bytes(),
        ),
        (
            "prefer-tls-scram-plus",
            Script::new(Start::Prefer, pw)
                .feed(b"S")
                .op(op::TLS_BINDING)
                .feed(&wire::auth_sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]))
                .feed(&wire::auth_sasl_continue(
                    b"r=clientnonceservernonce,s=c2FsdHNhbHQ=,i=4096",
                ))
                .feed(&wire::auth_sasl_final(b"v=c2lnbmF0dXJl"))
                .into_bytes(),
        ),
        (
            "prefer-refused",
            Script::new(Start::Prefer, 0)
                .feed(b"N")
                .feed_in(&startup_trust(), 3)
                .into_bytes(),
        ),
        (
            "require-refused",
            Script::new(Start::Require, 0).feed(b"N").into_bytes(),
        ),
        (
            "ssl-error-response",
            Script::new(Start::Prefer, 0)
                .feed(
                    &[
                        b"E".to_vec(),
                        wire::error_response("FATAL", "53300", "sorry, too many clients already"),
                    ]
                    .concat(),
                )
                .into_bytes(),
        ),
        (
            "cleartext",
            Script::new(Start::AuthCleartext, pw | refused)
                .feed(&startup_trust())
                .into_bytes(),
        ),
        (
            "md5",
            Script::new(Start::AuthMd5, pw | tls)
                .feed_in(&[startup_trust(), notification_stream()].concat(), 11)
                .into_bytes(),
        ),
        (
            "md5-rejected",
            Script::new(Start::AuthMd5, pw)
                .feed(&wire::error_response(
                    "FATAL",
                    "28P01",
                    "password authentication failed for user \"fuzz\"",
                ))
                .into_bytes(),
        ),
        (
            "scram-continue",
            Script::new(Start::AuthSasl, pw)
                .feed(&wire::auth_sasl_continue(b"r=nonce,s=c2FsdA==,i=4096"))
                .into_bytes(),
        ),
        (
            "ready-notifications",
            Script::new(Start::Ready, 0)
                .feed_in(&notification_stream(), 7)
                .into_bytes(),
        ),
        (
            "in-flight-replies",
            Script::new(Start::InFlight, 0)
                .feed(&in_flight_replies())
                .into_bytes(),
        ),
        (
            "in-flight-errors",
            Script::new(Start::InFlight, 0)
                .feed_in(&in_flight_errors(), 5)
                .into_bytes(),
        ),
        (
            "ready-commands",
            Script::new(Start::Ready, 0)
                .op(op::QUERY)
                .feed(
                    &[
                        wire::command_complete("LISTEN"),
                        wire::ready_for_query(b'I'),
                    ]
                    .concat(),
                )
                .op(op::PUBLISH)
                .op(op::QUERY_NUL)
                .op(op::PUBLISH)
                .feed(
                    &[
                        wire::parse_complete(),
                        wire::bind_complete(),
                        wire::data_row(&[Some("")]),
                        wire::command_complete("SELECT 1"),
                        wire::ready_for_query(b'I'),
                        wire::bind_complete(),
                        wire::data_row(&[Some("")]),
                        wire::command_complete("SELECT 1"),
                        wire::ready_for_query(b'I'),
                    ]
                    .concat(),
                )
                .op(op::TERMINATE)
                .into_bytes(),
        ),
        (
            "frame-over-cap",
            Script::new(Start::Ready, small_cap)
                .feed_in(&wire::notification(1, "jobs", &"x".repeat(100)), 20)
                .into_bytes(),
        ),
        (
            "large-notification",
            Script::new(Start::Ready, 0)
                .feed(&wire::notification(1, "jobs", &"y".repeat(7999)))
                .into_bytes(),
        ),
    ]
}

fn conninfo() -> Vec<(&'static str, Vec<u8>)> {
    let strings: [(&'static str, &str); 14] = [
        (
            "keyvalue",
            "host=localhost port=5432 user=app dbname=orders",
        ),
        (
            "url-multi-host",
            "postgres://app:s%40cret@db1:5432,db2:5433/orders?sslmode=require&application_name=worker",
        ),
        (
            "keyvalue-multi-host",
            "host=db1,db2 port=5432,5433 user=app password='s@cret' dbname=orders sslmode=require",
        ),
        (
            "url-ipv6",
            "postgresql://[::1]:5433/db?target_session_attrs=read-write&connect_timeout=10",
        ),
        ("unix-socket", "host=/var/run/postgresql user=postgres"),
        (
            "pgnotify-settings",
            "user=app password='it\\'s \\\\ ok' ping_interval=2s ping_timeout=500ms backoff_min=100ms \
             backoff_max=1m backoff_reset_after=30s publish_timeout=1s listen_check_every=3 \
             jitter_seed=7 max_frame_size=64KiB queue_capacity=16 overflow_policy=keep-latest",
        ),
        ("url-empty", "postgres://"),
        (
            "keepalives",
            "keepalives=1 keepalives_idle=30 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=1000",
        ),
        ("ssl-system-roots", "sslmode=verify-full sslrootcert=system"),
        ("url-query-host", "postgresql:///mydb?host=%2Ftmp&port=5433"),
        ("empty", ""),
        ("hostaddr", "hostaddr=127.0.0.1 host=db port="),
        ("unsupported", "service=foo sslcert=/x options='-c a=b'"),
        (
            "url-percent",
            "postgresql://us%65r:p%C3%A4ss@h%6Fst/d%62?application_name=%E2%9C%93",
        ),
    ];
    strings
        .into_iter()
        .map(|(name, s)| (name, s.as_bytes().to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use pgnotify_core::protocol::{ConnectionError, Phase, ProtocolError};

    use super::super::server_bytes::run;
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        server_bytes()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| bytes)
            .expect("a seed of that name")
    }

    #[test]
    fn valid_startup_seeds_reach_ready_with_their_notifications() {
        for name in ["disable-trust", "disable-trust-bytewise", "md5"] {
            let outcome = run(&seed(name));
            assert_eq!(outcome.phase, Phase::Ready, "{name}: {outcome:?}");
            assert_eq!(outcome.notifications, 4, "{name}");
        }
        for name in ["prefer-refused", "cleartext"] {
            assert_eq!(run(&seed(name)).phase, Phase::Ready, "{name}");
        }
    }

    #[test]
    fn in_flight_replies_complete_all_three_commands() {
        let outcome = run(&seed("in-flight-replies"));
        assert_eq!(
            (outcome.phase, outcome.completed, outcome.notifications),
            (Phase::Ready, 3, 1)
        );
    }

    #[test]
    fn in_flight_errors_complete_every_command_then_fail_on_fatal() {
        let outcome = run(&seed("in-flight-errors"));
        assert_eq!((outcome.phase, outcome.completed), (Phase::Failed, 3));
        assert!(matches!(outcome.failure, Some(ConnectionError::Server(_))));
    }

    #[test]
    fn ready_commands_complete_in_order_then_terminate() {
        let outcome = run(&seed("ready-commands"));
        assert_eq!((outcome.phase, outcome.completed), (Phase::Terminated, 4));
    }

    #[test]
    fn frame_over_cap_fails_before_buffering_it() {
        let outcome = run(&seed("frame-over-cap"));
        assert!(matches!(
            outcome.failure,
            Some(ConnectionError::Protocol(ProtocolError::FrameTooLarge {
                max: 64,
                ..
            }))
        ));
    }

    #[test]
    fn large_notification_within_the_cap_is_delivered() {
        assert_eq!(run(&seed("large-notification")).notifications, 1);
    }

    #[test]
    fn scram_seed_gets_past_the_tls_handshake_to_scram() {
        let outcome = run(&seed("prefer-tls-scram-plus"));
        assert!(
            matches!(outcome.failure, Some(ConnectionError::Auth(_))),
            "{outcome:?}"
        );
    }
}
