//! A real, throwaway PgBouncer in front of a [`TestServer`].
//!
//! [`TestPgBouncer`] runs the machine's `pgbouncer` (Debian's package; see [`PGBOUNCER_ENV`]
//! for how it is found) as the same unprivileged user as the server, on a free loopback port,
//! in [`PoolMode::Session`] or [`PoolMode::Transaction`], with every user the server knows in
//! its auth file (so clients authenticate to PgBouncer with the server's passwords, and
//! PgBouncer logs in to the server with them). It runs in the foreground with its log
//! collected, and is stopped and its directory removed on drop, like a server.
//!
//! What PgBouncer does to a client that matters to pgnotify: the `BackendKeyData` it sends
//! carries a process id it made up, not the server backend's; in session mode a client keeps
//! one server backend until it disconnects, and a backend that dies takes its client's
//! connection with it; in transaction mode every transaction may run on another backend, so
//! a LISTEN and the NOTIFY meant for it need not meet.
//!
//! pgnotify's startup packet holds only `user`, `database`, `application_name` and
//! `client_encoding`, which PgBouncer tracks itself; `extra_float_digits` (sent by psql and
//! JDBC) is ignored too, so other clients get through.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::server::config::{percent_encode, quote_conninfo};
use crate::server::process::{Daemon, Log};
use crate::server::workspace::{self, Workspace};
use crate::server::{AuthMethod, DATABASE, Error, Result, TestServer, free_port};

/// The environment variable that, when set, names the `pgbouncer` executable to run.
pub const PGBOUNCER_ENV: &str = "PGNOTIFY_PGBOUNCER";

/// What PgBouncer logs once it accepts connections.
const READY_LINE: &str = "process up";

/// How long a start may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stop waits for PgBouncer to exit before killing it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often a start picks another port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// When PgBouncer gives a server connection back to the pool (`pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolMode {
    /// When the client disconnects: a client keeps one server backend for its whole session.
    Session,
    /// After each transaction: a client's next transaction may run on another backend.
    Transaction,
}

impl PoolMode {
    /// The mode's name in `pgbouncer.ini`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
        }
    }
}

/// Where `pgbouncer` is: `$PGNOTIFY_PGBOUNCER`, else the first `pgbouncer` in `$PATH`, else
/// `/usr/sbin/pgbouncer` (Debian's, not in an ordinary user's `$PATH`).
pub fn pgbouncer_binary() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os(PGBOUNCER_ENV) {
        candidates.push(PathBuf::from(path));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("pgbouncer")));
    }
    candidates.push(PathBuf::from("/usr/sbin/pgbouncer"));
    match candidates.iter().find(|path| path.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(Error::PgBouncerNotFound {
            searched: candidates,
        }),
    }
}

/// For a test that needs PgBouncer: `true` when it is installed. When it is not, outside CI
/// (`$CI` unset) the test is skipped with a printed reason ([`skip`](crate::skip)) and this
/// returns `false`; under CI, whose `.ci/run` installs it, this panics instead, so a missing
/// pooler cannot pass as a green run.
pub fn pgbouncer_or_skip() -> bool {
    let error = match pgbouncer_binary() {
        Ok(_) => return true,
        Err(error) => error,
    };
    if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
        panic!("{error} (CI is set, and .ci/run installs PgBouncer, so this is a failure)");
    }
    crate::skip(error);
    false
}

/// Configuration of a [`TestPgBouncer`]: pool mode, client authentication, extra settings.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestPgBouncerBuilder<'a> {
    server: &'a TestServer,
    mode: PoolMode,
    auth: AuthMethod,
    settings: Vec<(String, String)>,
}

