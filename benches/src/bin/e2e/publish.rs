//! Figure 6: pipelined publish throughput. `n` notifications (distinct
//! 16-byte payloads) with up to `in_flight` awaiting their answer at once:
//! `Listener::notify` on each runtime (with group commit, the default, and
//! with `group_commit=off`: one transaction per call), against
//! tokio-postgres running a prepared `SELECT pg_notify($1, $2)` the same
//! way (tokio-postgres pipelines concurrent queries on one connection, one
//! transaction each). Nobody LISTENs on the channel. Trials alternate
//! between the implementations.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use pgnotify_driver::{CurrentRuntime, Listener};
use pgnotify_testkit::server::TestServer;

use crate::exec::{Exec, Kind};
use crate::report::{median, quantile, thousands};
use crate::{Args, listener_config, on_runtime, raw};

const CHANNEL: &str = "publish";

pub(crate) fn run(server: &TestServer, args: &Args) {
    let n: u64 = args.get("n", 100_000);
    let in_flight: usize = args.get("in-flight", 1000);
    let trials: usize = args.get("trials", 3);
    let baseline = Exec::new(Kind::Tokio);
    let execs: Vec<Exec> = args.runtimes().into_iter().map(Exec::new).collect();
    println!(
        "\n## publish: {} notifications, up to {in_flight} in flight, {trials} trials\n",
        thousands(n)
    );
    let mut rates: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let raw_name = "tokio-postgres SELECT pg_notify (prepared)".to_owned();
    for trial in 1..=trials {
        let elapsed = baseline.block_on(raw_trial(server, n, in_flight));
        eprintln!("trial {trial} baseline: {elapsed:?}");
        rates
            .entry(raw_name.clone())
            .or_default()
            .push(n as f64 / elapsed.as_secs_f64());
        for exec in &execs {
            for group_commit in [true, false] {
                let elapsed = on_runtime!(
                    exec.kind(),
                    pgnotify_trial(exec, server, n, in_flight, group_commit)
                );
                let mode = if group_commit {
                    "group commit"
                } else {
                    "group_commit=off"
                };
                eprintln!(
                    "trial {trial} pgnotify on {} ({mode}): {elapsed:?}",
                    exec.kind()
                );
                rates
                    .entry(format!(
                        "pgnotify on {} (Listener::notify, {mode})",
                        exec.kind()
                    ))
                    .or_default()
                    .push(n as f64 / elapsed.as_secs_f64());
            }
        }
    }
    let base = median(&rates[&raw_name]);
    println!(
        "| implementation | notifications/s per trial | median notifications/s | / tokio-postgres |"
    );
    println!("|---|---|---:|---:|");
    for (name, r) in &rates {
        let list: Vec<String> = r.iter().map(|v| thousands(*v as u64)).collect();
        println!(
            "| {name} | {} | {} | {:.2}x |",
            list.join(", "),
            thousands(median(r) as u64),
            median(r) / base
        );
    }
}

fn payload(i: u64) -> String {
    format!("{i:016}")
}

async fn raw_trial(server: &TestServer, n: u64, in_flight: usize) -> Duration {
    let client = raw::connect_spawned(&server.conninfo()).await;
    let statement = client
        .prepare("SELECT pg_notify($1, $2)")
        .await
        .expect("prepare");
    let (client, statement) = (&client, &statement);
    let start = Instant::now();
    let ok = stream::iter(0..n)
        .map(|i| async move { client.execute(statement, &[&CHANNEL, &payload(i)]).await })
        .buffer_unordered(in_flight)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    let elapsed = start.elapsed();
    assert_eq!(ok as u64, n, "every baseline publish succeeded");
    elapsed
}

