//! The task that owns the socket and drives the bus.
//!
//! One pass of the loop, in the manner of str0m:
//!
//! ```text
//! input = poll_input()        connect/TLS result, a chunk read, the timer, or a handle's command
//! lock
//!   feed(input)               handle_connected / handle_tls_established / handle_input / handle_closed / handle_timeout
//!   drain()                   poll_output until None: Transmit → write buffer,
//!                             Action → connect/TLS/disconnect, Event → slots and wakers
//! unlock, wake the subscribers that became readable
//! ```
//!
//! Between passes the task sleeps on the socket (read only while
//! [`Bus::wants_input`], write while output is buffered), the in-flight
//! connect or TLS handshake, one timer armed at [`Bus::poll_timeout`], and
//! the [`Signal`](crate::signal::Signal) handles raise after a command.
//! Nothing blocks the loop: connecting and the TLS handshake are futures it
//! polls alongside everything else.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use pgnotify_core::bus::{
    Action, Bus, BusEvent, Output, TlsTarget, TransportError, TransportErrorKind,
};

use crate::connect::{ConnectError, connect};
use crate::observe::Observer;
use crate::runtime::{Alarm, BoxFuture, Runtime, Transport};
use crate::shared::{Shared, State};
use crate::stream::MaybeTlsStream;
use crate::tls::{TlsConnector, TlsError};

/// Bytes read from the socket per chunk; each chunk is one `handle_input`,
/// and each readable subscriber is woken once per chunk.
const READ_CHUNK: usize = 64 * 1024;

/// Passes per poll before the task yields to the executor, so that a busy
/// socket cannot starve the other tasks on its thread.
const PASSES_PER_POLL: usize = 32;

/// Chunks read per poll before the task yields: a flood must not keep the
/// subscribers it wakes (or the future given to `block_on`) from running,
/// or a dropping policy would discard what they could have taken. Four
/// chunks (256 KiB) keep the per-chunk batching that makes a drain fast.
const READS_PER_POLL: usize = 4;

/// A finished TLS handshake: the stream back, and the channel-binding data.
type Handshake = (MaybeTlsStream, Result<Option<Vec<u8>>, TlsError>);

/// What woke the loop.
enum Input {
    /// A handle changed the bus (or the task just started): drain it.
    Command,
    Connected(Result<Box<dyn Transport>, ConnectError>),
    TlsDone(MaybeTlsStream, Result<Option<Vec<u8>>, TlsError>),
    /// This many bytes are in the read buffer.
    Data(usize),
    Closed(TransportError),
    Timeout,
}

/// An operation the loop is waiting on besides the socket.
enum InFlight {
    Connect(BoxFuture<Result<Box<dyn Transport>, ConnectError>>),
    Tls(BoxFuture<Handshake>),
}

