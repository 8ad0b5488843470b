//! A test-only blocking driver for the core: real sockets, the real clock.
//!
//! [`ConnDriver`] drives one [`protocol::Connection`](Connection) and
//! [`BusDriver`] drives a [`Bus`], both over a [`std::net::TcpStream`] or a
//! [`std::os::unix::net::UnixStream`] with the loop the core documents:
//! write `poll_transmit`, act on `poll_action`, collect `poll_event`, read
//! with a socket timeout taken from `poll_timeout`, and call
//! `handle_timeout` when it is due. No TLS: these drivers talk to servers
//! with `ssl=off` (a `StartTls` request fails the test).
//!
//! Every wait has a generous deadline and panics with what it saw instead
//! of hanging, so a broken core fails the test rather than the CI job.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use pgnotify_core::bus::Output;
use pgnotify_core::bus::{
    Action, Bus, BusEvent, ConnectTarget, SubscriberId, SubscriberStatus, TransportError,
    TransportErrorKind,
};
use pgnotify_core::config::HostSpec;
use pgnotify_core::protocol::{
    CommandId, Connection, ConnectionError, QueryResult, ServerError, StartupParams, WireEvent,
};
use pgnotify_core::{Config, Event, Notification};

/// How long any single wait may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// The longest a read blocks when the core has no timer, so that waits
/// notice their own deadline.
const MAX_READ_BLOCK: Duration = Duration::from_millis(200);

// ------------------------------------------------------------------ sockets --

/// A connected TCP or unix-domain socket.
#[derive(Debug)]
pub(crate) enum Stream {
    /// A TCP connection (Nagle off).
    Tcp(TcpStream),
    /// A unix-domain socket connection.
    Unix(UnixStream),
}

/// What one read produced.
enum ReadOutcome {
    /// Some bytes (never zero).
    Data(usize),
    /// The read timed out.
    Idle,
    /// The peer closed the connection.
    Eof,
}

