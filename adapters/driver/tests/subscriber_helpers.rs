//! Callback subscriptions, filters, the recovery tracker and the near-limit
//! counters against a real PostgreSQL, written once and run on tokio, smol
//! and async-std.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use pgnotify_driver::{
    EndReason, Event, Gap, NEAR_LIMIT_PAYLOAD_LEN, OverflowPolicy, RecoveryTracker,
    SubscribeOptions, Subscription,
};
use pgnotify_testkit::server::TestServer;
use support::{Listener, config, listen, next, next_notification, on_each_runtime, within};

/// Gives other tasks a turn once, on any runtime.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn yield_now() -> YieldNow {
    YieldNow(false)
}

fn payload(event: &Event) -> String {
    match event {
        Event::Notification(n) => n.payload.to_string(),
        Event::Gap(Gap::Overflow { missed }) => format!("<overflow {missed}>"),
        other => format!("{other:?}"),
    }
}

/// Reads `count` items from `sub` and returns their payloads (gaps spelled out).
async fn take(
    rt: &Arc<dyn pgnotify_driver::Runtime>,
    sub: &mut Subscription,
    count: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(payload(&next(rt, sub).await));
    }
    out
}

#[test]
fn callbacks_handle_a_burst_in_order_one_at_a_time() {
    const BURST: usize = 2000;
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "callback-burst")).await;
        let (tx, rx) = smol::channel::unbounded::<String>();
        let running = Arc::new(AtomicBool::new(false));
        let overlaps = Arc::new(AtomicU64::new(0));
        let options = SubscribeOptions::new().capacity(2 * BURST);
        let handler = {
            let (running, overlaps) = (running.clone(), overlaps.clone());
            move |event: Event| {
                let (tx, running, overlaps) = (tx.clone(), running.clone(), overlaps.clone());
                async move {
                    if running.swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    yield_now().await;
                    running.store(false, Ordering::SeqCst);
                    tx.send(payload(&event))
                        .await
                        .expect("the test is listening");
                }
            }
        };
        let sub = within(
            rt,
            "subscribe_fn",
            listener.subscribe_fn("burst", options, handler),
        )
        .await
        .expect("subscribe_fn");
        server
            .execute(&format!(
                "SELECT pg_notify('burst', g::text) FROM generate_series(1, {BURST}) g"
            ))
            .expect("the burst is sent");
        for i in 1..=BURST {
            let got = within(rt, "a handled item", rx.recv())
                .await
                .expect("handler alive");
            assert_eq!(got, i.to_string(), "item {i} of the burst");
        }
        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "handler calls overlapped"
        );
        assert_eq!(sub.panics(), 0);
        sub.unsubscribe().await;
        listener.close().await;
    });
}

#[test]
fn a_panicking_handler_does_not_stop_the_next_item() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "callback-panic")).await;
        let (tx, rx) = smol::channel::unbounded::<String>();
        let handler = move |event: Event| {
            let text = payload(&event);
            // A panic while making the future, and one while polling it.
            assert_ne!(text, "sync boom", "the handler panics on purpose");
            let tx = tx.clone();
            async move {
                yield_now().await;
                assert_ne!(text, "async boom", "the handler panics on purpose");
                tx.send(text).await.expect("the test is listening");
            }
        };
        let sub = listener
            .subscribe_fn("panics", SubscribeOptions::new(), handler)
            .await
            .expect("subscribe_fn");
        for p in ["1", "sync boom", "2", "async boom", "3"] {
            listener.notify("panics", p).await.expect("notify");
        }
        for expected in ["1", "2", "3"] {
            let got = within(rt, "a handled item", rx.recv())
                .await
                .expect("handler alive");
            assert_eq!(got, expected);
        }
        assert_eq!(sub.panics(), 2);
        assert_eq!(listener.stats().handler_panics, 2);
        assert_eq!(sub.end_reason(), None, "the subscription still runs");
        sub.unsubscribe().await;
        listener.close().await;
    });
}

#[test]
fn after_unsubscribe_or_drop_the_handler_is_not_called_again() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "callback-stop")).await;
        let mut witness = listener.subscribe("stop").await.expect("subscribe");
        let (tx, rx) = smol::channel::unbounded::<String>();
        let handler = move |event: Event| {
            let tx = tx.clone();
            async move {
                tx.send(payload(&event)).await.ok();
            }
        };
        let unsubscribed = listener
            .subscribe_fn("stop", SubscribeOptions::new(), handler.clone())
            .await
            .expect("subscribe_fn");
        let dropped = listener
            .subscribe_fn("stop", SubscribeOptions::new(), handler)
            .await
            .expect("subscribe_fn");
        listener.notify("stop", "before").await.expect("notify");
        for _ in 0..2 {
            let got = within(rt, "a handled item", rx.recv()).await.expect("open");
            assert_eq!(got, "before");
        }
        unsubscribed.unsubscribe().await;
        drop(dropped);
        listener.notify("stop", "after").await.expect("notify");
        listener.notify("stop", "marker").await.expect("notify");
        assert_eq!(
            take(rt, &mut witness, 3).await,
            ["before", "after", "marker"]
        );
        assert!(
            rx.try_recv().is_err(),
            "a handler was called after its subscription was stopped"
        );
        listener.close().await;
    });
}

#[test]
fn a_callback_subscription_reports_why_its_stream_ended() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "callback-end")).await;
        let sub = listener
            .subscribe_fn("end", SubscribeOptions::new(), |_| std::future::ready(()))
            .await
            .expect("subscribe_fn");
        listener.close().await;
        support::eventually(rt, "the callback task to stop", || {
            sub.end_reason().is_some()
        })
        .await;
        assert_eq!(sub.end_reason(), Some(EndReason::BusClosed));
    });
}

