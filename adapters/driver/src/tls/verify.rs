//! Certificate verification per sslmode, and where the trusted roots come from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

/// Where the trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootCerts {
    /// A PEM file of one or more CA certificates (`sslrootcert=<path>`).
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`), as found by
    /// `rustls-native-certs` (which honours `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR`, like OpenSSL and so like libpq).
    System,
}

impl RootCerts {
    /// Interprets an `sslrootcert` setting: the literal `system` means the
    /// operating system's store, anything else a file.
    ///
    /// Without a setting, libpq reads `~/.postgresql/root.crt`; so does this,
    /// when `HOME` is set.
    pub fn from_setting(setting: Option<&Path>) -> Option<RootCerts> {
        match setting {
            Some(path) if path == Path::new("system") => Some(RootCerts::System),
            Some(path) => Some(RootCerts::File(path.to_owned())),
            None => {
                let home = std::env::var_os("HOME")?;
                Some(RootCerts::File(
                    Path::new(&home).join(".postgresql").join("root.crt"),
                ))
            }
        }
    }

    /// Loads the certificates into a store.
    pub(crate) fn load(&self) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        match self {
            RootCerts::File(path) => {
                let pem = std::fs::read(path).map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        TlsError::RootCertMissing { path: path.clone() }
                    } else {
                        TlsError::RootCertUnreadable {
                            path: path.clone(),
                            source,
                        }
                    }
                })?;
                let invalid = |reason: String| TlsError::RootCertInvalid {
                    path: path.clone(),
                    reason,
                };
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| invalid(e.to_string()))?;
                    store.add(cert).map_err(|e| invalid(e.to_string()))?;
                }
                if store.is_empty() {
                    return Err(invalid("it holds no PEM certificate".into()));
                }
            }
            RootCerts::System => {
                let found = rustls_native_certs::load_native_certs();
                // Unparsable entries in a system store are common and harmless.
                let (_added, _ignored) = store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    let reason = match found.errors.first() {
                        Some(error) => error.to_string(),
                        None => "no certificate found".into(),
                    };
                    return Err(TlsError::SystemRootsUnavailable { reason });
                }
            }
        }
        Ok(store)
    }
}

/// Builds the verifier for `verification` (`roots` is ignored for
/// [`Verification::None`]).
pub(crate) fn verifier(
    verification: Verification,
    roots: Option<&RootCerts>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    if verification == Verification::None {
        return Ok(Arc::new(AnyCertificate {
            provider: provider.clone(),
        }));
    }
    let roots = roots.ok_or(TlsError::RootCertUnset)?.load()?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })?;
    Ok(match verification {
        Verification::Full => webpki,
        _ => Arc::new(AnyName { inner: webpki }),
    })
}

/// Accepts any certificate, but still checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies the chain like webpki, but accepts a certificate for any name.
///
/// webpki checks the chain before the name, so a name mismatch is only
/// reported for a certificate whose chain is otherwise valid.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match result {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
