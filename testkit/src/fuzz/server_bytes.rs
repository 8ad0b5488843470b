//! The `server_bytes` target: arbitrary server bytes, in arbitrary chunks, at
//! every phase of one [`Connection`], with the connection's promises checked
//! after every step.
//!
//! # Input format
//!
//! The format is hand-made rather than derived with `arbitrary`, so that a
//! corpus file reads as "where to start" followed by a server script, seeds
//! are easy to write ([`Script`]), and checked-in files keep their meaning
//! when a dependency changes.
//!
//! - byte 0: where to start ([`Start`], modulo its count);
//! - byte 1: flags ([`flags`]): password, channel binding, how the
//!   prefix reaches startup (plaintext, TLS refused, TLS accepted), and the
//!   frame cap ([`MAX_FRAME_LENS`]);
//! - then operations, each introduced by one byte ([`op`]): a byte below
//!   [`op::FEED_U16`] feeds that many following bytes as one chunk; the others
//!   feed a chunk with a 16-bit length, issue a command, finish the TLS
//!   handshake, terminate, or feed the rest of the input.
//!
//! Missing bytes read as zero; an operation running past the end takes what is
//! left.

use std::collections::VecDeque;

use pgnotify_core::protocol::{
    CommandId, Connection, ConnectionError, Phase, StartupParams, TlsNegotiation, WireEvent,
};

use super::wire;

/// The frame caps the flags choose from: the largest is well below the
/// default so that allocation bounds show up in the fuzzer's memory limit.
pub const MAX_FRAME_LENS: [usize; 4] = [64 * 1024, 1024, 64, 9];

/// The channel binding data handed over after a TLS handshake, when asked for.
const CHANNEL_BINDING: [u8; 32] = [0xcb; 32];

/// Where the harness brings the connection, with valid server messages,
/// before the fuzzed operations run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Start {
    /// A fresh connection with `sslmode=disable`: the StartupMessage is out.
    Disable = 0,
    /// A fresh connection with `sslmode=prefer`: the SSLRequest is out.
    Prefer = 1,
    /// A fresh connection with `sslmode=require`: the SSLRequest is out.
    Require = 2,
    /// The server asked for a cleartext password.
    AuthCleartext = 3,
    /// The server asked for an MD5 password.
    AuthMd5 = 4,
    /// The server offered SCRAM-SHA-256 and SCRAM-SHA-256-PLUS.
    AuthSasl = 5,
    /// Startup finished (AuthenticationOk, parameters, key data, ReadyForQuery).
    Ready = 6,
    /// Ready, with a query, a publish and another query in flight.
    InFlight = 7,
}

impl Start {
    const ALL: [Self; 8] = [
        Self::Disable,
        Self::Prefer,
        Self::Require,
        Self::AuthCleartext,
        Self::AuthMd5,
        Self::AuthSasl,
        Self::Ready,
        Self::InFlight,
    ];

    fn from_byte(byte: u8) -> Self {
        let index = usize::from(byte) % Self::ALL.len();
        Self::ALL.get(index).copied().unwrap_or(Self::Disable)
    }
}

/// The bits of the flags byte.
pub mod flags {
    /// Configure a password (without one, every password request fails).
    pub const PASSWORD: u8 = 1;
    /// Hand channel-binding data over with the TLS handshake.
    pub const CHANNEL_BINDING: u8 = 1 << 1;
    /// For the authentication and later starts: how the prefix reaches the
    /// StartupMessage (`transport << 2`): 0 plaintext, 1 `prefer` refused by
    /// the server, 2 `prefer` with TLS, 3 `require` with TLS.
    pub const TRANSPORT_SHIFT: u8 = 2;
    /// The frame cap: `MAX_FRAME_LENS[(flags >> 4) & 3]`.
    pub const CAP_SHIFT: u8 = 4;
}

