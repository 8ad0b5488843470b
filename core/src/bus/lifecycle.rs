//! The connection lifecycle: connect, start up, re-LISTEN, lose, back off,
//! try the next host.

use std::time::{Duration, Instant};

use super::{Bus, BusError, BusEvent, Purpose};
use crate::bus::output::{Action, ConnectTarget};
use crate::bus::ping::ping_channel;
use crate::bus::session;
use crate::config::{HostSpec, SslMode, TargetSessionAttrs};
use crate::protocol::{ServerError, StartupParams, TlsNegotiation};

/// Where the bus stands with its connection, across attempts and reconnects
/// (the protocol's own [`Phase`](crate::protocol::Phase) is one connection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Not yet started.
    Idle,
    /// `Action::Connect` was issued; waiting for the transport.
    Connecting { deadline: Instant },
    /// The transport is up; TLS, authentication and startup are running
    /// (and, for `target_session_attrs=read-write`, the read-only check).
    Starting { deadline: Instant },
    /// Startup finished; the LISTENs of this connection are in flight.
    Relistening { deadline: Instant },
    /// Every channel is LISTENed; notifications flow.
    Listening,
    /// Waiting out the backoff before the next attempt.
    Waiting { until: Instant },
    /// `close` was called; waiting for `UNLISTEN *` to complete.
    Closing { deadline: Instant },
    /// Closed for good.
    Closed,
}

impl Stage {
    pub(crate) fn is_listening(self) -> bool {
        matches!(self, Self::Listening)
    }

    /// Whether commands (publishes) can be sent on the connection now.
    pub(crate) fn accepts_commands(self) -> bool {
        matches!(self, Self::Relistening { .. } | Self::Listening)
    }

    /// Closed or closing: no new work is accepted.
    pub(crate) fn is_closed(self) -> bool {
        matches!(self, Self::Closing { .. } | Self::Closed)
    }

    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Self::Connecting { deadline }
            | Self::Starting { deadline }
            | Self::Relistening { deadline }
            | Self::Closing { deadline } => Some(deadline),
            Self::Waiting { until } => Some(until),
            Self::Idle | Self::Listening | Self::Closed => None,
        }
    }
}

/// Whether a server error says the server cannot take LISTEN/NOTIFY because
/// it is read-only (a hot standby, SQLSTATE 25006).
pub(crate) fn is_read_only_error(e: &ServerError) -> bool {
    e.code() == "25006"
}

impl Bus {
    /// How long an attempt may take from `Action::Connect` to the end of
    /// startup, and again from there to its LISTENs' acknowledgement.
    fn attempt_timeout(&self) -> Duration {
        self.config
            .connect_timeout()
            .unwrap_or_else(|| self.config.ping_interval() + self.config.ping_timeout())
    }

    /// Where the current (or next) attempt connects.
    pub(super) fn connect_target(&self) -> ConnectTarget {
        ConnectTarget {
            host: self.current_host().clone(),
            connect_timeout: self.config.connect_timeout(),
            keepalive: self.config.keepalive().clone(),
        }
    }

    pub(super) fn startup_params(&self) -> StartupParams {
        StartupParams {
            user: self.config.user().to_owned(),
            database: Some(self.config.dbname().to_owned()),
            password: self
                .config
                .password_for(self.current_host())
                .map(str::to_owned),
            application_name: Some(
                self.config
                    .application_name()
                    .unwrap_or(crate::config::DEFAULT_APPLICATION_NAME)
                    .to_owned(),
            ),
            options: self.config.options().map(str::to_owned),
            tls: match self.config.ssl_mode() {
                SslMode::Disable => TlsNegotiation::Disable,
                SslMode::Prefer => {
                    if matches!(self.current_host(), HostSpec::Unix { .. }) {
                        // libpq never negotiates TLS over a unix socket.
                        TlsNegotiation::Disable
                    } else {
                        TlsNegotiation::Prefer
                    }
                }
                _ => TlsNegotiation::Require,
            },
            max_frame_len: self.config.max_frame_len(),
        }
    }

