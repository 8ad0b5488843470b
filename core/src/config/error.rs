//! [`ConfigError`]: why a connection string or a configuration was refused.

use std::fmt;
use std::time::Duration;

use super::tls::SslMode;

/// What stands in an error message for a secret value.
pub(crate) const REDACTED: &str = "<redacted>";

/// Why a connection string, an environment variable or a built configuration
/// was refused.
///
/// Every variant names the parameter (or the position) it is about, and
/// shows the offending value except when it is the password: no error ever
/// contains the password, so errors can be logged as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The connection string is malformed at `position` (a byte offset).
    ///
    /// The text around the position is not repeated, since it may be part of
    /// a password.
    Syntax {
        /// Byte offset into the connection string.
        position: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// The string looks like a URL but its scheme is not `postgres://` or
    /// `postgresql://`.
    UnsupportedScheme {
        /// The scheme as written, without `://`.
        scheme: String,
    },
    /// No parameter of that name exists in libpq or in pgnotify.
    UnknownParameter {
        /// The parameter name as written.
        name: String,
    },
    /// A libpq parameter that pgnotify does not implement (`sslpassword`,
    /// `gssencmode`, `replication`, ...). Refused rather than ignored, so a setting
    /// that matters is never silently dropped.
    UnsupportedParameter {
        /// The parameter name.
        name: String,
    },
    /// A known parameter with a value it cannot take.
    InvalidValue {
        /// The parameter name.
        name: String,
        /// The value as written, or `<redacted>` for the password.
        value: String,
        /// What the parameter expects.
        reason: &'static str,
    },
    /// A value taken from an environment variable (`PGPORT`, ...) is invalid.
    Environment {
        /// The variable's name.
        variable: String,
        /// What is wrong with its value.
        source: Box<ConfigError>,
    },
    /// The port list has neither one entry nor one per host.
    PortCountMismatch {
        /// How many hosts were given.
        hosts: usize,
        /// How many ports were given.
        ports: usize,
    },
    /// `host` and `hostaddr` lists of different lengths.
    HostaddrCountMismatch {
        /// How many `host` entries were given.
        hosts: usize,
        /// How many `hostaddr` entries were given.
        hostaddrs: usize,
    },
    /// `backoff_max` is shorter than `backoff_min`.
    BackoffRange {
        /// The minimum backoff.
        min: Duration,
        /// The maximum backoff.
        max: Duration,
    },
    /// `service` (or `PGSERVICE`) names a service no service file defines.
    ServiceNotFound {
        /// The service name.
        name: String,
    },
    /// A service file has a line that is neither `[name]`, `key=value`, a
    /// comment nor blank.
    ServiceFile {
        /// The file, as its reader named it.
        file: String,
        /// The 1-based line number.
        line: usize,
    },
    /// A parameter of a service from a service file is invalid.
    Service {
        /// The service name.
        name: String,
        /// What is wrong with the parameter.
        source: Box<ConfigError>,
    },
    /// `sslrootcert=system` with an `sslmode` weaker than `verify-full`
    /// (refused as libpq 16 does: anyone can get a publicly trusted
    /// certificate for a name they control).
    SystemRootsNeedVerifyFull {
        /// The weaker mode that was asked for.
        ssl_mode: SslMode,
    },
    /// The `sslmode` requires TLS and the driver has none (a bus made with
    /// [`Bus::without_tls`](crate::bus::Bus::without_tls)); refused as a
    /// libpq built without SSL support refuses it.
    TlsUnavailable {
        /// The mode that was asked for (`require`, `verify-ca` or `verify-full`).
        ssl_mode: SslMode,
    },
}

impl ConfigError {
    /// An [`InvalidValue`](Self::InvalidValue) that hides the value when the
    /// parameter is the password.
    pub(crate) fn invalid(name: &str, value: &str, reason: &'static str) -> Self {
        let value = if name == "password" {
            REDACTED.to_owned()
        } else {
            value.to_owned()
        };
        Self::InvalidValue {
            name: name.to_owned(),
            value,
            reason,
        }
    }

    pub(crate) fn syntax(position: usize, reason: &'static str) -> Self {
        Self::Syntax { position, reason }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { position, reason } => {
                write!(
                    f,
                    "connection string is malformed at byte {position}: {reason}"
                )
            }
            Self::UnsupportedScheme { scheme } => write!(
                f,
                "connection URL scheme {scheme:?} is not supported; \
                 use postgres:// or postgresql://"
            ),
            Self::UnknownParameter { name } => {
                write!(f, "unknown connection parameter {name:?}")
            }
            Self::UnsupportedParameter { name } => write!(
                f,
                "connection parameter {name:?} is a libpq parameter that pgnotify does not support"
            ),
            Self::InvalidValue {
                name,
                value,
                reason,
            } => write!(
                f,
                "invalid value {value:?} for connection parameter {name:?}: {reason}"
            ),
            Self::Environment { variable, source } => {
                write!(f, "environment variable {variable}: {source}")
            }
            Self::PortCountMismatch { hosts, ports } => write!(
                f,
                "could not match {ports} port numbers to {hosts} hosts; \
                 give one port for all hosts or one per host"
            ),
            Self::HostaddrCountMismatch { hosts, hostaddrs } => write!(
                f,
                "could not match {hostaddrs} hostaddr values to {hosts} host names"
            ),
            Self::BackoffRange { min, max } => write!(
                f,
                "backoff_max ({max:?}) is shorter than backoff_min ({min:?})"
            ),
            Self::ServiceNotFound { name } => write!(
                f,
                "definition of service {name:?} not found in the service files (PGSERVICEFILE or \
                 ~/.pg_service.conf, then PGSYSCONFDIR/pg_service.conf)"
            ),
            Self::Service { name, source } => write!(f, "service {name:?}: {source}"),
            Self::ServiceFile { file, line } => write!(
                f,
                "syntax error in service file {file:?}, line {line}: expected [name] or key=value"
            ),
            Self::SystemRootsNeedVerifyFull { ssl_mode } => write!(
                f,
                "sslrootcert=system requires sslmode=verify-full, but sslmode is {ssl_mode}"
            ),
            Self::TlsUnavailable { ssl_mode } => write!(
                f,
                "sslmode={ssl_mode} requires TLS, which this driver does not have; use \
                 sslmode=prefer or sslmode=disable, or a driver with TLS"
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Environment { source, .. } | Self::Service { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
