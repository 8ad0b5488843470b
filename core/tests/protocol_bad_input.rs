//! Bad input from the network: every case becomes a typed error and
//! `Failed`, never a panic, and nothing follows it.

mod protocol_common;

use pgnotify_core::protocol::{
    Connection, ConnectionError, Phase, ProtocolError, StartupParams, WireEvent,
};
use protocol_common::*;

fn protocol_error(params: StartupParams, script: &[Step]) -> ProtocolError {
    let out = run_all(params, script);
    match out.last() {
        WireEvent::Failed(ConnectionError::Protocol(e)) => e.clone(),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

fn after_ready(bytes: Vec<u8>) -> ProtocolError {
    protocol_error(params(), &[trust_startup(), server(bytes)])
}

/// The error when the server answers `command`, once connected, with `bytes`.
fn in_reply_to(command: impl Fn(&mut Connection) + 'static, bytes: Vec<u8>) -> ProtocolError {
    protocol_error(params(), &[trust_startup(), call(command), server(bytes)])
}

/// A `SELECT 1` in flight, for the replies that need a query to answer.
fn simple_query(c: &mut Connection) {
    c.simple_query("SELECT 1".into());
}

#[test]
fn a_frame_longer_than_the_cap_fails_from_its_header_alone() {
    let mut p = params();
    p.max_frame_len = 64;
    let mut conn = Connection::new(p);
    conn.handle_input(&[b'A', 0, 0, 0, 65]);
    assert_eq!(
        conn.poll_event(),
        Some(WireEvent::Failed(ConnectionError::Protocol(
            ProtocolError::FrameTooLarge {
                tag: b'A',
                len: 65,
                max: 64
            }
        )))
    );
}

#[test]
fn the_default_cap_refuses_a_two_gigabyte_header() {
    let e = after_ready(vec![b'D', 0x7f, 0xff, 0xff, 0xff]);
    assert!(matches!(
        e,
        ProtocolError::FrameTooLarge {
            len: 0x7fff_ffff,
            ..
        }
    ));
}

#[test]
fn a_frame_exactly_at_the_cap_is_accepted() {
    let mut p = params();
    // Longer than every startup message, so only this frame is at the cap.
    let n = notification(1, "c", &"x".repeat(100));
    p.max_frame_len = n.len() - 1; // the length field excludes the tag
    let out = run_all(p, &[trust_startup(), server(n)]);
    assert!(matches!(out.last(), WireEvent::Notification(_)));
}

#[test]
fn a_length_below_four_is_a_bad_length() {
    assert_eq!(
        after_ready(vec![b'Z', 0, 0, 0, 3]),
        ProtocolError::BadLength { tag: b'Z', len: 3 }
    );
}

#[test]
fn a_negative_length_is_reported_as_sent() {
    let e = after_ready(vec![b'Z', 0xff, 0xff, 0xff, 0xfb]);
    assert_eq!(e, ProtocolError::BadLength { tag: b'Z', len: -5 });
    assert!(e.to_string().contains("length of -5"), "{e}");
}

#[test]
fn an_unknown_tag_is_reported() {
    assert_eq!(
        after_ready(frame(b'!', &[])),
        ProtocolError::UnknownMessage { tag: b'!' }
    );
}

#[test]
fn replies_with_nothing_in_flight_are_unexpected() {
    for (tag, bytes) in [
        (b'D', data_row(&[Some("x")])),
        (b'Z', ready(b'I')),
        (b'C', command_complete("SELECT 1")),
        (b'T', row_description(&["x"])),
        (b'1', parse_complete()),
        (b'E', error("ERROR", "42000", "stray")),
    ] {
        assert_eq!(
            after_ready(bytes),
            ProtocolError::Unexpected {
                tag,
                phase: Phase::Ready
            },
            "tag {}",
            char::from(tag)
        );
    }
}

#[test]
fn messages_pgnotify_never_asks_for_are_unexpected() {
    for tag in [
        b'G', b'H', b'W', b'd', b'c', b'n', b's', b't', b'3', b'V', b'v',
    ] {
        assert_eq!(
            in_reply_to(simple_query, frame(tag, &[])),
            ProtocolError::Unexpected {
                tag,
                phase: Phase::Ready
            }
        );
    }
}

#[test]
fn a_data_row_before_its_row_description_is_malformed() {
    assert!(matches!(
        in_reply_to(simple_query, data_row(&[Some("1")])),
        ProtocolError::Malformed { tag: b'D', .. }
    ));
}

#[test]
fn a_data_row_with_the_wrong_column_count_is_malformed() {
    let reply = cat(&[row_description(&["a"]), data_row(&[Some("1"), Some("2")])]);
    assert!(matches!(
        in_reply_to(simple_query, reply),
        ProtocolError::Malformed { tag: b'D', .. }
    ));
}

#[test]
fn parse_complete_for_a_simple_query_is_unexpected() {
    assert!(matches!(
        in_reply_to(simple_query, parse_complete()),
        ProtocolError::Unexpected { tag: b'1', .. }
    ));
}

#[test]
fn a_second_parse_complete_in_one_publish_is_unexpected() {
    let publish = |c: &mut Connection| {
        c.publish("a", "b");
    };
    assert!(matches!(
        in_reply_to(publish, cat(&[parse_complete(), parse_complete()])),
        ProtocolError::Unexpected { tag: b'1', .. }
    ));
}

#[test]
fn invalid_utf8_where_text_is_required_is_reported() {
    let notification_from_pid_1 = |body: &[u8]| frame(b'A', &[&1i32.to_be_bytes(), body].concat());
    for (bytes, what) in [
        (
            notification_from_pid_1(b"ch\xff\0payload\0"),
            "notification channel",
        ),
        (
            notification_from_pid_1(b"ch\0\xc3\0"),
            "notification payload",
        ),
        (frame(b'S', b"name\0\xff\0"), "parameter value"),
    ] {
        assert_eq!(after_ready(bytes), ProtocolError::InvalidUtf8 { what });
    }

    let reply = cat(&[
        row_description(&["a"]),
        frame(b'D', &[0, 1, 0, 0, 0, 1, 0xff]),
    ]);
    assert_eq!(
        in_reply_to(simple_query, reply),
        ProtocolError::InvalidUtf8 { what: "row value" }
    );
}

#[test]
fn truncated_and_overlong_bodies_are_malformed() {
    let cases: Vec<Vec<u8>> = vec![
        frame(b'A', b"\0\0\0\x01chan\0payload"), // no final NUL
        frame(b'A', b"\0\0"),                    // no pid
        frame(b'Z', b"IX"),                      // trailing byte
        frame(b'Z', b"Q"),                       // unknown status
        frame(b'S', b"name\0"),                  // no value
        frame(b'E', b"Mno severity\0\0"),        // no severity or code
        frame(b'N', b"SWARNING\0"),              // no terminator
        frame(b'K', b"\0\0"),
    ];
    for bytes in cases {
        let e = after_ready(bytes.clone());
        assert!(
            matches!(
                e,
                ProtocolError::Malformed { .. } | ProtocolError::Unexpected { .. }
            ),
            "{bytes:?} gave {e:?}"
        );
    }
}

#[test]
fn bad_authentication_requests_are_malformed() {
    for bytes in [
        auth(5, &[1, 2]),
        auth(99, &[]),
        auth(0, &[1]),
        frame(b'R', &[0, 0]),
    ] {
        let e = protocol_error(params_with_password(), &[server(bytes.clone())]);
        assert!(
            matches!(e, ProtocolError::Malformed { tag: b'R', .. }),
            "{bytes:?} gave {e:?}"
        );
    }
}

#[test]
fn query_replies_during_startup_are_unexpected() {
    let e = protocol_error(params(), &[server(cat(&[auth_ok(), data_row(&[])]))]);
    assert_eq!(
        e,
        ProtocolError::Unexpected {
            tag: b'D',
            phase: Phase::Starting
        }
    );
    let e = protocol_error(params(), &[server(notification(1, "a", "b"))]);
    assert_eq!(
        e,
        ProtocolError::Unexpected {
            tag: b'A',
            phase: Phase::Authenticating
        },
        "no notification before authentication"
    );
}

#[test]
fn failing_twice_in_one_input_reports_once() {
    // Two bad frames in one read: only the first error comes out.
    let out = run_all(
        params(),
        &[
            trust_startup(),
            server(cat(&[frame(b'!', &[]), frame(b'?', &[])])),
        ],
    );
    let failures = out
        .events
        .iter()
        .filter(|e| matches!(e, WireEvent::Failed(_)))
        .count();
    assert_eq!(failures, 1);
}

/// Random bytes, after a valid startup and at every phase, in random
/// chunks: the connection must never panic, must fail at most once and must
/// stay silent after. The harness checks the last two.
#[test]
fn random_garbage_never_panics() {
    for seed in 0..300u64 {
        let mut rng = XorShift::new(seed);
        let len = rng.below(200);
        let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let prefix = match seed % 3 {
            0 => Vec::new(),
            1 => auth_ok(),
            _ => cat(&[auth_ok(), startup_tail()]),
        };
        let script = [
            server(prefix),
            call(|c| {
                c.simple_query("SELECT 1".into());
                c.publish("a", "b");
            }),
            server(garbage),
        ];
        let mut p = params_with_password();
        p.max_frame_len = 128;
        run(p.clone(), &script, Chunking::Random(seed));
        run(p, &script, Chunking::Whole);
    }
}

/// Valid scripts with one byte flipped: the same, near valid input.
#[test]
fn single_byte_corruption_never_panics() {
    let valid = cat(&[
        auth_ok(),
        startup_tail(),
        notification(1, "chan", "payload"),
        row_description(&["x"]),
        data_row(&[Some("1"), None]),
        command_complete("SELECT 1"),
        ready(b'I'),
        publish_ok(),
    ]);
    for i in 0..valid.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bytes = valid.clone();
            bytes[i] ^= flip;
            let script = [
                call(|c| {
                    c.simple_query("SELECT 1".into());
                    c.publish("a", "b");
                }),
                server(bytes),
            ];
            run(params(), &script, Chunking::Random(i as u64));
        }
    }
}