/// The operation bytes; any byte below [`FEED_U16`](op::FEED_U16) feeds that
/// many bytes (0 feeds an empty chunk).
pub mod op {
    /// Feed a chunk whose length is the next two bytes (big-endian).
    pub const FEED_U16: u8 = 0xf0;
    /// `simple_query("LISTEN \"fuzz\"")`.
    pub const QUERY: u8 = 0xf1;
    /// `publish("fuzz", "payload")`.
    pub const PUBLISH: u8 = 0xf2;
    /// `simple_query` of SQL containing a NUL byte (refused before sending).
    pub const QUERY_NUL: u8 = 0xf3;
    /// `handle_tls_established(None)`.
    pub const TLS: u8 = 0xf4;
    /// `handle_tls_established(Some(binding))`.
    pub const TLS_BINDING: u8 = 0xf5;
    /// `terminate()`.
    pub const TERMINATE: u8 = 0xf6;
    /// Feed the rest of the input one byte at a time.
    pub const REST_BYTEWISE: u8 = 0xfe;
    /// Feed the rest of the input as one chunk.
    pub const REST: u8 = 0xff;
}

/// Runs one `server_bytes` input. Panics if the connection breaks one of its
/// promises: a panic inside the core, buffered input above the frame cap plus
/// the chunk being read, an event or a byte to send after `Failed` or
/// `terminate`, a phase going backwards, a second `Ready` or `StartTls`, or a
/// `CommandComplete` out of FIFO order or not exactly once.
pub fn server_bytes(data: &[u8]) {
    run(data);
}

/// What one `server_bytes` input did to the connection, for tests that pin
/// down what a seed reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The connection's phase at the end.
    pub phase: Phase,
    /// How many commands completed (with rows or an error).
    pub completed: usize,
    /// How many notifications came out.
    pub notifications: usize,
    /// The error that failed the connection, if one did.
    pub failure: Option<ConnectionError>,
}

/// Runs one `server_bytes` input like [`server_bytes`] and says what happened.
pub fn run(data: &[u8]) -> Outcome {
    let (header, mut rest) = data.split_at(data.len().min(2));
    let start = Start::from_byte(header.first().copied().unwrap_or(0));
    let flag_bits = header.get(1).copied().unwrap_or(0);
    let mut harness = Harness::prepare(start, flag_bits);
    while let Some((&code, tail)) = rest.split_first() {
        rest = tail;
        match code {
            op::FEED_U16 => {
                let (len, tail) = rest.split_at(rest.len().min(2));
                let len = match len {
                    [hi, lo] => usize::from(u16::from_be_bytes([*hi, *lo])),
                    [lo] => usize::from(*lo),
                    _ => 0,
                };
                let (chunk, tail) = tail.split_at(tail.len().min(len));
                harness.feed(chunk);
                rest = tail;
            }
            op::QUERY => harness.command(|c| c.simple_query("LISTEN \"fuzz\"".to_owned())),
            op::PUBLISH => harness.command(|c| c.publish("fuzz", "payload")),
            op::QUERY_NUL => harness.command(|c| c.simple_query("SELECT '\0'".to_owned())),
            op::TLS => harness.tls(None),
            op::TLS_BINDING => harness.tls(Some(CHANNEL_BINDING.to_vec())),
            op::TERMINATE => harness.terminate(),
            op::REST_BYTEWISE => {
                for byte in rest.chunks(1) {
                    harness.feed(byte);
                }
                rest = &[];
            }
            op::REST => {
                harness.feed(rest);
                rest = &[];
            }
            len if len < op::FEED_U16 => {
                let (chunk, tail) = rest.split_at(rest.len().min(usize::from(len)));
                harness.feed(chunk);
                rest = tail;
            }
            _ => {} // reserved: no operation
        }
    }
    harness.outcome
}

/// Writes `server_bytes` inputs: a start, flags, then operations.
///
/// ```
/// use pgnotify_testkit::fuzz::server_bytes::{Script, Start};
/// use pgnotify_testkit::fuzz::{server_bytes, wire};
///
/// let input = Script::new(Start::Ready, 0)
///     .feed(&wire::notification(1, "jobs", "42"))
///     .into_bytes();
/// server_bytes(&input);
/// ```
#[derive(Clone, Debug)]
pub struct Script {
    bytes: Vec<u8>,
}

impl Script {
    /// A script starting at `start` with the [`flags`] in `flag_bits`.
    pub fn new(start: Start, flag_bits: u8) -> Self {
        Self {
            bytes: vec![start as u8, flag_bits],
        }
    }

