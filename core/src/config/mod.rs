//! Connection configuration: libpq connection strings (URL and `key=value`),
//! PG* environment defaults, and pgnotify's own settings, in one [`Config`].
//!
//! # Connection strings
//!
//! [`Config::parse`] accepts both libpq forms and tells them apart by the
//! scheme:
//!
//! ```text
//! postgres://app:s%40cret@db1:5432,db2:5433/orders?sslmode=require&application_name=worker
//! host=db1,db2 port=5432,5433 user=app password='s@cret' dbname=orders sslmode=require
//! ```
//!
//! Everything libpq does with those strings is done the same way here:
//! percent-decoding in every URL component, bracketed IPv6 addresses, several
//! hosts with one port for all or one each (an empty entry takes the default),
//! a host starting with `/` as a unix socket directory, single-quoted values
//! with `\'` and `\\` escapes, later parameters overriding earlier ones, and
//! an empty value meaning "not given". Where pgnotify differs, it refuses
//! rather than guesses, with an error that names the parameter:
//!
//! - unknown parameters, and libpq parameters pgnotify does not implement
//!   (`sslcert`, `options`, `service`, ...), are errors, never ignored;
//! - `sslmode=allow` is refused (see [`SslMode`]);
//! - `target_session_attrs` takes only `any` and `read-write`, since LISTEN
//!   fails on a standby (see [`TargetSessionAttrs`]);
//! - with no host at all the default is TCP to `localhost`, not a socket
//!   directory compiled into libpq ([`DEFAULT_HOST`]);
//! - with no user at all (string, `PGUSER`, `USER`, `LOGNAME`), the user is
//!   `postgres` ([`DEFAULT_USER`]); the database defaults to the user;
//! - with no `application_name`, sessions show [`DEFAULT_APPLICATION_NAME`].
//!
//! # Environment
//!
//! The core reads no environment itself. [`Config::parse_with_env`] and
//! [`Config::from_env`] are handed the variables (for example
//! `std::env::vars()`) and take the ones in [`ENV_VARIABLES`] as defaults:
//! a parameter the string gives, even empty, wins and its variable is not
//! looked at, as in libpq.
//!
//! # pgnotify's own parameters
//!
//! | parameter | default | meaning |
//! |---|---|---|
//! | `ping_interval` | 10s | ping the server this often while connected |
//! | `ping_timeout` | 5s | replace the connection if a ping is unanswered this long |
//! | `backoff_min` | 100ms | the shortest wait between reconnect attempts (after the first, immediate one) |
//! | `backoff_max` | 10s | the longest wait (at least `backoff_min`) |
//! | `backoff_reset_after` | 30s | a connection also counts as proved (backoff starts over) after listening this long with no ping answer readable (reading paused for `Backpressure`); normally its first ping answer proves it first |
//! | `publish_timeout` | 5s | how long a publish waits for a connection |
//! | `listen_check_every` | 0 (off) | compare `pg_listening_channels()` with the registry every N pings |
//! | `queue_capacity` | 1024 | default subscriber queue capacity, in items |
//! | `overflow_policy` | `absorb` | default [`OverflowPolicy`](crate::OverflowPolicy) |
//! | `stall_limit` | 5s | how long a full `absorb` subscriber may consume nothing before it drops instead of pausing the listener |
//! | `server_queue_limit` | 0.5 | while paused, stop pausing for `absorb` subscribers once `pg_notification_queue_usage()` is above this fraction (or `50%`) |
//! | `group_commit` | on | publishes that arrive while another is in flight share the next transaction (never two identical ones, at most 1,000 notifications); `off` gives each its own |
//! | `transaction_pooler` | `fail` | on detecting a transaction-pooling proxy (LISTEN cannot work through one), stop with the error, or `retry` (see [`TransactionPooler`]) |
//! | `max_frame_size` | 1MiB | the largest server message accepted, in bytes (or `KiB`, `MiB`) |
//! | `jitter_seed` | 0 | seed of the backoff jitter |
//!
//! Durations are written `500ms`, `5s`, `2m`, `1h` or as a plain number of
//! seconds, up to [`MAX_DURATION`]. libpq's own timing parameters keep
//! libpq's units (`connect_timeout` and `keepalives_*` in seconds,
//! `tcp_user_timeout` in milliseconds).
//!
//! The jitter seed makes runs reproducible: the same configuration and the
//! same inputs give the same reconnect schedule. Processes that share a seed
//! also share their jitter and reconnect in step after an outage, so give
//! each process its own seed in production (the driver may draw one when
//! [`Config::explicit_seed`] is `None`).
//!
//! # Secrets
//!
//! `Debug`, `Display` and every [`ConfigError`] leave the password out;
//! only [`Config::to_conninfo`] and [`Config::password`] give it back.

