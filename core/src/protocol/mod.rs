//! One physical PostgreSQL connection as a pure state machine.
//!
//! [`Connection`] speaks the frontend/backend protocol (version 3.0) from the
//! first byte the client sends to Terminate: TLS negotiation, startup,
//! authentication, a pipeline of commands, and the asynchronous messages
//! (notifications, notices, parameter changes). It does no IO: the driver
//! moves bytes between it and a socket, and does the TLS handshake itself
//! when asked to.
//!
//! The [`bus`](crate::bus) owns one `Connection` at a time and replaces it
//! when it fails.

// Wire input must never panic: no indexing, no unchecked arithmetic.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

mod auth;
mod backend;
mod commands;
mod error;
mod frame;
mod frontend;
pub(crate) use frontend::PUBLISH_SQL;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use bytes::BytesMut;
use postgres_protocol::message::frontend as pg_frontend;

pub use backend::TransactionStatus;
pub use error::{AuthError, ConnectionError, ProtocolError, ServerError};

use auth::{Authenticator, Credentials, Step};
use backend::{LastChannel, Message};
use commands::{Calls, Commands, Request};
use frame::{Frame, FrameReader};

use crate::Notification;

/// The default cap on the length of one server message: 1 MiB.
///
/// Nothing pgnotify asks for comes near it (a notification is at most about
/// 8 KiB); the cap bounds what a broken or hostile server can make the client
/// allocate. Raise it only to read unusually large error messages or rows.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;

/// Whether the connection asks the server for TLS before the startup message.
///
/// Certificate verification (`verify-ca`, `verify-full`) is the driver's
/// job during the handshake; for the protocol they are all [`Require`](Self::Require).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsNegotiation {
    /// Never ask for TLS (`sslmode=disable`).
    Disable,
    /// Ask for TLS and continue in plaintext if the server refuses (`sslmode=prefer`, libpq's default).
    #[default]
    Prefer,
    /// Ask for TLS and fail if the server refuses (`sslmode=require` and stricter).
    Require,
}

/// What a [`Connection`] sends at startup and how it guards itself.
///
/// `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartupParams {
    /// The role to log in as.
    pub user: String,
    /// The database; the server defaults it to the user name when `None`.
    pub database: Option<String>,
    /// The password, for cleartext, MD5 and SCRAM authentication.
    pub password: Option<String>,
    /// Shown in `pg_stat_activity.application_name`.
    pub application_name: Option<String>,
    /// libpq's `options`: command-line options for the server session,
    /// typically `-c name=value` settings, sent as the startup parameter of
    /// that name.
    pub options: Option<String>,
    /// Whether to ask for TLS first.
    pub tls: TlsNegotiation,
    /// The longest server message accepted, header included; longer ones
    /// fail the connection before anything is allocated for them.
    pub max_frame_len: usize,
}

impl StartupParams {
    /// Parameters for `user`, with no database, password or application
    /// name, TLS preferred and the default frame cap.
    pub fn new(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            database: None,
            password: None,
            application_name: None,
            options: None,
            tls: TlsNegotiation::default(),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

impl fmt::Debug for StartupParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartupParams")
            .field("user", &self.user)
            .field("database", &self.database)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("application_name", &self.application_name)
            .field("options", &self.options)
            .field("tls", &self.tls)
            .field("max_frame_len", &self.max_frame_len)
            .finish()
    }
}

/// Identifies one command given to a [`Connection`]; its
/// [`WireEvent::CommandComplete`] carries the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(u64);

/// The rows a command returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryResult {
    /// The text of every DataRow of every statement of the command, in
    /// order; `None` is SQL NULL. Empty for publishes.
    pub rows: Vec<Vec<Option<String>>>,
}

/// Where a [`Connection`] is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// SSLRequest sent; waiting for the server's one-byte answer.
    SslNegotiation,
    /// The server accepted TLS; waiting for the driver's handshake
    /// ([`Connection::handle_tls_established`]).
    TlsHandshake,
    /// StartupMessage sent; answering authentication requests.
    Authenticating,
    /// Authenticated; receiving parameters until the first ReadyForQuery.
    Starting,
    /// Startup finished; commands flow.
    Ready,
    /// Ended by an error; nothing more comes out.
    Failed,
    /// Ended by [`Connection::terminate`]; nothing more comes out.
    Terminated,
}

