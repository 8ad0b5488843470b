//! The per-process scratch directory: one template cluster, one directory per server, and the
//! clean-up that removes it all even when a test run ends abruptly.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::binaries::Binaries;
use super::error::{Error, Result};
use super::os_user::{OsUser, create_private_dir};
use super::process;

/// The prefix of every scratch directory; the process id follows it.
const ROOT_PREFIX: &str = "pgnotify-testkit-";

/// The file in each data directory that the testkit's settings live in.
pub(crate) const SETTINGS_FILE: &str = "pgnotify-testkit.conf";

/// What every server of this process shares: binaries, the OS user, the template cluster.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) binaries: Binaries,
    pub(crate) run_as: Option<OsUser>,
    pub(crate) root: PathBuf,
    pub(crate) template: PathBuf,
    next_server: AtomicU64,
}

/// Postmaster pids still running, for the exit hook; and the scratch root it removes.
static LIVE_POSTMASTERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static ROOT: OnceLock<PathBuf> = OnceLock::new();

impl Workspace {
    /// The workspace of this process, creating it (and running `initdb` once) on first use.
    pub(crate) fn get() -> Result<Arc<Self>> {
        static WORKSPACE: Mutex<Option<Arc<Workspace>>> = Mutex::new(None);
        // Held across initdb on purpose: concurrent first servers wait for the one template.
        let mut slot = WORKSPACE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(workspace) = &*slot {
            return Ok(workspace.clone());
        }
        let workspace = Arc::new(Self::create()?);
        *slot = Some(workspace.clone());
        Ok(workspace)
    }

    fn create() -> Result<Self> {
        let binaries = Binaries::find()?;
        let run_as = OsUser::for_server()?;
        let base = scratch_base();
        for dir in [Path::new(SHM), &std::env::temp_dir(), &base] {
            remove_stale_roots(dir);
        }
        let root = base.join(format!("{ROOT_PREFIX}{}", std::process::id()));
        // A directory with our pid is from an earlier process that had the same pid.
        let _ = fs::remove_dir_all(&root);
        // 0755: the server user must be able to walk into its own directories below.
        create_private_dir(&root, 0o755, None)?;
        ROOT.get_or_init(|| root.clone());
        register_exit_hook();

        let template_dir = root.join("template");
        create_private_dir(&template_dir, 0o700, run_as)?;
        let template = template_dir.join("data");
        initdb(&binaries, run_as, &template)?;
        Ok(Self {
            binaries,
            run_as,
            root,
            template,
            next_server: AtomicU64::new(0),
        })
    }

    /// A fresh, empty directory for one server, owned by the server user.
    pub(crate) fn server_dir(&self) -> Result<PathBuf> {
        let n = self.next_server.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(n.to_string());
        create_private_dir(&dir, 0o700, self.run_as)?;
        Ok(dir)
    }
}

fn initdb(binaries: &Binaries, run_as: Option<OsUser>, data: &Path) -> Result<()> {
    let mut cmd = Command::new(binaries.initdb());
    cmd.arg("--pgdata")
        .arg(data)
        .args([
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        // 1 MB WAL segments instead of 16: a smaller template is faster to copy per server.
        .args(["--no-sync", "--wal-segsize=1"])
        .current_dir(data.parent().unwrap_or(data))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if binaries.version.at_least(14) {
        // Only quieter output, so only where initdb knows the flag (14+).
        cmd.arg("--no-instructions");
    }
    let child = process::spawn(cmd, run_as).map_err(|e| Error::io("run initdb", e))?;
    let output = child
        .wait_with_output()
        .map_err(|e| Error::io("wait for initdb", e))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(Error::InitdbFailed {
            status: output.status,
            output: text,
        });
    }
    let conf = data.join("postgresql.conf");
    let mut text =
        fs::read_to_string(&conf).map_err(|e| Error::io(format!("read {}", conf.display()), e))?;
    text.push_str(&format!("\ninclude_if_exists = '{SETTINGS_FILE}'\n"));
    fs::write(&conf, text).map_err(|e| Error::io(format!("write {}", conf.display()), e))
}

/// Where scratch roots go: `$TMPDIR` when set; else `/dev/shm` when it has room (a server
/// copies its cluster and writes its WAL there, and memory is several times faster than a busy
/// disk); else `/tmp`. A path too long for unix sockets (at most 107 bytes) falls back to `/tmp`.
fn scratch_base() -> PathBuf {
    if let Some(tmp) = std::env::var_os("TMPDIR") {
        let tmp = PathBuf::from(tmp);
        if tmp.as_os_str().len() <= 60 {
            return tmp;
        }
    } else if has_room(Path::new(SHM), 1 << 30) {
        return PathBuf::from(SHM);
    }
    PathBuf::from("/tmp")
}

/// The memory file system on Linux.
const SHM: &str = "/dev/shm";

/// Whether `dir` is a writable directory with at least `bytes` free.
fn has_room(dir: &Path, bytes: u64) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stats` is valid for writes; statvfs fills it.
    if unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statvfs returned 0, so it initialised `stats`.
    let stats = unsafe { stats.assume_init() };
    // fsblkcnt_t and c_ulong are 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize));
    // SAFETY: `path` is NUL-terminated; access only reads it.
    let writable = unsafe { libc::access(path.as_ptr(), libc::W_OK) } == 0;
    writable && free >= bytes
}

/// Removes the scratch roots of processes that are gone (killed before they could clean up).
fn remove_stale_roots(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(ROOT_PREFIX))
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if !process::is_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Records a running postmaster so the exit hook can stop it if its owner never does.
pub(crate) fn track(pid: u32) {
    LIVE_POSTMASTERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(pid);
}

/// Forgets a postmaster that has been stopped and reaped.
pub(crate) fn untrack(pid: u32) {
    LIVE_POSTMASTERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&p| p != pid);
}

fn register_exit_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: `on_exit` is an `extern "C" fn()` that never unwinds out (see below).
        unsafe { libc::atexit(on_exit) };
    });
}

/// Runs when the process exits normally (the test harness calls `exit`): stops servers that
/// were leaked (a `static`, `mem::forget`) and removes the scratch root.
extern "C" fn on_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Ok(pids) = LIVE_POSTMASTERS.try_lock() {
            for &pid in pids.iter() {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGQUIT) };
                }
            }
        }
        if let Some(root) = ROOT.get() {
            let _ = fs::remove_dir_all(root);
        }
    });
}
