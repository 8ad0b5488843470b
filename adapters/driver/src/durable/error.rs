//! What can go wrong with a durable channel.

use std::fmt;

use pgnotify_core::durable::{BadPage, ReaderError};
use pgnotify_core::protocol::ServerError;
use pgnotify_core::{ChannelError, EndReason};

use crate::sql::SqlError;
use crate::subscription::SubscribeError;

/// Why a durable channel operation failed.
///
/// A [`DurableSubscription`](crate::DurableSubscription) retries what may
/// pass by itself (the server down or restarting, a lost session) and
/// returns only what will not: calling `recv` again after an error retries
/// from the same cursor, so an error never costs a message.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DurableError {
    /// The schema's tables or functions are missing: install them
    /// ([`Durable::install`](crate::Durable::install), `pgnotify install`).
    NotInstalled {
        /// The schema looked in.
        schema: String,
        /// The server's report.
        cause: ServerError,
    },
    /// The schema was installed by a later pgnotify than this one.
    NewerSchema {
        /// The schema.
        schema: String,
        /// The version installed there.
        version: u32,
    },
    /// The channel name is invalid; nothing was sent.
    Channel(ChannelError),
    /// The payload cannot be stored: it holds a NUL byte, or is longer than
    /// the schema's bound.
    Payload {
        /// Why.
        reason: String,
    },
    /// The server refused the statement.
    Server(ServerError),
    /// No session to the server could be opened or kept (for `install`,
    /// `notify` and `prune`, which do not retry).
    Unavailable {
        /// What happened.
        reason: String,
    },
    /// The session broke (or did not answer within the query timeout) after
    /// the statement was sent: it may or may not have run. A publish in
    /// this state is not sent again (that could publish it twice).
    OutcomeUnknown {
        /// What happened.
        reason: String,
    },
    /// Subscribing to the live channel failed.
    Subscribe(SubscribeError),
    /// The subscription cannot go on from its cursor.
    Reader(ReaderError),
    /// The server sent a page that makes no sense.
    BadPage(BadPage),
    /// The live subscription ended (the listener closed or failed).
    Ended(EndReason),
}

impl DurableError {
    /// The error for a failed statement in `schema`.
    pub(crate) fn from_sql(schema: &str, e: SqlError) -> Self {
        match e {
            SqlError::Unavailable(reason) => Self::Unavailable { reason },
            SqlError::Lost(reason) => Self::OutcomeUnknown { reason },
            // invalid_schema_name, undefined_function, undefined_table
            SqlError::Server(cause) if matches!(cause.code(), "3F000" | "42883" | "42P01") => {
                Self::NotInstalled {
                    schema: schema.to_owned(),
                    cause,
                }
            }
            SqlError::Server(cause) => Self::Server(cause),
        }
    }
}

impl fmt::Display for DurableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled { schema, cause } => write!(
                f,
                "durable channels are not installed in schema {schema:?} (run `pgnotify install` \
                 or Durable::install): {cause}"
            ),
            Self::NewerSchema { schema, version } => write!(
                f,
                "schema {schema:?} holds durable channels of version {version}, newer than this \
                 pgnotify's {}",
                pgnotify_core::durable::SCHEMA_VERSION
            ),
            Self::Channel(e) => write!(f, "invalid channel: {e}"),
            Self::Payload { reason } => write!(f, "invalid durable payload: {reason}"),
            Self::Server(e) => write!(f, "the server refused: {e}"),
            Self::Unavailable { reason } => f.write_str(reason),
            Self::OutcomeUnknown { reason } => write!(
                f,
                "the statement was sent but its outcome is unknown (it may have run): {reason}"
            ),
            Self::Subscribe(e) => write!(f, "subscribing failed: {e}"),
            Self::Reader(e) => e.fmt(f),
            Self::BadPage(e) => e.fmt(f),
            Self::Ended(reason) => write!(f, "the subscription ended: {reason}"),
        }
    }
}

impl std::error::Error for DurableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotInstalled { cause, .. } => Some(cause),
            Self::Server(e) => Some(e),
            Self::Channel(e) => Some(e),
            Self::Subscribe(e) => Some(e),
            Self::Reader(e) => Some(e),
            Self::BadPage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SubscribeError> for DurableError {
    fn from(e: SubscribeError) -> Self {
        Self::Subscribe(e)
    }
}

impl From<ReaderError> for DurableError {
    fn from(e: ReaderError) -> Self {
        Self::Reader(e)
    }
}

impl From<BadPage> for DurableError {
    fn from(e: BadPage) -> Self {
        Self::BadPage(e)
    }
}
