//! TLS against a real PostgreSQL with `ssl=on`, on every runtime: each
//! sslmode's certificate checks, the channel-binding data, and a startup
//! exchange over the encrypted stream.
//!
//! The server's `pg_hba.conf` rejects plain TCP, so an `AuthenticationOk`
//! proves the stream really is TLS.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{Pki, SSL_REQUEST, on_every_runtime, pki, read_exact, startup, write_all};
use pgnotify_core::config::{SslMode, SslRootCert};
use pgnotify_driver::{MaybeTlsStream, Runtime, TlsConnector, TlsError, Verification};
use pgnotify_testkit::server::{SUPERUSER, TestServer};
use sha2::Digest;

/// A server with a certificate for `db.test` and `127.0.0.1`, its CA in a
/// file, and other CAs that signed nothing of it.
struct Fixture {
    server: TestServer,
    pki: Pki,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    /// A different CA with the same name as the one that signed.
    same_name_ca_file: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| tls_server(&rcgen::PKCS_ECDSA_P256_SHA256))
}

fn tls_server(alg: &'static rcgen::SignatureAlgorithm) -> Fixture {
    let pki = pki("pgnotify test CA", &["db.test", "127.0.0.1"], alg);
    let server = TestServer::builder()
        .ssl(pki.cert_pem.clone(), pki.key_pem.clone())
        .hba_line("hostnossl all all 127.0.0.1/32 reject")
        .start()
        .expect("a PostgreSQL server with ssl=on");
    // The data directory is private to this server and removed with it.
    let ca_file = server.data_dir().join("test-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write the CA file");
    let other = common::pki("another CA", &["db.test"], alg);
    let same_name = common::pki("pgnotify test CA", &["db.test"], alg);
    let same_name_ca_file = server.data_dir().join("same-name-ca.pem");
    std::fs::write(&same_name_ca_file, &same_name.ca_pem).expect("write the impostor CA file");
    let other_ca_file = server.data_dir().join("other-ca.pem");
    std::fs::write(&other_ca_file, &other.ca_pem).expect("write the other CA file");
    Fixture {
        server,
        pki,
        ca_file,
        other_ca_file,
        same_name_ca_file,
    }
}

/// Connects to the fixture's server, asks for TLS and gets `S`.
async fn negotiated(runtime: &dyn Runtime, fixture: &Fixture) -> MaybeTlsStream {
    let transport = runtime
        .connect_tcp(fixture.server.addr())
        .await
        .expect("TCP connect");
    let mut stream = MaybeTlsStream::new(transport);
    write_all(&mut stream, &SSL_REQUEST)
        .await
        .expect("send SSLRequest");
    let answer = read_exact(&mut stream, 1).await.expect("SSLRequest answer");
    assert_eq!(answer, b"S", "the server should accept SSLRequest");
    stream
}

/// Handshakes as `host` with `connector` and, on success, checks that the
/// startup exchange works over TLS.
async fn handshake(
    runtime: &dyn Runtime,
    fixture: &Fixture,
    connector: &TlsConnector,
    host: &str,
) -> Result<Option<Vec<u8>>, TlsError> {
    let mut stream = negotiated(runtime, fixture).await;
    let binding = stream.start_tls(connector, host).await?;
    assert!(stream.is_tls());
    let reply = startup(&mut stream, SUPERUSER).await;
    assert!(
        common::is_authentication_ok(&reply),
        "expected AuthenticationOk over TLS, got {:?} {:?}",
        char::from(reply.0),
        String::from_utf8_lossy(&reply.1)
    );
    Ok(binding)
}

/// Handshakes as `host` with `connector`, which must fail; `why` says why.
async fn rejected(
    runtime: &dyn Runtime,
    fixture: &Fixture,
    connector: &TlsConnector,
    host: &str,
    why: &str,
) -> TlsError {
    handshake(runtime, fixture, connector, host)
        .await
        .expect_err(why)
}

/// Asserts that `error` is the certificate error `expected`.
fn assert_certificate_error(error: &TlsError, expected: rustls::CertificateError) {
    assert!(
        matches!(error, TlsError::Certificate { error, .. } if *error == expected),
        "expected the certificate error {expected:?}, got {error:?}"
    );
}

fn connector(verification: Verification, roots: Option<PathBuf>) -> TlsConnector {
    TlsConnector::new(verification, roots.map(SslRootCert::File).as_ref())
        .expect("a TLS configuration")
}

#[test]
fn plain_startup_is_rejected_so_the_other_tests_prove_tls() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let transport = runtime.connect_tcp(fixture.server.addr()).await.unwrap();
            let mut stream = MaybeTlsStream::new(transport);
            let (kind, body) = startup(&mut stream, SUPERUSER).await;
            assert_eq!(kind, b'E', "expected an ErrorResponse to a plain startup");
            let text = String::from_utf8_lossy(&body);
            // PostgreSQL 14 reworded the rejection ("SSL off" became "no encryption").
            let wording = if fixture.server.version().at_least(14) {
                "no encryption"
            } else {
                "SSL off"
            };
            assert!(text.contains(wording), "expected {wording:?} in: {text}");
        })
    });
}

#[test]
fn require_accepts_any_certificate_and_returns_the_sha256_channel_binding() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let connector = connector(Verification::None, None);
            // No name check: a host the certificate does not name is fine.
            let binding = handshake(&*runtime, fixture, &connector, "not-in-the.cert")
                .await
                .expect("handshake without verification");
            let expected = sha2::Sha256::digest(&fixture.pki.leaf_der).to_vec();
            assert_eq!(binding, Some(expected));
        })
    });
}