impl Stream {
    /// Connects to a TCP address (resolving names) within `timeout`.
    pub(crate) fn tcp(host: &str, port: u16, timeout: Duration) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host resolved to nothing");
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Self::Tcp(stream));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects to a unix-domain socket file.
    pub(crate) fn unix(path: &Path) -> io::Result<Self> {
        UnixStream::connect(path).map(Self::Unix)
    }

    /// Opens what a bus's [`Action::Connect`] asks for.
    fn connect(target: &ConnectTarget) -> Result<Self, TransportError> {
        let timeout = target.connect_timeout.unwrap_or(Duration::from_secs(10));
        let result = match &target.host {
            HostSpec::Tcp {
                host,
                port,
                hostaddr,
            } => match hostaddr {
                Some(ip) => Self::tcp(&ip.to_string(), *port, timeout),
                None => Self::tcp(host, *port, timeout),
            },
            unix @ HostSpec::Unix { .. } => {
                let path = unix.socket_path().expect("a unix host has a socket path");
                Self::unix(&path)
            }
        };
        result.map_err(|e| {
            let kind = match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    TransportErrorKind::ConnectTimedOut
                }
                _ => TransportErrorKind::Connect,
            };
            TransportError::new(kind, e.to_string())
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes),
            Self::Unix(s) => s.write_all(bytes),
        }
    }

    /// Reads what is there, waiting at most `wait` (at least a millisecond).
    fn read_for(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<ReadOutcome> {
        let wait = Some(wait.max(Duration::from_millis(1)));
        let result = match self {
            Self::Tcp(s) => s.set_read_timeout(wait).and_then(|()| s.read(buf)),
            Self::Unix(s) => s.set_read_timeout(wait).and_then(|()| s.read(buf)),
        };
        match result {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => Ok(ReadOutcome::Data(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(ReadOutcome::Idle)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(ReadOutcome::Idle),
            Err(e) => Err(e),
        }
    }

    fn shutdown_write(&self) {
        // The peer may already be gone; closing is best effort.
        let _ = match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Write),
            Self::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

// ------------------------------------------------------- one connection --

/// Drives one [`Connection`] over a blocking socket.
pub(crate) struct ConnDriver {
    conn: Connection,
    stream: Stream,
    events: VecDeque<WireEvent>,
    read_buf: Vec<u8>,
    eof: bool,
}

impl ConnDriver {
    /// Starts a connection on an open socket and sends its first bytes.
    pub(crate) fn start(stream: Stream, params: StartupParams) -> Self {
        let mut driver = Self {
            conn: Connection::new(params),
            stream,
            events: VecDeque::new(),
            read_buf: vec![0; 64 * 1024],
            eof: false,
        };
        driver.flush();
        driver
    }

    /// Connects over TCP to `127.0.0.1:port` and starts.
    pub(crate) fn tcp(port: u16, params: StartupParams) -> Self {
        let stream = Stream::tcp("127.0.0.1", port, WAIT).expect("connect over TCP");
        Self::start(stream, params)
    }

    /// The connection, for its getters and commands.
    pub(crate) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Whether the server closed the socket.
    pub(crate) fn saw_eof(&self) -> bool {
        self.eof
    }

    /// Writes whatever the connection has to send and collects its events.
    pub(crate) fn flush(&mut self) {
        let mut out = Vec::new();
        if self.conn.poll_transmit(&mut out) {
            // A write error shows up as EOF or an error on the next read.
            let _ = self.stream.write_all(&out);
        }
        while let Some(event) = self.conn.poll_event() {
            if event == WireEvent::StartTls {
                panic!("the blocking driver has no TLS; use a server with ssl=off");
            }
            self.events.push_back(event);
        }
    }

    /// Reads once (up to `wait`) and feeds the bytes in.
    fn read_once(&mut self, wait: Duration) {
        if self.eof {
            return;
        }
        match self.stream.read_for(&mut self.read_buf, wait) {
            Ok(ReadOutcome::Data(n)) => {
                let data = self.read_buf[..n].to_vec();
                self.conn.handle_input(&data);
            }
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::Eof) | Err(_) => self.eof = true,
        }
        self.flush();
    }

    /// The next event, reading as needed; `None` if the socket closed or
    /// [`WAIT`] passed first.
    pub(crate) fn next_event(&mut self) -> Option<WireEvent> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.flush();
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            let now = Instant::now();
            if self.eof || now >= deadline {
                return None;
            }
            self.read_once((deadline - now).min(MAX_READ_BLOCK));
        }
    }

    /// Runs until the first ReadyForQuery (`Ok`) or the connection fails
    /// (`Err`); parameter and notice events on the way are dropped.
    pub(crate) fn wait_ready(&mut self) -> Result<(), ConnectionError> {
        loop {
            match self.next_event() {
                Some(WireEvent::Ready) => return Ok(()),
                Some(WireEvent::Failed(e)) => return Err(e),
                Some(_) => {}
                None => panic!(
                    "no Ready or Failed (eof: {}, phase: {:?})",
                    self.eof,
                    self.conn.phase()
                ),
            }
        }
    }

    /// Runs until command `id` completes; notifications seen meanwhile are
    /// appended to `notifications`.
    pub(crate) fn wait_command(
        &mut self,
        id: CommandId,
        notifications: &mut Vec<Notification>,
    ) -> Result<QueryResult, ServerError> {
        loop {
            match self.next_event() {
                Some(WireEvent::CommandComplete { id: done, result }) if done == id => {
                    return result;
                }
                Some(WireEvent::Notification(n)) => notifications.push(n),
                Some(WireEvent::Failed(e)) => panic!("the connection failed: {e}"),
                Some(_) => {}
                None => panic!("command {id:?} did not complete (eof: {})", self.eof),
            }
        }
    }

    /// Runs a query to completion, collecting notifications.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        notifications: &mut Vec<Notification>,
    ) -> Result<QueryResult, ServerError> {
        let id = self.conn.simple_query(sql.to_owned());
        self.flush();
        self.wait_command(id, notifications)
    }

    /// Runs until a notification arrives.
    pub(crate) fn wait_notification(&mut self) -> Notification {
        loop {
            match self.next_event() {
                Some(WireEvent::Notification(n)) => return n,
                Some(WireEvent::Failed(e)) => panic!("the connection failed: {e}"),
                Some(_) => {}
                None => panic!("no notification arrived (eof: {})", self.eof),
            }
        }
    }

    /// Sends Terminate and closes the socket.
    pub(crate) fn terminate(mut self) {
        self.conn.terminate();
        self.flush();
        self.stream.shutdown_write();
    }
}

