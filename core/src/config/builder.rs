//! [`ConfigBuilder`]: every setting in code, checked once by `build`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::MAX_DURATION;
use super::error::ConfigError;
use super::host::{DEFAULT_HOST, DEFAULT_PORT, HostSpec};
use super::keepalive::Keepalive;
use super::passfile::PassFile;
use super::password::Password;
use super::pooler::TransactionPooler;
use super::session_attrs::TargetSessionAttrs;
use super::tls::{SslMode, SslRootCert};
use super::{Config, defaults};
use crate::{OverflowPolicy, SubscribeOptions};

/// The smallest `max_frame_size` accepted: room for the largest notification
/// (an 8000-byte payload and a 63-byte channel) and a verbose error message.
pub const MIN_FRAME_LEN: usize = 16 * 1024;

/// The largest `max_frame_size` accepted: 1 GiB, the server's own limit on
/// one allocation.
pub const MAX_FRAME_LEN: usize = 1024 * 1024 * 1024;

/// The largest `queue_capacity` accepted (16 Mi items).
pub const MAX_QUEUE_CAPACITY: usize = 16 * 1024 * 1024;

/// The largest keepalive time, count or `tcp_user_timeout` accepted: what a
/// C `int` socket option holds.
const MAX_SOCKET_OPTION: u64 = i32::MAX as u64;

/// The user when neither the string, the environment handed over, nor a
/// builder call names one.
pub const DEFAULT_USER: &str = "postgres";

/// The `application_name` a session shows in `pg_stat_activity` when the
/// configuration names none, so that operators can tell pgnotify's sessions
/// apart (libpq's `fallback_application_name`, fixed).
pub const DEFAULT_APPLICATION_NAME: &str = "pgnotify";

/// Builds a [`Config`] in code; [`build`](Self::build) checks it.
///
/// Every setting a connection string can hold has a setter; what is not set
/// takes the same default as in a connection string.
///
/// ```
/// use std::time::Duration;
/// use pgnotify_core::config::{Config, HostSpec, SslMode};
///
/// let config = Config::builder()
///     .host(HostSpec::tcp("db.internal", 5432))
///     .user("app")
///     .password("s3cret")
///     .ssl_mode(SslMode::VerifyFull)
///     .ping_interval(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(config.dbname(), "app");
/// # Ok::<(), pgnotify_core::config::ConfigError>(())
/// ```
#[derive(Clone, Default, Debug)]
#[must_use]
pub struct ConfigBuilder {
    pub(crate) hosts: Vec<HostSpec>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<Password>,
    pub(crate) dbname: Option<String>,
    pub(crate) application_name: Option<String>,
    pub(crate) options: Option<String>,
    pub(crate) ssl_mode: Option<SslMode>,
    pub(crate) ssl_root_cert: Option<SslRootCert>,
    pub(crate) ssl_cert: Option<PathBuf>,
    pub(crate) passfile: Option<PathBuf>,
    pub(crate) password_file: Option<PassFile>,
    pub(crate) ssl_key: Option<PathBuf>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) keepalive: Keepalive,
    pub(crate) target_session_attrs: TargetSessionAttrs,
    pub(crate) transaction_pooler: TransactionPooler,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) ping_timeout: Option<Duration>,
    pub(crate) backoff_min: Option<Duration>,
    pub(crate) backoff_max: Option<Duration>,
    pub(crate) backoff_reset_after: Option<Duration>,
    pub(crate) publish_timeout: Option<Duration>,
    pub(crate) listen_check_every: u32,
    pub(crate) group_commit: Option<bool>,
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) overflow_policy: OverflowPolicy,
    pub(crate) stall_limit: Option<Duration>,
    /// Parts per million of the server's notification queue.
    pub(crate) server_queue_limit: Option<u32>,
    pub(crate) max_frame_len: Option<usize>,
    pub(crate) seed: Option<u64>,
}

