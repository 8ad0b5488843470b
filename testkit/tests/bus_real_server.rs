//! The Bus end to end against a real PostgreSQL, through the blocking test
//! driver (no TLS): readiness, delivery, UNLISTEN, reconnects after a
//! terminated backend and server restarts, startup errors, publishing,
//! close, and the overflow policies on a real burst.

mod blocking;

use std::time::{Duration, Instant};

use blocking::{BusDriver, ConnDriver, payloads};
use pgnotify_core::bus::{BusError, BusEvent, NotifyError, SubscriberStatus};
use pgnotify_core::config::SslMode;
use pgnotify_core::protocol::{ConnectionError, StartupParams, TlsNegotiation};
use pgnotify_core::{
    ChannelError, Config, EndReason, Event, Gap, OverflowPolicy, PayloadError, SubscribeOptions,
};
use pgnotify_testkit::server::{AuthMethod, DATABASE, RestartMode, SUPERUSER, TestServer};

/// A bus configuration for `server`'s default user, named `app` in
/// `pg_stat_activity`, with quick pings and a short backoff.
fn config(server: &TestServer, app: &str) -> Config {
    Config::parse(&server.url())
        .expect("the testkit's URL parses")
        .to_builder()
        .application_name(app)
        .ssl_mode(SslMode::Disable)
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_secs(5))
        .backoff_min(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(200))
        .seed(7)
        .build()
        .expect("a valid configuration")
}

/// A bus that has reached its first connection.
fn connected_bus(config: Config) -> BusDriver {
    let mut d = BusDriver::new(config);
    d.wait_event("Connected{1}", |e| {
        *e == BusEvent::Connected { generation: 1 }
    });
    d
}

/// A second session, as another application publishing.
fn notifier(server: &TestServer) -> ConnDriver {
    let mut p = StartupParams::new(SUPERUSER);
    p.database = Some(DATABASE.to_owned());
    p.tls = TlsNegotiation::Disable;
    let mut c = ConnDriver::tcp(server.port(), p);
    c.wait_ready().expect("the notifier connects");
    c
}

fn publish_from(c: &mut ConnDriver, channel: &str, payload: &str) {
    let id = c.conn().publish(channel, payload);
    c.flush();
    c.wait_command(id, &mut Vec::new())
        .expect("the notifier's NOTIFY commits");
}

fn options(policy: OverflowPolicy, capacity: usize) -> SubscribeOptions {
    SubscribeOptions::new().policy(policy).capacity(capacity)
}

fn note(payload: &str) -> String {
    payload.to_owned()
}

#[test]
fn subscriber_is_ready_only_after_the_server_acknowledges_listen() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-ready"));

    let id = d.bus().subscribe("acks", SubscribeOptions::new()).unwrap();
    assert_eq!(d.bus().subscriber_status(id), SubscriberStatus::Pending);
    // The LISTEN is written, but nothing has been read back yet.
    let before_ack = d.take_events();
    assert!(
        !before_ack.contains(&BusEvent::SubscriberReady(id)),
        "ready before the server answered: {before_ack:?}"
    );
    assert_eq!(d.bus().subscriber_status(id), SubscriberStatus::Pending);

    d.wait_event("SubscriberReady", |e| *e == BusEvent::SubscriberReady(id));
    assert_eq!(d.bus().subscriber_status(id), SubscriberStatus::Ready);
    server.execute("NOTIFY acks, 'after ready'").unwrap();
    assert_eq!(payloads(&d.wait_items(id, 1)), [note("after ready")]);
}

#[test]
fn notify_committed_right_after_ready_is_delivered_every_time() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-race"));
    let mut other = notifier(&server);
    let other_pid = other.conn().backend_pid().unwrap();

    for i in 0..200 {
        let channel = format!("ready.{i}");
        let id = d.subscribe_ready(&channel, SubscribeOptions::new());
        publish_from(&mut other, &channel, &i.to_string());
        let items = d.wait_items(id, 1);
        match items.as_slice() {
            [Event::Notification(n)] => {
                assert_eq!(&*n.channel, channel.as_str());
                assert_eq!(&*n.payload, i.to_string().as_str());
                assert_eq!(n.process_id, other_pid);
            }
            other => panic!("round {i}: expected one notification, got {other:?}"),
        }
        d.bus().unsubscribe(Instant::now(), id);
        d.pump();
    }
    d.wait_settled();
    assert_eq!(d.bus().listening_channels(), Vec::<String>::new());
    assert_eq!(d.bus().stats().notifications_received, 200);
}

