//! Issue 17: durable channels against plain NOTIFY, in the same run.
//!
//! - `durable-publish`: throughput of 64 concurrent publishers, autocommit
//!   (one transaction per message, 16-byte payloads, nobody listening).
//!   Through tokio-postgres, 64 connections each running a prepared
//!   `SELECT pgnotify.publish($1, $2)` against `SELECT pg_notify($1, $2)`;
//!   through pgnotify's API, 64 tasks on a multi-thread tokio runtime
//!   calling `Durable::notify` against `Listener::notify`. Trials alternate.
//! - `durable-latency`: one message at a time at a modest rate, from the
//!   publishing call to the subscriber's `recv` (a task of its own): a
//!   durable message (`Durable::notify` → `DurableSubscription::recv`)
//!   against a plain one (`Listener::notify` → `Subscription::recv`), and
//!   durable payloads of 64 KiB and 1 MiB (read from the table).
//! - `durable-catchup`: 10,000 missed messages, (a) for a subscriber from
//!   `Since::After(0)` that subscribes after they were published, and (b) for
//!   a live subscriber whose listener's backend was terminated and kept out
//!   (`ALLOW_CONNECTIONS false`) while they were published.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgnotify_core::Event;
use pgnotify_core::durable::{DurableEvent, Since};
use pgnotify_driver::{ConnectionEvent, Listener};
use pgnotify_testkit::server::TestServer;
use pgnotify_tokio::TokioRuntime;

use crate::exec::{Exec, Kind};
use crate::report::{median, ms, quantile, thousands};
use crate::{Args, listener_config, raw};

type TokioListener = Listener<TokioRuntime>;

/// The clock every send and receive time is measured on.
fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

async fn connect(server: &TestServer, name: &str) -> TokioListener {
    TokioListener::connect_with(listener_config(&server.conninfo(), name))
        .await
        .expect("listener connects")
}

/// Installs durable channels in the default schema.
fn install(exec: &Exec, server: &TestServer) {
    exec.block_on(async {
        let listener = connect(server, "bench-durable-install").await;
        listener.durable().install().await.expect("install");
        listener.close().await;
    });
}

fn header(figure: &str) {
    println!("\n## {figure}\n");
}

// ---------------------------------------------------------------- publish

const PUBLISH_CHANNEL: &str = "durable_publish";