impl ConfigBuilder {
    /// Everything at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a host to try (in order). Without any, [`DEFAULT_HOST`] on
    /// [`DEFAULT_PORT`].
    pub fn host(mut self, host: HostSpec) -> Self {
        self.hosts.push(host);
        self
    }

    /// Replaces the hosts to try.
    pub fn hosts(mut self, hosts: impl IntoIterator<Item = HostSpec>) -> Self {
        self.hosts = hosts.into_iter().collect();
        self
    }

    /// Sets the user name (default: `PGUSER`, `USER` or `LOGNAME` from the
    /// environment handed over, else [`DEFAULT_USER`]).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the password (empty means none).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Password::new(password));
        self
    }

    /// Sets the database (default: the user name).
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = Some(dbname.into());
        self
    }

    /// Sets the `application_name` the server shows in `pg_stat_activity`
    /// (empty means none).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets libpq's `options`: command-line options sent to the server at
    /// startup, for example `-c search_path=app -c work_mem=64MB` (empty
    /// means none).
    pub fn options(mut self, options: impl Into<String>) -> Self {
        self.options = Some(options.into());
        self
    }

    /// Sets the TLS mode (default [`SslMode::Prefer`], or
    /// [`SslMode::VerifyFull`] with [`SslRootCert::System`]).
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// Sets the certificate authorities to trust.
    pub fn ssl_root_cert(mut self, roots: SslRootCert) -> Self {
        self.ssl_root_cert = Some(roots);
        self
    }

    /// Sets where the password file is (`passfile`; libpq's default is
    /// `~/.pgpass`). The core reads no file: a driver reads it and hands
    /// its entries in with [`password_file`](Self::password_file).
    pub fn passfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.passfile = Some(path.into());
        self
    }

    /// Sets the password file's entries, consulted for each host when no
    /// password is set ([`Config::password_for`]).
    pub fn password_file(mut self, entries: PassFile) -> Self {
        self.password_file = Some(entries);
        self
    }

    /// Sets the client certificate file (PEM) to present when the server
    /// asks for one (`sslcert`; libpq's default is
    /// `~/.postgresql/postgresql.crt`, used only if it exists).
    pub fn ssl_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_cert = Some(path.into());
        self
    }

    /// Sets the client certificate's private key file (PEM, unencrypted;
    /// `sslkey`, default `~/.postgresql/postgresql.key`).
    pub fn ssl_key(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_key = Some(path.into());
        self
    }

    /// Sets how long one connection attempt may take, in whole seconds as
    /// libpq: zero means no limit and one second is raised to two.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Sets the TCP keepalive settings (whole seconds for the times, whole
    /// milliseconds for the user timeout; zero means the system default).
    pub fn keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Sets which servers are acceptable among several hosts.
    pub fn target_session_attrs(mut self, attrs: TargetSessionAttrs) -> Self {
        self.target_session_attrs = attrs;
        self
    }

    /// Turns group commit on or off (default on): publishes that arrive
    /// while another is in flight share the next transaction.
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group_commit = Some(on);
        self
    }

    /// Sets what the listener does once it detects a transaction-pooling
    /// proxy (default [`TransactionPooler::Fail`]).
    pub fn transaction_pooler(mut self, action: TransactionPooler) -> Self {
        self.transaction_pooler = action;
        self
    }

    /// Sets how often the bus pings while connected (must not be zero).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = Some(interval);
        self
    }

    /// Sets how long a ping may go unanswered before the connection is
    /// replaced (must not be zero).
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = Some(timeout);
        self
    }

    /// Sets the shortest wait between reconnect attempts after the first,
    /// immediate one (must not be zero).
    pub fn backoff_min(mut self, min: Duration) -> Self {
        self.backoff_min = Some(min);
        self
    }

    /// Sets the longest wait between reconnect attempts (at least
    /// `backoff_min`).
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = Some(max);
        self
    }

    /// Sets how long a connection must stay listening to count as proved
    /// when no ping answer can be read (reading paused for `Backpressure`).
    ///
    /// A connection normally proves itself sooner, by answering its first
    /// health ping; either way the backoff then starts over. See
    /// [`Config::backoff_reset_after`](crate::Config::backoff_reset_after).
    pub fn backoff_reset_after(mut self, healthy: Duration) -> Self {
        self.backoff_reset_after = Some(healthy);
        self
    }

    /// Sets how long a publish waits for a connection before it fails.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = Some(timeout);
        self
    }

    /// Sets how many pings pass between checks of `pg_listening_channels()`
    /// against the registry (0 turns the check off).
    pub fn listen_check_every(mut self, pings: u32) -> Self {
        self.listen_check_every = pings;
        self
    }

    /// Sets the queue capacity subscribers get when they ask for none
    /// (1 to [`MAX_QUEUE_CAPACITY`]).
    pub fn queue_capacity(mut self, items: usize) -> Self {
        self.queue_capacity = Some(items);
        self
    }

    /// Sets the stall limit of [`Absorb`](OverflowPolicy::Absorb)
    /// subscribers that ask for no options of their own (default
    /// [`DEFAULT_STALL_LIMIT`](crate::DEFAULT_STALL_LIMIT)).
    pub fn stall_limit(mut self, limit: Duration) -> Self {
        self.stall_limit = Some(limit);
        self
    }

    /// Sets the server guard: while reading is paused, full
    /// [`Absorb`](OverflowPolicy::Absorb) subscribers stop holding the
    /// connection once the server's `pg_notification_queue_usage()` is
    /// above `fraction` (0 < fraction <= 1; default
    /// [`defaults::SERVER_QUEUE_LIMIT_PPM`](super::defaults::SERVER_QUEUE_LIMIT_PPM) parts per million).
    /// Values outside that range are clamped.
    pub fn server_queue_limit(mut self, fraction: f64) -> Self {
        let ppm = (fraction * 1_000_000.0).round().clamp(1.0, 1_000_000.0);
        self.server_queue_limit = Some(ppm as u32);
        self
    }

    /// Sets the overflow policy subscribers get when they ask for none.
    pub fn overflow_policy(mut self, policy: OverflowPolicy) -> Self {
        self.overflow_policy = policy;
        self
    }

    /// Sets the largest server message accepted, in bytes
    /// ([`MIN_FRAME_LEN`] to [`MAX_FRAME_LEN`]).
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = Some(bytes);
        self
    }

    /// Sets the seed of the backoff jitter.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every setting and fills in the defaults.
    pub fn build(self) -> Result<Config, ConfigError> {
        let hosts = if self.hosts.is_empty() {
            vec![HostSpec::tcp(DEFAULT_HOST, DEFAULT_PORT)]
        } else {
            self.hosts
        };
        for host in &hosts {
            host.validate()?;
        }
        let user = self.user.unwrap_or_else(|| DEFAULT_USER.to_owned());
        let dbname = self.dbname.unwrap_or_else(|| user.clone());
        check_text("user", &user, false)?;
        check_text("dbname", &dbname, false)?;
        // Empty means "not given", as in a connection string.
        let password = self.password.filter(|p| !p.as_str().is_empty());
        let application_name = self.application_name.filter(|n| !n.is_empty());
        if let Some(password) = &password {
            check_text("password", password.as_str(), true)?;
        }
        if let Some(name) = &application_name {
            check_text("application_name", name, true)?;
        }
        let options = self.options.filter(|o| !o.is_empty());
        if let Some(options) = &options {
            check_text("options", options, true)?;
        }
        let ssl_mode = ssl_mode(self.ssl_mode, self.ssl_root_cert.as_ref())?;

        let ping_interval = nonzero("ping_interval", self.ping_interval, defaults::PING_INTERVAL)?;
        let ping_timeout = nonzero("ping_timeout", self.ping_timeout, defaults::PING_TIMEOUT)?;
        let backoff_min = nonzero("backoff_min", self.backoff_min, defaults::BACKOFF_MIN)?;
        let backoff_max = bounded("backoff_max", self.backoff_max, defaults::BACKOFF_MAX)?;
        if backoff_max < backoff_min {
            return Err(ConfigError::BackoffRange {
                min: backoff_min,
                max: backoff_max,
            });
        }
        let queue_capacity = self.queue_capacity.unwrap_or(crate::DEFAULT_CAPACITY);
        if !(1..=MAX_QUEUE_CAPACITY).contains(&queue_capacity) {
            return Err(ConfigError::invalid(
                "queue_capacity",
                &queue_capacity.to_string(),
                "must be from 1 to 16777216 items",
            ));
        }
        let max_frame_len = self.max_frame_len.unwrap_or(defaults::MAX_FRAME_LEN);
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&max_frame_len) {
            return Err(ConfigError::invalid(
                "max_frame_size",
                &max_frame_len.to_string(),
                "must be from 16384 bytes (16KiB) to 1073741824 bytes (1GiB)",
            ));
        }
        Ok(Config {
            hosts,
            user,
            password,
            dbname,
            application_name,
            options,
            ssl_mode,
            ssl_root_cert: self.ssl_root_cert.map(check_root_cert).transpose()?,
            ssl_cert: self
                .ssl_cert
                .map(|p| check_path("sslcert", p))
                .transpose()?,
            ssl_key: self.ssl_key.map(|p| check_path("sslkey", p)).transpose()?,
            passfile: self
                .passfile
                .map(|p| check_path("passfile", p))
                .transpose()?,
            password_file: self.password_file,
            connect_timeout: connect_timeout(self.connect_timeout)?,
            keepalive: keepalive(self.keepalive)?,
            target_session_attrs: self.target_session_attrs,
            transaction_pooler: self.transaction_pooler,
            ping_interval,
            ping_timeout,
            backoff_min,
            backoff_max,
            backoff_reset_after: bounded(
                "backoff_reset_after",
                self.backoff_reset_after,
                defaults::BACKOFF_RESET_AFTER,
            )?,
            publish_timeout: bounded(
                "publish_timeout",
                self.publish_timeout,
                defaults::PUBLISH_TIMEOUT,
            )?,
            listen_check_every: self.listen_check_every,
            group_commit: self.group_commit.unwrap_or(true),
            subscribe_options: SubscribeOptions::new()
                .capacity(queue_capacity)
                .policy(self.overflow_policy)
                .stall_limit(bounded(
                    "stall_limit",
                    self.stall_limit,
                    crate::DEFAULT_STALL_LIMIT,
                )?),
            server_queue_limit_ppm: self
                .server_queue_limit
                .unwrap_or(defaults::SERVER_QUEUE_LIMIT_PPM),
            max_frame_len,
            seed: self.seed,
        })
    }
}

