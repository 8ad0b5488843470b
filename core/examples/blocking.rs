//! A complete driver for `pgnotify-core` on `std` alone: blocking sockets
//! (TCP, or a unix socket on unix), its timers from `Bus::poll_timeout`,
//! reconnects, and the server guard's second session. No runtime, no TLS,
//! no dependency but the core.
//!
//! It follows the drive contract written at the top of `Bus`, and is kept
//! as the reference for it: when the contract changes, this file changes
//! with it. The test kit runs it against a real server
//! (`testkit/tests/blocking_example.rs`: listen, publish, a burst, the
//! backend killed, the gap, receiving again).
//!
//! ```text
//! cargo run -p pgnotify-core --example blocking -- <url> <channel> [<payload>...]
//! ```
//!
//! It listens on `<channel>`, publishes each `<payload>` once it listens,
//! and prints a line for everything that happens until it is killed:
//!
//! ```text
//! ready jobs
//! connected generation=1
//! published
//! notification jobs pid=4242 payload=hello
//! disconnected: the server ended the session: terminating connection due to administrator command
//! gap: reconnected (generation 2); notifications may have been lost
//! connected generation=2
//! ```
//!
//! The bus is made with `Bus::without_tls`: the default `sslmode=prefer`
//! connects in plain text even to a server that offers TLS, and
//! `sslmode=require` (or stronger) is refused before anything is sent.

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgnotify_core::bus::Output;
use pgnotify_core::bus::{
    Action, Bus, BusEvent, CheckKind, ConnectTarget, SessionStatus, SideCheck, SubscriberId,
    TransportError, TransportErrorKind,
};
use pgnotify_core::config::HostSpec;
use pgnotify_core::{Config, Event, SubscribeOptions};

/// The most items taken per announcement. Any size works: readiness is
/// level-triggered, so the bus announces a subscriber again while it has
/// items left.
const BATCH: usize = 64;

/// The longest one turn waits for input, so that `run` sees its stop flag.
const MAX_WAIT: Duration = Duration::from_millis(250);

/// How long one address may take to connect when `connect_timeout` is
/// unset. A blocking connect cannot be interrupted by the bus's timer; the
/// bus's own deadline for the attempt still fails it afterwards.
const DEFAULT_CONNECT_LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, channel, payloads @ ..] = args.as_slice() else {
        eprintln!("usage: blocking <url> <channel> [<payload>...]");
        return ExitCode::from(2);
    };
    let config = match Config::parse_with_env(url, std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("blocking: {e}");
            return ExitCode::from(2);
        }
    };
    let never = AtomicBool::new(false);
    match run(config, channel, payloads, &mut io::stdout().lock(), &never) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blocking: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Listens on `channel`, publishes `payloads` once listening, and writes a