impl<'a> TestPgBouncerBuilder<'a> {
    /// Sets when server connections go back to the pool (default: session).
    pub fn pool_mode(mut self, mode: PoolMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets how clients authenticate to PgBouncer (default: SCRAM-SHA-256). PgBouncer logs in
    /// to the server with whatever the server asks for.
    pub fn auth(mut self, method: AuthMethod) -> Self {
        self.auth = method;
        self
    }

    /// Sets a `[pgbouncer]` setting, after (so over) the testkit's own.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Writes the configuration and starts PgBouncer, returning once it accepts connections.
    pub fn start(self) -> Result<TestPgBouncer> {
        let binary = pgbouncer_binary()?;
        let workspace = self.server.workspace().clone();
        let dir = workspace.server_dir()?;
        let mut pooler = TestPgBouncer {
            binary,
            workspace,
            config_file: dir.join("pgbouncer.ini"),
            dir,
            port: 0,
            mode: self.mode,
            user: self.server.user().to_owned(),
            password: self.server.password().to_owned(),
            log: Arc::default(),
            process: Mutex::new(None),
        };
        pooler.write_file("userlist.txt", &userlist(self.server.users()))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            pooler.port = free_port()?;
            let ini = self.ini(&pooler.dir, pooler.port);
            pooler.write_file("pgbouncer.ini", &ini)?;
            match pooler.spawn() {
                Err(Error::PgBouncerStartFailed { log })
                    if attempt < PORT_ATTEMPTS && log.contains("Address already in use") => {}
                Err(error) => return Err(error),
                Ok(process) => {
                    *pooler.lock_process() = Some(process);
                    return Ok(pooler);
                }
            }
        }
    }

    fn ini(&self, dir: &Path, port: u16) -> String {
        let auth = match self.auth {
            AuthMethod::Trust => "trust",
            AuthMethod::Password => "plain",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
        };
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addr", "127.0.0.1".into()),
            ("listen_port", port.to_string()),
            // No unix socket: nothing outside the test's directory, and clients use TCP.
            ("unix_socket_dir", String::new()),
            ("auth_type", auth.into()),
            ("auth_file", dir.join("userlist.txt").display().to_string()),
            ("pool_mode", self.mode.name().into()),
            ("max_client_conn", "500".into()),
            ("default_pool_size", "20".into()),
            // The default waits 15 s after a failed login to the server: too long for a test
            // that restarts it.
            ("server_login_retry", "1".into()),
            ("ignore_startup_parameters", "extra_float_digits".into()),
        ];
        settings.extend(self.settings.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let mut ini = format!(
            "; Written by pgnotify-testkit.\n[databases]\n* = host=127.0.0.1 port={}\n\n[pgbouncer]\n",
            self.server.port()
        );
        for (name, value) in settings {
            ini.push_str(&format!("{name} = {value}\n"));
        }
        ini
    }
}

/// A throwaway PgBouncer in front of a [`TestServer`], stopped and deleted on drop.
///
/// ```no_run
/// use pgnotify_throwaway::pooler::{PoolMode, TestPgBouncer};
/// use pgnotify_throwaway::server::TestServer;
///
/// let server = TestServer::new()?;
/// let pooler = TestPgBouncer::start(&server, PoolMode::Session)?;
/// println!("connect through PgBouncer with {}", pooler.url());
/// # Ok::<(), pgnotify_throwaway::server::Error>(())
/// ```
///
/// The server must outlive it (PgBouncer keeps trying to reach a server that is gone, so
/// nothing breaks, but nothing works either).
#[derive(Debug)]
pub struct TestPgBouncer {
    binary: PathBuf,
    workspace: Arc<Workspace>,
    dir: PathBuf,
    config_file: PathBuf,
    port: u16,
    mode: PoolMode,
    user: String,
    password: String,
    log: Arc<Log>,
    process: Mutex<Option<Daemon>>,
}

