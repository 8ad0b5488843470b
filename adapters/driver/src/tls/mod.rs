//! TLS with rustls, written once for every runtime.
//!
//! rustls is used sans-IO: a [`rustls::ClientConnection`] is fed the bytes
//! read from the plain [`Transport`](crate::Transport) and hands back the
//! bytes to write, inside [`MaybeTlsStream`](crate::MaybeTlsStream). No runtime needs its own
//! TLS crate, and the handshake, the certificate checks per sslmode and the
//! channel-binding data exist in one place. The crypto provider is ring.

mod binding;
mod client_cert;
mod validity;
mod verify;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use pgnotify_core::bus::TlsTarget;
use pgnotify_core::config::{SslMode, SslRootCert};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

pub use binding::tls_server_end_point;
pub use verify::Verification;

/// The ALPN protocol name PostgreSQL 17 and later expect; older servers ignore it.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A TLS client configuration: how the server's certificate is verified and
/// which roots are trusted.
///
/// Build one per connection attempt, or once and reuse it: it is cheap to
/// clone and loading the roots (a file or the system store) happens only in
/// [`TlsConnector::new`].
#[derive(Debug, Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    verification: Verification,
}

impl TlsConnector {
    /// Creates a connector for an `sslmode` and `sslrootcert`, verifying as
    /// libpq would (see [`Verification::for_ssl_mode`]).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))] // a test hook
    pub fn for_ssl_mode(mode: SslMode, root_cert: Option<&SslRootCert>) -> Result<Self, TlsError> {
        Self::new(Verification::for_ssl_mode(mode, root_cert), root_cert)
    }

    /// Creates a connector that verifies the server per `verification`,
    /// trusting the roots `root_cert` names: a PEM file, the system's store,
    /// or with `None` libpq's default file `~/.postgresql/root.crt`. Roots
    /// are not loaded for [`Verification::None`].
    ///
    /// Fails when the roots cannot be loaded: a missing or unreadable file, a
    /// file without a certificate, or an empty system store.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))] // a test hook
    pub fn new(
        verification: Verification,
        root_cert: Option<&SslRootCert>,
    ) -> Result<Self, TlsError> {
        Self::build(verification, root_cert, None)
    }

    /// Creates the connector the bus asks for: [`for_ssl_mode`](Self::for_ssl_mode)
    /// with the target's roots, presenting the client certificate of
    /// `sslcert`/`sslkey` (or libpq's `~/.postgresql/postgresql.crt` and
    /// `.key`, when that certificate file exists) if the server asks for
    /// one.
    ///
    /// Fails, besides the reasons of [`new`](Self::new), when a client
    /// certificate exists but its key is missing, unreadable, encrypted (a
    /// passphrase, `sslpassword`, is not supported) or readable by group or
    /// others.
    pub fn for_target(target: &TlsTarget) -> Result<Self, TlsError> {
        let identity =
            client_cert::load(target.client_cert.as_deref(), target.client_key.as_deref())?;
        let root_cert = target.root_cert.as_ref();
        Self::build(
            Verification::for_ssl_mode(target.ssl_mode, root_cert),
            root_cert,
            identity,
        )
    }

    fn build(
        verification: Verification,
        root_cert: Option<&SslRootCert>,
        identity: Option<client_cert::ClientIdentity>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = verify::verifier(verification, root_cert, &provider)?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config {
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsError::ClientKeyInvalid {
                    path: PathBuf::from("sslkey"),
                    reason: format!("it does not match the certificate or is not supported ({e})"),
                }
            })?,
        };
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(TlsConnector {
            config: Arc::new(config),
            verification,
        })
    }

    /// What this connector checks about the server's certificate.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))] // a test hook
    pub fn verification(&self) -> Verification {
        self.verification
    }

    /// Starts a client session for `host` (the host name or IP address
    /// connected to, used for SNI and, with [`Verification::Full`], checked
    /// against the certificate).
    pub(crate) fn session(&self, host: &str) -> Result<rustls::ClientConnection, TlsError> {
        let name = match ServerName::try_from(host.to_owned()) {
            Ok(name) => name,
            Err(_) if self.verification != Verification::Full => {
                // Nothing checks the name: any valid one will do for SNI.
                ServerName::try_from("localhost").expect("a valid DNS name")
            }
            Err(_) => {
                return Err(TlsError::InvalidServerName {
                    host: host.to_owned(),
                });
            }
        };
        rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })
    }
}

