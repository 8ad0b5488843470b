//! The fault suite: the listener against a real PostgreSQL that is killed,
//! restarted, stopped, black-holed and idle-timed-out, on tokio, smol and
//! async-std.
//!
//! Faults that take seconds by nature (a 10 s outage, 10 s of idle
//! timeouts, ping timeouts) run the three runtimes side by side, one
//! listener each, so the suite's time does not triple.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgnotify_driver::{
    BusError, ConnectionEvent, ConnectionEvents, EndReason, Event, Gap, NotifyError, Runtime,
    Subscription,
};
use pgnotify_testkit::proxy::{FaultProxy, Mode};
use pgnotify_testkit::server::{RestartMode, TestServer};
use support::{
    Listener, config, eventually, listen, next, next_notification, on_each_runtime, runtimes,
    tokio_threads, within,
};

/// The runtime whose timer the side-by-side tests wait with (any would do).
fn waiter() -> Arc<dyn Runtime> {
    Arc::new(pgnotify_smol::SmolRuntime)
}

/// Expects the reconnect gap of `generation`, then a notification sent
/// through `publisher` to arrive.
async fn expect_reconnected_then_delivery(
    rt: &Arc<dyn Runtime>,
    sub: &mut Subscription,
    publisher: &Listener,
    generation: u64,
) {
    match next(rt, sub).await {
        Event::Gap(Gap::Reconnected { generation: g }) => assert_eq!(g, generation),
        other => panic!("expected Gap::Reconnected, got {other:?}"),
    }
    let channel = sub.channel().to_owned();
    within(rt, "notify", publisher.notify(&channel, "after"))
        .await
        .expect("notify");
    assert_eq!(&*next_notification(rt, sub).await.payload, "after");
}

/// The next connection event other than a failed attempt.
async fn next_change(rt: &Arc<dyn Runtime>, events: &mut ConnectionEvents) -> ConnectionEvent {
    loop {
        match within(rt, "a connection event", events.recv()).await {
            Some(ConnectionEvent::ConnectFailed { .. }) => continue,
            Some(event) => return event,
            None => panic!("the connection events ended"),
        }
    }
}

#[test]
fn a_terminated_backend_is_replaced_and_subscribers_see_a_reconnect_gap() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "terminated")).await;
        let publisher = listen(rt, config(&server.url(), "terminate-publisher")).await;
        let mut sub = listener.subscribe("survivor").await.expect("subscribe");
        let mut events = listener.connection_events();
        assert_eq!(
            server.terminate_backends("terminated").expect("terminate"),
            1
        );
        match next_change(rt, &mut events).await {
            ConnectionEvent::Disconnected { error } => {
                assert!(
                    error.to_string().contains("terminating connection"),
                    "{error}"
                )
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert_eq!(
            next_change(rt, &mut events).await,
            ConnectionEvent::Connected { generation: 2 }
        );
        expect_reconnected_then_delivery(rt, &mut sub, &publisher, 2).await;
        assert_eq!(listener.stats().reconnects, 1);
        listener.close().await;
        publisher.close().await;
    });
}

#[test]
fn the_listener_survives_fast_and_immediate_restarts() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "restarted")).await;
        let mut sub = listener.subscribe("restarts").await.expect("subscribe");
        for (generation, mode) in [(2, RestartMode::Fast), (3, RestartMode::Immediate)] {
            server.restart(mode).expect("restart");
            // The publisher connects after the restart; the listener's
            // reconnect gap is what proves nothing was silently lost.
            let publisher = listen(rt, config(&server.url(), "restart-publisher")).await;
            expect_reconnected_then_delivery(rt, &mut sub, &publisher, generation).await;
            publisher.close().await;
        }
        listener.close().await;
    });
}

#[test]
fn the_listener_waits_out_a_ten_second_outage() {
    let server = TestServer::new().expect("a server");
    let tokio = tokio_threads();
    let rt = &waiter();
    smol::block_on(async {
        let mut trio = Vec::new();
        for (name, runtime) in runtimes(&tokio) {
            let config = config(&server.url(), "outage")
                .to_builder()
                .publish_timeout(Duration::from_millis(500))
                .build()
                .expect("valid");
            let listener = listen(&runtime, config).await;
            let sub = listener.subscribe(name).await.expect("subscribe");
            trio.push((name, listener, sub));
        }
        server.stop().expect("stop");
        for (name, listener, _) in &trio {
            let result = within(rt, "notify while down", listener.notify(name, "lost")).await;
            assert!(
                matches!(result, Err(NotifyError::NotConnected { .. })),
                "{name}: {result:?}"
            );
        }
        // The outage itself: the listeners retry on their own meanwhile.
        std::thread::sleep(Duration::from_secs(10));
        server.start().expect("start");
        let publisher = listen(rt, config(&server.url(), "outage-publisher")).await;
        for (name, listener, sub) in &mut trio {
            expect_reconnected_then_delivery(rt, sub, &publisher, 2).await;
            let stats = listener.stats();
            assert!(stats.connect_failures > 0, "{name}: {stats:?}");
            assert_eq!(stats.generation, 2, "{name}: {stats:?}");
        }
        for (_, listener, _) in &trio {
            listener.close().await;
        }
        publisher.close().await;
    });
}

