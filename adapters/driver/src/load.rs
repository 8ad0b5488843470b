//! What a connection string means on this machine, as libpq reads it: the
//! PG* environment variables and libpq's connection service files (the
//! core reads neither).

use std::path::{Path, PathBuf};

use pgnotify_core::config::{Config, ConfigError, ServiceFile};

/// Debian's libpq looks for the system-wide service file here when
/// `PGSYSCONFDIR` is unset.
const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// Parses `url` (a URL or `key=value` string) as libpq would on this
/// machine: the PG* variables are defaults, and `service=name` (or
/// `PGSERVICE`) is looked up in `PGSERVICEFILE` (default
/// `~/.pg_service.conf`), then in `pg_service.conf` in `PGSYSCONFDIR`
/// (default `/etc/postgresql-common`, Debian's). This is what
/// `Listener::connect(url)` uses.
///
/// ```no_run
/// let config = pgnotify_driver::load_config("service=orders application_name=worker")?;
/// # Ok::<(), pgnotify_driver::ConfigError>(())
/// ```
pub fn load_config(url: &str) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let var = |name: &str| {
        env.iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value))
    };
    let user_file = var("PGSERVICEFILE").or_else(|| home_file(".pg_service.conf"));
    let system_file = var("PGSYSCONFDIR")
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSCONFDIR))
        .join("pg_service.conf");
    let mut files = Vec::new();
    for path in user_file.iter().chain([&system_file]) {
        if let Some(file) = read_service_file(path)? {
            files.push(file);
        }
    }
    Config::parse_with_services(url, env, &files)
}

/// `path` in the user's home directory (`$HOME`), where libpq keeps its
/// per-user files (`.pgpass`, `.pg_service.conf`, `.postgresql/…`);
/// `None` without a home directory.
pub(crate) fn home_file(path: impl AsRef<Path>) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|home| !home.is_empty())?;
    Some(Path::new(&home).join(path))
}

/// A service file's services; `None` if there is no such file.
fn read_service_file(path: &Path) -> Result<Option<ServiceFile>, ConfigError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    ServiceFile::parse(&text)
        .map(Some)
        .map_err(|e| ConfigError::ServiceFile {
            file: path.display().to_string(),
            line: e.line,
        })
}
