//! The drive contract written at the top of `Bus`, pinned with scripted
//! server bytes (no IO): readiness is level-triggered, so bounded drains
//! strand nothing; `poll_transmit` gives bytes only while a transport is
//! open; which setting bounds an attempt; a driver without TLS; what a
//! `TransportError` reads like.

mod protocol_common;

use std::time::{Duration, Instant};

use pgnotify_core::bus::{
    Action, Bus, BusError, BusEvent, EventBatch, EventRef, SubscriberId, SubscriberStatus,
    TransportError, TransportErrorKind,
};
use pgnotify_core::config::{Config, ConfigError, SslMode};
use pgnotify_core::{Event, SubscribeOptions};
use protocol_common::{auth_ok, cat, command_complete, notification, ready, startup_tail};

const OTHER_PID: i32 = 77;

/// The SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

fn config(url: &str) -> Config {
    Config::parse(url).expect("a valid URL")
}

/// A bus through startup and its first LISTEN batch, with one subscriber
/// made before connecting, ready; every output drained.
fn connected_bus(options: SubscribeOptions) -> (Bus, SubscriberId, Instant) {
    let now = Instant::now();
    let mut bus = Bus::new(config("postgres://app@db.invalid/app?sslmode=disable"), now);
    let id = bus.subscribe("jobs", options).expect("a valid channel");
    assert!(matches!(bus.poll_action(), Some(Action::Connect(_))));
    bus.handle_connected(now);
    let mut sent = Vec::new();
    bus.poll_transmit(&mut sent);
    bus.handle_input(now, &cat(&[auth_ok(), startup_tail()]));
    sent.clear();
    bus.poll_transmit(&mut sent);
    let listens = sent.windows(7).filter(|w| w == b"LISTEN ").count();
    let mut reply = Vec::new();
    for _ in 0..listens {
        reply.extend(command_complete("LISTEN"));
    }
    reply.extend(ready(b'I'));
    bus.handle_input(now, &reply);
    assert_eq!(bus.subscriber_status(id), SubscriberStatus::Ready);
    while bus.poll_event().is_some() {}
    while bus.poll_action().is_some() {}
    sent.clear();
    bus.poll_transmit(&mut sent);
    (bus, id, now)
}

/// How the test driver takes a subscriber's items.
#[derive(Debug, Clone, Copy)]
enum Take {
    /// `drain_events`: owned events.
    Events,
    /// `drain_batch`: shared spans.
    Batch,
}

/// A driver that acts on events only: it drains the outputs until a pass
/// finds nothing, and takes at most `batch` items per `SubscriberReadable`,
/// never looking at the queue otherwise. Returns the payloads taken.
fn drive_on_announcements(
    bus: &mut Bus,
    id: SubscriberId,
    now: Instant,
    batch: usize,
    take: Take,
    got: &mut Vec<String>,
) {
    let mut bytes = Vec::new();
    let mut events = Vec::new();
    let mut shared = EventBatch::new();
    loop {
        let mut progress = bus.poll_transmit(&mut bytes);
        if let Some(action) = bus.poll_action() {
            panic!("expected no action from a healthy connection, got {action:?}");
        }
        while let Some(event) = bus.poll_event() {
            progress = true;
            if event != BusEvent::SubscriberReadable(id) {
                continue;
            }
            match take {
                Take::Events => {
                    bus.drain_events(now, id, &mut events, batch);
                    assert!(events.len() <= batch);
                    for event in events.drain(..) {
                        match event {
                            Event::Notification(n) => got.push(n.payload.to_string()),
                            other => panic!("expected only notifications, got {other:?}"),
                        }
                    }
                }
                Take::Batch => {
                    shared.clear();
                    bus.drain_batch(now, id, &mut shared, batch);
                    assert!(shared.len() <= batch);
                    for item in &shared {
                        match item {
                            EventRef::Notification(n) => got.push(n.payload.to_string()),
                            other => panic!("expected only notifications, got {other:?}"),
                        }
                    }
                }
            }
        }
        if !progress {
            return;
        }
    }
}

fn burst(n: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(notification(OTHER_PID, "jobs", &i.to_string()));
    }
    bytes
}

