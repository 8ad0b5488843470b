//! The `bus_ops` target: arbitrary sequences of API calls, server events and
//! faults through the deterministic simulation ([`World`]), with the
//! ten invariants (ARCHITECTURE.md, "Invariants") checked after every step and every operation.
//!
//! # Input format
//!
//! Hand-made rather than derived with `arbitrary`, like the other targets, so
//! that a corpus file reads as a world followed by a schedule, seeds are easy
//! to write ([`Script`]) and checked-in files keep their meaning.
//!
//! - bytes 0–1: the world's seed (big-endian), which draws the bus's settings
//!   (ping interval and timeout, backoff, publish timeout, re-LISTEN checks)
//!   and the harness's own choices (chunk sizes, connect latency, payload
//!   shapes);
//! - byte 2: the world ([`world_flags`]): two hosts (host 1 a standby), and
//!   `target_session_attrs=read-write`;
//! - then operations: a byte names one ([`Op`], modulo their count) and the
//!   next bytes are its parameters (see each variant). Missing bytes read as
//!   zero.
//!
//! At most [`MAX_OPS`] operations run, with at most [`MAX_SUBSCRIBERS`]
//! subscribers and [`MAX_VIRTUAL_TIME`] of explicit time; then every fault
//! is healed, the world converges, every subscriber's tail is checked and
//! the bus is closed ([`Op::Close`] closes at once instead, faults and all).

use std::fmt;
use std::time::Duration;

use pgnotify_core::OverflowPolicy;
use pgnotify_core::bus::TransportErrorKind;

use crate::sim_server::{FaultPoint, ServerRole, ShutdownMode, SqlError};
use crate::simulation::{ConsumerKind, RunStats, Violation, World, WorldOptions};

/// The most operations one input runs.
pub const MAX_OPS: usize = 96;

/// The most subscribers one input makes; later subscribes do nothing.
pub const MAX_SUBSCRIBERS: usize = 24;

/// The most virtual time [`Op::Advance`] may move in one input; past it,
/// advancing only settles the current instant.
pub const MAX_VIRTUAL_TIME: Duration = Duration::from_secs(600);

/// Channels drawn from: case variants of one name (distinct channels to
/// PostgreSQL), quotes, a space, non-ASCII and the longest allowed name.
const CHANNELS: [&str; 8] = [
    "jobs",
    "Jobs",
    "mail",
    "a b",
    "quote\"d",
    "it's",
    "ünï",
    "c23456789012345678901234567890123456789012345678901234567890123",
];

const CAPACITIES: [usize; 8] = [1, 1, 2, 3, 4, 8, 64, 1024];
const BATCHES: [usize; 4] = [1, 2, 5, 64];
const MAX_BYTES: [Option<usize>; 4] = [None, Some(64), Some(500), Some(4096)];
const CONSUMERS: [ConsumerKind; 3] = [ConsumerKind::Fast, ConsumerKind::Slow, ConsumerKind::Never];
const SHUTDOWNS: [ShutdownMode; 3] = [
    ShutdownMode::Fast,
    ShutdownMode::Immediate,
    ShutdownMode::Crash,
];
const FAULT_POINTS: [FaultPoint; 6] = [
    FaultPoint::Startup,
    FaultPoint::Query,
    FaultPoint::Listen,
    FaultPoint::Unlisten,
    FaultPoint::Notify,
    FaultPoint::Commit,
];

/// The bits of the world byte.
pub mod world_flags {
    /// Two hosts; host 1 starts as a standby.
    pub const TWO_HOSTS: u8 = 1;
    /// `target_session_attrs=read-write`.
    pub const READ_WRITE: u8 = 1 << 1;
}

