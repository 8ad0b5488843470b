//! A real, throwaway PostgreSQL server per test.
//!
//! [`TestServer`] runs the machine's own PostgreSQL binaries (see [`BINDIR_ENV`] for how they
//! are found) in a private scratch directory: on a free loopback port and a private unix-socket
//! directory, as the unprivileged [`SERVER_OS_USER`] when the tests run as root, with the
//! authentication method and users a test asks for. It can terminate backends, restart fast or
//! immediately, and stop for a while and start again on the same port.
//!
//! No server outlives the test run: dropping a [`TestServer`] (also while unwinding from a
//! panic) shuts it down and removes its directory; a server leaked by the test is stopped when
//! the process exits; a server whose test process was killed gets `SIGQUIT` from the kernel
//! (`PR_SET_PDEATHSIG`), and its directory is removed by the next test process.
//!
//! The binaries must be PostgreSQL [`MIN_SUPPORTED_MAJOR`] or newer; [`TestServer::version`]
//! says which one runs, for tests that need a newer server's feature.
//!
//! `initdb` runs once per process, into a template that each server copies, so a server of its
//! own per test costs a directory copy and a postmaster start (about 60 ms; the
//! test kit's `throwaway-postgres --measure 10` binary prints the figure). Scratch directories live in
//! `$TMPDIR` when it is set, else in `/dev/shm` when it has 1 GiB free, else in `/tmp`; the
//! server user must be able to reach them.

mod binaries;
pub(crate) mod config;
mod error;
pub(crate) mod os_user;
pub(crate) mod process;
pub(crate) mod psql;
mod version;
pub(crate) mod workspace;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use binaries::BINDIR_ENV;
pub use config::AuthMethod;
pub use error::{Error, Result};
pub use os_user::SERVER_OS_USER;
pub use version::{MIN_SUPPORTED_MAJOR, ServerVersion};

use config::{ServerConfig, percent_encode, quote_conninfo, quote_identifier, quote_literal};
use os_user::give;
use process::{Daemon, Log, Readiness};
use workspace::{SETTINGS_FILE, Workspace};

/// The superuser every server has, used for administration over the unix socket.
pub const SUPERUSER: &str = "postgres";

/// The superuser's password, for tests that connect as the superuser over TCP.
pub const SUPERUSER_PASSWORD: &str = "postgres";

/// The database every URL and connection string names.
pub const DATABASE: &str = "postgres";

/// How long a stop waits for the server to exit before killing it.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How often the first start picks another port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// The version of the PostgreSQL binaries every [`TestServer`] of this process runs, without
/// starting one: for a test that must skip on an older server before it configures one with a
/// setting that server would refuse.
///
/// ```no_run
/// use pgnotify_throwaway::server::{self, TestServer};
///
/// if server::version()?.skip_unless(14, "idle_session_timeout") {
///     return Ok(());
/// }
/// let server = TestServer::builder().setting("idle_session_timeout", "1s").start()?;
/// # Ok::<(), pgnotify_throwaway::server::Error>(())
/// ```
pub fn version() -> Result<ServerVersion> {
    Ok(Workspace::get()?.binaries.version.clone())
}

/// How a server is shut down (for [`TestServer::stop_with`] and [`TestServer::restart`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownMode {
    /// `SIGINT`: terminate every session, checkpoint, exit. Clients see
    /// "terminating connection due to administrator command".
    Fast,
    /// `SIGQUIT`: kill every process at once, like a crash; the next start runs crash recovery.
    Immediate,
}

/// The mode of a restart; the same modes as a shutdown.
pub type RestartMode = ShutdownMode;

impl ShutdownMode {
    fn signal(self) -> libc::c_int {
        match self {
            Self::Fast => libc::SIGINT,
            Self::Immediate => libc::SIGQUIT,
        }
    }
}

/// Configuration for a [`TestServer`]: authentication, users, settings, TLS.
///
/// ```no_run
/// use pgnotify_throwaway::server::{AuthMethod, TestServer};
///
/// let server = TestServer::builder()
///     .auth(AuthMethod::ScramSha256)
///     .user("alice", "secret")
///     .setting("idle_session_timeout", "1s")
///     .start()?;
/// assert_eq!(server.execute("SHOW idle_session_timeout")?, "1s");
/// println!("connect with {}", server.url()); // as alice
/// # Ok::<(), pgnotify_throwaway::server::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestServerBuilder {
    config: ServerConfig,
    users: Vec<(String, String)>,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    start_timeout: Duration,
}

