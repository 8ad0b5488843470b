//! Finding the PostgreSQL binaries installed on the machine.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{Error, Result};

/// The environment variable that, when set, names the directory holding `initdb` and `postgres`.
pub const BINDIR_ENV: &str = "PGNOTIFY_PG_BINDIR";

/// The directory of PostgreSQL binaries a [`TestServer`](super::TestServer) runs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) bindir: PathBuf,
}

impl Binaries {
    /// Searches `$PGNOTIFY_PG_BINDIR`, `$PATH`, `pg_config --bindir`, then the newest
    /// `/usr/lib/postgresql/*/bin`, and takes the first directory holding `initdb` and `postgres`.
    pub(crate) fn find() -> Result<Self> {
        let mut searched = Vec::new();
        for dir in candidates() {
            if is_server_bindir(&dir) {
                // PATH may hold symlinks to a few of the binaries (initdb, postgres) but not the
                // rest (psql): follow them to the installation's own directory.
                let bindir = std::fs::canonicalize(dir.join("postgres"))
                    .ok()
                    .and_then(|real| real.parent().map(Path::to_path_buf))
                    .filter(|real| is_server_bindir(real))
                    .unwrap_or(dir);
                return Ok(Self { bindir });
            }
            searched.push(dir);
        }
        Err(Error::BinariesNotFound { searched })
    }

    pub(crate) fn initdb(&self) -> PathBuf {
        self.bindir.join("initdb")
    }

    pub(crate) fn postgres(&self) -> PathBuf {
        self.bindir.join("postgres")
    }

    /// `psql`, preferably from the same installation so client and server versions agree,
    /// else from `$PATH`.
    pub(crate) fn psql(&self) -> Result<PathBuf> {
        let path = env::var_os("PATH").unwrap_or_default();
        std::iter::once(self.bindir.clone())
            .chain(env::split_paths(&path))
            .map(|dir| dir.join("psql"))
            .find(|psql| psql.is_file())
            .ok_or_else(|| Error::PsqlNotFound {
                bindir: self.bindir.clone(),
            })
    }
}

fn is_server_bindir(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = env::var_os(BINDIR_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    if let Some(dir) = pg_config_bindir() {
        dirs.push(dir);
    }
    dirs.extend(debian_bindirs());
    dirs
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `/usr/lib/postgresql/<major>/bin`, newest major version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}