// ------------------------------------------------------------------ the bus --

/// Drives a [`Bus`] over blocking sockets, opening and closing them as the
/// bus asks.
pub(crate) struct BusDriver {
    bus: Bus,
    stream: Option<Stream>,
    /// A socket the bus disconnected, kept until the server closes its side
    /// so a test can wait for the server to have ended the session.
    closing: Option<Stream>,
    events: VecDeque<BusEvent>,
    read_buf: Vec<u8>,
    /// How many transports were opened (successfully).
    pub(crate) connects: usize,
}

impl BusDriver {
    /// A bus for `config`, with its first connection attempt made.
    pub(crate) fn new(config: Config) -> Self {
        let mut driver = Self {
            bus: Bus::new(config, Instant::now()),
            stream: None,
            closing: None,
            events: VecDeque::new(),
            read_buf: vec![0; 64 * 1024],
            connects: 0,
        };
        driver.pump();
        driver
    }

    /// The bus, for getters and application commands. Call
    /// [`pump`](Self::pump) after a command so its output is written.
    pub(crate) fn bus(&mut self) -> &mut Bus {
        &mut self.bus
    }

    /// Drains the bus's outputs (`Bus::poll_output`): writes bytes,
    /// performs actions, collects events, until there is nothing left.
    pub(crate) fn pump(&mut self) {
        let mut out = Vec::new();
        while let Some(output) = self.bus.poll_output(&mut out) {
            match output {
                Output::Transmit => {
                    match self.stream.as_mut() {
                        Some(stream) => {
                            if let Err(e) = stream.write_all(&out) {
                                self.transport_failed(TransportErrorKind::Io, e.to_string());
                            }
                        }
                        None => panic!("the bus transmitted {} bytes with no transport", out.len()),
                    }
                    out.clear();
                }
                Output::Action(action) => self.act(action),
                Output::Event(event) => self.events.push_back(event),
                other => panic!("the blocking driver does not know {other:?}"),
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect(target) => {
                assert!(self.stream.is_none(), "Connect while a transport is open");
                match Stream::connect(&target) {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        self.connects += 1;
                        self.bus.handle_connected(Instant::now());
                    }
                    Err(e) => self.bus.handle_closed(Instant::now(), e),
                }
            }
            Action::Disconnect => {
                if let Some(stream) = self.stream.take() {
                    stream.shutdown_write();
                    self.closing = Some(stream);
                }
            }
            Action::StartTls(target) => {
                panic!("the blocking driver has no TLS (asked for {target:?})")
            }
            other => panic!("the blocking driver does not know {other:?}"),
        }
    }

    fn transport_failed(&mut self, kind: TransportErrorKind, message: String) {
        self.stream = None;
        self.bus
            .handle_closed(Instant::now(), TransportError::new(kind, message));
    }

    /// One turn of the loop: read (or wait) until the next timer or at most
    /// `max_wait`, feed what came, fire a due timer, drain the outputs.
    pub(crate) fn turn(&mut self, max_wait: Duration) {
        self.pump();
        let now = Instant::now();
        let wait = match self.bus.poll_timeout() {
            Some(at) => at.saturating_duration_since(now).min(max_wait),
            None => max_wait,
        };
        self.drain_closing();
        match self.stream.as_mut() {
            Some(stream) if self.bus.wants_input() => {
                match stream.read_for(&mut self.read_buf, wait) {
                    Ok(ReadOutcome::Data(n)) => {
                        let data = self.read_buf[..n].to_vec();
                        self.bus.handle_input(Instant::now(), &data);
                    }
                    Ok(ReadOutcome::Idle) => {}
                    Ok(ReadOutcome::Eof) => self
                        .transport_failed(TransportErrorKind::Closed, "end of stream".to_owned()),
                    Err(e) => self.transport_failed(TransportErrorKind::Io, e.to_string()),
                }
            }
            // No socket to read, or reading paused on purpose: wait for the timer.
            _ => std::thread::sleep(wait),
        }
        let now = Instant::now();
        if self.bus.poll_timeout().is_some_and(|at| now >= at) {
            self.bus.handle_timeout(now);
        }
        self.pump();
    }

