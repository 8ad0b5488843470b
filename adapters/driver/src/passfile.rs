//! Reading libpq's password file for the core, which reads no files.

use std::path::Path;

use pgnotify_core::Config;
use pgnotify_core::config::PassFile;

/// `config` with the entries of its password file, when it has no password:
/// the file `passfile` (or `PGPASSFILE`) names, else `~/.pgpass`.
///
/// As in libpq, a missing file is no error, and a file that group or
/// others may access is ignored with a warning (it would leak passwords).
pub(crate) fn with_password_file(config: Config) -> Config {
    if config.password().is_some() || config.password_file().is_some() {
        return config;
    }
    let Some(path) = config
        .passfile()
        .map(Path::to_owned)
        .or_else(|| crate::load::home_file(".pgpass"))
    else {
        return config;
    };
    let Some(text) = read(&path) else {
        return config;
    };
    let entries = PassFile::parse(&text);
    tracing::debug!(path = %path.display(), entries = entries.len(), "read the password file");
    config
        .to_builder()
        .password_file(entries)
        .build()
        .unwrap_or(config)
}

/// The file's text, if it is a regular file only its owner can access.
fn read(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the password file has group or world access and is ignored; it should be u=rw (0600) or less"
            );
            return None;
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "could not read the password file");
            None
        }
    }
}
