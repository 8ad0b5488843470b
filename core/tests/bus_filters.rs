//! Filters and the near-limit counters, through a `Bus` driven with
//! scripted server bytes (no IO): what a filter drops is never queued, so
//! overflow counts are exact for what it keeps.

mod protocol_common;

use std::time::Instant;

use pgnotify_core::bus::{Action, Bus, NEAR_LIMIT_PAYLOAD_LEN, SubscriberId};
use pgnotify_core::config::Config;
use pgnotify_core::{Event, Gap, OverflowPolicy, SubscribeOptions};
use protocol_common::{auth_ok, cat, command_complete, notification, ready, startup_tail};

/// The backend pid `startup_tail` announces: the bus's own.
const OWN_PID: i32 = 4242;
const OTHER_PID: i32 = 77;

/// A bus connected through startup and its first LISTEN batch, with the
/// subscribers `subscribe` made before connecting, all ready.
fn connected_bus(
    subscribe: impl FnOnce(&mut Bus) -> Vec<SubscriberId>,
) -> (Bus, Vec<SubscriberId>) {
    let now = Instant::now();
    let config = Config::parse("postgres://app@db.invalid/app?sslmode=disable").expect("config");
    let mut bus = Bus::new(config, now);
    let ids = subscribe(&mut bus);
    assert!(matches!(bus.poll_action(), Some(Action::Connect(_))));
    bus.handle_connected(now);
    let mut sent = Vec::new();
    bus.poll_transmit(&mut sent);
    bus.handle_input(now, &cat(&[auth_ok(), startup_tail()]));
    sent.clear();
    bus.poll_transmit(&mut sent);
    // The relisten batch: one CommandComplete per LISTEN, then ReadyForQuery.
    let listens = sent.windows(7).filter(|w| w == b"LISTEN ").count();
    assert!(
        listens >= 2,
        "expected a LISTEN batch, the bus sent {sent:?}"
    );
    let mut reply = Vec::new();
    for _ in 0..listens {
        reply.extend(command_complete("LISTEN"));
    }
    reply.extend(ready(b'I'));
    bus.handle_input(now, &reply);
    for &id in &ids {
        assert_eq!(
            bus.subscriber_status(id),
            pgnotify_core::bus::SubscriberStatus::Ready,
            "{id} is not ready after the LISTEN batch"
        );
    }
    while bus.poll_event().is_some() {}
    (bus, ids)
}

fn payloads(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Notification(n) => n.payload.to_string(),
            Event::Gap(Gap::Overflow { missed }) => format!("<overflow {missed}>"),
            Event::Gap(other) => format!("<{other}>"),
            _ => format!("{e:?}"),
        })
        .collect()
}

fn drain(bus: &mut Bus, id: SubscriberId) -> Vec<String> {
    let mut out = Vec::new();
    bus.drain_events(Instant::now(), id, &mut out, usize::MAX);
    payloads(&out)
}

#[test]
fn a_filter_drops_before_queuing_so_overflow_counts_only_what_it_keeps() {
    let (mut bus, ids) = connected_bus(|bus| {
        let keep = SubscribeOptions::new()
            .capacity(3)
            .policy(OverflowPolicy::DropOldest)
            .filter(|n| n.payload.starts_with("keep"));
        vec![
            bus.subscribe("jobs", keep).expect("subscribe"),
            bus.subscribe("jobs", SubscribeOptions::new())
                .expect("subscribe"),
        ]
    });
    let mut input = Vec::new();
    for i in 0..5 {
        input.extend(notification(OTHER_PID, "jobs", &format!("keep {i}")));
        input.extend(notification(OTHER_PID, "jobs", &format!("drop {i}")));
    }
    bus.handle_input(Instant::now(), &input);

    // Five kept into a queue of three: exactly two lost, none of the dropped.
    assert_eq!(
        drain(&mut bus, ids[0]),
        ["<overflow 2>", "keep 2", "keep 3", "keep 4"]
    );
    assert_eq!(
        drain(&mut bus, ids[1]).len(),
        10,
        "the unfiltered subscriber got everything"
    );
    let stats = bus.stats();
    assert_eq!(stats.notifications_filtered, 5);
    assert_eq!(stats.dropped_oldest, 2);
    assert_eq!(stats.notifications_queued, 5 + 10);
    assert_eq!(stats.notifications_received, 10);
}

