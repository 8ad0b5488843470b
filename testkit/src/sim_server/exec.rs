//! Running statements inside the implicit transaction of a command.

use std::collections::HashSet;

use super::config::ServerRole;
use super::error::{INVALID_PARAMETER_VALUE, READ_ONLY_TRANSACTION, SqlError};
use super::faults::{FaultPoint, Faults};
use super::reply::{Column, INT4_OID, TEXT_OID, VOID_OID};
use super::sql::{Arg, MAX_IDENTIFIER_LEN, Setting, Statement};

/// Payloads must be shorter than this many bytes.
pub(crate) const MAX_PAYLOAD_LEN: usize = 8000;

/// A change to a backend's LISTEN set, applied at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenAction {
    Listen(String),
    Unlisten(String),
    UnlistenAll,
}

/// What a transaction will do when it commits.
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    pub(crate) actions: Vec<ListenAction>,
    /// Notifications in first-sent order, duplicates already collapsed.
    pub(crate) notifies: Vec<(String, String)>,
    seen: HashSet<(String, String)>,
}

impl Transaction {
    pub(crate) fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.notifies.is_empty()
    }

    /// Queues a notification unless the same (channel, payload) already is.
    pub(crate) fn notify(&mut self, channel: String, payload: String) {
        let pair = (channel, payload);
        if !self.seen.contains(&pair) {
            self.seen.insert(pair.clone());
            self.notifies.push(pair);
        }
    }
}

/// The result of one statement.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) rows: Vec<Vec<Option<String>>>,
    pub(crate) tag: String,
}

/// What a statement may look at while it runs.
pub(crate) struct Env<'a> {
    pub(crate) role: ServerRole,
    /// The backend's own pid (what `pg_backend_pid()` answers).
    pub(crate) pid: i32,
    /// Whether this session turned `idle_session_timeout` off.
    pub(crate) idle_timeout_off: &'a mut bool,
    pub(crate) server_version: &'a str,
    /// The committed LISTEN set of the backend.
    pub(crate) listening: &'a [String],
    pub(crate) params: &'a [Option<String>],
    pub(crate) faults: &'a mut Faults,
}

const fn text_column(name: &'static str) -> Column {
    Column {
        name,
        type_oid: TEXT_OID,
        type_len: -1,
    }
}

const PG_NOTIFY: [Column; 1] = [Column {
    name: "pg_notify",
    type_oid: VOID_OID,
    type_len: 4,
}];
const LISTENING_CHANNELS: [Column; 1] = [text_column("pg_listening_channels")];
const INTEGER: [Column; 1] = [Column {
    name: "?column?",
    type_oid: INT4_OID,
    type_len: 4,
}];
const TRANSACTION_READ_ONLY: [Column; 1] = [text_column("transaction_read_only")];
const IN_HOT_STANDBY: [Column; 1] = [text_column("in_hot_standby")];
const SERVER_VERSION: [Column; 1] = [text_column("server_version")];
const BACKEND_PID: [Column; 1] = [Column {
    name: "pg_backend_pid",
    type_oid: INT4_OID,
    type_len: 4,
}];

/// The row shape of a statement, empty for one that returns no rows.
pub(crate) fn columns(statement: &Statement) -> &'static [Column] {
    match statement {
        Statement::Listen(_)
        | Statement::Unlisten(_)
        | Statement::UnlistenAll
        | Statement::Notify { .. }
        | Statement::SetTimeout { .. } => &[],
        Statement::BackendPid => &BACKEND_PID,
        Statement::PgNotify { .. } => &PG_NOTIFY,
        Statement::ListeningChannels => &LISTENING_CHANNELS,
        Statement::SelectInt(_) => &INTEGER,
        Statement::Show(Setting::TransactionReadOnly) => &TRANSACTION_READ_ONLY,
        Statement::Show(Setting::InHotStandby) => &IN_HOT_STANDBY,
        Statement::Show(Setting::ServerVersion) => &SERVER_VERSION,
    }
}