/// One operation of a `bus_ops` input, with the parameter bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Op {
    /// `[c, p, k]`: subscribe to `CHANNELS[c % 8]` with a `(c >> 4) % 3`
    /// consumer (fast, slow, never), policy `OverflowPolicy::ALL[p % 6]`,
    /// byte limit `(p >> 4) % 4` (none, 64, 500, 4096), capacity
    /// `[1, 1, 2, 3, 4, 8, 64, 1024][k % 8]` and drain batch
    /// `[1, 2, 5, 64][(k >> 4) % 4]`.
    Subscribe = 0,
    /// `[k]`: unsubscribe the `k`-th live subscriber (modulo their count).
    Unsubscribe = 1,
    /// `[k, n]`: subscriber `k` (modulo all made) drains `n` items, or all
    /// when `n` is zero.
    Drain = 2,
    /// `[h, notes...]`: another session commits on host `h & 1` (modulo the
    /// hosts) `1 + ((h >> 1) & 7) % 6` notifications, all in one transaction
    /// or, with `h & 0x10`, one transaction each. Each note byte names a
    /// channel (`n % 8`), or with `n & 0x80` repeats an earlier note of the
    /// transaction (collapsed by the server; skipped across transactions).
    External = 3,
    /// `[c]`: `Bus::notify` on `CHANNELS[c % 8]`.
    Publish = 4,
    /// `Bus::bounce`.
    Bounce = 5,
    /// `[m, a]`: move time: `m % 4` = 0 takes `1 + a % 8` steps, 1 settles
    /// the instant, 2 drives `a` ms, 3 drives `a × 100` ms.
    Advance = 6,
    /// The network cuts the bus's connection now.
    Disconnect = 7,
    /// `[hi, lo]`: the network cuts the connection once `u16 % 1024` bytes
    /// have crossed it (either way).
    DisconnectAt = 8,
    /// The connection stops carrying anything, both ways, without closing.
    BlackHole = 9,
    /// `[hi, lo]`: the server delays its replies on the connection by
    /// `u16 % 10000` ms.
    DelayReplies = 10,
    /// `[h]`: host `h` (modulo the hosts) refuses new connections.
    Refuse = 11,
    /// The server terminates the bus's backend (`pg_terminate_backend`).
    Terminate = 12,
    /// `[m]`: a server shuts down (`m % 3`: fast, immediate, crash): the
    /// bus's host, or with `m & 0x80` host `(m >> 2)` modulo the hosts.
    Shutdown = 13,
    /// Every host restarts and accepts connections again.
    Restart = 14,
    /// With two hosts, the standby is promoted and the primary demoted
    /// (its sessions end); nothing with one.
    Failover = 15,
    /// `[p, e]`: host `(p >> 3)` (modulo the hosts) fails its next
    /// statement at `[Startup, Query, Listen, Unlisten, Notify,
    /// Commit][p % 6]` with error `e % 3` (disk full, notification queue
    /// full, FATAL administrator shutdown; always FATAL "too many clients"
    /// at startup).
    ServerError = 16,
    /// Drain every subscriber, settle and, if the world is quiet, check
    /// convergence and every subscriber's tail.
    QuietCheck = 17,
    /// Close the bus now, faults and all, and check the end; the rest of
    /// the input is ignored.
    Close = 18,
}

impl Op {
    /// Every operation, by code.
    pub const ALL: [Self; 19] = [
        Self::Subscribe,
        Self::Unsubscribe,
        Self::Drain,
        Self::External,
        Self::Publish,
        Self::Bounce,
        Self::Advance,
        Self::Disconnect,
        Self::DisconnectAt,
        Self::BlackHole,
        Self::DelayReplies,
        Self::Refuse,
        Self::Terminate,
        Self::Shutdown,
        Self::Restart,
        Self::Failover,
        Self::ServerError,
        Self::QuietCheck,
        Self::Close,
    ];

    fn from_byte(byte: u8) -> Self {
        let index = usize::from(byte) % Self::ALL.len();
        Self::ALL.get(index).copied().unwrap_or(Self::Advance)
    }
}

/// Runs one `bus_ops` input. Panics, naming the operation and the broken
/// invariant, if the bus breaks one of the ten invariants of ARCHITECTURE.md as the
/// simulation checks them, or if anything panics.
pub fn bus_ops(data: &[u8]) {
    if let Err(failure) = run(data) {
        panic!("{failure}");
    }
}

/// What one `bus_ops` input did, for tests that pin down what a seed
/// reaches.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Outcome {
    /// How many times each operation ran, indexed by its code.
    pub ops: [u32; Op::ALL.len()],
    /// The simulation's counters: steps, checks, faults, deliveries.
    pub stats: RunStats,
}

