//! Why a throwaway server could not be set up or driven.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use super::version::{MIN_SUPPORTED_MAJOR, ServerVersion};

/// A shorthand for results whose error is the testkit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the testkit could not start, drive or query a [`TestServer`](super::TestServer).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No directory holding both `initdb` and `postgres` was found.
    BinariesNotFound {
        /// Every directory that was looked at, in search order.
        searched: Vec<PathBuf>,
    },
    /// `postgres --version` did not say which version it is.
    UnknownVersion {
        /// The directory holding `initdb` and `postgres`.
        bindir: PathBuf,
        /// What `postgres --version` printed.
        output: String,
    },
    /// The server binaries found are older than the testkit supports
    /// ([`MIN_SUPPORTED_MAJOR`](super::MIN_SUPPORTED_MAJOR)).
    UnsupportedVersion {
        /// The directory holding `initdb` and `postgres`.
        bindir: PathBuf,
        /// Their version.
        version: ServerVersion,
    },
    /// No `pgbouncer` executable was found (for a [`TestPgBouncer`](crate::pooler::TestPgBouncer)).
    PgBouncerNotFound {
        /// Every path that was looked at, in search order.
        searched: Vec<PathBuf>,
    },
    /// PgBouncer exited, or did not report readiness in time, while starting.
    PgBouncerStartFailed {
        /// What it logged.
        log: String,
    },
    /// The server binaries were found but `psql` is not next to them.
    PsqlNotFound {
        /// The directory holding `initdb` and `postgres`.
        bindir: PathBuf,
    },
    /// The tests run as root, and the unprivileged user PostgreSQL must run as does not exist.
    NoUnprivilegedUser {
        /// The user name that was looked up.
        name: String,
    },
    /// A file-system or process operation failed.
    Io {
        /// What was being done, as a verb phrase ("create directory /tmp/x").
        action: String,
        /// The underlying error.
        source: io::Error,
    },
    /// `initdb` exited unsuccessfully.
    InitdbFailed {
        /// How it exited.
        status: ExitStatus,
        /// What it printed on stdout and stderr.
        output: String,
    },
    /// The postmaster exited before it was ready to accept connections.
    StartFailed {
        /// The server log of this start attempt.
        log: String,
    },
    /// The postmaster did not report readiness within the start timeout.
    StartTimedOut {
        /// The server log of this start attempt.
        log: String,
    },
    /// An operation needs a running server, and it is stopped.
    NotRunning,
    /// [`start`](super::TestServer::start) was called while the server runs.
    AlreadyRunning,
    /// Administrative SQL run through `psql` failed.
    Sql {
        /// The SQL that was sent.
        sql: String,
        /// What `psql` reported on stderr.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BinariesNotFound { searched } => {
                write!(
                    f,
                    "no PostgreSQL server binaries (initdb and postgres) were found; searched \
                     $PGNOTIFY_PG_BINDIR, $PATH, `pg_config --bindir` and \
                     /usr/lib/postgresql/*/bin ("
                )?;
                for (i, dir) in searched.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", dir.display())?;
                }
                f.write_str(
                    "); install them with `apt-get install postgresql` (Debian, Ubuntu), \
                     `dnf install postgresql-server` (Fedora), `apk add postgresql` (Alpine) \
                     or `brew install postgresql` (macOS), or point $PGNOTIFY_PG_BINDIR at \
                     the directory holding initdb",
                )
            }
            Self::UnknownVersion { bindir, output } => write!(
                f,
                "could not tell the version of the PostgreSQL server in {}: `postgres --version` \
                 printed {:?}",
                bindir.display(),
                output.trim_end()
            ),
            Self::UnsupportedVersion { bindir, version } => write!(
                f,
                "the PostgreSQL server in {} is version {version}, and the testkit needs \
                 {MIN_SUPPORTED_MAJOR} or newer; install a newer one or point \
                 $PGNOTIFY_PG_BINDIR at one (.ci/postgres-versions fetches any of 13 to 18)",
                bindir.display()
            ),
            Self::PgBouncerNotFound { searched } => {
                let env = searched
                    .first()
                    .filter(|_| std::env::var_os("PGNOTIFY_PGBOUNCER").is_some());
                match env {
                    Some(path) => write!(
                        f,
                        "PgBouncer is not installed: $PGNOTIFY_PGBOUNCER names {}, which does not exist, and there is no pgbouncer in $PATH or /usr/sbin",
                        path.display()
                    )?,
                    None => f.write_str(
                        "PgBouncer is not installed: there is no pgbouncer in $PATH or /usr/sbin",
                    )?,
                }
                f.write_str(
                    "; install it with `apt-get install pgbouncer` or point $PGNOTIFY_PGBOUNCER \
                     at the executable",
                )
            }
            Self::PgBouncerStartFailed { log } => {
                write!(f, "PgBouncer did not start; its log:\n{log}")
            }
            Self::PsqlNotFound { bindir } => write!(
                f,
                "psql was found neither next to the server binaries in {} nor in $PATH; install the PostgreSQL \
                 client (`apt-get install postgresql-client`)",
                bindir.display()
            ),
            Self::NoUnprivilegedUser { name } => write!(
                f,
                "the tests run as root and PostgreSQL refuses to, but the user `{name}` to run \
                 it as does not exist; create it (`useradd --system {name}`; installing the \
                 postgresql package does this) or run the tests as an ordinary user"
            ),
            Self::Io { action, source } => write!(f, "could not {action}: {source}"),
            Self::InitdbFailed { status, output } => {
                write!(f, "initdb failed ({status}):\n{output}")
            }
            Self::StartFailed { log } => {
                write!(
                    f,
                    "the PostgreSQL server exited while starting; its log:\n{log}"
                )
            }
            Self::StartTimedOut { log } => write!(
                f,
                "the PostgreSQL server did not become ready in time; its log:\n{log}"
            ),
            Self::NotRunning => f.write_str("the PostgreSQL server is stopped"),
            Self::AlreadyRunning => f.write_str("the PostgreSQL server is already running"),
            Self::Sql { sql, message } => {
                write!(
                    f,
                    "administrative SQL failed: {} (SQL: {sql})",
                    message.trim_end()
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
