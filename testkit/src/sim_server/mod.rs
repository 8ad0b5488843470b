//! A simulated PostgreSQL server that speaks the real wire protocol (v3) in
//! memory, for deterministic simulation of LISTEN/NOTIFY clients.
//!
//! [`SimServer`] does no IO, reads no clock and starts no thread: every
//! input carries the virtual time it happened at, and every arbitrary choice
//! (backend PIDs, secret keys, MD5 salts) comes from the seed in
//! [`SimConfig`]. The same seed and the same inputs give the same bytes, so
//! a failing simulation schedule replays exactly.
//!
//! # The contract
//!
//! Like quinn-proto's `Connection`, the server's methods come in four kinds:
//!
//! - **inputs** — [`accept`](SimServer::accept) (a client connects),
//!   [`handle_client_bytes`](SimServer::handle_client_bytes) (bytes the client
//!   wrote), [`disconnect`](SimServer::disconnect) (the client closed its
//!   end) and [`handle_timeout`](SimServer::handle_timeout);
//! - **outputs** — [`poll_server_bytes`](SimServer::poll_server_bytes) (bytes
//!   the client may read at `now`), [`is_open`](SimServer::is_open) (false
//!   once the client would read end-of-file) and
//!   [`next_wakeup`](SimServer::next_wakeup);
//! - **commands** from the test: NOTIFYs from other sessions
//!   ([`notify_external`](SimServer::notify_external)) and faults
//!   ([`fail_next`](SimServer::fail_next), [`terminate`](SimServer::terminate),
//!   [`shutdown`](SimServer::shutdown), [`black_hole`](SimServer::black_hole),
//!   [`delay_replies`](SimServer::delay_replies),
//!   [`set_refusing`](SimServer::set_refusing), [`set_role`](SimServer::set_role));
//! - **ground truth** for invariant checks — [`sent_log`](SimServer::sent_log),
//!   [`delivered_to`](SimServer::delivered_to),
//!   [`listening_channels`](SimServer::listening_channels),
//!   [`backend_pid`](SimServer::backend_pid), [`stats`](SimServer::stats).
//!
//! After any input or command, drain `poll_server_bytes` for each connection
//! and then check `is_open`; when nothing else is due, advance virtual time
//! to `next_wakeup` and call `handle_timeout`.
//!
//! # PostgreSQL behaviour simulated
//!
//! - Startup: SSLRequest (and GSSENCRequest) answered `N` (or `S`, see
//!   [`SslAnswer`]), StartupMessage, trust / cleartext / MD5 authentication,
//!   ParameterStatus as PostgreSQL 15 sends it (with `in_hot_standby`),
//!   BackendKeyData with a PID unique on this server, ReadyForQuery.
//! - Statements: `LISTEN ch`, `UNLISTEN ch`, `UNLISTEN *`,
//!   `NOTIFY ch [, 'payload']`, `SELECT pg_notify(a, b)` (literals, `NULL`,
//!   `$n`), `SELECT pg_listening_channels()`, `SELECT <integer>`,
//!   `SHOW transaction_read_only | in_hot_standby | server_version`. Anything
//!   else is a syntax error (42601).
//! - A simple query is one implicit transaction: an error in any statement
//!   rolls back every LISTEN, UNLISTEN and NOTIFY of that query. In the
//!   extended protocol the transaction runs until Sync, and an error skips
//!   every message until Sync.
//! - LISTEN takes effect at commit. A committed notification goes to every
//!   backend LISTENing on its channel once the transaction's own LISTEN
//!   changes are applied, in commit order, the sender included (with its own
//!   PID); duplicates within a transaction are collapsed. A backend writes
//!   NotificationResponse only between commands: at once when idle, else at
//!   the end of the command (see [`NotifyPlacement`]).
//! - `pg_notify` rejects an empty channel, a channel over 63 bytes and a
//!   payload of 8000 bytes or more (22023); LISTEN and NOTIFY truncate a
//!   long identifier with a NOTICE. On a standby LISTEN and NOTIFY fail with
//!   25006 ("cannot execute LISTEN during recovery").
//! - Malformed frames get FATAL 08P01 and the connection closes.
//!
//! Not simulated: TLS and SCRAM, explicit `BEGIN`/`COMMIT`, Execute's row
//! limit (PortalSuspended), COPY, function calls, and any SQL beyond the
//! statements above. Message texts, SQLSTATEs and message order were
//! checked against PostgreSQL 15 for startup, LISTEN/NOTIFY in one query,
//! Describe of `pg_notify($1, $2)`, extended-protocol errors and a bad
//! message type.
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use pgnotify_testkit::sim_server::{SimConfig, SimServer};
//! use postgres_protocol::message::frontend;
//!
//! let now = Instant::now();
//! let mut server = SimServer::new(SimConfig { seed: 1, ..SimConfig::default() });
//! let conn = server.accept(now)?;
//! let mut out = BytesMut::new();
//! frontend::startup_message([("user", "app")], &mut out)?;
//! frontend::query("LISTEN jobs; NOTIFY jobs, 'hello'", &mut out)?;
//! server.handle_client_bytes(conn, now, &out);
//!
//! let mut reply = Vec::new();
//! server.poll_server_bytes(conn, now, &mut reply);
//! assert_eq!(reply.last(), Some(&b'I')); // ends with ReadyForQuery(Idle)
//! assert_eq!(server.listening_channels(conn), ["jobs"]);
//! assert_eq!(server.sent_log()[0].listeners, [conn]);
//! assert_eq!(server.delivered_to(conn), [0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod conn;
mod error;
mod exec;
mod faults;
mod frontend;
mod log;
mod outbox;
mod reply;
pub(crate) mod rng;
mod server;
mod sql;

pub use config::{AuthMethod, NotifyPlacement, ServerRole, SimConfig, SslAnswer};
pub use error::{Refused, Severity, SqlError};
pub use faults::FaultPoint;
pub use log::{ConnId, SentNotification, SimStats};
pub use server::{ShutdownMode, SimServer};
