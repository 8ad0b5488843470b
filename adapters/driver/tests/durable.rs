//! Durable channels against a real server (issue 17): install, publish,
//! large payloads, retention, and exactly-once delivery while publishers
//! commit out of order, the listener's backend is killed again and again,
//! and one subscriber's live queue overflows.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use pgnotify_core::durable::{DurableEvent, DurableMessage, DurableSchema, Since};
use pgnotify_core::{OverflowPolicy, SubscribeOptions};
use pgnotify_driver::{DurableError, DurableSubscription, Runtime};
use pgnotify_testkit::server::TestServer;
use support::{config, listen, on_each_runtime, tokio_threads, within};

/// The next item, which must be a message.
async fn next_message(runtime: &Arc<dyn Runtime>, sub: &mut DurableSubscription) -> DurableMessage {
    let deadline = runtime.now() + support::WAIT;
    let mut alarm = pgnotify_driver::Alarm::default();
    let result = {
        let mut recv = std::pin::pin!(sub.recv());
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(r) = recv.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(r));
            }
            alarm.poll_at(&**runtime, deadline, cx).map(|()| None)
        })
        .await
    };
    match result {
        Some(Ok(DurableEvent::Message(m))) => m,
        Some(other) => panic!("expected a message, got {other:?}"),
        None => panic!(
            "waited {:?} for a message: {sub:?} {:?}",
            support::WAIT,
            sub.stats()
        ),
    }
}

#[test]
fn messages_round_trip_live_and_from_the_table_up_to_a_mebibyte() {
    let server = TestServer::new().expect("a server");
    let url = server.url();
    on_each_runtime(|rt| {
        let url = url.clone();
        async move {
            let listener = listen(&rt, config(&url, "durable-round-trip")).await;
            let durable = listener.durable();
            durable.install().await.expect("install");
            durable
                .install()
                .await
                .expect("install again changes nothing");
            let channel = format!("orders-{}", rand_suffix());
            let mut live = durable
                .subscribe(&channel, Since::Now)
                .await
                .expect("subscribe");
            let big = "x".repeat(1 << 20);
            let payloads = ["first".to_owned(), big, "it's \\ \u{1F600}".to_owned()];
            for payload in &payloads {
                // Through a Durable made anew each time (they share one pool) and through the
                // listener's shorthand for the default schema.
                if payload.len() > 100 {
                    listener
                        .durable()
                        .notify(&channel, payload)
                        .await
                        .expect("notify");
                } else {
                    listener
                        .notify_durable(&channel, payload)
                        .await
                        .expect("notify");
                }
            }
            for (index, payload) in payloads.iter().enumerate() {
                let message = next_message(&rt, &mut live).await;
                assert_eq!(message.position, index as u64 + 1);
                assert_eq!(&message.payload, payload, "position {}", message.position);
            }
            let stats = live.stats();
            // The first came with its NOTIFY; the long one was read from the table (and the
            // third with it, or from its NOTIFY, depending on timing).
            assert!(stats.live >= 1 && stats.fetched >= 1, "{stats:?}");
            assert_eq!(stats.live + stats.fetched, 3, "{stats:?}");
            // A late subscriber from the start reads them all from the table.
            let mut late = durable
                .subscribe(&channel, Since::After(0))
                .await
                .expect("subscribe");
            for (index, payload) in payloads.iter().enumerate() {
                let message = next_message(&rt, &mut late).await;
                assert_eq!(
                    (message.position, &message.payload),
                    (index as u64 + 1, payload)
                );
            }
            listener.close().await;
        }
    });
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8) % 1_000_000
}