/// Why a TLS connection could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// Verification needs root certificates, `sslrootcert` is not set and
    /// there is no home directory to find libpq's default file in.
    RootCertUnset,
    /// The root certificate file does not exist.
    RootCertMissing {
        /// The file looked for.
        path: PathBuf,
    },
    /// The root certificate file exists but could not be read.
    RootCertUnreadable {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: io::Error,
    },
    /// The root certificate file holds no usable certificate.
    RootCertInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `sslrootcert=system` was asked for but the system store gave nothing.
    SystemRootsUnavailable {
        /// What went wrong while loading it.
        reason: String,
    },
    /// The client certificate file (`sslcert`) exists but could not be read.
    ClientCertUnreadable {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: io::Error,
    },
    /// The client certificate file holds no usable certificate.
    ClientCertInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A client certificate was found but not its key (`sslkey`).
    ClientKeyMissing {
        /// The key file looked for.
        path: PathBuf,
    },
    /// The client key file exists but could not be read.
    ClientKeyUnreadable {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: io::Error,
    },
    /// The client key is protected by a passphrase, which pgnotify does not
    /// support (libpq's `sslpassword`).
    ClientKeyEncrypted {
        /// The file.
        path: PathBuf,
    },
    /// The client key file may be read by group or others (libpq refuses
    /// that too).
    ClientKeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The client key is not a usable private key.
    ClientKeyInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `verify-full` needs a host name or IP address, and this is neither.
    InvalidServerName {
        /// The host as configured.
        host: String,
    },
    /// The server's certificate was rejected.
    Certificate {
        /// The host connected to.
        host: String,
        /// What is wrong with the certificate.
        error: rustls::CertificateError,
    },
    /// The TLS handshake failed for another reason (protocol versions, alerts,
    /// a bad handshake signature, ...).
    Handshake(rustls::Error),
    /// The server closed the connection during the handshake.
    Closed,
    /// Reading or writing the socket failed during the handshake.
    Io(io::Error),
    /// rustls refused the configuration (should not happen with ring).
    Config {
        /// rustls's explanation.
        reason: String,
    },
}

impl TlsError {
    /// Classifies an error from the rustls state machine during a handshake with `host`.
    pub(crate) fn from_rustls(error: rustls::Error, host: &str) -> TlsError {
        match error {
            rustls::Error::InvalidCertificate(error) => TlsError::Certificate {
                host: host.to_owned(),
                error,
            },
            other => TlsError::Handshake(other),
        }
    }