mod builder;
mod duration;
mod env;
mod error;
mod host;
mod keepalive;
mod keyvalue;
mod params;
mod passfile;
mod password;
mod pooler;
mod render;
mod service;
mod session_attrs;
mod tls;
mod url;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use builder::{
    ConfigBuilder, DEFAULT_APPLICATION_NAME, DEFAULT_USER, MAX_FRAME_LEN, MAX_QUEUE_CAPACITY,
    MIN_FRAME_LEN,
};
pub use duration::MAX_DURATION;
pub use env::ENV_VARIABLES;
pub use error::ConfigError;
pub use host::{DEFAULT_HOST, DEFAULT_PORT, HostSpec};
pub use keepalive::Keepalive;
pub use params::PARAMETERS;
pub use passfile::PassFile;
pub use pooler::TransactionPooler;
pub use service::{ServiceFile, ServiceFileError};
pub use session_attrs::TargetSessionAttrs;
pub use tls::{SslMode, SslRootCert};

use crate::SubscribeOptions;
use env::EnvDefaults;
use params::Params;
use password::Password;

/// The defaults of pgnotify's own settings.
pub mod defaults {
    use std::time::Duration;

    /// How often the bus pings while connected: 10 s.
    pub const PING_INTERVAL: Duration = Duration::from_secs(10);
    /// How long a ping may go unanswered: 5 s.
    pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
    /// The shortest reconnect backoff: 100 ms.
    pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
    /// The longest reconnect backoff: 10 s.
    pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
    /// Listening time that proves a connection whose ping answer cannot be
    /// read: 30 s.
    pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);
    /// How long a publish waits for a connection: 5 s.
    pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
    /// The server guard's threshold: half of the server's notification
    /// queue (0.5), in parts per million.
    pub const SERVER_QUEUE_LIMIT_PPM: u32 = 500_000;
    /// How often the server guard reads `pg_notification_queue_usage()`
    /// while reading is paused: 1 s.
    pub const SERVER_GUARD_INTERVAL: Duration = Duration::from_secs(1);
    /// The largest server message accepted: 1 MiB.
    pub const MAX_FRAME_LEN: usize = 1024 * 1024;
}

