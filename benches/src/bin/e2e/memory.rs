//! Figure 4: resident memory with many idle subscribers over many channels.
//!
//! Each implementation runs in a child process of its own (this binary,
//! `memory-child`), so one's freed memory cannot hide in the other's RSS.
//! The child reads `VmRSS` after connecting, after one subscriber on each of
//! `channels` channels, and after the rest of `subs` subscribers spread
//! evenly over them. The baseline is what a hand-written multiplexer keeps:
//! a tokio-postgres connection LISTENing on every channel, and a
//! `HashMap<String, tokio::sync::broadcast::Sender<String>>` with one
//! `Receiver` per subscriber, each channel with the same capacity as
//! pgnotify's default queue (1,024).
//!
//! Then (issue 13) one notification is published on every channel (from a
//! second connection, one transaction) and every subscriber consumes one
//! (`recv()`; the baseline's reader task forwards each payload as a
//! `String` and every receiver `try_recv`s one), and `VmRSS` is read again:
//! what a subscriber costs once it has been used.

use std::collections::HashMap;
use std::process::Command;

use futures_util::FutureExt;
use futures_util::future::join_all;
use pgnotify_testkit::server::TestServer;

use crate::exec::{Exec, Kind};
use crate::report::{rss_bytes, thousands};
use crate::{Args, listener_config, raw};

/// The broadcast capacity of the baseline: pgnotify's default queue capacity.
const BROADCAST_CAPACITY: usize = 1024;

/// How many subscribes (or LISTENs) are in flight at once while setting up.
const SETUP_BATCH: usize = 1000;