#[test]
fn pruned_messages_arrive_as_an_expired_item_and_a_foreign_cursor_is_refused() {
    let server = TestServer::new().expect("a server");
    let tokio = tokio_threads();
    let rt: Arc<dyn Runtime> = Arc::new(pgnotify_tokio::TokioRuntime::from_handle(
        tokio.handle().clone(),
    ));
    tokio.block_on(async {
        let listener = listen(&rt, config(&server.url(), "durable-prune")).await;
        let durable = listener.durable();
        durable.install().await.expect("install");
        for i in 1..=10 {
            // A `Durable` made anew for each call still reuses the listener's one session.
            listener
                .durable()
                .notify("prune", &format!("m{i}"))
                .await
                .expect("notify");
        }
        let sessions = server
            .execute(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'durable-prune (durable)'",
            )
            .expect("sql");
        assert_eq!(sessions.trim(), "1", "one durable session for ten calls");
        assert_eq!(durable.prune(None, Some(3)).await.expect("prune"), 7);
        let mut sub = durable.subscribe("prune", Since::After(2)).await.expect("subscribe");
        let first = within(&rt, "the expired item", sub.recv()).await.expect("recv");
        assert_eq!(first, DurableEvent::Expired { missed: 5, through: 7 });
        assert_eq!(first.to_string(), "expired: 5 messages no longer available (through position 7)");
        for position in 8..=10 {
            assert_eq!(next_message(&rt, &mut sub).await.position, position);
        }
        // By age: everything is older than zero seconds.
        assert_eq!(durable.prune(Some(Duration::ZERO), None).await.expect("prune"), 3);

        let mut ahead = durable.subscribe("prune", Since::After(50)).await.expect("subscribe");
        let error = within(&rt, "the refusal", ahead.recv()).await.expect_err("a cursor ahead");
        assert!(error.to_string().contains("cursor 50 is past the channel's last position 10"), "{error}");

        // Another schema, not installed: a typed error that says what to do.
        let missing = listener.durable_in(DurableSchema::new("nowhere").expect("valid"));
        let error = missing.notify("x", "y").await.expect_err("not installed");
        assert!(matches!(error, DurableError::NotInstalled { .. }), "{error:?}");
        assert!(error.to_string().contains("pgnotify install"), "{error}");

        // A bound of its own: longer payloads are refused by the server.
        let small = listener.durable_in(
            DurableSchema::new("small").expect("valid").with_max_payload(1000),
        );
        small.install().await.expect("install");
        small.notify("s", &"y".repeat(1000)).await.expect("at the bound");
        let error = small.notify("s", &"y".repeat(1001)).await.expect_err("over the bound");
        assert!(error.to_string().contains("1001 bytes is over the limit of 1000"), "{error}");

        // A newer install is not downgraded.
        server
            .execute("CREATE OR REPLACE FUNCTION small.schema_version() RETURNS integer LANGUAGE sql AS 'SELECT 99'")
            .expect("sql");
        let error = small.check().await.expect_err("newer");
        assert!(matches!(error, DurableError::NewerSchema { version: 99, .. }), "{error:?}");
        assert!(small.install().await.is_err(), "install refuses to downgrade");
        listener.close().await;
    });
}