/// Everything pgnotify needs to know to connect and to run its bus: the
/// servers to try, credentials, TLS, timeouts, and pgnotify's own settings.
///
/// Build one from a libpq connection string ([`Config::parse`], or
/// [`str::parse`]), from a string plus the PG* environment
/// ([`Config::parse_with_env`]), or in code ([`Config::builder`]). Every
/// `Config` is valid: the checks happen when it is made.
///
/// `Debug` and `Display` leave the password out; [`to_conninfo`](Self::to_conninfo)
/// writes it back as a connection string that parses to an equal `Config`.
///
/// ```
/// use std::time::Duration;
/// use pgnotify_core::config::{Config, HostSpec, SslMode};
///
/// let config: Config = "postgres://app:pw@db:5433/orders?sslmode=require&ping_interval=2s".parse()?;
/// assert_eq!(config.hosts(), [HostSpec::tcp("db", 5433)]);
/// assert_eq!(config.ssl_mode(), SslMode::Require);
/// assert_eq!(config.ping_interval(), Duration::from_secs(2));
/// assert!(!format!("{config:?} {config}").contains("pw@"));
/// assert_eq!(config.to_conninfo().parse::<Config>()?, config);
/// # Ok::<(), pgnotify_core::config::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Config {
    hosts: Vec<HostSpec>,
    user: String,
    password: Option<Password>,
    dbname: String,
    application_name: Option<String>,
    options: Option<String>,
    ssl_mode: SslMode,
    ssl_root_cert: Option<SslRootCert>,
    ssl_cert: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
    passfile: Option<PathBuf>,
    password_file: Option<PassFile>,
    connect_timeout: Option<Duration>,
    keepalive: Keepalive,
    target_session_attrs: TargetSessionAttrs,
    transaction_pooler: TransactionPooler,
    ping_interval: Duration,
    ping_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    backoff_reset_after: Duration,
    publish_timeout: Duration,
    listen_check_every: u32,
    group_commit: bool,
    subscribe_options: SubscribeOptions,
    server_queue_limit_ppm: u32,
    max_frame_len: usize,
    seed: Option<u64>,
}

