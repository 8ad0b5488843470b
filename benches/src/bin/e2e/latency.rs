//! Figure 3: NOTIFY-to-subscriber latency under a steady load.
//!
//! A publisher thread (its own tokio runtime and tokio-postgres connection)
//! sends `rate` notifications per second, paced by a 1 ms timer, each one a
//! pipelined `SELECT pg_notify($1, $2)` in its own transaction whose payload
//! is the send time (nanoseconds since a process-wide origin, taken just
//! before the query is issued). Every subscriber records now − send time for
//! each notification sent after the warm-up. The baseline is a raw
//! tokio-postgres `poll_message` reader under the same load; the peer a
//! user would pick (issue 13) is sqlx's `PgListener` with one subscriber.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pgnotify_core::Event;
use pgnotify_driver::{CurrentRuntime, Listener, Subscription};
use pgnotify_testkit::server::TestServer;

use crate::exec::{Exec, Kind};
use crate::peers::{self, SQLX};
use crate::report::{quantile, thousands};
use crate::{Args, listener_config, on_runtime, raw};

const CHANNEL: &str = "latency";

/// The payload that ends every reader.
const STOP: &str = "stop";

/// The clock every send and receive time is measured on.
fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The load: rate, and which send times are measured.
#[derive(Clone, Copy)]
struct Load {
    rate: u64,
    warmup: Duration,
    measure: Duration,
}

/// Latencies of one implementation, and what the publisher achieved.
struct Outcome {
    name: String,
    subscribers: usize,
    sent: u64,
    failed: u64,
    gaps: u64,
    latencies: Vec<u64>,
}

pub(crate) fn run(server: &TestServer, args: &Args) {
    let load = Load {
        rate: args.get("rate", 10_000),
        warmup: Duration::from_secs(args.get("warmup", 1)),
        measure: Duration::from_secs(args.get("secs", 10)),
    };
    let subs: Vec<usize> = args.list("subs", "1,100");
    now_ns();
    println!(
        "\n## latency: {} notifications/s for {:?} (after {:?} warm-up), one transaction each\n",
        thousands(load.rate),
        load.measure,
        load.warmup
    );
    let mut outcomes = vec![raw_run(server, load), sqlx_run(server, load)];
    if let Some(&most) = subs.iter().max().filter(|&&n| n > 1) {
        outcomes.push(forge_run(server, load, most));
    }
    for kind in args.runtimes() {
        let exec = Exec::new(kind);
        for &count in &subs {
            outcomes.push(on_runtime!(kind, pgnotify_run(&exec, server, load, count)));
        }
    }
    println!(
        "| implementation | subscribers | sent/s achieved | samples | gaps | p50 (µs) | p99 (µs) | \
         p99.9 (µs) | max (µs) | p99 / raw p99 | p99 / sqlx p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let raw_p99 = quantile(&outcomes[0].latencies, 0.99) as f64;
    let sqlx_p99 = quantile(&outcomes[1].latencies, 0.99) as f64;
    for o in &outcomes {
        let q = |p| quantile(&o.latencies, p) as f64 / 1e3;
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
            o.name,
            o.subscribers,
            thousands((o.sent as f64 / (load.warmup + load.measure).as_secs_f64()) as u64),
            thousands(o.latencies.len() as u64),
            o.gaps,
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0),
            q(0.99) * 1e3 / raw_p99,
            q(0.99) * 1e3 / sqlx_p99
        );
        if o.failed > 0 {
            println!("  ({} publishes failed)", o.failed);
        }
    }
}

