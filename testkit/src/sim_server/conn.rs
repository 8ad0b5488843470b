//! One simulated backend: startup, authentication, the simple and extended
//! query protocols, and the notifications waiting to be written.

use std::collections::BTreeMap;
use std::time::Instant;

use postgres_protocol::authentication::md5_hash;

use super::config::{AuthMethod, NotifyPlacement, ServerRole, SimConfig, SslAnswer};
use super::error::{INVALID_PARAMETER_VALUE, PROTOCOL_VIOLATION, Severity, SqlError};
use super::exec::{self, Env, ListenAction, Transaction, on_off};
use super::faults::{FaultPoint, Faults};
use super::frontend::{self, Malformed, Message, Startup};
use super::log::SimStats;
use super::outbox::Outbox;
use super::reply::{self, TEXT_OID};
use super::rng::Rng;
use super::sql::{self, Statement};

/// Server-wide state a backend reads and updates while it handles input.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) role: ServerRole,
    pub(crate) rng: Rng,
    pub(crate) faults: Faults,
    pub(crate) stats: SimStats,
}

/// What the server must do after a backend handled one message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// No complete message is buffered.
    NeedInput,
    /// A message was handled; there may be more.
    Continue,
    /// A command ended with a transaction to commit: the server applies it
    /// across backends, then calls [`Conn::end_command`].
    Commit,
    /// The connection is closed; nothing more will be read.
    Closed,
}

/// A notification waiting for its backend to finish a command.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) seq: u64,
    pub(crate) pid: i32,
    pub(crate) channel: String,
    pub(crate) payload: String,
}

#[derive(Debug)]
enum Phase {
    Startup { ssl_answered: bool },
    Password { user: String, expected: Vec<u8> },
    Ready,
    Closed,
}

/// A prepared statement: `None` for an empty query string.
#[derive(Debug, Clone)]
struct Prepared {
    statement: Option<Statement>,
    param_types: Vec<u32>,
}

#[derive(Debug)]
struct Portal {
    statement: Option<Statement>,
    params: Vec<Option<String>>,
}

/// One backend process of the simulated server.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) pid: i32,
    secret: i32,
    phase: Phase,
    input: Vec<u8>,
    pub(crate) out: Outbox,
    pub(crate) startup_params: Vec<(String, String)>,
    /// The committed LISTEN set, in the order the channels were first
    /// LISTENed (which is what `pg_listening_channels()` shows).
    pub(crate) listening: Vec<String>,
    statements: BTreeMap<String, Prepared>,
    portals: BTreeMap<String, Portal>,
    pub(crate) txn: Transaction,
    /// Extended-protocol messages arrived since the last Sync: a
    /// transaction is open and notifications must wait.
    in_batch: bool,
    /// An extended-protocol message failed: ignore everything until Sync.
    skipping: bool,
    pending: Vec<Pending>,
    pub(crate) delivered: Vec<u64>,
    /// The server's role changed: report `in_hot_standby` before the next
    /// ReadyForQuery.
    pub(crate) report_role: bool,
    client_gone: bool,
    /// When the backend last finished a command or was accepted, for
    /// `idle_session_timeout`.
    last_activity: Instant,
    /// The session ran `SET idle_session_timeout = 0`.
    idle_timeout_off: bool,
}

impl Conn {
    pub(crate) fn new(pid: i32, secret: i32, now: Instant, config: &SimConfig) -> Self {
        Self {
            pid,
            secret,
            phase: Phase::Startup {
                ssl_answered: false,
            },
            input: Vec::new(),
            out: Outbox::new(config.reply_delay),
            startup_params: Vec::new(),
            listening: Vec::new(),
            statements: BTreeMap::new(),
            portals: BTreeMap::new(),
            txn: Transaction::default(),
            in_batch: false,
            skipping: false,
            pending: Vec::new(),
            delivered: Vec::new(),
            report_role: false,
            client_gone: false,
            last_activity: now,
            idle_timeout_off: false,
        }
    }

