//! The conformance suite: the listener's contract against a real
//! PostgreSQL, written once and run on tokio, smol and async-std.

mod support;

use std::sync::Arc;

use pgnotify_async_std::AsyncStdRuntime;
use pgnotify_core::config::HostSpec;
use pgnotify_core::{ChannelError, Config, PayloadError};
use pgnotify_driver::{
    BusError, CurrentRuntime, EndReason, Event, EventBatch, EventRef, Gap, ListenerError,
    NotifyError, OverflowPolicy, Runtime, SubscribeError, SubscribeOptions,
};
use pgnotify_smol::SmolRuntime;
use pgnotify_testkit::server::{AuthMethod, TestServer};
use pgnotify_tokio::TokioRuntime;
use support::{
    Listener, config, eventually, join_all, listen, next, next_notification, on_each_runtime,
    within,
};

#[test]
fn a_notify_sent_right_after_subscribe_returns_is_always_delivered() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "race-listener")).await;
        let publisher = listen(rt, config(&server.url(), "race-publisher")).await;
        for i in 0..1000 {
            let channel = format!("race {i}");
            let mut sub = within(rt, "subscribe", listener.subscribe(&channel))
                .await
                .expect("subscribe");
            let payload = i.to_string();
            within(rt, "notify", publisher.notify(&channel, &payload))
                .await
                .expect("notify");
            let n = next_notification(rt, &mut sub).await;
            assert_eq!(
                (&*n.channel, &*n.payload),
                (channel.as_str(), payload.as_str()),
                "iteration {i}"
            );
        }
        listener.close().await;
        publisher.close().await;
    });
}

#[test]
fn channel_names_are_taken_verbatim_up_to_63_bytes() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "names")).await;
        let longest = "é".repeat(31) + "x"; // 63 bytes
        assert_eq!(longest.len(), 63);
        let names = [
            "Jobs",
            "jobs",
            "JOBS",
            "with space",
            "with \"quotes\"",
            "it's",
            "back\\slash",
            "semi;colon -- and more",
            longest.as_str(),
        ];
        let mut subs = Vec::new();
        for name in names {
            subs.push(listener.subscribe(name).await.expect(name));
        }
        for name in names {
            listener.notify(name, name).await.expect(name);
        }
        for (name, sub) in names.iter().zip(&mut subs) {
            let n = next_notification(rt, sub).await;
            assert_eq!((&*n.channel, &*n.payload), (*name, *name));
        }
        // Each received exactly its own: a marker comes next on every channel.
        for name in names {
            listener.notify(name, "marker").await.expect(name);
        }
        for sub in &mut subs {
            assert_eq!(&*next_notification(rt, sub).await.payload, "marker");
        }

        let too_long = "x".repeat(64);
        assert!(matches!(
            listener.subscribe(&too_long).await,
            Err(SubscribeError::Channel(ChannelError::TooLong { .. }))
        ));
        assert!(matches!(
            listener.notify(&too_long, "p").await,
            Err(NotifyError::Channel(ChannelError::TooLong { .. }))
        ));
        assert!(matches!(
            listener.subscribe("").await,
            Err(SubscribeError::Channel(_))
        ));
        listener.close().await;
    });
}

#[test]
fn payloads_up_to_7999_bytes_arrive_intact_and_8000_are_refused() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "payloads")).await;
        let mut sub = listener.subscribe("payloads").await.expect("subscribe");
        let ascii = "x".repeat(7999);
        let multibyte = "é".repeat(3999) + "!"; // 7999 bytes
        let mixed = "héllo wörld ✓ 日本語 😀 \\ ' \" \n\t";
        for payload in [ascii.as_str(), multibyte.as_str(), mixed, ""] {
            listener.notify("payloads", payload).await.expect("notify");
            let n = next_notification(rt, &mut sub).await;
            assert_eq!(&*n.payload, payload);
        }
        let refused = listener.notify("payloads", &"x".repeat(8000)).await;
        assert!(
            matches!(
                refused,
                Err(NotifyError::Payload(PayloadError::TooLong { .. }))
            ),
            "{refused:?}"
        );
        let nul = listener.notify("payloads", "a\0b").await;
        assert!(matches!(nul, Err(NotifyError::Payload(_))), "{nul:?}");
        listener.close().await;
    });
}

