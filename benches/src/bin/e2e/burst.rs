//! Issue 13: a burst while subscribers listen. One transaction sends `n`
//! notifications (then an end marker) on one channel while 1 or 100
//! counting subscribers are already reading, each subscribed with the
//! **default** options (`Listener::subscribe`), as a user would. Reported:
//! what each subscriber got, the gaps it was told of, and the time from the
//! start of the publishing transaction to the last delivery. The peers in
//! the same run: sqlx's `PgListener` (1 subscriber) and the forge design
//! (`PgListener` -> `broadcast<String>` with room for the whole burst).
//!
//! The default policy may drop part of a burst; this figure reports what it
//! sees and asserts nothing about it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgnotify_core::{Event, Gap};
use pgnotify_driver::{CurrentRuntime, Listener, Subscription};
use pgnotify_testkit::server::TestServer;

use crate::exec::{Exec, Kind};
use crate::peers::{self, FORGE, SQLX};
use crate::report::{median, ms, thousands};
use crate::{Args, listener_config, on_runtime};

const CHANNEL: &str = "burst";

/// The payload of the last notification of the transaction.
const END: &str = "end";

/// How long no subscriber may receive anything before the figure stops
/// waiting for an end marker a lossy policy may have dropped.
const IDLE: Duration = Duration::from_secs(3);

/// One trial of one implementation.
#[derive(Clone, Copy, Debug)]
struct Trial {
    /// Fewest notifications any subscriber got (the end marker not counted).
    min_got: u64,
    /// Notifications delivered to all subscribers together.
    delivered: u64,
    /// Gap events seen, over all subscribers.
    gaps: u64,
    /// Notifications the gaps said were missing, over all subscribers.
    missed: u64,
    /// Publishing transaction, start to the return of its commit.
    publish: Duration,
    /// Start of the transaction to the last delivery.
    deliver: Duration,
}

pub(crate) fn run(server: &TestServer, args: &Args) {
    let ns: Vec<u64> = args.list("n", "10000,100000,1000000");
    let subs: Vec<usize> = args.list("subs", "1,100");
    let payload: usize = args.get("payload", 16);
    let trials: usize = args.get("trials", 1);
    let exec = Exec::new(Kind::Tokio);
    println!(
        "\n## burst: one transaction of N notifications ({payload} B) while the subscribers \
         read; pgnotify with default `subscribe()` options; {trials} trial(s), medians\n"
    );
    println!(
        "| N | implementation | subscribers | delivered per subscriber (min) | delivered / sent | \
         gap events | missed (per gaps) | publish (ms) | time to deliver (ms) | \
         after commit (ms) | time / peer (peer) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &ns {
        for &count in &subs {
            let peer = if count == 1 { SQLX } else { FORGE };
            let mut rows: Vec<(String, Vec<Trial>)> = vec![(peer.to_owned(), Vec::new())];
            rows.push(("pgnotify recv() on tokio".to_owned(), Vec::new()));
            for trial in 1..=trials {
                let t = if count == 1 {
                    sqlx_trial(&exec, server, n, payload)
                } else {
                    forge_trial(&exec, server, n, payload, count)
                };
                eprintln!("trial {trial} n={n} {peer} x{count}: {t:?}");
                rows[0].1.push(t);
                let t = on_runtime!(
                    exec.kind(),
                    pgnotify_trial(&exec, server, n, payload, count)
                );
                eprintln!("trial {trial} n={n} pgnotify x{count}: {t:?}");
                rows[1].1.push(t);
            }
            let peer_deliver = median_ms(&rows[0].1, |t| t.deliver);
            for (name, trials) in &rows {
                let med = |f: fn(&Trial) -> u64| {
                    median(&trials.iter().map(|t| f(t) as f64).collect::<Vec<_>>()) as u64
                };
                let deliver = median_ms(trials, |t| t.deliver);
                let delivered = med(|t| t.delivered);
                println!(
                    "| {} | {name} | {count} | {} | {:.3} | {} | {} | {:.0} | {deliver:.0} | \
                     {:.0} | {:.2}x ({peer}) |",
                    thousands(n),
                    thousands(med(|t| t.min_got)),
                    delivered as f64 / (n * count as u64) as f64,
                    thousands(med(|t| t.gaps)),
                    thousands(med(|t| t.missed)),
                    median_ms(trials, |t| t.publish),
                    median_ms(trials, |t| t.deliver.saturating_sub(t.publish)),
                    peer_deliver / deliver,
                );
            }
        }
    }
}

