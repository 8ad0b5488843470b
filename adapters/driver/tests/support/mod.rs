//! Shared by the listener suites: running a test body on every runtime,
//! listeners with short pings and backoff, and waits that fail the test
//! with what they expected instead of hanging.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use pgnotify_core::Config;
use pgnotify_driver::{Alarm, AnyRuntime, Event, Notification, Runtime, Subscription};

/// The driver's listener, with the runtime always given explicitly.
pub type Listener = pgnotify_driver::Listener<AnyRuntime>;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The three runtimes, by name, for tests that run them side by side.
pub fn runtimes(tokio: &tokio::runtime::Runtime) -> Vec<(&'static str, Arc<dyn Runtime>)> {
    vec![
        (
            "tokio",
            Arc::new(pgnotify_tokio::TokioRuntime::from_handle(
                tokio.handle().clone(),
            )),
        ),
        ("smol", Arc::new(pgnotify_smol::SmolRuntime)),
        ("async-std", Arc::new(pgnotify_async_std::AsyncStdRuntime)),
    ]
}

/// A multi-threaded tokio runtime, whose tasks run without the test
/// thread's help (smol's and async-std's global executors do the same).
pub fn tokio_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `body` on tokio, smol and async-std in turn (each driving its own
/// executor on the test thread), naming the runtime if it panics.
pub fn on_each_runtime<F, Fut>(body: F)
where
    F: Fn(Arc<dyn Runtime>) -> Fut,
    Fut: Future<Output = ()>,
{
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let runtime = Arc::new(pgnotify_tokio::TokioRuntime::from_handle(
        tokio.handle().clone(),
    ));
    named("tokio", || tokio.block_on(body(runtime)));
    named("smol", || {
        smol::block_on(body(Arc::new(pgnotify_smol::SmolRuntime)))
    });
    named("async-std", || {
        async_std::task::block_on(body(Arc::new(pgnotify_async_std::AsyncStdRuntime)))
    });
}

fn named(name: &str, run: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        eprintln!("failed on the {name} runtime");
        std::panic::resume_unwind(panic);
    }
}

/// `config` with pings every second (1 s timeout) and backoff between 20
/// and 300 ms, so that faults are noticed and repaired quickly.
pub fn fast(config: Config) -> Config {
    config
        .to_builder()
        .ping_interval(Duration::from_secs(1))
        .ping_timeout(Duration::from_secs(1))
        .backoff_min(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(300))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("a valid configuration")
}

/// `url` parsed, with [`fast`] settings and `application_name`.
pub fn config(url: &str, application_name: &str) -> Config {
    let config = Config::parse(url).expect("a valid URL");
    fast(
        config
            .to_builder()
            .application_name(application_name)
            .build()
            .expect("valid"),
    )
}

/// A connected listener on `runtime`.
pub async fn listen(runtime: &Arc<dyn Runtime>, config: Config) -> Listener {
    Listener::builder(config)
        .runtime(runtime.clone())
        .give_up_after(WAIT)
        .connect()
        .await
        .expect("the listener connects")
}

/// Waits for `future`, failing the test after [`WAIT`].
pub async fn within<T>(
    runtime: &Arc<dyn Runtime>,
    what: &str,
    future: impl Future<Output = T>,
) -> T {
    let deadline = runtime.now() + WAIT;
    let mut alarm = Alarm::default();
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(value);
        }
        if alarm.poll_at(&**runtime, deadline, cx).is_ready() {
            panic!("waited {WAIT:?} for {what}");
        }
        Poll::Pending
    })
    .await
}

/// Sleeps on `runtime`'s timer.
pub async fn sleep(runtime: &Arc<dyn Runtime>, duration: Duration) {
    let deadline = runtime.now() + duration;
    let mut alarm = Alarm::default();
    std::future::poll_fn(|cx| alarm.poll_at(&**runtime, deadline, cx)).await
}

/// The subscription's next item, failing the test if it ends or takes too long.
pub async fn next(runtime: &Arc<dyn Runtime>, sub: &mut Subscription) -> Event {
    let channel = sub.channel().to_owned();
    match within(runtime, &format!("an item on {channel:?}"), sub.recv()).await {
        Some(event) => event,
        None => panic!(
            "the subscription to {channel:?} ended ({:?}) while an item was expected",
            sub.end_reason()
        ),
    }
}

/// The subscription's next item, which must be a notification.
pub async fn next_notification(runtime: &Arc<dyn Runtime>, sub: &mut Subscription) -> Notification {
    match next(runtime, sub).await {
        Event::Notification(n) => n,
        other => panic!(
            "expected a notification on {:?}, got {other:?}",
            sub.channel()
        ),
    }
}

/// Polls `condition` every 20 ms until it holds, failing the test after
/// [`WAIT`]. For state that changes without an event to await (server-side
/// views, counters).
pub async fn eventually(
    runtime: &Arc<dyn Runtime>,
    what: &str,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        sleep(runtime, Duration::from_millis(20)).await;
    }
}

/// Runs `futures` concurrently and returns their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(&mut outputs) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// `skip_own` against the server at `url` (directly, or through a pooler):
/// a listener and a publisher each send one notification; a `skip_own`
/// subscriber sees only the publisher's, an ordinary one both, and the
/// listener's own carries its `backend_pid` (the server backend's, which a
/// pooler does not make up).
pub async fn skip_own_drops_the_listeners_own_only(
    runtime: &Arc<dyn Runtime>,
    url: &str,
    name: &str,
) {
    let listener = listen(runtime, config(url, name)).await;
    let publisher = listen(runtime, config(url, &format!("{name}-publisher"))).await;
    let mut others = listener
        .subscribe_with("own", pgnotify_core::SubscribeOptions::new().skip_own())
        .await
        .expect("subscribe");
    let mut everyone = listener.subscribe("own").await.expect("subscribe");
    listener.notify("own", "mine").await.expect("notify");
    publisher.notify("own", "theirs").await.expect("notify");
    let mine = next_notification(runtime, &mut everyone).await;
    let theirs = next_notification(runtime, &mut everyone).await;
    assert_eq!((&*mine.payload, &*theirs.payload), ("mine", "theirs"));
    assert_eq!(
        Some(mine.process_id),
        listener.backend_pid(),
        "the listener's own notification carries its backend_pid"
    );
    let n = next_notification(runtime, &mut others).await;
    assert_eq!(
        &*n.payload, "theirs",
        "skip_own let the listener's own notification through"
    );
    assert_ne!(Some(n.process_id), listener.backend_pid());
    assert_eq!(listener.stats().notifications_filtered, 1);
    listener.close().await;
    publisher.close().await;
}