#[test]
fn one_notification_fans_out_to_a_thousand_subscribers_of_a_channel() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "fan-out")).await;
        let mut subs = Vec::new();
        for _ in 0..1000 {
            subs.push(listener.subscribe("fan").await.expect("subscribe"));
        }
        assert_eq!(listener.stats().channels, 1);
        for payload in ["one", "two", "three"] {
            listener.notify("fan", payload).await.expect("notify");
        }
        for (i, sub) in subs.iter_mut().enumerate() {
            for payload in ["one", "two", "three"] {
                let n = next_notification(rt, sub).await;
                assert_eq!(&*n.payload, payload, "subscriber {i}");
            }
        }
        listener.close().await;
    });
}

#[test]
fn subscribers_spread_over_a_thousand_channels_each_get_their_own() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "channels")).await;
        let publisher = listen(rt, config(&server.url(), "channels-publisher")).await;
        let mut subs = Vec::new();
        for i in 0..1000 {
            subs.push(
                listener
                    .subscribe(&format!("ch{i}"))
                    .await
                    .expect("subscribe"),
            );
        }
        assert_eq!(listener.stats().channels, 1000);
        for i in 0..1000 {
            let channel = format!("ch{i}");
            publisher.notify(&channel, &channel).await.expect("notify");
        }
        for sub in &mut subs {
            let n = next_notification(rt, sub).await;
            assert_eq!(&*n.payload, sub.channel());
        }
        assert_eq!(listener.stats().notifications_received, 1000);
        listener.close().await;
        publisher.close().await;
    });
}

#[test]
fn unsubscribing_the_last_subscriber_unlistens() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        // The bus compares pg_listening_channels() with its registry after
        // every ping and counts any difference.
        let config = config(&server.url(), "unlisten")
            .to_builder()
            .listen_check_every(1)
            .build()
            .expect("valid");
        let listener = listen(rt, config).await;
        let first = listener.subscribe("leaving").await.expect("subscribe");
        let mut second = listener.subscribe("leaving").await.expect("subscribe");
        let mut witness = listener.subscribe("witness").await.expect("subscribe");
        drop(first);
        assert_eq!(
            listener.stats().channels,
            2,
            "one subscriber is left on the channel"
        );
        listener
            .notify("leaving", "still here")
            .await
            .expect("notify");
        assert_eq!(
            &*next_notification(rt, &mut second).await.payload,
            "still here"
        );

        drop(second);
        assert_eq!(listener.stats().channels, 1);
        // A NOTIFY on the channel now reaches nobody: the witness's own
        // notification, sent after it, arrives with nothing before it.
        let received = listener.stats().notifications_received;
        listener
            .notify("leaving", "to nobody")
            .await
            .expect("notify");
        listener.notify("witness", "after").await.expect("notify");
        assert_eq!(&*next_notification(rt, &mut witness).await.payload, "after");
        assert_eq!(listener.stats().notifications_received, received + 1);

        // Two pings later, the server's LISTEN set has been compared twice.
        let pings = listener.stats().pings_sent;
        eventually(rt, "two pings", || listener.stats().pings_sent >= pings + 2).await;
        let stats = listener.stats();
        assert_eq!(stats.listen_mismatches, 0, "{stats:?}");
        listener.close().await;
    });
}

/// Publishes `1..=count` on `channel` from the listener itself: its own
/// notification reaches it before the server's reply to the NOTIFY, so
/// each is queued by the time `notify` returns.
async fn publish_numbers(listener: &Listener, channel: &str, count: u32) {
    for i in 1..=count {
        listener
            .notify(channel, &i.to_string())
            .await
            .expect("notify");
    }
}

/// Subscribes to `channel` with room for 3 and `policy`, then publishes
/// `1..=10` on it: 7 more than fit.
async fn overflowed(
    listener: &Listener,
    channel: &str,
    policy: OverflowPolicy,
) -> pgnotify_driver::Subscription {
    let options = SubscribeOptions::new().capacity(3).policy(policy);
    let sub = listener
        .subscribe_with(channel, options)
        .await
        .expect("subscribe");
    publish_numbers(listener, channel, 10).await;
    sub
}