/// Text sent to the server as a C string: no NUL byte, and for names, not
/// empty.
fn check_text(name: &str, text: &str, may_be_empty: bool) -> Result<(), ConfigError> {
    if text.contains('\0') {
        return Err(ConfigError::invalid(
            name,
            text,
            "must not contain a NUL byte",
        ));
    }
    if text.is_empty() && !may_be_empty {
        return Err(ConfigError::invalid(name, text, "must not be empty"));
    }
    Ok(())
}

fn ssl_mode(mode: Option<SslMode>, roots: Option<&SslRootCert>) -> Result<SslMode, ConfigError> {
    match (mode, roots) {
        (None, Some(SslRootCert::System)) => Ok(SslMode::VerifyFull),
        (Some(mode), Some(SslRootCert::System)) if mode != SslMode::VerifyFull => {
            Err(ConfigError::SystemRootsNeedVerifyFull { ssl_mode: mode })
        }
        (mode, _) => Ok(mode.unwrap_or_default()),
    }
}

fn check_root_cert(roots: SslRootCert) -> Result<SslRootCert, ConfigError> {
    let SslRootCert::File(path) = roots else {
        return Ok(roots);
    };
    let path = check_path("sslrootcert", path)?;
    if path == Path::new("system") {
        return Err(ConfigError::invalid(
            "sslrootcert",
            "system",
            "a file named system must be written ./system; system alone means the system roots",
        ));
    }
    Ok(SslRootCert::File(path))
}

