//! Finding the PostgreSQL binaries installed on the machine.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{Error, Result};
use super::version::{MIN_SUPPORTED_MAJOR, ServerVersion};

/// The environment variable that, when set, names the directory holding `initdb` and `postgres`.
pub const BINDIR_ENV: &str = "PGNOTIFY_PG_BINDIR";

/// The directory of PostgreSQL binaries a [`TestServer`](super::TestServer) runs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) bindir: PathBuf,
    pub(crate) version: ServerVersion,
}

impl Binaries {
    /// Searches `$PGNOTIFY_PG_BINDIR`, `$PATH`, `pg_config --bindir`, then the newest
    /// `/usr/lib/postgresql/*/bin`, takes the first directory holding `initdb` and `postgres`,
    /// and checks that its version is one the testkit supports.
    pub(crate) fn find() -> Result<Self> {
        let bindir = find_bindir()?;
        let version = version_of(&bindir)?;
        if !version.at_least(MIN_SUPPORTED_MAJOR) {
            return Err(Error::UnsupportedVersion { bindir, version });
        }
        Ok(Self { bindir, version })
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

/// The first directory on the search path holding `initdb` and `postgres`.
fn find_bindir() -> Result<PathBuf> {
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
            return Ok(bindir);
        }
        searched.push(dir);
    }
    Err(Error::BinariesNotFound { searched })
}

/// What `<bindir>/postgres --version` says.
fn version_of(bindir: &Path) -> Result<ServerVersion> {
    let postgres = bindir.join("postgres");
    let output = Command::new(&postgres)
        .arg("--version")
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| Error::io(format!("run {} --version", postgres.display()), e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match ServerVersion::parse(&text) {
        Some(version) if output.status.success() => Ok(version),
        _ => Err(Error::UnknownVersion {
            bindir: bindir.to_owned(),
            output: format!("{text}{}", String::from_utf8_lossy(&output.stderr)),
        }),
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
