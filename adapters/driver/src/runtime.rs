//! The seam between the driver and an async runtime.
//!
//! Everything the driver needs from a runtime is here: open a TCP or unix
//! socket, resolve a host name, read the clock, arm a timer and spawn a
//! task. The traits are
//! object safe so that the driver holds an `Arc<dyn Runtime>` and is compiled
//! once, whatever the runtime; each runtime crate implements them in about a
//! hundred lines.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// A boxed, sendable future, as returned by the [`Runtime`] methods.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An async runtime, as seen by the driver.
///
/// Implemented by `pgnotify-tokio`, `pgnotify-smol` and `pgnotify-async-std`;
/// implement it yourself to run pgnotify on another executor. Methods may be
/// called from any thread, and the futures they return are polled by the
/// driver's own task (the one given to [`spawn`](Runtime::spawn)).
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// Opens a TCP connection to `addr`.
    ///
    /// The driver applies its own connect timeout around the returned future
    /// and sets the socket options (keepalive, `TCP_USER_TIMEOUT`) afterwards
    /// through [`Transport::socket`].
    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn Transport>>>;

    /// Opens a connection to the unix-domain socket at `path`.
    ///
    /// Runtimes on platforms without unix sockets return an error of kind
    /// [`io::ErrorKind::Unsupported`].
    fn connect_unix(&self, path: &Path) -> BoxFuture<io::Result<Box<dyn Transport>>>;

    /// Resolves `host` to the socket addresses it names, each with `port`.
    ///
    /// The driver never calls this with an IP literal; it tries the returned
    /// addresses in order.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>>;

    /// The current time, on the clock the runtime's timers use.
    ///
    /// Every instant the driver gives the bus or compares with a deadline
    /// comes from here, so a runtime with a clock of its own (tokio's
    /// paused test clock, a simulation's virtual time) runs the driver on
    /// that clock. The default reads the system's monotonic clock.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Creates a timer that fires at `deadline`.
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>>;

    /// Runs `future` to completion in the background.
    ///
    /// The driver spawns exactly one task per `Listener`: the one that owns
    /// the socket.
    fn spawn(&self, future: BoxFuture<()>);
}

/// A connected byte stream (TCP or unix socket) driven by polling.
///
/// A deliberately small trait rather than `futures-io` or tokio's
/// `AsyncRead`/`AsyncWrite`: the runtimes disagree on those, and the driver
/// needs only these three methods. Implementations wake the task of the last
/// `Context` given when the stream becomes readable or writable again, as
/// usual.
pub trait Transport: Send + fmt::Debug + 'static {
    /// Reads bytes into `buf`; `Ok(0)` means the peer closed the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Writes some of `buf` and returns how many bytes were taken (at least
    /// one unless `buf` is empty).
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// The operating-system socket, for reading and setting socket options.
    fn socket(&self) -> socket2::SockRef<'_>;
}

/// A one-shot timer that can be re-armed.
///
/// The driver keeps one timer for its whole life and calls
/// [`reset`](Timer::reset) only when its deadline changes. It never trusts a
/// `Poll::Ready` alone: it compares [`Runtime::now`] with the deadline
/// afterwards ([`Alarm`]), so a timer that fires a little early or
/// spuriously is harmless.
pub trait Timer: Send + fmt::Debug {
    /// Moves the deadline to `deadline`, re-arming the timer if it had fired.
    fn reset(self: Pin<&mut Self>, deadline: Instant);

    /// Returns `Ready` once the deadline has passed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// A [`Timer`] checked against the runtime's clock: `Ready` only once
/// [`Runtime::now`] has reached the deadline.
///
/// A timer may fire a little early (its own clock's resolution) or
/// spuriously; an alarm then re-arms it and wakes its task, so it is polled
/// again rather than forgotten. The timer is made on the first poll and
/// re-armed only when the deadline changes. Every wait on a deadline in the
/// driver (its loop's timer, connect and lookup limits, the second session)
/// goes through one, and so can tests that sleep on a [`Runtime`].
///
/// ```
/// use std::future::poll_fn;
/// use std::time::Duration;
/// use pgnotify_driver::{Alarm, Runtime};
///
/// /// Sleeps for `duration` on `runtime`.
/// async fn sleep(runtime: &dyn Runtime, duration: Duration) {
///     let deadline = runtime.now() + duration;
///     let mut alarm = Alarm::default();
///     poll_fn(|cx| alarm.poll_at(runtime, deadline, cx)).await;
/// }
/// ```
#[derive(Debug, Default)]
pub struct Alarm {
    timer: Option<Pin<Box<dyn Timer>>>,
    /// The deadline `timer` is armed for.
    armed: Option<Instant>,
}

impl Alarm {
    /// `Ready` once `runtime.now()` is at or past `deadline`; otherwise the
    /// timer is armed for `deadline` (made, or reset if it was armed for
    /// another) and the task is woken when it fires.
    pub fn poll_at(
        &mut self,
        runtime: &dyn Runtime,
        deadline: Instant,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if runtime.now() >= deadline {
            return Poll::Ready(());
        }
        let timer = match &mut self.timer {
            Some(timer) => {
                if self.armed != Some(deadline) {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self.timer.insert(runtime.new_timer(deadline)),
        };
        self.armed = Some(deadline);
        if timer.as_mut().poll(cx).is_ready() {
            if runtime.now() >= deadline {
                return Poll::Ready(());
            }
            // Fired early: arm it again and have the task polled again,
            // or nothing would look at the re-armed timer.
            timer.as_mut().reset(deadline);
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// Waits for `future`, giving up at `deadline` (never, if `None`).
///
/// Returns `None` when the deadline passed first.
pub(crate) async fn with_deadline<T>(
    runtime: &dyn Runtime,
    deadline: Option<Instant>,
    future: impl Future<Output = T>,
) -> Option<T> {
    let mut future = std::pin::pin!(future);
    let Some(deadline) = deadline else {
        return Some(future.await);
    };
    let mut alarm = Alarm::default();
    std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        alarm.poll_at(runtime, deadline, cx).map(|()| None)
    })
    .await
}

/// A [`Transport`] over any `futures-io` stream (async-net, async-std, ...).
///
/// Runtimes built on `futures-io` wrap their sockets in this rather than
/// implementing [`Transport`] themselves. Needs the `futures-io` feature.
#[cfg(feature = "futures-io")]
#[derive(Debug)]
pub struct FuturesIo<S>(pub S);

#[cfg(feature = "futures-io")]
impl<S> Transport for FuturesIo<S>
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + fmt::Debug + 'static,
    for<'a> socket2::SockRef<'a>: From<&'a S>,
{
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn socket(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&self.0)
    }
}