#[test]
fn skip_own_drops_notifications_carrying_the_connections_pid() {
    let (mut bus, ids) = connected_bus(|bus| {
        vec![
            bus.subscribe("jobs", SubscribeOptions::new().skip_own())
                .expect("subscribe"),
        ]
    });
    assert_eq!(bus.backend_pid(), Some(OWN_PID));
    let input = cat(&[
        notification(OWN_PID, "jobs", "mine"),
        notification(OTHER_PID, "jobs", "theirs"),
        notification(OWN_PID, "jobs", "mine again"),
    ]);
    bus.handle_input(Instant::now(), &input);
    assert_eq!(drain(&mut bus, ids[0]), ["theirs"]);
    assert_eq!(bus.stats().notifications_filtered, 2);
}

#[test]
fn a_panicking_filter_keeps_the_notification_and_counts_the_panic() {
    let (mut bus, ids) = connected_bus(|bus| {
        let options = SubscribeOptions::new().filter(|n| {
            assert_ne!(&*n.payload, "boom", "this predicate panics on boom");
            n.process_id == OTHER_PID
        });
        vec![bus.subscribe("jobs", options).expect("subscribe")]
    });
    let input = cat(&[
        notification(OTHER_PID, "jobs", "one"),
        notification(OTHER_PID, "jobs", "boom"),
        notification(OWN_PID, "jobs", "filtered"),
        notification(OTHER_PID, "jobs", "two"),
    ]);
    bus.handle_input(Instant::now(), &input);
    assert_eq!(drain(&mut bus, ids[0]), ["one", "boom", "two"]);
    let stats = bus.stats();
    assert_eq!(stats.filter_panics, 1);
    assert_eq!(stats.notifications_filtered, 1);
}

#[test]
fn near_limit_counters_move_only_for_payloads_of_7600_bytes_or_more() {
    let (mut bus, _ids) = connected_bus(|bus| {
        vec![
            bus.subscribe("jobs", SubscribeOptions::new())
                .expect("subscribe"),
        ]
    });
    let now = Instant::now();
    let below = "x".repeat(NEAR_LIMIT_PAYLOAD_LEN - 1);
    let at = "x".repeat(NEAR_LIMIT_PAYLOAD_LEN);
    let most = "é".repeat(3999) + "!"; // 7999 bytes, multi-byte
    for payload in ["small", below.as_str(), at.as_str(), most.as_str()] {
        bus.notify(now, "jobs", payload).expect("notify");
        bus.handle_input(now, &notification(OTHER_PID, "jobs", payload));
    }
    // Too long: refused before anything is counted.
    assert!(bus.notify(now, "jobs", &"x".repeat(8000)).is_err());
    let stats = bus.stats();
    assert_eq!(stats.near_limit_published, 2);
    assert_eq!(stats.near_limit_received, 2);
    assert_eq!(stats.notifications_received, 4);
}

#[test]
fn handler_panics_and_recovery_bounces_are_counted() {
    let (mut bus, _ids) = connected_bus(|bus| {
        vec![
            bus.subscribe("jobs", SubscribeOptions::new())
                .expect("subscribe"),
        ]
    });
    bus.record_handler_panic();
    bus.recovery_bounce(Instant::now());
    let stats = bus.stats();
    assert_eq!(stats.handler_panics, 1);
    assert_eq!(stats.tracker_bounces, 1);
    assert!(
        std::iter::from_fn(|| bus.poll_action()).any(|a| matches!(a, Action::Disconnect)),
        "a recovery bounce drops the connection"
    );
}