/// An invariant broken by a `bus_ops` input.
#[derive(Clone, Debug)]
pub struct Failure {
    /// How many operations had run (the failing one included); zero while
    /// the world was being made, [`MAX_OPS`] + 1 during the final checks.
    pub op_number: usize,
    /// The operation that was running, if any.
    pub op: Option<Op>,
    /// Virtual time into the run.
    pub at: Duration,
    /// What broke.
    pub violation: Violation,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Some(op) => write!(f, "at operation {} ({op:?})", self.op_number)?,
            None if self.op_number == 0 => f.write_str("while making the world")?,
            None => f.write_str("while healing, converging and closing")?,
        }
        write!(f, ", {:?} virtual: {}", self.at, self.violation)
    }
}

impl std::error::Error for Failure {}

/// The input, read front to back; missing bytes read as zero.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, tail)) => {
                self.rest = tail;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
}

fn index(byte: u8, len: usize) -> usize {
    usize::from(byte) % len.max(1)
}

/// Runs one `bus_ops` input like [`bus_ops`] and says what it did.
pub fn run(data: &[u8]) -> Result<Outcome, Failure> {
    let mut input = Reader { rest: data };
    let seed = u64::from(input.u16());
    let world_byte = input.byte();
    let options = WorldOptions {
        faults: true,
        hosts: if world_byte & world_flags::TWO_HOSTS != 0 {
            2
        } else {
            1
        },
        read_write: world_byte & world_flags::READ_WRITE != 0,
    };
    let mut world = World::new(seed, options).map_err(|violation| Failure {
        op_number: 0,
        op: None,
        at: Duration::ZERO,
        violation,
    })?;
    let mut fuzz = Fuzz {
        world: &mut world,
        subscribers: 0,
        advanced: Duration::ZERO,
    };
    let mut ops = [0u32; Op::ALL.len()];
    let mut closed = false;
    let mut number = 0;
    while !input.is_empty() && number < MAX_OPS {
        let op = Op::from_byte(input.byte());
        number += 1;
        ops[op as usize] += 1;
        let outcome = fuzz.apply(op, &mut input).and_then(|()| {
            if op == Op::Close {
                Ok(())
            } else {
                fuzz.world.check_step()
            }
        });
        outcome.map_err(|violation| Failure {
            op_number: number,
            op: Some(op),
            at: fuzz.world.elapsed(),
            violation,
        })?;
        if op == Op::Close {
            closed = true;
            break;
        }
    }
    if !closed {
        world.finish().map_err(|violation| Failure {
            op_number: MAX_OPS + 1,
            op: None,
            at: world.elapsed(),
            violation,
        })?;
    }
    Ok(Outcome {
        ops,
        stats: world.stats(),
    })
}

/// The world under one input, and the input's budgets.
struct Fuzz<'w> {
    world: &'w mut World,
    subscribers: usize,
    advanced: Duration,
}