    /// The startup of a second session (a server-guard check or a delivery
    /// probe): the listener's, with ` (check)` after its application name,
    /// so that operators (and anything matching the listener's name in
    /// `pg_stat_activity`) can tell it from the listening session.
    pub(super) fn check_startup_params(&self) -> StartupParams {
        let mut params = self.startup_params();
        if let Some(name) = &mut params.application_name {
            name.push_str(" (check)");
        }
        params
    }

    fn current_host(&self) -> &HostSpec {
        let hosts = self.config.hosts();
        &hosts[self.host_index % hosts.len()]
    }

    pub(super) fn current_host_name(&self) -> String {
        match self.current_host() {
            HostSpec::Tcp { host, .. } => host.clone(),
            HostSpec::Unix { dir, .. } => dir.display().to_string(),
        }
    }

    /// Asks the driver to connect to the current host.
    pub(super) fn start_attempt(&mut self, now: Instant) {
        let target = self.connect_target();
        self.actions.push_back(Action::Connect(target));
        self.transport_open = true;
        self.stage = Stage::Connecting {
            deadline: now + self.attempt_timeout(),
        };
    }

    /// Startup finished (first ReadyForQuery).
    pub(super) fn on_startup_complete(&mut self, now: Instant) {
        if self.config.target_session_attrs() == TargetSessionAttrs::ReadWrite {
            let standby = self.conn.as_ref().and_then(|c| c.in_hot_standby());
            match standby {
                Some(true) => {
                    self.attempt_failed_on_open_transport(now, BusError::ReadOnlyServer);
                    return;
                }
                Some(false) => {}
                None => {
                    // Servers before 14 do not report in_hot_standby.
                    if let Some(conn) = self.conn.as_mut() {
                        let cmd = conn.simple_query("SHOW transaction_read_only".to_owned());
                        self.commands.insert(cmd, Purpose::ReadOnlyCheck);
                    }
                    return;
                }
            }
        }
        self.begin_listening(now);
    }

