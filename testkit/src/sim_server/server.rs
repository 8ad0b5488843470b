//! The simulated server: its backends, commits across them, and the test's
//! levers.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::config::{ServerRole, SimConfig};
use super::conn::{Conn, Pending, Shared, Step};
use super::error::{ADMIN_SHUTDOWN, Refused, SqlError};
use super::exec::{self, Transaction};
use super::faults::{FaultPoint, Faults};
use super::log::{ConnId, SentNotification, SimStats};
use super::rng::Rng;

/// How [`SimServer::shutdown`] stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownMode {
    /// `pg_ctl stop -m fast`: every backend sends FATAL 57P01
    /// "terminating connection due to administrator command" and closes.
    Fast,
    /// `pg_ctl stop -m immediate`: FATAL 57P01 "terminating connection due
    /// to immediate shutdown command", then close.
    Immediate,
    /// The machine died: connections end with no message.
    Crash,
}

/// A simulated PostgreSQL server with any number of backends; see the
/// [module documentation](super) for the contract and what is simulated.
///
/// Methods taking an unknown [`ConnId`] do nothing and getters answer as
/// for a closed connection.
#[derive(Debug)]
pub struct SimServer {
    shared: Shared,
    conns: Vec<Conn>,
    log: Vec<SentNotification>,
    next_txn: u64,
    next_pid: i32,
    external_pid: i32,
    refusing: bool,
    down: bool,
}

