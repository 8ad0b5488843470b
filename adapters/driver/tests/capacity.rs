//! A subscriber's capacity bounds everything delivered to it and not yet
//! consumed: the listener's queue plus the subscription's batch, or the
//! item a callback handler is working on. Checked on a real PostgreSQL,
//! on every runtime, for each dropping policy and for callbacks.

mod support;

use std::sync::Arc;

use pgnotify_driver::{EndReason, Event, Gap, OverflowPolicy, Runtime, SubscribeOptions};
use pgnotify_testkit::server::TestServer;
use support::{Listener, config, eventually, listen, next, on_each_runtime, within};

/// Waits until the listener has taken `n` notifications off the socket
/// (and so queued them to its subscribers).
async fn received(rt: &Arc<dyn Runtime>, listener: &Listener, n: u64) {
    eventually(rt, &format!("{n} notifications received"), || {
        listener.stats().notifications_received >= n
    })
    .await;
}

/// `n3` for notification 3, `o2` for an overflow of 2, `end` for the end.
fn label(event: &Event) -> String {
    match event {
        Event::Notification(n) => format!("n{}", n.payload),
        Event::Gap(Gap::Overflow { missed }) => format!("o{missed}"),
        other => format!("{other:?}"),
    }
}

fn notifications(transcript: &[String]) -> usize {
    transcript.iter().filter(|t| t.starts_with('n')).count()
}

fn missed(transcript: &[String]) -> u64 {
    transcript
        .iter()
        .filter_map(|t| t.strip_prefix('o')?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_stalled_reader_holds_exactly_its_capacity_under_each_dropping_policy() {
    const CAPACITY: usize = 4;
    const SENT: u64 = 10;
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "capacity")).await;
        for policy in [
            OverflowPolicy::DropNewest,
            OverflowPolicy::DropOldest,
            OverflowPolicy::Close,
        ] {
            let channel = format!("capacity {policy}");
            let options = SubscribeOptions::new().capacity(CAPACITY).policy(policy);
            let mut sub = listener
                .subscribe_with(&channel, options)
                .await
                .expect("subscribe");
            // The reader takes one, then stalls while the rest arrives.
            server
                .execute(&format!("SELECT pg_notify('{channel}', '1')"))
                .expect("the first is sent");
            let first = label(&next(rt, &mut sub).await);
            let before = listener.stats().notifications_received;
            server
                .execute(&format!(
                    "SELECT pg_notify('{channel}', g::text) FROM generate_series(2, {SENT}) g"
                ))
                .expect("the burst is sent");
            received(rt, &listener, before + SENT - 1).await;
            let mut transcript = vec![first];
            loop {
                match within(rt, "the rest", sub.recv()).await {
                    Some(event) => transcript.push(label(&event)),
                    None => {
                        transcript.push("end".to_owned());
                        break;
                    }
                }
                if policy != OverflowPolicy::Close
                    && notifications(&transcript) as u64 + missed(&transcript) == SENT
                {
                    break;
                }
            }
            assert_eq!(
                notifications(&transcript),
                1 + CAPACITY,
                "{policy}: one read, then exactly the capacity: {transcript:?}"
            );
            if policy == OverflowPolicy::Close {
                assert_eq!(transcript.last().map(String::as_str), Some("end"));
                assert_eq!(sub.end_reason(), Some(EndReason::Overflowed));
            } else {
                assert_eq!(
                    missed(&transcript),
                    SENT - 1 - CAPACITY as u64,
                    "{policy}: the gap counts exactly the rest: {transcript:?}"
                );
            }
        }
        listener.close().await;
    });
}

#[test]
fn a_blocked_callback_holds_exactly_its_capacity_including_the_item_it_works_on() {
    const CAPACITY: usize = 2048;
    const SENT: u64 = 2050;
    let server = TestServer::new().expect("a server");
    let server = &server;
    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, config(&server.url(), "capacity-callback")).await;
        let (gate_tx, gate_rx) = smol::channel::bounded::<()>(1);
        let (tx, rx) = smol::channel::unbounded::<String>();
        let (started_tx, started_rx) = smol::channel::bounded::<()>(1);
        let handler = move |event: Event| {
            let (gate, tx, started) = (gate_rx.clone(), tx.clone(), started_tx.clone());
            async move {
                let text = label(&event);
                if text == "n1" {
                    // Blocked on its first item until the burst has arrived.
                    let _ = started.send(()).await;
                    let _ = gate.recv().await;
                }
                let _ = tx.send(text).await;
            }
        };
        let options = SubscribeOptions::new()
            .capacity(CAPACITY)
            .policy(OverflowPolicy::DropNewest);
        let sub = listener
            .subscribe_fn("callback burst", options, handler)
            .await
            .expect("subscribe_fn");
        server
            .execute("SELECT pg_notify('callback burst', '1')")
            .expect("the first is sent");
        within(rt, "the handler to start", started_rx.recv())
            .await
            .expect("the handler runs");
        let before = listener.stats().notifications_received;
        server
            .execute(&format!(
                "SELECT pg_notify('callback burst', g::text) FROM generate_series(2, {SENT}) g"
            ))
            .expect("the burst is sent");
        received(rt, &listener, before + SENT - 1).await;
        gate_tx.send(()).await.expect("the handler waits");
        let mut transcript = Vec::new();
        while notifications(&transcript) as u64 + missed(&transcript) < SENT {
            transcript.push(
                within(rt, "a handled item", rx.recv())
                    .await
                    .expect("alive"),
            );
        }
        assert_eq!(
            notifications(&transcript),
            CAPACITY,
            "the item in the handler counts: {:?}",
            &transcript[transcript.len().saturating_sub(4)..]
        );
        assert_eq!(missed(&transcript), SENT - CAPACITY as u64);
        sub.unsubscribe().await;
        listener.close().await;
    });
}