#[test]
fn last_unsubscribe_unlistens_on_the_server() {
    let server = TestServer::new().unwrap();
    let config = config(&server, "pgnotify-unlisten")
        .to_builder()
        .ping_interval(Duration::from_millis(50))
        .listen_check_every(1)
        .build()
        .unwrap();
    let mut d = connected_bus(config);
    let a = d.subscribe_ready("gone", SubscribeOptions::new());
    let b = d.subscribe_ready("gone", SubscribeOptions::new());
    let marker = d.subscribe_ready("marker", SubscribeOptions::new());

    // One subscriber leaves: the channel stays LISTENed for the other.
    d.bus().unsubscribe(Instant::now(), a);
    d.pump();
    assert_eq!(d.bus().subscriber_status(a), SubscriberStatus::Unknown);
    server.execute("NOTIFY gone, 'still here'").unwrap();
    assert_eq!(payloads(&d.wait_items(b, 1)), [note("still here")]);
    assert!(d.drain(a).is_empty(), "delivered after unsubscribe");

    // The last one leaves: UNLISTEN.
    d.bus().unsubscribe(Instant::now(), b);
    d.wait_settled();
    assert_eq!(d.bus().listening_channels(), [note("marker")]);
    let received = d.bus().stats().notifications_received;
    // Separate transactions, so commit order is delivery order: once the
    // marker is here, a NOTIFY on "gone" would have come before it.
    server
        .execute("NOTIFY gone, 'too late'; NOTIFY marker, 'm'")
        .unwrap();
    assert_eq!(payloads(&d.wait_items(marker, 1)), [note("m")]);
    assert_eq!(
        d.bus().stats().notifications_received - received,
        1,
        "the server still sends notifications on the unsubscribed channel"
    );
    assert!(d.drain(b).is_empty(), "delivered after unsubscribe");

    // The bus's own check of pg_listening_channels() agrees.
    let pings = d.bus().stats().pings_sent;
    d.drive_until("three more pings with listen checks", |bus| {
        bus.stats().pings_sent >= pings + 3
    });
    assert_eq!(d.bus().stats().listen_mismatches, 0);
    assert!(d.bus().is_settled());
}

/// Subscribes, proves delivery, runs `disrupt`, and checks that the bus
/// reconnects as generation 2 with a reconnection gap before new deliveries.
fn check_reconnect(server: &TestServer, app: &str, disrupt: impl FnOnce(&mut BusDriver)) {
    let mut d = connected_bus(config(server, app));
    let id = d.subscribe_ready("work", SubscribeOptions::new());
    server.execute("NOTIFY work, 'before'").unwrap();
    assert_eq!(payloads(&d.wait_items(id, 1)), [note("before")]);

    disrupt(&mut d);
    let lost = d.wait_event("Disconnected", |e| {
        matches!(e, BusEvent::Disconnected { .. })
    });
    let BusEvent::Disconnected { error } = lost else {
        unreachable!()
    };
    assert!(error.is_transient(), "{error}");
    d.wait_event("Connected{2}", |e| {
        *e == BusEvent::Connected { generation: 2 }
    });
    assert_eq!(d.bus().generation(), 2);
    assert_eq!(d.bus().subscriber_status(id), SubscriberStatus::Ready);

    server.execute("NOTIFY work, 'after'").unwrap();
    let items = d.wait_items(id, 2);
    assert_eq!(
        items,
        [
            Event::Gap(Gap::Reconnected { generation: 2 }),
            items[1].clone()
        ]
    );
    assert_eq!(payloads(&items), [note("after")]);
    let stats = d.bus().stats();
    assert_eq!(stats.reconnects, 1);
    assert!(stats.connected);
}

#[test]
fn terminated_backend_reconnects_with_a_gap_then_delivers() {
    let server = TestServer::new().unwrap();
    check_reconnect(&server, "pgnotify-terminated", |_| {
        assert_eq!(server.terminate_backends("pgnotify-terminated").unwrap(), 1);
    });
}