/// Figure `durable-publish`.
pub(crate) fn run_publish(server: &TestServer, args: &Args) {
    let n: u64 = args.get("n", 20_000);
    let publishers: u64 = args.get("publishers", 64);
    let trials: usize = args.get("trials", 3);
    let exec = Exec::new(Kind::Tokio);
    install(&exec, server);
    header(&format!(
        "durable-publish: {} messages of 16 B, {publishers} concurrent publishers, autocommit, {trials} trials",
        thousands(n)
    ));
    let names = [
        "tokio-postgres, 64 connections: SELECT pg_notify($1, $2) (prepared)",
        "tokio-postgres, 64 connections: SELECT pgnotify.publish($1, $2) (prepared)",
        "pgnotify: Listener::notify, 64 tasks",
        "pgnotify: Durable::notify, 64 tasks",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for trial in 1..=trials {
        for (i, name) in names.iter().enumerate() {
            let elapsed = match i {
                0 => exec.block_on(raw_publish(
                    server,
                    "SELECT pg_notify($1, $2)",
                    n,
                    publishers,
                )),
                1 => exec.block_on(raw_publish(
                    server,
                    "SELECT pgnotify.publish($1, $2)",
                    n,
                    publishers,
                )),
                2 => exec.block_on(api_publish(server, false, n, publishers)),
                _ => exec.block_on(api_publish(server, true, n, publishers)),
            };
            eprintln!("trial {trial} {name}: {elapsed:?}");
            rates[i].push(n as f64 / elapsed.as_secs_f64());
        }
    }
    println!(
        "| implementation | messages/s per trial | median messages/s | / its plain baseline |"
    );
    println!("|---|---|---:|---:|");
    for (i, name) in names.iter().enumerate() {
        let baseline = median(&rates[i & !1]);
        let list: Vec<String> = rates[i].iter().map(|v| thousands(*v as u64)).collect();
        println!(
            "| {name} | {} | {} | {:.2}x |",
            list.join(", "),
            thousands(median(&rates[i]) as u64),
            median(&rates[i]) / baseline
        );
    }
}

fn payload16(i: u64) -> String {
    format!("{i:016}")
}

/// `publishers` connections, each running `n / publishers` statements one
/// after another.
async fn raw_publish(server: &TestServer, sql: &str, n: u64, publishers: u64) -> Duration {
    let mut clients = Vec::new();
    for _ in 0..publishers {
        let client = raw::connect_spawned(&server.conninfo()).await;
        let statement = client.prepare(sql).await.expect("prepare");
        clients.push((client, statement));
    }
    let each = n / publishers;
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(p, (client, statement))| {
            tokio::spawn(async move {
                for i in 0..each {
                    client
                        .query(
                            &statement,
                            &[&PUBLISH_CHANNEL, &payload16(p as u64 * each + i)],
                        )
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a publisher");
    }
    start.elapsed()
}

/// `publishers` tasks sharing one listener, each calling `notify` (plain or
/// durable) `n / publishers` times, one after another.
async fn api_publish(server: &TestServer, durable: bool, n: u64, publishers: u64) -> Duration {
    let listener = connect(server, "bench-durable-publish").await;
    let d = listener.durable();
    d.check().await.expect("installed");
    let each = n / publishers;
    let start = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (listener, d) = (listener.clone(), d.clone());
            tokio::spawn(async move {
                for i in 0..each {
                    let payload = payload16(p * each + i);
                    if durable {
                        d.notify(PUBLISH_CHANNEL, &payload).await.expect("publish");
                    } else {
                        listener
                            .notify(PUBLISH_CHANNEL, &payload)
                            .await
                            .expect("notify");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a publisher");
    }
    let elapsed = start.elapsed();
    listener.close().await;
    elapsed
}

// ---------------------------------------------------------------- latency

/// Figure `durable-latency`.
pub(crate) fn run_latency(server: &TestServer, args: &Args) {
    let n: usize = args.get("n", 500);
    let rate: u64 = args.get("rate", 100);
    let big_n: usize = args.get("big-n", 30);
    let exec = Exec::new(Kind::Tokio);
    install(&exec, server);
    now_ns();
    header(&format!(
        "durable-latency: one message at a time, {rate}/s, publishing call → recv, tokio"
    ));
    let rows: Vec<(String, usize, u64, bool)> = vec![
        (
            "plain: Listener::notify → Subscription::recv".into(),
            n,
            16,
            false,
        ),
        (
            "durable: Durable::notify → DurableSubscription::recv".into(),
            n,
            16,
            true,
        ),
        (
            "durable, 64 KiB (read from the table)".into(),
            big_n,
            64 << 10,
            true,
        ),
        (
            "durable, 1 MiB (read from the table)".into(),
            big_n,
            1 << 20,
            true,
        ),
    ];
    let mut results: Vec<(String, usize, Vec<u64>, Vec<u64>)> = Vec::new();
    // Two rounds, so neither kind always runs first.
    for round in 0..2 {
        for (i, (name, count, size, durable)) in rows.iter().enumerate() {
            let (latencies, calls) = exec.block_on(latency_trial(
                server,
                &format!("lat{i}"),
                count / 2,
                rate,
                *size as usize,
                *durable,
            ));
            eprintln!("round {round}: {name} done");
            match results.iter_mut().find(|(n, _, _, _)| n == name) {
                Some((_, _, all, all_calls)) => {
                    all.extend(latencies);
                    all_calls.extend(calls);
                }
                None => results.push((name.clone(), *size as usize, latencies, calls)),
            }
        }
    }
    println!(
        "| path | payload | samples | p50 µs | p99 µs | max µs | p50 / plain p50 | publish call returned, p50 µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut plain_p50 = 0;
    for (name, size, mut latencies, mut calls) in results {
        latencies.sort_unstable();
        calls.sort_unstable();
        let p50 = quantile(&latencies, 0.5);
        if plain_p50 == 0 {
            plain_p50 = p50;
        }
        println!(
            "| {name} | {} B | {} | {p50} | {} | {} | {:.2}x | {} |",
            thousands(size as u64),
            latencies.len(),
            quantile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(0),
            p50 as f64 / plain_p50 as f64,
            quantile(&calls, 0.5)
        );
    }
    statement_latency(&exec, server, n, rate);
}

/// The statement alone, one at a time through tokio-postgres (prepared,
/// autocommit, nobody listening): what the server's part costs.
fn statement_latency(exec: &Exec, server: &TestServer, n: usize, rate: u64) {
    println!("\nThe statement alone (tokio-postgres, prepared, one at a time, {rate}/s):\n");
    println!("| statement | samples | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|");
    for sql in [
        "SELECT pg_notify($1, $2)",
        "SELECT pgnotify.publish($1, $2)",
    ] {
        let mut latencies = exec.block_on(async {
            let client = raw::connect_spawned(&server.conninfo()).await;
            let statement = client.prepare(sql).await.expect("prepare");
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
            let mut latencies = Vec::with_capacity(n);
            for i in 0..n as u64 {
                tick.tick().await;
                let start = Instant::now();
                client
                    .query(&statement, &[&"lat_statement", &payload16(i)])
                    .await
                    .expect("statement");
                latencies.push(start.elapsed().as_micros() as u64);
            }
            latencies
        });
        latencies.sort_unstable();
        println!(
            "| `{sql}` (prepared) | {} | {} | {} |",
            latencies.len(),
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99)
        );
    }
    // What Durable::notify sends: the literal statement, simple query protocol.
    let schema = pgnotify_core::durable::DurableSchema::default();
    let mut latencies = exec.block_on(async {
        let client = raw::connect_spawned(&server.conninfo()).await;
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
        let mut latencies = Vec::with_capacity(n);
        for i in 0..n as u64 {
            tick.tick().await;
            let sql = schema.publish_sql("lat_statement", &payload16(i));
            let start = Instant::now();
            client.simple_query(&sql).await.expect("statement");
            latencies.push(start.elapsed().as_micros() as u64);
        }
        latencies
    });
    latencies.sort_unstable();
    println!(
        "| `SELECT \"pgnotify\".publish(E'...', E'...')` (simple query, as Durable::notify sends it) | {} | {} | {} |",
        latencies.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99)
    );
}

/// A payload of `size` bytes that starts with its send time.
fn timed_payload(size: usize) -> String {
    let mut payload = format!("{:020}", now_ns());
    if size > payload.len() {
        payload.push_str(&"x".repeat(size - payload.len()));
    }
    payload
}

fn sent_at(payload: &str) -> u64 {
    payload[..20].parse().expect("a send time")
}

async fn latency_trial(
    server: &TestServer,
    channel: &str,
    n: usize,
    rate: u64,
    size: usize,
    durable: bool,
) -> (Vec<u64>, Vec<u64>) {
    let listener = connect(server, "bench-durable-latency").await;
    let d = listener.durable();
    let receiver = if durable {
        let mut sub = d.subscribe(channel, Since::Now).await.expect("subscribe");
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            while latencies.len() < n {
                match sub.recv().await.expect("recv") {
                    DurableEvent::Message(m) => {
                        latencies.push((now_ns() - sent_at(&m.payload)) / 1000);
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            latencies
        })
    } else {
        let mut sub = listener.subscribe(channel).await.expect("subscribe");
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            while latencies.len() < n {
                match sub.recv().await.expect("open") {
                    Event::Notification(note) => {
                        latencies.push((now_ns() - sent_at(&note.payload)) / 1000);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            latencies
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut calls = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let payload = timed_payload(size);
        let start = Instant::now();
        if durable {
            d.notify(channel, &payload).await.expect("publish");
        } else {
            listener.notify(channel, &payload).await.expect("notify");
        }
        calls.push(start.elapsed().as_micros() as u64);
    }
    let latencies = receiver.await.expect("the receiver");
    listener.close().await;
    (latencies, calls)
}

// ---------------------------------------------------------------- catch-up

/// Figure `durable-catchup`.
pub(crate) fn run_catchup(server: &TestServer, args: &Args) {
    let n: u64 = args.get("n", 10_000);
    let trials: usize = args.get("trials", 3);
    let exec = Exec::new(Kind::Tokio);
    install(&exec, server);
    header(&format!(
        "durable-catchup: {} missed durable messages of 16 B, {trials} trials, tokio",
        thousands(n)
    ));
    let mut late = Vec::new();
    let mut bounced = Vec::new();
    let mut reconnect = Vec::new();
    for trial in 0..trials {
        let elapsed = exec.block_on(catchup_late(server, &format!("late{trial}"), n));
        eprintln!("trial {trial} late subscriber: {elapsed:?}");
        late.push(ms(elapsed));
        let (to_connected, connected_to_all) =
            exec.block_on(catchup_bounced(server, &format!("bounced{trial}"), n));
        eprintln!(
            "trial {trial} bounced listener: reconnected after {to_connected:?}, all after {connected_to_all:?} more"
        );
        reconnect.push(ms(to_connected));
        bounced.push(ms(connected_to_all));
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| case | ms per trial | median ms | target |");
    println!("|---|---|---:|---:|");
    println!(
        "| subscribe(Since::After(0)) after {} were published: subscribe called → last received | {} | {:.0} | < 1000 |",
        thousands(n),
        list(&late),
        median(&late)
    );
    println!(
        "| live subscriber, backend terminated and kept out while {} were published: Connected → last received | {} | {:.0} | < 1000 |",
        thousands(n),
        list(&bounced),
        median(&bounced)
    );
    println!(
        "| (the same: connections allowed again → Connected, the listener's backoff) | {} | {:.0} | |",
        list(&reconnect),
        median(&reconnect)
    );
}

/// Publishes `n` durable messages on `channel` in one transaction.
async fn publish_batch(client: &tokio_postgres::Client, channel: &str, n: u64) {
    client
        .execute(
            "SELECT pgnotify.publish($1, lpad(g::text, 16, '0')) FROM generate_series(1, $2::bigint) g",
            &[&channel, &(n as i64)],
        )
        .await
        .expect("publish the batch");
}

/// Receives `n` messages, checking their order.
async fn receive_all(sub: &mut pgnotify_driver::DurableSubscription, n: u64) {
    for expected in 1..=n {
        match sub.recv().await.expect("recv") {
            DurableEvent::Message(m) => assert_eq!(m.position, expected, "in order"),
            other => panic!("unexpected {other}"),
        }
    }
}

async fn catchup_late(server: &TestServer, channel: &str, n: u64) -> Duration {
    let client = raw::connect_spawned(&server.conninfo()).await;
    publish_batch(&client, channel, n).await;
    let listener = connect(server, "bench-durable-late").await;
    let d = listener.durable();
    let start = Instant::now();
    let mut sub = d
        .subscribe(channel, Since::After(0))
        .await
        .expect("subscribe");
    receive_all(&mut sub, n).await;
    let elapsed = start.elapsed();
    drop(sub);
    listener.close().await;
    elapsed
}

/// Returns (connections allowed again → Connected, Connected → last received).
async fn catchup_bounced(server: &TestServer, channel: &str, n: u64) -> (Duration, Duration) {
    let config = listener_config(&server.conninfo(), "bench-durable-bounced")
        .to_builder()
        .backoff_min(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(50))
        .build()
        .expect("a valid config");
    let listener = TokioListener::connect_with(config)
        .await
        .expect("listener connects");
    let mut events = listener.connection_events();
    let d = listener.durable();
    let mut sub = d.subscribe(channel, Since::Now).await.expect("subscribe");
    let client = raw::connect_spawned(&server.conninfo()).await;
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("database")
        .get(0);
    // A database's own sessions cannot disallow connections to it.
    let admin = raw::connect_spawned(&format!("{} dbname=template1", server.conninfo())).await;
    let allow = |on: bool| format!("ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {on}");
    admin.batch_execute(&allow(false)).await.expect("keep out");
    let killed = client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'bench-durable-bounced'",
            &[],
        )
        .await
        .expect("terminate");
    assert_eq!(killed, 1, "the listener's backend terminated");
    publish_batch(&client, channel, n).await;
    let allowed = Instant::now();
    admin.batch_execute(&allow(true)).await.expect("let in");
    loop {
        match events.recv().await.expect("connection events") {
            ConnectionEvent::Connected { generation } if generation > 1 => break,
            _ => {}
        }
    }
    let connected = Instant::now();
    receive_all(&mut sub, n).await;
    let all = connected.elapsed();
    drop(sub);
    listener.close().await;
    (connected - allowed, all)
}