    /// The backend process still exists (it may be black-holed).
    pub(crate) fn is_live(&self) -> bool {
        !matches!(self.phase, Phase::Closed)
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Whether the client still sees an open connection: true until it went
    /// away, or until it read everything a closed backend wrote (a
    /// black-holed connection never shows its end).
    pub(crate) fn is_open(&self) -> bool {
        if self.client_gone {
            return false;
        }
        self.is_live() || self.out.is_discarding() || !self.out.is_empty()
    }

    /// Idle between commands: a notification may be written at once.
    fn is_idle(&self) -> bool {
        self.is_ready() && !self.in_batch
    }

    /// When `idle_session_timeout` ends this session, if it is idle.
    pub(crate) fn idle_deadline(&self, config: &SimConfig) -> Option<Instant> {
        let timeout = config
            .idle_session_timeout
            .filter(|_| !self.idle_timeout_off)?;
        self.is_idle().then(|| self.last_activity + timeout)
    }

    pub(crate) fn receive(&mut self, bytes: &[u8]) {
        if self.is_live() && !self.out.is_discarding() {
            self.input.extend_from_slice(bytes);
        }
    }

    /// The client closed its end: the backend exits, its LISTENs with it.
    pub(crate) fn client_disconnected(&mut self) {
        self.client_gone = true;
        self.out.clear();
        self.shut();
    }

    /// Ends the session from the server side, with `error` as the last
    /// message if given.
    pub(crate) fn close_with(&mut self, now: Instant, st: &mut Shared, error: Option<&SqlError>) {
        if !self.is_live() {
            return;
        }
        if let Some(error) = error {
            self.write_error(now, st, error);
        }
        st.stats.server_closes += 1;
        self.shut();
    }

    fn shut(&mut self) {
        self.phase = Phase::Closed;
        self.input.clear();
        self.txn = Transaction::default();
        self.listening.clear();
        self.pending.clear();
        self.statements.clear();
        self.portals.clear();
    }

    /// Handles the next complete message in the input buffer, if any.
    pub(crate) fn step(&mut self, now: Instant, st: &mut Shared) -> Step {
        if !self.is_live() {
            return Step::Closed;
        }
        let decoded = match self.phase {
            Phase::Startup { .. } => match frontend::take_startup(&mut self.input) {
                Ok(Some(startup)) => return self.on_startup(now, st, startup),
                Ok(None) => return Step::NeedInput,
                Err(malformed) => Err(malformed),
            },
            _ => frontend::take_message(&mut self.input, st.config.max_message_len),
        };
        match decoded {
            Ok(Some(message)) => self.on_message(now, st, message),
            Ok(None) => Step::NeedInput,
            Err(Malformed(text)) => self.fatal(now, st, &SqlError::protocol(text)),
        }
    }

    fn fatal(&mut self, now: Instant, st: &mut Shared, error: &SqlError) -> Step {
        self.close_with(now, st, Some(error));
        Step::Closed
    }

    fn on_startup(&mut self, now: Instant, st: &mut Shared, startup: Startup) -> Step {
        match startup {
            Startup::Ssl | Startup::Gss => {
                if matches!(self.phase, Phase::Startup { ssl_answered: true }) {
                    return self.fatal(
                        now,
                        st,
                        &SqlError::protocol("duplicate encryption request"),
                    );
                }
                self.phase = Phase::Startup { ssl_answered: true };
                let accept = startup == Startup::Ssl && st.config.ssl == SslAnswer::Accept;
                self.out.writer(now).push(if accept { b'S' } else { b'N' });
                Step::Continue
            }
            Startup::Cancel { .. } => {
                // The server looks the target up; this connection just ends.
                st.stats.cancel_requests += 1;
                self.shut();
                Step::Closed
            }
            Startup::Start {
                major,
                minor,
                params,
            } => self.on_startup_message(now, st, major, minor, params),
        }
    }

    fn on_startup_message(
        &mut self,
        now: Instant,
        st: &mut Shared,
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    ) -> Step {
        if major != 3 {
            let text = format!(
                "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"
            );
            return self.fatal(now, st, &SqlError::fatal("0A000", text));
        }
        self.startup_params = params;
        let Some(user) = self.startup_param("user").map(str::to_owned) else {
            let text = "no PostgreSQL user name specified in startup packet";
            return self.fatal(now, st, &SqlError::fatal("28000", text));
        };
        if let Some(encoding) = self.startup_param("client_encoding")
            && !matches!(
                encoding.to_ascii_lowercase().as_str(),
                "utf8" | "utf-8" | "unicode"
            )
        {
            let text = format!("invalid value for parameter \"client_encoding\": \"{encoding}\"");
            return self.fatal(now, st, &SqlError::fatal(INVALID_PARAMETER_VALUE, text));
        }
        if let Some(mut error) = st.faults.take(FaultPoint::Startup) {
            error.severity = Severity::Fatal;
            return self.fatal(now, st, &error);
        }
        let unknown: Vec<String> = self
            .startup_params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.clone())
            .collect();
        if minor > 0 || !unknown.is_empty() {
            reply::negotiate_protocol_version(self.out.writer(now), 0, &unknown);
        }
        match st.config.auth.clone() {
            AuthMethod::Trust => self.authenticated(now, st),
            AuthMethod::Cleartext { password } => {
                reply::auth_request(self.out.writer(now), 3, &[]);
                self.phase = Phase::Password {
                    user,
                    expected: password.into_bytes(),
                };
                Step::Continue
            }
            AuthMethod::Md5 { password } => {
                let salt = (st.rng.next_u64() as u32).to_be_bytes();
                reply::auth_request(self.out.writer(now), 5, &salt);
                let expected = md5_hash(user.as_bytes(), password.as_bytes(), salt).into_bytes();
                self.phase = Phase::Password { user, expected };
                Step::Continue
            }
        }
    }

