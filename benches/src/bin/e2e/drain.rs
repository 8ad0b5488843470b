//! Figure 2: burst drain. One transaction publishes `n` notifications while
//! the listener is subscribed but no subscriber reads; then every
//! subscriber reads all of them, timed from the moment they start.
//!
//! pgnotify subscribers use [`OverflowPolicy::Backpressure`], so nothing is
//! dropped: the listener stops reading the socket while a queue is full
//! and the server holds the rest in its notification queue. The baseline is
//! a raw tokio-postgres connection read with `poll_message` on one task;
//! the peers (issue 13) are sqlx's `PgListener` read by one task, and the
//! forge design (`PgListener` -> `broadcast<String>` with a capacity that
//! holds the whole burst) with as many subscribers as pgnotify. pgnotify is
//! read through `recv()` and through `recv_batch`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgnotify_core::{Event, OverflowPolicy, SubscribeOptions};
use pgnotify_driver::{CurrentRuntime, EventBatch, EventRef, Listener, Subscription};
use pgnotify_testkit::server::TestServer;

use crate::exec::{Exec, Kind};
use crate::peers::{self, FORGE, SQLX};
use crate::report::{context_switches, median, ms, thousands};
use crate::{Args, listener_config, on_runtime, raw};

const CHANNEL: &str = "drain";

/// Row name of the raw tokio-postgres reader.
const RAW: &str = "tokio-postgres poll_message";

/// Time between the publishing transaction's commit and the start of the
/// clock, so the server has begun sending for every implementation alike.
const SETTLE: Duration = Duration::from_millis(200);

/// What was measured, per implementation, subscriber count and payload.
type Key = (String, usize, usize);

/// How a pgnotify subscriber task reads its subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reader {
    /// `Subscription::recv()` in a loop: the API users call first.
    Recv,
    /// `Subscription::recv_batch` into a reused `EventBatch`, read by reference.
    Batch,
    /// The subscription as a `futures_core::Stream`, read with `StreamExt::next`.
    Stream,
}

impl std::str::FromStr for Reader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "recv" => Ok(Self::Recv),
            "batch" => Ok(Self::Batch),
            "stream" => Ok(Self::Stream),
            other => Err(format!("unknown reader {other:?} (recv, batch, stream)")),
        }
    }
}

impl Reader {
    fn name(self) -> &'static str {
        match self {
            Self::Recv => "recv()",
            Self::Batch => "recv_batch",
            Self::Stream => "Stream::next",
        }
    }
}

pub(crate) fn run(server: &TestServer, args: &Args) {
    let n: u64 = args.get("n", 1_000_000);
    let payloads: Vec<usize> = args.list("payloads", "16,1000");
    let subs: Vec<usize> = args.list("subs", "1,100");
    let capacity: usize = args.get("capacity", 1024);
    let trials: usize = args.get("trials", 1);
    let runtimes = args.runtimes();
    let readers: Vec<Reader> = args.list("readers", "recv,batch");
    let peers: Vec<String> = args.list("peers", "raw,sqlx,forge");
    let baseline = Exec::new(Kind::Tokio);
    let execs: Vec<Exec> = runtimes.iter().map(|&k| Exec::new(k)).collect();
    println!(
        "\n## burst drain: {} notifications in one transaction, Backpressure capacity {capacity}, \
         {trials} trial(s)\n",
        thousands(n)
    );
    let mut times: BTreeMap<Key, Vec<Duration>> = BTreeMap::new();
    for &payload in &payloads {
        for trial in 1..=trials {
            if peers.iter().any(|p| p == "raw") {
                let (publish, elapsed) = raw_trial(&baseline, server, n, payload);
                eprintln!("trial {trial} {payload} B raw: publish {publish:?}, drain {elapsed:?}");
                times
                    .entry((RAW.into(), 1, payload))
                    .or_default()
                    .push(elapsed);
            }
            if peers.iter().any(|p| p == "sqlx") {
                let (publish, elapsed) = sqlx_trial(&baseline, server, n, payload);
                eprintln!("trial {trial} {payload} B sqlx: publish {publish:?}, drain {elapsed:?}");
                times
                    .entry((SQLX.into(), 1, payload))
                    .or_default()
                    .push(elapsed);
            }
            if peers.iter().any(|p| p == "forge") {
                for &count in &subs {
                    let (publish, elapsed) = forge_trial(&baseline, server, n, payload, count);
                    eprintln!(
                        "trial {trial} {payload} B forge x{count}: publish {publish:?}, \
                         drain {elapsed:?}"
                    );
                    times
                        .entry((FORGE.into(), count, payload))
                        .or_default()
                        .push(elapsed);
                }
            }
            for exec in &execs {
                for &count in &subs {
                    for &reader in &readers {
                        let (publish, elapsed) = on_runtime!(
                            exec.kind(),
                            pgnotify_trial(exec, server, n, payload, count, capacity, reader)
                        );
                        eprintln!(
                            "trial {trial} {payload} B pgnotify/{} {} x{count}: \
                             publish {publish:?}, drain {elapsed:?}",
                            exec.kind(),
                            reader.name()
                        );
                        times
                            .entry((
                                format!("pgnotify {} on {}", reader.name(), exec.kind()),
                                count,
                                payload,
                            ))
                            .or_default()
                            .push(elapsed);
                    }
                }
            }
        }
    }
    print_table(&times, n);
}