/// Everything readable now, as text (`"3"` for a notification, `"gap 7"`).
async fn read_all(
    rt: &Arc<dyn Runtime>,
    sub: &mut pgnotify_driver::Subscription,
    count: usize,
) -> Vec<String> {
    let mut items = Vec::new();
    for _ in 0..count {
        items.push(match next(rt, sub).await {
            Event::Notification(n) => n.payload.to_string(),
            Event::Gap(Gap::Overflow { missed }) => format!("gap {missed}"),
            other => format!("{other:?}"),
        });
    }
    items
}

#[test]
fn every_overflow_policy_reports_exactly_what_it_dropped() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "overflow")).await;
        let mut oldest = overflowed(&listener, "oldest", OverflowPolicy::DropOldest).await;
        assert_eq!(
            read_all(rt, &mut oldest, 4).await,
            ["gap 7", "8", "9", "10"]
        );

        let mut newest = overflowed(&listener, "newest", OverflowPolicy::DropNewest).await;
        assert_eq!(read_all(rt, &mut newest, 3).await, ["1", "2", "3"]);
        // The count of the dropped ones stands before the next accepted.
        listener.notify("newest", "11").await.expect("notify");
        assert_eq!(read_all(rt, &mut newest, 2).await, ["gap 7", "11"]);

        let mut latest = overflowed(&listener, "latest", OverflowPolicy::KeepLatest).await;
        assert_eq!(read_all(rt, &mut latest, 2).await, ["gap 9", "10"]);

        let mut close = overflowed(&listener, "close", OverflowPolicy::Close).await;
        assert_eq!(read_all(rt, &mut close, 3).await, ["1", "2", "3"]);
        assert_eq!(within(rt, "the end", close.recv()).await, None);
        assert_eq!(close.end_reason(), Some(EndReason::Overflowed));

        let stats = listener.stats();
        assert_eq!(
            (
                stats.dropped_oldest,
                stats.dropped_newest,
                stats.replaced_latest,
                stats.closed_by_overflow
            ),
            (7, 7, 9, 1),
            "{stats:?}"
        );
        listener.close().await;
    });
}

#[test]
fn recv_batch_hands_a_burst_over_in_order_with_its_gaps_then_ends() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "batch")).await;
        let mut sub = overflowed(&listener, "batch", OverflowPolicy::DropOldest).await;
        let mut batch = EventBatch::new();
        let mut items = Vec::new();
        while items.len() < 4 {
            let taken = within(rt, "a batch", sub.recv_batch(&mut batch)).await;
            assert_eq!(taken, batch.len());
            assert!(taken > 0, "ended early after {items:?}");
            items.extend(batch.iter().map(|item| match item {
                EventRef::Notification(n) => n.payload.to_string(),
                EventRef::Gap(Gap::Overflow { missed }) => format!("gap {missed}"),
                other => format!("{other:?}"),
            }));
            batch.clear();
        }
        assert_eq!(items, ["gap 7", "8", "9", "10"]);
        listener.close().await;
        assert_eq!(within(rt, "the end", sub.recv_batch(&mut batch)).await, 0);
        assert_eq!(sub.end_reason(), Some(EndReason::BusClosed));
    });
}

#[test]
fn backpressure_pauses_reading_and_loses_nothing() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "backpressure")).await;
        let publisher = listen(rt, config(&server.url(), "backpressure-publisher")).await;
        let mut sub = listener
            .subscribe_with(
                "slow",
                SubscribeOptions::new()
                    .capacity(3)
                    .policy(OverflowPolicy::Backpressure),
            )
            .await
            .expect("subscribe");
        for i in 1..=200 {
            publisher
                .notify("slow", &i.to_string())
                .await
                .expect("notify");
        }
        eventually(rt, "reading to pause", || listener.stats().reading_paused).await;
        for i in 1..=200 {
            let n = next_notification(rt, &mut sub).await;
            assert_eq!(&*n.payload, i.to_string());
        }
        let stats = listener.stats();
        assert!(!stats.reading_paused, "{stats:?}");
        assert!(stats.paused_for > std::time::Duration::ZERO, "{stats:?}");
        listener.close().await;
        publisher.close().await;
    });
}

