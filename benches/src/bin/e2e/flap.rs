//! Issue 21: a listener whose backend is terminated every `every` seconds
//! for `secs` seconds, while another connection publishes at a steady
//! `rate`. Every reconnect succeeds at once, so any delay before it is the
//! backoff's doing; the figure is how long each outage lasted and what
//! share of the notifications fell into one.
//!
//! An outage runs from the `Disconnected` event to the next `Connected`
//! (both as seen on `connection_events()`, so the listener's own time to
//! reconnect is included). A notification "fell into an outage" when its
//! sequence number is missing from the subscription and a
//! `Gap::Reconnected` stands where it would have been; one missing without
//! a gap would be a bug and is counted apart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgnotify_core::{Event, Gap};
use pgnotify_testkit::server::TestServer;
use pgnotify_tokio::ConnectionEvent;

use crate::exec::{Exec, Kind};
use crate::report::{median, ms};
use crate::{Args, listener_config, raw};

const APPLICATION_NAME: &str = "bench-flap";
const CHANNEL: &str = "flap";

/// What the connection-event reader saw.
#[derive(Default)]
struct Outages {
    down_since: Option<Instant>,
    /// Disconnected → Connected, one per reconnect.
    durations: Vec<Duration>,
    connect_failures: u64,
}

pub(crate) fn run(server: &TestServer, args: &Args) {
    let secs: u64 = args.get("secs", 300);
    let every: u64 = args.get("every", 20).max(1);
    let rate: u64 = args.get("rate", 100).max(1);
    println!(
        "\n## flap: backend terminated every {every} s for {secs} s, {rate} notifications/s\n"
    );
    let exec = Exec::new(Kind::Tokio);
    let kills = AtomicU64::new(0);
    let started = Instant::now();
    let (outages, published, seen) = std::thread::scope(|scope| {
        // The killer runs on its own thread because `terminate_backends`
        // blocks on psql. Its sleeps are the workload's schedule (a kill
        // every `every` seconds), not a wait for something to happen. The
        // last kill comes strictly before the publisher stops, so the run
        // ends on a working connection.
        scope.spawn(|| {
            let mut at = Duration::from_secs(every);
            while at < Duration::from_secs(secs) {
                std::thread::sleep((started + at).saturating_duration_since(Instant::now()));
                let n = server
                    .terminate_backends(APPLICATION_NAME)
                    .expect("terminate the listener's backend");
                kills.fetch_add(n as u64, Ordering::Relaxed);
                eprintln!("{:>6.1} s: terminated {n}", started.elapsed().as_secs_f64());
                at += Duration::from_secs(every);
            }
        });
        exec.block_on(workload(server, started + Duration::from_secs(secs), rate))
    });
    report(&outages, kills.load(Ordering::Relaxed), published, &seen);
}

/// What the subscription saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Sequence(u64),
    Reconnected,
}

/// Runs the listener and the publisher until `end`; returns the outages,
/// how many notifications were published, and what the subscriber saw.
async fn workload(server: &TestServer, end: Instant, rate: u64) -> (Outages, u64, Vec<Seen>) {
    let config = listener_config(&server.conninfo(), APPLICATION_NAME);
    let listener = pgnotify_tokio::Listener::connect_with(config)
        .await
        .expect("listener connects");
    let mut subscription = listener.subscribe(CHANNEL).await.expect("subscribe");
    let (connected_tx, mut connected) = tokio::sync::watch::channel(true);
    let mut events = listener.connection_events();
    let watcher = tokio::spawn(async move {
        let mut outages = Outages::default();
        while let Some(event) = events.recv().await {
            let now = Instant::now();
            match event {
                ConnectionEvent::Disconnected { .. } => {
                    outages.down_since = Some(now);
                    connected_tx.send_replace(false);
                }
                ConnectionEvent::Connected { .. } => {
                    if let Some(since) = outages.down_since.take() {
                        outages.durations.push(now - since);
                    }
                    connected_tx.send_replace(true);
                }
                ConnectionEvent::ConnectFailed { .. } => outages.connect_failures += 1,
                _ => {}
            }
        }
        outages
    });
    let subscriber = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = subscription.recv().await {
            match event {
                Event::Notification(n) => match n.payload.parse::<u64>() {
                    Ok(sequence) => seen.push(Seen::Sequence(sequence)),
                    Err(_) => break, // the end marker
                },
                Event::Gap(Gap::Reconnected { .. }) => seen.push(Seen::Reconnected),
                other => panic!("unexpected {other:?}: the subscriber keeps up"),
            }
        }
        seen
    });
    let publisher = raw::connect_spawned(&server.conninfo()).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        publisher
            .batch_execute(&format!("NOTIFY {CHANNEL}, '{published}'"))
            .await
            .expect("publish");
        published += 1;
    }
    // The end marker goes out once the listener is back, so it is not lost
    // in an outage (the killer has stopped by now).
    connected
        .wait_for(|up| *up)
        .await
        .expect("the watcher runs until close");
    publisher
        .batch_execute(&format!("NOTIFY {CHANNEL}, 'end'"))
        .await
        .expect("publish the end marker");
    let seen = subscriber
        .await
        .expect("the subscriber sees the end marker");
    listener.close().await;
    let outages = watcher.await.expect("the watcher ends with the listener");
    (outages, published, seen)
}

/// How many notifications are missing behind a reconnect gap, and how many
/// are missing with no gap to explain them (0 unless there is a bug).
fn missing(seen: &[Seen], published: u64) -> (u64, u64) {
    let (mut covered, mut unexplained) = (0, 0);
    let mut expected = 0u64;
    let mut after_gap = false;
    for item in seen.iter().chain([&Seen::Sequence(published)]) {
        match *item {
            Seen::Reconnected => after_gap = true,
            Seen::Sequence(n) => {
                let skipped = n.saturating_sub(expected);
                if after_gap {
                    covered += skipped;
                } else {
                    unexplained += skipped;
                }
                expected = n + 1;
                after_gap = false;
            }
        }
    }
    (covered, unexplained)
}

fn report(outages: &Outages, kills: u64, published: u64, seen: &[Seen]) {
    let (covered, unexplained) = missing(seen, published);
    let durations: Vec<f64> = outages.durations.iter().map(|d| ms(*d)).collect();
    let max = durations.iter().copied().fold(0.0, f64::max);
    let list = durations
        .iter()
        .map(|m| format!("{m:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("| measurement | value |");
    println!("|---|---:|");
    println!("| backends terminated | {kills} |");
    println!(
        "| reconnects (Disconnected → Connected) | {} |",
        durations.len()
    );
    println!(
        "| failed connection attempts | {} |",
        outages.connect_failures
    );
    println!("| outage median (ms) | {:.0} |", median(&durations));
    println!("| outage max (ms) | {max:.0} |");
    println!("| notifications published | {published} |");
    println!(
        "| fell into outages (behind a reconnect gap) | {covered} ({:.2} %) |",
        100.0 * covered as f64 / published.max(1) as f64
    );
    println!("| missing without a gap (must be 0) | {unexplained} |");
    println!("\noutages in order (ms): {list}");
}