    /// Asks the server's own pid, and LISTENs the ping channel and every
    /// subscribed channel, in one round trip; sends the publishes that
    /// waited for a connection. (The ping channel is only named after the
    /// BackendKeyData pid: pongs are told apart by the pid the server gives.)
    pub(super) fn begin_listening(&mut self, now: Instant) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(pid) = conn.backend_pid() else {
            let e = BusError::Connection(crate::protocol::ConnectionError::MissingBackendKey);
            self.attempt_failed_on_open_transport(now, e);
            return;
        };
        let ping = ping_channel(pid);
        let mut sql = String::from(session::BACKEND_PID_QUERY);
        sql.push_str("; LISTEN ");
        crate::push_quoted_identifier(&mut sql, &ping);
        let batch = self.registry.relisten_all();
        if let Some(batch) = &batch {
            sql.push_str("; ");
            sql.push_str(batch.sql());
        }
        let cmd = conn.simple_query(sql);
        self.commands
            .insert(cmd, Purpose::Relisten(batch.unwrap_or_default()));
        self.pinger.stop();
        self.pending_ping_channel = Some(ping);
        self.stage = Stage::Relistening {
            deadline: now + self.attempt_timeout(),
        };
        self.send_queued_publishes();
    }

    /// The LISTENs of a new connection were acknowledged: it is up.
    pub(super) fn on_relistened(&mut self, now: Instant, batch: crate::bus::registry::Batch) {
        if self.stage.is_closed() {
            // `close` came while the LISTENs were in flight: its UNLISTEN *
            // follows them, and the bus stays closing until that answers.
            return;
        }
        self.generation += 1;
        self.ever_connected = true;
        self.stage = Stage::Listening;
        // Not proved yet: that takes a ping answer (the first ping goes out
        // now), or `backoff_reset_after` listening with none readable.
        self.healthy_at = Some(now + self.config.backoff_reset_after());
        let acked = self.registry.ack(batch);
        let generation = self.generation;
        self.subscribers
            .push_pending_reconnect_gaps(generation, &mut self.events);
        self.mark_acked_ready(acked);
        if let Some(ping) = self.pending_ping_channel.take() {
            self.pinger.start(now, ping);
        }
        self.events.push_back(BusEvent::Connected { generation });
        self.send_registry_changes();
    }

    /// The connection has proved the server works: it answered a ping (or
    /// stayed listening for `backoff_reset_after`). The backoff starts over,
    /// so the next loss retries at once; a connection lost before this
    /// point counts as one more failure.
    pub(super) fn connection_proved(&mut self) {
        if self.healthy_at.take().is_some() {
            self.backoff.reset();
        }
    }

    /// A connection attempt failed while its transport is open (so the
    /// driver must close it).
    pub(super) fn attempt_failed_on_open_transport(&mut self, now: Instant, error: BusError) {
        self.connection_lost(now, error);
    }

    /// The connection (or the attempt) is gone: account for everything in
    /// flight, tell the subscribers a gap is coming, and schedule the next
    /// attempt.
    pub(super) fn connection_lost(&mut self, now: Instant, error: BusError) {
        if self.stage.is_closed() {
            // Losing the connection while closing just finishes the close,
            // once: one read may fail a command and then the connection.
            if !matches!(self.stage, Stage::Closed) {
                self.finish_close();
            }
            return;
        }
        let was_listening = self.stage.is_listening();
        self.conn = None;
        self.session = session::SessionFacts::default();
        if self.transport_open {
            self.actions.push_back(Action::Disconnect);
            self.transport_open = false;
        }
        // Subscribers waiting for a ready marker become ready with everyone
        // else's re-LISTEN.
        self.fail_in_flight(error.clone());
        self.registry.connection_lost();
        self.pinger.stop();
        self.pending_ping_channel = None;
        self.healthy_at = None;
        self.stats.last_error = Some(error.to_string());

        // A lost working connection starts over from the first host (after a
        // failover the primary may be elsewhere); a failed attempt moves on to
        // the next host, and backs off once every host has been tried.
        let hosts = self.config.hosts().len().max(1);
        let delay = if was_listening {
            self.subscribers.expect_reconnect_gaps();
            self.stats.reconnects += 1;
            self.events.push_back(BusEvent::Disconnected { error });
            self.host_index = 0;
            self.backoff.next_delay()
        } else {
            self.host_index = (self.host_index + 1) % hosts;
            let round_complete = self.host_index == 0;
            self.stats.connect_failures += 1;
            self.events.push_back(BusEvent::ConnectFailed {
                error,
                first_attempt: !self.ever_connected && round_complete,
            });
            if round_complete {
                self.backoff.next_delay()
            } else {
                Duration::ZERO
            }
        };
        if delay.is_zero() {
            self.start_attempt(now);
        } else {
            self.stage = Stage::Waiting { until: now + delay };
        }
    }

    /// Acts on the lifecycle's timers.
    pub(super) fn lifecycle_timeout(&mut self, now: Instant) {
        if self.healthy_at.is_some_and(|at| now >= at) {
            self.connection_proved();
        }
        match self.stage {
            Stage::Waiting { until } if now >= until => self.start_attempt(now),
            Stage::Connecting { deadline } | Stage::Starting { deadline } if now >= deadline => {
                let timeout = self.attempt_timeout();
                self.connection_lost(now, BusError::StartupTimedOut { timeout });
            }
            Stage::Relistening { deadline } if now >= deadline => {
                let timeout = self.attempt_timeout();
                self.connection_lost(now, BusError::ListenTimedOut { timeout });
            }
            Stage::Closing { deadline } if now >= deadline => self.finish_close(),
            _ => {}
        }
    }
}