#[test]
fn a_filter_keeps_and_drops_the_right_items_with_exact_overflow_counts() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "filter")).await;
        let mut witness = listener.subscribe("filtered").await.expect("subscribe");
        let options = SubscribeOptions::new()
            .capacity(3)
            .policy(OverflowPolicy::DropOldest)
            .filter(|n| {
                assert_ne!(&*n.payload, "boom", "the predicate panics on purpose");
                &*n.channel == "filtered" && n.payload.starts_with("keep")
            });
        let mut kept = listener
            .subscribe_with("filtered", options)
            .await
            .expect("subscribe");
        // One transaction: all ten arrive before the subscriber reads.
        let notifies: String = (0..5)
            .map(|i| format!("NOTIFY filtered, 'keep {i}'; NOTIFY filtered, 'drop {i}'; "))
            .collect();
        server
            .execute(&format!("BEGIN; {notifies} COMMIT;"))
            .expect("the notifications are sent");
        assert_eq!(take(rt, &mut witness, 10).await.len(), 10);
        // Five kept into a queue of three: exactly two lost, the dropped five never counted.
        assert_eq!(
            take(rt, &mut kept, 4).await,
            ["<overflow 2>", "keep 2", "keep 3", "keep 4"]
        );
        let stats = listener.stats();
        assert_eq!(stats.notifications_filtered, 5);
        assert_eq!(stats.dropped_oldest, 2);

        // A panicking predicate keeps the notification.
        server.execute("NOTIFY filtered, 'boom'").expect("notify");
        assert_eq!(payload(&next(rt, &mut kept).await), "boom");
        assert_eq!(listener.stats().filter_panics, 1);
        listener.close().await;
    });
}

#[test]
fn skip_own_drops_the_listeners_own_notifications_only() {
    let server = TestServer::new().expect("a server");
    let url = server.url();
    on_each_runtime(|rt| {
        let url = url.clone();
        async move { support::skip_own_drops_the_listeners_own_only(&rt, &url, "skip-own").await }
    });
}

#[test]
fn the_tracker_bounces_after_n_polls_found_work_without_a_notification() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "tracker")).await;
        let publisher = listen(rt, config(&server.url(), "tracker-publisher")).await;
        let mut witness = listener.subscribe("work").await.expect("subscribe");
        let mut tracker = RecoveryTracker::new(&listener, "work", 3)
            .await
            .expect("tracker");

        assert!(!tracker.polled(true));
        assert!(!tracker.polled(true));
        assert_eq!(tracker.stats().streak, 2);
        // A notification on the channel resets the streak. The witness has
        // it only after the fan-out that the tracker counts in has run.
        publisher.notify("work", "job").await.expect("notify");
        assert_eq!(&*next_notification(rt, &mut witness).await.payload, "job");
        assert!(!tracker.polled(true));
        assert_eq!(tracker.stats().streak, 1);
        assert!(!tracker.polled(true));
        // So does a poll that found nothing.
        assert!(!tracker.polled(false));
        assert_eq!(tracker.stats().streak, 0);
        assert!(!tracker.polled(true));
        assert!(!tracker.polled(true));
        assert_eq!(
            listener.stats().tracker_bounces,
            0,
            "bounced before N polls"
        );
        assert!(tracker.polled(true), "three polls found work unannounced");

        let stats = tracker.stats();
        assert_eq!((stats.streak, stats.bounces, stats.polls), (0, 1, 8));
        assert_eq!(stats.notifications, 1);
        assert_eq!(listener.stats().tracker_bounces, 1);
        // The bounce reconnected: the witness sees the outage.
        assert!(
            matches!(
                next(rt, &mut witness).await,
                Event::Gap(Gap::Reconnected { .. })
            ),
            "expected a reconnect gap after the bounce"
        );
        listener.close().await;
        publisher.close().await;
    });
}

#[test]
fn a_tracker_with_n_zero_never_bounces() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener: Listener = listen(rt, config(&server.url(), "tracker-off")).await;
        let mut tracker = RecoveryTracker::new(&listener, "work", 0)
            .await
            .expect("tracker");
        for _ in 0..20 {
            assert!(!tracker.polled(true));
        }
        assert_eq!(tracker.stats().streak, 20);
        assert_eq!(tracker.stats().bounces, 0);
        assert_eq!(listener.stats().tracker_bounces, 0);
        let default = listener.recovery_tracker("other").await.expect("tracker");
        assert_eq!(default.channel(), "other");
        listener.close().await;
    });
}

#[test]
fn near_limit_counters_move_only_for_large_payloads() {
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "near-limit")).await;
        let publisher = listen(rt, config(&server.url(), "near-limit-publisher")).await;
        let mut sub = listener.subscribe("big").await.expect("subscribe");
        let below = "x".repeat(NEAR_LIMIT_PAYLOAD_LEN - 1);
        let at = "y".repeat(NEAR_LIMIT_PAYLOAD_LEN);
        let most = "é".repeat(3999) + "!"; // 7999 bytes
        let payloads = ["small", below.as_str(), at.as_str(), most.as_str()];
        for p in payloads {
            publisher.notify("big", p).await.expect("notify");
        }
        for p in payloads {
            assert_eq!(next_notification(rt, &mut sub).await.payload.len(), p.len());
        }
        let (received, published) = (listener.stats(), publisher.stats());
        assert_eq!(received.near_limit_received, 2);
        assert_eq!(received.near_limit_published, 0);
        assert_eq!(published.near_limit_published, 2);
        assert_eq!(published.near_limit_received, 0);
        listener.close().await;
        publisher.close().await;
    });
}
