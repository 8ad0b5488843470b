//! Which PostgreSQL the binaries are, and what the testkit and its tests need of it.

use std::fmt;

/// The oldest PostgreSQL major version the testkit runs (and pgnotify is tested against).
///
/// PostgreSQL 13 left upstream support in November 2025; pgnotify needs nothing newer, so the
/// compatibility matrix keeps it as the floor (README, "Supported servers").
pub const MIN_SUPPORTED_MAJOR: u32 = 13;

/// A PostgreSQL server version, as `postgres --version` reports it.
///
/// Tests that need a feature of a newer server ask [`at_least`](Self::at_least) and skip with
/// [`skip_unless`](Self::skip_unless):
///
/// ```no_run
/// use pgnotify_throwaway::server::TestServer;
///
/// let server = TestServer::new()?;
/// if server.version().skip_unless(14, "idle_session_timeout") {
///     return Ok(());
/// }
/// # Ok::<(), pgnotify_throwaway::server::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    major: u32,
    minor: u32,
    text: String,
}

impl ServerVersion {
    /// Parses the output of `postgres --version`: `postgres (PostgreSQL) 15.18 (Debian …)`,
    /// `postgres (PostgreSQL) 18.4`, `postgres (PostgreSQL) 19beta1`.
    pub(crate) fn parse(output: &str) -> Option<Self> {
        let line = output.lines().next()?;
        let rest = line.split_once(") ").map_or(line, |(_, rest)| rest);
        let text = rest.split_whitespace().next()?.to_owned();
        let digits = |s: &str| -> Option<u32> {
            let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            s[..end].parse().ok()
        };
        let major = digits(&text)?;
        let after_major = &text[major.to_string().len()..];
        let minor = after_major
            .strip_prefix('.')
            .and_then(digits)
            .unwrap_or_default();
        Some(Self { major, minor, text })
    }

    /// The major version (13, 14, …, 18).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The minor version (the `18` of 15.18); 0 for a beta or release candidate.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// Whether this is `major` or newer.
    pub fn at_least(&self, major: u32) -> bool {
        self.major >= major
    }

    /// For a test that needs PostgreSQL `major` or newer for `feature`: returns `true`, after
    /// printing why the test skips ([`skip`](crate::skip)), when this server is older, so the
    /// test can return early.
    pub fn skip_unless(&self, major: u32, feature: &str) -> bool {
        if self.at_least(major) {
            return false;
        }
        crate::skip(format_args!(
            "{feature} needs PostgreSQL {major} or newer; this server is {self}"
        ));
        true
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_upstream_and_beta_version_lines() {
        let debian = ServerVersion::parse("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n")
            .expect("parses");
        assert_eq!((debian.major(), debian.minor()), (15, 18));
        assert_eq!(debian.to_string(), "15.18");
        let plain = ServerVersion::parse("postgres (PostgreSQL) 18.4").expect("parses");
        assert_eq!((plain.major(), plain.minor()), (18, 4));
        let beta = ServerVersion::parse("postgres (PostgreSQL) 19beta1").expect("parses");
        assert_eq!((beta.major(), beta.minor()), (19, 0));
        let old = ServerVersion::parse("postgres (PostgreSQL) 9.6.24").expect("parses");
        assert_eq!((old.major(), old.minor()), (9, 6));
        assert!(ServerVersion::parse("").is_none());
        assert!(ServerVersion::parse("postgres (PostgreSQL) devel").is_none());
    }

    #[test]
    fn at_least_compares_the_major_version() {
        let v13 = ServerVersion::parse("postgres (PostgreSQL) 13.23").expect("parses");
        assert!(v13.at_least(13));
        assert!(!v13.at_least(14));
        assert!(v13.skip_unless(14, "idle_session_timeout"));
        assert!(!v13.skip_unless(13, "LISTEN"));
    }
}