impl TestServerBuilder {
    fn new() -> Self {
        Self {
            config: ServerConfig {
                auth: AuthMethod::Trust,
                settings: Vec::new(),
                hba_lines: Vec::new(),
                ssl: false,
            },
            users: Vec::new(),
            tls: None,
            start_timeout: Duration::from_secs(60),
        }
    }

    /// Sets how clients authenticate, over TCP and the unix socket (default: trust).
    ///
    /// Stored passwords are hashed to match (`password_encryption`).
    pub fn auth(mut self, method: AuthMethod) -> Self {
        self.config.auth = method;
        self
    }

    /// Adds a login role with this password. The first user added is the one
    /// [`url`](TestServer::url) and [`conninfo`](TestServer::conninfo) name.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// Sets a server setting (`postgresql.conf` syntax for the value, without quotes).
    ///
    /// Applied after the testkit's own settings, so it may override them; `logging_collector`
    /// must stay off, since the testkit reads the server's readiness from its stderr.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.settings.push((name.into(), value.into()));
        self
    }

    /// Adds a `pg_hba.conf` line ahead of the default ones (which let everyone in with the
    /// [`auth`](Self::auth) method); the first matching line wins.
    ///
    /// For example `hostssl all all 127.0.0.1/32 scram-sha-256` with
    /// `hostnossl all all 127.0.0.1/32 reject` to demand TLS.
    pub fn hba_line(mut self, line: impl Into<String>) -> Self {
        self.config.hba_lines.push(line.into());
        self
    }

    /// Turns TLS on with this PEM certificate (chain) and PEM private key.
    pub fn ssl(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self.config.ssl = true;
        self
    }

    /// Sets how long a start may take before it fails (default: 60 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Creates the server's directory, starts it and creates its users.
    pub fn start(self) -> Result<TestServer> {
        let workspace = Workspace::get()?;
        let psql = workspace.binaries.psql()?;
        let dir = workspace.server_dir()?;
        let mut users = vec![(SUPERUSER.to_owned(), SUPERUSER_PASSWORD.to_owned())];
        users.extend(self.users);
        // From here on, dropping `server` removes the directory whatever fails.
        let mut server = TestServer {
            data_dir: dir.join("data"),
            socket_dir: dir.join("socket"),
            dir,
            workspace,
            psql,
            port: 0,
            users,
            start_timeout: self.start_timeout,
            log: Arc::default(),
            postmaster: Mutex::new(None),
        };
        server.prepare(&self.config, self.tls.as_ref())?;
        server.first_start(&self.config)?;
        server.create_users()?;
        Ok(server)
    }
}

/// A throwaway PostgreSQL server, shut down and deleted on drop.
///
/// Every method takes `&self`, so a server can be shared (`Arc<TestServer>`) between a test
/// and the tasks it spawns. Administrative methods ([`execute`](Self::execute),
/// [`terminate_backends`](Self::terminate_backends)) run `psql` as the superuser over the
/// unix socket; tests connect over TCP with [`url`](Self::url) or [`conninfo`](Self::conninfo).
///
/// Dropping it shuts the server down immediately (`SIGQUIT`), waits until every server process
/// is gone and removes the data directory; this also happens while a panicking test unwinds.
#[derive(Debug)]
pub struct TestServer {
    workspace: Arc<Workspace>,
    psql: PathBuf,
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    /// The superuser first, then the test's users in the order they were added.
    users: Vec<(String, String)>,
    start_timeout: Duration,
    log: Arc<Log>,
    postmaster: Mutex<Option<Daemon>>,
}

