//! Spawning server processes so none outlives the test process, and collecting their log.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::os_user::OsUser;

/// What the postmaster logs once it accepts connections (`lc_messages` is `C`).
pub(crate) const READY_LINE: &str = "database system is ready to accept connections";

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` as `run_as`, from a thread that lives as long as the process, with a
/// parent-death signal set.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process: a
/// server started on a short-lived thread (a `spawn_blocking` worker, a test thread handing the
/// server elsewhere) would be killed early. Forking from one long-lived thread makes the signal
/// mean "the test process is gone".
pub(crate) fn spawn(mut cmd: Command, run_as: Option<OsUser>) -> io::Result<Child> {
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe system calls and does not allocate.
    // std runs it after setgid/setuid (which clear the parent-death signal), right before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGQUIT as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then no signal would come.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply, response) = mpsc::channel();
    spawner()
        .send((cmd, reply))
        .map_err(|_| io::Error::other("the testkit's spawner thread is gone"))?;
    response
        .recv()
        .map_err(|_| io::Error::other("the testkit's spawner thread is gone"))?
}

fn spawner() -> &'static mpsc::Sender<SpawnJob> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<SpawnJob>();
        thread::Builder::new()
            .name("pgnotify-testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in queue {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("the testkit could not start its spawner thread");
        jobs
    })
}

/// Whether a process with this pid exists (zombies included).
pub(crate) fn is_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Everything the server wrote to stderr, across restarts, and which log pipes are still open.
#[derive(Debug, Default)]
pub(crate) struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct LogState {
    text: String,
    /// Generations (one per process start) whose stderr pipe is still open.
    open: Vec<u64>,
    next_generation: u64,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn text(&self) -> String {
        self.lock().text.clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().text.len()
    }

    /// Copies `source` into the log on a thread until every writer has closed it.
    fn pump(self: &Arc<Self>, source: impl Read + Send + 'static) -> u64 {
        let generation = {
            let mut state = self.lock();
            let generation = state.next_generation;
            state.next_generation += 1;
            state.open.push(generation);
            generation
        };
        let log = self.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(source);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                log.lock().text.push_str(&String::from_utf8_lossy(&line));
                log.changed.notify_all();
                line.clear();
            }
            log.lock().open.retain(|&g| g != generation);
            log.changed.notify_all();
        });
        generation
    }

    /// Waits until `done` holds or `deadline` passes; returns whether `done` held.
    fn wait_until(&self, deadline: Instant, mut done: impl FnMut(&LogState) -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// How a start attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    Exited,
    TimedOut,
}

/// A long-running process this process spawned and must reap: a postmaster or a pgbouncer.
#[derive(Debug)]
pub(crate) struct Daemon {
    child: Child,
    log: Arc<Log>,
    generation: u64,
}

impl Daemon {
    /// Spawns `cmd` (with stderr piped) and starts collecting its log.
    pub(crate) fn spawn(cmd: Command, run_as: Option<OsUser>, log: Arc<Log>) -> io::Result<Self> {
        let mut child = spawn(cmd, run_as)?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("the process's stderr was not piped"))?;
        let generation = log.pump(stderr);
        Ok(Self {
            child,
            log,
            generation,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spawns `cmd`, tracked for clean-up, and waits up to `timeout` for `ready_line` in the
    /// log. One that does not get there is stopped with `signal` (within `grace`) and
    /// forgotten; the error is how it failed and what it logged meanwhile.
    pub(crate) fn start(
        cmd: Command,
        run_as: Option<OsUser>,
        log: Arc<Log>,
        ready_line: &str,
        (timeout, signal, grace): (Duration, libc::c_int, Duration),
    ) -> io::Result<Result<Self, (Readiness, String)>> {
        let log_start = log.len();
        let daemon = Self::spawn(cmd, run_as, log.clone())?;
        super::workspace::track(daemon.pid());
        let readiness = daemon.wait_for(log_start, ready_line, timeout);
        if readiness == Readiness::Ready {
            return Ok(Ok(daemon));
        }
        let pid = daemon.pid();
        let _ = daemon.shut_down(signal, grace);
        super::workspace::untrack(pid);
        let written = log.text().get(log_start..).unwrap_or_default().to_owned();
        Ok(Err((readiness, written)))
    }

    /// Waits for `line` to be logged after byte `since` of the log, or for the process to exit.
    fn wait_for(&self, since: usize, line: &str, timeout: Duration) -> Readiness {
        let generation = self.generation;
        let mut outcome = Readiness::TimedOut;
        self.log.wait_until(Instant::now() + timeout, |state| {
            if state
                .text
                .get(since..)
                .is_some_and(|new| new.contains(line))
            {
                outcome = Readiness::Ready;
            } else if !state.open.contains(&generation) {
                outcome = Readiness::Exited;
            } else {
                return false;
            }
            true
        });
        outcome
    }

    /// Sends `signal` to the process.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Sends `signal`, waits until the process and all its children are gone (their shared
    /// stderr pipe closes), escalating to SIGKILL after `grace`, and reaps it.
    pub(crate) fn shut_down(
        mut self,
        signal: libc::c_int,
        grace: Duration,
    ) -> io::Result<ExitStatus> {
        self.signal(signal);
        let generation = self.generation;
        let closed = self.log.wait_until(Instant::now() + grace, |state| {
            !state.open.contains(&generation)
        });
        if !closed {
            self.signal(libc::SIGKILL);
        }
        self.child.wait()
    }
}
