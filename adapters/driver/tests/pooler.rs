//! The listener through a real PgBouncer (issue 20), in both pool modes.
//!
//! Session mode must work as a direct connection does, although PgBouncer hands every client a
//! made-up backend pid: the listener stays connected with its pings answered, survives a
//! terminated server backend with exactly one gap, and `skip_own` drops only its own
//! notifications. Transaction mode cannot carry LISTEN (a client's LISTEN and the NOTIFY meant
//! for it may run on different server backends): listening must end with the typed error that
//! names the pooler within one ping interval and timeout, instead of reconnecting forever,
//! while publishing keeps working.
//!
//! The issue asks for a minute of session-mode pings; these tests hold the connection for 10 s
//! of 1 s pings so the suite stays short. `PGNOTIFY_POOLER_STAY_SECS=60` runs the full minute.
//!
//! Without PgBouncer installed each test skips with a printed reason, except under CI (`$CI`
//! set), where `.ci/run` installs it and a missing one is a failure.

mod support;

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use pgnotify_core::Config;
use pgnotify_driver::{
    Alarm, ConnectionEvent, ConnectionEvents, Event, Gap, ListenerError, Runtime,
};
use pgnotify_testkit::pooler::{PoolMode, TestPgBouncer, pgbouncer_or_skip};
use pgnotify_testkit::server::TestServer;
use support::{
    Listener, WAIT, config, listen, next, next_notification, on_each_runtime, runtimes,
    skip_own_drops_the_listeners_own_only, sleep, tokio_threads,
};

/// A server with a PgBouncer in `mode` in front of it, or `None` when the test skips.
fn pooled(mode: PoolMode) -> Option<(TestServer, TestPgBouncer)> {
    if !pgbouncer_or_skip() {
        return None;
    }
    let server = TestServer::new().expect("a server");
    let pooler = TestPgBouncer::start(&server, mode).expect("PgBouncer starts");
    Some((server, pooler))
}

/// How long the session-mode listener must stay connected.
fn stay() -> Duration {
    let secs = std::env::var("PGNOTIFY_POOLER_STAY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// The runtime whose timer the side-by-side tests wait with (any would do).
fn waiter() -> Arc<dyn Runtime> {
    Arc::new(pgnotify_smol::SmolRuntime)
}

#[test]
fn session_mode_stays_connected_with_every_ping_answered() {
    let Some((_server, pooler)) = pooled(PoolMode::Session) else {
        return;
    };
    let stay = stay();
    let tokio = tokio_threads();
    let rt = &waiter();
    smol::block_on(async {
        let mut trio = Vec::new();
        for (name, runtime) in runtimes(&tokio) {
            // Pings every second, each given a second to come back.
            let listener = listen(&runtime, config(&pooler.url(), "pooled-idle")).await;
            let sub = listener.subscribe(name).await.expect("subscribe");
            trio.push((name, listener, sub));
        }
        sleep(rt, stay).await;
        for (name, listener, sub) in &mut trio {
            let stats = listener.stats();
            let context = format!("{name}: {stats:?}\nPgBouncer log:\n{}", pooler.log());
            assert!(stats.connected, "{context}");
            assert_eq!(
                (stats.generation, stats.reconnects, stats.connect_failures),
                (1, 0, 0),
                "one connection for {stay:?}: {context}"
            );
            // One ping per interval, less the first and a late one.
            let pings = stay.as_secs().saturating_sub(2);
            assert!(stats.pings_sent >= pings, "{pings} pings: {context}");
            assert!(stats.last_ping_rtt.is_some(), "pings answered: {context}");
            listener.notify(name, "awake").await.expect("notify");
            assert_eq!(&*next_notification(rt, sub).await.payload, "awake");
        }
        for (_, listener, _) in &trio {
            listener.close().await;
        }
    });
}

#[test]
fn session_mode_survives_a_terminated_backend_with_exactly_one_gap() {
    let Some((server, pooler)) = pooled(PoolMode::Session) else {
        return;
    };
    let (server, pooler) = (&server, &pooler);
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&pooler.url(), "pooled-terminated")).await;
        // Published directly, so only the listener's side goes through PgBouncer.
        let publisher = listen(rt, config(&server.url(), "pooled-publisher")).await;
        let mut sub = listener.subscribe("survivor").await.expect("subscribe");
        // PgBouncer passes the client's application_name on to the server backend it lends.
        assert_eq!(
            server
                .terminate_backends("pooled-terminated")
                .expect("terminate"),
            1,
            "the listener's server backend"
        );
        match next(rt, &mut sub).await {
            Event::Gap(Gap::Reconnected { generation: 2 }) => {}
            other => panic!("expected Gap::Reconnected for generation 2, got {other:?}"),
        }
        publisher.notify("survivor", "after").await.expect("notify");
        assert_eq!(&*next_notification(rt, &mut sub).await.payload, "after");
        // Three more ping intervals: the new connection holds, no second gap comes.
        sleep(rt, Duration::from_secs(3)).await;
        publisher.notify("survivor", "later").await.expect("notify");
        match next(rt, &mut sub).await {
            Event::Notification(n) if &*n.payload == "later" => {}
            other => panic!(
                "expected the notification \"later\" and no second gap, got {other:?}; {:?}",
                listener.stats()
            ),
        }
        let stats = listener.stats();
        assert_eq!((stats.generation, stats.reconnects), (2, 1), "{stats:?}");
        listener.close().await;
        publisher.close().await;
    });
}