/// A consumer that publishes from the loop that drains its own subscription
/// (take a job, say it is done) must not wait for itself: while a full
/// subscriber pauses reading, the answer to a publish on the listening
/// connection would wait behind the notifications nobody reads (for ever
/// with `Backpressure`), so publishes go on a short second session.
#[test]
fn a_publish_while_reading_is_paused_goes_on_a_second_session_and_returns() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "paused-publisher")).await;
        let witness = listen(rt, config(&server.url(), "paused-witness")).await;
        let mut results = witness.subscribe("results").await.expect("subscribe");
        let mut jobs = listener
            .subscribe_with(
                "jobs",
                SubscribeOptions::new()
                    .capacity(3)
                    .policy(OverflowPolicy::Backpressure),
            )
            .await
            .expect("subscribe");
        publish_numbers(&witness, "jobs", 50).await;
        eventually(rt, "reading to pause", || listener.stats().reading_paused).await;

        // Nothing of `jobs` is taken while these run.
        within(
            rt,
            "a notify while paused",
            listener.notify("results", "done 1"),
        )
        .await
        .expect("notify while paused");
        within(
            rt,
            "a notify_many while paused",
            listener.notify_many([("results", "done 2"), ("results", "done 3")]),
        )
        .await
        .expect("notify_many while paused");
        let refused = within(
            rt,
            "a refused notify while paused",
            listener.notify("results", &"x".repeat(9000)),
        )
        .await;
        assert!(refused.is_err(), "a payload of 9,000 bytes: {refused:?}");
        for want in ["done 1", "done 2", "done 3"] {
            assert_eq!(&*next_notification(rt, &mut results).await.payload, want);
        }
        let stats = listener.stats();
        assert!(stats.reading_paused, "still paused: {stats:?}");
        assert_eq!(stats.side_publish_transactions, 2, "{stats:?}");

        // Draining resumes reading; every job arrives, in order, and the
        // next publish goes on the listening connection again.
        for i in 1..=50 {
            assert_eq!(
                &*next_notification(rt, &mut jobs).await.payload,
                i.to_string()
            );
        }
        eventually(rt, "reading to resume", || !listener.stats().reading_paused).await;
        listener.notify("results", "done 4").await.expect("notify");
        assert_eq!(
            &*next_notification(rt, &mut results).await.payload,
            "done 4"
        );
        assert_eq!(listener.stats().side_publish_transactions, 2);
        listener.close().await;
        witness.close().await;
    });
}

#[test]
fn connects_over_the_unix_socket() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let config = Config::builder()
            .host(HostSpec::unix(server.unix_socket_dir(), server.port()))
            .user(server.user())
            .application_name("unix")
            .build()
            .expect("valid");
        let listener = listen(rt, support::fast(config)).await;
        let mut sub = listener.subscribe("over unix").await.expect("subscribe");
        listener.notify("over unix", "hello").await.expect("notify");
        assert_eq!(&*next_notification(rt, &mut sub).await.payload, "hello");
        let pid = listener.backend_pid().expect("a backend pid");
        let rows = server
            .query(&format!(
                "SELECT client_port FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .expect("query");
        // A unix-socket client has no port (NULL, read as empty; -1 for some versions).
        assert!(matches!(rows[0][0].as_str(), "" | "-1"), "{rows:?}");
        listener.close().await;
    });
}

#[test]
fn authenticates_with_every_method_and_fails_fast_on_a_wrong_password() {
    for method in [
        AuthMethod::Trust,
        AuthMethod::Password,
        AuthMethod::Md5,
        AuthMethod::ScramSha256,
    ] {
        let server = TestServer::builder()
            .auth(method)
            .user("alice", "s3cret pass")
            .start()
            .expect("a server");
        let server = &server;
        on_each_runtime(|rt| async move {
            let rt = &rt;
            let listener = listen(rt, config(&server.url(), "auth")).await;
            let mut sub = listener.subscribe("auth").await.expect("subscribe");
            listener
                .notify("auth", method.hba_keyword())
                .await
                .expect("notify");
            let n = next_notification(rt, &mut sub).await;
            assert_eq!(&*n.payload, method.hba_keyword());
            listener.close().await;

            if method != AuthMethod::Trust {
                let wrong = Config::parse(&server.url())
                    .expect("valid")
                    .to_builder()
                    .password("wrong")
                    .build()
                    .expect("valid");
                let result = within(
                    rt,
                    "the failed connect",
                    Listener::builder(wrong).runtime(rt.clone()).connect(),
                )
                .await;
                match result {
                    Err(ListenerError::Connect(BusError::Connection(e))) => {
                        assert!(e.to_string().contains("alice"), "{method:?}: {e}")
                    }
                    other => panic!("{method:?}: expected an authentication error, got {other:?}"),
                }
            }
        });
    }
}

