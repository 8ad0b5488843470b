//! Validation and quoting of channel names and payloads.
//!
//! PostgreSQL silently truncates a LISTEN channel name longer than 63 bytes
//! but `pg_notify` rejects it, so a listener and a publisher could disagree
//! on the name. pgnotify rejects such names up front, before anything is
//! queued or sent, and always quotes names so the server never folds case.

use std::fmt;

/// The longest channel name PostgreSQL keeps intact (NAMEDATALEN - 1).
pub const MAX_CHANNEL_LEN: usize = 63;

/// The longest payload `NOTIFY` accepts, in bytes (it must be shorter than 8000).
pub const MAX_PAYLOAD_LEN: usize = 7999;

/// Why a channel name was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_CHANNEL_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name contains a NUL byte, which PostgreSQL cannot store.
    ContainsNul,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("channel name is empty; it must be 1 to 63 bytes"),
            Self::TooLong { len } => write!(
                f,
                "channel name is {len} bytes long; PostgreSQL keeps at most {MAX_CHANNEL_LEN} \
                 (LISTEN would silently truncate it and pg_notify would reject it)"
            ),
            Self::ContainsNul => f.write_str("channel name contains a NUL byte"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is [`MAX_PAYLOAD_LEN`] + 1 bytes or longer.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The payload contains a NUL byte, which PostgreSQL cannot store.
    ContainsNul,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len } => write!(
                f,
                "payload is {len} bytes long; PostgreSQL accepts at most {MAX_PAYLOAD_LEN}"
            ),
            Self::ContainsNul => f.write_str("payload contains a NUL byte"),
        }
    }
}

impl std::error::Error for PayloadError {}

/// Checks that `name` is a channel name PostgreSQL keeps exactly as given.
///
/// ```
/// use pgnotify_core::{validate_channel, ChannelError};
/// assert!(validate_channel("Orders").is_ok());
/// assert_eq!(validate_channel(""), Err(ChannelError::Empty));
/// assert!(validate_channel(&"x".repeat(64)).is_err());
/// ```
pub fn validate_channel(name: &str) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong { len: name.len() });
    }
    if name.as_bytes().contains(&0) {
        return Err(ChannelError::ContainsNul);
    }
    Ok(())
}

/// Checks that `payload` is one `NOTIFY` accepts.
pub fn validate_payload(payload: &str) -> Result<(), PayloadError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(PayloadError::TooLong { len: payload.len() });
    }
    if payload.as_bytes().contains(&0) {
        return Err(PayloadError::ContainsNul);
    }
    Ok(())
}

/// Appends `name` to `sql` as a quoted identifier (`"a""b"` for `a"b`).
///
/// Quoting keeps the name case-sensitive and lets it hold any character.
pub fn push_quoted_identifier(sql: &mut String, name: &str) {
    sql.push('"');
    for c in name.chars() {
        if c == '"' {
            sql.push('"');
        }
        sql.push(c);
    }
    sql.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_63_bytes_pass_and_64_fail() {
        assert_eq!(validate_channel(&"a".repeat(63)), Ok(()));
        assert_eq!(
            validate_channel(&"a".repeat(64)),
            Err(ChannelError::TooLong { len: 64 })
        );
        // Multi-byte characters count in bytes, as the server does.
        assert_eq!(
            validate_channel(&"é".repeat(32)),
            Err(ChannelError::TooLong { len: 64 })
        );
    }

    #[test]
    fn nul_is_rejected_in_names_and_payloads() {
        assert_eq!(validate_channel("a\0b"), Err(ChannelError::ContainsNul));
        assert_eq!(validate_payload("a\0b"), Err(PayloadError::ContainsNul));
    }

    #[test]
    fn payload_limit_is_7999_bytes() {
        assert_eq!(validate_payload(&"p".repeat(7999)), Ok(()));
        assert_eq!(
            validate_payload(&"p".repeat(8000)),
            Err(PayloadError::TooLong { len: 8000 })
        );
    }

    #[test]
    fn quoting_doubles_embedded_quotes() {
        let mut sql = String::new();
        push_quoted_identifier(&mut sql, r#"a"B c\"#);
        assert_eq!(sql, r#""a""B c\""#);
    }
}