impl Fuzz<'_> {
    fn hosts(&self) -> usize {
        self.world.servers.len()
    }

    fn apply(&mut self, op: Op, input: &mut Reader<'_>) -> Result<(), Violation> {
        match op {
            Op::Subscribe => self.subscribe(input.byte(), input.byte(), input.byte()),
            Op::Unsubscribe => self.world.unsubscribe(usize::from(input.byte())),
            Op::Drain => {
                let (k, n) = (input.byte(), input.byte());
                if !self.world.subs.is_empty() {
                    let i = index(k, self.world.subs.len());
                    let max = if n == 0 { usize::MAX } else { usize::from(n) };
                    self.world.drain(i, max)?;
                }
                Ok(())
            }
            Op::External => self.external(input),
            Op::Publish => self.world.publish(CHANNELS[index(input.byte(), 8)]),
            Op::Bounce => self.world.bounce(),
            Op::Advance => self.advance(input.byte(), input.byte()),
            Op::Close => self.world.close_and_check(),
            Op::QuietCheck => self.world.check_quiet_point().map(drop),
            fault => {
                self.fault(fault, input)?;
                self.world.sync()?;
                self.world.pump()?;
                Ok(())
            }
        }
    }

    fn subscribe(&mut self, c: u8, p: u8, k: u8) -> Result<(), Violation> {
        if self.subscribers >= MAX_SUBSCRIBERS {
            return Ok(());
        }
        self.subscribers += 1;
        self.world.subscribe(
            CHANNELS[index(c, CHANNELS.len())],
            OverflowPolicy::ALL[index(p, OverflowPolicy::ALL.len())],
            CAPACITIES[index(k, CAPACITIES.len())],
            MAX_BYTES[index(p >> 4, MAX_BYTES.len())],
            CONSUMERS[index(c >> 4, CONSUMERS.len())],
            BATCHES[index(k >> 4, BATCHES.len())],
        )
    }

    fn external(&mut self, input: &mut Reader<'_>) -> Result<(), Violation> {
        let h = input.byte();
        let host = index(h & 1, self.hosts());
        let count = 1 + usize::from((h >> 1) & 7) % 6;
        let separate = h & 0x10 != 0;
        let mut batch: Vec<(&str, String)> = Vec::with_capacity(count);
        for _ in 0..count {
            let n = input.byte();
            if n & 0x80 != 0 && !batch.is_empty() {
                let dup = batch[index(n & 0x7f, batch.len())].clone();
                batch.push(dup);
            } else {
                let payload = self.world.payload('e');
                batch.push((CHANNELS[index(n, CHANNELS.len())], payload));
            }
        }
        let pairs: Vec<(&str, &str)> = batch.iter().map(|(c, p)| (*c, p.as_str())).collect();
        if !separate {
            return self.world.notify_external(host, &pairs);
        }
        let mut seen: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            // A repeat in its own transaction would be a second commit of
            // the same payload, which the model takes for a retried publish.
            if seen.contains(&pair) {
                continue;
            }
            seen.push(pair);
            self.world.notify_external(host, &[pair])?;
        }
        Ok(())
    }

    fn advance(&mut self, mode: u8, amount: u8) -> Result<(), Violation> {
        let span = match mode % 4 {
            0 => {
                for _ in 0..=(amount % 8) {
                    self.world.step()?;
                }
                return Ok(());
            }
            1 => Duration::ZERO,
            2 => Duration::from_millis(u64::from(amount)),
            _ => Duration::from_millis(100 * u64::from(amount)),
        };
        if span.is_zero() || self.advanced + span > MAX_VIRTUAL_TIME {
            return self.world.settle();
        }
        self.advanced += span;
        self.world.drive_for(span)
    }

    fn fault(&mut self, op: Op, input: &mut Reader<'_>) -> Result<(), Violation> {
        let hosts = self.hosts();
        let now = self.world.now;
        let link = self.world.link.as_ref().map(|l| l.id);
        match op {
            Op::Disconnect => {
                self.world.stats.fault("disconnect now");
                self.world.cut(TransportErrorKind::Io)?;
            }
            Op::DisconnectAt => {
                let at = u64::from(input.u16() % 1024);
                if let Some(link) = &mut self.world.link {
                    link.cut_at = Some(at);
                    self.world.stats.fault("disconnect at byte");
                }
            }
            Op::BlackHole => self.world.black_hole()?,
            Op::DelayReplies => {
                let delay = Duration::from_millis(u64::from(input.u16() % 10_000));
                if let Some(link) = &mut self.world.link {
                    link.slowed = true;
                    let (host, conn) = link.id;
                    self.world.servers[host].delay_replies(conn, delay);
                    self.world.stats.fault("replies delayed");
                }
            }
            Op::Refuse => {
                let host = index(input.byte(), hosts);
                self.world.servers[host].set_refusing(true);
                self.world.stats.fault("refusing connections");
            }
            Op::Terminate => {
                if let Some((host, conn)) = link {
                    self.world.servers[host].terminate(conn, now);
                    self.world.stats.fault("backend terminated");
                }
            }
            Op::Shutdown => {
                let m = input.byte();
                let host = match link {
                    Some((host, _)) if m & 0x80 == 0 => host,
                    _ => index(m >> 2, hosts),
                };
                self.world.servers[host].shutdown(now, SHUTDOWNS[index(m, SHUTDOWNS.len())]);
                self.world.stats.fault("server shutdown");
            }
            Op::Restart => {
                for server in &mut self.world.servers {
                    server.restart();
                    server.set_refusing(false);
                }
                self.world.stats.fault("server restart");
            }
            Op::Failover => self.failover(link),
            Op::ServerError => {
                let (p, e) = (input.byte(), input.byte());
                let point = FAULT_POINTS[index(p, FAULT_POINTS.len())];
                let host = index(p >> 3, hosts);
                let error = match (point, e % 3) {
                    (FaultPoint::Startup, _) => {
                        SqlError::fatal("53300", "sorry, too many clients already")
                    }
                    (_, 0) => {
                        SqlError::error("53100", "could not extend file: No space left on device")
                    }
                    (_, 1) => {
                        SqlError::error("54000", "too many notifications in the NOTIFY queue")
                    }
                    _ => SqlError::fatal(
                        "57P01",
                        "terminating connection due to administrator command",
                    ),
                };
                self.world.servers[host].fail_next(point, error);
                self.world.stats.fault("server error");
            }
            _ => {}
        }
        Ok(())
    }

    fn failover(&mut self, link: Option<(usize, crate::sim_server::ConnId)>) {
        if self.hosts() != 2 {
            return;
        }
        let now = self.world.now;
        let servers = &mut self.world.servers;
        let primary = servers
            .iter()
            .position(|s| s.role() == ServerRole::Primary)
            .unwrap_or(0);
        let other = 1 - primary;
        servers[primary].set_role(ServerRole::Standby);
        servers[other].set_role(ServerRole::Primary);
        // A primary does not become a standby with sessions alive.
        if let Some((host, conn)) = link
            && host == primary
        {
            servers[host].terminate(conn, now);
        }
        self.world.stats.fault("failover");
    }
}

