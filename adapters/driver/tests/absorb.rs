//! The default policy, `Absorb`, against a real PostgreSQL: a burst far
//! larger than any queue reaches a default subscriber whole; a subscriber
//! that stalls is released after its stall limit and the others carry on;
//! the server guard releases a stuck subscriber before the server's queue
//! fills. Every transcript is checked for order and exact gaps.

mod support;

use std::sync::Arc;
use std::time::Duration;

use pgnotify_core::Config;
use pgnotify_driver::{Event, Gap, OverflowPolicy, Runtime, SubscribeOptions, Subscription};
use pgnotify_testkit::server::TestServer;
use support::{Listener, config, eventually, join_all, listen, tokio_threads, within};

/// What a subscriber read of a burst numbered `1..=total`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Account {
    delivered: u64,
    missed: u64,
}

/// Reads `sub` until every notification of a burst numbered `1..=total`
/// is delivered or counted in an overflow gap, checking that they come in
/// order and that each gap counts exactly the numbers it stands for.
async fn account(rt: &Arc<dyn Runtime>, sub: &mut Subscription, total: u64) -> Account {
    let mut account = Account::default();
    let mut expected = 1;
    let mut missed_here = 0;
    while account.delivered + account.missed < total {
        if account.delivered % 1000 == 999 {
            // A consumer that does work between items lets the others on
            // its thread run; one that never yields would look stalled.
            yield_once().await;
        }
        let event = within(rt, "the rest of the burst", sub.recv())
            .await
            .unwrap_or_else(|| panic!("the stream ended after {account:?} of {total}"));
        match event {
            Event::Notification(n) => {
                let i: u64 = n.payload.parse().expect("a numbered payload");
                assert_eq!(
                    i - expected,
                    missed_here,
                    "before notification {i}: {missed_here} counted missed, {} skipped",
                    i - expected
                );
                expected = i + 1;
                missed_here = 0;
                account.delivered += 1;
            }
            Event::Gap(Gap::Overflow { missed }) => {
                missed_here += missed;
                account.missed += missed;
            }
            other => panic!("unexpected {other:?} after {account:?}"),
        }
    }
    assert_eq!(
        account.delivered + account.missed,
        total,
        "more accounted for than sent"
    );
    account
}

/// Returns `Pending` once, so the executor runs other tasks.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// Sends `1..=n` on `channel` in one transaction, from a thread of its own
/// (what a bulk INSERT with a NOTIFY trigger does).
fn burst(server: &Arc<TestServer>, channel: &str, n: u64) -> std::thread::JoinHandle<()> {
    let server = server.clone();
    let sql = format!("SELECT pg_notify('{channel}', g::text) FROM generate_series(1, {n}) g");
    std::thread::spawn(move || {
        server.execute(&sql).expect("the burst is committed");
    })
}

fn tokio_runtime(rt: &tokio::runtime::Runtime) -> Arc<dyn Runtime> {
    Arc::new(pgnotify_tokio::TokioRuntime::from_handle(
        rt.handle().clone(),
    ))
}

#[test]
fn a_million_notification_burst_reaches_a_default_subscriber_whole() {
    const N: u64 = 1_000_000;
    let server = Arc::new(TestServer::new().expect("a server"));
    let tokio = tokio_threads();
    let rt = tokio_runtime(&tokio);
    tokio.block_on(async {
        let rt = &rt;
        // A debug build on a loaded machine takes seconds to read a million
        // notifications, and the pong waits behind them: this test is about
        // the burst, so the ping may take its time.
        let config = Config::parse(&server.url())
            .expect("a valid URL")
            .to_builder()
            .ping_timeout(Duration::from_secs(30))
            .build()
            .expect("valid");
        let listener = listen(rt, config).await;
        let mut sub = listener.subscribe("bulk").await.expect("subscribe");
        let sender = burst(&server, "bulk", N);
        let account = account(rt, &mut sub, N).await;
        assert_eq!(
            account,
            Account {
                delivered: N,
                missed: 0
            }
        );
        sender.join().expect("the sender thread");
        let stats = listener.stats();
        assert_eq!(stats.dropped_newest + stats.dropped_oldest, 0, "{stats:?}");
        listener.close().await;
    });
}