    /// Reads a disconnected socket without blocking, dropping it at EOF.
    fn drain_closing(&mut self) {
        if let Some(stream) = self.closing.as_mut() {
            loop {
                match stream.read_for(&mut self.read_buf, Duration::from_millis(1)) {
                    Ok(ReadOutcome::Data(_)) => continue,
                    Ok(ReadOutcome::Idle) => return,
                    Ok(ReadOutcome::Eof) | Err(_) => break,
                }
            }
            self.closing = None;
        }
    }

    /// Drives until the server has closed the last disconnected socket
    /// (after Terminate, its backend has ended the session).
    pub(crate) fn wait_transport_closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        while let Some(stream) = self.closing.as_mut() {
            assert!(
                Instant::now() < deadline,
                "the server did not close the socket"
            );
            match stream.read_for(&mut self.read_buf, MAX_READ_BLOCK) {
                Ok(ReadOutcome::Data(_) | ReadOutcome::Idle) => {}
                Ok(ReadOutcome::Eof) | Err(_) => self.closing = None,
            }
        }
    }

    /// Drives until an event matching `pred` arrives and returns it; other
    /// events stay queued in order. Panics after [`WAIT`].
    pub(crate) fn wait_event(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&BusEvent) -> bool,
    ) -> BusEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump();
            if let Some(i) = self.events.iter().position(&mut pred) {
                return self.events.remove(i).expect("the index was just found");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events queued: {:?}; stats: {:?}",
                self.events,
                self.bus.stats()
            );
            self.turn(MAX_READ_BLOCK);
        }
    }

    /// The events not yet taken by a wait, oldest first.
    pub(crate) fn take_events(&mut self) -> Vec<BusEvent> {
        self.pump();
        self.events.drain(..).collect()
    }

    /// Drives until `done` holds for the bus. Panics after [`WAIT`].
    pub(crate) fn drive_until(&mut self, what: &str, mut done: impl FnMut(&mut Bus) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump();
            if done(&mut self.bus) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events queued: {:?}; stats: {:?}",
                self.events,
                self.bus.stats()
            );
            self.turn(MAX_READ_BLOCK);
        }
    }

    /// Subscribes with `options` and drives until the subscriber is ready.
    pub(crate) fn subscribe_ready(
        &mut self,
        channel: &str,
        options: pgnotify_core::SubscribeOptions,
    ) -> SubscriberId {
        let id = self
            .bus
            .subscribe(channel, options)
            .expect("a valid channel");
        self.wait_event("SubscriberReady", |e| *e == BusEvent::SubscriberReady(id));
        assert_eq!(self.bus.subscriber_status(id), SubscriberStatus::Ready);
        id
    }

    /// Takes whatever subscriber `id` has queued.
    pub(crate) fn drain(&mut self, id: SubscriberId) -> Vec<Event> {
        let mut out = Vec::new();
        self.bus
            .drain_events(Instant::now(), id, &mut out, usize::MAX);
        self.pump();
        out
    }

    /// Drives until subscriber `id` has delivered `n` items in total and
    /// returns them. Panics after [`WAIT`] with what did arrive.
    pub(crate) fn wait_items(&mut self, id: SubscriberId, n: usize) -> Vec<Event> {
        let deadline = Instant::now() + WAIT;
        let mut items = Vec::new();
        loop {
            items.extend(self.drain(id));
            if items.len() >= n {
                return items;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} items for {id:?}; got {items:?}; stats: {:?}",
                self.bus.stats()
            );
            self.turn(MAX_READ_BLOCK);
        }
    }

    /// Drives until the bus is connected, listening and settled.
    pub(crate) fn wait_settled(&mut self) {
        self.drive_until("the bus to settle", |bus| {
            bus.stats().connected && bus.is_settled()
        });
    }
}

/// The payloads of the notifications among `items`, in order.
pub(crate) fn payloads(items: &[Event]) -> Vec<String> {
    items
        .iter()
        .filter_map(Event::notification)
        .map(|n| n.payload.to_string())
        .collect()
}
