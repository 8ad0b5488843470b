//! Why a command failed, as one line, and the exit status it gives.

use std::fmt;

use pgnotify_core::{ChannelError, ConfigError};
use pgnotify_tokio::{DurableError, ListenerError, SubscribeError};

/// Exit status for a failure at run time (connection, server, IO).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit status for bad arguments, as clap uses.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit status of `listen --timeout` when what it waited for did not arrive in time.
pub(crate) const EXIT_TIMEOUT: u8 = 3;

/// A failure of a `pgnotify` command.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum CliError {
    /// A channel name given on the command line is invalid.
    Channel {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        source: ChannelError,
    },
    /// A connection string could not be parsed.
    ConnectionString {
        /// Where it came from: `--url` or `DATABASE_URL`.
        origin: &'static str,
        /// What is wrong with it.
        source: ConfigError,
    },
    /// The PG* variables do not make a valid configuration.
    Config(ConfigError),
    /// The first connection failed or timed out.
    Connect {
        /// The server(s) tried, as `host:port` (no credentials).
        target: String,
        /// Why (boxed: it carries the server's whole report).
        source: Box<ListenerError>,
        /// Whether the server was only the default one (no `--url`,
        /// `DATABASE_URL` or PG* variable named it): the message then says
        /// how to name one.
        defaulted: bool,
    },
    /// Subscribing to a channel failed.
    Subscribe {
        /// The channel.
        channel: String,
        /// Why.
        source: SubscribeError,
    },
    /// A single notification could not be sent.
    Notify(Box<pgnotify_tokio::NotifyError>),
    /// Some of the notifications read from stdin could not be sent (each was
    /// reported already).
    SomeNotifiesFailed {
        /// How many failed.
        failed: u64,
        /// How many lines were read.
        total: u64,
    },
    /// Every subscription of `listen` ended.
    AllSubscriptionsEnded {
        /// Why the last one ended.
        reason: String,
    },
    /// Reading stdin or writing stdout failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A durable channel operation failed (the schema not installed, the
    /// server refusing, the subscription unable to go on).
    Durable {
        /// What was being done, as a verb phrase.
        action: &'static str,
        /// Why (boxed: it may carry the server's whole report).
        source: Box<DurableError>,
    },
    /// Arguments clap accepts but that do not go together.
    Usage(String),
    /// The demo could not run one of its steps.
    Demo(String),
    /// `listen --timeout` passed before what it waited for arrived.
    TimedOut {
        /// What was waited for and what arrived, as a sentence's end.
        waited_for: String,
    },
}

impl CliError {
    /// The process exit status for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Channel { .. } | Self::ConnectionString { .. } | Self::Config(_) => EXIT_USAGE,
            Self::Subscribe {
                source: SubscribeError::Channel(_),
                ..
            } => EXIT_USAGE,
            Self::Notify(e)
                if matches!(
                    **e,
                    pgnotify_tokio::NotifyError::Payload(_)
                        | pgnotify_tokio::NotifyError::Channel(_)
                ) =>
            {
                EXIT_USAGE
            }
            Self::Durable { source, .. }
                if matches!(
                    **source,
                    DurableError::Channel(_)
                        | DurableError::Payload { .. }
                        | DurableError::Subscribe(SubscribeError::Channel(_))
                ) =>
            {
                EXIT_USAGE
            }
            Self::Usage(_) => EXIT_USAGE,
            Self::TimedOut { .. } => EXIT_TIMEOUT,
            _ => EXIT_FAILURE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel { name, source } => write!(f, "bad channel {name:?}: {source}"),
            Self::ConnectionString { origin, source } => {
                write!(f, "bad connection string in {origin}: {source}")
            }
            Self::Config(e) => write!(f, "bad connection settings in the environment: {e}"),
            Self::Connect {
                target,
                source,
                defaulted,
            } => {
                connect_message(f, target, source)?;
                if *defaulted {
                    f.write_str(
                        "; no server was named: give --url, DATABASE_URL or PGHOST \
                         (or try `pgnotify demo`, which brings its own)",
                    )?;
                }
                Ok(())
            }
            Self::Subscribe { channel, source } => {
                write!(f, "could not listen on {channel:?}: {source}")
            }
            Self::Notify(e) => write!(f, "could not notify: {e}"),
            Self::SomeNotifiesFailed { failed, total } => {
                write!(f, "{failed} of {total} notifications failed")
            }
            Self::AllSubscriptionsEnded { reason } => {
                write!(f, "every subscription ended: {reason}")
            }
            Self::Io { action, source } => write!(f, "could not {action}: {source}"),
            Self::Durable { action, source } => write!(f, "could not {action}: {source}"),
            Self::Usage(message) => f.write_str(message),
            Self::Demo(message) => f.write_str(message),
            Self::TimedOut { waited_for } => write!(f, "timed out: {waited_for}"),
        }
    }
}

impl std::error::Error for CliError {}

/// The connection failure, naming the server tried.
fn connect_message(
    f: &mut fmt::Formatter<'_>,
    target: &str,
    source: &ListenerError,
) -> fmt::Result {
    match source {
        ListenerError::Connect(e) => write!(
            f,
            "could not connect to {target}: {}",
            e.after_could_not_connect()
        ),
        ListenerError::TimedOut {
            after,
            last_error: Some(e),
        } => write!(
            f,
            "could not connect to {target} within {after:?} (last attempt: {})",
            e.after_could_not_connect()
        ),
        ListenerError::TimedOut { after, .. } => {
            write!(f, "could not connect to {target} within {after:?}")
        }
        _ => write!(f, "{source}"),
    }
}
