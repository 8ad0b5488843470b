//! The bus: many subscribers over one connection, kept correct across
//! reconnects.
//!
//! [`Bus`] owns the channel registry, the subscriber queues, the connection
//! lifecycle (connect, startup, re-LISTEN, pings, backoff, failover) and the
//! publish pipeline. It drives one [`protocol::Connection`](crate::protocol::Connection)
//! at a time and never does IO itself.

mod backoff;
mod batch;
pub mod consumption;
mod error;
mod fanout;
mod filter;
mod group;
mod guard;
mod lifecycle;
mod log;
mod options;
mod output;
mod ping;
pub mod policy;
mod publish;
mod queue;
mod registry;
mod segment;
mod session;
mod side_publish;
mod stats;
mod subscribers;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Instant;

pub use batch::{EventBatch, EventRef, IntoIter as EventBatchIntoIter, Iter as EventBatchIter};
pub use consumption::Consumption;
pub use error::{BusError, NotifyError, TransportError, TransportErrorKind};
pub use group::MAX_GROUP;
pub use guard::{CheckKind, SessionStatus, SideCheck, SideSession};
pub use output::{
    Action, BusEvent, ConnectTarget, Output, PublishId, SessionTarget, SubscriberStatus, TlsTarget,
};
pub use registry::SubscriberId;
pub use side_publish::{SidePublish, SidePublishId, SidePublishOutcome};
pub use stats::{NEAR_LIMIT_PAYLOAD_LEN, Stats};

use crate::config::{Config, ConfigError, SslMode, TransactionPooler};
use crate::protocol::{CommandId, Connection, QueryResult, ServerError, WireEvent};
use crate::{
    ChannelError, Event, Notification, SubscribeOptions, validate_channel, validate_payload,
};
use backoff::Backoff;
use fanout::PendingFanOut;
use guard::ServerGuard;
use lifecycle::Stage;
use ping::Pinger;
use publish::{PublishQueue, WaitingPublish};
use registry::{Batch, ChannelRegistry};
use side_publish::SidePublishes;
use subscribers::Subscribers;

/// What a command in flight on the connection is for.
#[derive(Debug)]
enum Purpose {
    /// The LISTENs of a new connection: the ping channel and every
    /// subscribed channel, in one query.
    Relisten(Batch),
    /// Incremental LISTEN/UNLISTEN changes while connected.
    Changes(Batch),
    /// `SHOW transaction_read_only` for `target_session_attrs=read-write`.
    ReadOnlyCheck,
    /// A health ping.
    Ping,
    /// A query sent when a ping's NOTIFY completed before its notification
    /// came: its answer confirms that nothing is left in flight (see `ping.rs`).
    PingConfirm,
    /// `SELECT pg_listening_channels()` compared with the registry.
    ListenCheck,
    /// Applications' publishes, in one transaction.
    Publish {
        ids: Vec<PublishId>,
        /// For a group of several `notify` calls: each call, to send again
        /// alone should the group fail (its transaction rolled back, so
        /// nothing was delivered), so that only a failing call fails.
        retry: Option<Vec<WaitingPublish>>,
    },
    /// `UNLISTEN *` on close.
    UnlistenAll,
    /// The `SET`s that turn the server's session timeouts off (see
    /// `session.rs`); a failure is only counted.
    TimeoutsOff,
    /// A query sent when a subscriber joined an already LISTENed channel:
    /// it becomes ready with the answer, after everything the server sent
    /// before it joined.
    ReadyMarker(SubscriberId),
}