#[test]
fn verify_ca_accepts_the_right_ca_whatever_the_host_name() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let connector = connector(Verification::Chain, Some(fixture.ca_file.clone()));
            handshake(&*runtime, fixture, &connector, "not-in-the.cert")
                .await
                .expect("verify-ca with the issuing CA");
        })
    });
}

#[test]
fn verify_ca_rejects_a_certificate_from_another_ca() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let connector = connector(Verification::Chain, Some(fixture.other_ca_file.clone()));
            let why = "verify-ca with a CA that did not sign the certificate";
            let error = rejected(&*runtime, fixture, &connector, "db.test", why).await;
            assert_certificate_error(&error, rustls::CertificateError::UnknownIssuer);
            assert_eq!(
                error.to_string(),
                "the server certificate for \"db.test\" is not signed by a trusted root certificate"
            );
            assert!(!error.is_transient());
        })
    });
}

#[test]
fn verify_full_accepts_the_host_names_the_certificate_carries() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let connector = connector(Verification::Full, Some(fixture.ca_file.clone()));
            for host in ["db.test", "127.0.0.1"] {
                let binding = handshake(&*runtime, fixture, &connector, host)
                    .await
                    .unwrap_or_else(|e| panic!("verify-full as {host}: {e}"));
                assert!(binding.is_some());
            }
        })
    });
}

#[test]
fn verify_full_rejects_a_host_name_the_certificate_does_not_carry() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let connector = connector(Verification::Full, Some(fixture.ca_file.clone()));
            let why = "verify-full for a name the certificate lacks";
            let error = rejected(&*runtime, fixture, &connector, "other.test", why).await;
            assert_eq!(
                error.to_string(),
                "the server certificate is not valid for host name \"other.test\""
            );
        })
    });
}

#[test]
fn verify_full_rejects_a_certificate_from_another_ca_even_for_its_name() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let connector = connector(Verification::Full, Some(fixture.other_ca_file.clone()));
            let why = "verify-full with the wrong CA";
            let error = rejected(&*runtime, fixture, &connector, "db.test", why).await;
            assert_certificate_error(&error, rustls::CertificateError::UnknownIssuer);
        })
    });
}

#[test]
fn a_p384_certificate_binds_with_sha384() {
    let fixture = tls_server(&rcgen::PKCS_ECDSA_P384_SHA384);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = pgnotify_tokio::TokioRuntime::from_handle(tokio.handle().clone());
    let connector = connector(Verification::Full, Some(fixture.ca_file.clone()));
    let binding = tokio
        .block_on(handshake(&runtime, &fixture, &connector, "db.test"))
        .expect("verify-full with a P-384 certificate");
    let expected = sha2::Sha384::digest(&fixture.pki.leaf_der).to_vec();
    assert_eq!(binding, Some(expected));
}

#[test]
fn a_missing_root_certificate_file_fails_before_connecting_and_says_what_to_do() {
    let missing = PathBuf::from("/nonexistent/pgnotify/root.crt");
    let error = TlsConnector::new(Verification::Chain, Some(&SslRootCert::File(missing)))
        .expect_err("a missing root certificate file");
    assert!(
        matches!(error, TlsError::RootCertMissing { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("/nonexistent/pgnotify/root.crt") && text.contains("sslrootcert=system"),
        "{text}"
    );
}

#[test]
fn a_root_certificate_file_without_certificates_is_rejected() {
    let fixture = fixture();
    let empty = fixture.server.data_dir().join("empty-ca.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let error = TlsConnector::new(Verification::Full, Some(&SslRootCert::File(empty)))
        .expect_err("a file without certificates");
    assert!(
        matches!(error, TlsError::RootCertInvalid { .. }),
        "{error:?}"
    );
}

#[test]
fn verification_without_sslrootcert_uses_libpqs_default_file() {
    let default = std::env::var_os("HOME")
        .map(|home| std::path::Path::new(&home).join(".postgresql/root.crt"));
    match TlsConnector::new(Verification::Chain, None) {
        Err(TlsError::RootCertMissing { path }) => assert_eq!(Some(path), default),
        Err(TlsError::RootCertUnset) => assert_eq!(default, None),
        Err(other) => panic!("expected the default root.crt to be looked for, got {other:?}"),
        Ok(_) => assert!(default.is_some_and(|path| path.exists())),
    }
}

#[test]
fn require_with_an_explicit_root_cert_verifies_the_chain_like_libpq() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let wrong = SslRootCert::File(fixture.other_ca_file.clone());
            let connector = TlsConnector::for_ssl_mode(SslMode::Require, Some(&wrong)).unwrap();
            assert_eq!(connector.verification(), Verification::Chain);
            let why = "require with a root certificate that did not sign";
            let error = rejected(&*runtime, fixture, &connector, "db.test", why).await;
            assert!(matches!(error, TlsError::Certificate { .. }), "{error:?}");

            let right = SslRootCert::File(fixture.ca_file.clone());
            let connector = TlsConnector::for_ssl_mode(SslMode::Require, Some(&right)).unwrap();
            handshake(&*runtime, fixture, &connector, "not-in-the.cert")
                .await
                .expect("require with the right root certificate, any host name");
        })
    });
}

#[test]
fn verify_ca_rejects_a_different_ca_with_the_issuers_name() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let fixture = fixture();
            let roots = Some(fixture.same_name_ca_file.clone());
            let connector = connector(Verification::Chain, roots);
            let why = "verify-ca with an impostor CA of the same name";
            let error = rejected(&*runtime, fixture, &connector, "db.test", why).await;
            assert_certificate_error(&error, rustls::CertificateError::BadSignature);
            assert!(error.to_string().contains("did not sign it"), "{error}");
        })
    });
}