#[test]
fn fast_restart_reconnects_with_a_gap_then_delivers() {
    let server = TestServer::new().unwrap();
    check_reconnect(&server, "pgnotify-fast", |_| {
        server.restart(RestartMode::Fast).unwrap();
    });
}

#[test]
fn immediate_restart_reconnects_with_a_gap_then_delivers() {
    let server = TestServer::new().unwrap();
    check_reconnect(&server, "pgnotify-immediate", |_| {
        server.restart(RestartMode::Immediate).unwrap();
    });
}

#[test]
fn stopped_server_is_retried_until_it_is_back() {
    let server = TestServer::new().unwrap();
    check_reconnect(&server, "pgnotify-stopped", |d| {
        server.stop().unwrap();
        // While it is down, attempts fail and are retried: not the first attempt.
        for _ in 0..3 {
            let failed = d.wait_event("ConnectFailed", |e| {
                matches!(e, BusEvent::ConnectFailed { .. })
            });
            let BusEvent::ConnectFailed {
                error,
                first_attempt,
            } = failed
            else {
                unreachable!()
            };
            assert!(!first_attempt);
            assert!(error.is_transient(), "{error}");
        }
        server.start().unwrap();
    });
}

#[test]
fn wrong_password_fails_the_first_attempt_for_good() {
    let server = TestServer::builder()
        .auth(AuthMethod::ScramSha256)
        .user("alice", "right")
        .start()
        .unwrap();
    let config = config(&server, "pgnotify-wrong-pw")
        .to_builder()
        .password("wrong")
        .build()
        .unwrap();
    let mut d = BusDriver::new(config);
    let _ = d.bus().subscribe("never", SubscribeOptions::new()).unwrap();
    let failed = d.wait_event("ConnectFailed", |e| {
        matches!(e, BusEvent::ConnectFailed { .. })
    });
    let BusEvent::ConnectFailed {
        error,
        first_attempt,
    } = failed
    else {
        unreachable!()
    };
    assert!(first_attempt);
    assert!(!error.is_transient(), "{error}");
    match &error {
        BusError::Connection(ConnectionError::Server(e)) => assert_eq!(e.code(), "28P01", "{e}"),
        other => panic!("expected the server's 28P01, got {other:?}"),
    }
    assert!(!d.bus().stats().connected);
    assert_eq!(d.bus().generation(), 0);
}

#[test]
fn notify_round_trips_and_a_server_refusal_fails_only_that_publish() {
    let server = TestServer::new().unwrap();
    // A LATIN1 database: the server refuses payloads it cannot convert.
    server
        .execute(
            "CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' \
             TEMPLATE template0",
        )
        .unwrap();
    let config = config(&server, "pgnotify-publish")
        .to_builder()
        .dbname("latin1")
        .build()
        .unwrap();
    let mut d = connected_bus(config);
    let id = d.subscribe_ready("pub", SubscribeOptions::new());
    let now = Instant::now();

    // Rejected before anything is sent.
    assert!(matches!(
        d.bus().notify(now, "pub", &"x".repeat(8000)),
        Err(NotifyError::Payload(PayloadError::TooLong { .. }))
    ));
    assert!(matches!(
        d.bus().notify(now, "", "x"),
        Err(NotifyError::Channel(ChannelError::Empty))
    ));

    let hello = d.bus().notify(now, "pub", "café").unwrap();
    let euro = d.bus().notify(now, "pub", "€ has no LATIN1 byte").unwrap();
    let after = d.bus().notify(now, "pub", "after").unwrap();
    d.pump();
    for (publish, ok) in [(hello, true), (euro, false), (after, true)] {
        let done = d.wait_event(
            "PublishDone",
            |e| matches!(e, BusEvent::PublishDone(p, _) if *p == publish),
        );
        let BusEvent::PublishDone(_, result) = done else {
            unreachable!()
        };
        match (ok, result) {
            (true, Ok(())) => {}
            (false, Err(NotifyError::Server(e))) => {
                assert_eq!(e.code(), "22P05", "{e}");
            }
            (_, other) => panic!("publish {publish:?}: unexpected {other:?}"),
        }
    }
    let items = d.wait_items(id, 2);
    assert_eq!(payloads(&items), [note("café"), note("after")]);
    let own = d.bus().backend_pid().unwrap();
    assert!(
        items
            .iter()
            .filter_map(Event::notification)
            .all(|n| n.process_id == own)
    );
    let stats = d.bus().stats();
    assert_eq!((stats.published, stats.publish_failures), (2, 1));
    // "€" and "after" queued behind "café" and shared a transaction (group
    // commit); the server refused it whole, and each was sent again alone,
    // so "after" did not fail with "€".
    assert_eq!(stats.group_retries, 1, "{stats:?}");
    assert_eq!(stats.publish_transactions, 4, "{stats:?}");
}

