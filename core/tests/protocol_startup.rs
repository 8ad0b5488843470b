//! TLS negotiation, the startup message and the startup messages from the server.

mod protocol_common;

use pgnotify_core::protocol::{
    Connection, ConnectionError, Phase, ProtocolError, StartupParams, TlsNegotiation,
    TransactionStatus, WireEvent,
};
use protocol_common::*;

fn with_tls(tls: TlsNegotiation) -> StartupParams {
    let mut p = params();
    p.tls = tls;
    p
}

fn failed_with(outcome: &Outcome) -> &ConnectionError {
    match outcome.last() {
        WireEvent::Failed(e) => e,
        other => panic!("expected Failed, got {other:?}"),
    }
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[test]
fn startup_message_carries_user_database_application_and_utf8() {
    let out = run_all(params(), &[]);
    let msgs = out.messages();
    assert_eq!(msgs.len(), 1);
    let body = &msgs[0].1;
    assert_eq!(&body[..4], &196608u32.to_be_bytes(), "protocol 3.0");
    let pairs: Vec<&[u8]> = body[4..].split(|&b| b == 0).collect();
    assert_eq!(
        pairs,
        vec![
            &b"user"[..],
            b"alice",
            b"database",
            b"app",
            b"application_name",
            b"pgnotify-test",
            b"client_encoding",
            b"UTF8",
            b"",
            b""
        ]
    );
}

#[test]
fn startup_parameter_with_nul_fails_before_sending() {
    let mut p = params();
    p.user = "a\0b".into();
    let out = run_all(p, &[]);
    assert_eq!(
        failed_with(&out),
        &ConnectionError::InvalidStartupParameter { name: "user" }
    );
    assert!(out.sent.is_empty());
}

#[test]
fn prefer_sends_ssl_request_and_starts_tls_on_s() {
    let script = [server(b"S"), Step::TlsEstablished(None), trust_startup()];
    let out = run_all(with_tls(TlsNegotiation::Prefer), &script);
    assert_eq!(&out.sent[..8], &SSL_REQUEST);
    assert_eq!(out.tags(), "__", "SSLRequest then StartupMessage");
    assert_eq!(
        out.main_events(),
        vec![WireEvent::StartTls, WireEvent::Ready]
    );
}

#[test]
fn nothing_is_sent_between_starttls_and_the_handshake() {
    let out = run_all(with_tls(TlsNegotiation::Require), &[server(b"S")]);
    assert_eq!(out.sent, SSL_REQUEST);
}

#[test]
fn bytes_after_s_in_the_same_read_are_refused() {
    // CVE-2021-23222: a man in the middle appends a forged reply to 'S'.
    let mut injected = b"S".to_vec();
    injected.extend(auth_ok());
    let mut conn = Connection::new(with_tls(TlsNegotiation::Require));
    let mut sent = Vec::new();
    conn.poll_transmit(&mut sent);
    assert_eq!(sent, SSL_REQUEST);
    conn.handle_input(&injected);
    assert!(!conn.poll_transmit(&mut sent), "nothing sent in reply");
    assert_eq!(
        conn.poll_event(),
        Some(WireEvent::Failed(ConnectionError::Protocol(
            ProtocolError::DataAfterSslResponse
        )))
    );
    assert_eq!(conn.poll_event(), None);
    assert_eq!(conn.phase(), Phase::Failed);
}

#[test]
fn bytes_before_the_tls_handshake_completes_are_refused() {
    // Delivered byte by byte, the injection arrives after StartTls.
    let mut script_bytes = b"S".to_vec();
    script_bytes.extend(auth_ok());
    let out = run(
        with_tls(TlsNegotiation::Require),
        &[server(script_bytes)],
        Chunking::ByteByByte,
    );
    assert_eq!(
        out.events,
        vec![
            WireEvent::StartTls,
            WireEvent::Failed(ConnectionError::Protocol(
                ProtocolError::DataAfterSslResponse
            ))
        ]
    );
}

#[test]
fn bytes_after_n_in_the_same_read_are_refused() {
    let mut injected = b"N".to_vec();
    injected.extend(auth_ok());
    let mut conn = Connection::new(with_tls(TlsNegotiation::Prefer));
    conn.handle_input(&injected);
    assert_eq!(
        conn.poll_event(),
        Some(WireEvent::Failed(ConnectionError::Protocol(
            ProtocolError::DataAfterSslResponse
        )))
    );
}

#[test]
fn n_with_require_fails_as_tls_refused() {
    let out = run_all(with_tls(TlsNegotiation::Require), &[server(b"N")]);
    assert_eq!(failed_with(&out), &ConnectionError::TlsRefused);
    assert_eq!(out.sent, SSL_REQUEST, "no plaintext startup");
}

#[test]
fn n_with_prefer_continues_in_plaintext() {
    let out = run_all(
        with_tls(TlsNegotiation::Prefer),
        &[server(b"N"), trust_startup()],
    );
    assert_eq!(out.tags(), "__");
    assert_eq!(out.main_events(), vec![WireEvent::Ready]);
}

#[test]
fn an_error_answer_to_the_ssl_request_is_untrusted_transient_and_never_downgraded() {
    for tls in [TlsNegotiation::Prefer, TlsNegotiation::Require] {
        // A man in the middle answers the SSL request with a believable
        // "password authentication failed" and a control sequence.
        let out = run_all(
            with_tls(tls),
            &[server(error(
                "FATAL",
                "28P01",
                "password authentication failed\n\x1b[2Jfor user \"app\"",
            ))],
        );
        let e = failed_with(&out);
        assert_eq!(e, &ConnectionError::SslRequestFailed, "{tls:?}");
        assert!(e.is_transient(), "retried, never taken as a bad password");
        let text = e.to_string();
        assert!(
            !text.contains("password") && !text.contains('\x1b'),
            "the text sent before TLS is not shown: {text}"
        );
        assert_eq!(out.sent, SSL_REQUEST, "no fallback to a plaintext startup");
    }
}

#[test]
fn an_unknown_ssl_answer_is_a_protocol_error() {
    let out = run_all(with_tls(TlsNegotiation::Prefer), &[server(b"X")]);
    assert_eq!(
        failed_with(&out),
        &ConnectionError::Protocol(ProtocolError::BadSslResponse { byte: b'X' })
    );
}

#[test]
fn tls_established_without_starttls_is_an_out_of_order_call() {
    let out = run_all(params(), &[Step::TlsEstablished(None)]);
    assert_eq!(
        failed_with(&out),
        &ConnectionError::OutOfOrderCall {
            call: "handle_tls_established",
            phase: Phase::Authenticating
        }
    );
}

#[test]
fn startup_records_parameters_key_data_and_status() {
    let script = [trust_startup()];
    let mut conn = Connection::new(params());
    let out = run_all(params(), &script);
    assert_eq!(
        out.events[..3],
        [
            WireEvent::ParameterStatus {
                name: "server_version".into(),
                value: "15.4".into()
            },
            WireEvent::ParameterStatus {
                name: "in_hot_standby".into(),
                value: "off".into()
            },
            WireEvent::ParameterStatus {
                name: "client_encoding".into(),
                value: "UTF8".into()
            },
        ]
    );
    let Step::Server(bytes) = &script[0] else {
        unreachable!()
    };
    conn.handle_input(bytes);
    assert_eq!(conn.phase(), Phase::Ready);
    assert_eq!(conn.backend_pid(), Some(4242));
    assert_eq!(conn.secret_key(), Some(0x1234_5678));
    assert_eq!(conn.server_version(), Some("15.4"));
    assert_eq!(conn.in_hot_standby(), Some(false));
    assert_eq!(conn.server_parameter("client_encoding"), Some("UTF8"));
    assert_eq!(conn.server_parameters().count(), 3);
    assert_eq!(conn.transaction_status(), Some(TransactionStatus::Idle));
}

#[test]
fn parameter_status_after_startup_updates_the_value() {
    let out = run_all(
        params(),
        &[
            trust_startup(),
            server(parameter_status("in_hot_standby", "on")),
        ],
    );
    assert_eq!(
        out.last(),
        &WireEvent::ParameterStatus {
            name: "in_hot_standby".into(),
            value: "on".into()
        }
    );
}

#[test]
fn unknown_database_after_authentication_fails_with_3d000() {
    let script = [server(cat(&[
        auth_ok(),
        error("FATAL", "3D000", "database \"app\" does not exist"),
    ]))];
    let out = run_all(params(), &script);
    let e = failed_with(&out);
    let ConnectionError::Server(server_error) = e else {
        panic!("{e:?}")
    };
    assert_eq!(server_error.code(), "3D000");
    assert!(!e.is_transient());
}

#[test]
fn server_shutting_down_at_startup_is_transient() {
    let script = [server(cat(&[
        auth_ok(),
        error("FATAL", "57P03", "the database system is starting up"),
    ]))];
    let out = run_all(params(), &script);
    assert!(failed_with(&out).is_transient());
}

#[test]
fn notices_during_startup_are_reported() {
    let script = [server(cat(&[
        notice("before auth"),
        auth_ok(),
        notice("after auth"),
        startup_tail(),
    ]))];
    let out = run_all(params(), &script);
    let notices: Vec<String> = out
        .events
        .iter()
        .filter_map(|e| match e {
            WireEvent::Notice(n) => Some(n.message().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(notices, ["before auth", "after auth"]);
}

#[test]
fn backend_key_data_twice_is_a_protocol_error() {
    let script = [server(cat(&[
        auth_ok(),
        backend_key(1, 2),
        backend_key(1, 2),
    ]))];
    let out = run_all(params(), &script);
    assert!(matches!(
        failed_with(&out),
        ConnectionError::Protocol(ProtocolError::Unexpected { tag: b'K', .. })
    ));
}

#[test]
fn backend_key_data_after_ready_is_a_protocol_error() {
    let out = run_all(params(), &[trust_startup(), server(backend_key(1, 2))]);
    assert!(matches!(
        failed_with(&out),
        ConnectionError::Protocol(ProtocolError::Unexpected {
            tag: b'K',
            phase: Phase::Ready
        })
    ));
}

#[test]
fn debug_output_redacts_the_password() {
    let text = format!("{:?}", params_with_password());
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(text.contains("redacted"));
}

#[test]
fn terminate_sends_terminate_and_ends_events() {
    let out = run_all(
        params(),
        &[
            trust_startup(),
            call(|c| c.terminate()),
            server(notification(1, "late", "x")),
        ],
    );
    assert_eq!(out.tags(), "_X");
    assert_eq!(out.main_events(), vec![WireEvent::Ready]);
}

#[test]
fn terminate_before_startup_sends_nothing() {
    let mut conn = Connection::new(with_tls(TlsNegotiation::Prefer));
    conn.terminate();
    let mut sent = Vec::new();
    assert!(!conn.poll_transmit(&mut sent));
    assert_eq!(conn.phase(), Phase::Terminated);
}