/// Something the driver or the bus must know about, as one [`Connection`]
/// read it off the wire: what [`Connection::poll_event`] returns.
///
/// Named apart from the driver's `ConnectionEvent` (connected, disconnected,
/// stopped), which reports the listener's life to an application; this one
/// reports one physical connection's protocol to the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireEvent {
    /// The server accepted TLS: do the handshake on the socket, then call
    /// [`Connection::handle_tls_established`]. Feed no bytes until then.
    StartTls,
    /// Startup finished (the first ReadyForQuery); held commands are sent now.
    Ready,
    /// A notification; a burst on one channel shares one copy of the channel
    /// name, and each payload is its own exact-size copy.
    Notification(Notification),
    /// A NoticeResponse (a warning or information from the server).
    Notice(ServerError),
    /// A run-time parameter was reported (at startup, or when it changed).
    ParameterStatus {
        /// The parameter's name, for example `server_version`.
        name: String,
        /// Its new value.
        value: String,
    },
    /// A command finished; exactly one per command, in the order they were given.
    CommandComplete {
        /// The command.
        id: CommandId,
        /// Its rows, or the error that failed it (none of a failed
        /// multi-statement query took effect: it runs as one transaction).
        result: Result<QueryResult, ServerError>,
    },
    /// The connection ended with an error. This is the last event; commands
    /// still in flight will never complete (their outcome is unknown).
    Failed(ConnectionError),
}

/// Internal state, one per [`Phase`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SslResponse,
    TlsHandshake,
    Authenticating,
    Starting,
    Ready,
    Failed,
    Terminated,
}

impl State {
    fn phase(self) -> Phase {
        match self {
            Self::SslResponse => Phase::SslNegotiation,
            Self::TlsHandshake => Phase::TlsHandshake,
            Self::Authenticating => Phase::Authenticating,
            Self::Starting => Phase::Starting,
            Self::Ready => Phase::Ready,
            Self::Failed => Phase::Failed,
            Self::Terminated => Phase::Terminated,
        }
    }

    fn is_over(self) -> bool {
        matches!(self, Self::Failed | Self::Terminated)
    }
}

/// One PostgreSQL connection as a sans-IO state machine.
///
/// Methods come in four kinds, as in quinn-proto:
///
/// - getters on `&self` ([`phase`](Self::phase), [`backend_pid`](Self::backend_pid),
///   [`server_parameter`](Self::server_parameter), ...);
/// - `handle_*`: input from the transport ([`handle_input`](Self::handle_input)
///   with the bytes read, [`handle_tls_established`](Self::handle_tls_established)
///   after a TLS handshake);
/// - commands from the caller ([`simple_query`](Self::simple_query),
///   [`publish`](Self::publish), [`terminate`](Self::terminate));
/// - `poll_*`: output ([`poll_transmit`](Self::poll_transmit),
///   [`poll_event`](Self::poll_event)).
///
/// **Drive contract.** After creating the connection and after every
/// `handle_*` call or command, first drain [`poll_transmit`](Self::poll_transmit)
/// and write those bytes to the socket, then call [`poll_event`](Self::poll_event)
/// until it returns `None`. On [`WireEvent::StartTls`], do the TLS
/// handshake and call `handle_tls_established`; from then on, feed and send
/// plaintext through the TLS session. On [`WireEvent::Failed`] or after
/// [`terminate`](Self::terminate) (once its bytes are written), close the
/// socket and drop the connection.
///
/// The connection has no timers: timeouts (connect, ping) belong to the bus.
/// Its output is a function of its inputs, with one deliberate exception:
/// the SCRAM client nonce comes from the operating system's random source,
/// because a nonce derived from a configured seed would be predictable.
/// It never panics on input from the network, and never buffers more than
/// one frame of at most [`StartupParams::max_frame_len`] bytes.
///
/// ```
/// use pgnotify_core::protocol::{Connection, WireEvent, StartupParams, TlsNegotiation};
///
/// let mut params = StartupParams::new("app");
/// params.tls = TlsNegotiation::Disable;
/// let mut conn = Connection::new(params);
/// let mut wire = Vec::new();
/// assert!(conn.poll_transmit(&mut wire)); // the StartupMessage
///
/// // AuthenticationOk, then ReadyForQuery (idle).
/// conn.handle_input(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'Z', 0, 0, 0, 5, b'I']);
/// assert_eq!(conn.poll_event(), Some(WireEvent::Ready));
/// assert_eq!(conn.poll_event(), None);
/// ```
#[derive(Debug)]
pub struct Connection {
    params: StartupParams,
    state: State,
    reader: FrameReader,
    /// The last notification's channel, shared by the next on the same one.
    last_channel: LastChannel,
    out: BytesMut,
    events: VecDeque<WireEvent>,
    auth: Authenticator,
    channel_binding: Option<Vec<u8>>,
    commands: Commands,
    parameters: BTreeMap<String, String>,
    backend_key: Option<(i32, i32)>,
    transaction_status: Option<TransactionStatus>,
}

