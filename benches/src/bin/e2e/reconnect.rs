//! Figure 5: reconnect. A listener on tokio with one subscriber on each of
//! `channels` channels has its backend killed with `pg_terminate_backend`
//! (sent from an already-open admin connection, so no process start is
//! timed); the clock runs from just before that query is sent until
//! `connection_events()` yields `Connected { generation: 2 }`, which the
//! listener reports once every channel is LISTENed on the new connection.
//! Each trial uses a fresh listener, so every reconnect is a first,
//! immediate attempt.
//!
//! The baseline is the least a hand-written client does after a loss:
//! open a new tokio-postgres connection and send `LISTEN` for every channel
//! in one simple-query batch (no detection, no subscriber bookkeeping).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use pgnotify_core::{Event, Gap};
use pgnotify_testkit::server::TestServer;
use pgnotify_tokio::ConnectionEvent;

use crate::exec::{Exec, Kind};
use crate::report::{median, ms, thousands};
use crate::{Args, listener_config, raw};

/// How many subscribes are in flight at once while setting up.
const SETUP_BATCH: usize = 1000;

pub(crate) fn run(server: &TestServer, args: &Args) {
    let channels: usize = args.get("channels", 10_000);
    let trials: usize = args.get("trials", 5);
    let exec = Exec::new(Kind::Tokio);
    let names: Vec<String> = (0..channels).map(|i| format!("re_{i}")).collect();
    println!(
        "\n## reconnect: {} channels, {trials} trials\n",
        thousands(channels as u64)
    );
    let mut from_kill = Vec::new();
    let mut from_return = Vec::new();
    let mut baseline = Vec::new();
    for trial in 1..=trials {
        let (kill, returned) = exec.block_on(pgnotify_trial(server, &names, trial));
        let raw = exec.block_on(raw_trial(server, &names));
        eprintln!(
            "trial {trial}: pgnotify {kill:?} ({returned:?} after the kill returned), baseline {raw:?}"
        );
        from_kill.push(ms(kill));
        from_return.push(ms(returned));
        baseline.push(ms(raw));
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| measurement | times (ms) | median (ms) | / baseline |");
    println!("|---|---|---:|---:|");
    let base = median(&baseline);
    println!(
        "| pgnotify on tokio: pg_terminate_backend sent → Connected{{generation: 2}} | {} | {:.1} | {:.2}x |",
        list(&from_kill),
        median(&from_kill),
        median(&from_kill) / base
    );
    println!(
        "| pgnotify on tokio: pg_terminate_backend returned → Connected{{generation: 2}} | {} | {:.1} | {:.2}x |",
        list(&from_return),
        median(&from_return),
        median(&from_return) / base
    );
    println!(
        "| baseline: tokio-postgres connect + one batch of {} LISTENs | {} | {base:.1} | 1.00x |",
        thousands(channels as u64),
        list(&baseline)
    );
}

/// One kill and reconnect; returns the time from sending the kill and from
/// its return.
async fn pgnotify_trial(
    server: &TestServer,
    names: &[String],
    trial: usize,
) -> (Duration, Duration) {
    let application_name = format!("bench-reconnect-{trial}");
    let config = listener_config(&server.conninfo(), &application_name);
    let listener = pgnotify_tokio::Listener::connect_with(config)
        .await
        .expect("listener connects");
    let mut subscriptions = Vec::with_capacity(names.len());
    for chunk in names.chunks(SETUP_BATCH) {
        for s in join_all(chunk.iter().map(|n| listener.subscribe(n))).await {
            subscriptions.push(s.expect("subscribe"));
        }
    }
    let admin = raw::connect_spawned(&server.conninfo()).await;
    let mut events = listener.connection_events();
    let start = Instant::now();
    let killed: i64 = admin
        .query_one(
            // MATERIALIZED: filter first, so only the victim is signalled.
            "WITH victims AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()) \
             SELECT count(*) FROM victims WHERE pg_terminate_backend(pid)",
            &[&application_name],
        )
        .await
        .expect("terminate")
        .get(0);
    let returned = Instant::now();
    assert_eq!(killed, 1, "one backend terminated");
    loop {
        match events.recv().await.expect("the listener is open") {
            ConnectionEvent::Connected { generation } => {
                assert_eq!(generation, 2, "the second connection");
                break;
            }
            _ => continue,
        }
    }
    let done = Instant::now();
    let stats = listener.stats();
    assert!(
        stats.connected && stats.channels == names.len(),
        "every channel LISTENed: {stats:?}"
    );
    // Check the last channel really is LISTENed again: after the gap, a new
    // notification arrives.
    let last = subscriptions.last_mut().expect("a subscription");
    admin
        .batch_execute(&format!("NOTIFY {}, 'after'", last.channel()))
        .await
        .expect("notify");
    assert_eq!(
        last.recv().await,
        Some(Event::Gap(Gap::Reconnected { generation: 2 })),
        "the outage is reported in-band"
    );
    let after = last
        .recv()
        .await
        .expect("the notification after the reconnect");
    assert_eq!(
        &*after.notification().expect("a notification").payload,
        "after"
    );
    listener.close().await;
    (done - start, done - returned)
}

/// The baseline: a new tokio-postgres connection and one batch of LISTENs.
async fn raw_trial(server: &TestServer, names: &[String]) -> Duration {
    let sql: String = names.iter().map(|n| format!("LISTEN {n};")).collect();
    let start = Instant::now();
    let client = raw::connect_spawned(&server.conninfo()).await;
    client.batch_execute(&sql).await.expect("LISTEN");
    let elapsed = start.elapsed();
    drop(client);
    elapsed
}
