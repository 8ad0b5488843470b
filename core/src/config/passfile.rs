//! [`PassFile`]: libpq's password file (`~/.pgpass`, `passfile`,
//! `PGPASSFILE`), parsed from text the driver read (the core reads no
//! files).

use std::fmt;

use super::host::HostSpec;

/// The entries of a libpq password file.
///
/// Each line is `hostname:port:database:username:password`; `*` in one of
/// the first four fields matches anything, `\:` and `\\` stand for `:` and
/// `\`, and lines starting with `#` are comments. The first matching line
/// wins. A TCP host matches its name as configured (not its address); a
/// unix socket matches `localhost` or its directory, as in libpq.
///
/// Used only when the configuration has no password. `Debug` shows how many
/// entries there are, never a password.
///
/// ```
/// use pgnotify_core::config::{HostSpec, PassFile};
/// let file = PassFile::parse("# team database\n*:5432:orders:app:s\\:cret\n");
/// let host = HostSpec::tcp("db", 5432);
/// assert_eq!(file.lookup(&host, "orders", "app"), Some("s:cret"));
/// assert_eq!(file.lookup(&host, "orders", "other"), None);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PassFile {
    entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    host: String,
    port: String,
    database: String,
    user: String,
    password: String,
}

impl PassFile {
    /// Parses a password file's text; malformed lines (fewer than five
    /// fields) are skipped, as libpq skips them.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Self { entries }
    }

    /// How many entries the file has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The password of the first entry matching a connection to `host` as
    /// `user` on `database`.
    pub fn lookup(&self, host: &HostSpec, database: &str, user: &str) -> Option<&str> {
        let (names, port): (Vec<String>, u16) = match host {
            HostSpec::Tcp { host, port, .. } => (vec![host.clone()], *port),
            HostSpec::Unix { dir, port } => (
                vec!["localhost".to_owned(), dir.display().to_string()],
                *port,
            ),
        };
        let port = port.to_string();
        let matches = |field: &str, value: &str| field == "*" || field == value;
        self.entries
            .iter()
            .find(|e| {
                (e.host == "*" || names.contains(&e.host))
                    && matches(&e.port, &port)
                    && matches(&e.database, database)
                    && matches(&e.user, user)
            })
            .map(|e| e.password.as_str())
    }
}

impl fmt::Debug for PassFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PassFile({} entries)", self.entries.len())
    }
}

/// Splits one line into its five fields, undoing the escapes.
fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = Vec::with_capacity(5);
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            // As libpq: the password ends at the next unescaped colon.
            ':' => break,
            c => field.push(c),
        }
    }
    if fields.len() < 4 {
        return None;
    }
    fields.push(field);
    let [host, port, database, user, password] = <[String; 5]>::try_from(fields).ok()?;
    Some(Entry {
        host,
        port,
        database,
        user,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_escapes_comments_and_the_first_match() {
        let file = PassFile::parse(
            "# comment\n\
             short:line\n\
             db:5432:orders:app:first\n\
             *:*:*:app:second\n\
             db\\:x:*:*:*:colon-host\n\
             *:*:*:bob:back\\\\slash:ignored\r\n",
        );
        assert_eq!(file.len(), 4);
        let db = HostSpec::tcp("db", 5432);
        assert_eq!(file.lookup(&db, "orders", "app"), Some("first"));
        assert_eq!(file.lookup(&db, "other", "app"), Some("second"));
        assert_eq!(
            file.lookup(&HostSpec::tcp("db:x", 1), "d", "u"),
            Some("colon-host")
        );
        assert_eq!(file.lookup(&db, "d", "bob"), Some("back\\slash"));
        assert_eq!(file.lookup(&db, "d", "carol"), None);
        assert_eq!(format!("{file:?}"), "PassFile(4 entries)");
    }

    #[test]
    fn a_unix_socket_matches_localhost_or_its_directory() {
        let file = PassFile::parse("localhost:5432:*:app:local\n/run/pg:5433:*:app:dir\n");
        let socket = |dir: &str, port| HostSpec::Unix {
            dir: dir.into(),
            port,
        };
        assert_eq!(
            file.lookup(&socket("/tmp", 5432), "d", "app"),
            Some("local")
        );
        assert_eq!(
            file.lookup(&socket("/run/pg", 5433), "d", "app"),
            Some("dir")
        );
        assert_eq!(file.lookup(&socket("/run/pg", 5434), "d", "app"), None);
    }
}