impl Connection {
    /// Starts a connection: queues the SSLRequest, or the StartupMessage when
    /// TLS is disabled. Call it once the transport is connected.
    pub fn new(params: StartupParams) -> Self {
        let mut conn = Self {
            reader: FrameReader::new(params.max_frame_len),
            last_channel: LastChannel::default(),
            state: State::SslResponse,
            params,
            out: BytesMut::new(),
            events: VecDeque::new(),
            auth: Authenticator::default(),
            channel_binding: None,
            commands: Commands::new(),
            parameters: BTreeMap::new(),
            backend_key: None,
            transaction_status: None,
        };
        match conn.params.tls {
            TlsNegotiation::Disable => conn.send_startup(),
            TlsNegotiation::Prefer | TlsNegotiation::Require => {
                pg_frontend::ssl_request(&mut conn.out);
            }
        }
        conn
    }

    // ---- getters ----

    /// Where the connection is in its life.
    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    /// The server process serving this connection (from BackendKeyData);
    /// notifications the connection sent itself carry it.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_key.map(|(pid, _)| pid)
    }

    /// The secret key that, with [`backend_pid`](Self::backend_pid), lets a
    /// separate connection cancel this one's query.
    pub fn secret_key(&self) -> Option<i32> {
        self.backend_key.map(|(_, key)| key)
    }

    /// The last value the server reported for a run-time parameter.
    pub fn server_parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// Every run-time parameter the server reported, by name.
    pub fn server_parameters(&self) -> impl Iterator<Item = (&str, &str)> {
        self.parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The server's version string (`server_version`), for example `15.4`.
    pub fn server_version(&self) -> Option<&str> {
        self.server_parameter("server_version")
    }

    /// Whether the server is a hot standby (LISTEN and NOTIFY fail there).
    /// Reported by PostgreSQL 14 and later; `None` before that or before startup.
    pub fn in_hot_standby(&self) -> Option<bool> {
        match self.server_parameter("in_hot_standby")? {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        }
    }

    /// The transaction state from the last ReadyForQuery.
    pub fn transaction_status(&self) -> Option<TransactionStatus> {
        self.transaction_status
    }

    /// How many commands have not completed: held until startup ends, or
    /// sent and not yet answered.
    pub fn commands_in_flight(&self) -> usize {
        self.commands.len()
    }

    /// How many bytes of an incomplete server message the connection holds
    /// while it waits for the rest; never more than
    /// [`StartupParams::max_frame_len`]. The fuzz targets check that bound.
    ///
    /// A test hook: only with the unstable `test-hooks` feature, not for
    /// applications (the simulation and the test kit use it).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn buffered_input_len(&self) -> usize {
        self.reader.buffered_len()
    }

    // ---- input ----

    /// Takes bytes read from the server, in any chunking.
    ///
    /// Malformed or out-of-order input fails the connection with
    /// [`WireEvent::Failed`]; it never panics. Ignored once the
    /// connection failed or was terminated.
    pub fn handle_input(&mut self, data: &[u8]) {
        match self.state {
            State::Failed | State::Terminated => {}
            State::TlsHandshake => {
                if !data.is_empty() {
                    self.fail(ProtocolError::DataAfterSslResponse.into());
                }
            }
            State::SslResponse => self.handle_ssl_response(data),
            State::Authenticating | State::Starting | State::Ready => self.read_frames(data),
        }
    }

    /// Reports that the TLS handshake the driver did after
    /// [`WireEvent::StartTls`] succeeded; sends the StartupMessage.
    ///
    /// `channel_binding` is the `tls-server-end-point` hash of the server's
    /// certificate (RFC 5929), when the driver can compute it; with it, the
    /// connection uses SCRAM-SHA-256-PLUS if the server offers it.
    pub fn handle_tls_established(&mut self, channel_binding: Option<Vec<u8>>) {
        match self.state {
            State::TlsHandshake => {
                self.channel_binding = channel_binding;
                self.send_startup();
            }
            State::Failed | State::Terminated => {}
            state => self.fail(ConnectionError::OutOfOrderCall {
                call: "handle_tls_established",
                phase: state.phase(),
            }),
        }
    }

    // ---- commands ----

    /// Runs `sql` as one simple Query (several statements separated by `;`
    /// run as one implicit transaction). Sent at once when the connection is
    /// ready, pipelined behind earlier commands; held until then otherwise.
    /// After a failure or `terminate` it is dropped and never completes.
    pub fn simple_query(&mut self, sql: String) -> CommandId {
        self.command(Request::Query(sql))
    }

    /// Sends `SELECT pg_notify(channel, payload)` with the extended protocol.
    ///
    /// Each publish is Parse/Bind/Execute/Sync of the unnamed statement:
    /// nothing outlives its own Sync group, so publishing works through
    /// transaction-pooling proxies, and one failure fails only that publish.
    /// Validate the channel and payload first ([`crate::validate_channel`],
    /// [`crate::validate_payload`]): the server's refusal arrives as an error
    /// only after a round trip.
    pub fn publish(&mut self, channel: &str, payload: &str) -> CommandId {
        self.publish_all(vec![(channel.to_owned(), payload.to_owned())])
    }

    /// Sends several `pg_notify` calls as one transaction: Parse/Bind/Execute
    /// of each and a single Sync. The command completes once, with success
    /// for all or the first error for all (the server rolls the whole
    /// transaction back and skips the rest).
    ///
    /// PostgreSQL delivers identical (channel, payload) pairs sent in one
    /// transaction only once: keep them out of the same call (the bus
    /// splits its groups there).
    pub fn publish_all(&mut self, items: Vec<(String, String)>) -> CommandId {
        self.command(Request::Publish(Calls {
            sql: frontend::PUBLISH_SQL.into(),
            items,
            keep_rows: false,
        }))
    }

    /// Calls `sql`, a statement with two `text` parameters (`$1`, `$2`),
    /// once per item, as one transaction, as [`publish_all`](Self::publish_all)
    /// calls `pg_notify`: Parse/Bind/Execute of the unnamed statement per
    /// item and a single Sync. The command's rows are the calls' rows, in
    /// order (each call must return at most one column); one failure fails
    /// them all.
    ///
    /// Durable channels call `<schema>.publish($1, $2)` this way: no
    /// escaping, no plan of a literal, and many messages per commit.
    pub fn call_all(&mut self, sql: impl Into<String>, items: Vec<(String, String)>) -> CommandId {
        self.command(Request::Publish(Calls {
            sql: std::borrow::Cow::Owned(sql.into()),
            items,
            keep_rows: true,
        }))
    }

    /// Ends the session: queues Terminate (once startup has begun) and stops
    /// producing events. Commands in flight never complete.
    pub fn terminate(&mut self) {
        match self.state {
            State::Failed | State::Terminated => return,
            State::SslResponse | State::TlsHandshake => {
                // The server has not seen a startup message: just close.
                self.out.clear();
            }
            State::Authenticating | State::Starting | State::Ready => {
                frontend::terminate(&mut self.out);
            }
        }
        self.state = State::Terminated;
    }

    // ---- output ----

    /// Appends the bytes to send to `buf`; `true` if there were any.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        buf.extend_from_slice(&self.out);
        self.out.clear();
        true
    }

    /// The next event, in the order things happened.
    pub fn poll_event(&mut self) -> Option<WireEvent> {
        self.events.pop_front()
    }

    // ---- internals ----

    fn command(&mut self, request: Request) -> CommandId {
        let id = self.commands.next_id();
        match self.state {
            State::Ready => self
                .commands
                .send(id, request, &mut self.out, &mut self.events),
            State::Failed | State::Terminated => {}
            _ => self.commands.hold(id, request),
        }
        id
    }

    fn fail(&mut self, error: ConnectionError) {
        self.state = State::Failed;
        self.out.clear();
        self.events.push_back(WireEvent::Failed(error));
    }

    fn send_startup(&mut self) {
        match frontend::startup(&self.params, &mut self.out) {
            Ok(()) => self.state = State::Authenticating,
            Err(e) => self.fail(e),
        }
    }

    /// The single byte answering SSLRequest. Nothing after it may be
    /// buffered: bytes that follow it in the same read were sent before the
    /// TLS handshake and could come from a man in the middle.
    fn handle_ssl_response(&mut self, data: &[u8]) {
        let Some((&answer, rest)) = data.split_first() else {
            return;
        };
        match answer {
            b'S' | b'N' if !rest.is_empty() => {
                self.fail(ProtocolError::DataAfterSslResponse.into())
            }
            b'S' => {
                self.state = State::TlsHandshake;
                self.events.push_back(WireEvent::StartTls);
            }
            b'N' => match self.params.tls {
                TlsNegotiation::Require => self.fail(ConnectionError::TlsRefused),
                _ => self.send_startup(),
            },
            // A server that failed before it could answer (too many
            // connections, out of memory) sends an ErrorResponse; so can a
            // man in the middle, with any text it likes. As libpq since
            // CVE-2024-10977: the text is not read, the answer becomes a
            // fixed error, and plaintext is never the fallback.
            b'E' => self.fail(ConnectionError::SslRequestFailed),
            byte => self.fail(ProtocolError::BadSslResponse { byte }.into()),
        }
    }

    fn read_frames(&mut self, mut input: &[u8]) {
        while !self.state.is_over() {
            match self.reader.next(&mut input) {
                Ok(Some(frame)) => {
                    if let Err(e) = self.handle_frame(frame) {
                        self.fail(e);
                    }
                }
                Ok(None) => break,
                Err(e) => self.fail(e.into()),
            }
        }
    }

    fn handle_frame(&mut self, frame: Frame<'_>) -> Result<(), ConnectionError> {
        let tag = frame.tag;
        let message = backend::decode(tag, &frame.body, &mut self.last_channel)?;
        let unexpected = ProtocolError::Unexpected {
            tag,
            phase: self.state.phase(),
        };
        match (self.state, message) {
            (_, Message::Notice(notice)) => {
                self.events.push_back(WireEvent::Notice(notice));
                Ok(())
            }
            (State::Authenticating | State::Starting, Message::Error(e)) => {
                Err(ConnectionError::Server(e))
            }
            (State::Ready, Message::Error(e)) if e.is_fatal() => Err(ConnectionError::Server(e)),
            (State::Starting | State::Ready, Message::Notification(n)) => {
                self.events.push_back(WireEvent::Notification(n));
                Ok(())
            }
            (State::Starting | State::Ready, Message::ParameterStatus { name, value }) => {
                self.parameters.insert(name.clone(), value.clone());
                self.events
                    .push_back(WireEvent::ParameterStatus { name, value });
                Ok(())
            }
            (State::Authenticating, Message::Authentication(request)) => {
                let creds = Credentials {
                    user: &self.params.user,
                    password: self.params.password.as_deref(),
                    channel_binding: self.channel_binding.as_deref(),
                };
                if self.auth.handle(request, &creds, &mut self.out)? == Step::Authenticated {
                    self.state = State::Starting;
                }
                Ok(())
            }
            (
                State::Starting,
                Message::BackendKeyData {
                    process_id,
                    secret_key,
                },
            ) if self.backend_key.is_none() => {
                self.backend_key = Some((process_id, secret_key));
                Ok(())
            }
            (State::Starting, Message::ReadyForQuery(status)) => {
                self.state = State::Ready;
                self.transaction_status = Some(status);
                self.events.push_back(WireEvent::Ready);
                self.commands.release(&mut self.out, &mut self.events);
                Ok(())
            }
            (
                State::Ready,
                message @ (Message::Error(_)
                | Message::RowDescription { .. }
                | Message::DataRow(_)
                | Message::CommandComplete
                | Message::EmptyQueryResponse
                | Message::ParseComplete
                | Message::BindComplete
                | Message::ReadyForQuery(_)),
            ) => {
                if let Some(status) = self.commands.on_reply(tag, message, &mut self.events)? {
                    self.transaction_status = Some(status);
                }
                Ok(())
            }
            _ => Err(unexpected.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_can_move_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Connection>();
        assert_send_sync::<WireEvent>();
    }
}