#[test]
fn a_black_holed_connection_is_detected_within_ping_interval_plus_timeout() {
    let server = TestServer::new().expect("a server");
    let tokio = tokio_threads();
    let rt = &waiter();
    smol::block_on(async {
        let publisher = listen(rt, config(&server.url(), "black-hole-publisher")).await;
        let mut trio = Vec::new();
        for (name, runtime) in runtimes(&tokio) {
            let proxy = FaultProxy::start(server.addr()).expect("a proxy");
            let url = format!(
                "postgres://{}@127.0.0.1:{}/postgres",
                server.user(),
                proxy.port()
            );
            let listener = listen(&runtime, config(&url, "black-holed")).await;
            let sub = listener.subscribe(name).await.expect("subscribe");
            let events = listener.connection_events();
            trio.push((name, proxy, listener, sub, events));
        }
        // ping_interval 1 s + ping_timeout 1 s, and a margin for scheduling.
        let limit = Duration::from_secs(2) + Duration::from_millis(1500);
        let started = Instant::now();
        for (_, proxy, ..) in &trio {
            proxy.set_mode(Mode::BlackHole);
        }
        for (name, _, _, _, events) in &mut trio {
            match next_change(rt, events).await {
                ConnectionEvent::Disconnected {
                    error: BusError::PingTimedOut { .. },
                } => {}
                other => panic!("{name}: expected a ping timeout, got {other:?}"),
            }
            let elapsed = started.elapsed();
            assert!(
                elapsed <= limit,
                "{name}: detected after {elapsed:?}, limit {limit:?}"
            );
        }
        for (_, proxy, ..) in &trio {
            proxy.set_mode(Mode::Pass);
        }
        for (_, _, _, sub, _) in &mut trio {
            expect_reconnected_then_delivery(rt, sub, &publisher, 2).await;
        }
        for (_, _, listener, ..) in &trio {
            listener.close().await;
        }
        publisher.close().await;
    });
}

/// A server with `idle_session_timeout=1s`; a listener on each runtime
/// with `config` (given the server's URL) must stay on its first
/// connection for `span` and still receive.
fn outlives_idle_session_timeout(config: impl Fn(&str) -> pgnotify_core::Config, span: Duration) {
    if pgnotify_testkit::server::version()
        .expect("the server binaries")
        .skip_unless(14, "idle_session_timeout")
    {
        return;
    }
    let server = TestServer::builder()
        .setting("idle_session_timeout", "1s")
        .start()
        .expect("a server");
    let tokio = tokio_threads();
    let rt = &waiter();
    smol::block_on(async {
        let mut trio = Vec::new();
        for (name, runtime) in runtimes(&tokio) {
            let listener = listen(&runtime, config(&server.url())).await;
            let sub = listener.subscribe(name).await.expect("subscribe");
            trio.push((name, listener, sub));
        }
        std::thread::sleep(span);
        for (name, listener, sub) in &mut trio {
            let stats = listener.stats();
            assert!(stats.connected, "{name}: {stats:?}");
            assert_eq!(
                (
                    stats.generation,
                    stats.reconnects,
                    stats.session_settings_failed
                ),
                (1, 0, 0),
                "{name}: {stats:?}"
            );
            listener.notify(name, "awake").await.expect("notify");
            assert_eq!(&*next_notification(rt, sub).await.payload, "awake");
        }
        for (_, listener, _) in &trio {
            listener.close().await;
        }
    });
}

#[test]
fn pings_keep_an_idle_session_timeout_away() {
    // Pings every 300 ms for 10 s: the session is never idle for 1 s.
    outlives_idle_session_timeout(
        |url| {
            config(url, "idle")
                .to_builder()
                .ping_interval(Duration::from_millis(300))
                .build()
                .expect("valid")
        },
        Duration::from_secs(10),
    );
}

/// Issue 14: with the default 10 s ping interval, a server whose
/// `idle_session_timeout` is 1 s used to end the listening session every
/// second. The listener turns the timeout off for its own session.
#[test]
fn a_default_listener_outlives_the_servers_idle_session_timeout() {
    outlives_idle_session_timeout(
        |url| {
            let config = pgnotify_core::Config::parse(url)
                .expect("a valid URL")
                .to_builder()
                .application_name("idle-default")
                .build()
                .expect("valid");
            assert_eq!(config.ping_interval(), Duration::from_secs(10));
            config
        },
        // Five idle timeouts, well within the first ping interval.
        Duration::from_secs(5),
    );
}