    /// Feeds `data` in chunks of at most `chunk` bytes (at least 1).
    pub fn feed_in(mut self, data: &[u8], chunk: usize) -> Self {
        let chunk = chunk.clamp(1, usize::from(u16::MAX));
        for piece in data.chunks(chunk) {
            match u8::try_from(piece.len()) {
                Ok(len) if len < op::FEED_U16 => self.bytes.push(len),
                _ => {
                    self.bytes.push(op::FEED_U16);
                    let len = u16::try_from(piece.len()).unwrap_or(u16::MAX);
                    self.bytes.extend_from_slice(&len.to_be_bytes());
                }
            }
            self.bytes.extend_from_slice(piece);
        }
        self
    }

    /// Feeds `data` as one chunk.
    pub fn feed(self, data: &[u8]) -> Self {
        let len = data.len().max(1);
        self.feed_in(data, len)
    }

    /// Appends one operation byte ([`op`]).
    pub fn op(mut self, code: u8) -> Self {
        self.bytes.push(code);
        self
    }

    /// Feeds `data` as the rest of the input, one byte at a time.
    pub fn rest_bytewise(mut self, data: &[u8]) -> Self {
        self.bytes.push(op::REST_BYTEWISE);
        self.bytes.extend_from_slice(data);
        self
    }