#[test]
fn close_ends_everything_and_leaves_no_backend() {
    const APP: &str = "pgnotify-close";
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, APP));
    let id = d.subscribe_ready("bye", SubscribeOptions::new());
    let count = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}'");
    assert_eq!(server.execute(&count).unwrap(), "1");

    // A publish in flight when close is called still gets its result.
    let publish = d.bus().notify(Instant::now(), "bye", "last").unwrap();
    d.pump();
    d.bus().close(Instant::now());
    assert_eq!(
        d.bus().subscriber_status(id),
        SubscriberStatus::Ended(EndReason::BusClosed)
    );
    d.wait_event("Closed", |e| *e == BusEvent::Closed);
    let events = d.take_events();
    assert!(
        events.contains(&BusEvent::PublishDone(publish, Ok(()))),
        "the in-flight publish has no result: {events:?}"
    );
    assert!(matches!(
        d.bus().notify(Instant::now(), "bye", "x"),
        Err(NotifyError::Closed)
    ));

    // The server has ended the session once it closes the socket.
    d.wait_transport_closed();
    assert_eq!(server.execute(&count).unwrap(), "0");
    assert_eq!(d.connects, 1);
}

#[test]
fn overflow_policies_count_exactly_on_a_real_burst() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-burst"));
    let all = d.subscribe_ready("burst", options(OverflowPolicy::DropOldest, 2000));
    let oldest = d.subscribe_ready("burst", options(OverflowPolicy::DropOldest, 10));
    let newest = d.subscribe_ready("burst", options(OverflowPolicy::DropNewest, 10));
    let latest = d.subscribe_ready("burst", options(OverflowPolicy::KeepLatest, 10));
    let close = d.subscribe_ready("burst", options(OverflowPolicy::Close, 10));

    server
        .execute("SELECT count(pg_notify('burst', i::text)) FROM generate_series(1, 1000) AS i")
        .unwrap();
    let everything = d.wait_items(all, 1000);
    let expected: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    assert_eq!(payloads(&everything), expected);
    assert_eq!(everything.len(), 1000, "no gap for a big enough queue");

    let numbers = |r: std::ops::RangeInclusive<i32>| -> Vec<Event> {
        let mut v = Vec::new();
        for i in r {
            v.push(
                everything
                    .iter()
                    .find(|e| {
                        e.notification()
                            .is_some_and(|n| *n.payload == *i.to_string())
                    })
                    .expect("in the burst")
                    .clone(),
            );
        }
        v
    };
    let gap = |missed| Event::Gap(Gap::Overflow { missed });

    let mut want = vec![gap(990)];
    want.extend(numbers(991..=1000));
    assert_eq!(d.drain(oldest), want, "DropOldest");

    let mut want = numbers(1..=10);
    want.push(gap(990));
    assert_eq!(d.drain(newest), want, "DropNewest");

    let mut want = vec![gap(999)];
    want.extend(numbers(1000..=1000));
    assert_eq!(d.drain(latest), want, "KeepLatest");

    let mut closed = Vec::new();
    let status = d
        .bus()
        .drain_events(Instant::now(), close, &mut closed, usize::MAX);
    assert_eq!(closed, numbers(1..=10), "Close");
    assert_eq!(status, SubscriberStatus::Ended(EndReason::Overflowed));
    let events = d.take_events();
    assert!(
        events.contains(&BusEvent::SubscriberEnded(close, EndReason::Overflowed)),
        "{events:?}"
    );

    let stats = d.bus().stats();
    assert_eq!(stats.notifications_received, 1000);
    assert_eq!(stats.dropped_oldest, 990);
    assert_eq!(stats.dropped_newest, 990);
    assert_eq!(stats.replaced_latest, 999);
    assert_eq!(stats.closed_by_overflow, 1);
}