fn print_table(times: &BTreeMap<Key, Vec<Duration>>, n: u64) {
    let median_of = |key: &Key| {
        times
            .get(key)
            .map(|d| median(&d.iter().map(|d| ms(*d)).collect::<Vec<_>>()))
            .unwrap_or(f64::NAN)
    };
    println!(
        "| implementation | subscribers | payload | drain times (ms) | median (ms) | \
         notifications/s | deliveries/s | rate / raw reader | rate / peer (peer) |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|");
    for (key, durations) in times {
        let (name, subs, payload) = key;
        let millis: Vec<f64> = durations.iter().map(|d| ms(*d)).collect();
        let med = median(&millis);
        let rate = n as f64 / (med / 1e3);
        let raw = median_of(&(RAW.to_owned(), 1, *payload));
        // The peer a user would pick for this many subscribers: sqlx alone
        // for one, the forge design for several.
        let peer = if *subs == 1 { SQLX } else { FORGE };
        let peer_ms = median_of(&(peer.to_owned(), *subs, *payload));
        let list: Vec<String> = millis.iter().map(|m| format!("{m:.0}")).collect();
        println!(
            "| {name} | {subs} | {payload} B | {} | {med:.0} | {} | {} | {:.2}x | {:.2}x ({peer}) |",
            list.join(", "),
            thousands(rate as u64),
            thousands((rate * *subs as f64) as u64),
            raw / med,
            peer_ms / med,
        );
    }
}

/// Publishes `n` distinct notifications (PostgreSQL folds identical ones
/// within a transaction) of `payload` bytes in one transaction.
fn burst(server: &TestServer, n: u64, payload: usize) -> Duration {
    let start = Instant::now();
    let sql = format!(
        "SELECT count(pg_notify('{CHANNEL}', lpad(i::text, {payload}, '0'))) \
         FROM generate_series(1, {n}) i"
    );
    let out = server.execute(&sql).expect("publish the burst");
    assert_eq!(out.trim(), n.to_string(), "the burst published");
    start.elapsed()
}

/// The baseline: one tokio-postgres connection, LISTENed and then left
/// unread during the burst, drained with `poll_message`.
fn raw_trial(exec: &Exec, server: &TestServer, n: u64, payload: usize) -> (Duration, Duration) {
    let conninfo = server.conninfo();
    let (client, mut connection) = exec.block_on(async {
        let (client, mut connection) = raw::connect(&conninfo).await;
        raw::drive(
            &mut connection,
            client.batch_execute(&format!("LISTEN {CHANNEL}")),
        )
        .await
        .expect("LISTEN");
        (client, connection)
    });
    let publish = burst(server, n, payload);
    let (elapsed, got, bytes) = exec.block_on(async {
        exec.sleep(SETTLE).await;
        let counters = Counters::start();
        let start = Instant::now();
        let mut bytes = 0;
        let got = raw::read_notifications(&mut connection, n, |p| {
            bytes += p.len();
            true
        })
        .await;
        let elapsed = start.elapsed();
        counters.report("raw", n);
        (elapsed, got, bytes)
    });
    assert_eq!(got, n, "the baseline received every notification");
    assert_eq!(
        bytes,
        n as usize * payload,
        "the baseline received every byte"
    );
    drop(client);
    drop(connection);
    (publish, elapsed)
}

/// pgnotify on runtime `R`: `subs` subscriptions on one channel, none read
/// during the burst, then each drained by a task of its own.
fn pgnotify_trial<R: CurrentRuntime>(
    exec: &Exec,
    server: &TestServer,
    n: u64,
    payload: usize,
    subs: usize,
    capacity: usize,
    reader: Reader,
) -> (Duration, Duration) {
    let config = listener_config(&server.conninfo(), "bench-drain");
    let options = SubscribeOptions::new()
        .capacity(capacity)
        .policy(OverflowPolicy::Backpressure);
    let (listener, subscriptions) = exec.block_on(async {
        let listener = Listener::<R>::connect_with(config)
            .await
            .expect("listener connects");
        let mut subscriptions = Vec::with_capacity(subs);
        for _ in 0..subs {
            let s = listener.subscribe_with(CHANNEL, options.clone()).await;
            subscriptions.push(s.expect("subscribe"));
        }
        (listener, subscriptions)
    });
    let publish = burst(server, n, payload);
    let (elapsed, results) = exec.block_on(async {
        exec.sleep(SETTLE).await;
        let counters = Counters::start();
        let start = Instant::now();
        let tasks: Vec<_> = subscriptions
            .into_iter()
            .map(|s| match reader {
                Reader::Recv => exec.spawn(read_all(s, n)),
                Reader::Batch => exec.spawn(read_all_batches(s, n)),
                Reader::Stream => exec.spawn(read_all_stream(s, n)),
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await);
        }
        let elapsed = start.elapsed();
        counters.report("pgnotify", n);
        (elapsed, results)
    });
    let stats = listener.stats();
    exec.block_on(listener.close());
    for (got, gaps, bytes) in results {
        assert_eq!(
            (got, gaps),
            (n, 0),
            "every subscriber got everything, no gap"
        );
        assert_eq!(
            bytes,
            n as usize * payload,
            "every subscriber got every byte"
        );
    }
    let dropped = stats.dropped_oldest
        + stats.dropped_newest
        + stats.replaced_latest
        + stats.closed_by_overflow;
    assert_eq!(dropped, 0, "nothing dropped");
    (publish, elapsed)
}