fn median_ms(trials: &[Trial], f: impl Fn(&Trial) -> Duration) -> f64 {
    median(&trials.iter().map(|t| ms(f(t))).collect::<Vec<_>>())
}

/// Publishes `n` distinct notifications of `payload` bytes and then [`END`],
/// all in one transaction (the `UNION ALL` evaluates its arms in order).
fn burst(server: &TestServer, n: u64, payload: usize) -> Duration {
    let start = Instant::now();
    let sql = format!(
        "SELECT count(*) FROM (SELECT pg_notify('{CHANNEL}', lpad(i::text, {payload}, '0')) \
         FROM generate_series(1, {n}) i UNION ALL SELECT pg_notify('{CHANNEL}', '{END}')) s"
    );
    let out = server.execute(&sql).expect("publish the burst");
    assert_eq!(out.trim(), (n + 1).to_string(), "the burst published");
    start.elapsed()
}

/// Progress of one subscriber, shared with the timing loop: notifications
/// so far, and when it saw the end marker (ns after the start, 0 = not yet).
#[derive(Default)]
struct Progress {
    got: AtomicU64,
    ended_ns: AtomicU64,
}

/// Waits until every subscriber saw the end marker, or until none received
/// anything for [`IDLE`]; returns the time of the last delivery after
/// `start` (to the 10 ms poll when an end marker never came).
async fn wait_for(exec: &Exec, progress: &[Arc<Progress>], start: Instant) -> Duration {
    let total = || {
        progress
            .iter()
            .map(|p| p.got.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let (mut last_total, mut last_change) = (total(), start.elapsed());
    loop {
        let ended: Vec<u64> = progress
            .iter()
            .map(|p| p.ended_ns.load(Ordering::Acquire))
            .collect();
        if ended.iter().all(|&e| e > 0) {
            return Duration::from_nanos(ended.into_iter().max().unwrap_or(0));
        }
        let now = total();
        if now != last_total {
            (last_total, last_change) = (now, start.elapsed());
        } else if start.elapsed() - last_change > IDLE {
            return last_change;
        }
        exec.sleep(Duration::from_millis(10)).await;
    }
}

fn pgnotify_trial<R: CurrentRuntime>(
    exec: &Exec,
    server: &TestServer,
    n: u64,
    payload: usize,
    subs: usize,
) -> Trial {
    let config = listener_config(&server.conninfo(), "bench-burst");
    let progress: Vec<Arc<Progress>> = (0..subs).map(|_| Arc::default()).collect();
    let start = Instant::now();
    let (listener, tasks) = exec.block_on(async {
        let listener = Listener::<R>::connect_with(config)
            .await
            .expect("listener connects");
        let mut subscriptions = Vec::with_capacity(subs);
        for _ in 0..subs {
            subscriptions.push(listener.subscribe(CHANNEL).await.expect("subscribe"));
        }
        let tasks: Vec<_> = subscriptions
            .into_iter()
            .zip(&progress)
            .map(|(s, p)| exec.spawn(count_events(s, p.clone(), start)))
            .collect();
        (listener, tasks)
    });
    // The subscriber tasks run on the runtime's worker threads while this
    // thread waits for the publishing transaction.
    let publish = burst(server, n, payload);
    exec.block_on(async {
        let deliver = wait_for(exec, &progress, start).await;
        listener.close().await;
        let mut trial = Trial {
            min_got: u64::MAX,
            delivered: 0,
            gaps: 0,
            missed: 0,
            publish,
            deliver,
        };
        for task in tasks {
            let (got, gaps, missed) = task.await;
            trial.min_got = trial.min_got.min(got);
            trial.delivered += got;
            trial.gaps += gaps;
            trial.missed += missed;
        }
        trial
    })
}

/// Counts a subscription's events until the end marker or the end of the
/// stream; returns (notifications, gap events, notifications the gaps say
/// are missing).
async fn count_events(
    mut subscription: Subscription,
    progress: Arc<Progress>,
    start: Instant,
) -> (u64, u64, u64) {
    let (mut got, mut gaps, mut missed) = (0, 0, 0);
    while let Some(event) = subscription.recv().await {
        match event {
            Event::Notification(n) if &*n.payload == END => {
                mark_end(&progress, start);
                break;
            }
            Event::Notification(_) => {
                got += 1;
                progress.got.store(got, Ordering::Relaxed);
            }
            Event::Gap(gap) => {
                gaps += 1;
                if let Gap::Overflow { missed: m } = gap {
                    missed += m;
                }
            }
            _ => gaps += 1,
        }
    }
    (got, gaps, missed)
}

fn mark_end(progress: &Progress, start: Instant) {
    let ns = start.elapsed().as_nanos().max(1) as u64;
    progress.ended_ns.store(ns, Ordering::Release);
}

fn sqlx_trial(exec: &Exec, server: &TestServer, n: u64, payload: usize) -> Trial {
    let url = server.url();
    let progress = Arc::new(Progress::default());
    let start = Instant::now();
    let mut listener = exec.block_on(peers::sqlx_listener(&url, CHANNEL));
    let reader = {
        let progress = progress.clone();
        exec.spawn(async move {
            let mut got = 0;
            loop {
                let notification = listener.recv().await.expect("sqlx recv");
                if notification.payload() == END {
                    mark_end(&progress, start);
                    return got;
                }
                got += 1;
                progress.got.store(got, Ordering::Relaxed);
            }
        })
    };
    let publish = burst(server, n, payload);
    exec.block_on(async {
        let deliver = wait_for(exec, std::slice::from_ref(&progress), start).await;
        let got = reader.await;
        Trial {
            min_got: got,
            delivered: got,
            gaps: 0,
            missed: 0,
            publish,
            deliver,
        }
    })
}

fn forge_trial(exec: &Exec, server: &TestServer, n: u64, payload: usize, subs: usize) -> Trial {
    let url = server.url();
    let progress: Vec<Arc<Progress>> = (0..subs).map(|_| Arc::default()).collect();
    let start = Instant::now();
    let (forwarder, tasks) = exec.block_on(async {
        let listener = peers::sqlx_listener(&url, CHANNEL).await;
        let (tx, receivers) = peers::forge_receivers(n as usize + 1, subs);
        let forwarder = exec.spawn(peers::forward(listener, tx, |p| p == END));
        let tasks: Vec<_> = receivers
            .into_iter()
            .zip(&progress)
            .map(|(rx, p)| {
                let p = p.clone();
                exec.spawn(async move {
                    let mut got = 0;
                    peers::count_broadcast(rx, |payload| {
                        if payload == END {
                            mark_end(&p, start);
                            return true;
                        }
                        got += 1;
                        p.got.store(got, Ordering::Relaxed);
                        false
                    })
                    .await
                })
            })
            .collect();
        (forwarder, tasks)
    });
    let publish = burst(server, n, payload);
    exec.block_on(async {
        let deliver = wait_for(exec, &progress, start).await;
        forwarder.await;
        let mut trial = Trial {
            min_got: u64::MAX,
            delivered: 0,
            gaps: 0,
            missed: 0,
            publish,
            deliver,
        };
        for task in tasks {
            let r = task.await;
            trial.min_got = trial.min_got.min(r.got);
            trial.delivered += r.got;
            trial.gaps += r.lags;
            trial.missed += r.missed;
        }
        trial
    })
}
