//! The `metrics` feature against a real server, through a minimal recorder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use pgnotify_throwaway::server::TestServer;
use pgnotify_tokio::metrics as names;
use pgnotify_tokio::{Event, Listener, OverflowPolicy, SubscribeOptions, Subscription};
use tokio::sync::Notify;

/// Longer than the listener's publication interval by far.
const PATIENCE: Duration = Duration::from_secs(10);

/// One counter or gauge (a gauge holds the bits of an `f64`); every change
/// is announced on `changed`.
struct Cell {
    value: AtomicU64,
    changed: Arc<Notify>,
}

impl Cell {
    fn update(&self, f: impl Fn(u64) -> u64) {
        let _ = self
            .value
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(f(v)));
        self.changed.notify_waiters();
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| v + value);
    }
    fn absolute(&self, value: u64) {
        self.update(|v| v.max(value));
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| (f64::from_bits(v) + value).to_bits());
    }
    fn decrement(&self, value: f64) {
        self.update(|v| (f64::from_bits(v) - value).to_bits());
    }
    fn set(&self, value: f64) {
        self.update(|_| value.to_bits());
    }
}

/// A histogram's samples.
struct Samples {
    values: Mutex<Vec<f64>>,
    changed: Arc<Notify>,
}

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.values.lock().unwrap().push(value);
        self.changed.notify_waiters();
    }
}

/// Every metric registered, by name and labels (`name{label=value}`).
#[derive(Default)]
struct Registry {
    counters: Mutex<HashMap<String, Arc<Cell>>>,
    gauges: Mutex<HashMap<String, Arc<Cell>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
    changed: Arc<Notify>,
}