fn pgnotify_trial<R: CurrentRuntime>(
    exec: &Exec,
    server: &TestServer,
    n: u64,
    in_flight: usize,
    group_commit: bool,
) -> Duration {
    let config = listener_config(&server.conninfo(), "bench-publish")
        .to_builder()
        .group_commit(group_commit)
        .build()
        .expect("a valid config");
    exec.block_on(async {
        let listener = Listener::<R>::connect_with(config)
            .await
            .expect("listener connects");
        let l = &listener;
        let start = Instant::now();
        let ok = stream::iter(0..n)
            .map(|i| async move { l.notify(CHANNEL, &payload(i)).await })
            .buffer_unordered(in_flight)
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await;
        let elapsed = start.elapsed();
        assert_eq!(ok as u64, n, "every publish succeeded");
        assert_eq!(
            listener.stats().published,
            n,
            "the listener counted every publish"
        );
        listener.close().await;
        elapsed
    })
}

/// Figure `publish-lone`: one `notify` at a time at `rate` per second, the
/// latency of each call (from the call to its result), with group commit
/// on and off and for tokio-postgres. Group commit must not delay a lone
/// call: with nothing in flight it is sent at once.
pub(crate) fn run_lone(server: &TestServer, args: &Args) {
    let n: u64 = args.get("n", 500);
    let rate: u64 = args.get("rate", 100);
    let exec = Exec::new(Kind::Tokio);
    println!("\n## publish-lone: {n} calls, one at a time, {rate}/s, tokio\n");
    let mut rows: Vec<(String, Vec<u64>)> = Vec::new();
    for round in 0..2 {
        let raw = exec.block_on(lone_raw(server, n, rate));
        let on = lone_pgnotify(&exec, server, n, rate, true);
        let off = lone_pgnotify(&exec, server, n, rate, false);
        eprintln!("round {round} done");
        for (name, mut latencies) in [
            ("pgnotify Listener::notify, group commit", on),
            ("pgnotify Listener::notify, group_commit=off", off),
            ("tokio-postgres SELECT pg_notify (prepared)", raw),
        ] {
            match rows.iter_mut().find(|(n, _)| n == name) {
                Some((_, all)) => all.append(&mut latencies),
                None => rows.push((name.to_owned(), latencies)),
            }
        }
    }
    println!("| implementation | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    let mut p50s = Vec::new();
    for (name, mut latencies) in rows {
        latencies.sort_unstable();
        let p50 = quantile(&latencies, 0.5);
        p50s.push(p50);
        println!("| {name} | {p50} | {} |", quantile(&latencies, 0.99));
    }
    if let [on, off, _] = p50s[..] {
        println!(
            "\np50 with group commit / without: {:.2}x",
            on as f64 / off as f64
        );
    }
}

/// Paces `n` calls at `rate` per second and returns each call's latency in µs.
async fn paced<F, Fut>(n: u64, rate: u64, mut call: F) -> Vec<u64>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latencies = Vec::with_capacity(n as usize);
    for i in 0..n {
        tick.tick().await;
        let start = Instant::now();
        call(i).await;
        latencies.push(start.elapsed().as_micros() as u64);
    }
    latencies
}

async fn lone_raw(server: &TestServer, n: u64, rate: u64) -> Vec<u64> {
    let client = raw::connect_spawned(&server.conninfo()).await;
    let statement = client
        .prepare("SELECT pg_notify($1, $2)")
        .await
        .expect("prepare");
    let (client, statement) = (&client, &statement);
    paced(n, rate, |i| async move {
        client
            .execute(statement, &[&CHANNEL, &payload(i)])
            .await
            .expect("notify");
    })
    .await
}

fn lone_pgnotify(
    exec: &Exec,
    server: &TestServer,
    n: u64,
    rate: u64,
    group_commit: bool,
) -> Vec<u64> {
    let config = listener_config(&server.conninfo(), "bench-publish-lone")
        .to_builder()
        .group_commit(group_commit)
        .build()
        .expect("a valid config");
    exec.block_on(async {
        let listener = Listener::<pgnotify_tokio::TokioRuntime>::connect_with(config)
            .await
            .expect("listener connects");
        let l = &listener;
        let latencies = paced(n, rate, |i| async move {
            l.notify(CHANNEL, &payload(i)).await.expect("notify");
        })
        .await;
        listener.close().await;
        latencies
    })
}