#[test]
fn session_mode_skip_own_drops_the_listeners_own_notifications_only() {
    let Some((_server, pooler)) = pooled(PoolMode::Session) else {
        return;
    };
    let url = pooler.url();
    // Both through PgBouncer: two clients with made-up pids, two real backends.
    on_each_runtime(|rt| {
        let url = url.clone();
        async move { skip_own_drops_the_listeners_own_only(&rt, &url, "pooled-skip-own").await }
    });
}

/// `future`'s output, or `None` when `deadline` passes first.
async fn before<T>(
    rt: &Arc<dyn Runtime>,
    deadline: Instant,
    future: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut alarm = Alarm::default();
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        alarm.poll_at(&**rt, deadline, cx).map(|()| None)
    })
    .await
}

/// Every event until `events` ends (the listener has stopped), and whether it ended before
/// `deadline`.
async fn until_ended(
    rt: &Arc<dyn Runtime>,
    events: &mut ConnectionEvents,
    deadline: Instant,
) -> (Vec<ConnectionEvent>, bool) {
    let mut seen = Vec::new();
    loop {
        match before(rt, deadline, events.recv()).await {
            Some(Some(event)) => seen.push(event),
            Some(None) => return (seen, true),
            None => return (seen, false),
        }
    }
}

/// Whether `error` is the one that names a transaction-pooling proxy.
fn names_the_pooler(error: &impl std::fmt::Display) -> bool {
    error.to_string().contains("transaction-pooling proxy")
}

#[test]
fn transaction_mode_listening_ends_with_the_pooler_error_within_ping_interval_and_timeout() {
    let Some((_server, pooler)) = pooled(PoolMode::Transaction) else {
        return;
    };
    let pooler = &pooler;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let config = config(&pooler.url(), "pooled-tx-listen");
        // The first ping goes out with the LISTEN acknowledgement; its answer never comes.
        // Allow one interval and timeout, and a margin for scheduling.
        let limit = config.ping_interval() + config.ping_timeout() + Duration::from_millis(1500);
        let started = Instant::now();
        let connected = Listener::builder(config)
            .runtime(rt.clone())
            .give_up_after(WAIT)
            .connect()
            .await;
        let listener = match connected {
            // Refusing at once is as good as ending right after.
            Err(ListenerError::Connect(error)) if names_the_pooler(&error) => {
                let elapsed = started.elapsed();
                assert!(
                    elapsed <= limit,
                    "refused after {elapsed:?}, limit {limit:?}"
                );
                return;
            }
            Err(other) => panic!("expected the pooler to be named, got {other}"),
            Ok(listener) => listener,
        };
        let mut events = listener.connection_events();
        // Like `pgnotify listen`: a subscription on top of the pings. Whether subscribing
        // fails or succeeds first does not matter here; the listener must end either way.
        let deadline = started + limit;
        let _ = before(rt, deadline, listener.subscribe("jobs")).await;
        let (seen, ended) = until_ended(rt, &mut events, deadline).await;
        let stats = listener.stats();
        assert!(
            ended,
            "the listener still runs {limit:?} after connecting through a transaction pooler \
             (it should end with the pooler error); events: {seen:?}; {stats:?}"
        );
        let named = seen.iter().any(|event| match event {
            ConnectionEvent::Disconnected { error } | ConnectionEvent::ConnectFailed { error } => {
                names_the_pooler(error)
            }
            _ => false,
        }) || stats.last_error.as_ref().is_some_and(names_the_pooler);
        assert!(
            named,
            "ended without naming the pooler; events: {seen:?}; {stats:?}"
        );
        assert_eq!(stats.generation, 1, "it reconnected first: {stats:?}");
    });
}

#[test]
fn transaction_mode_publishing_works_a_hundred_times_in_a_row() {
    let Some((server, pooler)) = pooled(PoolMode::Transaction) else {
        return;
    };
    // One runtime: PgBouncer's behaviour does not depend on it, and a hundred connections
    // per runtime would only triple the time.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let rt: Arc<dyn Runtime> = Arc::new(pgnotify_tokio::TokioRuntime::from_handle(
        tokio.handle().clone(),
    ));
    let rt = &rt;
    tokio.block_on(async {
        let witness = listen(rt, config(&server.url(), "pooled-witness")).await;
        let mut sub = witness.subscribe("pooled-jobs").await.expect("subscribe");
        let pooled_config = |name: &str| -> Config { config(&pooler.url(), name) };

        // A hundred short-lived publishers, one after the other, as a hundred
        // `pgnotify notify` runs: PgBouncer hands each the server backend the last one used.
        for i in 0..100 {
            let publisher = listen(rt, pooled_config("pooled-notify-once")).await;
            let payload = format!("once {i}");
            if let Err(error) = publisher.notify("pooled-jobs", &payload).await {
                panic!(
                    "publisher {i} of 100 failed: {error}\nPgBouncer log:\n{}",
                    pooler.log()
                );
            }
            publisher.close().await;
        }
        // One publisher, a hundred notifications in a row.
        let publisher = listen(rt, pooled_config("pooled-notify-many")).await;
        for i in 0..100 {
            let payload = format!("many {i}");
            if let Err(error) = publisher.notify("pooled-jobs", &payload).await {
                panic!("notification {i} of 100 failed: {error}");
            }
        }
        publisher.close().await;

        let expected = (0..100)
            .map(|i| format!("once {i}"))
            .chain((0..100).map(|i| format!("many {i}")));
        for want in expected {
            let got = next_notification(rt, &mut sub).await;
            assert_eq!(&*got.payload, want);
        }
        witness.close().await;
    });
}