impl Config {
    /// Parses a libpq connection string, a URL (`postgres://` or
    /// `postgresql://`) or `key=value` pairs, recognised by the scheme.
    ///
    /// Nothing is taken from the environment: unlike libpq, `PGHOST`,
    /// `PGUSER` and the other PG* variables are ignored here. Use
    /// [`parse_with_env`](Self::parse_with_env) with `std::env::vars()` for
    /// libpq's behaviour; a runtime crate's `Listener::connect(url)` does.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        Self::parse_with_env(s, std::iter::empty::<(&str, &str)>())
    }

    /// Parses a connection string, taking the PG* variables in `env` as
    /// defaults for whatever the string does not give.
    ///
    /// `env` is any list of `(name, value)` pairs, typically
    /// `std::env::vars()`; see [`ENV_VARIABLES`]. An invalid variable is an
    /// [`ConfigError::Environment`] naming it.
    ///
    /// ```
    /// use pgnotify_core::config::{Config, HostSpec};
    /// let env = [("PGHOST", "db"), ("PGUSER", "app"), ("PGPORT", "6432")];
    /// let config = Config::parse_with_env("port=5432", env)?;
    /// assert_eq!(config.hosts(), [HostSpec::tcp("db", 5432)]);
    /// assert_eq!(config.user(), "app");
    /// # Ok::<(), pgnotify_core::config::ConfigError>(())
    /// ```
    pub fn parse_with_env<K, V>(
        s: &str,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::parse_with_services(s, env, &[])
    }

    /// Parses a connection string as [`parse_with_env`](Self::parse_with_env)
    /// does, and resolves libpq's `service=name` (or `PGSERVICE`) from
    /// `files`: the first file that defines the service gives its
    /// parameters, as defaults for what the string does not give and ahead
    /// of the PG* variables. A service no file defines is
    /// [`ConfigError::ServiceNotFound`].
    ///
    /// The core reads no files: a runtime crate's `load_config` (what
    /// `Listener::connect(url)` uses) reads libpq's `PGSERVICEFILE` or
    /// `~/.pg_service.conf`, then `PGSYSCONFDIR/pg_service.conf`.
    pub fn parse_with_services<K, V>(
        s: &str,
        env: impl IntoIterator<Item = (K, V)>,
        files: &[ServiceFile],
    ) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let explicit = split_connection_string(s)?;
        let env = EnvDefaults::collect(env);
        let service_name = explicit
            .iter()
            .rev()
            .find(|(key, _)| key == "service")
            .map(|(_, value)| value.as_str())
            .or_else(|| {
                env.params
                    .iter()
                    .find(|(_, name, _)| *name == "service")
                    .map(|(_, _, value)| value.as_str())
            })
            .filter(|name| !name.is_empty());
        let service = match service_name {
            None => &[][..],
            Some(name) => files
                .iter()
                .find_map(|file| file.service(name))
                .ok_or_else(|| ConfigError::ServiceNotFound {
                    name: name.to_owned(),
                })?,
        };
        let in_string = |name: &str| explicit.iter().any(|(key, _)| key == name);
        let in_service = |name: &str| service.iter().any(|(key, _)| key == name);
        let mut params = Params::default();
        for (variable, name, value) in &env.params {
            if in_string(name) || in_service(name) {
                continue;
            }
            params
                .apply(name, value)
                .map_err(|source| ConfigError::Environment {
                    variable: (*variable).to_owned(),
                    source: Box::new(source),
                })?;
        }
        params.os_user = env.os_user;
        for (name, value) in service.iter().filter(|(name, _)| !in_string(name)) {
            let error = |source| ConfigError::Service {
                name: service_name.unwrap_or_default().to_owned(),
                source: Box::new(source),
            };
            if name == "service" {
                return Err(error(ConfigError::invalid(
                    name,
                    value,
                    "a service cannot name another service",
                )));
            }
            params.apply(name, value).map_err(error)?;
        }
        for (name, value) in &explicit {
            params.apply(name, value)?;
        }
        params.finish()
    }

    /// Builds a configuration from the PG* variables in `env` alone.
    pub fn from_env<K, V>(env: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::parse_with_env("", env)
    }

    /// Starts a configuration in code, every setting at its default.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::new()
    }

    /// A builder holding this configuration, to change some settings.
    pub fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder {
            hosts: self.hosts.clone(),
            user: Some(self.user.clone()),
            password: self.password.clone(),
            dbname: Some(self.dbname.clone()),
            application_name: self.application_name.clone(),
            options: self.options.clone(),
            ssl_mode: Some(self.ssl_mode),
            ssl_root_cert: self.ssl_root_cert.clone(),
            ssl_cert: self.ssl_cert.clone(),
            passfile: self.passfile.clone(),
            password_file: self.password_file.clone(),
            ssl_key: self.ssl_key.clone(),
            connect_timeout: self.connect_timeout,
            keepalive: self.keepalive.clone(),
            target_session_attrs: self.target_session_attrs,
            transaction_pooler: self.transaction_pooler,
            ping_interval: Some(self.ping_interval),
            ping_timeout: Some(self.ping_timeout),
            backoff_min: Some(self.backoff_min),
            backoff_max: Some(self.backoff_max),
            backoff_reset_after: Some(self.backoff_reset_after),
            publish_timeout: Some(self.publish_timeout),
            listen_check_every: self.listen_check_every,
            group_commit: Some(self.group_commit),
            queue_capacity: Some(self.subscribe_options.capacity_items()),
            overflow_policy: self.subscribe_options.overflow_policy(),
            stall_limit: Some(self.subscribe_options.stall_limit_duration()),
            server_queue_limit: Some(self.server_queue_limit_ppm),
            max_frame_len: Some(self.max_frame_len),
            seed: self.seed,
        }
    }

    /// The servers to try, in order; never empty.
    pub fn hosts(&self) -> &[HostSpec] {
        &self.hosts
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(Password::as_str)
    }

    /// The password for a connection to `host`: the configured one, else
    /// the first matching entry of the password file a driver handed in
    /// ([`ConfigBuilder::password_file`]).
    pub fn password_for(&self, host: &HostSpec) -> Option<&str> {
        self.password().or_else(|| {
            self.password_file
                .as_ref()?
                .lookup(host, &self.dbname, &self.user)
        })
    }

    /// Where the password file is, if `passfile` (or `PGPASSFILE`) set it;
    /// libpq's default is `~/.pgpass`.
    pub fn passfile(&self) -> Option<&Path> {
        self.passfile.as_deref()
    }

    /// The password file's entries, if a driver handed them in.
    pub fn password_file(&self) -> Option<&PassFile> {
        self.password_file.as_ref()
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The `application_name` to send at startup, if one was given. The
    /// session shows [`DEFAULT_APPLICATION_NAME`] when none was.
    pub fn application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// libpq's `options` to send at startup (`-c name=value` settings), if any.
    pub fn options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    /// Whether and how to use TLS.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The file of CA certificates to trust (`sslrootcert=<path>`).
    ///
    /// `None` either when [`ssl_system_roots`](Self::ssl_system_roots) is
    /// true or when nothing was set, which leaves the choice to the driver
    /// (libpq reads `~/.postgresql/root.crt`).
    pub fn ssl_root_cert(&self) -> Option<&Path> {
        self.ssl_root_cert.as_ref().and_then(SslRootCert::path)
    }

    /// The `sslrootcert` setting as given: a file, the system roots, or
    /// `None` when nothing was configured.
    pub fn ssl_root_cert_setting(&self) -> Option<&SslRootCert> {
        self.ssl_root_cert.as_ref()
    }

    /// The client certificate file (`sslcert`), if one was set; the driver
    /// then looks for libpq's `~/.postgresql/postgresql.crt`.
    pub fn ssl_cert(&self) -> Option<&Path> {
        self.ssl_cert.as_deref()
    }

    /// The client key file (`sslkey`), if one was set; the driver then
    /// looks for libpq's `~/.postgresql/postgresql.key`.
    pub fn ssl_key(&self) -> Option<&Path> {
        self.ssl_key.as_deref()
    }

    /// Whether to trust the TLS implementation's own roots
    /// (`sslrootcert=system`, which implies `sslmode=verify-full`).
    pub fn ssl_system_roots(&self) -> bool {
        self.ssl_root_cert == Some(SslRootCert::System)
    }

    /// How long one connection attempt may take; whole seconds, at least
    /// two, as in libpq.
    ///
    /// It bounds more than libpq's: the driver's connect to each address
    /// ([`ConnectTarget::connect_timeout`](crate::bus::ConnectTarget::connect_timeout)),
    /// and, as one budget, everything from the bus's `Connect` to the end
    /// of the startup (transport, TLS, authentication, startup), then the
    /// LISTENs of the new connection with a budget of their own. `None`
    /// leaves the per-address connect unbounded and gives the attempt
    /// `ping_interval + ping_timeout` (15 s by default); see "Timeouts" on
    /// [`Bus`](crate::bus::Bus).
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// TCP keepalive settings for the driver's socket.
    pub fn keepalive(&self) -> &Keepalive {
        &self.keepalive
    }

    /// Which servers are acceptable among several hosts.
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs
    }

    /// How often the bus pings while connected.
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    /// How long a ping may go unanswered before the connection is replaced.
    pub fn ping_timeout(&self) -> Duration {
        self.ping_timeout
    }

    /// The shortest wait between reconnect attempts after the first.
    pub fn backoff_min(&self) -> Duration {
        self.backoff_min
    }

    /// The longest wait between reconnect attempts; never below
    /// [`backoff_min`](Self::backoff_min).
    pub fn backoff_max(&self) -> Duration {
        self.backoff_max
    }

    /// How long a connection must stay listening to count as proved when
    /// no ping answer can be read.
    ///
    /// The backoff starts over (the next retry is immediate) once a
    /// connection has proved the server works, normally by answering its
    /// first health ping, one round trip after it comes up. This is the
    /// fallback for a connection whose answer sits unread because reading is
    /// paused for a `Backpressure` subscriber. It used to be the only way the
    /// backoff reset, which let a backend terminated more often than this
    /// drive the backoff up although every reconnect succeeded.
    pub fn backoff_reset_after(&self) -> Duration {
        self.backoff_reset_after
    }

    /// How long a publish waits for a connection before it fails.
    pub fn publish_timeout(&self) -> Duration {
        self.publish_timeout
    }

    /// Whether publishes that arrive while another is in flight share the
    /// next transaction (group commit; see [`MAX_GROUP`](crate::bus::MAX_GROUP)).
    pub fn group_commit(&self) -> bool {
        self.group_commit
    }

    /// What the listener does once it detects a transaction-pooling proxy
    /// (see [`TransactionPooler`]).
    pub fn transaction_pooler(&self) -> TransactionPooler {
        self.transaction_pooler
    }

    /// Compare `pg_listening_channels()` with the registry every this many
    /// pings; 0 means never.
    pub fn listen_check_every(&self) -> u32 {
        self.listen_check_every
    }

    /// The queue capacity and overflow policy a subscriber gets when it asks
    /// for none.
    pub fn default_subscribe_options(&self) -> SubscribeOptions {
        self.subscribe_options.clone()
    }

    /// The server guard's threshold, as a fraction of the server's
    /// notification queue: while reading is paused and
    /// `pg_notification_queue_usage()` is above it, full
    /// [`Absorb`](crate::OverflowPolicy::Absorb) subscribers stop holding
    /// the connection.
    pub fn server_queue_limit(&self) -> f64 {
        f64::from(self.server_queue_limit_ppm) / 1_000_000.0
    }

    /// [`server_queue_limit`](Self::server_queue_limit) in parts per million.
    pub fn server_queue_limit_ppm(&self) -> u32 {
        self.server_queue_limit_ppm
    }

    /// The largest server message accepted, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The seed of the backoff jitter (0 unless set).
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }

    /// The seed if one was set, so a driver can tell "0 by default" (and
    /// draw its own) from "0 on purpose".
    pub fn explicit_seed(&self) -> Option<u64> {
        self.seed
    }

    /// Writes this configuration as a `key=value` connection string,
    /// password included, that parses back to an equal `Config`.
    ///
    /// Hosts, ports, user and database are always written, other settings
    /// only when they differ from their defaults. Treat the result as a
    /// secret.
    pub fn to_conninfo(&self) -> String {
        render::conninfo(self, false)
    }
}