/// Runs one statement, recording its effects in `txn`.
pub(crate) fn execute(
    statement: &Statement,
    env: &mut Env<'_>,
    txn: &mut Transaction,
) -> Result<Outcome, SqlError> {
    let standby = env.role == ServerRole::Standby;
    let done = |tag: &str| {
        Ok(Outcome {
            rows: Vec::new(),
            tag: tag.to_owned(),
        })
    };
    match statement {
        Statement::Listen(channel) => {
            fault(env, FaultPoint::Listen)?;
            if standby {
                return Err(during_recovery("LISTEN"));
            }
            txn.actions.push(ListenAction::Listen(channel.clone()));
            done("LISTEN")
        }
        Statement::Unlisten(_) | Statement::UnlistenAll => {
            fault(env, FaultPoint::Unlisten)?;
            txn.actions.push(match statement {
                Statement::Unlisten(channel) => ListenAction::Unlisten(channel.clone()),
                _ => ListenAction::UnlistenAll,
            });
            done("UNLISTEN")
        }
        Statement::Notify { channel, payload } => {
            fault(env, FaultPoint::Notify)?;
            if standby {
                return Err(during_recovery("NOTIFY"));
            }
            check_payload(payload)?;
            txn.notify(channel.clone(), payload.clone());
            done("NOTIFY")
        }
        Statement::PgNotify { channel, payload } => {
            fault(env, FaultPoint::Notify)?;
            let channel = resolve(channel, env.params)?.unwrap_or_default();
            let payload = resolve(payload, env.params)?.unwrap_or_default();
            if standby {
                return Err(during_recovery("NOTIFY"));
            }
            check_channel(&channel)?;
            check_payload(&payload)?;
            txn.notify(channel, payload);
            Ok(Outcome {
                rows: vec![vec![Some(String::new())]],
                tag: "SELECT 1".into(),
            })
        }
        Statement::ListeningChannels => {
            let rows: Vec<_> = env
                .listening
                .iter()
                .map(|c| vec![Some(c.clone())])
                .collect();
            let tag = format!("SELECT {}", rows.len());
            Ok(Outcome { rows, tag })
        }
        Statement::BackendPid => Ok(Outcome {
            rows: vec![vec![Some(env.pid.to_string())]],
            tag: "SELECT 1".into(),
        }),
        Statement::SetTimeout { name, value } => {
            if name == "idle_session_timeout" {
                *env.idle_timeout_off = value == "0";
            }
            done("SET")
        }
        Statement::SelectInt(value) => Ok(Outcome {
            rows: vec![vec![Some(value.to_string())]],
            tag: "SELECT 1".into(),
        }),
        Statement::Show(setting) => {
            let value = match setting {
                Setting::TransactionReadOnly | Setting::InHotStandby => on_off(standby),
                Setting::ServerVersion => env.server_version,
            };
            Ok(Outcome {
                rows: vec![vec![Some(value.to_owned())]],
                tag: "SHOW".into(),
            })
        }
    }
}

pub(crate) fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn fault(env: &mut Env<'_>, point: FaultPoint) -> Result<(), SqlError> {
    env.faults.take(point).map_or(Ok(()), Err)
}

fn resolve(arg: &Arg, params: &[Option<String>]) -> Result<Option<String>, SqlError> {
    match arg {
        Arg::Text(text) => Ok(Some(text.clone())),
        Arg::Null => Ok(None),
        Arg::Param(n) => params
            .get(n - 1)
            .cloned()
            .ok_or_else(|| SqlError::error("42P02", format!("there is no parameter ${n}"))),
    }
}

/// Checks a payload as `Async_Notify` does.
pub(crate) fn check_payload(payload: &str) -> Result<(), SqlError> {
    if payload.len() >= MAX_PAYLOAD_LEN {
        Err(invalid("payload string too long"))
    } else {
        Ok(())
    }
}

/// Checks a `pg_notify` channel name as `Async_Notify` does.
pub(crate) fn check_channel(channel: &str) -> Result<(), SqlError> {
    if channel.is_empty() {
        Err(invalid("channel name cannot be empty"))
    } else if channel.len() > MAX_IDENTIFIER_LEN {
        Err(invalid("channel name too long"))
    } else {
        Ok(())
    }
}

fn invalid(message: &str) -> SqlError {
    SqlError::error(INVALID_PARAMETER_VALUE, message)
}

fn during_recovery(command: &str) -> SqlError {
    SqlError::error(
        READ_ONLY_TRANSACTION,
        format!("cannot execute {command} during recovery"),
    )
}