/// The bursts of the issue, drained in batches of every size it names,
/// both ways of taking items, the burst fed whole and in 4 KiB reads (only
/// while the bus wants input, as a driver must): everything arrives, in
/// order, with no gap, and the counters agree.
#[test]
fn bounded_drains_of_1_2_and_7_receive_every_burst_of_5_100_and_10000() {
    for n in [5, 100, 10_000] {
        for batch in [1, 2, 7] {
            for take in [Take::Events, Take::Batch] {
                for (read, reads) in [(usize::MAX, "one read"), (4096, "4 KiB reads")] {
                    let (mut bus, id, now) = connected_bus(SubscribeOptions::default());
                    let bytes = burst(n);
                    let mut got = Vec::new();
                    let mut fed = 0;
                    while fed < bytes.len() {
                        assert!(
                            bus.wants_input(),
                            "{n} in batches of {batch} ({take:?}, {reads}): reading stayed \
                             paused with {} of {n} taken",
                            got.len()
                        );
                        let end = fed.saturating_add(read).min(bytes.len());
                        bus.handle_input(now, &bytes[fed..end]);
                        fed = end;
                        drive_on_announcements(&mut bus, id, now, batch, take, &mut got);
                    }
                    let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                    assert!(
                        got == expected,
                        "{n} in batches of {batch} ({take:?}, {reads}): expected all {n} in \
                         order, got {} (first missing: {:?})",
                        got.len(),
                        expected.iter().find(|p| !got.contains(p))
                    );
                    assert!(!bus.is_readable(id), "nothing is left queued");
                    let stats = bus.stats();
                    assert_eq!(
                        (stats.notifications_queued, stats.notifications_taken),
                        (n as u64, n as u64),
                        "queued and taken"
                    );
                }
            }
        }
    }
}

#[test]
fn a_drain_that_leaves_items_announces_the_subscriber_again() {
    let (mut bus, id, now) = connected_bus(SubscribeOptions::default());
    bus.handle_input(now, &burst(5));
    assert_eq!(bus.poll_event(), Some(BusEvent::SubscriberReadable(id)));
    assert_eq!(bus.poll_event(), None);
    let mut out = Vec::new();
    for (taken_so_far, announced_again) in [(2, true), (4, true), (5, false)] {
        bus.drain_events(now, id, &mut out, 2);
        assert_eq!(out.len(), taken_so_far);
        let again = bus.poll_event() == Some(BusEvent::SubscriberReadable(id));
        assert_eq!(
            again, announced_again,
            "after taking {taken_so_far} of 5: expected announced again {announced_again}"
        );
        assert_eq!(bus.is_readable(id), announced_again);
        assert_eq!(bus.poll_event(), None, "one announcement per drain");
    }
    let stats = bus.stats();
    assert_eq!(stats.notifications_queued, 5);
    assert_eq!(stats.notifications_taken, 5);

    // A drain of nothing leaves everything, and says so.
    bus.handle_input(now, &burst(1));
    assert_eq!(bus.poll_event(), Some(BusEvent::SubscriberReadable(id)));
    bus.drain_events(now, id, &mut out, 0);
    assert_eq!(bus.poll_event(), Some(BusEvent::SubscriberReadable(id)));
    // Emptied: the next notification is announced once, as the first was.
    bus.drain_events(now, id, &mut out, usize::MAX);
    assert_eq!(bus.poll_event(), None);
    bus.handle_input(now, &burst(2));
    assert_eq!(bus.poll_event(), Some(BusEvent::SubscriberReadable(id)));
    assert_eq!(
        bus.poll_event(),
        None,
        "one announcement per non-empty queue"
    );
}

#[test]
fn taken_counts_what_drivers_took_and_queued_what_the_queues_received() {
    let options = SubscribeOptions::new()
        .capacity(3)
        .policy(pgnotify_core::OverflowPolicy::DropOldest);
    let (mut bus, id, now) = connected_bus(options);
    bus.handle_input(now, &burst(10));
    let mut batch = EventBatch::new();
    bus.drain_batch(now, id, &mut batch, 2);
    let stats = bus.stats();
    assert_eq!(
        stats.notifications_queued, 10,
        "every one entered the queue"
    );
    assert_eq!(stats.dropped_oldest, 7, "7 were pushed out again");
    assert_eq!(batch.len(), 2, "the gap of 7 and the 8th");
    assert_eq!(stats.notifications_taken, 1, "a gap is no notification");
    assert_eq!(stats.queued_items, 2, "the 9th and 10th");
    assert_eq!(
        stats.notifications_queued,
        stats.notifications_taken + stats.dropped_oldest + stats.queued_items as u64
    );
}

/// Acting on `Connect` creates output (the startup), and so on: bytes come
/// only while a transport is open, never before `handle_connected` or
/// after the transport ended, even when closing.
#[test]
fn poll_transmit_gives_bytes_only_while_a_transport_is_open() {
    let now = Instant::now();
    let mut bus = Bus::new(config("postgres://app@db.invalid/app?sslmode=disable"), now);
    let mut sent = Vec::new();
    assert!(matches!(bus.poll_action(), Some(Action::Connect(_))));
    assert!(!bus.poll_transmit(&mut sent), "no transport yet");
    bus.handle_connected(now);
    assert!(
        bus.poll_transmit(&mut sent),
        "the startup message, after acting"
    );
    assert!(!bus.poll_transmit(&mut sent), "one call gave everything");

    // Lost while a publish waits to be written: nothing is left to send.
    let (mut bus, _, now) = connected_bus(SubscribeOptions::default());
    bus.notify(now, "jobs", "x").expect("valid");
    bus.handle_closed(
        now,
        TransportError::new(TransportErrorKind::Io, "connection reset"),
    );
    sent.clear();
    assert!(
        !bus.poll_transmit(&mut sent),
        "got {sent:?} with no transport"
    );

    // Closing, and the server goes away before it answers UNLISTEN *.
    let (mut bus, _, now) = connected_bus(SubscribeOptions::default());
    bus.close(now);
    sent.clear();
    assert!(bus.poll_transmit(&mut sent), "UNLISTEN *");
    bus.handle_closed(
        now,
        TransportError::new(TransportErrorKind::Closed, "end of stream"),
    );
    assert!(
        std::iter::from_fn(|| bus.poll_event()).any(|e| e == BusEvent::Closed),
        "closed"
    );
    sent.clear();
    assert!(
        !bus.poll_transmit(&mut sent),
        "got {sent:?} (a Terminate) after the transport closed"
    );
    assert_eq!(
        bus.poll_action(),
        None,
        "no Disconnect for a closed transport"
    );
}