#[test]
fn backpressure_pauses_reading_and_loses_nothing_on_a_real_burst() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-backpressure"));
    let id = d.subscribe_ready("burst", options(OverflowPolicy::Backpressure, 10));

    server
        .execute("SELECT count(pg_notify('burst', i::text)) FROM generate_series(1, 1000) AS i")
        .unwrap();
    d.drive_until("reading to pause", |bus| !bus.wants_input());
    assert!(d.bus().stats().reading_paused);

    let mut items = Vec::new();
    while items.len() < 1000 {
        let more = d.wait_items(id, 1);
        items.extend(more);
    }
    let expected: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    assert_eq!(payloads(&items), expected);
    assert_eq!(items.len(), 1000, "Backpressure never produces a gap");
    let stats = d.bus().stats();
    assert!(!stats.reading_paused);
    assert!(stats.paused_for > Duration::ZERO);
    assert!(stats.connected, "pausing must not cost the connection");
}

#[test]
fn subscribers_sharing_a_listen_in_flight_become_ready_together() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-shared"));
    // Mixed case and a dot: the name must reach the server exactly.
    let first = d
        .bus()
        .subscribe("Orders.EU", SubscribeOptions::new())
        .unwrap();
    let second = d
        .bus()
        .subscribe("Orders.EU", SubscribeOptions::new())
        .unwrap();
    d.pump();
    assert_eq!(d.bus().subscriber_status(second), SubscriberStatus::Pending);
    for id in [first, second] {
        d.wait_event("SubscriberReady", |e| *e == BusEvent::SubscriberReady(id));
    }
    server
        .execute(r#"NOTIFY "orders.eu", 'folded'; NOTIFY "Orders.EU", 'exact'"#)
        .unwrap();
    assert_eq!(payloads(&d.wait_items(first, 1)), [note("exact")]);
    assert_eq!(payloads(&d.wait_items(second, 1)), [note("exact")]);
    assert_eq!(d.bus().stats().notifications_received, 1);
}

#[test]
fn subscribe_racing_an_unlisten_in_flight_ends_listening() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-flap"));
    let mut other = notifier(&server);
    for round in 0..50 {
        let old = d.subscribe_ready("flap", SubscribeOptions::new());
        // The UNLISTEN goes out; the new subscriber arrives before its reply.
        d.bus().unsubscribe(Instant::now(), old);
        d.pump();
        let new = d.bus().subscribe("flap", SubscribeOptions::new()).unwrap();
        d.pump();
        d.wait_event("SubscriberReady", |e| *e == BusEvent::SubscriberReady(new));
        d.wait_settled();
        assert_eq!(
            d.bus().listening_channels(),
            [note("flap")],
            "round {round}"
        );
        publish_from(&mut other, "flap", &round.to_string());
        assert_eq!(
            payloads(&d.wait_items(new, 1)),
            [round.to_string()],
            "round {round}"
        );
        assert!(d.drain(old).is_empty());
        d.bus().unsubscribe(Instant::now(), new);
        d.pump();
    }
}

#[test]
fn subscribe_and_notify_during_an_outage_complete_on_reconnect() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-outage"));
    let before = d.subscribe_ready("o", SubscribeOptions::new());

    server.stop().unwrap();
    d.wait_event("Disconnected", |e| {
        matches!(e, BusEvent::Disconnected { .. })
    });
    let during = d.bus().subscribe("o", SubscribeOptions::new()).unwrap();
    let publish = d.bus().notify(Instant::now(), "o", "queued").unwrap();
    d.pump();
    assert_eq!(d.bus().subscriber_status(during), SubscriberStatus::Pending);

    server.start().unwrap();
    d.wait_event("Connected{2}", |e| {
        *e == BusEvent::Connected { generation: 2 }
    });
    d.wait_event("SubscriberReady", |e| {
        *e == BusEvent::SubscriberReady(during)
    });
    d.wait_event("PublishDone", |e| {
        *e == BusEvent::PublishDone(publish, Ok(()))
    });

    // The queued publish went out after the re-LISTEN in the same pipeline,
    // so both subscribers see it; only the one that lived through the outage
    // gets a reconnection gap.
    let old_items = d.wait_items(before, 2);
    assert_eq!(old_items[0], Event::Gap(Gap::Reconnected { generation: 2 }));
    assert_eq!(payloads(&old_items), [note("queued")]);
    let new_items = d.wait_items(during, 1);
    assert_eq!(payloads(&new_items), [note("queued")]);
    assert_eq!(new_items.len(), 1, "a new subscriber has nothing to resync");
}

