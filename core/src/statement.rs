//! SQL that publishes inside an application's own transaction.

use std::collections::HashSet;

use crate::bus::NotifyError;
use crate::{validate_channel, validate_payload};

/// One `SELECT pg_notify(…), pg_notify(…), …` statement that publishes
/// every `(channel, payload)` of `items` when the application runs it in
/// its own transaction (with sqlx, tokio-postgres or any client): the
/// notifications are delivered if and when that transaction commits,
/// atomically with its other writes (a transactional outbox without a
/// table).
///
/// The same checks as [`Bus::notify_many`](crate::bus::Bus::notify_many):
/// names and payloads are validated, and a batch that repeats a (channel,
/// payload) pair is refused ([`NotifyError::Duplicate`]), since PostgreSQL
/// delivers identical notifications of one transaction once. (Two such
/// statements in one transaction fold the same way: keep their pairs
/// distinct.) Values are written as escape-string literals (`E'…'`), which
/// mean the same whatever `standard_conforming_strings` is.
///
/// ```
/// let sql = pgnotify_core::notify_statement([("jobs", "42"), ("audit", "job 42: it's done")])?;
/// assert_eq!(
///     sql,
///     "SELECT pg_notify(E'jobs', E'42'), pg_notify(E'audit', E'job 42: it''s done')"
/// );
/// # Ok::<(), pgnotify_core::bus::NotifyError>(())
/// ```
pub fn notify_statement<C, P>(
    items: impl IntoIterator<Item = (C, P)>,
) -> Result<String, NotifyError>
where
    C: AsRef<str>,
    P: AsRef<str>,
{
    let pairs = checked_batch(items)?;
    let mut sql = String::from("SELECT ");
    for (index, (channel, payload)) in pairs.iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        sql.push_str("pg_notify(");
        push_literal(&mut sql, channel);
        sql.push_str(", ");
        push_literal(&mut sql, payload);
        sql.push(')');
    }
    if pairs.is_empty() {
        sql.push_str("NULL WHERE false");
    }
    Ok(sql)
}

/// The pairs of a batch that goes out in one transaction, checked: valid
/// names and payloads, and no (channel, payload) twice (PostgreSQL would
/// fold them). Shared by [`notify_statement`] and `Bus::notify_many`.
pub(crate) fn checked_batch<C, P>(
    items: impl IntoIterator<Item = (C, P)>,
) -> Result<Vec<(String, String)>, NotifyError>
where
    C: AsRef<str>,
    P: AsRef<str>,
{
    let mut pairs = Vec::new();
    let mut seen = HashSet::new();
    for (index, (channel, payload)) in items.into_iter().enumerate() {
        let (channel, payload) = (channel.as_ref(), payload.as_ref());
        validate_channel(channel)?;
        validate_payload(payload)?;
        let pair = (channel.to_owned(), payload.to_owned());
        if !seen.insert(pair.clone()) {
            return Err(NotifyError::Duplicate { index });
        }
        pairs.push(pair);
    }
    Ok(pairs)
}

/// `text` as an escape-string literal: `'` and `\` doubled.
pub(crate) fn push_literal(sql: &mut String, text: &str) {
    sql.push_str("E'");
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            sql.push(c);
        }
        sql.push(c);
    }
    sql.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backslashes_duplicates_and_empty_batches() {
        assert_eq!(
            notify_statement([("c", r"a'b\c")]).unwrap(),
            r"SELECT pg_notify(E'c', E'a''b\\c')"
        );
        assert_eq!(
            notify_statement([("c", "x"), ("d", "x"), ("c", "x")]),
            Err(NotifyError::Duplicate { index: 2 })
        );
        assert!(notify_statement([("", "x")]).is_err());
        assert_eq!(
            notify_statement(Vec::<(&str, &str)>::new()).unwrap(),
            "SELECT NULL WHERE false"
        );
    }
}