/// Publishes at `load.rate` from a thread of its own until the warm-up and
/// the measurement are over, then publishes [`STOP`]. Returns (sent, failed).
fn publish(conninfo: String, load: Load) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("publisher runtime");
        rt.block_on(async move {
            let client = Arc::new(raw::connect_spawned(&conninfo).await);
            let statement = client
                .prepare("SELECT pg_notify($1, $2)")
                .await
                .expect("prepare");
            let failed = Arc::new(AtomicU64::new(0));
            let per_tick = load.rate.div_ceil(1000);
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + load.warmup + load.measure;
            let mut sent = 0;
            let mut in_flight = Vec::new();
            while Instant::now() < end {
                ticks.tick().await;
                for _ in 0..per_tick {
                    let (client, statement, failed) =
                        (client.clone(), statement.clone(), failed.clone());
                    in_flight.push(tokio::spawn(async move {
                        let payload = now_ns().to_string();
                        if client
                            .execute(&statement, &[&CHANNEL, &payload])
                            .await
                            .is_err()
                        {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                    sent += 1;
                }
            }
            for task in in_flight {
                let _ = task.await;
            }
            client
                .execute(&statement, &[&CHANNEL, &STOP])
                .await
                .expect("publish stop");
            (sent, failed.load(Ordering::Relaxed))
        })
    })
}

/// Records the latency of `payload` if it was sent inside the measured window.
fn record(latencies: &mut Vec<u64>, payload: &str, window: (u64, u64)) {
    let now = now_ns();
    if let Ok(sent) = payload.parse::<u64>() {
        if (window.0..window.1).contains(&sent) {
            latencies.push(now.saturating_sub(sent));
        }
    }
}

/// The measured window of send times, starting now.
fn window(load: Load) -> (u64, u64) {
    let start = now_ns() + load.warmup.as_nanos() as u64;
    (start, start + load.measure.as_nanos() as u64)
}

fn raw_run(server: &TestServer, load: Load) -> Outcome {
    let exec = Exec::new(Kind::Tokio);
    let conninfo = server.conninfo();
    exec.block_on(async {
        let (client, mut connection) = raw::connect(&conninfo).await;
        raw::drive(
            &mut connection,
            client.batch_execute(&format!("LISTEN {CHANNEL}")),
        )
        .await
        .expect("LISTEN");
        let window = window(load);
        let publisher = publish(conninfo.clone(), load);
        let reader = exec.spawn(async move {
            let mut latencies = Vec::with_capacity(load.rate as usize * 12);
            raw::read_notifications(&mut connection, u64::MAX, |payload| {
                record(&mut latencies, payload, window);
                payload != STOP
            })
            .await;
            drop(client);
            latencies
        });
        let latencies = reader.await;
        let (sent, failed) = publisher.join().expect("publisher");
        let mut latencies = latencies;
        latencies.sort_unstable();
        Outcome {
            name: "tokio-postgres poll_message".into(),
            subscribers: 1,
            sent,
            failed,
            gaps: 0,
            latencies,
        }
    })
}

/// sqlx's `PgListener`, read by one task on the multi-thread runtime.
fn sqlx_run(server: &TestServer, load: Load) -> Outcome {
    let exec = Exec::new(Kind::Tokio);
    let url = server.url();
    exec.block_on(async {
        let mut listener = peers::sqlx_listener(&url, CHANNEL).await;
        let window = window(load);
        let publisher = publish(server.conninfo(), load);
        let reader = exec.spawn(async move {
            let mut latencies = Vec::with_capacity(load.rate as usize * 12);
            loop {
                let notification = listener.recv().await.expect("sqlx recv");
                if notification.payload() == STOP {
                    return latencies;
                }
                record(&mut latencies, notification.payload(), window);
            }
        });
        let mut latencies = reader.await;
        let (sent, failed) = publisher.join().expect("publisher");
        latencies.sort_unstable();
        Outcome {
            name: SQLX.into(),
            subscribers: 1,
            sent,
            failed,
            gaps: 0,
            latencies,
        }
    })
}

/// The forge design with `subs` subscribers: one `PgListener` forwarding
/// every payload into a `broadcast<String>` (room for the whole run), each
/// receiver on a task of its own recording its latencies.
fn forge_run(server: &TestServer, load: Load, subs: usize) -> Outcome {
    let exec = Exec::new(Kind::Tokio);
    let url = server.url();
    exec.block_on(async {
        let listener = peers::sqlx_listener(&url, CHANNEL).await;
        let capacity = (load.rate * (load.warmup + load.measure).as_secs() + 1) as usize;
        let (tx, receivers) = peers::forge_receivers(capacity, subs);
        let window = window(load);
        let publisher = publish(server.conninfo(), load);
        let forwarder = exec.spawn(peers::forward(listener, tx, |p| p == STOP));
        let tasks: Vec<_> = receivers
            .into_iter()
            .map(|mut rx| {
                exec.spawn(async move {
                    let mut latencies = Vec::with_capacity(load.rate as usize * 12);
                    let mut lags = 0;
                    loop {
                        match rx.recv().await {
                            Ok(payload) if payload == STOP => return (latencies, lags),
                            Ok(payload) => record(&mut latencies, &payload, window),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => lags += 1,
                            Err(_) => return (latencies, lags),
                        }
                    }
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut gaps = 0;
        for task in tasks {
            let (l, g) = task.await;
            latencies.extend(l);
            gaps += g;
        }
        forwarder.await;
        let (sent, failed) = publisher.join().expect("publisher");
        latencies.sort_unstable();
        Outcome {
            name: peers::FORGE.into(),
            subscribers: subs,
            sent,
            failed,
            gaps,
            latencies,
        }
    })
}

fn pgnotify_run<R: CurrentRuntime>(
    exec: &Exec,
    server: &TestServer,
    load: Load,
    subs: usize,
) -> Outcome {
    let config = listener_config(&server.conninfo(), "bench-latency");
    exec.block_on(async {
        let listener = Listener::<R>::connect_with(config)
            .await
            .expect("listener connects");
        let mut subscriptions = Vec::with_capacity(subs);
        for _ in 0..subs {
            subscriptions.push(listener.subscribe(CHANNEL).await.expect("subscribe"));
        }
        let window = window(load);
        let publisher = publish(server.conninfo(), load);
        let tasks: Vec<_> = subscriptions
            .into_iter()
            .map(|s| exec.spawn(read_until_stop(s, window, load)))
            .collect();
        let mut latencies = Vec::new();
        let mut gaps = 0;
        for task in tasks {
            let (l, g) = task.await;
            latencies.extend(l);
            gaps += g;
        }
        let (sent, failed) = publisher.join().expect("publisher");
        listener.close().await;
        latencies.sort_unstable();
        Outcome {
            name: format!("pgnotify on {}", exec.kind()),
            subscribers: subs,
            sent,
            failed,
            gaps,
            latencies,
        }
    })
}

async fn read_until_stop(
    mut subscription: Subscription,
    window: (u64, u64),
    load: Load,
) -> (Vec<u64>, u64) {
    let mut latencies = Vec::with_capacity(load.rate as usize * 12);
    let mut gaps = 0;
    while let Some(event) = subscription.recv().await {
        match event {
            Event::Notification(n) if &*n.payload == STOP => break,
            Event::Notification(n) => record(&mut latencies, &n.payload, window),
            _ => gaps += 1,
        }
    }
    (latencies, gaps)
}