#[test]
fn notify_waiting_longer_than_publish_timeout_fails_as_not_connected() {
    let server = TestServer::new().unwrap();
    let config = config(&server, "pgnotify-pubtimeout")
        .to_builder()
        .publish_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut d = connected_bus(config);
    server.stop().unwrap();
    d.wait_event("Disconnected", |e| {
        matches!(e, BusEvent::Disconnected { .. })
    });
    let publish = d.bus().notify(Instant::now(), "o", "never").unwrap();
    let done = d.wait_event(
        "PublishDone",
        |e| matches!(e, BusEvent::PublishDone(p, _) if *p == publish),
    );
    match done {
        BusEvent::PublishDone(_, Err(NotifyError::NotConnected { waited })) => {
            assert!(waited >= Duration::from_millis(200), "{waited:?}");
        }
        other => panic!("expected NotConnected, got {other:?}"),
    }
}

#[test]
fn pings_keep_idle_session_timeout_away() {
    if pgnotify_testkit::server::version()
        .unwrap()
        .skip_unless(14, "idle_session_timeout")
    {
        return;
    }
    let server = TestServer::builder()
        .setting("idle_session_timeout", "1s")
        .start()
        .unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-idle"));
    let id = d.subscribe_ready("idle", SubscribeOptions::new());
    // Ten pings at 300 ms apart span three idle timeouts.
    d.drive_until("ten pings", |bus| bus.stats().pings_sent >= 10);
    let events = d.take_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, BusEvent::Disconnected { .. })),
        "{events:?}"
    );
    assert_eq!(d.bus().generation(), 1);
    assert!(d.bus().stats().last_ping_rtt.is_some());
    server.execute("NOTIFY idle, 'still here'").unwrap();
    assert_eq!(payloads(&d.wait_items(id, 1)), [note("still here")]);
}

#[test]
fn bounce_reconnects_with_a_gap() {
    let server = TestServer::new().unwrap();
    check_reconnect(&server, "pgnotify-bounce", |d| {
        d.bus().bounce(Instant::now());
        d.pump();
    });
}

#[test]
fn longest_channel_and_payload_round_trip_exactly() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-limits"));
    let channel = "c".repeat(63);
    let id = d.subscribe_ready(&channel, SubscribeOptions::new());
    // 7999 bytes, multi-byte characters included.
    let payload = format!("{}{}", "é".repeat(3000), "x".repeat(1999));
    assert_eq!(payload.len(), 7999);
    let publish = d.bus().notify(Instant::now(), &channel, &payload).unwrap();
    d.pump();
    d.wait_event("PublishDone", |e| {
        *e == BusEvent::PublishDone(publish, Ok(()))
    });
    server
        .execute(&format!("NOTIFY {channel}, 'from admin'"))
        .unwrap();
    let items = d.wait_items(id, 2);
    assert_eq!(payloads(&items), [payload, note("from admin")]);
    assert!(
        items
            .iter()
            .filter_map(Event::notification)
            .all(|n| *n.channel == *channel)
    );
}

#[test]
fn bus_works_over_a_unix_socket_and_over_tcp_with_sslmode_prefer() {
    let server = TestServer::builder()
        .auth(AuthMethod::ScramSha256)
        .user("alice", "pw")
        .start()
        .unwrap();
    let unix = format!(
        "host={} port={} user=alice password=pw dbname={DATABASE} application_name=pgnotify-unix",
        server.unix_socket_dir().display(),
        server.port()
    );
    let tcp = format!("{} application_name=pgnotify-prefer", server.conninfo());
    for conninfo in [unix, tcp] {
        let config = Config::parse(&conninfo).unwrap();
        assert_eq!(config.ssl_mode(), SslMode::Prefer, "libpq's default");
        let mut d = connected_bus(config);
        let id = d.subscribe_ready("transport", SubscribeOptions::new());
        server.execute("NOTIFY transport, 'hi'").unwrap();
        assert_eq!(payloads(&d.wait_items(id, 1)), [note("hi")], "{conninfo}");
        d.bus().close(Instant::now());
        d.wait_event("Closed", |e| *e == BusEvent::Closed);
    }
}

