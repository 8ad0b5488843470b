//! The command FIFO: simple queries, the publish pipeline, errors and
//! notifications interleaved with replies.

mod protocol_common;

use pgnotify_core::protocol::{
    CommandId, ConnectionError, QueryResult, ServerError, TransactionStatus, WireEvent,
};
use pgnotify_core::{Notification, SharedStr};
use protocol_common::*;

/// The results of every completed command, in order.
fn results(out: &Outcome) -> Vec<Result<QueryResult, ServerError>> {
    out.events
        .iter()
        .filter_map(|e| match e {
            WireEvent::CommandComplete { result, .. } => Some(result.clone()),
            _ => None,
        })
        .collect()
}

fn ids(out: &Outcome) -> Vec<CommandId> {
    out.events
        .iter()
        .filter_map(|e| match e {
            WireEvent::CommandComplete { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn rows(values: &[&[Option<&str>]]) -> QueryResult {
    let mut r = QueryResult::default();
    r.rows = values
        .iter()
        .map(|row| row.iter().map(|v| v.map(str::to_owned)).collect())
        .collect();
    r
}

fn note(pid: i32, channel: &str, payload: &str) -> WireEvent {
    WireEvent::Notification(Notification {
        channel: SharedStr::from(channel),
        payload: SharedStr::from(payload),
        process_id: pid,
    })
}

fn query(sql: &'static str) -> Step {
    call(move |c| {
        c.simple_query(sql.to_owned());
    })
}

fn publish(channel: &'static str, payload: &'static str) -> Step {
    call(move |c| {
        c.publish(channel, payload);
    })
}

#[test]
fn simple_query_collects_rows_of_every_statement() {
    let script = [
        trust_startup(),
        query("SELECT pg_listening_channels(); SHOW transaction_read_only"),
        server(cat(&[
            row_description(&["pg_listening_channels"]),
            data_row(&[Some("a")]),
            data_row(&[Some("B")]),
            command_complete("SELECT 2"),
            row_description(&["transaction_read_only"]),
            data_row(&[Some("off")]),
            command_complete("SHOW"),
            ready(b'I'),
        ])),
    ];
    let out = run_all(params(), &script);
    assert_eq!(
        results(&out),
        vec![Ok(rows(&[&[Some("a")], &[Some("B")], &[Some("off")]]))]
    );
    let msgs = out.messages();
    assert_eq!(out.tags(), "_Q");
    assert_eq!(
        msgs[1].1,
        b"SELECT pg_listening_channels(); SHOW transaction_read_only\0"
    );
}

#[test]
fn null_values_and_empty_queries_are_reported() {
    let script = [
        trust_startup(),
        query("SELECT NULL"),
        query(""),
        server(cat(&[
            row_description(&["x"]),
            data_row(&[None]),
            command_complete("SELECT 1"),
            ready(b'I'),
            frame(b'I', &[]),
            ready(b'I'),
        ])),
    ];
    let out = run_all(params(), &script);
    assert_eq!(
        results(&out),
        vec![Ok(rows(&[&[None]])), Ok(QueryResult::default())]
    );
}

#[test]
fn commands_before_ready_are_held_and_sent_in_order() {
    let script = [
        query("LISTEN \"a\""),
        publish("a", "early"),
        trust_startup(),
        server(cat(&[
            command_complete("LISTEN"),
            ready(b'I'),
            publish_ok(),
        ])),
    ];
    let out = run_all(params(), &script);
    assert_eq!(out.tags(), "_QPBES");
    assert_eq!(results(&out).len(), 2);
    assert!(results(&out).iter().all(Result::is_ok));
    assert!(
        ids(&out).windows(2).all(|w| w[0] < w[1]),
        "completions in order"
    );
}

#[test]
fn pipelined_commands_complete_in_order_and_one_error_fails_only_its_command() {
    let script = [
        trust_startup(),
        query("LISTEN \"a\""),
        query("LISTEN \"bad\""),
        query("LISTEN \"c\""),
        server(cat(&[
            command_complete("LISTEN"),
            ready(b'I'),
            error("ERROR", "25006", "cannot execute LISTEN during recovery"),
            ready(b'I'),
            command_complete("LISTEN"),
            ready(b'I'),
        ])),
    ];
    let out = run_all(params(), &script);
    let r = results(&out);
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().code(), "25006");
    assert!(r[2].is_ok());
    assert_eq!(out.tags(), "_QQQ", "all three pipelined before any reply");
}

#[test]
fn fatal_error_during_a_query_fails_the_connection() {
    let script = [
        trust_startup(),
        query("SELECT 1"),
        server(error(
            "FATAL",
            "57P01",
            "terminating connection due to administrator command",
        )),
    ];
    let out = run_all(params(), &script);
    let WireEvent::Failed(ConnectionError::Server(e)) = out.last() else {
        panic!("{:?}", out.events)
    };
    assert_eq!(e.code(), "57P01");
    assert!(results(&out).is_empty(), "the query never completes");
}

#[test]
fn every_publish_is_parse_bind_execute_sync_of_the_unnamed_statement() {
    let script = [
        trust_startup(),
        publish("jobs", "1"),
        publish("jobs", "2"),
        server(cat(&[publish_ok(), publish_ok()])),
        publish("jobs", "3"),
        server(publish_ok()),
    ];
    let out = run_all(params(), &script);
    // Nothing outlives a publish's Sync group, so a transaction pooler can
    // hand each one to a different server connection.
    assert_eq!(out.tags(), "_PBESPBESPBES");
    assert_eq!(results(&out), vec![Ok(QueryResult::default()); 3]);
    let msgs = out.messages();
    assert_eq!(
        msgs[1].1,
        b"\0SELECT pg_notify($1, $2)\0\0\x02\0\0\0\x19\0\0\0\x19"
    );
    // Bind: unnamed portal, unnamed statement, text formats, two text values.
    let mut bind = b"\0\0\0\x01\0\0\0\x02".to_vec();
    bind.extend_from_slice(&4u32.to_be_bytes());
    bind.extend_from_slice(b"jobs");
    bind.extend_from_slice(&1u32.to_be_bytes());
    bind.extend_from_slice(b"1");
    bind.extend_from_slice(b"\0\x01\0\0");
    assert_eq!(msgs[2].1, bind);
}

#[test]
fn a_failed_parse_fails_its_publish_alone() {
    let script = [
        trust_startup(),
        publish("jobs", "1"),
        publish("jobs", "2"),
        server(cat(&[
            error(
                "ERROR",
                "42883",
                "function pg_notify(text, text) does not exist",
            ),
            ready(b'I'),
            publish_ok(),
        ])),
    ];
    let out = run_all(params(), &script);
    let r = results(&out);
    assert_eq!(r[0].as_ref().unwrap_err().code(), "42883");
    assert!(r[1].is_ok(), "the next publish parses its own statement");
    assert_eq!(out.tags(), "_PBESPBES");
}

#[test]
fn a_failed_publish_does_not_affect_the_next() {
    let script = [
        trust_startup(),
        publish("jobs", "1"),
        publish("jobs", "2"),
        server(cat(&[
            parse_complete(),
            bind_complete(),
            error("ERROR", "22023", "payload string too long"),
            ready(b'I'),
            publish_ok(),
        ])),
    ];
    let out = run_all(params(), &script);
    let r = results(&out);
    assert_eq!(r[0].as_ref().unwrap_err().code(), "22023");
    assert!(r[1].is_ok());
}

#[test]
fn a_query_with_nul_fails_locally_in_order() {
    let script = [
        trust_startup(),
        query("SELECT 1"),
        query("SELECT '\0'"),
        query("SELECT 2"),
        server(cat(&[command_complete("SELECT 1"), ready(b'I')])),
        server(cat(&[command_complete("SELECT 1"), ready(b'I')])),
    ];
    let out = run_all(params(), &script);
    let r = results(&out);
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().code(), "22021");
    assert!(r[2].is_ok());
    assert_eq!(out.tags(), "_QQ", "the NUL query is not sent");
    assert!(ids(&out).windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn notifications_are_accepted_between_every_reply() {
    let n = |i: i32| notification(i, "chan", &format!("p{i}"));
    let script = [
        server(auth_ok()),
        server(n(1)),
        server(startup_tail()),
        query("SELECT 1"),
        publish("chan", "x"),
        server(cat(&[
            n(2),
            row_description(&["x"]),
            n(3),
            data_row(&[Some("1")]),
            n(4),
            command_complete("SELECT 1"),
            n(5),
            ready(b'I'),
            n(6),
            parse_complete(),
            n(7),
            bind_complete(),
            n(8),
            data_row(&[Some("")]),
            n(9),
            command_complete("SELECT 1"),
            n(10),
            ready(b'I'),
            n(11),
        ])),
    ];
    let out = run_all(params(), &script);
    let got: Vec<i32> = out
        .events
        .iter()
        .filter_map(|e| match e {
            WireEvent::Notification(n) => Some(n.process_id),
            _ => None,
        })
        .collect();
    assert_eq!(got, (1..=11).collect::<Vec<_>>());
    assert_eq!(results(&out).len(), 2);
    assert!(out.events.contains(&note(11, "chan", "p11")));
}

#[test]
fn notification_payloads_are_exact_including_large_and_unicode() {
    let big = "é".repeat(3999); // 7998 bytes
    let script = [
        trust_startup(),
        server(cat(&[
            notification(7, "Jobs", ""),
            notification(7, "ünïcödé", "✓"),
            notification(7, "big", &big),
        ])),
    ];
    let out = run_all(params(), &script);
    let n = out.main_events();
    assert_eq!(n[1], note(7, "Jobs", ""));
    assert_eq!(n[2], note(7, "ünïcödé", "✓"));
    assert_eq!(n[3], note(7, "big", &big));
}

#[test]
fn non_fatal_notice_during_a_query_is_reported_and_the_query_completes() {
    let script = [
        trust_startup(),
        query("UNLISTEN \"x\""),
        server(cat(&[
            notice("nothing to unlisten"),
            command_complete("UNLISTEN"),
            ready(b'I'),
        ])),
    ];
    let out = run_all(params(), &script);
    assert!(matches!(out.main_events()[1], WireEvent::Notice(_)));
    assert!(results(&out)[0].is_ok());
}

#[test]
fn transaction_status_follows_ready_for_query() {
    let mut conn = pgnotify_core::protocol::Connection::new(params());
    let Step::Server(startup) = trust_startup() else {
        unreachable!()
    };
    conn.handle_input(&startup);
    conn.simple_query("BEGIN".into());
    conn.handle_input(&cat(&[command_complete("BEGIN"), ready(b'T')]));
    assert_eq!(
        conn.transaction_status(),
        Some(TransactionStatus::InTransaction)
    );
    assert_eq!(conn.commands_in_flight(), 0);
    conn.simple_query("SELECT x".into());
    assert_eq!(conn.commands_in_flight(), 1);
    conn.handle_input(&cat(&[error("ERROR", "42703", "no column x"), ready(b'E')]));
    assert_eq!(conn.transaction_status(), Some(TransactionStatus::Failed));
}

#[test]
fn commands_after_failure_are_dropped() {
    let script = [
        trust_startup(),
        server(error("FATAL", "57P01", "terminating")),
        query("SELECT 1"),
        publish("a", "b"),
    ];
    // The harness asserts that nothing at all is produced after Failed.
    let out = run_all(params(), &script);
    assert_eq!(out.tags(), "_");
}

#[test]
fn publish_all_is_one_transaction_with_one_result() {
    let items = || {
        vec![
            ("jobs".to_owned(), "1".to_owned()),
            ("jobs".to_owned(), "2".to_owned()),
            ("other".to_owned(), "3".to_owned()),
        ]
    };
    let mut ok = Vec::new();
    for _ in 0..3 {
        ok.extend(parse_complete());
        ok.extend(bind_complete());
        ok.extend(data_row(&[Some("")]));
        ok.extend(command_complete("SELECT 1"));
    }
    ok.extend(ready(b'I'));
    let script = [
        trust_startup(),
        call(move |c| {
            c.publish_all(items());
        }),
        server(ok),
        publish("jobs", "4"),
        server(publish_ok()),
    ];
    let out = run_all(params(), &script);
    // Three Parse/Bind/Execute and one Sync: one implicit transaction.
    assert_eq!(out.tags(), "_PBEPBEPBESPBES");
    assert_eq!(results(&out), vec![Ok(QueryResult::default()); 2]);
}

#[test]
fn a_failure_inside_publish_all_fails_it_whole_and_nothing_else() {
    let items = vec![
        ("jobs".to_owned(), "1".to_owned()),
        ("jobs".to_owned(), "2".to_owned()),
    ];
    let mut reply = Vec::new();
    reply.extend(parse_complete());
    reply.extend(bind_complete());
    reply.extend(error("ERROR", "22023", "payload string too long"));
    // The server skips the rest of the group until its Sync.
    reply.extend(ready(b'I'));
    reply.extend(publish_ok());
    let script = [
        trust_startup(),
        call(move |c| {
            c.publish_all(items.clone());
        }),
        publish("jobs", "3"),
        server(reply),
    ];
    let out = run_all(params(), &script);
    let r = results(&out);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].as_ref().unwrap_err().code(), "22023");
    assert!(r[1].is_ok(), "the next command is not affected");
}