impl TestServer {
    /// A builder for a server with a chosen authentication method, users and settings.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::new()
    }

    /// Starts a server with default settings: trust authentication, only the superuser.
    pub fn new() -> Result<Self> {
        Self::builder().start()
    }

    /// The version of the server binaries this server runs.
    ///
    /// Every server of a test process runs the same binaries (see [`BINDIR_ENV`]); a test that
    /// needs a newer server than the oldest supported asks
    /// [`skip_unless`](ServerVersion::skip_unless).
    pub fn version(&self) -> &ServerVersion {
        &self.workspace.binaries.version
    }

    /// The loopback TCP port the server listens on; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's TCP address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The private directory holding the server's unix socket (`.s.PGSQL.<port>`).
    pub fn unix_socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server's data directory (removed on drop).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The name of the default user: the first one added to the builder, or the superuser.
    pub fn user(&self) -> &str {
        let (name, _) = self.default_user();
        name
    }

    /// The password of the default user (see [`user`](Self::user)).
    pub fn password(&self) -> &str {
        let (_, password) = self.default_user();
        password
    }

    /// A URL for the default user over TCP:
    /// `postgres://user:password@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        self.url_as(self.user())
    }

    /// A URL for `user` over TCP, with its password when the server knows it.
    pub fn url_as(&self, user: &str) -> String {
        let credentials = match self.password_of(user) {
            Some(password) => format!("{}:{}", percent_encode(user), percent_encode(password)),
            None => percent_encode(user),
        };
        format!(
            "postgres://{credentials}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// Every login role with its password: the superuser first, then the test's users.
    pub(crate) fn users(&self) -> &[(String, String)] {
        &self.users
    }

    pub(crate) fn workspace(&self) -> &Arc<Workspace> {
        &self.workspace
    }

    /// A key=value connection string for the default user over TCP.
    pub fn conninfo(&self) -> String {
        self.conninfo_as(self.user())
    }

    /// A key=value connection string for `user` over TCP, with its password when known.
    pub fn conninfo_as(&self, user: &str) -> String {
        let mut conninfo = format!(
            "host=127.0.0.1 port={} user={} dbname={DATABASE}",
            self.port,
            quote_conninfo(user)
        );
        if let Some(password) = self.password_of(user) {
            conninfo.push_str(" password=");
            conninfo.push_str(&quote_conninfo(password));
        }
        conninfo
    }

    /// The postmaster's process id, or `None` while the server is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.lock_postmaster().as_ref().map(Daemon::pid)
    }

    /// Whether the server is running (not stopped with [`stop`](Self::stop)).
    pub fn is_running(&self) -> bool {
        self.lock_postmaster().is_some()
    }

    /// Everything the server has logged since it was created, across restarts.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Runs SQL as the superuser and returns its output: rows one per line, columns separated
    /// by `|`, no headers, with the final newline trimmed.
    ///
    /// The text may hold several statements; each runs in its own transaction and the first
    /// error stops it and is returned.
    pub fn execute(&self, sql: &str) -> Result<String> {
        let output = psql::run(self.admin_command()?, sql)?;
        let mut text = String::from_utf8_lossy(&output).into_owned();
        if text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    /// Runs one query as the superuser and returns its rows as columns of text (NULL reads as
    /// an empty string).
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let mut cmd = self.admin_command()?;
        cmd.args(["--field-separator=\x1f", "--record-separator-zero"]);
        let output = psql::run(cmd, sql)?;
        let text = String::from_utf8_lossy(&output);
        Ok(text
            .split('\0')
            .filter(|record| !record.is_empty() && *record != "\n")
            .map(|record| record.split('\x1f').map(str::to_owned).collect())
            .collect())
    }

    /// Terminates (`pg_terminate_backend`) every session whose `application_name` is `name`,
    /// and returns how many were signalled. Their clients see the connection close with
    /// "terminating connection due to administrator command"; this does not wait for it.
    pub fn terminate_backends(&self, application_name: &str) -> Result<usize> {
        let sql = format!(
            "WITH victims AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE application_name = {} AND pid <> pg_backend_pid()) \
             SELECT count(*) FROM victims WHERE pg_terminate_backend(pid)",
            quote_literal(application_name)
        );
        let count = self.execute(&sql)?;
        count.trim().parse().map_err(|_| Error::Sql {
            sql,
            message: format!("expected a count, got {count:?}"),
        })
    }

    /// Stops the server with a fast shutdown; [`start`](Self::start) brings it back on the
    /// same port. Stopping a stopped server does nothing.
    pub fn stop(&self) -> Result<()> {
        self.stop_with(ShutdownMode::Fast)
    }

    /// Stops the server with the given shutdown mode, returning once every server process
    /// has exited.
    pub fn stop_with(&self, mode: ShutdownMode) -> Result<()> {
        let postmaster = self.lock_postmaster().take();
        if let Some(postmaster) = postmaster {
            let pid = postmaster.pid();
            let stopped = postmaster.shut_down(mode.signal(), STOP_GRACE);
            workspace::untrack(pid);
            stopped.map_err(|e| Error::io("wait for the postmaster to exit", e))?;
        }
        Ok(())
    }

    /// Starts a stopped server again, on the same port and socket directory, and returns once
    /// it accepts connections.
    pub fn start(&self) -> Result<()> {
        let mut slot = self.lock_postmaster();
        if slot.is_some() {
            return Err(Error::AlreadyRunning);
        }
        *slot = Some(self.spawn_postmaster()?);
        Ok(())
    }

    /// Stops the server with `mode` and starts it again on the same port.
    pub fn restart(&self, mode: RestartMode) -> Result<()> {
        self.stop_with(mode)?;
        self.start()
    }

    /// A `psql` command connecting to this server over TCP as `user` (with its password in
    /// `PGPASSWORD` when known), printing bare unaligned rows and stopping at the first error.
    ///
    /// Add arguments such as `-c "SELECT 1"`; the connection string is the last argument
    /// already given, so add options before any SQL file.
    pub fn psql_command(&self, user: &str) -> Command {
        let mut cmd = psql::base_command(&self.psql);
        let conninfo = format!(
            "host=127.0.0.1 port={} user={} dbname={DATABASE}",
            self.port,
            quote_conninfo(user)
        );
        cmd.arg("--dbname").arg(conninfo);
        if let Some(password) = self.password_of(user) {
            cmd.env("PGPASSWORD", password);
        }
        cmd
    }

    fn default_user(&self) -> &(String, String) {
        self.users.get(1).unwrap_or(&self.users[0])
    }

    fn password_of(&self, user: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, password)| password.as_str())
    }

    fn lock_postmaster(&self) -> MutexGuard<'_, Option<Daemon>> {
        self.postmaster.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admin_command(&self) -> Result<Command> {
        if !self.is_running() {
            return Err(Error::NotRunning);
        }
        let mut cmd = psql::base_command(&self.psql);
        cmd.arg("--host")
            .arg(&self.socket_dir)
            .args(["--port", &self.port.to_string()])
            .args(["--username", SUPERUSER, "--dbname", DATABASE]);
        Ok(cmd)
    }

    /// Copies the template cluster and writes the configuration that does not name the port.
    fn prepare(&self, config: &ServerConfig, tls: Option<&(Vec<u8>, Vec<u8>)>) -> Result<()> {
        let run_as = self.workspace.run_as;
        os_user::copy_tree(&self.workspace.template, &self.data_dir, run_as)?;
        os_user::create_private_dir(&self.socket_dir, 0o700, run_as)?;
        self.write_data_file("pg_hba.conf", config.hba_file().as_bytes(), 0o600)?;
        if let Some((cert, key)) = tls {
            self.write_data_file("server.crt", cert, 0o644)?;
            // PostgreSQL refuses a key that others can read.
            self.write_data_file("server.key", key, 0o600)?;
        }
        Ok(())
    }

    fn write_data_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<()> {
        let path = self.data_dir.join(name);
        let context = |e| Error::io(format!("write {}", path.display()), e);
        fs::write(&path, contents).map_err(context)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(context)?;
        give(&path, self.workspace.run_as)
    }

    /// Starts the server the first time, on a free port; if another process takes the port
    /// between choosing and binding it, tries another.
    fn first_start(&mut self, config: &ServerConfig) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port()?;
            let settings = config.settings_file(self.port, &self.socket_dir);
            self.write_data_file(SETTINGS_FILE, settings.as_bytes(), 0o600)?;
            match self.start() {
                Err(Error::StartFailed { log })
                    if attempt < PORT_ATTEMPTS && log.contains("could not bind") => {}
                result => return result,
            }
        }
    }

    fn create_users(&self) -> Result<()> {
        let mut sql = String::new();
        for (i, (name, password)) in self.users.iter().enumerate() {
            let verb = if i == 0 { "ALTER" } else { "CREATE" };
            sql.push_str(&format!(
                "{verb} ROLE {} LOGIN PASSWORD {};\n",
                quote_identifier(name),
                quote_literal(password)
            ));
        }
        self.execute(&sql).map(drop)
    }

    fn spawn_postmaster(&self) -> Result<Daemon> {
        let mut cmd = Command::new(self.workspace.binaries.postgres());
        cmd.arg("-D")
            .arg(&self.data_dir)
            .current_dir(&self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let stop = (self.start_timeout, libc::SIGQUIT, STOP_GRACE);
        let started = Daemon::start(
            cmd,
            self.workspace.run_as,
            self.log.clone(),
            process::READY_LINE,
            stop,
        )
        .map_err(|e| Error::io("start postgres", e))?;
        let (readiness, log) = match started {
            Ok(postmaster) => return Ok(postmaster),
            Err(failed) => failed,
        };
        Err(match readiness {
            Readiness::TimedOut => Error::StartTimedOut { log },
            _ => Error::StartFailed { log },
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop_with(ShutdownMode::Immediate);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("bind a loopback port", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("read a loopback port", e))?;
    Ok(addr.port())
}