/// The test: 8 publishers commit out of order (random delays inside
/// their transactions) while the listener's backend is killed again and
/// again and one subscriber's live queue overflows. Every durable
/// subscriber receives every message exactly once, in position order.
#[test]
fn every_message_exactly_once_with_out_of_order_commits_killed_backends_and_an_overflow() {
    const PUBLISHERS: usize = 8;
    const TRANSACTIONS: usize = 25;
    let server = TestServer::new().expect("a server");
    let tokio = tokio_threads();
    let rt: Arc<dyn Runtime> = Arc::new(pgnotify_tokio::TokioRuntime::from_handle(
        tokio.handle().clone(),
    ));
    let listener = tokio.block_on(listen(&rt, config(&server.url(), "durable-chaos")));
    let durable = listener.durable();
    tokio.block_on(durable.install()).expect("install");
    let total = PUBLISHERS * TRANSACTIONS * 2;
    // Both read while the publishers run: one keeps up, the other takes 10 ms per message
    // behind a live queue of 4 that drops what does not fit.
    let subscribed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = [
        ("steady", None),
        ("overflowing", Some(Duration::from_millis(10))),
    ]
    .into_iter()
    .map(|(name, pause)| {
        let durable = durable.clone();
        let rt = rt.clone();
        let subscribed = subscribed.clone();
        tokio.spawn(async move {
            let mut sub = match pause {
                None => durable.subscribe("chaos", Since::Now).await,
                Some(_) => {
                    let tiny = SubscribeOptions::new()
                        .capacity(4)
                        .policy(OverflowPolicy::DropNewest);
                    durable.subscribe_with("chaos", Since::Now, tiny).await
                }
            }
            .expect("subscribe");
            subscribed.fetch_add(1, Ordering::SeqCst);
            let mut received = Vec::new();
            for _ in 0..total {
                received.push(next_message(&rt, &mut sub).await);
                if let Some(pause) = pause {
                    support::sleep(&rt, pause).await;
                }
            }
            (name, received, sub.stats())
        })
    })
    .collect();
    // Both have subscribed (Since::Now) before anything is published.
    tokio.block_on(support::eventually(&rt, "two durable subscribers", || {
        subscribed.load(Ordering::SeqCst) == 2
    }));
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let done = done.clone();
        let server = &server;
        move || {
            let mut kills = 0;
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(250));
                kills += server
                    .terminate_backends("durable-chaos")
                    .expect("terminate");
            }
            kills
        }
    };
    let (published, kills) = thread::scope(|scope| {
        let killer = scope.spawn(killer);
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let server = &server;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for t in 0..TRANSACTIONS {
                        // Two messages per transaction, a delay between them and before the
                        // commit: transactions that started later often commit first.
                        let (a, b) = (format!("p{p}-t{t}-a"), format!("p{p}-t{t}-b"));
                        let delay = (p * 7 + t * 13) % 40;
                        server
                            .execute(&format!(
                                "BEGIN; SELECT pgnotify.publish('chaos', '{a}'); \
                                 SELECT pg_sleep({delay} / 1000.0); \
                                 SELECT pgnotify.publish('chaos', '{b}'); \
                                 SELECT pg_sleep({} / 1000.0); COMMIT;",
                                40 - delay
                            ))
                            .expect("publish");
                        mine.extend([a, b]);
                    }
                    mine
                })
            })
            .collect();
        let published: BTreeSet<String> = publishers
            .into_iter()
            .flat_map(|p| p.join().expect("publisher"))
            .collect();
        done.store(true, Ordering::Relaxed);
        (published, killer.join().expect("killer"))
    });
    assert_eq!(published.len(), total);
    assert!(
        kills >= 2,
        "the listener's backend was killed {kills} times"
    );

    for reader in readers {
        let (name, received, stats) = tokio.block_on(reader).expect("reader");
        eprintln!("{name}: {stats:?}");
        let positions: Vec<u64> = received.iter().map(|m| m.position).collect();
        let expected: Vec<u64> = (1..=total as u64).collect();
        assert_eq!(positions, expected, "{name}: in order, no gap, no repeat");
        let payloads: BTreeSet<String> = received.into_iter().map(|m| m.payload).collect();
        assert_eq!(payloads, published, "{name}: every message, each once");
        assert!(
            stats.gaps >= 2,
            "{name}: the live stream had gaps: {stats:?}"
        );
        if name == "overflowing" {
            assert!(
                stats.pages >= 3,
                "the overflows were read from the table: {stats:?}"
            );
        }
    }
    let stats = listener.stats();
    assert!(stats.generation >= 2, "reconnected: {stats:?}");
    eprintln!("{total} messages, listener backend killed {kills} times");
    tokio.block_on(listener.close());
}

/// `Durable::notify` calls made at once share transactions (group commit);
/// one the server refuses fails alone, the others commit, each once.
#[test]
fn concurrent_notifies_share_transactions_and_a_refused_one_fails_alone() {
    let server = TestServer::new().expect("a server");
    let tokio = tokio_threads();
    let rt: Arc<dyn Runtime> = Arc::new(pgnotify_tokio::TokioRuntime::from_handle(
        tokio.handle().clone(),
    ));
    tokio.block_on(async {
        let listener = listen(&rt, config(&server.url(), "durable-group")).await;
        let durable = listener.durable_in(
            DurableSchema::new("grouped")
                .expect("valid")
                .with_max_payload(100),
        );
        durable.install().await.expect("install");
        let mut sub = durable.subscribe("g", Since::Now).await.expect("subscribe");
        // 100 calls at once: a handful of transactions carry them.
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let durable = durable.clone();
                async move { durable.notify("g", &format!("a{i}")).await }
            })
            .collect();
        for result in support::join_all(calls).await {
            result.expect("committed");
        }
        let transactions: usize = server
            .execute("SELECT count(DISTINCT xmin::text) FROM grouped.messages")
            .expect("sql")
            .trim()
            .parse()
            .expect("a count");
        assert!(
            transactions <= 20,
            "100 calls took {transactions} transactions"
        );
        eprintln!("100 concurrent calls in {transactions} transactions");
        // 200 more, one of them over the bound: it fails alone.
        let calls: Vec<_> = (0..200)
            .map(|i| {
                let durable = durable.clone();
                let payload = if i == 77 {
                    "z".repeat(101)
                } else {
                    format!("b{i}")
                };
                async move { durable.notify("g", &payload).await }
            })
            .collect();
        let results = support::join_all(calls).await;
        for (i, result) in results.iter().enumerate() {
            if i == 77 {
                let error = result.as_ref().expect_err("over the bound");
                assert!(
                    error.to_string().contains("over the limit of 100"),
                    "{error}"
                );
            } else {
                result.as_ref().expect("committed");
            }
        }
        let mut payloads = BTreeSet::new();
        for position in 1..=299 {
            let message = next_message(&rt, &mut sub).await;
            assert_eq!(message.position, position);
            assert!(payloads.insert(message.payload));
        }
        assert_eq!(payloads.len(), 299);
        assert!(!payloads.contains(&"z".repeat(101)));
        listener.close().await;
    });
}

