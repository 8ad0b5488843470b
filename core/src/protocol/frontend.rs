//! Building the client's messages, on top of `postgres_protocol::message::frontend`.

use bytes::{BufMut, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;

use super::StartupParams;
use super::error::ConnectionError;

/// The name of the prepared statement behind every publish.
pub(crate) const PUBLISH_STATEMENT: &str = "pgnotify_publish";

/// The SQL behind every publish; both parameters are `text`.
pub(crate) const PUBLISH_SQL: &str = "SELECT pg_notify($1, $2)";

/// The type OID of `text`.
const TEXT_OID: u32 = 25;

/// Appends the StartupMessage: user, database, application name, and
/// `client_encoding=UTF8` so that every text the server sends is UTF-8.
pub(crate) fn startup(params: &StartupParams, out: &mut BytesMut) -> Result<(), ConnectionError> {
    let checks: [(&'static str, Option<&str>); 3] = [
        ("user", Some(&params.user)),
        ("database", params.database.as_deref()),
        ("application_name", params.application_name.as_deref()),
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

/// Appends the Parse of the publish statement.
pub(crate) fn parse_publish(out: &mut BytesMut) {
    // Constant, NUL-free strings: cannot fail.
    let _ = frontend::parse(PUBLISH_STATEMENT, PUBLISH_SQL, [TEXT_OID, TEXT_OID], out);
}

/// Appends Bind/Execute/Sync of one publish; `false` (and nothing appended)
/// if the message cannot be built (a parameter over 2 GiB).
pub(crate) fn publish(channel: &str, payload: &str, out: &mut BytesMut) -> bool {
    let start = out.len();
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
    frontend::sync(out);
    true
}

/// Appends Terminate.
pub(crate) fn terminate(out: &mut BytesMut) {
    frontend::terminate(out);
}