/// Context switches of this process's threads during a drain, printed to
/// stderr per 1,000 notifications: they show how often tasks went to sleep.
struct Counters {
    switches: u64,
}

impl Counters {
    fn start() -> Self {
        Self {
            switches: context_switches(),
        }
    }

    fn report(&self, name: &str, n: u64) {
        let switches = context_switches() - self.switches;
        eprintln!(
            "  {name}: {:.1} context switches per 1,000 notifications",
            switches as f64 * 1000.0 / n as f64
        );
    }
}

/// Reads `n` notifications; returns how many, the gaps seen and the payload bytes.
async fn read_all(mut subscription: Subscription, n: u64) -> (u64, u64, usize) {
    let (mut got, mut gaps, mut bytes) = (0, 0, 0);
    while got < n {
        match subscription.recv().await {
            Some(Event::Notification(notification)) => {
                got += 1;
                bytes += notification.payload.len();
            }
            Some(_) => gaps += 1,
            None => break,
        }
    }
    (got, gaps, bytes)
}

/// Reads `n` notifications through the `Stream` impl; returns how many,
/// the gaps seen and the payload bytes.
async fn read_all_stream(mut subscription: Subscription, n: u64) -> (u64, u64, usize) {
    use futures_util::StreamExt;
    let (mut got, mut gaps, mut bytes) = (0, 0, 0);
    while got < n {
        match subscription.next().await {
            Some(Event::Notification(notification)) => {
                got += 1;
                bytes += notification.payload.len();
            }
            Some(_) => gaps += 1,
            None => break,
        }
    }
    (got, gaps, bytes)
}

/// Reads `n` notifications a batch at a time, by reference; returns how
/// many, the gaps seen and the payload bytes.
async fn read_all_batches(mut subscription: Subscription, n: u64) -> (u64, u64, usize) {
    let (mut got, mut gaps, mut bytes) = (0, 0, 0);
    let mut batch = EventBatch::new();
    while got < n {
        if subscription.recv_batch(&mut batch).await == 0 {
            break;
        }
        for item in &batch {
            match item {
                EventRef::Notification(notification) => {
                    got += 1;
                    bytes += notification.payload.len();
                }
                _ => gaps += 1,
            }
        }
        batch.clear();
    }
    (got, gaps, bytes)
}

/// The peer with one consumer: sqlx's `PgListener`, LISTENed and left
/// unread during the burst, then read by one task.
fn sqlx_trial(exec: &Exec, server: &TestServer, n: u64, payload: usize) -> (Duration, Duration) {
    let url = server.url();
    let mut listener = exec.block_on(peers::sqlx_listener(&url, CHANNEL));
    let publish = burst(server, n, payload);
    let (elapsed, bytes) = exec.block_on(async {
        exec.sleep(SETTLE).await;
        let start = Instant::now();
        let reader = exec.spawn(async move {
            let mut bytes = 0;
            for _ in 0..n {
                bytes += listener.recv().await.expect("sqlx recv").payload().len();
            }
            bytes
        });
        let bytes = reader.await;
        (start.elapsed(), bytes)
    });
    assert_eq!(bytes, n as usize * payload, "sqlx received every byte");
    (publish, elapsed)
}

/// The forge design: `PgListener` -> a forwarding task -> broadcast with
/// room for all `n` -> `subs` counting tasks.
fn forge_trial(
    exec: &Exec,
    server: &TestServer,
    n: u64,
    payload: usize,
    subs: usize,
) -> (Duration, Duration) {
    let url = server.url();
    let listener = exec.block_on(peers::sqlx_listener(&url, CHANNEL));
    let (tx, receivers) = peers::forge_receivers(n as usize, subs);
    let publish = burst(server, n, payload);
    let (elapsed, results) = exec.block_on(async {
        exec.sleep(SETTLE).await;
        let start = Instant::now();
        let mut left = n;
        let forwarder = exec.spawn(peers::forward(listener, tx, move |_| {
            left -= 1;
            left == 0
        }));
        let tasks: Vec<_> = receivers
            .into_iter()
            .map(|rx| exec.spawn(peers::count_broadcast(rx, |_| false)))
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await);
        }
        let elapsed = start.elapsed();
        assert_eq!(forwarder.await, n, "the forge forwarded everything");
        (elapsed, results)
    });
    for r in results {
        assert_eq!(
            (r.got, r.lags),
            (n, 0),
            "every forge subscriber got everything"
        );
        assert_eq!(
            r.bytes,
            n as usize * payload,
            "every forge subscriber got every byte"
        );
    }
    (publish, elapsed)
}