    /// The input.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// A connection and what has been observed of it so far.
struct Harness {
    conn: Connection,
    cap: usize,
    tls: TlsNegotiation,
    /// Commands issued while the connection was live, not yet completed.
    expected: VecDeque<CommandId>,
    last_id: Option<CommandId>,
    failed: bool,
    terminated: bool,
    ready_seen: bool,
    start_tls_seen: bool,
    rank: u8,
    wire: Vec<u8>,
    outcome: Outcome,
}

impl Harness {
    /// A connection brought to `start` with valid server messages.
    fn prepare(start: Start, flag_bits: u8) -> Self {
        let cap_index = usize::from((flag_bits >> flags::CAP_SHIFT) & 3);
        let cap = MAX_FRAME_LENS.get(cap_index).copied().unwrap_or(64 * 1024);
        let transport = (flag_bits >> flags::TRANSPORT_SHIFT) & 3;
        let binding = (flag_bits & flags::CHANNEL_BINDING != 0).then(|| CHANNEL_BINDING.to_vec());
        let tls = match start {
            Start::Disable => TlsNegotiation::Disable,
            Start::Prefer => TlsNegotiation::Prefer,
            Start::Require => TlsNegotiation::Require,
            _ => match transport {
                0 => TlsNegotiation::Disable,
                1 | 2 => TlsNegotiation::Prefer,
                _ => TlsNegotiation::Require,
            },
        };
        let mut params = StartupParams::new("fuzz");
        params.database = Some("db".to_owned());
        params.application_name = Some("pgnotify-fuzz".to_owned());
        params.password = (flag_bits & flags::PASSWORD != 0).then(|| "secret".to_owned());
        params.tls = tls;
        params.max_frame_len = cap;
        let mut harness = Self {
            conn: Connection::new(params),
            cap,
            tls,
            expected: VecDeque::new(),
            last_id: None,
            failed: false,
            terminated: false,
            ready_seen: false,
            start_tls_seen: false,
            rank: 0,
            wire: Vec::new(),
            outcome: Outcome {
                phase: Phase::SslNegotiation,
                completed: 0,
                notifications: 0,
                failure: None,
            },
        };
        harness.settle(0);
        if matches!(start, Start::Disable | Start::Prefer | Start::Require) {
            return harness;
        }
        match transport {
            0 => {}
            1 => harness.feed(b"N"),
            _ => {
                harness.feed(b"S");
                harness.tls(binding);
            }
        }
        match start {
            Start::AuthCleartext => harness.feed(&wire::auth_cleartext()),
            Start::AuthMd5 => harness.feed(&wire::auth_md5([1, 2, 3, 4])),
            Start::AuthSasl => {
                harness.feed(&wire::auth_sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]))
            }
            Start::Ready | Start::InFlight => {
                harness.feed(&[wire::auth_ok(), wire::startup_tail()].concat());
            }
            Start::Disable | Start::Prefer | Start::Require => {}
        }
        if start == Start::InFlight {
            harness.command(|c| c.simple_query("LISTEN \"fuzz\"".to_owned()));
            harness.command(|c| c.publish("fuzz", "payload"));
            harness.command(|c| c.simple_query("SELECT 1; SELECT 2".to_owned()));
        }
        harness
    }

    fn is_over(&self) -> bool {
        matches!(self.conn.phase(), Phase::Failed | Phase::Terminated)
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.conn.handle_input(chunk);
        self.settle(chunk.len());
    }

    fn command(&mut self, issue: impl FnOnce(&mut Connection) -> CommandId) {
        let live = !self.is_over();
        let id = issue(&mut self.conn);
        if let Some(last) = self.last_id {
            assert!(
                id > last,
                "command ids repeat or go backwards: {last:?} then {id:?}"
            );
        }
        self.last_id = Some(id);
        if live {
            self.expected.push_back(id);
        }
        self.settle(0);
    }

    fn tls(&mut self, binding: Option<Vec<u8>>) {
        self.conn.handle_tls_established(binding);
        self.settle(0);
    }

    fn terminate(&mut self) {
        let live = !self.is_over();
        self.conn.terminate();
        if live {
            assert_eq!(self.conn.phase(), Phase::Terminated);
        }
        self.settle(0);
        self.terminated = true;
        self.expected.clear();
    }

    /// Drains the connection's output and checks everything observable.
    fn settle(&mut self, chunk: usize) {
        let buffered = self.conn.buffered_input_len();
        assert!(
            buffered <= self.cap.saturating_add(chunk),
            "{buffered} bytes buffered with a cap of {} and a chunk of {chunk}",
            self.cap
        );

        self.wire.clear();
        let sent = self.conn.poll_transmit(&mut self.wire);
        assert_eq!(sent, !self.wire.is_empty(), "poll_transmit's answer");
        assert!(
            !(sent && (self.failed || self.terminated)),
            "bytes to send after the connection ended: {:?}",
            self.wire
        );
        assert!(
            !(sent && self.conn.phase() == Phase::Failed),
            "bytes to send from a failed connection"
        );
        self.wire.clear();
        assert!(
            !self.conn.poll_transmit(&mut self.wire),
            "poll_transmit gave more after being drained"
        );

        while let Some(event) = self.conn.poll_event() {
            assert!(!self.failed, "event after Failed: {event:?}");
            assert!(!self.terminated, "event after terminate: {event:?}");
            match event {
                WireEvent::Failed(error) => {
                    self.outcome.failure = Some(error);
                    self.failed = true;
                    assert_eq!(self.conn.phase(), Phase::Failed);
                }
                WireEvent::CommandComplete { id, .. } => {
                    let head = self.expected.pop_front();
                    assert_eq!(head, Some(id), "CommandComplete out of FIFO order");
                    self.outcome.completed = self.outcome.completed.saturating_add(1);
                }
                WireEvent::Ready => {
                    assert!(!self.ready_seen, "a second Ready");
                    self.ready_seen = true;
                    assert!(rank(self.conn.phase()) >= rank(Phase::Ready));
                }
                WireEvent::StartTls => {
                    assert!(!self.start_tls_seen, "a second StartTls");
                    assert_ne!(
                        self.tls,
                        TlsNegotiation::Disable,
                        "StartTls with TLS disabled"
                    );
                    self.start_tls_seen = true;
                }
                WireEvent::Notification(_) => {
                    self.outcome.notifications = self.outcome.notifications.saturating_add(1);
                    assert!(
                        rank(self.conn.phase()) >= rank(Phase::Starting),
                        "a notification before authentication"
                    );
                }
                WireEvent::ParameterStatus { .. } => {
                    assert!(
                        rank(self.conn.phase()) >= rank(Phase::Starting),
                        "{:?} before authentication",
                        self.conn.phase()
                    );
                }
                _ => {}
            }
        }

        let phase = self.conn.phase();
        self.outcome.phase = phase;
        let now = rank(phase);
        assert!(now >= self.rank, "phase went backwards to {phase:?}");
        self.rank = now;
        if phase == Phase::Failed {
            assert!(self.failed, "Failed phase without a Failed event");
        }
        if !self.is_over() {
            assert_eq!(
                self.conn.commands_in_flight(),
                self.expected.len(),
                "commands in flight"
            );
        }
    }
}

/// The order of phases in a connection's life.
fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::SslNegotiation => 0,
        Phase::TlsHandshake => 1,
        Phase::Authenticating => 2,
        Phase::Starting => 3,
        Phase::Ready => 4,
        _ => 5,
    }
}
