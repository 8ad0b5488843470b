//! TLS settings: [`SslMode`] and [`SslRootCert`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::error::ConfigError;

/// Whether to use TLS and how much of the server's certificate to verify
/// (libpq's `sslmode`).
///
/// libpq's `allow` (try without TLS first, then with TLS) is refused with an
/// error rather than mapped to another mode: pgnotify always asks for TLS
/// first when it may use it, so `allow` would silently change meaning. Use
/// `prefer` or `disable` instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Use TLS if the server offers it, without verifying the certificate;
    /// otherwise go on in plain text. The default, as in libpq.
    #[default]
    Prefer,
    /// Require TLS, without verifying the certificate.
    Require,
    /// Require TLS and a certificate signed by a trusted CA.
    VerifyCa,
    /// Require TLS, a certificate signed by a trusted CA, and a certificate
    /// that names the host.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [Self; 5] = [
        Self::Disable,
        Self::Prefer,
        Self::Require,
        Self::VerifyCa,
        Self::VerifyFull,
    ];

    /// The mode's name in a connection string (`verify-full`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate chain must be checked.
    pub fn verifies_certificate(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SslMode {
    type Err = ConfigError;

    /// Parses a libpq `sslmode` value; the error names `sslmode`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "allow" {
            return Err(ConfigError::invalid(
                "sslmode",
                s,
                "allow (plain text first, TLS only if refused) is not supported; \
                 use prefer or disable",
            ));
        }
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "sslmode",
                    s,
                    "expected disable, prefer, require, verify-ca or verify-full",
                )
            })
    }
}

/// Which certificate authorities to trust when verifying the server
/// (libpq's `sslrootcert`).
///
/// When a [`Config`](super::Config) has none, the driver uses libpq's default
/// location (`~/.postgresql/root.crt`) or its own default; that is the
/// driver's business, the core reads no files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslRootCert {
    /// The TLS implementation's trusted roots (`sslrootcert=system`, as in
    /// libpq 16). Implies `sslmode=verify-full`; weaker modes are refused.
    System,
    /// CA certificates in a PEM file. A file literally named `system` must be
    /// written `./system`.
    File(PathBuf),
}

impl SslRootCert {
    /// The file to read, if this is a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::System => None,
            Self::File(path) => Some(path),
        }
    }
}

impl fmt::Display for SslRootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}