#[test]
fn a_publish_in_flight_when_the_connection_dies_has_an_unknown_outcome() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let proxy = FaultProxy::start(server.addr()).expect("a proxy");
        let url = format!(
            "postgres://{}@127.0.0.1:{}/postgres",
            server.user(),
            proxy.port()
        );
        let listener = listen(rt, config(&url, "in-flight")).await;
        proxy.set_mode(Mode::BlackHole);
        // The NOTIFY is sent (into the black hole), then the connection is cut.
        let (result, cut) = within(
            rt,
            "the publish's result",
            smol::future::zip(listener.notify("in flight", "maybe"), async {
                proxy.cut_all()
            }),
        )
        .await;
        assert_eq!(cut, 1);
        match result {
            Err(NotifyError::OutcomeUnknown { cause }) => {
                assert!(matches!(cause, BusError::Transport(_)), "{cause:?}")
            }
            other => panic!("expected OutcomeUnknown, got {other:?}"),
        }
        proxy.set_mode(Mode::Pass);
        listener.close().await;
    });
}

/// How many sessions with this application name the server has.
fn sessions(server: &TestServer, application_name: &str) -> usize {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'"
    );
    server
        .execute(&sql)
        .expect("query")
        .trim()
        .parse()
        .expect("a count")
}

#[test]
fn no_backend_of_ours_remains_after_close_or_after_the_last_handle_is_dropped() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "closing")).await;
        let mut sub = listener.subscribe("closing").await.expect("subscribe");
        let clone = listener.clone();
        assert_eq!(sessions(server, "closing"), 1);
        clone.close().await;
        eventually(rt, "the backend to exit after close", || {
            sessions(server, "closing") == 0
        })
        .await;
        assert_eq!(within(rt, "the end", sub.recv()).await, None);
        assert_eq!(sub.end_reason(), Some(EndReason::BusClosed));
        assert!(!listener.stats().connected);

        // A subscription keeps the connection after the listener is dropped;
        // dropping it too closes the connection.
        let listener = listen(rt, config(&server.url(), "dropping")).await;
        let mut sub = listener.subscribe("dropping").await.expect("subscribe");
        let publisher = listen(rt, config(&server.url(), "dropping-publisher")).await;
        drop(listener);
        publisher
            .notify("dropping", "still open")
            .await
            .expect("notify");
        assert_eq!(
            &*next_notification(rt, &mut sub).await.payload,
            "still open"
        );
        assert_eq!(sessions(server, "dropping"), 1);
        drop(sub);
        eventually(rt, "the backend to exit after the last drop", || {
            sessions(server, "dropping") == 0
        })
        .await;
        publisher.close().await;
    });
}

/// Issue 15: one stream over several channels. Each item says its channel;
/// a terminated backend puts one reconnect gap in each channel's stream;
/// the listener reports the channels it LISTENs on.
#[test]
fn a_multi_channel_stream_survives_a_reconnect_with_a_gap_per_channel() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "multi")).await;
        let publisher = listen(rt, config(&server.url(), "multi-publisher")).await;
        let mut stream = within(
            rt,
            "subscribe_all",
            listener.subscribe_all(["orders", "invoices", "orders"]),
        )
        .await
        .expect("subscribe_all");
        assert_eq!(stream.channels().count(), 2, "a channel named twice is one");
        assert_eq!(listener.listening_channels(), ["invoices", "orders"]);
        let mut next = async || {
            let item = within(rt, "an item", stream.recv()).await.expect("an item");
            (item.channel.to_string(), item.event)
        };
        for channel in ["orders", "invoices"] {
            publisher.notify(channel, "before").await.expect("notify");
        }
        let mut got = Vec::new();
        for _ in 0..2 {
            match next().await {
                (channel, Event::Notification(n)) => {
                    assert_eq!(*n.channel, *channel);
                    got.push(channel);
                }
                other => panic!("expected a notification, got {other:?}"),
            }
        }
        got.sort();
        assert_eq!(got, ["invoices", "orders"]);

        assert_eq!(server.terminate_backends("multi").expect("terminate"), 1);
        let mut gaps = Vec::new();
        while gaps.len() < 2 {
            match next().await {
                (channel, Event::Gap(Gap::Reconnected { generation: 2 })) => gaps.push(channel),
                other => panic!("expected a reconnect gap, got {other:?}"),
            }
        }
        gaps.sort();
        assert_eq!(gaps, ["invoices", "orders"], "one gap per channel");
        publisher.notify("invoices", "after").await.expect("notify");
        match next().await {
            (channel, Event::Notification(n)) => {
                assert_eq!((channel.as_str(), &*n.payload), ("invoices", "after"));
            }
            other => panic!("expected a notification, got {other:?}"),
        }
        drop(stream);
        listener.close().await;
        publisher.close().await;
    });
}