/// The README's grants are enough: a role that may only publish, and one
/// that may only read, use durable channels installed by another role.
/// And a `REPEATABLE READ` publisher whose snapshot predates a racing
/// commit on the same channel fails with 40001, losing and reordering
/// nothing.
#[test]
fn least_privilege_roles_work_and_a_stale_snapshot_is_a_serialization_failure() {
    let server = TestServer::builder()
        .user("publisher", "pub-secret")
        .user("reader", "read-secret")
        .start()
        .expect("a server");
    let tokio = tokio_threads();
    let rt: Arc<dyn Runtime> = Arc::new(pgnotify_tokio::TokioRuntime::from_handle(
        tokio.handle().clone(),
    ));
    let owner = tokio.block_on(listen(
        &rt,
        config(&server.url_as("postgres"), "durable-owner"),
    ));
    tokio.block_on(owner.durable().install()).expect("install");
    server
        .execute(
            "GRANT USAGE ON SCHEMA pgnotify TO publisher, reader; \
             GRANT SELECT, INSERT, UPDATE ON pgnotify.messages TO publisher; \
             GRANT SELECT, INSERT ON pgnotify.channels TO publisher; \
             GRANT USAGE ON SEQUENCE pgnotify.tickets TO publisher; \
             GRANT SELECT ON pgnotify.messages, pgnotify.channels TO reader;",
        )
        .expect("grants");
    tokio.block_on(async {
        let publisher = listen(&rt, config(&server.url_as("publisher"), "durable-pub")).await;
        let reader = listen(&rt, config(&server.url_as("reader"), "durable-read")).await;
        let mut sub = reader
            .durable()
            .subscribe("perm", Since::After(0))
            .await
            .expect("the reader subscribes");
        publisher
            .notify_durable("perm", "one")
            .await
            .expect("the publisher publishes");
        assert_eq!(next_message(&rt, &mut sub).await.payload, "one");
        let error = reader
            .notify_durable("perm", "not mine")
            .await
            .expect_err("the reader may not publish");
        assert!(error.to_string().contains("permission denied"), "{error}");
        publisher.close().await;
        reader.close().await;
    });

    // A REPEATABLE READ transaction takes its snapshot, then sleeps; meanwhile another commit
    // on the same channel takes the next position. The sleeper's commit must fail (40001).
    let stale = thread::scope(|scope| {
        let sleeper = scope.spawn(|| {
            server.execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; \
                 SELECT count(*) FROM pgnotify.messages; \
                 SELECT pg_sleep(2), 'stale-snapshot-sleeping'; \
                 SELECT pgnotify.publish('perm', 'late'); \
                 COMMIT;",
            )
        });
        // Wait until the sleeper holds its snapshot (it is inside pg_sleep).
        tokio.block_on(support::eventually(&rt, "the sleeper's snapshot", || {
            server
                .execute(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE query LIKE '%stale-snapshot-sleeping%' AND pid <> pg_backend_pid()",
                )
                .is_ok_and(|n| n.trim() == "1")
        }));
        server
            .execute("SELECT pgnotify.publish('perm', 'racing')")
            .expect("the racing publish commits");
        sleeper.join().expect("sleeper")
    });
    let error = stale.expect_err("the stale snapshot's commit fails");
    let text = error.to_string();
    assert!(
        text.contains("a concurrent durable publish on channel perm committed first"),
        "{text}"
    );
    let rows = server
        .query("SELECT position, payload FROM pgnotify.messages WHERE channel = 'perm' ORDER BY 1")
        .expect("rows");
    assert_eq!(
        rows,
        [["1", "one"], ["2", "racing"]],
        "nothing lost, nothing reordered"
    );
    tokio.block_on(owner.close());
}
