//! `tls-server-end-point` channel binding (RFC 5929 §4), for SCRAM-SHA-256-PLUS.
//!
//! The binding data is a hash of the server's leaf certificate, with the hash
//! function of the certificate's own signature algorithm, except that MD5
//! and SHA-1 are replaced by SHA-256. PostgreSQL computes the same value on
//! its side; the two must match byte for byte, so the certificate is hashed
//! exactly as received (DER).
//!
//! Only the signature algorithm of the certificate is needed, so rather than
//! pull in an X.509 parser this module walks the three outer DER elements.

use sha2::Digest;

/// Hash functions a certificate signature may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// Computes the `tls-server-end-point` channel-binding data for the server's
/// leaf certificate `cert_der`.
///
/// Returns `None` when the certificate cannot be parsed or its signature
/// algorithm has no single hash function (Ed25519, for instance): RFC 5929
/// leaves the binding undefined there, PostgreSQL refuses it too, and the
/// client must then not offer SCRAM-SHA-256-PLUS.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let hash = signature_hash(cert_der)?;
    Some(match hash {
        Hash::Sha224 => sha2::Sha224::digest(cert_der).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(cert_der).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(cert_der).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(cert_der).to_vec(),
    })
}

/// The hash RFC 5929 §4.1 prescribes for this certificate.
fn signature_hash(cert_der: &[u8]) -> Option<Hash> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (certificate, _) = expect(cert_der, SEQUENCE)?;
    let (_tbs, rest) = expect(certificate, SEQUENCE)?;
    let (algorithm, _) = expect(rest, SEQUENCE)?;
    // AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }
    let (oid, parameters) = expect(algorithm, OID)?;
    match oid {
        RSA_PSS => pss_hash(parameters),
        _ => signature_oid_hash(oid),
    }
}

/// The hash of a signature algorithm with a fixed hash, upgraded per RFC 5929.
fn signature_oid_hash(oid: &[u8]) -> Option<Hash> {
    Some(match oid {
        MD5_RSA | SHA1_RSA | SHA1_ECDSA | SHA1_DSA => Hash::Sha256,
        SHA224_RSA | SHA224_ECDSA | SHA224_DSA => Hash::Sha224,
        SHA256_RSA | SHA256_ECDSA | SHA256_DSA => Hash::Sha256,
        SHA384_RSA | SHA384_ECDSA => Hash::Sha384,
        SHA512_RSA | SHA512_ECDSA => Hash::Sha512,
        _ => return None,
    })
}

/// The hash named in RSASSA-PSS parameters (RFC 4055 §3.1).
fn pss_hash(parameters: &[u8]) -> Option<Hash> {
    // RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] EXPLICIT
    //     AlgorithmIdentifier DEFAULT sha1, ... }
    let (fields, _) = expect(parameters, SEQUENCE)?;
    let Some((explicit, _)) = expect(fields, CONTEXT_0) else {
        return Some(Hash::Sha256); // the default, SHA-1, is upgraded
    };
    let (hash_algorithm, _) = expect(explicit, SEQUENCE)?;
    let (oid, _) = expect(hash_algorithm, OID)?;
    Some(match oid {
        SHA1 | SHA256 => Hash::Sha256,
        SHA224 => Hash::Sha224,
        SHA384 => Hash::Sha384,
        SHA512 => Hash::Sha512,
        _ => return None,
    })
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;

/// Reads one DER element with tag `tag`; returns its contents and what follows.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, rest) = rest.split_first()?;
    let (len, rest) = if len_byte < 0x80 {
        (usize::from(len_byte), rest)
    } else {
        let count = usize::from(len_byte & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

// Signature algorithm OIDs, as DER contents.
// 1.2.840.113549.1.1.{4,5,10,11,12,13,14}
const MD5_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04];
const SHA1_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const SHA224_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0e];
// 1.2.840.10045.4.1 and 1.2.840.10045.4.3.{1,2,3,4}
const SHA1_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
const SHA224_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01];
const SHA256_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const SHA384_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const SHA512_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
// 1.2.840.10040.4.3 and 2.16.840.1.101.3.4.3.{1,2}
const SHA1_DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03];
const SHA224_DSA: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x01];
const SHA256_DSA: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x02];
// Hash OIDs: 1.3.14.3.2.26 and 2.16.840.1.101.3.4.2.{1,2,3,4}
const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
const SHA224: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04];

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).expect("key generation");
        let params = rcgen::CertificateParams::new(vec!["db.example".into()]).expect("params");
        params
            .self_signed(&key)
            .expect("self-signed")
            .der()
            .to_vec()
    }

    #[test]
    fn ecdsa_p256_sha256_certificate_binds_with_sha256() {
        let der = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(signature_hash(&der), Some(Hash::Sha256));
        let expected = sha2::Sha256::digest(&der).to_vec();
        assert_eq!(tls_server_end_point(&der), Some(expected));
    }

    #[test]
    fn ecdsa_p384_sha384_certificate_binds_with_sha384() {
        let der = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(signature_hash(&der), Some(Hash::Sha384));
        let binding = tls_server_end_point(&der).expect("binding");
        assert_eq!(binding, sha2::Sha384::digest(&der).to_vec());
        assert_eq!(binding.len(), 48);
    }

    #[test]
    fn ed25519_certificate_has_no_binding() {
        let der = self_signed(&rcgen::PKCS_ED25519);
        assert_eq!(tls_server_end_point(&der), None);
    }

    #[test]
    fn sha1_and_md5_signatures_are_upgraded_to_sha256() {
        assert_eq!(signature_oid_hash(SHA1_RSA), Some(Hash::Sha256));
        assert_eq!(signature_oid_hash(MD5_RSA), Some(Hash::Sha256));
        assert_eq!(signature_oid_hash(SHA1_ECDSA), Some(Hash::Sha256));
        assert_eq!(signature_oid_hash(SHA512_RSA), Some(Hash::Sha512));
    }

    #[test]
    fn pss_parameters_name_the_hash_and_default_to_sha1() {
        // SEQUENCE { [0] { SEQUENCE { OID sha384 } } }
        let mut sha384 = vec![0x30, 15, 0xa0, 13, 0x30, 11, 0x06, 9];
        sha384.extend_from_slice(SHA384);
        assert_eq!(pss_hash(&sha384), Some(Hash::Sha384));
        // An empty parameter sequence means SHA-1, which is upgraded.
        assert_eq!(pss_hash(&[0x30, 0]), Some(Hash::Sha256));
    }

    #[test]
    fn truncated_or_garbage_certificates_give_no_binding() {
        let der = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        for len in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(
                tls_server_end_point(&der[..len]),
                None,
                "prefix of {len} bytes"
            );
        }
        assert_eq!(
            tls_server_end_point(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(tls_server_end_point(&[0x30, 0x80]), None);
    }
}