#[test]
fn a_stalled_default_subscriber_is_released_and_the_others_lose_nothing() {
    const N: u64 = 20_000;
    let server = Arc::new(TestServer::new().expect("a server"));
    let tokio = tokio_threads();
    let rt = tokio_runtime(&tokio);
    tokio.block_on(async {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "absorb-stall")).await;
        // The default stall limit (5 s): long enough that a loaded machine
        // never starves a reader that long.
        let options = SubscribeOptions::new();
        let mut stalled = listener
            .subscribe_with("jobs", options.clone())
            .await
            .expect("subscribe");
        let mut readers = Vec::new();
        for _ in 0..9 {
            readers.push(
                listener
                    .subscribe_with("jobs", options.clone())
                    .await
                    .expect("subscribe"),
            );
        }
        let sender = burst(&server, "jobs", N);
        let accounts = join_all(readers.iter_mut().map(|s| account(rt, s, N)).collect()).await;
        for (i, a) in accounts.iter().enumerate() {
            assert_eq!(
                *a,
                Account {
                    delivered: N,
                    missed: 0
                },
                "reader {i}"
            );
        }
        sender.join().expect("the sender thread");
        assert!(
            listener.stats().stalled_releases >= 1,
            "the stalled subscriber was never released: {:?}",
            listener.stats()
        );
        // It reads at last: what it missed is counted exactly.
        let late = account(rt, &mut stalled, N).await;
        assert!(
            late.missed > 0,
            "it held the connection throughout: {late:?}"
        );
        assert!(late.delivered >= 1024, "its queue was full: {late:?}");
        listener.close().await;
    });
}

#[test]
fn the_server_guard_releases_a_stuck_subscriber_before_the_server_queue_fills() {
    const N: u64 = 300_000;
    let server = Arc::new(TestServer::new().expect("a server"));
    let tokio = tokio_threads();
    let rt = tokio_runtime(&tokio);
    tokio.block_on(async {
        let rt = &rt;
        // A few pages of PostgreSQL's queue (one page is about a millionth
        // of it), and a stall limit the test never reaches.
        let config = config(&server.url(), "absorb-guard")
            .to_builder()
            .server_queue_limit(0.000_003)
            .build()
            .expect("valid");
        let listener: Listener = listen(rt, config).await;
        let options = SubscribeOptions::new().stall_limit(Duration::from_secs(3600));
        let mut stuck = listener
            .subscribe_with("feed", options)
            .await
            .expect("subscribe");
        let sender = burst(&server, "feed", N);
        eventually(rt, "the server guard to release the subscriber", || {
            listener.stats().guard_releases >= 1
        })
        .await;
        let stats = listener.stats();
        assert!(stats.guard_checks >= 1, "{stats:?}");
        assert!(
            stats.server_queue_usage_ppm.is_some_and(|ppm| ppm > 3),
            "the guard read the server's queue above its limit: {stats:?}"
        );
        sender.join().expect("the sender thread");
        let account = account(rt, &mut stuck, N).await;
        assert!(account.missed > 0, "{account:?}");
        listener.close().await;
    });
}

#[test]
fn explicit_policies_stay_available_and_absorb_is_the_default() {
    assert_eq!(OverflowPolicy::default(), OverflowPolicy::Absorb);
    assert_eq!(
        SubscribeOptions::new().overflow_policy(),
        OverflowPolicy::Absorb
    );
    assert_eq!(
        Config::parse("postgres://u@h/db")
            .expect("valid")
            .default_subscribe_options()
            .overflow_policy(),
        OverflowPolicy::Absorb
    );
}