#[test]
fn close_while_disconnected_finishes_at_once() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-close-down"));
    let id = d.subscribe_ready("x", SubscribeOptions::new());
    server.stop().unwrap();
    d.wait_event("Disconnected", |e| {
        matches!(e, BusEvent::Disconnected { .. })
    });
    let publish = d.bus().notify(Instant::now(), "x", "waiting").unwrap();
    d.bus().close(Instant::now());
    let events = d.take_events();
    assert!(events.contains(&BusEvent::Closed), "{events:?}");
    assert!(
        events.contains(&BusEvent::PublishDone(publish, Err(NotifyError::Closed))),
        "{events:?}"
    );
    assert!(
        events.contains(&BusEvent::SubscriberEnded(id, EndReason::BusClosed)),
        "{events:?}"
    );
    assert_eq!(d.bus().poll_timeout(), None, "a closed bus needs no timer");
    let connects = d.connects;
    server.start().unwrap();
    d.turn(Duration::from_millis(100));
    assert_eq!(d.connects, connects, "a closed bus connected again");
}

/// Issue 15: the listening session sends libpq's `options` in its
/// startup message and, with no `application_name` given, shows
/// `pgnotify` in `pg_stat_activity`; a session started with those options
/// has the `-c` setting.
#[test]
fn options_reach_the_session_and_the_default_application_name_shows() {
    let server = TestServer::new().unwrap();
    let config = Config::parse(&format!(
        "{}?sslmode=disable&options=-c%20work_mem%3D7777kB",
        server.url()
    ))
    .expect("a valid URL");
    assert_eq!(config.application_name(), None);
    let mut bus = pgnotify_core::bus::Bus::new(config.clone(), Instant::now());
    bus.handle_connected(Instant::now());
    let mut startup = Vec::new();
    bus.poll_transmit(&mut startup);
    let needle = b"options\0-c work_mem=7777kB\0";
    assert!(
        startup.windows(needle.len()).any(|w| w == needle),
        "the startup message carries the options: {startup:?}"
    );

    let mut d = connected_bus(config.clone());
    let pid = d.bus().backend_pid().expect("connected");
    let rows = server
        .query(&format!(
            "SELECT application_name FROM pg_stat_activity WHERE pid = {pid}"
        ))
        .unwrap();
    assert_eq!(rows, [[pgnotify_core::config::DEFAULT_APPLICATION_NAME]]);

    let mut c = ConnDriver::tcp(server.port(), {
        let mut p = StartupParams::new(SUPERUSER);
        p.database = Some(DATABASE.to_owned());
        p.tls = TlsNegotiation::Disable;
        p.options = config.options().map(str::to_owned);
        p
    });
    c.wait_ready().unwrap();
    let shown = c.query("SHOW work_mem", &mut Vec::new()).unwrap();
    assert_eq!(shown.rows, [[Some("7777kB".to_owned())]]);
}

/// Issue 18: `notify_statement` publishes inside the application's own
/// transaction, exactly (quotes, backslashes, newlines, Unicode), whatever
/// `standard_conforming_strings` says; a rolled-back transaction publishes
/// nothing.
#[test]
fn notify_statement_publishes_in_the_callers_transaction_exactly() {
    let server = TestServer::new().unwrap();
    let mut d = connected_bus(config(&server, "pgnotify-statement"));
    let id = d.subscribe_ready("outbox", SubscribeOptions::new());
    let tricky = "it's a \\ back\\\\slash,\nnew line, ünïcode";
    let rolled_back = pgnotify_core::notify_statement([("outbox", "never")]).unwrap();
    server
        .execute(&format!("BEGIN; {rolled_back}; ROLLBACK"))
        .unwrap();
    for conforming in ["on", "off"] {
        let sql =
            pgnotify_core::notify_statement([("outbox", tricky), ("outbox", conforming)]).unwrap();
        server
            .execute(&format!(
                "BEGIN; SET LOCAL standard_conforming_strings = {conforming}; {sql}; COMMIT"
            ))
            .unwrap();
    }
    let items = d.wait_items(id, 4);
    assert_eq!(
        payloads(&items),
        [note(tricky), note("on"), note(tricky), note("off")],
        "the rolled-back one never came, the others exactly"
    );
}