/// Issue 15: a first connect to a port nothing listens on returns, with
/// the cause, after the default rounds of attempts (it used to wait
/// forever). With `retry_forever` it waits.
#[test]
fn a_first_connect_to_a_dead_port_fails_after_the_default_rounds() {
    on_each_runtime(|rt| async move {
        let port = {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
            socket.local_addr().expect("its address").port()
        };
        let config =
            Config::parse(&format!("postgres://app@127.0.0.1:{port}/app")).expect("a valid URL");
        let started = std::time::Instant::now();
        let result = within(
            &rt,
            "the first connect to give up",
            Listener::builder(config.clone())
                .runtime(rt.clone())
                .connect(),
        )
        .await;
        let took = started.elapsed();
        match result {
            Err(ListenerError::Unreachable {
                attempts,
                last_error,
            }) => {
                assert_eq!(attempts, pgnotify_driver::DEFAULT_FIRST_CONNECT_ROUNDS);
                let text = last_error.to_string();
                assert!(text.contains("refused"), "{text}");
                println!("dead port: gave up after {attempts} attempts in {took:?}: {text}");
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        let forever = Listener::builder(config)
            .runtime(rt.clone())
            .retry_forever()
            .connect();
        let waited = support::sleep(&rt, std::time::Duration::from_secs(1));
        let mut forever = std::pin::pin!(forever);
        let mut waited = std::pin::pin!(waited);
        let outcome = std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(result) = forever.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(result.map(drop)));
            }
            waited.as_mut().poll(cx).map(|()| None)
        })
        .await;
        assert!(outcome.is_none(), "retry_forever still waits: {outcome:?}");
    });
}

#[test]
fn a_missing_database_fails_fast() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let url = server.url().replace("/postgres", "/no_such_db");
        let result = within(
            &rt,
            "the failed connect",
            Listener::builder(Config::parse(&url).expect("valid"))
                .runtime(rt.clone())
                .connect(),
        )
        .await;
        let error = result.expect_err("no such database");
        assert!(error.to_string().contains("no_such_db"), "{error}");
    });
}

#[test]
fn notify_reports_one_result_per_call() {
    let server = TestServer::builder()
        .user("alice", "pw")
        .start()
        .expect("a server");
    server
        .execute("REVOKE EXECUTE ON FUNCTION pg_notify(text, text) FROM PUBLIC")
        .expect("revoke");
    let admin_url = &server.url_as(pgnotify_testkit::server::SUPERUSER);
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let admin = listen(rt, config(admin_url, "notify-admin")).await;
        let mut sub = admin.subscribe("results").await.expect("subscribe");
        // Many in flight at once, each answered.
        let payloads: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let calls = payloads
            .iter()
            .map(|p| admin.notify("results", p))
            .collect();
        let results = within(rt, "50 notifies", join_all(calls)).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        for i in 0..50 {
            assert_eq!(
                &*next_notification(rt, &mut sub).await.payload,
                i.to_string()
            );
        }

        let alice = listen(rt, config(&server.url(), "notify-alice")).await;
        let refused = alice.notify("results", "denied").await;
        match &refused {
            Err(NotifyError::Server(e)) => assert_eq!(e.code(), "42501", "{e}"),
            other => panic!("expected the server's refusal, got {other:?}"),
        }
        // The connection survives a refused notification.
        let mut own = alice.subscribe("alice").await.expect("subscribe");
        assert!(alice.notify("alice", "x").await.is_err());
        alice.close().await;
        assert_eq!(alice.notify("alice", "x").await, Err(NotifyError::Closed));
        assert_eq!(within(rt, "the end", own.recv()).await, None);
        assert_eq!(own.end_reason(), Some(EndReason::BusClosed));
        assert!(matches!(
            alice.subscribe("late").await,
            Err(SubscribeError::Closed)
        ));
        admin.close().await;
    });
}

