//! Certificate verification per sslmode, and where the trusted roots come from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use pgnotify_core::config::{SslMode, SslRootCert};

use super::TlsError;

/// What the TLS handshake checks about the server's certificate.
///
/// The handshake signature is always checked, so that the connection is at
/// least bound to the certificate it presents (which is what channel binding
/// relies on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verification {
    /// Accept any certificate: encryption without authentication
    /// (`sslmode=require` without a root certificate, and `prefer`).
    None,
    /// The certificate chain must lead to a trusted root; the host name is
    /// not checked (`sslmode=verify-ca`).
    Chain,
    /// The chain must lead to a trusted root and the certificate must name
    /// the host connected to (`sslmode=verify-full`).
    Full,
}

impl Verification {
    /// What libpq verifies for `mode`, given the `sslrootcert` setting.
    ///
    /// `prefer` and `require` verify nothing, unless root certificates are
    /// given explicitly: then the chain is verified, as libpq does when it
    /// finds a root certificate file. (libpq also does so when the default
    /// `~/.postgresql/root.crt` merely exists; pgnotify does not, so that a
    /// stray file does not change what `require` means.)
    pub fn for_ssl_mode(mode: SslMode, root_cert: Option<&SslRootCert>) -> Verification {
        match mode {
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::Chain,
            _ if root_cert.is_some() => Verification::Chain,
            _ => Verification::None,
        }
    }
}

/// Where the roots come from when `sslrootcert` is not set: libpq's
/// `~/.postgresql/root.crt` (`None` without a home directory).
fn default_root_cert_file() -> Option<PathBuf> {
    crate::load::home_file(".postgresql/root.crt")
}

/// The trusted roots, and the certificates of a root file (to recognise a
/// server certificate that is itself a trusted root).
struct Roots {
    store: RootCertStore,
    certificates: Vec<CertificateDer<'static>>,
}

/// Loads the roots `setting` names (libpq's default file when `None`).
fn load_roots(setting: Option<&SslRootCert>) -> Result<Roots, TlsError> {
    let default_file;
    let path = match setting {
        Some(SslRootCert::System) => {
            return load_system_roots().map(|store| Roots {
                store,
                certificates: Vec::new(),
            });
        }
        Some(root) => root.path(),
        None => {
            default_file = default_root_cert_file().ok_or(TlsError::RootCertUnset)?;
            Some(default_file.as_path())
        }
    };
    let Some(path) = path else {
        return Err(TlsError::RootCertUnset);
    };
    load_root_file(path)
}

/// Loads the CA certificates of a PEM file.
fn load_root_file(path: &Path) -> Result<Roots, TlsError> {
    let pem = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TlsError::RootCertMissing {
                path: path.to_owned(),
            }
        } else {
            TlsError::RootCertUnreadable {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let invalid = |reason: String| TlsError::RootCertInvalid {
        path: path.to_owned(),
        reason,
    };
    let mut store = RootCertStore::empty();
    let mut certificates = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        store
            .add(cert.clone())
            .map_err(|e| invalid(e.to_string()))?;
        certificates.push(cert);
    }
    if store.is_empty() {
        return Err(invalid("it holds no PEM certificate".into()));
    }
    Ok(Roots {
        store,
        certificates,
    })
}

/// Loads the operating system's trust store, as found by
/// `rustls-native-certs` (which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`,
/// like OpenSSL and so like libpq).
fn load_system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    // Unparsable entries in a system store are common and harmless.
    let (_added, _ignored) = store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let reason = match found.errors.first() {
            Some(error) => error.to_string(),
            None => "no certificate found".into(),
        };
        return Err(TlsError::SystemRootsUnavailable { reason });
    }
    Ok(store)
}

/// Builds the verifier for `verification` (`roots` is ignored for
/// [`Verification::None`]).
pub(crate) fn verifier(
    verification: Verification,
    roots: Option<&SslRootCert>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let algorithms = provider.signature_verification_algorithms;
    if verification == Verification::None {
        return Ok(Arc::new(Verifier {
            chain: None,
            check_name: false,
            own_roots: Vec::new(),
            algorithms,
        }));
    }
    let roots = load_roots(roots)?;
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots.store), provider.clone())
            .build()
            .map_err(|e| TlsError::Config {
                reason: e.to_string(),
            })?;
    Ok(Arc::new(Verifier {
        chain: Some(webpki),
        check_name: verification == Verification::Full,
        own_roots: roots.certificates,
        algorithms,
    }))
}

/// Checks the server's certificate as libpq does for its sslmode: nothing
/// at all ([`Verification::None`]), its chain ([`Verification::Chain`]),
/// or its chain and name ([`Verification::Full`]), with webpki.
///
/// One case webpki refuses and libpq accepts: a server certificate that is
/// itself one of the trusted roots, as in PostgreSQL's documented
/// self-signed setup (`openssl req -x509`, `server.crt` given as
/// `sslrootcert`). Such a certificate is trusted as it stands, once its
/// validity period covers now (and, for `verify-full`, it names the host).
///
/// The handshake signature is always checked, with the provider's
/// algorithms as webpki checks it, so the server must hold the key of the
/// certificate it presents.
#[derive(Debug)]
struct Verifier {
    /// The chain check; without it any certificate is accepted.
    ///
    /// webpki checks the chain before the name, so a name mismatch is only
    /// reported for a certificate whose chain is otherwise valid.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether a name mismatch fails (`verify-full`).
    check_name: bool,
    /// The root file's certificates, in DER.
    own_roots: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    /// A server certificate that is one of the trusted roots: valid now,
    /// and for the host when names are checked.
    fn verify_trusted_root(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let Some((not_before, not_after)) = super::validity::validity(end_entity) else {
            return Err(CertificateError::BadEncoding.into());
        };
        if now < not_before {
            return Err(CertificateError::NotValidYet.into());
        }
        if now > not_after {
            return Err(CertificateError::Expired.into());
        }
        if self.check_name {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            verify_server_name(&parsed, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        let result =
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match result {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(_))
                if self.own_roots.iter().any(|root| root == end_entity) =>
            {
                self.verify_trusted_root(end_entity, server_name, now)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_modes_verify_what_libpq_verifies() {
        let file = SslRootCert::File("ca.pem".into());
        let cases = [
            (SslMode::Prefer, None, Verification::None),
            (SslMode::Require, None, Verification::None),
            (SslMode::Prefer, Some(&file), Verification::Chain),
            (SslMode::Require, Some(&file), Verification::Chain),
            (SslMode::VerifyCa, None, Verification::Chain),
            (SslMode::VerifyCa, Some(&file), Verification::Chain),
            (SslMode::VerifyFull, None, Verification::Full),
            (
                SslMode::VerifyFull,
                Some(&SslRootCert::System),
                Verification::Full,
            ),
        ];
        for (mode, root_cert, expected) in cases {
            let got = Verification::for_ssl_mode(mode, root_cert);
            assert_eq!(got, expected, "sslmode={mode} sslrootcert={root_cert:?}");
        }
    }
}