impl SimServer {
    /// A server that is up and accepting connections.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = Rng::new(config.seed);
        let first_pid = 1000 + rng.below(60_000) as i32;
        let mut server = Self {
            shared: Shared {
                role: config.role,
                config,
                rng,
                faults: Faults::default(),
                stats: SimStats::default(),
            },
            conns: Vec::new(),
            log: Vec::new(),
            next_txn: 0,
            next_pid: first_pid,
            external_pid: 0,
            refusing: false,
            down: false,
        };
        server.external_pid = server.allocate_pid();
        server
    }

    fn allocate_pid(&mut self) -> i32 {
        let pid = self.next_pid;
        self.next_pid += 1 + self.shared.rng.below(8) as i32;
        pid
    }

    fn conn(&self, conn: ConnId) -> Option<&Conn> {
        self.conns.get(conn.0 as usize)
    }

    // ----- getters -----

    /// The configuration the server was built with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Whether the server is a primary or a standby now.
    pub fn role(&self) -> ServerRole {
        self.shared.role
    }

    /// Every connection ever accepted, in accept order.
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        (0..self.conns.len()).map(|i| ConnId(i as u32))
    }

    /// The PID the backend of `conn` reports in BackendKeyData and in its
    /// own notifications.
    pub fn backend_pid(&self, conn: ConnId) -> Option<i32> {
        self.conn(conn).map(|c| c.pid)
    }

    /// The PID carried by notifications from
    /// [`notify_external`](Self::notify_external), distinct from every
    /// backend's.
    pub fn external_pid(&self) -> i32 {
        self.external_pid
    }

    /// A parameter of the connection's StartupMessage (`user`,
    /// `application_name`, ...).
    pub fn startup_param(&self, conn: ConnId, name: &str) -> Option<&str> {
        let c = self.conn(conn)?;
        c.startup_params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the backend finished authentication and is still alive.
    pub fn is_ready(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(Conn::is_ready)
    }

    /// The channels the backend LISTENs on, as committed, in the order
    /// `pg_listening_channels()` lists them; empty once it is closed.
    pub fn listening_channels(&self, conn: ConnId) -> &[String] {
        self.conn(conn).map_or(&[], |c| &c.listening)
    }

    /// Every notification the server committed, in commit order
    /// (`sent_log()[i].seq == i`).
    pub fn sent_log(&self) -> &[SentNotification] {
        &self.log
    }

    /// The sequence numbers of the notifications written into the
    /// connection's byte stream, in the order written (a black-holed
    /// connection's are thrown away and not listed). Written is not yet
    /// read: a delayed or unpolled one may still be lost with the connection.
    pub fn delivered_to(&self, conn: ConnId) -> &[u64] {
        self.conn(conn).map_or(&[], |c| &c.delivered)
    }

    /// What the server has done so far.
    pub fn stats(&self) -> SimStats {
        SimStats {
            faults_fired: self.shared.faults.fired(),
            ..self.shared.stats
        }
    }

    /// How many armed faults have not fired yet.
    pub fn armed_faults(&self) -> usize {
        self.shared.faults.armed()
    }

    // ----- inputs -----

    /// A client connects: a new backend starts, waiting for its startup
    /// packet, unless the server refuses (TCP "connection refused").
    pub fn accept(&mut self, now: Instant) -> Result<ConnId, Refused> {
        let refusal = if self.down {
            Some(Refused::ServerDown)
        } else if self.refusing {
            Some(Refused::Refusing)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.shared.stats.refused += 1;
            return Err(refusal);
        }
        let pid = self.allocate_pid();
        let secret = self.shared.rng.next_i32();
        let id = ConnId(self.conns.len() as u32);
        self.conns
            .push(Conn::new(pid, secret, now, &self.shared.config));
        self.shared.stats.accepted += 1;
        Ok(id)
    }

    /// Bytes the client wrote arrive; the backend handles every complete
    /// message among them at `now`. Partial messages wait for more bytes.
    pub fn handle_client_bytes(&mut self, conn: ConnId, now: Instant, bytes: &[u8]) {
        let index = conn.0 as usize;
        let Some(c) = self.conns.get_mut(index) else {
            return;
        };
        c.receive(bytes);
        loop {
            match self.conns[index].step(now, &mut self.shared) {
                Step::NeedInput | Step::Closed => break,
                Step::Continue => {}
                Step::Commit => {
                    let txn = std::mem::take(&mut self.conns[index].txn);
                    let pid = self.conns[index].pid;
                    self.commit(now, Some(conn), pid, txn);
                    self.conns[index].end_command(now, &mut self.shared);
                }
            }
        }
    }

    /// The client closed its end (or its socket broke): the backend exits,
    /// its LISTENs and unread bytes are gone.
    pub fn disconnect(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn.0 as usize) {
            c.client_disconnected();
        }
    }

    /// Fires what is due at `now`: `idle_session_timeout` ends idle
    /// sessions with FATAL 57P05. Harmless when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let config = &self.shared.config;
        let expired: Vec<usize> = (0..self.conns.len())
            .filter(|&i| {
                self.conns[i]
                    .idle_deadline(config)
                    .is_some_and(|deadline| deadline <= now)
            })
            .collect();
        let error = SqlError::fatal(
            "57P05",
            "terminating connection due to idle-session timeout",
        );
        for i in expired {
            self.conns[i].close_with(now, &mut self.shared, Some(&error));
        }
    }

    // ----- outputs -----

    /// Appends to `buf` the bytes the connection's client can read at `now`
    /// (held-back replies stay held until their time) and returns how many.
    pub fn poll_server_bytes(&mut self, conn: ConnId, now: Instant, buf: &mut Vec<u8>) -> usize {
        self.conns
            .get_mut(conn.0 as usize)
            .map_or(0, |c| c.out.poll(now, buf))
    }

    /// Whether the client still sees the connection open. After the server
    /// closes a connection this stays true until every byte written before
    /// the close was polled, so end-of-file comes after them as on a real
    /// socket; a black-holed connection never shows its end.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(Conn::is_open)
    }

    /// The earliest time something is due: held-back bytes become readable
    /// or an idle session times out. It may be at or before the current
    /// time when bytes are ready to poll; `None` means nothing is pending.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.conns
            .iter()
            .filter(|c| c.is_open())
            .flat_map(|c| [c.out.next_release(), c.idle_deadline(&self.shared.config)])
            .flatten()
            .min()
    }

    // ----- commands -----

    /// Commits `NOTIFY channel, 'payload'` from another session (not a
    /// simulated connection) at `now`, with [`external_pid`](Self::external_pid),
    /// and returns its sequence number. Fails as `pg_notify` would (empty or
    /// over-long channel, payload too long, standby, server down).
    pub fn notify_external(
        &mut self,
        now: Instant,
        channel: &str,
        payload: &str,
    ) -> Result<u64, SqlError> {
        self.commit_external(now, &[(channel, payload)])
            .map(|seqs| seqs.start)
    }

    /// Commits several notifications from another session as one
    /// transaction (duplicates collapse) and returns their sequence numbers.
    pub fn commit_external(
        &mut self,
        now: Instant,
        notifications: &[(&str, &str)],
    ) -> Result<Range<u64>, SqlError> {
        if self.down {
            return Err(SqlError::fatal("57P03", "the database system is shut down"));
        }
        if self.shared.role == ServerRole::Standby {
            return Err(SqlError::error(
                "25006",
                "cannot execute NOTIFY during recovery",
            ));
        }
        let mut txn = Transaction::default();
        for &(channel, payload) in notifications {
            exec::check_channel(channel)?;
            exec::check_payload(payload)?;
            txn.notify(channel.to_owned(), payload.to_owned());
        }
        Ok(self.commit(now, None, self.external_pid, txn))
    }

    /// Arms `error` to fire at the next operation matching `point`, on any
    /// connection. Armed errors fire oldest first, each once. A FATAL one
    /// also closes the connection it fires on.
    pub fn fail_next(&mut self, point: FaultPoint, error: SqlError) {
        self.shared.faults.arm(point, error);
    }

    /// Disarms every fault that has not fired.
    pub fn clear_faults(&mut self) {
        self.shared.faults.clear();
    }

    /// Makes the server a primary or a standby, as on promotion. Existing
    /// sessions get `in_hot_standby` as ParameterStatus before their next
    /// ReadyForQuery, as PostgreSQL 14+ reports it.
    pub fn set_role(&mut self, role: ServerRole) {
        if self.shared.role == role {
            return;
        }
        self.shared.role = role;
        for c in self.conns.iter_mut().filter(|c| c.is_ready()) {
            c.report_role = true;
        }
    }

    /// While true, [`accept`](Self::accept) refuses every connection.
    pub fn set_refusing(&mut self, refusing: bool) {
        self.refusing = refusing;
    }

    /// Cuts the connection off silently: the client's bytes are swallowed,
    /// nothing more reaches it (not even its end), yet it stays open and its
    /// backend keeps LISTENing, as behind a dead network path.
    pub fn black_hole(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn.0 as usize) {
            c.out.discard();
        }
    }

    /// Sets `idle_session_timeout` as `ALTER SYSTEM` plus a reload would:
    /// for every session, unless the session turned it off for itself.
    pub fn set_idle_session_timeout(&mut self, timeout: Option<Duration>) {
        self.shared.config.idle_session_timeout = timeout;
    }

    /// Holds every byte the backend writes from now on until `delay` after
    /// it was written (bytes never overtake earlier ones).
    pub fn delay_replies(&mut self, conn: ConnId, delay: Duration) {
        if let Some(c) = self.conns.get_mut(conn.0 as usize) {
            c.out.set_delay(delay);
        }
    }

    /// Terminates the backend as `pg_terminate_backend` does: FATAL 57P01
    /// "terminating connection due to administrator command", then close.
    pub fn terminate(&mut self, conn: ConnId, now: Instant) {
        self.terminate_with(conn, now, SqlError::admin_shutdown());
    }

    /// Ends the backend with `error` as its last message (whatever its
    /// severity), then closes it.
    pub fn terminate_with(&mut self, conn: ConnId, now: Instant, error: SqlError) {
        if let Some(c) = self.conns.get_mut(conn.0 as usize) {
            c.close_with(now, &mut self.shared, Some(&error));
        }
    }

    /// Stops the server: every backend ends as `mode` says, and
    /// [`accept`](Self::accept) refuses until [`restart`](Self::restart).
    pub fn shutdown(&mut self, now: Instant, mode: ShutdownMode) {
        self.down = true;
        let error = match mode {
            ShutdownMode::Fast => Some(SqlError::admin_shutdown()),
            ShutdownMode::Immediate => Some(SqlError::fatal(
                ADMIN_SHUTDOWN,
                "terminating connection due to immediate shutdown command",
            )),
            ShutdownMode::Crash => None,
        };
        for c in &mut self.conns {
            c.close_with(now, &mut self.shared, error.as_ref());
        }
    }

    /// Starts a shut-down server again: it accepts connections. Nothing
    /// survives from before but the sent log, statistics and PID counter.
    pub fn restart(&mut self) {
        self.down = false;
    }

    // ----- commits -----

    /// Commits `txn` for `sender`: applies its LISTEN changes, then queues
    /// each notification to every backend listening on its channel.
    fn commit(
        &mut self,
        now: Instant,
        sender: Option<ConnId>,
        pid: i32,
        txn: Transaction,
    ) -> Range<u64> {
        if let Some(c) = sender.and_then(|id| self.conns.get_mut(id.0 as usize)) {
            c.apply_listen_actions(&txn.actions);
        }
        let txn_no = self.next_txn;
        self.next_txn += 1;
        self.shared.stats.commits += 1;
        let first = self.log.len() as u64;
        for (channel, payload) in txn.notifies {
            let seq = self.log.len() as u64;
            let listeners: Vec<ConnId> = self
                .connections()
                .filter(|&id| self.conns[id.0 as usize].listening.contains(&channel))
                .collect();
            for &id in &listeners {
                let pending = Pending {
                    seq,
                    pid,
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                self.conns[id.0 as usize].deliver(
                    now,
                    &mut self.shared,
                    pending,
                    Some(id) == sender,
                );
            }
            self.shared.stats.notifications += 1;
            self.log.push(SentNotification {
                seq,
                txn: txn_no,
                committed_at: now,
                channel,
                payload,
                sender_pid: pid,
                sender,
                listeners,
            });
        }
        first..self.log.len() as u64
    }
}
