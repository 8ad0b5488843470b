//! Errors the simulated server sends or returns.

use std::fmt;

/// An error as PostgreSQL reports it in an ErrorResponse: severity, SQLSTATE
/// and message.
///
/// Used both for the errors the simulation produces by itself and for the
/// ones a test injects with [`SimServer::fail_next`](super::SimServer::fail_next).
///
/// ```
/// use pgnotify_testkit::sim_server::SqlError;
/// let e = SqlError::error("53100", "could not extend file");
/// assert_eq!(e.to_string(), "ERROR 53100: could not extend file");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// ERROR aborts the transaction; FATAL also ends the connection.
    pub severity: Severity,
    /// The five-character SQLSTATE.
    pub code: String,
    /// The primary message.
    pub message: String,
}

impl SqlError {
    /// An ERROR: the transaction is rolled back, the connection survives.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// A FATAL error: the backend sends it and closes the connection.
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Fatal,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// FATAL 57P01, what a backend sends when it is terminated
    /// (`pg_terminate_backend`, fast shutdown).
    pub fn admin_shutdown() -> Self {
        Self::fatal(
            ADMIN_SHUTDOWN,
            "terminating connection due to administrator command",
        )
    }

    pub(crate) fn syntax(message: impl Into<String>) -> Self {
        Self::error(SYNTAX_ERROR, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::fatal(PROTOCOL_VIOLATION, message)
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity.as_str(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for SqlError {}

/// The severity of an [`SqlError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends after the message.
    Fatal,
}

impl Severity {
    /// The severity as it appears in the `S` and `V` fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }
}

/// Why [`SimServer::accept`](super::SimServer::accept) turned a connection
/// away, as a TCP-level refusal (the client sees "connection refused").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The test asked the server to refuse connections.
    Refusing,
    /// The server was shut down and not restarted.
    ServerDown,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Refusing => "the simulated server is refusing connections",
            Self::ServerDown => "the simulated server is shut down",
        })
    }
}

impl std::error::Error for Refused {}

pub(crate) const SYNTAX_ERROR: &str = "42601";
pub(crate) const PROTOCOL_VIOLATION: &str = "08P01";
pub(crate) const INVALID_PARAMETER_VALUE: &str = "22023";
pub(crate) const READ_ONLY_TRANSACTION: &str = "25006";
pub(crate) const ADMIN_SHUTDOWN: &str = "57P01";
pub(crate) const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
