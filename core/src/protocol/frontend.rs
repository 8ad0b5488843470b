//! Building the client's messages, on top of `postgres_protocol::message::frontend`.

use bytes::{BufMut, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;

use super::StartupParams;
use super::error::ConnectionError;

/// The statement behind every publish: the unnamed one, parsed again in
/// each publish's own Sync group. A named statement would outlive the
/// transaction, and behind a transaction-pooling proxy (PgBouncer in
/// transaction mode) the next publish may reach a server connection where
/// it does not exist (26000) or where another client's already does
/// (42P05). Parsing `SELECT pg_notify($1, $2)` costs the server far less
/// than the commit each publish pays anyway.
const PUBLISH_STATEMENT: &str = "";

/// The SQL behind every publish; both parameters are `text`.
pub(crate) const PUBLISH_SQL: &str = "SELECT pg_notify($1, $2)";

/// The type OID of `text`.
const TEXT_OID: u32 = 25;

/// Appends the StartupMessage: user, database, application name, and
/// `client_encoding=UTF8` so that every text the server sends is UTF-8.
pub(crate) fn startup(params: &StartupParams, out: &mut BytesMut) -> Result<(), ConnectionError> {
    let checks: [(&'static str, Option<&str>); 4] = [
        ("user", Some(&params.user)),
        ("database", params.database.as_deref()),
        ("application_name", params.application_name.as_deref()),
        ("options", params.options.as_deref()),
    ];
    for (name, value) in checks {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(ConnectionError::InvalidStartupParameter { name });
        }
    }
    let mut pairs: Vec<(&str, &str)> = vec![("user", &params.user)];
    if let Some(db) = &params.database {
        pairs.push(("database", db));
    }
    if let Some(app) = &params.application_name {
        pairs.push(("application_name", app));
    }
    if let Some(options) = &params.options {
        pairs.push(("options", options));
    }
    pairs.push(("client_encoding", "UTF8"));
    frontend::startup_message(pairs, out)
        .map_err(|_| ConnectionError::InvalidStartupParameter { name: "user" })
}

/// Appends a simple Query; `false` (and nothing appended) if the SQL contains
/// a NUL byte, which the message format cannot carry.
pub(crate) fn query(sql: &str, out: &mut BytesMut) -> bool {
    let start = out.len();
    if frontend::query(sql, out).is_err() {
        // The builder leaves a partial message behind on error.
        out.truncate(start);
        return false;
    }
    true
}

/// Appends Parse/Bind/Execute of `sql` (two `text` parameters) for each
/// item and one Sync, so that they run as one transaction; `false` (and
/// nothing appended) if a message cannot be built (a parameter over 2 GiB,
/// a NUL in `sql`).
pub(crate) fn publish<'a>(
    sql: &str,
    items: impl IntoIterator<Item = (&'a str, &'a str)>,
    out: &mut BytesMut,
) -> bool {
    let start = out.len();
    for (channel, payload) in items {
        if !publish_unsynced(sql, channel, payload, out) {
            out.truncate(start);
            return false;
        }
    }
    frontend::sync(out);
    true
}

/// Appends Parse/Bind/Execute of one call, without Sync.
fn publish_unsynced(sql: &str, channel: &str, payload: &str, out: &mut BytesMut) -> bool {
    let start = out.len();
    if frontend::parse(PUBLISH_STATEMENT, sql, [TEXT_OID, TEXT_OID], out).is_err() {
        out.truncate(start);
        return false;
    }
    let bound = frontend::bind(
        "",
        PUBLISH_STATEMENT,
        [0i16],
        [channel.as_bytes(), payload.as_bytes()],
        |value, buf| {
            buf.put_slice(value);
            Ok(IsNull::No)
        },
        [0i16],
        out,
    );
    if bound.is_err() || frontend::execute("", 0, out).is_err() {
        out.truncate(start);
        return false;
    }
    true
}

/// Appends Terminate.
pub(crate) fn terminate(out: &mut BytesMut) {
    frontend::terminate(out);
}