/// Many subscribers over one PostgreSQL LISTEN connection, as a pure state
/// machine.
///
/// The bus never does IO and never reads the clock. A *driver* owns it
/// together with at most one transport (a byte stream to the server: TCP or
/// a unix socket, with TLS if the driver has it) and one timer, and moves
/// bytes, time and commands between them and the bus. This section is the
/// whole contract between the two. `examples/blocking.rs` in this crate is
/// a complete driver on `std` alone, kept as the reference for it;
/// `pgnotify-driver` is the async one.
///
/// # The methods
///
/// As in quinn-proto, they fall into four kinds:
///
/// - getters on `&self` ([`wants_input`](Self::wants_input),
///   [`poll_timeout`](Self::poll_timeout), [`is_readable`](Self::is_readable),
///   [`stats`](Self::stats), ...): they change nothing and create no output;
/// - inputs from the transport and the timer:
///   [`handle_connected`](Self::handle_connected),
///   [`handle_tls_established`](Self::handle_tls_established),
///   [`handle_input`](Self::handle_input), [`handle_closed`](Self::handle_closed),
///   [`handle_timeout`](Self::handle_timeout),
///   [`handle_server_queue_usage`](Self::handle_server_queue_usage);
/// - application commands: [`subscribe`](Self::subscribe),
///   [`unsubscribe`](Self::unsubscribe), [`notify`](Self::notify),
///   [`bounce`](Self::bounce), [`close`](Self::close), and taking a
///   subscriber's items: [`drain_events`](Self::drain_events),
///   [`drain_batch`](Self::drain_batch), [`lend_batch`](Self::lend_batch);
/// - outputs: [`poll_transmit`](Self::poll_transmit),
///   [`poll_action`](Self::poll_action), [`poll_event`](Self::poll_event),
///   and [`poll_output`](Self::poll_output), the three in one.
///
/// # The drive loop
///
/// Every input and every command may create output, and so does acting on
/// output: `handle_connected` after an [`Action::Connect`] queues the
/// startup message, `handle_closed` may queue the next `Connect` at once,
/// a drain may announce its subscriber again or resume reading. So after
/// any call that is not a getter, the driver drains the three outputs, in
/// this order, **until one whole pass finds nothing**:
///
/// ```text
/// loop {
///     poll_transmit(buf)  -> write all of buf to the transport
///     poll_action()*      -> act on each (connect, start TLS, disconnect, check the server queue)
///     poll_event()*       -> dispatch each (wake or drain subscribers, finish publishes, report)
///     if none of the three gave anything: break
/// }
/// ```
///
/// Acting on an action or an event inside the pass, with the `handle_*` or
/// drain call it asks for (a blocking driver connects and calls
/// `handle_connected` at once), is fine: the next pass picks up what that
/// created. [`poll_output`](Self::poll_output) is this loop written once,
/// and every driver in the workspace uses it:
///
/// ```text
/// while let Some(output) = bus.poll_output(&mut buf) {
///     match output {
///         Output::Transmit => write all of buf to the transport,
///         Output::Action(action) => act on it,
///         Output::Event(event) => dispatch it,
///     }
/// }
/// ```
///
/// Then the driver waits for the first of: input on the transport,
/// read only while [`wants_input`](Self::wants_input) (feed it with
/// `handle_input`); the instant [`poll_timeout`](Self::poll_timeout)
/// returned (call `handle_timeout`); a command from the application. And
/// drains again.
///
/// What each output gives, and when:
///
/// - [`poll_transmit`](Self::poll_transmit) appends *everything* queued so
///   far to the buffer in one call and returns whether it appended
///   anything; the next call returns `false` until something new is
///   queued. It gives bytes only while a transport is open: after
///   `handle_connected` and before the bus's [`Action::Disconnect`] or the
///   driver's `handle_closed`. Bytes the driver could not write before the
///   transport ended are thrown away, never sent on the next connection.
///   Bytes given before `handle_tls_established` are plaintext (the
///   SSLRequest); after it, they go through TLS.
/// - [`poll_action`](Self::poll_action) gives each [`Action`] once, in
///   order. At most one transport is wanted at a time: a `Connect` always
///   comes after the previous transport ended (`Disconnect`, or the driver's
///   `handle_closed`). `StartTls` comes only on an open transport whose
///   server accepted TLS. `Disconnect` means: write what `poll_transmit`
///   gave before it, then close the transport, or abandon a connect still
///   in progress; no `handle_closed` follows. `SideCheck` asks for a
///   second, short session beside the listening one (see the action).
/// - [`poll_event`](Self::poll_event) gives each [`BusEvent`] once, in order.
/// - [`poll_timeout`](Self::poll_timeout) is the next instant at which
///   `handle_timeout` must be called; `None` means no timer. Any call may
///   move it, so read it again before every wait. Calling `handle_timeout`
///   early is harmless (nothing that is not due happens); late only delays
///   what was due.
///
/// # Subscribers: readiness is level-triggered
///
/// [`BusEvent::SubscriberReadable`] says a subscriber has items queued. It
/// is sent when its queue becomes non-empty, and sent again by every drain
/// ([`drain_events`](Self::drain_events), [`drain_batch`](Self::drain_batch),
/// [`lend_batch`](Self::lend_batch)) that returns with items still queued,
/// whatever its `max`. So a driver may take any number of items per
/// announcement, all of them or a bounded batch, and strands none: as long
/// as it drains once per `SubscriberReadable` and keeps draining the
/// outputs, the subscriber is announced again until its queue is empty.
/// [`is_readable`](Self::is_readable) reads the same level at any time. An
/// announcement may be stale (its items were taken already): the drain
/// then returns nothing. A drain with `max` 0 takes nothing and announces
/// again, so answering each announcement with an empty drain never ends.
/// [`Stats::notifications_queued`] and [`Stats::notifications_taken`]
/// count both sides.
///
/// # Timeouts
///
/// Every timer is the bus's own and reaches the driver through
/// `poll_timeout`, except the per-address connect limit and TCP keepalive,
/// which only the driver can apply. The settings are [`Config`]'s (URL
/// parameters of the same names):
///
/// | what is bounded | setting (default) | when it expires |
/// |---|---|---|
/// | one attempt, from `Action::Connect` to the end of the startup: the transport, TLS, authentication, the startup itself and the read-only check of `target_session_attrs`, one budget for all | `connect_timeout` (unset: `ping_interval + ping_timeout`, 15 s) | [`BusError::StartupTimedOut`] in [`BusEvent::ConnectFailed`]; the next host, or the backoff |
/// | the LISTENs of a new connection, a budget of the same length of their own | as above | as above |
/// | opening one address (the driver's) | [`ConnectTarget::connect_timeout`], which is `connect_timeout`; `None`: no limit of the driver's own, the attempt's deadline still applies | the driver reports [`TransportErrorKind::ConnectTimedOut`] and may try the next address |
/// | a health ping's answer, one sent every `ping_interval` (10 s); suspended while reading is paused on purpose | `ping_timeout` (5 s) | [`BusError::PingTimedOut`]: the connection is replaced |
/// | the wait before a reconnect | `backoff_min` (100 ms) to `backoff_max` (10 s); the first retry is immediate | the next `Action::Connect` |
/// | a publish waiting for a connection | `publish_timeout` (5 s) | [`NotifyError::NotConnected`] |
/// | a full `Absorb` subscriber that consumes nothing | its `stall_limit` (5 s) | it drops instead of pausing the reading |
/// | checking the server's queue while reading is paused | every second (fixed) | [`Action::SideCheck`] |
/// | `close` waiting for `UNLISTEN *` | `ping_timeout` | closed anyway |
/// | TCP keepalive, `TCP_USER_TIMEOUT` (the driver's socket) | `keepalives*`, `tcp_user_timeout` in [`ConnectTarget::keepalive`] | the OS fails the socket; the driver reports [`TransportErrorKind::Io`] |
///
/// A blocking driver cannot act on the timer while it waits in a connect
/// or a name lookup, so it bounds each connect itself (the example uses
/// `connect_timeout`, else 10 s); the attempt's deadline then fails an
/// attempt that took too long as soon as `handle_timeout` runs.
///
/// # Drivers without TLS
///
/// [`Bus::new`] is for a driver that can run TLS when asked
/// ([`Action::StartTls`]): with the default `sslmode=prefer`, a server that
/// offers TLS gets it. A driver without TLS makes its bus with
/// [`Bus::without_tls`]: `disable` and `prefer` then connect in plain text
/// (no SSLRequest is sent, so `StartTls` never comes) and `require`,
/// `verify-ca` and `verify-full` are refused with
/// [`ConfigError::TlsUnavailable`], as a libpq built without SSL support
/// refuses them.
///
/// # Transport errors
///
/// When connecting fails or the transport fails or closes, the driver calls
/// `handle_closed` with a [`TransportError`]: its kind says what failed and
/// whether retrying can help (only [`TransportErrorKind::Tls`] is
/// permanent), its message says where and why without repeating the kind
/// (the address tried; the OS or TLS library's error text). It is shown as
/// `<kind's phrase>: <message>`.
///
/// ```
/// use std::time::Instant;
/// use pgnotify_core::bus::{Action, Bus};
/// use pgnotify_core::config::Config;
///
/// let now = Instant::now();
/// let mut bus = Bus::new(Config::parse("postgres://app@db.example/app").unwrap(), now);
/// let id = bus.subscribe("jobs", Default::default()).unwrap();
/// // The bus asks its driver to open a connection first.
/// assert!(matches!(bus.poll_action(), Some(Action::Connect(_))));
/// # let _ = id;
/// ```
#[derive(Debug)]
pub struct Bus {
    config: Config,
    stage: Stage,
    conn: Option<Connection>,
    /// Whether a transport is open (or opening) that a failure must close.
    transport_open: bool,
    /// Index into `config.hosts()` of the current or next attempt.
    host_index: usize,
    generation: u64,
    ever_connected: bool,
    backoff: Backoff,
    /// Set while the current connection has not yet proved the server works
    /// (see `backoff.rs`): when it will count as proved without a ping answer.
    healthy_at: Option<Instant>,
    registry: ChannelRegistry,
    /// Whether a registry batch is in flight (one at a time keeps acks simple).
    changes_in_flight: bool,
    subscribers: Subscribers,
    /// Notifications of the current run of input, per channel, not yet
    /// queued to subscribers (empty between inputs).
    pending: PendingFanOut,
    pinger: Pinger,
    /// The ping channel of a connection whose LISTENs are in flight.
    pending_ping_channel: Option<String>,
    /// What the bus learned of the current connection's session (its own
    /// pid, timeouts, delivery probe); starts over with each connection.
    session: session::SessionFacts,
    /// Publish transactions sent and not yet answered.
    publishes_in_flight: usize,
    publishes: PublishQueue,
    /// Publish transactions on a second session while reading is paused
    /// (`side_publish.rs`).
    side_publishes: SidePublishes,
    commands: HashMap<CommandId, Purpose>,
    actions: VecDeque<Action>,
    events: VecDeque<BusEvent>,
    /// The overflow summary written through `tracing` (`log.rs`).
    overflow_log: log::OverflowLog,
    /// Since when reading has been paused by a full `Backpressure` or
    /// absorbing `Absorb` subscriber.
    paused_since: Option<Instant>,
    /// Watches the server's notification queue while `Absorb` pauses.
    guard: ServerGuard,
    /// The latest time an input carried: [`stats`](Self::stats), a getter,
    /// counts a pause still going on up to it.
    latest_now: Instant,
    stats: Stats,
}

impl Bus {
    /// A bus for `config` that asks to connect at once, for a driver that
    /// can run TLS when asked ([`Action::StartTls`]).
    pub fn new(config: Config, now: Instant) -> Self {
        let pinger = Pinger::new(config.ping_interval(), config.ping_timeout());
        let backoff = Backoff::new(config.backoff_min(), config.backoff_max(), config.seed());
        let mut bus = Self {
            stage: Stage::Idle,
            conn: None,
            transport_open: false,
            host_index: 0,
            generation: 0,
            ever_connected: false,
            backoff,
            healthy_at: None,
            registry: ChannelRegistry::new(),
            changes_in_flight: false,
            subscribers: Subscribers::default(),
            pending: PendingFanOut::default(),
            pinger,
            pending_ping_channel: None,
            session: session::SessionFacts::default(),
            publishes_in_flight: 0,
            publishes: PublishQueue::default(),
            side_publishes: SidePublishes::default(),
            commands: HashMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            paused_since: None,
            overflow_log: log::OverflowLog::default(),
            guard: ServerGuard::default(),
            latest_now: now,
            stats: Stats::default(),
            config,
        };
        bus.start_attempt(now);
        bus
    }