/// The driver task: spawned once per listener by
/// [`ListenerBuilder::connect`](crate::ListenerBuilder::connect).
pub(crate) struct Driver {
    shared: Arc<Shared>,
    runtime: Arc<dyn Runtime>,
    stream: Option<MaybeTlsStream>,
    in_flight: Option<InFlight>,
    /// The last TLS connector built, reused while the target is the same.
    tls: Option<(TlsTarget, TlsConnector)>,
    read_buf: Box<[u8]>,
    write_buf: Vec<u8>,
    written: usize,
    /// The one timer, armed at `deadline`.
    alarm: Alarm,
    /// The bus's `poll_timeout` and `wants_input` as of the last drain.
    deadline: Option<Instant>,
    wants_input: bool,
    /// Wakers collected under the lock, woken after it.
    wake: Vec<Waker>,
    /// Logs and metrics about the bus (see the `observe` module).
    observer: Observer,
    started: bool,
    finished: bool,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let observer = Observer::new();
        Self {
            runtime: shared.runtime.clone(),
            shared,
            stream: None,
            in_flight: None,
            tls: None,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            write_buf: Vec::new(),
            written: 0,
            alarm: Alarm::default(),
            deadline: None,
            wants_input: true,
            wake: Vec::new(),
            observer,
            started: false,
            finished: false,
        }
    }

    /// One pass: feed the input, drain the outputs, wake who must be woken.
    fn step(&mut self, input: Input) {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        let now = self.runtime.now();
        // A bare command (a handle's notify or subscribe) is observed with
        // the input or events it leads to.
        let quiet = matches!(input, Input::Command);
        self.feed(&mut state.bus, input, now);
        if self.drain(&mut state, now) || !quiet {
            self.observer.after_pass(&state.bus, now);
        }
        drop(state);
        self.wake.drain(..).for_each(Waker::wake);
    }

    fn feed(&mut self, bus: &mut Bus, input: Input, now: Instant) {
        match input {
            Input::Command => {}
            Input::Connected(Ok(transport)) => {
                self.stream = Some(MaybeTlsStream::new(transport));
                bus.handle_connected(now);
            }
            Input::Connected(Err(e)) => bus.handle_closed(now, connect_failure(e)),
            Input::TlsDone(stream, Ok(binding)) => {
                self.stream = Some(stream);
                bus.handle_tls_established(now, binding);
            }
            Input::TlsDone(_, Err(e)) => bus.handle_closed(now, tls_failure(e)),
            Input::Data(n) => bus.handle_input(now, &self.read_buf[..n]),
            Input::Closed(error) => bus.handle_closed(now, error),
            Input::Timeout => bus.handle_timeout(now),
        }
    }

    /// The drive contract's loop (`Bus::poll_output`): transmits are
    /// buffered for `poll_write`, actions acted on, events dispatched to
    /// their slots. Returns whether there were events.
    fn drain(&mut self, state: &mut State, now: Instant) -> bool {
        let mut events = false;
        while let Some(output) = state.bus.poll_output(&mut self.write_buf) {
            match output {
                // Written by `poll_write`, before the next read.
                Output::Transmit => {}
                Output::Action(action) => self.act(&mut state.bus, action, now),
                Output::Event(event) => {
                    events = true;
                    self.finished |= matches!(event, BusEvent::Closed);
                    self.observer.event(&event, &state.bus);
                    state.dispatch(event, &mut self.wake);
                }
                // Outputs added to the core later are unknown to this driver.
                _ => {}
            }
        }
        // The observer's deadline publishes the last changes of a burst; a
        // `handle_timeout` with nothing due is harmless to the bus.
        self.deadline = match (state.bus.poll_timeout(), self.observer.deadline()) {
            (Some(bus), Some(observer)) => Some(bus.min(observer)),
            (bus, observer) => bus.or(observer),
        };
        self.wants_input = state.bus.wants_input();
        events
    }

    fn act(&mut self, bus: &mut Bus, action: Action, now: Instant) {
        match action {
            Action::Connect(target) => {
                self.disconnect();
                let runtime = self.runtime.clone();
                self.in_flight = Some(InFlight::Connect(Box::pin(async move {
                    let keepalive = &target.keepalive;
                    connect(&*runtime, &target.host, target.connect_timeout, keepalive).await
                })));
            }
            Action::StartTls(target) => match (self.connector(&target), self.stream.take()) {
                (Ok(connector), Some(mut stream)) => {
                    self.in_flight = Some(InFlight::Tls(Box::pin(async move {
                        let result = stream.start_tls(&connector, &target.server_name).await;
                        (stream, result)
                    })));
                }
                (Err(e), _) => bus.handle_closed(now, tls_failure(e)),
                (Ok(_), None) => bus.handle_closed(
                    now,
                    TransportError::new(TransportErrorKind::Tls, "no open connection to upgrade"),
                ),
            },
            Action::Disconnect => self.disconnect(),
            Action::SideCheck(check) => {
                let tls = self.connector(&check.tls);
                crate::guard::spawn_check(&self.shared, check, tls.ok());
            }
            Action::SidePublish(publish) => {
                let tls = self.connector(&publish.session.tls);
                crate::side_publish::spawn(&self.shared, publish, tls.ok());
            }
            // Actions added to the core later are unknown to this driver.
            _ => {}
        }
    }

    /// The TLS connector for `target`, built once per distinct target (the
    /// host name aside: it is given per handshake).
    fn connector(&mut self, target: &TlsTarget) -> Result<TlsConnector, TlsError> {
        if let Some((cached, connector)) = &self.tls {
            let same = (
                &cached.ssl_mode,
                &cached.root_cert,
                &cached.client_cert,
                &cached.client_key,
            ) == (
                &target.ssl_mode,
                &target.root_cert,
                &target.client_cert,
                &target.client_key,
            );
            if same {
                return Ok(connector.clone());
            }
        }
        let connector = TlsConnector::for_target(target)?;
        self.tls = Some((target.clone(), connector.clone()));
        Ok(connector)
    }

    /// Drops the connection, and any connect or handshake in flight, after
    /// one best-effort attempt to send what is buffered (on close, that is
    /// the Terminate message).
    fn disconnect(&mut self) {
        self.in_flight = None;
        if let Some(mut stream) = self.stream.take() {
            let mut cx = Context::from_waker(Waker::noop());
            let mut pending = &self.write_buf[self.written..];
            while let Poll::Ready(Ok(n @ 1..)) = stream.poll_write(&mut cx, pending) {
                pending = &pending[n..];
            }
            let _ = stream.poll_flush(&mut cx);
        }
        self.write_buf.clear();
        self.written = 0;
    }

    /// Everything the loop waits on, in turn; `Ready` with the first input.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<Input> {
        if !std::mem::replace(&mut self.started, true) {
            return Poll::Ready(Input::Command);
        }
        if let Poll::Ready(input) = self.poll_in_flight(cx) {
            return Poll::Ready(input);
        }
        if let Err(e) = self.poll_write(cx) {
            self.lose_stream();
            return Poll::Ready(Input::Closed(io_failure(e)));
        }
        // A deadline that has passed comes before more input: a socket that
        // never runs dry must not hold the timers back.
        if self.deadline.is_some_and(|d| self.runtime.now() >= d) {
            return Poll::Ready(Input::Timeout);
        }
        if self.wants_input {
            if let Poll::Ready(input) = self.poll_read(cx) {
                return Poll::Ready(input);
            }
        }
        if self.poll_timer(cx).is_ready() {
            return Poll::Ready(Input::Timeout);
        }
        self.shared
            .driver_signal()
            .poll(cx)
            .map(|()| Input::Command)
    }

    fn poll_in_flight(&mut self, cx: &mut Context<'_>) -> Poll<Input> {
        let input = match self.in_flight.as_mut() {
            None => return Poll::Pending,
            Some(InFlight::Connect(f)) => match f.as_mut().poll(cx) {
                Poll::Ready(result) => Input::Connected(result),
                Poll::Pending => return Poll::Pending,
            },
            Some(InFlight::Tls(f)) => match f.as_mut().poll(cx) {
                Poll::Ready((stream, result)) => Input::TlsDone(stream, result),
                Poll::Pending => return Poll::Pending,
            },
        };
        self.in_flight = None;
        Poll::Ready(input)
    }

    /// Writes the buffered output; `Ok` also when the socket is full (the
    /// task is then woken when it drains).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        while self.written < self.write_buf.len() {
            match stream.poll_write(cx, &self.write_buf[self.written..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        self.write_buf.clear();
        self.written = 0;
        if stream.wants_flush() {
            if let Poll::Ready(Err(e)) = stream.poll_flush(cx) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Input> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Pending;
        };
        let input = match stream.poll_read(cx, &mut self.read_buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) => Input::Closed(TransportError::new(
                TransportErrorKind::Closed,
                "end of stream",
            )),
            Poll::Ready(Ok(n)) => return Poll::Ready(Input::Data(n)),
            Poll::Ready(Err(e)) => Input::Closed(io_failure(e)),
        };
        self.lose_stream();
        Poll::Ready(input)
    }

    /// Forgets a stream that failed or ended, with whatever it had left to
    /// send: none of it may reach the next connection.
    fn lose_stream(&mut self) {
        self.stream = None;
        self.write_buf.clear();
        self.written = 0;
    }

    /// `Ready` once the bus's (or the observer's) deadline has passed. The
    /// timer is re-armed only when the deadline changes, and its firing is
    /// checked against the runtime's clock.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.deadline {
            Some(deadline) => self.alarm.poll_at(&*self.runtime, deadline, cx),
            None => Poll::Pending,
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut reads = 0;
        for _ in 0..PASSES_PER_POLL {
            let Poll::Ready(input) = this.poll_input(cx) else {
                return Poll::Pending;
            };
            let read = matches!(input, Input::Data(_));
            this.step(input);
            if this.finished {
                this.disconnect();
                return Poll::Ready(());
            }
            reads += usize::from(read);
            if reads == READS_PER_POLL {
                break;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Driver {
    /// Whether the bus closed or the runtime dropped the task, every waiter
    /// is released: subscriptions end, publishes get a result, `close` and
    /// `connect` return.
    fn drop(&mut self) {
        self.disconnect();
        let shared = self.shared.clone();
        let mut state = shared.lock();
        if !self.finished {
            let now = self.runtime.now();
            state.close(now);
            state.bus.handle_closed(
                now,
                TransportError::new(TransportErrorKind::Closed, "the listener's task stopped"),
            );
            while let Some(event) = state.bus.poll_event() {
                state.dispatch(event, &mut self.wake);
            }
        }
        // Before anyone can see the listener stopped: its gauges go back to zero.
        self.observer.stopped(&state.bus);
        state.lifecycle.driver_stopped = true;
        state.lifecycle.closing = true;
        state.wake_lifecycle(&mut self.wake);
        state.events.end(&mut self.wake);
        for slot in state.subscribers.values_mut() {
            self.wake.extend(slot.waker.take());
        }
        for slot in state.publishes.values_mut() {
            self.wake.extend(slot.waker.take());
        }
        drop(state);
        self.wake.drain(..).for_each(Waker::wake);
    }
}

fn connect_failure(e: ConnectError) -> TransportError {
    e.into_transport_error()
}

/// The TLS error is kept as the source, for an application to downcast.
fn tls_failure(e: TlsError) -> TransportError {
    let kind = match e {
        TlsError::Io(_) | TlsError::Closed => TransportErrorKind::Io,
        _ => TransportErrorKind::Tls,
    };
    TransportError::new(kind, e.to_string()).with_source(e)
}

/// A read or write failed; the `io::Error` is kept as the source.
fn io_failure(e: io::Error) -> TransportError {
    TransportError::new(TransportErrorKind::Io, e.to_string()).with_source(e)
}