pub(crate) fn run(server: &TestServer, args: &Args) {
    let subs: usize = args.get("subs", 100_000);
    let channels: usize = args.get("channels", 10_000);
    println!(
        "\n## memory: {} subscribers over {} channels (VmRSS, one child process each)\n",
        thousands(subs as u64),
        thousands(channels as u64)
    );
    println!(
        "| implementation | RSS connected | RSS + {ch} channels (1 sub each) | RSS + {s} subscribers | \
         bytes per channel | bytes per idle subscriber | total / baseline | \
         RSS after one delivery each | bytes per subscriber after it | after / baseline |",
        ch = thousands(channels as u64),
        s = thousands(subs as u64)
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut used_totals = Vec::new();
    let mut totals = Vec::new();
    for which in ["broadcast", "pgnotify"] {
        let exe = std::env::current_exe().expect("this binary");
        let output = Command::new(exe)
            .args([
                "memory-child",
                "--which",
                which,
                "--conninfo",
                &server.conninfo(),
            ])
            .args([
                "--subs",
                &subs.to_string(),
                "--channels",
                &channels.to_string(),
            ])
            .output()
            .expect("run the memory child");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "memory child failed: {text}");
        let rss: Vec<u64> = text
            .split_whitespace()
            .map(|v| v.parse().expect("an RSS figure"))
            .collect();
        let [connected, with_channels, with_subs, used] = rss[..] else {
            panic!("expected four RSS figures, got {text:?}");
        };
        totals.push(with_subs);
        used_totals.push(used);
        let per_used_sub = used.saturating_sub(with_channels) as f64 / subs as f64;
        let per_channel = with_channels.saturating_sub(connected) as f64 / channels as f64;
        let per_sub =
            with_subs.saturating_sub(with_channels) as f64 / (subs - channels).max(1) as f64;
        let name = match which {
            "pgnotify" => "pgnotify on tokio".to_owned(),
            _ => format!("tokio-postgres + broadcast<String>({BROADCAST_CAPACITY})"),
        };
        println!(
            "| {name} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {per_channel:.0} | {per_sub:.0} | {:.2}x \
             | {:.1} MiB | {per_used_sub:.0} | {:.2}x |",
            mib(connected),
            mib(with_channels),
            mib(with_subs),
            with_subs as f64 / totals[0] as f64,
            mib(used),
            used as f64 / used_totals[0] as f64
        );
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The child: sets one implementation up and prints four RSS figures.
pub(crate) fn child(args: &Args) {
    let which: String = args.get("which", String::new());
    let conninfo: String = args.get("conninfo", String::new());
    let subs: usize = args.get("subs", 100_000);
    let channels: usize = args.get("channels", 10_000);
    let exec = Exec::new(Kind::Tokio);
    let names: Vec<String> = (0..channels).map(|i| format!("mem_{i}")).collect();
    let figures = exec.block_on(async {
        match which.as_str() {
            "pgnotify" => pgnotify(&conninfo, &names, subs).await,
            "broadcast" => broadcast(&conninfo, &names, subs).await,
            other => panic!("unknown implementation {other:?}"),
        }
    });
    println!(
        "{} {} {} {}",
        figures[0], figures[1], figures[2], figures[3]
    );
}

/// Publishes one notification on each of `names` from a connection of its
/// own, in one transaction; each payload is its channel's name.
async fn publish_one_each(conninfo: &str, names: &[String]) {
    let client = raw::connect_spawned(conninfo).await;
    let sql = format!(
        "SELECT count(pg_notify(name, name)) FROM unnest(ARRAY[{}]) AS name",
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(",")
    );
    client.batch_execute(&sql).await.expect("publish one each");
}

async fn pgnotify(conninfo: &str, names: &[String], subs: usize) -> [u64; 4] {
    let config = listener_config(conninfo, "bench-memory");
    let listener = pgnotify_tokio::Listener::connect_with(config)
        .await
        .expect("listener connects");
    let connected = rss_bytes();
    let mut subscriptions = Vec::with_capacity(subs);
    let mut subscribe = async |range: std::ops::Range<usize>| {
        for start in range.clone().step_by(SETUP_BATCH) {
            let end = (start + SETUP_BATCH).min(range.end);
            let batch = (start..end).map(|i| listener.subscribe(&names[i % names.len()]));
            for s in join_all(batch).await {
                subscriptions.push(s.expect("subscribe"));
            }
        }
    };
    subscribe(0..names.len()).await;
    let with_channels = rss_bytes();
    subscribe(names.len()..subs).await;
    let with_subs = rss_bytes();
    let stats = listener.stats();
    assert_eq!(stats.subscribers, subs, "every subscriber registered");
    assert_eq!(stats.channels, names.len(), "every channel LISTENed");
    publish_one_each(conninfo, names).await;
    // In batches, as the subscribes: a join of 100,000 futures at once would
    // measure the join's own task nodes, not the subscriptions.
    for chunk in subscriptions.chunks_mut(SETUP_BATCH) {
        let received = join_all(chunk.iter_mut().map(|s| s.recv())).await;
        for (s, event) in chunk.iter().zip(received) {
            match event {
                Some(pgnotify_core::Event::Notification(n)) => {
                    assert_eq!(&*n.payload, s.channel(), "the channel's own notification");
                }
                other => panic!("expected a notification, got {other:?}"),
            }
        }
        // Each subscriber then waits for its next notification, as a
        // consuming task's `loop { recv().await }` does: one poll that
        // finds nothing.
        for s in chunk.iter_mut() {
            assert!(s.recv().now_or_never().is_none(), "nothing more was sent");
        }
    }
    let used = rss_bytes();
    [connected, with_channels, with_subs, used]
}

async fn broadcast(conninfo: &str, names: &[String], subs: usize) -> [u64; 4] {
    // Not spawned: after the setup, the reader below forwards what it reads.
    let (client, mut connection) = raw::connect(conninfo).await;
    let mut senders: HashMap<String, tokio::sync::broadcast::Sender<String>> = HashMap::new();
    let connected = rss_bytes();
    let mut receivers = Vec::with_capacity(subs);
    for chunk in names.chunks(SETUP_BATCH) {
        let sql: String = chunk.iter().map(|n| format!("LISTEN {n};")).collect();
        raw::drive(&mut connection, client.batch_execute(&sql))
            .await
            .expect("LISTEN");
        for name in chunk {
            let (tx, rx) = tokio::sync::broadcast::channel(BROADCAST_CAPACITY);
            senders.insert(name.clone(), tx);
            receivers.push(rx);
        }
    }
    let with_channels = rss_bytes();
    for i in names.len()..subs {
        receivers.push(senders[&names[i % names.len()]].subscribe());
    }
    let with_subs = rss_bytes();
    publish_one_each(conninfo, names).await;
    let forwarded = raw::read_notifications(&mut connection, names.len() as u64, |payload| {
        // The payload is the channel's name.
        let _ = senders[payload].send(payload.to_owned());
        true
    })
    .await;
    assert_eq!(
        forwarded,
        names.len() as u64,
        "one notification per channel"
    );
    for (i, rx) in receivers.iter_mut().enumerate() {
        let got = rx.try_recv().expect("one notification each");
        assert_eq!(
            got,
            names[i % names.len()],
            "the channel's own notification"
        );
    }
    let used = rss_bytes();
    drop(client);
    [connected, with_channels, with_subs, used]
}