impl TestPgBouncer {
    /// A builder for a PgBouncer in front of `server`, with a chosen pool mode, client
    /// authentication and settings.
    pub fn builder(server: &TestServer) -> TestPgBouncerBuilder<'_> {
        TestPgBouncerBuilder {
            server,
            mode: PoolMode::Session,
            auth: AuthMethod::ScramSha256,
            settings: Vec::new(),
        }
    }

    /// Starts PgBouncer in `mode` in front of `server`, clients authenticating with
    /// SCRAM-SHA-256.
    pub fn start(server: &TestServer, mode: PoolMode) -> Result<Self> {
        Self::builder(server).pool_mode(mode).start()
    }

    /// The pool mode it runs in.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// The loopback TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its TCP address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A URL through PgBouncer for the server's default user (the one
    /// [`TestServer::url`] names), with its password.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{DATABASE}",
            percent_encode(&self.user),
            percent_encode(&self.password),
            self.port
        )
    }

    /// The user [`url`](Self::url) names.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// A `psql` command connecting through PgBouncer as the default user (password in
    /// `PGPASSWORD`), printing bare unaligned rows and stopping at the first error; add
    /// arguments such as `-c "SELECT 1"`.
    pub fn psql_command(&self) -> Result<Command> {
        let mut cmd = crate::server::psql::base_command(&self.workspace.binaries.psql()?);
        let conninfo = format!(
            "host=127.0.0.1 port={} user={} dbname={DATABASE}",
            self.port,
            quote_conninfo(&self.user)
        );
        cmd.arg("--dbname")
            .arg(conninfo)
            .env("PGPASSWORD", &self.password);
        Ok(cmd)
    }

    /// Its process id, or `None` once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.lock_process().as_ref().map(Daemon::pid)
    }

    /// Everything it has logged.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// What `pgbouncer --version` says on its first line (`PgBouncer 1.18.0`).
    pub fn version(&self) -> Result<String> {
        let output = Command::new(&self.binary)
            .arg("--version")
            .output()
            .map_err(|e| Error::io(format!("run {} --version", self.binary.display()), e))?;
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text.lines().next().unwrap_or_default().trim().to_owned())
    }

    fn lock_process(&self) -> MutexGuard<'_, Option<Daemon>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_file(&self, name: &str, contents: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        let context = |e| Error::io(format!("write {}", path.display()), e);
        fs::write(&path, contents).map_err(context)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(context)?;
        crate::server::os_user::give(&path, self.workspace.run_as)
    }

    fn spawn(&self) -> Result<Daemon> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg(&self.config_file)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let stop = (START_TIMEOUT, libc::SIGKILL, STOP_GRACE);
        let started = Daemon::start(
            cmd,
            self.workspace.run_as,
            self.log.clone(),
            READY_LINE,
            stop,
        )
        .map_err(|e| Error::io(format!("start {}", self.binary.display()), e))?;
        let (_, log) = match started {
            Ok(process) => return Ok(process),
            Err(failed) => failed,
        };
        Err(Error::PgBouncerStartFailed { log })
    }

    /// Stops PgBouncer at once (`SIGTERM`: every client is disconnected).
    fn stop(&self) -> io::Result<()> {
        let process = self.lock_process().take();
        if let Some(process) = process {
            let pid = process.pid();
            let stopped = process.shut_down(libc::SIGTERM, STOP_GRACE);
            workspace::untrack(pid);
            stopped?;
        }
        Ok(())
    }
}

impl Drop for TestPgBouncer {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The auth file: `"user" "password"` per line, quotes doubled.
fn userlist(users: &[(String, String)]) -> String {
    users
        .iter()
        .map(|(name, password)| {
            format!(
                "\"{}\" \"{}\"\n",
                name.replace('"', "\"\""),
                password.replace('"', "\"\"")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userlist_quotes_names_and_passwords() {
        let users = [
            ("postgres".to_owned(), "postgres".to_owned()),
            ("a\"b".to_owned(), "p w\"".to_owned()),
        ];
        assert_eq!(
            userlist(&users),
            "\"postgres\" \"postgres\"\n\"a\"\"b\" \"p w\"\"\"\n"
        );
    }
}