    fn startup_param(&self, name: &str) -> Option<&str> {
        self.startup_params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn authenticated(&mut self, now: Instant, st: &mut Shared) -> Step {
        st.stats.sessions += 1;
        let standby = st.role == ServerRole::Standby;
        let user = self.startup_param("user").unwrap_or_default().to_owned();
        let application_name = self
            .startup_param("application_name")
            .unwrap_or_default()
            .to_owned();
        let w = self.out.writer(now);
        reply::auth_request(w, 0, &[]);
        for (name, value) in [
            ("application_name", application_name.as_str()),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("default_transaction_read_only", on_off(standby)),
            ("in_hot_standby", on_off(standby)),
            ("integer_datetimes", "on"),
            ("IntervalStyle", "postgres"),
            ("is_superuser", "off"),
            ("server_encoding", "UTF8"),
            ("server_version", &st.config.server_version),
            ("session_authorization", &user),
            ("standard_conforming_strings", "on"),
            ("TimeZone", "UTC"),
        ] {
            reply::parameter_status(w, name, value);
        }
        // A pooler such as PgBouncer makes the pid up.
        let key_pid = if st.config.made_up_backend_pid {
            self.pid ^ 0x2a00_0000
        } else {
            self.pid
        };
        reply::backend_key_data(w, key_pid, self.secret);
        reply::ready_for_query(w);
        self.phase = Phase::Ready;
        self.last_activity = now;
        Step::Continue
    }

    fn on_message(&mut self, now: Instant, st: &mut Shared, message: Message) -> Step {
        if let Phase::Password { expected, user } = &self.phase {
            return match message {
                Message::Password(given) if given == *expected => self.authenticated(now, st),
                Message::Password(_) => {
                    let text = format!("password authentication failed for user \"{user}\"");
                    self.fatal(now, st, &SqlError::fatal("28P01", text))
                }
                _ => self.fatal(now, st, &SqlError::protocol("expected password response")),
            };
        }
        if self.skipping && !matches!(message, Message::Sync | Message::Terminate) {
            return Step::Continue;
        }
        match message {
            Message::Query(sql) => self.simple_query(now, st, &sql),
            Message::Parse {
                name,
                query,
                param_types,
            } => self.parse(now, st, name, &query, param_types),
            Message::Bind {
                portal,
                statement,
                formats,
                params,
            } => self.bind(now, st, portal, &statement, &formats, params),
            Message::Describe { kind, name } => self.describe(now, st, kind, &name),
            Message::Execute { portal } => self.execute(now, st, &portal),
            Message::Close { kind, name } => {
                self.in_batch = true;
                if kind == b'S' {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                reply::close_complete(self.out.writer(now));
                Step::Continue
            }
            Message::Sync => {
                self.skipping = false;
                self.portals.clear();
                self.finish_command(now, st)
            }
            Message::Flush => Step::Continue,
            Message::Terminate => {
                self.shut();
                Step::Closed
            }
            Message::Password(_) => {
                self.fatal(now, st, &SqlError::protocol("unexpected password message"))
            }
            Message::Invalid { tag: b'Q', error } => self.fail_query(now, st, &error),
            Message::Invalid { error, .. } => self.fail_extended(now, st, &error),
        }
    }

    fn simple_query(&mut self, now: Instant, st: &mut Shared, sql: &str) -> Step {
        st.stats.queries += 1;
        if let Some(error) = st.faults.take(FaultPoint::Query) {
            return self.fail_query(now, st, &error);
        }
        let parsed = match sql::parse(sql) {
            Ok(parsed) => parsed,
            Err(error) => return self.fail_query(now, st, &error),
        };
        self.write_notices(now, &parsed.notices);
        if parsed.statements.is_empty() {
            reply::empty_query(self.out.writer(now));
        }
        for statement in &parsed.statements {
            if let Err(error) = self.run(now, st, statement, &[], true) {
                return self.fail_query(now, st, &error);
            }
        }
        self.finish_command(now, st)
    }

    /// Runs one statement and writes its rows (with a RowDescription when
    /// `describe`) and CommandComplete.
    fn run(
        &mut self,
        now: Instant,
        st: &mut Shared,
        statement: &Statement,
        params: &[Option<String>],
        describe: bool,
    ) -> Result<(), SqlError> {
        let mut env = Env {
            role: st.role,
            pid: self.pid,
            idle_timeout_off: &mut self.idle_timeout_off,
            server_version: &st.config.server_version,
            listening: &self.listening,
            params,
            faults: &mut st.faults,
        };
        let outcome = exec::execute(statement, &mut env, &mut self.txn)?;
        st.stats.statements += 1;
        let w = self.out.writer(now);
        if describe && !exec::columns(statement).is_empty() {
            reply::row_description(w, exec::columns(statement));
        }
        for row in &outcome.rows {
            reply::data_row(w, row);
        }
        reply::command_complete(w, &outcome.tag);
        Ok(())
    }

    /// A simple query failed: roll back, report, and finish the command.
    fn fail_query(&mut self, now: Instant, st: &mut Shared, error: &SqlError) -> Step {
        if error.severity == Severity::Fatal {
            return self.fatal(now, st, error);
        }
        self.rollback(st);
        self.write_error(now, st, error);
        self.finish_command(now, st)
    }

    /// An extended-protocol message failed: roll back, report, and ignore
    /// everything until Sync.
    fn fail_extended(&mut self, now: Instant, st: &mut Shared, error: &SqlError) -> Step {
        if error.severity == Severity::Fatal {
            return self.fatal(now, st, error);
        }
        self.rollback(st);
        self.write_error(now, st, error);
        self.in_batch = true;
        self.skipping = true;
        Step::Continue
    }

    fn rollback(&mut self, st: &mut Shared) {
        st.stats.rollbacks += 1;
        self.txn = Transaction::default();
    }

    fn write_error(&mut self, now: Instant, st: &mut Shared, error: &SqlError) {
        st.stats.errors += 1;
        reply::error(self.out.writer(now), error);
    }

    fn write_notices(&mut self, now: Instant, notices: &[String]) {
        for text in notices {
            reply::notice(self.out.writer(now), "42622", text);
        }
    }

    /// The end of a command (a simple Query or a Sync): commit, or, with
    /// nothing to commit, go straight to ReadyForQuery.
    fn finish_command(&mut self, now: Instant, st: &mut Shared) -> Step {
        self.in_batch = false;
        if self.txn.is_empty() {
            self.end_command(now, st);
            return Step::Continue;
        }
        if let Some(error) = st.faults.take(FaultPoint::Commit) {
            if error.severity == Severity::Fatal {
                return self.fatal(now, st, &error);
            }
            self.rollback(st);
            self.write_error(now, st, &error);
            self.end_command(now, st);
            return Step::Continue;
        }
        Step::Commit
    }

    /// Applies the committed transaction's LISTEN changes to this backend.
    pub(crate) fn apply_listen_actions(&mut self, actions: &[ListenAction]) {
        for action in actions {
            match action {
                ListenAction::Listen(channel) => {
                    if !self.listening.contains(channel) {
                        self.listening.push(channel.clone());
                    }
                }
                ListenAction::Unlisten(channel) => self.listening.retain(|c| c != channel),
                ListenAction::UnlistenAll => self.listening.clear(),
            }
        }
    }

    /// Writes what is due at the end of a command: a changed
    /// `in_hot_standby`, the queued notifications and ReadyForQuery.
    pub(crate) fn end_command(&mut self, now: Instant, st: &mut Shared) {
        self.last_activity = now;
        if self.report_role {
            self.report_role = false;
            reply::parameter_status(
                self.out.writer(now),
                "in_hot_standby",
                on_off(st.role == ServerRole::Standby),
            );
        }
        let pending = std::mem::take(&mut self.pending);
        if st.config.notify_placement == NotifyPlacement::AfterReady {
            reply::ready_for_query(self.out.writer(now));
        }
        for notification in &pending {
            self.write_notification(now, st, notification);
        }
        if st.config.notify_placement == NotifyPlacement::BeforeReady {
            reply::ready_for_query(self.out.writer(now));
        }
    }

    /// Hands over a committed notification: written at once when idle,
    /// otherwise (or when it is the backend's own) at the end of the command.
    pub(crate) fn deliver(
        &mut self,
        now: Instant,
        st: &mut Shared,
        notification: Pending,
        own: bool,
    ) {
        if own || !self.is_idle() {
            self.pending.push(notification);
        } else {
            self.write_notification(now, st, &notification);
        }
    }

    fn write_notification(&mut self, now: Instant, st: &mut Shared, n: &Pending) {
        if self.out.is_discarding() {
            return;
        }
        reply::notification(self.out.writer(now), n.pid, &n.channel, &n.payload);
        self.delivered.push(n.seq);
        st.stats.deliveries += 1;
    }

    fn parse(
        &mut self,
        now: Instant,
        st: &mut Shared,
        name: String,
        query: &str,
        types: Vec<u32>,
    ) -> Step {
        self.in_batch = true;
        if !name.is_empty() && self.statements.contains_key(&name) {
            let error = SqlError::error(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            );
            return self.fail_extended(now, st, &error);
        }
        let parsed = match sql::parse(query) {
            Ok(parsed) => parsed,
            Err(error) => return self.fail_extended(now, st, &error),
        };
        if parsed.statements.len() > 1 {
            let error =
                SqlError::syntax("cannot insert multiple commands into a prepared statement");
            return self.fail_extended(now, st, &error);
        }
        self.write_notices(now, &parsed.notices);
        let count = parsed.params.max(types.len());
        let param_types = (0..count)
            .map(|i| {
                types
                    .get(i)
                    .copied()
                    .filter(|&oid| oid != 0)
                    .unwrap_or(TEXT_OID)
            })
            .collect();
        let statement = parsed.statements.into_iter().next();
        self.statements.insert(
            name,
            Prepared {
                statement,
                param_types,
            },
        );
        reply::parse_complete(self.out.writer(now));
        Step::Continue
    }

    fn bind(
        &mut self,
        now: Instant,
        st: &mut Shared,
        portal: String,
        statement: &str,
        formats: &[i16],
        params: Vec<Option<Vec<u8>>>,
    ) -> Step {
        self.in_batch = true;
        let Some(prepared) = self.statements.get(statement).cloned() else {
            return self.fail_extended(now, st, &no_statement(statement));
        };
        if !(formats.len() <= 1 || formats.len() == params.len()) {
            let text = format!(
                "bind message has {} parameter formats but {} parameters",
                formats.len(),
                params.len()
            );
            return self.fail_extended(now, st, &SqlError::error(PROTOCOL_VIOLATION, text));
        }
        if params.len() != prepared.param_types.len() {
            let text = format!(
                "bind message supplies {} parameters, but prepared statement \"{statement}\" requires {}",
                params.len(),
                prepared.param_types.len()
            );
            return self.fail_extended(now, st, &SqlError::error(PROTOCOL_VIOLATION, text));
        }
        if !portal.is_empty() && self.portals.contains_key(&portal) {
            let error = SqlError::error("42P03", format!("cursor \"{portal}\" already exists"));
            return self.fail_extended(now, st, &error);
        }
        // Text and binary representations of text are the same bytes.
        let params: Result<Vec<Option<String>>, _> = params
            .into_iter()
            .map(|p| p.map(String::from_utf8).transpose())
            .collect();
        let Ok(params) = params else {
            return self.fail_extended(now, st, &frontend::invalid_utf8());
        };
        self.portals.insert(
            portal,
            Portal {
                statement: prepared.statement,
                params,
            },
        );
        reply::bind_complete(self.out.writer(now));
        Step::Continue
    }

    fn describe(&mut self, now: Instant, st: &mut Shared, kind: u8, name: &str) -> Step {
        self.in_batch = true;
        let statement = if kind == b'S' {
            let Some(prepared) = self.statements.get(name) else {
                return self.fail_extended(now, st, &no_statement(name));
            };
            reply::parameter_description(self.out.writer(now), &prepared.param_types);
            prepared.statement.as_ref()
        } else {
            let Some(portal) = self.portals.get(name) else {
                return self.fail_extended(now, st, &no_portal(name));
            };
            portal.statement.as_ref()
        };
        let columns = statement.map_or(&[][..], exec::columns);
        if columns.is_empty() {
            reply::no_data(self.out.writer(now));
        } else {
            reply::row_description(self.out.writer(now), columns);
        }
        Step::Continue
    }

    fn execute(&mut self, now: Instant, st: &mut Shared, portal: &str) -> Step {
        self.in_batch = true;
        st.stats.executes += 1;
        if let Some(error) = st.faults.take(FaultPoint::Query) {
            return self.fail_extended(now, st, &error);
        }
        let Some(bound) = self.portals.get(portal) else {
            return self.fail_extended(now, st, &no_portal(portal));
        };
        let Some(statement) = bound.statement.clone() else {
            reply::empty_query(self.out.writer(now));
            return Step::Continue;
        };
        let params = bound.params.clone();
        match self.run(now, st, &statement, &params, false) {
            Ok(()) => Step::Continue,
            Err(error) => self.fail_extended(now, st, &error),
        }
    }
}

fn no_statement(name: &str) -> SqlError {
    let text = if name.is_empty() {
        "unnamed prepared statement does not exist".to_owned()
    } else {
        format!("prepared statement \"{name}\" does not exist")
    };
    SqlError::error("26000", text)
}

fn no_portal(name: &str) -> SqlError {
    SqlError::error("34000", format!("portal \"{name}\" does not exist"))
}
