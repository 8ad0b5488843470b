//! Issue 13: a stalled subscriber among readers, with default options. Ten
//! subscribers on one channel, one of which never reads until the end; one
//! transaction of `n` notifications. Reported for the nine readers: what
//! they got and lost, and the longest pause between two deliveries (the
//! time the stalled one held the connection before its stall limit
//! released it). Then the stalled one reads: what it got and what its gaps
//! counted, which must add up to `n`.

use std::time::{Duration, Instant};

use pgnotify_core::{DEFAULT_STALL_LIMIT, Event, Gap};
use pgnotify_driver::{CurrentRuntime, Listener, Subscription};
use pgnotify_testkit::server::TestServer;

use crate::exec::Exec;
use crate::report::{ms, thousands};
use crate::{Args, listener_config, on_runtime};

const CHANNEL: &str = "stall";

/// What one subscriber read.
#[derive(Debug, Default, Clone, Copy)]
struct Read {
    got: u64,
    missed: u64,
    /// The longest time between two consecutive items.
    longest_pause: Duration,
}

pub(crate) fn run(server: &TestServer, args: &Args) {
    let n: u64 = args.get("n", 200_000);
    let readers: usize = args.get("readers", 9);
    let exec = Exec::new(crate::exec::Kind::Tokio);
    println!(
        "\n## stall: {readers} readers and one stalled subscriber, default options (stall \
         limit {:?}), one transaction of {} notifications\n",
        DEFAULT_STALL_LIMIT,
        thousands(n)
    );
    let (reads, stalled, stats) = on_runtime!(exec.kind(), trial(&exec, server, n, readers));
    println!("| who | got | missed (per gaps) | got + missed | longest pause between items (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for (i, r) in reads.iter().enumerate() {
        println!(
            "| reader {} | {} | {} | {} | {:.0} |",
            i + 1,
            thousands(r.got),
            thousands(r.missed),
            thousands(r.got + r.missed),
            ms(r.longest_pause)
        );
    }
    println!(
        "| stalled (read at the end) | {} | {} | {} | — |",
        thousands(stalled.got),
        thousands(stalled.missed),
        thousands(stalled.got + stalled.missed)
    );
    println!(
        "\nlistener: stalled_releases {}, paused_for {:.0} ms, dropped_newest {}",
        stats.stalled_releases,
        ms(stats.paused_for),
        thousands(stats.dropped_newest)
    );
}

fn trial<R: CurrentRuntime>(
    exec: &Exec,
    server: &TestServer,
    n: u64,
    readers: usize,
) -> (Vec<Read>, Read, pgnotify_core::bus::Stats) {
    let config = listener_config(&server.conninfo(), "bench-stall");
    let (listener, mut stalled, tasks) = exec.block_on(async {
        let listener = Listener::<R>::connect_with(config)
            .await
            .expect("listener connects");
        let stalled = listener.subscribe(CHANNEL).await.expect("subscribe");
        let mut tasks = Vec::new();
        for _ in 0..readers {
            let sub = listener.subscribe(CHANNEL).await.expect("subscribe");
            tasks.push(exec.spawn(read(sub, n)));
        }
        (listener, stalled, tasks)
    });
    let sql = format!("SELECT pg_notify('{CHANNEL}', g::text) FROM generate_series(1, {n}) g");
    server.execute(&sql).expect("publish the burst");
    exec.block_on(async {
        let mut reads = Vec::new();
        for task in tasks {
            reads.push(task.await);
        }
        let stalled = read(&mut stalled, n).await;
        let stats = listener.stats();
        listener.close().await;
        (reads, stalled, stats)
    })
}

/// Reads until `n` notifications are delivered or accounted for by gaps.
async fn read(mut sub: impl std::borrow::BorrowMut<Subscription>, n: u64) -> Read {
    let sub = sub.borrow_mut();
    let mut r = Read::default();
    let mut last = Instant::now();
    while r.got + r.missed < n {
        let Some(event) = sub.recv().await else {
            break;
        };
        let now = Instant::now();
        if r.got > 0 {
            r.longest_pause = r.longest_pause.max(now - last);
        }
        last = now;
        match event {
            Event::Notification(_) => r.got += 1,
            Event::Gap(Gap::Overflow { missed }) => r.missed += missed,
            _ => {}
        }
    }
    r
}