/// Connects with `R`'s own `Listener::connect` (the runtime it is awaited
/// on) and sees one notification come back with `payload`.
async fn connect_on_current_runtime<R: CurrentRuntime>(url: &str, payload: &str) {
    let listener = pgnotify_driver::Listener::<R>::connect(url)
        .await
        .expect("connect");
    let mut sub = listener.subscribe("rt").await.expect("subscribe");
    listener.notify("rt", payload).await.expect("notify");
    assert_eq!(
        &*sub
            .recv()
            .await
            .expect("an item")
            .notification()
            .expect("n")
            .payload,
        payload
    );
    listener.close().await;
}

#[test]
fn each_runtime_crate_connects_on_the_current_runtime() {
    let server = TestServer::new().expect("a server");
    let url = server.url();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(connect_on_current_runtime::<TokioRuntime>(&url, "tokio"));
    smol::block_on(connect_on_current_runtime::<SmolRuntime>(&url, "smol"));
    async_std::task::block_on(connect_on_current_runtime::<AsyncStdRuntime>(
        &url,
        "async-std",
    ));
    let no_runtime = std::thread::spawn(move || {
        smol::block_on(pgnotify_tokio::Listener::connect(&server.url())).map(drop)
    })
    .join()
    .expect("no panic");
    assert!(
        matches!(no_runtime, Err(ListenerError::NoRuntime)),
        "{no_runtime:?}"
    );
}

/// Issue 18: 64 tasks publishing at once through one listener share
/// transactions (group commit), yet every call gets its own result and
/// every notification arrives, identical ones included (a group never
/// holds the same pair twice, so PostgreSQL folds nothing), in each task's
/// order.
#[test]
fn group_commit_shares_transactions_and_never_folds_identical_notifications() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "group-listener")).await;
        let publisher = listen(rt, config(&server.url(), "group-publisher")).await;
        let mut sub = listener
            .subscribe_with("grouped", SubscribeOptions::new().capacity(100_000))
            .await
            .expect("subscribe");
        let tasks: u32 = 64;
        let per_task: u32 = 20;
        let publisher = &publisher;
        let calls = (0..tasks).map(|task| async move {
            for i in 0..per_task {
                // Half the payloads are the same for every task.
                let payload = if i % 2 == 0 {
                    "same".to_owned()
                } else {
                    format!("{task}:{i}")
                };
                publisher.notify("grouped", &payload).await.expect("notify");
            }
        });
        within(rt, "every publish", join_all(calls.collect())).await;
        let stats = publisher.stats();
        let total = u64::from(tasks * per_task);
        assert_eq!(stats.published, total);
        assert!(
            stats.publish_transactions < total,
            "expected shared transactions: {stats:?}"
        );
        println!(
            "{} publishes in {} transactions",
            stats.published, stats.publish_transactions
        );
        let mut same = 0;
        let mut last_of_task = vec![None::<u32>; tasks as usize];
        for _ in 0..total {
            let n = next_notification(rt, &mut sub).await;
            if &*n.payload == "same" {
                same += 1;
                continue;
            }
            let (task, i) = n.payload.split_once(':').expect("task:i");
            let (task, i): (usize, u32) = (task.parse().unwrap(), i.parse().unwrap());
            assert!(last_of_task[task] < Some(i), "task {task} out of order");
            last_of_task[task] = Some(i);
        }
        assert_eq!(
            same,
            tasks * per_task / 2,
            "no identical notification folded"
        );
        listener.close().await;
        publisher.close().await;
    });
}

/// Issue 18: `notify_many` is one transaction, all or nothing; a batch
/// that repeats a pair is refused before anything is sent.
#[test]
fn notify_many_is_atomic_and_refuses_duplicates() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "many")).await;
        let mut sub = listener.subscribe("batch").await.expect("subscribe");
        let batch: Vec<(String, String)> = (0..500)
            .map(|i| ("batch".to_owned(), i.to_string()))
            .collect();
        within(rt, "notify_many", listener.notify_many(batch))
            .await
            .expect("notify_many");
        for i in 0..500 {
            assert_eq!(
                &*next_notification(rt, &mut sub).await.payload,
                i.to_string()
            );
        }
        assert_eq!(
            listener
                .notify_many([("batch", "a"), ("batch", "b"), ("batch", "a")])
                .await,
            Err(NotifyError::Duplicate { index: 2 })
        );
        listener.notify("batch", "after").await.expect("notify");
        assert_eq!(&*next_notification(rt, &mut sub).await.payload, "after");
        listener.close().await;
    });
}