/// A file path parameter: non-empty UTF-8 without NUL bytes (it must
/// print back into a connection string).
fn check_path(name: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
    match path.to_str() {
        Some(text) if !text.is_empty() && !text.contains('\0') => Ok(path),
        Some(text) => Err(ConfigError::invalid(
            name,
            text,
            "must be a non-empty path without NUL bytes",
        )),
        None => Err(ConfigError::invalid(
            name,
            &path.to_string_lossy(),
            "the path must be valid UTF-8",
        )),
    }
}

fn bounded(
    name: &str,
    value: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let value = value.unwrap_or(default);
    if value > MAX_DURATION {
        return Err(ConfigError::invalid(
            name,
            &super::duration::format(value),
            "must be at most 24h",
        ));
    }
    Ok(value)
}

fn nonzero(
    name: &str,
    value: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let value = bounded(name, value, default)?;
    if value.is_zero() {
        return Err(ConfigError::invalid(
            name,
            "0s",
            "must be greater than zero",
        ));
    }
    Ok(value)
}

/// libpq's rules: zero means no limit, one second is raised to two (its
/// minimum), and only whole seconds exist.
fn connect_timeout(timeout: Option<Duration>) -> Result<Option<Duration>, ConfigError> {
    let Some(timeout) = timeout.filter(|t| !t.is_zero()) else {
        return Ok(None);
    };
    let shown = super::duration::format(timeout);
    if timeout.subsec_nanos() != 0 {
        return Err(ConfigError::invalid(
            "connect_timeout",
            &shown,
            "must be a whole number of seconds",
        ));
    }
    if timeout > MAX_DURATION {
        return Err(ConfigError::invalid(
            "connect_timeout",
            &shown,
            "must be at most 86400 seconds",
        ));
    }
    Ok(Some(timeout.max(Duration::from_secs(2))))
}