/// Splits either form of connection string into its pairs.
fn split_connection_string(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let start = s.len() - s.trim_start().len();
    let text = &s[start..];
    if url::scheme_len(text).is_some() {
        return url::parse(text.trim_end(), start);
    }
    let first_word = text
        .find(|c: char| keyvalue::is_space(c) || c == '=')
        .map_or(text, |end| &text[..end]);
    if let Some((scheme, _)) = first_word.split_once("://") {
        return Err(ConfigError::UnsupportedScheme {
            scheme: scheme.to_owned(),
        });
    }
    keyvalue::parse(s)
}

impl Default for Config {
    /// `localhost:5432`, user `postgres`, every other setting at its default.
    fn default() -> Self {
        Self {
            hosts: vec![HostSpec::tcp(DEFAULT_HOST, DEFAULT_PORT)],
            user: DEFAULT_USER.to_owned(),
            password: None,
            dbname: DEFAULT_USER.to_owned(),
            application_name: None,
            options: None,
            ssl_mode: SslMode::default(),
            ssl_root_cert: None,
            ssl_cert: None,
            ssl_key: None,
            passfile: None,
            password_file: None,
            connect_timeout: None,
            keepalive: Keepalive::default(),
            target_session_attrs: TargetSessionAttrs::default(),
            transaction_pooler: TransactionPooler::default(),
            ping_interval: defaults::PING_INTERVAL,
            ping_timeout: defaults::PING_TIMEOUT,
            backoff_min: defaults::BACKOFF_MIN,
            backoff_max: defaults::BACKOFF_MAX,
            backoff_reset_after: defaults::BACKOFF_RESET_AFTER,
            publish_timeout: defaults::PUBLISH_TIMEOUT,
            listen_check_every: 0,
            group_commit: true,
            subscribe_options: SubscribeOptions::default(),
            server_queue_limit_ppm: defaults::SERVER_QUEUE_LIMIT_PPM,
            max_frame_len: defaults::MAX_FRAME_LEN,
            seed: None,
        }
    }
}

impl FromStr for Config {
    type Err = ConfigError;

    /// Same as [`Config::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Config {
    /// The connection string of [`to_conninfo`](Config::to_conninfo) with the
    /// password replaced by `<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render::conninfo(self, true))
    }
}