fn key_text(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl Registry {
    fn cell(&self, cells: &Mutex<HashMap<String, Arc<Cell>>>, key: &Key) -> Arc<Cell> {
        let mut cells = cells.lock().unwrap();
        let cell = cells.entry(key_text(key)).or_insert_with(|| {
            Arc::new(Cell {
                value: AtomicU64::new(0),
                changed: self.changed.clone(),
            })
        });
        cell.clone()
    }

    fn counter(&self, key: &str) -> u64 {
        let counters = self.counters.lock().unwrap();
        counters
            .get(key)
            .map_or(0, |c| c.value.load(Ordering::Acquire))
    }

    fn gauge(&self, key: &str) -> f64 {
        let gauges = self.gauges.lock().unwrap();
        gauges
            .get(key)
            .map_or(0.0, |g| f64::from_bits(g.value.load(Ordering::Acquire)))
    }

    fn samples(&self, key: &str) -> Vec<f64> {
        let histograms = self.histograms.lock().unwrap();
        histograms
            .get(key)
            .map_or_else(Vec::new, |h| h.values.lock().unwrap().clone())
    }

    /// Waits until `settled` holds, woken by every change, for up to
    /// [`PATIENCE`]; the caller's assertions then say what is missing.
    async fn until(&self, settled: impl Fn(&Registry) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if settled(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

struct SharedRegistry(Arc<Registry>);

impl Recorder for SharedRegistry {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.cell(&self.0.counters, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.0.cell(&self.0.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.0.histograms.lock().unwrap();
        let samples = histograms.entry(key_text(key)).or_insert_with(|| {
            Arc::new(Samples {
                values: Mutex::new(Vec::new()),
                changed: self.0.changed.clone(),
            })
        });
        Histogram::from_arc(samples.clone())
    }
}

/// The process's recorder, installed once.
fn registry() -> &'static Arc<Registry> {
    static REGISTRY: OnceLock<Arc<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Arc::new(Registry::default());
        metrics::set_global_recorder(SharedRegistry(registry.clone()))
            .expect("no other recorder in this test binary");
        registry
    })
}

async fn next_payload(subscription: &mut Subscription) -> String {
    match subscription.recv().await {
        Some(Event::Notification(n)) => n.payload.to_string(),
        other => panic!("expected a notification, got {other:?}"),
    }
}

// One test: the recorder is global to the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_publishes_its_counters_gauges_and_ping_times_and_withdraws_its_gauges() {
    let registry = registry();
    let server = TestServer::new().expect("a server");
    let listener = Listener::connect(&server.url()).await.expect("connect");

    let mut all = listener.subscribe("metrics").await.expect("subscribe");
    let wake_up = SubscribeOptions::new()
        .policy(OverflowPolicy::KeepLatest)
        .capacity(1);
    let _latest = listener
        .subscribe_with("metrics", wake_up)
        .await
        .expect("subscribe");
    for i in 0..5 {
        listener
            .notify("metrics", &i.to_string())
            .await
            .expect("notify");
    }
    for i in 0..5 {
        assert_eq!(next_payload(&mut all).await, i.to_string());
    }
    let keep_latest = format!("{}{{policy=keep_latest}}", names::DROPPED);
    // Published at most every 100 ms, so the last changes may come a little
    // after the notifications.
    registry
        .until(|r| {
            r.counter(names::NOTIFICATIONS) == 5
                && r.counter(names::NOTIFICATIONS_QUEUED) == 10
                && r.counter(names::NOTIFICATIONS_TAKEN) == 5
                && r.counter(&keep_latest) == 4
                && r.gauge(names::SUBSCRIBERS) == 2.0
        })
        .await;
    assert_eq!(registry.counter(names::NOTIFICATIONS), 5);
    assert_eq!(
        registry.counter(names::NOTIFICATIONS_QUEUED),
        10,
        "5 to each subscriber"
    );
    assert_eq!(
        registry.counter(names::NOTIFICATIONS_TAKEN),
        5,
        "all 5 by the subscription that read them, none by the keep-latest one"
    );
    let bytes = 5 * ("metrics".len() as u64 + 1);
    assert_eq!(registry.counter(names::BYTES), bytes);
    assert_eq!(registry.counter(&keep_latest), 4, "4 replaced, 1 kept");
    assert_eq!(registry.gauge(names::SUBSCRIBERS), 2.0);
    assert_eq!(registry.gauge(names::CHANNELS), 1.0);
    assert_eq!(registry.gauge(names::CONNECTED), 1.0);
    assert_eq!(registry.counter(names::RECONNECTS), 0);

    // The first health ping goes out as the connection comes up; a few
    // round trips are plenty for its answer to be in.
    let mut round_trips = 0;
    while listener.stats().last_ping_rtt.is_none() {
        round_trips += 1;
        assert!(round_trips < 100, "no ping answered after 100 round trips");
        listener.notify("metrics", "tick").await.expect("notify");
        assert_eq!(next_payload(&mut all).await, "tick");
    }
    let rtt = listener.stats().last_ping_rtt.expect("a ping time");
    let rtt_seconds = rtt.as_secs_f64();
    registry
        .until(|r| r.samples(names::PING_RTT).contains(&rtt_seconds))
        .await;
    let samples = registry.samples(names::PING_RTT);
    assert!(
        samples.contains(&rtt.as_secs_f64()),
        "the histogram {samples:?} lacks the last ping time {rtt:?}"
    );

    listener.bounce();
    match all.recv().await {
        Some(Event::Gap(gap)) => assert!(gap.to_string().contains("reconnected"), "{gap}"),
        other => panic!("expected a reconnect gap, got {other:?}"),
    }
    // The reconnect is published at once, with the connection's events.
    assert_eq!(registry.counter(names::RECONNECTS), 1);
    assert_eq!(registry.gauge(names::CONNECTED), 1.0, "connected again");

    listener.close().await;
    for gauge in [
        names::SUBSCRIBERS,
        names::CHANNELS,
        names::CONNECTED,
        names::QUEUED,
    ] {
        assert_eq!(registry.gauge(gauge), 0.0, "{gauge} after close");
    }
    assert_eq!(registry.counter(names::NOTIFICATIONS), 5 + round_trips);
}
