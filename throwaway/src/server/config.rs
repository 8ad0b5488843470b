//! Rendering a server's configuration: its settings file and `pg_hba.conf`.

use std::fmt::Write as _;
use std::path::Path;

/// How clients other than the admin superuser authenticate (the `pg_hba.conf` method).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// No password: any user named in the startup message gets in.
    #[default]
    Trust,
    /// A cleartext password (`AuthenticationCleartextPassword`).
    Password,
    /// An MD5-hashed password; passwords are stored as MD5 so the server really asks for MD5.
    Md5,
    /// SCRAM-SHA-256 (`AuthenticationSASL`); passwords are stored as SCRAM verifiers.
    ScramSha256,
}

impl AuthMethod {
    /// The method's keyword in `pg_hba.conf`.
    pub fn hba_keyword(self) -> &'static str {
        match self {
            Self::Trust => "trust",
            Self::Password => "password",
            Self::Md5 => "md5",
            Self::ScramSha256 => "scram-sha-256",
        }
    }

    /// The `password_encryption` that makes the server use this method as named: with `md5` in
    /// `pg_hba.conf`, a password stored as SCRAM is checked with SCRAM instead.
    fn password_encryption(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            _ => "scram-sha-256",
        }
    }
}

/// Everything a server's configuration files are made from.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) auth: AuthMethod,
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) hba_lines: Vec<String>,
    pub(crate) ssl: bool,
}

impl ServerConfig {
    /// The settings file included at the end of `postgresql.conf`; later lines win, so the
    /// test's own settings come last.
    pub(crate) fn settings_file(&self, port: u16, socket_dir: &Path) -> String {
        let mut base: Vec<(&str, String)> = vec![
            ("listen_addresses", "127.0.0.1".into()),
            ("port", port.to_string()),
            ("unix_socket_directories", socket_dir.display().to_string()),
            ("unix_socket_permissions", "0700".into()),
            // Throwaway data: durability buys nothing and costs start and commit time.
            ("fsync", "off".into()),
            ("synchronous_commit", "off".into()),
            ("full_page_writes", "off".into()),
            ("shared_buffers", "16MB".into()),
            ("autovacuum", "off".into()),
            ("huge_pages", "off".into()),
            // The testkit reads readiness from the log; it must stay on stderr, in English.
            ("logging_collector", "off".into()),
            ("lc_messages", "C".into()),
            ("log_line_prefix", "%m [%p] %q%u@%d ".into()),
            (
                "password_encryption",
                self.auth.password_encryption().into(),
            ),
        ];
        if self.ssl {
            base.push(("ssl", "on".into()));
            base.push(("ssl_cert_file", "server.crt".into()));
            base.push(("ssl_key_file", "server.key".into()));
        }
        let mut text = String::from("# Written by pgnotify-testkit.\n");
        let own = self.settings.iter().map(|(k, v)| (k.as_str(), v.clone()));
        for (name, value) in base.into_iter().chain(own) {
            let _ = writeln!(text, "{name} = {}", quote_literal(&value));
        }
        text
    }

    /// `pg_hba.conf`: the superuser over the unix socket without a password (the admin
    /// channel), then the test's own lines, then everyone with the chosen method.
    pub(crate) fn hba_file(&self) -> String {
        let method = self.auth.hba_keyword();
        let mut text = String::from("# Written by pgnotify-testkit.\nlocal all postgres trust\n");
        for line in &self.hba_lines {
            text.push_str(line);
            text.push('\n');
        }
        let _ = writeln!(text, "local all all {method}");
        let _ = writeln!(text, "host all all 127.0.0.1/32 {method}");
        let _ = writeln!(text, "host all all ::1/128 {method}");
        text
    }
}

/// `value` as a single-quoted SQL (and configuration-file) literal.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `name` as a double-quoted SQL identifier (the core's quoting).
pub(crate) fn quote_identifier(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    pgnotify_core::push_quoted_identifier(&mut quoted, name);
    quoted
}

/// `value` as a libpq key=value connection-string value.
pub(crate) fn quote_conninfo(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\', '\t', '\n']) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `value` percent-encoded for the user-info part of a URL.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes_and_escapes_conninfo_values() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_conninfo("plain"), "plain");
        assert_eq!(quote_conninfo("a b'c\\"), "'a b\\'c\\\\'");
        assert_eq!(quote_conninfo(""), "''");
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }

    #[test]
    fn md5_auth_stores_md5_passwords_and_test_settings_come_last() {
        let config = ServerConfig {
            auth: AuthMethod::Md5,
            settings: vec![("shared_buffers".into(), "32MB".into())],
            hba_lines: vec!["hostssl all all 127.0.0.1/32 trust".into()],
            ssl: false,
        };
        let settings = config.settings_file(5555, Path::new("/tmp/s"));
        assert!(
            settings.contains("password_encryption = 'md5'\n"),
            "{settings}"
        );
        let ours = settings.rfind("shared_buffers = '32MB'").expect(&settings);
        assert!(ours > settings.find("shared_buffers = '16MB'").expect(&settings));
        let hba = config.hba_file();
        let custom = hba.find("hostssl").expect(&hba);
        assert!(
            custom < hba.find("host all all 127.0.0.1/32 md5").expect(&hba),
            "{hba}"
        );
    }
}