    /// A bus for a driver that has no TLS, which asks to connect at once.
    ///
    /// As with a libpq built without SSL support: `sslmode=disable` and
    /// `sslmode=prefer` connect in plain text, without asking the server
    /// for TLS (no SSLRequest is sent, and [`Action::StartTls`] never
    /// comes), and the modes that require TLS are refused, since no
    /// connection could satisfy them. The bus runs with `sslmode=disable`,
    /// and its [`config`](Self::config) says so.
    ///
    /// # Errors
    ///
    /// [`ConfigError::TlsUnavailable`] for `sslmode=require`, `verify-ca`
    /// and `verify-full` (also implied by `sslrootcert=system`).
    ///
    /// ```
    /// use std::time::Instant;
    /// use pgnotify_core::bus::Bus;
    /// use pgnotify_core::config::{Config, ConfigError, SslMode};
    ///
    /// let prefer = Config::parse("postgres://app@db.example/app")?;
    /// let bus = Bus::without_tls(prefer, Instant::now())?;
    /// assert_eq!(bus.config().ssl_mode(), SslMode::Disable);
    ///
    /// let require = Config::parse("postgres://app@db.example/app?sslmode=require")?;
    /// assert!(matches!(
    ///     Bus::without_tls(require, Instant::now()),
    ///     Err(ConfigError::TlsUnavailable { ssl_mode: SslMode::Require })
    /// ));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn without_tls(config: Config, now: Instant) -> Result<Self, ConfigError> {
        let config = match config.ssl_mode() {
            SslMode::Disable => config,
            SslMode::Prefer => config.to_builder().ssl_mode(SslMode::Disable).build()?,
            ssl_mode => return Err(ConfigError::TlsUnavailable { ssl_mode }),
        };
        Ok(Self::new(config, now))
    }

    // ---------------------------------------------------------------- getters

    /// The configuration the bus was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The generation of the current connection (0 before the first).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The backend process id of the current connection, if one is up.
    ///
    /// Notifications the bus itself sent carry this pid. It is the server's
    /// own answer to `pg_backend_pid()` once the connection's LISTENs are
    /// acknowledged (through a pooler, BackendKeyData carries a made-up
    /// pid), and BackendKeyData's until then.
    pub fn backend_pid(&self) -> Option<i32> {
        let conn = self.conn.as_ref()?;
        self.session.own_pid.or_else(|| conn.backend_pid())
    }

    /// Whether the driver should read the socket. False while a subscriber
    /// with [`OverflowPolicy::Backpressure`](crate::OverflowPolicy::Backpressure)
    /// or [`OverflowPolicy::Absorb`](crate::OverflowPolicy::Absorb) is full
    /// (an `Absorb` one only until its stall limit or the server guard
    /// releases it): the server then buffers in its own notification queue.
    ///
    /// Only a listening connection is paused: a new connection is always
    /// read until its LISTENs are acknowledged, or it could never start up.
    /// Whatever a read brings after the pause begins stays decoded inside
    /// the connection, unhandled, until a drain resumes it, so a full queue
    /// holds at most `capacity + n` (n: the notifications of the one read
    /// that filled it) however many reconnects happen meanwhile. A driver
    /// must honour this: input fed while paused is buffered, not handled.
    pub fn wants_input(&self) -> bool {
        self.paused_since.is_none() || !self.stage.is_listening()
    }

    /// Where subscriber `id` stands.
    pub fn subscriber_status(&self, id: SubscriberId) -> SubscriberStatus {
        self.subscribers.status(id)
    }

    /// Whether the server has acknowledged subscriber `id`'s LISTEN at some
    /// point ([`BusEvent::SubscriberReady`] was emitted). Unlike
    /// [`subscriber_status`](Self::subscriber_status) it stays true once
    /// the subscriber's stream has ended: a driver's `subscribe` that waits
    /// for the acknowledgement asks this. False for an unknown subscriber.
    pub fn was_ready(&self, id: SubscriberId) -> bool {
        self.subscribers.was_ready(id)
    }

    /// Whether subscriber `id` has items queued (notifications or gaps): the
    /// level that [`BusEvent::SubscriberReadable`] announces (see
    /// "Subscribers: readiness is level-triggered" above). False for an
    /// unknown subscriber.
    pub fn is_readable(&self, id: SubscriberId) -> bool {
        self.subscribers.is_readable(id)
    }

    /// How many notifications subscriber `id` has been delivered and not
    /// yet consumed: those queued, plus those [lent](Self::lend_batch) to
    /// its driver and not yet reported consumed. Its capacity bounds this
    /// (see [`SubscribeOptions::capacity`]); 0 for an unknown subscriber.
    pub fn pending(&self, id: SubscriberId) -> usize {
        self.subscribers.pending(id)
    }

    /// The channels the bus believes are LISTENed on the server right now
    /// (the ping channel excluded), for convergence checks.
    pub fn listening_channels(&self) -> Vec<String> {
        self.registry
            .listening_channels()
            .map(str::to_owned)
            .collect()
    }

    /// The channels with at least one subscriber, ready or waiting.
    ///
    /// A test hook: only with the unstable `test-hooks` feature, not for
    /// applications (the simulation and the test kit use it).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn subscribed_channels(&self) -> Vec<String> {
        self.registry
            .subscribed_channels()
            .map(str::to_owned)
            .collect()
    }

    /// Whether the LISTEN state has converged: nothing in flight, nothing
    /// pending, and the channels LISTENed are exactly the subscribed ones
    /// (invariant 5, checked by the simulation).
    ///
    /// A test hook: only with the unstable `test-hooks` feature, not for
    /// applications (the simulation and the test kit use it).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn is_settled(&self) -> bool {
        self.registry.is_settled() && !self.changes_in_flight
    }

    /// The current connection's ping channel, if connected.
    ///
    /// A test hook: only with the unstable `test-hooks` feature, not for
    /// applications (the simulation and the test kit use it).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn ping_channel(&self) -> Option<&str> {
        self.pinger.channel()
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.connected = self.stage.is_listening();
        stats.generation = self.generation;
        stats.channels = self.registry.channel_count();
        self.subscribers.fill_stats(&mut stats);
        stats.last_ping_rtt = self.pinger.last_rtt();
        stats.pings_sent = self.pinger.sent_total();
        stats.reading_paused = self.paused_since.is_some();
        if let Some(since) = self.paused_since {
            stats.paused_for += self.latest_now.saturating_duration_since(since);
        }
        stats
    }

    // --------------------------------------------------- application commands

    /// Adds a subscriber to `channel`.
    ///
    /// The subscriber is [`Pending`](SubscriberStatus::Pending) until the
    /// server acknowledges the channel's LISTEN; then the bus emits
    /// [`BusEvent::SubscriberReady`]. If the channel is already LISTENed (or
    /// its LISTEN is in flight) it becomes ready with the answer to a
    /// `SELECT 1` sent now, one round trip, so that nothing the server sent
    /// before it joined reaches it. Subscribers created while
    /// disconnected become ready on the next connection. On a closed bus the
    /// subscriber ends at once with [`EndReason::BusClosed`](crate::EndReason::BusClosed).
    pub fn subscribe(
        &mut self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<SubscriberId, ChannelError> {
        validate_channel(channel)?;
        let name = self
            .registry
            .shared_name(channel)
            .unwrap_or_else(|| std::sync::Arc::from(channel));
        let id = self.subscribers.insert(name, options);
        if self.stage.is_closed() {
            // A closed bus will never LISTEN again: the subscription ends at
            // once instead of waiting forever.
            self.subscribers
                .end(id, crate::EndReason::BusClosed, &mut self.events);
            return Ok(id);
        }
        if self.registry.add(channel, id) && self.stage.is_listening() {
            self.confirm_ready(id);
        }
        self.send_registry_changes();
        Ok(id)
    }

    /// Makes subscriber `id` ready with the answer to a query sent now.
    ///
    /// Its channel is LISTENed already (or its LISTEN's acknowledgement was
    /// on its way when it joined). What the server sent before it joined may
    /// not be handled yet: unread in the socket, or decoded and held while
    /// reading is paused. The query's answer comes after all of it, so the
    /// subscriber receives nothing from before it joined.
    fn confirm_ready(&mut self, id: SubscriberId) {
        self.send_round_trip(Purpose::ReadyMarker(id));
    }

    /// Sends [`session::ROUND_TRIP_QUERY`] for `purpose`.
    fn send_round_trip(&mut self, purpose: Purpose) {
        if let Some(conn) = self.conn.as_mut() {
            let cmd = conn.simple_query(session::ROUND_TRIP_QUERY.to_owned());
            self.commands.insert(cmd, purpose);
        }
    }

    /// Marks ready what an acknowledged LISTEN batch made ready, and
    /// confirms the subscribers that joined while it was in flight.
    fn mark_acked_ready(&mut self, acked: registry::Acked) {
        for id in acked.ready {
            self.subscribers.mark_ready(id, &mut self.events);
        }
        for id in acked.to_confirm {
            self.confirm_ready(id);
        }
    }

    /// Removes subscriber `id`. Nothing is delivered to it afterwards; its
    /// queued items are discarded. The channel is UNLISTENed when its last
    /// subscriber leaves.
    pub fn unsubscribe(&mut self, now: Instant, id: SubscriberId) {
        if let Some(channel) = self.subscribers.remove(id) {
            self.registry.remove(&channel, id);
            self.send_registry_changes();
        }
        self.update_backpressure_after_change(now);
    }

    /// Publishes `payload` on `channel`.
    ///
    /// Arguments are validated before anything is queued. The publish is sent
    /// at once when connected (pipelined with other commands), or waits up to
    /// `publish_timeout` for a connection. Its result arrives exactly once as
    /// [`BusEvent::PublishDone`].
    pub fn notify(
        &mut self,
        now: Instant,
        channel: &str,
        payload: &str,
    ) -> Result<PublishId, NotifyError> {
        validate_channel(channel)?;
        validate_payload(payload)?;
        if self.stage.is_closed() {
            return Err(NotifyError::Closed);
        }
        if payload.len() >= stats::NEAR_LIMIT_PAYLOAD_LEN {
            self.stats.near_limit_published += 1;
        }
        let id = self.publishes.next_id();
        let publish = WaitingPublish {
            id,
            items: vec![(channel.to_owned(), payload.to_owned())],
            atomic: false,
            queued_at: now,
            deadline: now + self.config.publish_timeout(),
        };
        self.send_or_queue(publish);
        Ok(id)
    }

    /// Sends every `(channel, payload)` of `items` in one transaction: all
    /// are delivered or none is, and one [`BusEvent::PublishDone`] reports
    /// the outcome. As [`notify`](Self::notify) otherwise (checks before
    /// sending, waits for a connection up to `publish_timeout`).
    ///
    /// PostgreSQL delivers identical (channel, payload) pairs sent in one
    /// transaction once, so a batch holding the same pair twice is refused
    /// ([`NotifyError::Duplicate`]) rather than silently folded.
    pub fn notify_many<C, P>(
        &mut self,
        now: Instant,
        items: impl IntoIterator<Item = (C, P)>,
    ) -> Result<PublishId, NotifyError>
    where
        C: AsRef<str>,
        P: AsRef<str>,
    {
        let pairs = crate::statement::checked_batch(items)?;
        if self.stage.is_closed() {
            return Err(NotifyError::Closed);
        }
        let near_limit = pairs
            .iter()
            .filter(|(_, p)| p.len() >= stats::NEAR_LIMIT_PAYLOAD_LEN)
            .count();
        self.stats.near_limit_published += near_limit as u64;
        let id = self.publishes.next_id();
        let publish = WaitingPublish {
            id,
            items: pairs,
            atomic: true,
            queued_at: now,
            deadline: now + self.config.publish_timeout(),
        };
        self.send_or_queue(publish);
        Ok(id)
    }

    /// Sends a publish now, or queues it: until a connection is up, or
    /// (group commit) until the publishes in flight complete.
    fn send_or_queue(&mut self, publish: WaitingPublish) {
        if self.publishing_beside() {
            if self.side_publishes.busy() {
                self.publishes.push(publish);
            } else {
                self.send_beside(vec![publish]);
            }
            return;
        }
        let behind_others = self.config.group_commit() && self.publishes_in_flight > 0;
        if self.stage.accepts_commands() && !behind_others {
            self.send_transaction(vec![publish]);
        } else {
            self.publishes.push(publish);
        }
    }

    /// Sends every queued publish, grouped into as few transactions as
    /// group commit allows (one each without it).
    /// While reading is paused they go on a second session, one transaction
    /// at a time (see `side_publish.rs`).
    pub(super) fn send_queued_publishes(&mut self) {
        let beside = self.publishing_beside();
        if beside && self.side_publishes.busy() {
            // Sent when the side transaction in flight reports.
            return;
        }
        let queued: Vec<WaitingPublish> = self.publishes.take_all().collect();
        if queued.is_empty() {
            return;
        }
        let transactions = if beside || self.config.group_commit() {
            group::transactions(queued)
        } else {
            queued.into_iter().map(|p| vec![p]).collect()
        };
        if beside {
            // One side transaction at a time: the first goes now, the rest
            // wait for it.
            let mut transactions = transactions.into_iter();
            if let Some(first) = transactions.next() {
                self.send_beside(first);
            }
            for publish in transactions.flatten() {
                self.publishes.push(publish);
            }
        } else {
            for transaction in transactions {
                self.send_transaction(transaction);
            }
        }
    }

    /// Whether publishes go on a second session: reading is paused on a
    /// listening connection, so an answer there would wait behind the
    /// notifications nobody reads (`side_publish.rs`).
    fn publishing_beside(&self) -> bool {
        self.holding_input()
            && self.side_publishes.available()
            && !self.subscribers.any_skipping_own()
    }

    /// Sends `publishes` as one transaction on a second session.
    fn send_beside(&mut self, publishes: Vec<WaitingPublish>) {
        let items = publishes.iter().flat_map(|p| p.items.clone()).collect();
        let session = self.session_target("publish");
        let id = self.side_publishes.start(publishes);
        self.stats.publish_transactions += 1;
        self.stats.side_publish_transactions += 1;
        self.actions
            .push_back(Action::SidePublish(SidePublish { id, session, items }));
    }

    /// [`bounce`](Self::bounce) on behalf of a recovery tracker, counted in
    /// [`Stats::tracker_bounces`]: fallback polls kept finding work that no
    /// notification announced, so the LISTEN path is presumed broken even
    /// though pings pass.
    pub fn recovery_bounce(&mut self, now: Instant) {
        if self.stage.is_closed() {
            return;
        }
        self.stats.tracker_bounces += 1;
        self.bounce(now);
    }

    /// Counts a panic in an application's callback handler, in
    /// [`Stats::handler_panics`]. The driver reports them here so that
    /// every counter lives in one [`Stats`].
    pub fn record_handler_panic(&mut self) {
        self.stats.handler_panics += 1;
    }

    /// Drops the connection and reconnects at once.
    pub fn bounce(&mut self, now: Instant) {
        if self.stage.is_closed() {
            return;
        }
        self.backoff.reset();
        match self.stage {
            Stage::Waiting { .. } | Stage::Idle => self.start_attempt(now),
            _ => self.connection_lost(now, BusError::Bounced),
        }
    }

    /// Closes the bus: `UNLISTEN *`, Terminate, no further connection.
    ///
    /// Every subscription ends with [`EndReason::BusClosed`](crate::EndReason::BusClosed)
    /// at once; publishes still waiting fail with [`NotifyError::Closed`];
    /// publishes already in flight get their result before the connection
    /// closes. [`BusEvent::Closed`] marks the end.
    pub fn close(&mut self, now: Instant) {
        if self.stage.is_closed() || matches!(self.stage, Stage::Closing { .. }) {
            return;
        }
        self.subscribers
            .end_all(crate::EndReason::BusClosed, &mut self.events);
        for p in self.publishes.take_all().collect::<Vec<_>>() {
            self.publish_done(p.id, Err(NotifyError::Closed));
        }
        self.update_backpressure_after_change(now);
        if self.stage.accepts_commands() {
            if let Some(conn) = self.conn.as_mut() {
                let cmd = conn.simple_query("UNLISTEN *".to_owned());
                self.commands.insert(cmd, Purpose::UnlistenAll);
            }
            self.stage = Stage::Closing {
                deadline: now + self.config.ping_timeout(),
            };
        } else {
            self.finish_close();
        }
    }

    // --------------------------------------------------- inputs from the driver

    /// The transport asked for by [`Action::Connect`] is open.
    pub fn handle_connected(&mut self, now: Instant) {
        if let Stage::Connecting { deadline } = self.stage {
            self.transport_open = true;
            self.conn = Some(Connection::new(self.startup_params()));
            self.session = session::SessionFacts::default();
            self.stage = Stage::Starting { deadline };
            self.process_connection(now);
        }
    }

    /// The TLS handshake asked for by [`Action::StartTls`] succeeded.
    /// `channel_binding` is the `tls-server-end-point` data for
    /// SCRAM-SHA-256-PLUS, if the driver has it.
    pub fn handle_tls_established(&mut self, now: Instant, channel_binding: Option<Vec<u8>>) {
        if let Some(conn) = self.conn.as_mut() {
            conn.handle_tls_established(channel_binding);
            self.process_connection(now);
        }
    }

    /// Bytes read from the transport (after TLS decryption).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if let Some(conn) = self.conn.as_mut() {
            conn.handle_input(data);
            self.process_connection(now);
        }
    }

    /// The transport failed, closed, or could not be opened.
    pub fn handle_closed(&mut self, now: Instant, error: TransportError) {
        self.transport_open = false;
        match self.stage {
            Stage::Closed => {}
            Stage::Closing { .. } => self.finish_close(),
            Stage::Idle | Stage::Waiting { .. } => {}
            _ => self.connection_lost(now, BusError::Transport(error)),
        }
    }

    /// Time has passed; act on whatever is due. Harmless when nothing is.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.latest_now = self.latest_now.max(now);
        self.lifecycle_timeout(now);
        self.absorb_timeout(now);
        let mut expired = Vec::new();
        // Connected, queued publishes wait only for the ones in flight.
        if !self.stage.accepts_commands() {
            self.publishes.expire(now, |id, e| expired.push((id, e)));
        }
        for (id, e) in expired {
            self.publish_done(id, Err(e));
        }
        self.ping_timeout(now);
        self.overflow_log.maybe_write(now, &self.stats);
    }

    // ------------------------------------------------------------------ outputs

    /// Appends everything queued for the transport to `buf`; true if there
    /// was anything.
    ///
    /// One call gives all of it. Bytes come only while a transport is open
    /// (after [`handle_connected`](Self::handle_connected), before
    /// [`Action::Disconnect`] or [`handle_closed`](Self::handle_closed));
    /// see "The drive loop" above.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        self.conn.as_mut().is_some_and(|c| c.poll_transmit(buf))
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must
    /// be called; `None` when no timer is needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.stage.deadline(),
            self.healthy_at,
            self.publishes
                .next_deadline()
                .filter(|_| !self.stage.accepts_commands()),
            self.subscribers.next_stall_deadline(),
            self.guard.deadline(),
            if self.stage.is_listening() {
                self.pinger.next_timeout()
            } else {
                None
            },
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing the driver must do; each action is given once.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the driver; each event is given once.
    pub fn poll_event(&mut self) -> Option<BusEvent> {
        self.events.pop_front()
    }

    /// The next output of any kind, in the drive loop's order: the bytes to
    /// transmit (appended to `buf`, as [`poll_transmit`](Self::poll_transmit)
    /// does), then each action, then each event; `None` once all three are
    /// empty.
    ///
    /// Every call looks at the transmit first again, so output created by
    /// acting on an action or an event (`handle_connected`, a drain) comes
    /// next, and `None` means a whole pass of the three found nothing: the
    /// loop of "The drive loop" above is `while let Some(output) =
    /// bus.poll_output(&mut buf)`. The three `poll_*` methods stay for a
    /// driver that wants them apart; mixing both is fine.
    ///
    /// ```
    /// use std::time::Instant;
    /// use pgnotify_core::bus::{Action, Bus, Output};
    /// use pgnotify_core::config::Config;
    ///
    /// let now = Instant::now();
    /// let mut bus = Bus::new(Config::parse("postgres://app@db.example/app").unwrap(), now);
    /// let mut buf = Vec::new();
    /// while let Some(output) = bus.poll_output(&mut buf) {
    ///     match output {
    ///         Output::Transmit => buf.clear(), // write all of `buf` to the transport
    ///         Output::Action(Action::Connect(_target)) => {} // start connecting
    ///         Output::Action(_) | Output::Event(_) => {}
    ///         _ => {} // outputs added later
    ///     }
    /// }
    /// ```
    pub fn poll_output(&mut self, buf: &mut Vec<u8>) -> Option<Output> {
        if self.poll_transmit(buf) {
            return Some(Output::Transmit);
        }
        if let Some(action) = self.actions.pop_front() {
            return Some(Output::Action(action));
        }
        self.events.pop_front().map(Output::Event)
    }

    /// Moves up to `max` queued items of subscriber `id` into `out`, in order,
    /// and returns its status after the hand-off.
    ///
    /// One call per batch: a subscriber task takes everything it can hold at
    /// once. If items remain, the subscriber is announced again
    /// ([`BusEvent::SubscriberReadable`]; readiness is level-triggered, see
    /// above), so a bounded `max` strands nothing. Draining a full
    /// `Backpressure` queue lets reading resume. Drain the outputs after it.
    pub fn drain_events(
        &mut self,
        now: Instant,
        id: SubscriberId,
        out: &mut Vec<Event>,
        max: usize,
    ) -> SubscriberStatus {
        let drained = subscribers::Drained {
            events: &mut self.events,
            stats: &mut self.stats,
        };
        let status = self.subscribers.drain(now, id, out, max, drained);
        self.update_backpressure_after_change(now);
        status
    }

    /// Hands up to `max` queued items of subscriber `id` over to `out`
    /// (appending), in order, and returns its status after the hand-off.
    ///
    /// The zero-copy form of [`drain_events`](Self::drain_events): the batch
    /// takes the shared segments the notifications were fanned out in, so
    /// the hand-off touches no reference count per item and reading the
    /// batch by reference ([`EventBatch::iter`]) none at all. Gaps count as
    /// items. As with `drain_events`, a drain that leaves items announces
    /// the subscriber again, and draining a full `Backpressure` queue lets
    /// reading resume.
    pub fn drain_batch(
        &mut self,
        now: Instant,
        id: SubscriberId,
        out: &mut EventBatch,
        max: usize,
    ) -> SubscriberStatus {
        self.hand_over(now, id, out, max, false)
    }

    /// [`drain_batch`](Self::drain_batch) for a driver that hands the items
    /// to the application one at a time: the notifications handed over stay
    /// charged to the subscriber's capacity until the driver reports them
    /// consumed through the subscriber's [`Consumption`]
    /// ([`take_consumption`](Self::take_consumption)). So the capacity
    /// bounds what the application has not yet taken, wherever it sits.
    pub fn lend_batch(
        &mut self,
        now: Instant,
        id: SubscriberId,
        out: &mut EventBatch,
        max: usize,
    ) -> SubscriberStatus {
        self.hand_over(now, id, out, max, true)
    }

    fn hand_over(
        &mut self,
        now: Instant,
        id: SubscriberId,
        out: &mut EventBatch,
        max: usize,
        lend: bool,
    ) -> SubscriberStatus {
        let drained = subscribers::Drained {
            events: &mut self.events,
            stats: &mut self.stats,
        };
        let status = self
            .subscribers
            .drain_batch(now, id, out, max, lend, drained);
        self.update_backpressure_after_change(now);
        status
    }

    /// The handle through which a driver reports what the application
    /// consumed of the items [lent](Self::lend_batch) to subscriber `id`.
    /// Given once per subscriber (there must be one writer); `None` after
    /// that or for an unknown subscriber.
    ///
    /// Until it is taken nothing lent counts against the capacity, so a
    /// driver may take it late, when it first keeps lent items (a batch of
    /// one that it hands over at once needs none): items lent before count
    /// as consumed, except the `held_items` notifications of `held_bytes`
    /// it still holds.
    pub fn take_consumption(
        &mut self,
        id: SubscriberId,
        held_items: u64,
        held_bytes: u64,
    ) -> Option<Consumption> {
        self.subscribers
            .take_consumption(id, held_items, held_bytes)
    }

    /// Tells the bus that this driver runs [`Action::SidePublish`]: while
    /// reading is paused for a full subscriber, publishes then go on a short
    /// second session instead of waiting behind the unread notifications
    /// (see [`SidePublish`]). Off by default, so a driver that does not
    /// know the action never leaves a publish waiting for it.
    pub fn enable_side_publishes(&mut self, enabled: bool) {
        self.side_publishes.enable(enabled);
    }

    /// The outcome of an [`Action::SidePublish`].
    ///
    /// Each of its publishes gets its [`BusEvent::PublishDone`]: `Ok` once
    /// committed, [`NotifyError::Server`] if refused (a refused group is
    /// sent again call by call, so only a failing call fails),
    /// [`NotifyError::OutcomeUnknown`] if the session was lost after sending.
    /// A session that could not be opened sent nothing: its publishes go on
    /// the listening connection. An unknown `id` (reported twice, or failed
    /// at close already) is ignored.
    pub fn handle_side_publish(
        &mut self,
        now: Instant,
        id: SidePublishId,
        outcome: SidePublishOutcome,
    ) {
        self.latest_now = self.latest_now.max(now);
        let Some(publishes) = self.side_publishes.finish(id) else {
            return;
        };
        match outcome {
            SidePublishOutcome::Committed => {
                for p in publishes {
                    self.publish_done(p.id, Ok(()));
                }
            }
            SidePublishOutcome::Refused(_) if publishes.len() > 1 => {
                // Rolled back whole: each call again, alone.
                self.stats.group_retries += 1;
                for publish in publishes {
                    if self.publishing_beside() {
                        self.send_beside(vec![publish]);
                    } else if self.stage.accepts_commands() {
                        self.send_transaction(vec![publish]);
                    } else {
                        self.publishes.push(publish);
                    }
                }
                return;
            }
            SidePublishOutcome::Refused(e) => {
                for p in publishes {
                    self.publish_done(p.id, Err(NotifyError::Server(e.clone())));
                }
            }
            SidePublishOutcome::Lost(why) => {
                let cause = BusError::Transport(TransportError::new(TransportErrorKind::Io, why));
                for p in publishes {
                    self.publish_done(
                        p.id,
                        Err(NotifyError::OutcomeUnknown {
                            cause: cause.clone(),
                        }),
                    );
                }
            }
            SidePublishOutcome::NotSent(why) => {
                log::side_session_unavailable(&why);
                self.side_publishes.mark_unavailable();
                // Nothing was sent: on the listening connection after all,
                // ahead of anything queued.
                self.publishes.push_front(publishes);
            }
        }
        let main_free = self.publishes_in_flight == 0 && self.stage.accepts_commands();
        if main_free || self.publishing_beside() {
            self.send_queued_publishes();
        }
    }

    /// The result of an [`Action::SideCheck`] with
    /// [`CheckKind::DeliveryProbe`]: whether its NOTIFY went through.
    ///
    /// If it did, its notification must reach the listening connection
    /// before the answer to the next ping; if not, the listener sits behind
    /// a transaction-pooling proxy ([`BusError::NotificationsNotDelivered`]).
    /// A probe that could not be sent proves nothing and is dropped.
    pub fn handle_delivery_probe(&mut self, now: Instant, sent: Result<(), String>) {
        self.latest_now = self.latest_now.max(now);
        match sent {
            Ok(()) => {
                if let Some(probe) = &mut self.session.probe {
                    probe.notified_at = Some(now);
                }
            }
            Err(e) => {
                self.session.probe = None;
                self.stats.guard_failures_last = Some(e);
            }
        }
    }

    /// The result of an [`Action::SideCheck`]: the fraction of the
    /// server's notification queue in use, or why it could not be read.
    ///
    /// Above [`Config::server_queue_limit`] every absorbing subscriber is
    /// released (it drops what does not fit, counted exactly) and reading
    /// resumes; otherwise the next check is scheduled while the pause
    /// lasts. A failed check changes nothing but is retried.
    pub fn handle_server_queue_usage(&mut self, now: Instant, usage: Result<f64, String>) {
        self.latest_now = self.latest_now.max(now);
        self.guard.finished();
        self.stats.guard_checks += 1;
        match usage {
            Ok(fraction) => {
                let ppm = (fraction * 1_000_000.0).round().clamp(0.0, 1_000_000.0) as u32;
                self.stats.server_queue_usage_ppm = Some(ppm);
                if ppm > self.config.server_queue_limit_ppm() {
                    let released = self.subscribers.release_absorbing();
                    self.stats.guard_releases += released;
                }
            }
            Err(e) => self.stats.guard_failures_last = Some(e),
        }
        self.update_backpressure_after_change(now);
        if self.subscribers.any_absorbing() {
            self.guard
                .arm(now, crate::config::defaults::SERVER_GUARD_INTERVAL);
        }
    }

    // ------------------------------------------------------------- internals

    /// The stall limits and the server guard of `Absorb` subscribers.
    fn absorb_timeout(&mut self, now: Instant) {
        if self.subscribers.backpressured() > 0 {
            self.stats.stalled_releases += self.subscribers.release_stalled(now);
            self.update_backpressure_after_change(now);
        }
        if self.paused_since.is_some() && self.guard.start_if_due(now) {
            let check = SideCheck {
                connect: self.connect_target(),
                tls: self.tls_target(),
                startup: self.check_startup_params(),
                kind: CheckKind::QueueUsage,
            };
            self.actions.push_back(Action::SideCheck(check));
        }
    }

    /// Where another session of this listener connects: the host the
    /// listener is on (or will try next), with the listener's credentials
    /// and TLS settings, and `" (<role>)"` after its application name so
    /// operators can tell the sessions apart in `pg_stat_activity`.
    pub fn session_target(&self, role: &str) -> SessionTarget {
        let mut startup = self.startup_params();
        if let Some(name) = &mut startup.application_name {
            name.push_str(&format!(" ({role})"));
        }
        SessionTarget {
            connect: self.connect_target(),
            tls: self.tls_target(),
            startup,
        }
    }

    fn tls_target(&self) -> TlsTarget {
        TlsTarget {
            server_name: self.current_host_name(),
            ssl_mode: self.config.ssl_mode(),
            root_cert: self.config.ssl_root_cert_setting().cloned(),
            client_cert: self.config.ssl_cert().map(Path::to_owned),
            client_key: self.config.ssl_key().map(Path::to_owned),
        }
    }

    /// Sends `publishes` as one transaction.
    fn send_transaction(&mut self, publishes: Vec<WaitingPublish>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let ids = publishes.iter().map(|p| p.id).collect();
        let items = publishes.iter().flat_map(|p| p.items.clone()).collect();
        let cmd = conn.publish_all(items);
        let retry = (publishes.len() > 1).then_some(publishes);
        self.commands.insert(cmd, Purpose::Publish { ids, retry });
        self.publishes_in_flight += 1;
        self.stats.publish_transactions += 1;
    }

    fn publish_done(&mut self, id: PublishId, result: Result<(), NotifyError>) {
        if result.is_ok() {
            self.stats.published += 1;
        } else {
            self.stats.publish_failures += 1;
        }
        self.events.push_back(BusEvent::PublishDone(id, result));
    }

    /// Sends the registry's pending LISTEN/UNLISTEN changes, all in one
    /// query, if connected and no other batch is in flight.
    fn send_registry_changes(&mut self) {
        if self.changes_in_flight || !self.stage.is_listening() {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Some(mut batch) = self.registry.take_pending_changes() {
            let cmd = conn.simple_query(batch.take_sql());
            self.commands.insert(cmd, Purpose::Changes(batch));
            self.changes_in_flight = true;
        }
    }

    /// Handles everything the connection produced.
    ///
    /// Notifications are collected per channel and queued to subscribers in
    /// one span per channel ([`flush_fan_out`](Self::flush_fan_out)) when
    /// the run of notifications ends: before any other event is handled and
    /// at the end, so every other event sees the notifications that came
    /// before it already queued.
    fn process_connection(&mut self, now: Instant) {
        self.latest_now = self.latest_now.max(now);
        while let Some(event) = self.next_wire_event() {
            if let WireEvent::Notification(n) = event {
                self.on_notification(now, n);
                continue;
            }
            self.flush_fan_out(now);
            match event {
                WireEvent::StartTls => self.actions.push_back(Action::StartTls(self.tls_target())),
                WireEvent::Ready => self.on_startup_complete(now),
                WireEvent::CommandComplete { id, result } => {
                    self.on_command_complete(now, id, result)
                }
                WireEvent::Failed(error) => {
                    if matches!(error, crate::protocol::ConnectionError::Protocol(_)) {
                        self.stats.protocol_errors += 1;
                    }
                    self.connection_lost(now, BusError::Connection(error));
                    return;
                }
                // Notices and parameter changes need no action here; the
                // connection records the parameters it cares about.
                _ => {}
            }
            if self.conn.is_none() {
                return;
            }
        }
        self.flush_fan_out(now);
    }

    fn on_notification(&mut self, now: Instant, n: Notification) {
        if self.pinger.channel() == Some(&*n.channel) {
            if self
                .session
                .probe
                .as_ref()
                .is_some_and(|p| *p.payload == *n.payload)
            {
                // Notifications from other sessions reach this one.
                self.session.probe = None;
                return;
            }
            if Some(n.process_id) == self.backend_pid() {
                if let Some(sent_at) = self.pinger.answered(now) {
                    if let Some(rtt) = self.pinger.last_rtt() {
                        log::ping_answered(rtt, self.config.ping_timeout());
                    }
                    if self
                        .session
                        .probe
                        .as_ref()
                        .is_some_and(|p| p.missed_by(sent_at))
                    {
                        self.session.probe = None;
                        self.listening_cannot_work(now, BusError::NotificationsNotDelivered);
                        return;
                    }
                    self.connection_proved();
                    self.turn_session_timeouts_off();
                    self.probe_delivery_behind_pooler();
                }
                return;
            }
        }
        self.stats.notifications_received += 1;
        self.stats.bytes_received += n.size() as u64;
        if n.payload.len() >= stats::NEAR_LIMIT_PAYLOAD_LEN {
            self.stats.near_limit_received += 1;
        }
        if let Err(n) = self.pending.add(&self.registry, n) {
            // A run longer than a segment holds: queue what is pending first.
            self.flush_fan_out(now);
            let _ = self.pending.add(&self.registry, n);
        }
    }

    /// Queues the notifications collected in this run: per channel one
    /// shared segment, one span of it per ready subscriber.
    fn flush_fan_out(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let own_pid = self.backend_pid();
        let Self {
            pending,
            registry,
            subscribers,
            events,
            stats,
            ..
        } = self;
        self.pinger.notifications_arrived(now);
        pending.flush(|slot, segment| {
            let ended = subscribers.fan_out(
                now,
                registry.ready_at(slot),
                &segment,
                own_pid,
                events,
                stats,
            );
            for (id, channel) in ended {
                registry.remove(&channel, id);
            }
        });
        self.send_registry_changes();
        self.overflow_log.maybe_write(now, &self.stats);
        if self.subscribers.backpressured() > 0 && self.paused_since.is_none() {
            self.paused_since = Some(now);
            self.pinger.pause();
            log::reading_paused();
            // Publishes queued behind one in flight would wait for the pause
            // to end: they go on a second session instead.
            if self.publishing_beside() {
                self.send_queued_publishes();
            }
        }
        if self.paused_since.is_some() && self.subscribers.any_absorbing() {
            self.guard
                .arm(now, crate::config::defaults::SERVER_GUARD_INTERVAL);
        }
    }

    /// Resumes reading (and the ping deadline) once no `Backpressure`
    /// subscriber is full any more.
    fn update_backpressure_after_change(&mut self, now: Instant) {
        if self.subscribers.backpressured() > 0 {
            return;
        }
        if let Some(since) = self.paused_since.take() {
            self.guard.disarm();
            let now = now.max(since);
            let paused_for = now.saturating_duration_since(since);
            self.stats.paused_for += paused_for;
            log::reading_resumed(paused_for);
            self.pinger.resume(now);
            self.side_publishes.reading_resumed();
            if self.publishes_in_flight == 0
                && !self.side_publishes.busy()
                && self.stage.accepts_commands()
            {
                self.send_queued_publishes();
            }
            // Handle what the connection decoded but the pause held back.
            self.process_connection(now);
        }
    }

    /// The connection's next decoded event, unless reading is paused on a
    /// listening connection: then the rest of the last read stays with the
    /// connection until a drain resumes it. That keeps a full `Backpressure`
    /// queue from taking more than the one read that filled it, however
    /// many reconnects happen meanwhile. A connection that is still starting
    /// up is always handled, or it could never re-LISTEN.
    fn next_wire_event(&mut self) -> Option<WireEvent> {
        if self.holding_input() {
            return None;
        }
        self.conn.as_mut().and_then(Connection::poll_event)
    }

    /// Whether input is held back: reading is paused on a listening connection.
    fn holding_input(&self) -> bool {
        self.paused_since.is_some() && self.stage.is_listening()
    }

    fn on_command_complete(
        &mut self,
        now: Instant,
        id: CommandId,
        result: Result<QueryResult, ServerError>,
    ) {
        let Some(purpose) = self.commands.remove(&id) else {
            return;
        };
        match purpose {
            Purpose::Relisten(batch) => match result {
                Ok(result) => {
                    self.session.own_pid = session::backend_pid(&result);
                    self.on_relistened(now, batch);
                }
                Err(e) => self.connection_lost(now, BusError::ListenRefused(e)),
            },
            Purpose::Changes(batch) => {
                self.changes_in_flight = false;
                match result {
                    Ok(_) => {
                        let acked = self.registry.ack(batch);
                        self.mark_acked_ready(acked);
                    }
                    Err(e) if lifecycle::is_read_only_error(&e) => {
                        self.connection_lost(now, BusError::ListenRefused(e));
                        return;
                    }
                    Err(_) => {
                        let failed = self.registry.fail(batch);
                        for id in failed {
                            if let Some(channel) = self.subscribers.end(
                                id,
                                crate::EndReason::ListenFailed,
                                &mut self.events,
                            ) {
                                self.registry.remove(&channel, id);
                            }
                        }
                    }
                }
                self.send_registry_changes();
            }
            Purpose::ReadOnlyCheck => {
                let read_only = result
                    .as_ref()
                    .ok()
                    .and_then(|r| r.rows.first())
                    .and_then(|row| row.first().and_then(|v| v.as_deref()).map(|v| v == "on"));
                match read_only {
                    Some(false) => self.begin_listening(now),
                    _ => self.attempt_failed_on_open_transport(now, BusError::ReadOnlyServer),
                }
            }
            // A NOTIFY the server refused says nothing about where
            // notifications go: only a successful one can blame a pooler.
            Purpose::Ping => {
                if result.is_ok() && self.pinger.command_done() {
                    self.send_round_trip(Purpose::PingConfirm);
                }
            }
            Purpose::PingConfirm => self.pinger.confirmed(),
            Purpose::ListenCheck => {
                if let Ok(result) = result {
                    self.compare_listening(now, &result);
                }
            }
            Purpose::Publish { ids, retry } => {
                self.publishes_in_flight = self.publishes_in_flight.saturating_sub(1);
                match (result, retry) {
                    (Err(_), Some(calls)) => {
                        // Rolled back whole: each call again, alone and in
                        // order, ahead of anything queued.
                        self.stats.group_retries += 1;
                        for call in calls {
                            self.send_transaction(vec![call]);
                        }
                        return;
                    }
                    (result, _) => {
                        let result = result.map(|_| ()).map_err(NotifyError::Server);
                        for id in ids {
                            self.publish_done(id, result.clone());
                        }
                    }
                }
                if self.publishes_in_flight == 0 && self.stage.accepts_commands() {
                    self.send_queued_publishes();
                }
            }
            Purpose::UnlistenAll => {
                if matches!(self.stage, Stage::Closing { .. }) {
                    self.finish_close();
                }
            }
            Purpose::TimeoutsOff => {
                if result.is_err() {
                    self.stats.session_settings_failed += 1;
                }
            }
            // Answered or refused, the server has sent all that came before.
            Purpose::ReadyMarker(id) => self.subscribers.mark_ready(id, &mut self.events),
        }
    }

    /// Compares `pg_listening_channels()` with what the registry believes and
    /// repairs a difference (channels missing are LISTENed again, with a
    /// reconnect-style gap to their subscribers, since notifications may have
    /// been missed).
    fn compare_listening(&mut self, _now: Instant, result: &QueryResult) {
        if self.changes_in_flight {
            return; // the registry is changing; compare another time
        }
        let on_server: std::collections::HashSet<&str> = result
            .rows
            .iter()
            .filter_map(|r| r.first()?.as_deref())
            .collect();
        let ping = self.pinger.channel();
        let mut sql = String::new();
        let mut missing = Vec::new();
        for channel in self.registry.listening_channels() {
            if !on_server.contains(channel) {
                sql.push_str("LISTEN ");
                crate::push_quoted_identifier(&mut sql, channel);
                sql.push_str("; ");
                missing.push(channel.to_owned());
            }
        }
        for channel in &on_server {
            if Some(*channel) != ping && !self.registry.is_listening(channel) {
                sql.push_str("UNLISTEN ");
                crate::push_quoted_identifier(&mut sql, channel);
                sql.push_str("; ");
            }
        }
        if sql.is_empty() {
            return;
        }
        self.stats.listen_mismatches += 1;
        let generation = self.generation;
        for channel in &missing {
            self.subscribers.push_reconnect_gap(
                self.registry.subscribers_of(channel),
                generation,
                &mut self.events,
            );
        }
        if let Some(conn) = self.conn.as_mut() {
            conn.simple_query(sql);
        }
    }

    fn ping_timeout(&mut self, now: Instant) {
        if !self.stage.is_listening() {
            return;
        }
        if let Some(failure) = self.pinger.check(now, self.behind_pooler()) {
            let error = match failure {
                ping::PingFailure::NotificationsNotDelivered => BusError::NotificationsNotDelivered,
                ping::PingFailure::TimedOut => BusError::PingTimedOut {
                    timeout: self.pinger.timeout(),
                },
            };
            if matches!(error, BusError::NotificationsNotDelivered) {
                self.listening_cannot_work(now, error);
            } else {
                self.connection_lost(now, error);
            }
            return;
        }
        if let Some(sql) = self.pinger.due(now, self.paused_since.is_some()) {
            let check_every = u64::from(self.config.listen_check_every());
            let count = self.pinger.sent_on_connection();
            if let Some(conn) = self.conn.as_mut() {
                let cmd = conn.simple_query(sql);
                self.commands.insert(cmd, Purpose::Ping);
                if check_every > 0 && count % check_every == 0 {
                    let cmd = conn.simple_query("SELECT pg_listening_channels()".to_owned());
                    self.commands.insert(cmd, Purpose::ListenCheck);
                }
            }
        }
    }

    /// A transaction-pooling proxy is in the way: stop, or with
    /// `transaction_pooler=retry` reconnect as for any loss.
    fn listening_cannot_work(&mut self, now: Instant, error: BusError) {
        if self.config.transaction_pooler() == TransactionPooler::Fail {
            self.give_up(now, error);
        } else {
            self.connection_lost(now, error);
        }
    }

    /// Whether the current connection sits behind a pooler (see `session.rs`).
    fn behind_pooler(&self) -> bool {
        let key_pid = self.conn.as_ref().and_then(Connection::backend_pid);
        session::behind_pooler(key_pid, self.session.own_pid)
    }

    /// After the first ping answer of a connection behind a pooler: asks
    /// for a NOTIFY from another session (see `session.rs`).
    fn probe_delivery_behind_pooler(&mut self) {
        if self.session.probed || !self.behind_pooler() {
            return;
        }
        let Some(channel) = self.pinger.channel().map(str::to_owned) else {
            return;
        };
        self.session.probed = true;
        let payload = format!("pgnotify delivery probe {}", self.generation);
        self.session.probe = Some(session::DeliveryProbe {
            payload: payload.clone(),
            notified_at: None,
        });
        let check = SideCheck {
            connect: self.connect_target(),
            tls: self.tls_target(),
            startup: self.check_startup_params(),
            kind: CheckKind::DeliveryProbe { channel, payload },
        };
        self.actions.push_back(Action::SideCheck(check));
    }

    /// After the first ping answer of a connection: turns the server's
    /// session timeouts off for it (see `session.rs`).
    fn turn_session_timeouts_off(&mut self) {
        if std::mem::replace(&mut self.session.timeouts_off, true) {
            return;
        }
        if let Some(conn) = self.conn.as_mut() {
            let sql = session::timeouts_off(conn.server_version());
            let cmd = conn.simple_query(sql);
            self.commands.insert(cmd, Purpose::TimeoutsOff);
        }
    }

    /// Stops for good on an error that reconnecting cannot fix (a
    /// transaction-pooling proxy under `transaction_pooler=fail`): every
    /// subscriber ends with [`EndReason::Failed`](crate::EndReason::Failed),
    /// every publish fails, [`BusEvent::Failed`] names the error and
    /// [`BusEvent::Closed`] follows.
    fn give_up(&mut self, now: Instant, error: BusError) {
        self.stats.last_error = Some(error.to_string());
        self.events.push_back(BusEvent::Failed {
            error: error.clone(),
        });
        self.subscribers
            .end_all(crate::EndReason::Failed, &mut self.events);
        for p in self.publishes.take_all().collect::<Vec<_>>() {
            self.publish_done(p.id, Err(NotifyError::Closed));
        }
        self.update_backpressure_after_change(now);
        self.pending_ping_channel = None;
        self.finish_close();
    }

    fn finish_close(&mut self) {
        if self.transport_open {
            if let Some(conn) = self.conn.as_mut() {
                conn.terminate();
            }
            self.actions.push_back(Action::Disconnect);
        } else {
            // The driver reported the transport closed: no Terminate, since
            // `poll_transmit` gives nothing without a transport.
            self.conn = None;
        }
        self.transport_open = false;
        self.pinger.stop();
        // In-flight publishes got their replies before UNLISTEN *'s; any left
        // (close timed out) have an unknown outcome.
        let closed = BusError::Transport(TransportError::new(
            TransportErrorKind::Closed,
            "the listener was closed",
        ));
        for p in self.side_publishes.take_all() {
            self.publish_done(
                p.id,
                Err(NotifyError::OutcomeUnknown {
                    cause: closed.clone(),
                }),
            );
        }
        self.fail_in_flight(closed);
        self.stage = Stage::Closed;
        self.events.push_back(BusEvent::Closed);
    }

    /// Ends every command in flight because the connection is gone.
    fn fail_in_flight(&mut self, cause: BusError) {
        let mut publishes: Vec<PublishId> = self
            .commands
            .drain()
            .flat_map(|(_, p)| match p {
                Purpose::Publish { ids, .. } => ids,
                _ => Vec::new(),
            })
            .collect();
        publishes.sort();
        self.publishes_in_flight = 0;
        for id in publishes {
            self.publish_done(
                id,
                Err(NotifyError::OutcomeUnknown {
                    cause: cause.clone(),
                }),
            );
        }
        self.changes_in_flight = false;
    }
}