    /// Whether trying again later might succeed (network trouble) rather than
    /// needing a change of configuration or certificates.
    pub fn is_transient(&self) -> bool {
        matches!(self, TlsError::Closed | TlsError::Io(_))
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use rustls::CertificateError as C;
        match self {
            TlsError::RootCertUnset => f.write_str(
                "server certificate verification needs root certificates, and without a home directory there is no ~/.postgresql/root.crt: set sslrootcert to a file or to \"system\"",
            ),
            TlsError::RootCertMissing { path } => write!(
                f,
                "root certificate file \"{}\" does not exist: provide it, use sslrootcert=system for the system's roots, or use sslmode=require to skip verification",
                path.display()
            ),
            TlsError::RootCertUnreadable { path, source } => {
                write!(f, "could not read root certificate file \"{}\": {source}", path.display())
            }
            TlsError::RootCertInvalid { path, reason } => write!(
                f,
                "root certificate file \"{}\" is not usable: {reason}",
                path.display()
            ),
            TlsError::SystemRootsUnavailable { reason } => {
                write!(f, "could not load the system's root certificates: {reason}")
            }
            TlsError::ClientCertUnreadable { path, source } => write!(
                f,
                "could not read client certificate file \"{}\": {source}",
                path.display()
            ),
            TlsError::ClientCertInvalid { path, reason } => write!(
                f,
                "client certificate file \"{}\" is not usable: {reason}",
                path.display()
            ),
            TlsError::ClientKeyMissing { path } => write!(
                f,
                "a client certificate was found but not its private key file \"{}\": set sslkey",
                path.display()
            ),
            TlsError::ClientKeyUnreadable { path, source } => write!(
                f,
                "could not read private key file \"{}\": {source}",
                path.display()
            ),
            TlsError::ClientKeyEncrypted { path } => write!(
                f,
                "private key file \"{}\" is encrypted; pgnotify does not support sslpassword: \
                 decrypt it (openssl pkey -in key -out key.plain) and protect it with file permissions",
                path.display()
            ),
            TlsError::ClientKeyPermissions { path, mode } => write!(
                f,
                "private key file \"{}\" has group or world access (mode {mode:o}); it must be \
                 u=rw (0600) or less, or owned by root and u=rw,g=r (0640) or less",
                path.display()
            ),
            TlsError::ClientKeyInvalid { path, reason } => write!(
                f,
                "private key file \"{}\" is not usable: {reason}",
                path.display()
            ),
            TlsError::InvalidServerName { host } => write!(
                f,
                "sslmode=verify-full needs a host name or IP address to check the certificate against, and \"{host}\" is neither"
            ),
            TlsError::Certificate { host, error } => match error {
                C::UnknownIssuer => write!(
                    f,
                    "the server certificate for \"{host}\" is not signed by a trusted root certificate"
                ),
                C::BadSignature => write!(
                    f,
                    "the server certificate for \"{host}\" has a bad signature: a trusted root certificate has its issuer's name but did not sign it"
                ),
                C::NotValidForName | C::NotValidForNameContext { .. } => write!(
                    f,
                    "the server certificate is not valid for host name \"{host}\""
                ),
                C::Expired | C::ExpiredContext { .. } => {
                    write!(f, "the server certificate for \"{host}\" has expired")
                }
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    write!(f, "the server certificate for \"{host}\" is not valid yet")
                }
                C::Revoked => write!(f, "the server certificate for \"{host}\" has been revoked"),
                other => write!(
                    f,
                    "the server certificate for \"{host}\" was rejected: {}",
                    certificate_problem(other)
                ),
            },
            TlsError::Handshake(error) => write!(f, "the TLS handshake failed: {error}"),
            TlsError::Closed => {
                f.write_str("the server closed the connection during the TLS handshake")
            }
            TlsError::Io(error) => write!(f, "I/O error during the TLS handshake: {error}"),
            TlsError::Config { reason } => write!(f, "invalid TLS configuration: {reason}"),
        }
    }
}

/// A sentence for the certificate errors without a phrase of their own
/// above: rustls shows most of them (and webpki's, inside `Other`) only as
/// their Debug names.
fn certificate_problem(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match error {
        C::BadEncoding => "it is not a well-formed certificate".into(),
        C::UnhandledCriticalExtension => {
            "it has a critical extension that cannot be checked".into()
        }
        C::UnknownRevocationStatus => "its revocation status is unknown".into(),
        C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
            "the revocation list has expired".into()
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "its extended key usage does not allow a TLS server".into()
        }
        C::ApplicationVerificationFailure => "the application's check refused it".into(),
        C::Other(other) => match other.to_string().as_str() {
            "CaUsedAsEndEntity" => "it is a CA certificate, not a server's; a self-signed \
                                   server certificate must itself be in sslrootcert"
                .into(),
            "UnsupportedSignatureAlgorithm"
            | "UnsupportedSignatureAlgorithmForPublicKey"
            | "UnsupportedSignatureAlgorithmContext"
            | "UnsupportedSignatureAlgorithmForPublicKeyContext" => {
                "it is signed with an algorithm this client does not support".into()
            }
            "EndEntityUsedAsCa" => "a server certificate was used to sign another".into(),
            "PathLenConstraintViolated" | "MaximumPathDepthExceeded" => {
                "its chain is longer than its issuers allow".into()
            }
            "NameConstraintViolation" => "its names break its issuer's name constraints".into(),
            code => format!("the certificate is not acceptable (webpki: {code})"),
        },
        other => format!("the certificate is not acceptable ({other})"),
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::RootCertUnreadable { source, .. }
            | TlsError::ClientCertUnreadable { source, .. }
            | TlsError::ClientKeyUnreadable { source, .. } => Some(source),
            TlsError::Handshake(error) => Some(error),
            TlsError::Io(error) => Some(error),
            _ => None,
        }
    }
}