/// `connect_timeout` bounds connect and startup as one budget, and the
/// LISTENs with one of their own; unset, the budget is ping_interval +
/// ping_timeout. The error names the setting.
#[test]
fn connect_and_startup_share_connect_timeout_and_the_listens_get_their_own() {
    let second = Duration::from_secs(1);
    let t0 = Instant::now();
    let mut bus = Bus::new(
        config("postgres://app@db.invalid/app?sslmode=disable&connect_timeout=3"),
        t0,
    );
    assert_eq!(bus.poll_timeout(), Some(t0 + 3 * second));
    match bus.poll_action() {
        Some(Action::Connect(target)) => {
            assert_eq!(target.connect_timeout, Some(3 * second), "per address")
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    bus.handle_connected(t0 + second);
    assert_eq!(bus.poll_timeout(), Some(t0 + 3 * second), "the same budget");
    bus.handle_input(t0 + 2 * second, &cat(&[auth_ok(), startup_tail()]));
    assert_eq!(
        bus.poll_timeout(),
        Some(t0 + 5 * second),
        "the LISTENs get a budget of their own"
    );
    bus.handle_timeout(t0 + 5 * second);
    let failed = std::iter::from_fn(|| bus.poll_event())
        .find_map(|e| match e {
            BusEvent::ConnectFailed { error, .. } => Some(error),
            _ => None,
        })
        .expect("the attempt failed");
    assert_eq!(
        failed,
        BusError::ListenTimedOut {
            timeout: 3 * second
        }
    );
    assert!(failed.to_string().contains("connect_timeout"), "{failed}");

    let bus = Bus::new(config("postgres://app@db.invalid/app"), t0);
    assert_eq!(
        bus.poll_timeout(),
        Some(t0 + 15 * second),
        "ping_interval + ping_timeout"
    );
}

#[test]
fn a_bus_without_tls_connects_in_plain_text_for_prefer_and_refuses_require() {
    let now = Instant::now();
    let first_bytes = |mut bus: Bus| {
        assert!(matches!(bus.poll_action(), Some(Action::Connect(_))));
        bus.handle_connected(now);
        let mut sent = Vec::new();
        bus.poll_transmit(&mut sent);
        sent
    };
    let prefer = config("postgres://app@db.invalid/app");
    assert_eq!(first_bytes(Bus::new(prefer.clone(), now)), SSL_REQUEST);

    let bus = Bus::without_tls(prefer, now).expect("prefer needs no TLS");
    assert_eq!(bus.config().ssl_mode(), SslMode::Disable);
    let sent = first_bytes(bus);
    assert_eq!(
        sent[4..8],
        [0, 3, 0, 0],
        "expected a StartupMessage (protocol 3.0), got {sent:?}"
    );

    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("postgres://app@db.invalid/app?sslmode={mode}");
        match Bus::without_tls(config(&url), now) {
            Err(e @ ConfigError::TlsUnavailable { .. }) => {
                assert!(e.to_string().contains(&format!("sslmode={mode}")), "{e}")
            }
            other => panic!("expected TlsUnavailable for {mode}, got {other:?}"),
        }
    }
}

#[test]
fn every_transport_error_reads_as_its_kind_then_where_and_why() {
    for (kind, phrase) in [
        (
            TransportErrorKind::Resolve,
            "could not resolve the host name",
        ),
        (TransportErrorKind::Connect, "could not connect"),
        (TransportErrorKind::ConnectTimedOut, "connecting timed out"),
        (TransportErrorKind::Tls, "TLS failed"),
        (TransportErrorKind::Closed, "the connection was closed"),
        (TransportErrorKind::Io, "the connection failed"),
    ] {
        assert_eq!(kind.phrase(), phrase);
        let error = TransportError::new(kind, "db (10.0.0.1:5432): why");
        assert_eq!(
            error.to_string(),
            format!("{phrase}: db (10.0.0.1:5432): why")
        );
        assert_eq!(TransportError::new(kind, "").to_string(), phrase);
        assert_eq!(
            BusError::Transport(error.clone()).to_string(),
            error.to_string()
        );
    }
}
