//! The client certificate libpq presents (`sslcert`, `sslkey`): where the
//! files are, when they are used, and the checks libpq makes on the key.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// A certificate chain and its private key, ready for rustls.
pub(crate) type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// `~/.postgresql/<file>`, libpq's default place for the client's files.
fn default_file(file: &str) -> Option<PathBuf> {
    crate::load::home_file(Path::new(".postgresql").join(file))
}

/// Loads the client certificate, as libpq does: the certificate file
/// (`cert`, else `~/.postgresql/postgresql.crt`) is used only if it exists,
/// and then its key (`key`, else `~/.postgresql/postgresql.key`) must
/// exist, be unencrypted, and not be readable by group or others (unless
/// owned by root and at most 0640, for keys a system manages).
pub(crate) fn load(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ClientIdentity>, TlsError> {
    let default_cert;
    let cert_path = match cert {
        Some(path) => path,
        None => match default_file("postgresql.crt") {
            Some(path) => {
                default_cert = path;
                &default_cert
            }
            None => return Ok(None),
        },
    };
    let pem = match std::fs::read(cert_path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TlsError::ClientCertUnreadable {
                path: cert_path.to_owned(),
                source,
            });
        }
    };
    let invalid_cert = |reason: String| TlsError::ClientCertInvalid {
        path: cert_path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid_cert("it holds no PEM certificate".into()));
    }

    let default_key;
    let key_path = match key {
        Some(path) => path,
        None => {
            default_key = default_file("postgresql.key").ok_or(TlsError::ClientKeyMissing {
                path: PathBuf::from("~/.postgresql/postgresql.key"),
            })?;
            &default_key
        }
    };
    let pem = std::fs::read(key_path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TlsError::ClientKeyMissing {
                path: key_path.to_owned(),
            }
        } else {
            TlsError::ClientKeyUnreadable {
                path: key_path.to_owned(),
                source,
            }
        }
    })?;
    check_key_permissions(key_path)?;
    if is_encrypted(&pem) {
        return Err(TlsError::ClientKeyEncrypted {
            path: key_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::ClientKeyInvalid {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Some((chain, key)))
}

/// Whether a PEM key is protected by a passphrase (PKCS#8 `ENCRYPTED
/// PRIVATE KEY`, or a legacy OpenSSL key with `Proc-Type: 4,ENCRYPTED`).
fn is_encrypted(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

/// libpq's rule for the key file: no access for group or others, except a
/// root-owned file readable by its group.
#[cfg(unix)]
fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.mode() & 0o777;
    let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
    if mode & !allowed != 0 {
        return Err(TlsError::ClientKeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path) -> Result<(), TlsError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_keys_are_recognised() {
        assert!(is_encrypted(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nabc\n"
        ));
        assert!(is_encrypted(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES\n"
        ));
        assert!(!is_encrypted(b"-----BEGIN PRIVATE KEY-----\nabc\n"));
    }

    #[test]
    fn a_missing_certificate_file_means_no_client_certificate() {
        let missing = Path::new("/nonexistent/pgnotify/postgresql.crt");
        assert!(matches!(load(Some(missing), None), Ok(None)));
    }
}