/// line to `out` for everything that happens, until `stop` is set (seen
/// within [`MAX_WAIT`]); then closes the bus.
///
/// Fails on a bad channel, on a `sslmode` that needs TLS, and when the
/// first round of connection attempts fails for a reason retrying cannot
/// fix (a wrong password, a missing database).
pub(crate) fn run(
    config: Config,
    channel: &str,
    payloads: &[String],
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<(), Box<dyn Error>> {
    let mut driver = Driver::new(config)?;
    let subscriber = driver.bus.subscribe(channel, SubscribeOptions::default())?;
    let mut unpublished = payloads.to_vec();
    while !stop.load(Ordering::Relaxed) {
        for happening in driver.turn(MAX_WAIT) {
            match happening {
                // One subscriber here; a driver with many routes by id.
                Happening::Item(id, _) if id != subscriber => {}
                Happening::Item(_, Event::Notification(n)) => writeln!(
                    out,
                    "notification {} pid={} payload={}",
                    n.channel, n.process_id, n.payload
                )?,
                Happening::Item(_, Event::Gap(gap)) => writeln!(out, "gap: {gap}")?,
                Happening::Item(_, other) => writeln!(out, "item: {other:?}")?,
                Happening::Bus(BusEvent::SubscriberReady(_)) => {
                    writeln!(out, "ready {channel}")?;
                    for payload in unpublished.drain(..) {
                        // Sent with the next turn's first pass.
                        driver.bus.notify(Instant::now(), channel, &payload)?;
                    }
                }
                Happening::Bus(BusEvent::SubscriberEnded(_, reason)) => {
                    writeln!(out, "ended: {reason}")?;
                    return Ok(());
                }
                Happening::Bus(BusEvent::PublishDone(_, Ok(()))) => writeln!(out, "published")?,
                Happening::Bus(BusEvent::PublishDone(_, Err(e))) => {
                    writeln!(out, "publish failed: {e}")?
                }
                Happening::Bus(BusEvent::Connected { generation }) => {
                    writeln!(out, "connected generation={generation}")?
                }
                Happening::Bus(BusEvent::Disconnected { error }) => {
                    writeln!(out, "disconnected: {error}")?
                }
                Happening::Bus(BusEvent::ConnectFailed {
                    error,
                    first_attempt,
                }) => {
                    writeln!(out, "connect failed: {error}")?;
                    if first_attempt && !error.is_transient() {
                        return Err(error.into());
                    }
                }
                Happening::Bus(other) => writeln!(out, "event: {other:?}")?,
            }
        }
    }
    driver.close();
    Ok(())
}

/// What the driver hands the application after a turn.
#[derive(Debug)]
pub(crate) enum Happening {
    /// Something the bus reported (connected, a publish done, ...).
    Bus(BusEvent),
    /// An item a subscriber took: a notification or a gap.
    Item(SubscriberId, Event),
}

/// A bus, the one transport it asked for, and buffers.
pub(crate) struct Driver {
    /// The bus: for application commands and getters. Their output is
    /// acted on at the start of the next [`turn`](Self::turn).
    pub(crate) bus: Bus,
    transport: Option<Transport>,
    write_timeout: Duration,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    items: Vec<Event>,
}

impl Driver {
    /// A driver, and a bus that connects in plain text (this driver has no
    /// TLS).
    pub(crate) fn new(config: Config) -> Result<Self, pgnotify_core::ConfigError> {
        // A write that makes no progress for a ping timeout means a dead
        // peer: the same limit the bus gives a ping's answer.
        let write_timeout = config.ping_timeout();
        Ok(Self {
            bus: Bus::without_tls(config, Instant::now())?,
            transport: None,
            write_timeout,
            read_buf: vec![0; 64 * 1024],
            write_buf: Vec::new(),
            items: Vec::new(),
        })
    }

    /// One turn: act on the output of whatever happened since the last
    /// turn, wait for input until the bus's next timer (at most `max_wait`),
    /// feed what came, fire the timer if it is due, act on the output again.
    /// Returns what happened, in order.
    pub(crate) fn turn(&mut self, max_wait: Duration) -> Vec<Happening> {
        let mut happened = Vec::new();
        self.drive(&mut happened);
        let now = Instant::now();
        let wait = match self.bus.poll_timeout() {
            Some(at) => at.saturating_duration_since(now).min(max_wait),
            None => max_wait,
        };
        let wants_input = self.bus.wants_input();
        let read = match self.transport.as_mut() {
            Some(transport) if wants_input => Some(transport.read_within(&mut self.read_buf, wait)),
            _ => None,
        };
        match read {
            Some(Ok(Some(0))) => self.lost(TransportErrorKind::Closed, "end of stream".into()),
            Some(Ok(Some(n))) => self.bus.handle_input(Instant::now(), &self.read_buf[..n]),
            Some(Ok(None)) => {}
            Some(Err(e)) => self.lost(TransportErrorKind::Io, format!("reading: {e}")),
            // No transport (the backoff), or reading paused on purpose: only
            // the timer or the application can change anything now.
            None => std::thread::sleep(wait),
        }
        let now = Instant::now();
        if self.bus.poll_timeout().is_some_and(|at| now >= at) {
            self.bus.handle_timeout(now);
        }
        self.drive(&mut happened);
        happened
    }

    /// Closes the bus (`UNLISTEN *`, Terminate) and turns until it is
    /// closed; the bus itself gives up on the server after `ping_timeout`.
    pub(crate) fn close(&mut self) {
        self.bus.close(Instant::now());
        let give_up = Instant::now() + 2 * self.bus.config().ping_timeout();
        while Instant::now() < give_up {
            let happened = self.turn(MAX_WAIT);
            if happened
                .iter()
                .any(|h| matches!(h, Happening::Bus(BusEvent::Closed)))
            {
                return;
            }
        }
    }

    /// The contract's loop: the outputs in order, until a whole pass finds
    /// nothing. Acting on an action or an event (connecting, taking items)
    /// creates output of its own, which `poll_output` gives next.
    fn drive(&mut self, happened: &mut Vec<Happening>) {
        while let Some(output) = self.bus.poll_output(&mut self.write_buf) {
            match output {
                Output::Transmit => self.write(),
                Output::Action(action) => self.act(action),
                Output::Event(BusEvent::SubscriberReadable(id)) => self.take(id, happened),
                Output::Event(other) => happened.push(Happening::Bus(other)),
                other => eprintln!("blocking: an output this driver does not know: {other:?}"),
            }
        }
    }

    /// Takes one batch of subscriber `id`'s items. If it leaves some, the
    /// bus announces `id` again and `drive` comes back for them.
    fn take(&mut self, id: SubscriberId, happened: &mut Vec<Happening>) {
        self.bus
            .drain_events(Instant::now(), id, &mut self.items, BATCH);
        happened.extend(self.items.drain(..).map(|item| Happening::Item(id, item)));
    }

    /// Writes what `poll_transmit` gave, all of it, before anything else.
    fn write(&mut self) {
        let result = match self.transport.as_mut() {
            Some(transport) => transport.write_all(&self.write_buf),
            // The bus gives bytes only while a transport is open.
            None => Ok(()),
        };
        self.write_buf.clear();
        if let Err(e) = result {
            self.lost(TransportErrorKind::Io, format!("writing: {e}"));
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect(target) => {
                let limit = target.connect_timeout.unwrap_or(DEFAULT_CONNECT_LIMIT);
                match connect(&target, limit) {
                    Ok(transport) => match transport.set_write_timeout(self.write_timeout) {
                        Ok(()) => {
                            self.transport = Some(transport);
                            self.bus.handle_connected(Instant::now());
                        }
                        Err(e) => self.bus.handle_closed(
                            Instant::now(),
                            TransportError::new(
                                TransportErrorKind::Connect,
                                format!("setting the write timeout: {e}"),
                            ),
                        ),
                    },
                    Err(e) => self.bus.handle_closed(Instant::now(), e),
                }
            }
            Action::Disconnect => {
                // Writes are synchronous: what came before is written.
                if let Some(transport) = self.transport.take() {
                    transport.shutdown();
                }
            }
            Action::StartTls(_) => {
                // Never asked of a bus made `without_tls`; a driver with TLS
                // runs the handshake here.
                self.lost(TransportErrorKind::Tls, "this driver has no TLS".into());
            }
            Action::SideCheck(check) => {
                let result = run_side_check(&check, self.bus.config().ping_timeout());
                // Each kind of check reports where its kind says.
                match check.kind {
                    CheckKind::DeliveryProbe { .. } => {
                        self.bus
                            .handle_delivery_probe(Instant::now(), result.map(drop));
                    }
                    _ => self.bus.handle_server_queue_usage(Instant::now(), result),
                }
            }
            other => eprintln!("blocking: an action this driver does not know: {other:?}"),
        }
    }

    /// The transport failed or closed: forget it and tell the bus.
    fn lost(&mut self, kind: TransportErrorKind, message: String) {
        self.transport = None;
        self.bus
            .handle_closed(Instant::now(), TransportError::new(kind, message));
    }
}

/// Opens what an [`Action::Connect`] asks for, each address within `limit`.
fn connect(target: &ConnectTarget, limit: Duration) -> Result<Transport, TransportError> {
    match &target.host {
        HostSpec::Tcp {
            host,
            port,
            hostaddr,
        } => {
            let addresses: Vec<SocketAddr> = match hostaddr {
                Some(ip) => vec![SocketAddr::new(*ip, *port)],
                // std resolves without a timeout of its own.
                None => (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| {
                        TransportError::new(TransportErrorKind::Resolve, format!("{host:?}: {e}"))
                    })?
                    .collect(),
            };
            let mut last = TransportError::new(
                TransportErrorKind::Resolve,
                format!("{host:?} has no address"),
            );
            for address in addresses {
                match TcpStream::connect_timeout(&address, limit) {
                    Ok(stream) => {
                        // Small queries (pings, LISTEN) must not wait for Nagle.
                        let _ = stream.set_nodelay(true);
                        return Ok(Transport::Tcp(stream));
                    }
                    Err(e) => {
                        let kind = match e.kind() {
                            io::ErrorKind::TimedOut => TransportErrorKind::ConnectTimedOut,
                            _ => TransportErrorKind::Connect,
                        };
                        last = TransportError::new(kind, format!("{host} ({address}): {e}"));
                    }
                }
            }
            Err(last)
        }
        #[cfg(unix)]
        unix @ HostSpec::Unix { .. } => {
            let path = unix.socket_path().unwrap_or_default();
            std::os::unix::net::UnixStream::connect(&path)
                .map(Transport::Unix)
                .map_err(|e| {
                    TransportError::new(
                        TransportErrorKind::Connect,
                        format!("unix socket {}: {e}", path.display()),
                    )
                })
        }
        #[cfg(not(unix))]
        HostSpec::Unix { .. } => Err(TransportError::new(
            TransportErrorKind::Connect,
            "unix sockets need a unix system",
        )),
    }
}

/// Runs a second session's check ([`Action::SideCheck`]) on a second
/// session, within `limit`. The listening connection waits meanwhile; it is
/// paused anyway while the guard runs.
fn run_side_check(check: &SideCheck, limit: Duration) -> Result<f64, String> {
    let give_up = Instant::now() + limit;
    let mut transport = connect(&check.connect, limit).map_err(|e| e.to_string())?;
    transport
        .set_write_timeout(limit)
        .map_err(|e| e.to_string())?;
    let mut session = check.session();
    let (mut out, mut buf) = (Vec::new(), vec![0; 16 * 1024]);
    loop {
        let status = session.poll_status();
        if session.poll_transmit(&mut out) {
            transport.write_all(&out).map_err(|e| e.to_string())?;
            out.clear();
        }
        match status {
            SessionStatus::Running => {}
            SessionStatus::Done(usage) => return usage,
            SessionStatus::StartTls => return Err("the server asked for TLS".into()),
            other => return Err(format!("an unknown session status: {other:?}")),
        }
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no answer within {limit:?}"));
        }
        match transport.read_within(&mut buf, left) {
            Ok(Some(0)) => session.handle_closed("end of stream"),
            Ok(Some(n)) => session.handle_input(&buf[..n]),
            Ok(None) => {}
            Err(e) => session.handle_closed(&e.to_string()),
        }
    }
}

/// A connected socket.
enum Transport {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

impl Transport {
    /// Reads what is there, waiting at most `wait`: `Ok(None)` when nothing
    /// came, `Ok(Some(0))` at the end of the stream.
    fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<Option<usize>> {
        // A zero timeout is an error to std: wait at least a millisecond.
        let wait = Some(wait.max(Duration::from_millis(1)));
        let result = match self {
            Self::Tcp(s) => s.set_read_timeout(wait).and_then(|()| s.read(buf)),
            #[cfg(unix)]
            Self::Unix(s) => s.set_read_timeout(wait).and_then(|()| s.read(buf)),
        };
        match result {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes),
            #[cfg(unix)]
            Self::Unix(s) => s.write_all(bytes),
        }
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_write_timeout(Some(timeout)),
            #[cfg(unix)]
            Self::Unix(s) => s.set_write_timeout(Some(timeout)),
        }
    }

    /// Tells the server we are done; it then ends the session.
    fn shutdown(self) {
        let _ = match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Both),
            #[cfg(unix)]
            Self::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

/// Whether a read timed out (`WouldBlock` on unix, `TimedOut` on Windows).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