/// Writes `bus_ops` inputs: a seed, the world flags, then operations.
///
/// ```
/// use pgnotify_testkit::fuzz::bus_ops::{Op, Script};
/// use pgnotify_testkit::fuzz::bus_ops;
///
/// let input = Script::new(7, 0)
///     .op(Op::Subscribe, &[0, 0, 5])
///     .op(Op::Advance, &[1, 0])
///     .op(Op::External, &[0x02, 0, 0])
///     .into_bytes();
/// bus_ops(&input);
/// ```
#[derive(Clone, Debug)]
pub struct Script {
    bytes: Vec<u8>,
}

impl Script {
    /// A script for the world of `seed` with the [`world_flags`] in `flags`.
    pub fn new(seed: u16, flags: u8) -> Self {
        let mut bytes = seed.to_be_bytes().to_vec();
        bytes.push(flags);
        Self { bytes }
    }

    /// Appends `op` with its parameter bytes.
    pub fn op(mut self, op: Op, params: &[u8]) -> Self {
        self.bytes.push(op as u8);
        self.bytes.extend_from_slice(params);
        self
    }

    /// The input.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The seed corpus: one input per part of the API and per fault, each
/// ending healed and closed (or closed at once).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let settle = [1, 0];
    let drive_2s = [3, 20];
    let drive_30s = [3, 255];
    vec![
        (
            "calm-every-policy",
            Script::new(1, 0)
                .op(Op::Subscribe, &[0x00, 0x00, 0x05]) // jobs, fast, drop-oldest, 8
                .op(Op::Subscribe, &[0x10, 0x01, 0x10]) // jobs, slow, drop-newest, 1
                .op(Op::Subscribe, &[0x21, 0x12, 0x06]) // Jobs, never, keep-latest, 64 B
                .op(Op::Subscribe, &[0x02, 0x23, 0x02]) // mail, close, 2, 500 B
                .op(Op::Subscribe, &[0x24, 0x04, 0x00]) // a b, never, backpressure, 1
                .op(Op::Advance, &settle)
                .op(Op::External, &[0x0a, 0, 1, 0x80, 2, 4, 0x81]) // 6 in one, repeats
                .op(Op::External, &[0x14, 0, 0x80, 2]) // 3 separate, one repeat skipped
                .op(Op::Publish, &[0])
                .op(Op::Publish, &[6])
                .op(Op::Advance, &[2, 50])
                .op(Op::Drain, &[1, 1])
                .op(Op::Drain, &[2, 0])
                .op(Op::Unsubscribe, &[3])
                .op(Op::QuietCheck, &[])
                .op(Op::Advance, &drive_2s)
                .into_bytes(),
        ),
        (
            "cuts-black-hole-delays",
            Script::new(2, 0)
                .op(Op::Subscribe, &[0x00, 0x00, 0x06])
                .op(Op::Advance, &[0, 1])
                .op(Op::DisconnectAt, &[0, 40])
                .op(Op::Advance, &drive_2s)
                .op(Op::External, &[0x02, 0, 0])
                .op(Op::Disconnect, &[])
                .op(Op::Advance, &drive_2s)
                .op(Op::BlackHole, &[])
                .op(Op::Publish, &[0])
                .op(Op::Advance, &drive_30s)
                .op(Op::DelayReplies, &[0x17, 0x70]) // 6 s
                .op(Op::Subscribe, &[0x02, 0x00, 0x05])
                .op(Op::Advance, &drive_30s)
                .op(Op::Advance, &[0, 7])
                .into_bytes(),
        ),
        (
            "server-faults",
            Script::new(3, 0)
                .op(Op::Subscribe, &[0x00, 0x03, 0x05])
                .op(Op::Advance, &settle)
                .op(Op::Terminate, &[])
                .op(Op::Advance, &drive_2s)
                .op(Op::ServerError, &[2, 0]) // LISTEN: disk full
                .op(Op::Subscribe, &[0x02, 0x00, 0x05])
                .op(Op::Advance, &settle)
                .op(Op::ServerError, &[4, 1]) // NOTIFY: queue full
                .op(Op::Publish, &[2])
                .op(Op::ServerError, &[1, 2]) // query: FATAL
                .op(Op::Advance, &drive_2s)
                .op(Op::ServerError, &[3, 1]) // UNLISTEN
                .op(Op::Unsubscribe, &[1])
                .op(Op::ServerError, &[5, 1]) // commit
                .op(Op::Bounce, &[])
                .op(Op::ServerError, &[0, 0]) // startup
                .op(Op::Advance, &drive_30s)
                .op(Op::Refuse, &[0])
                .op(Op::Shutdown, &[0])
                .op(Op::Advance, &drive_30s)
                .op(Op::Restart, &[])
                .op(Op::Shutdown, &[2])
                .op(Op::Advance, &drive_2s)
                .into_bytes(),
        ),
        (
            "failover-read-write",
            Script::new(4, world_flags::TWO_HOSTS | world_flags::READ_WRITE)
                .op(Op::Subscribe, &[0x00, 0x00, 0x05])
                .op(Op::Advance, &settle)
                .op(Op::External, &[0x02, 0, 0])
                .op(Op::Failover, &[])
                .op(Op::External, &[0x03, 0, 0])
                .op(Op::Advance, &drive_30s)
                .op(Op::Shutdown, &[0x81]) // the other host, immediate
                .op(Op::Failover, &[])
                .op(Op::Advance, &drive_30s)
                .op(Op::QuietCheck, &[])
                .into_bytes(),
        ),
        (
            "close-with-faults",
            Script::new(5, world_flags::TWO_HOSTS)
                .op(Op::Subscribe, &[0x10, 0x04, 0x00])
                .op(Op::Advance, &settle)
                .op(Op::External, &[0x0a, 0, 0, 0, 0, 0, 0])
                .op(Op::Publish, &[0])
                .op(Op::BlackHole, &[])
                .op(Op::Publish, &[0])
                .op(Op::Close, &[])
                .into_bytes(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_inputs_run_clean() {
        for data in [&[][..], &[0], &[0, 1], &[0, 1, 3], &[0xff; 5]] {
            run(data).unwrap_or_else(|f| panic!("{data:?}: {f}"));
        }
    }

    #[test]
    fn operations_are_bounded() {
        // Every byte subscribes or advances: far more than MAX_OPS of them.
        let data: Vec<u8> = [0, 9, 0].into_iter().chain([0u8; 4000]).collect();
        let outcome = run(&data).expect("clean");
        let total: u32 = outcome.ops.iter().sum();
        assert_eq!(total as usize, MAX_OPS);
    }

    #[test]
    fn seeds_run_every_operation() {
        let mut ops = [0u32; Op::ALL.len()];
        for (name, data) in seeds() {
            let outcome = run(&data).unwrap_or_else(|f| panic!("seed {name}: {f}"));
            for (total, n) in ops.iter_mut().zip(outcome.ops) {
                *total += n;
            }
        }
        for op in Op::ALL {
            assert!(ops[op as usize] > 0, "no seed runs {op:?}");
        }
    }

    #[test]
    fn seeds_deliver_and_inject_faults() {
        let mut stats = RunStats::default();
        for (_, data) in seeds() {
            stats.add(&run(&data).expect("clean").stats);
        }
        assert!(stats.delivered > 0, "{stats:?}");
        assert!(stats.gaps > 0, "{stats:?}");
        assert!(stats.faults.len() >= 10, "{:?}", stats.faults);
        assert!(stats.publishes > 0 && stats.connections > 1, "{stats:?}");
    }
}