/// Zero means the system default (`None`), as in libpq; anything else must
/// be a whole number of the parameter's unit and fit a C `int`.
fn keepalive(k: Keepalive) -> Result<Keepalive, ConfigError> {
    let seconds = |name: &str, value: Option<Duration>| -> Result<Option<Duration>, ConfigError> {
        let Some(value) = value.filter(|v| !v.is_zero()) else {
            return Ok(None);
        };
        if value.subsec_nanos() != 0 || value.as_secs() > MAX_SOCKET_OPTION {
            return Err(ConfigError::invalid(
                name,
                &super::duration::format(value),
                "must be a whole number of seconds that fits a C int",
            ));
        }
        Ok(Some(value))
    };
    let user_timeout = match k.user_timeout.filter(|v| !v.is_zero()) {
        None => None,
        Some(value) => {
            if value.subsec_nanos() % 1_000_000 != 0 || value.as_millis() > MAX_SOCKET_OPTION.into()
            {
                return Err(ConfigError::invalid(
                    "tcp_user_timeout",
                    &super::duration::format(value),
                    "must be a whole number of milliseconds that fits a C int",
                ));
            }
            Some(value)
        }
    };
    let count = match k.count.filter(|&c| c != 0) {
        Some(c) if u64::from(c) > MAX_SOCKET_OPTION => {
            return Err(ConfigError::invalid(
                "keepalives_count",
                &c.to_string(),
                "must fit a C int",
            ));
        }
        count => count,
    };
    Ok(Keepalive {
        enabled: k.enabled,
        idle: seconds("keepalives_idle", k.idle)?,
        interval: seconds("keepalives_interval", k.interval)?,
        count,
        user_timeout,
    })
}
