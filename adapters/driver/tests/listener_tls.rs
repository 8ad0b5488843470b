//! A listener over TLS against a real PostgreSQL that refuses plain TCP,
//! authenticating with SCRAM-SHA-256-PLUS, on every runtime.
//!
//! The core picks SCRAM-SHA-256-PLUS whenever the driver hands it
//! channel-binding data and the server offers it (both hold here, unless the
//! server was built without channel binding: then the test says so and
//! proves TLS alone), and the server rejects a wrong binding, so a successful
//! login proves the driver's `tls-server-end-point` data was right.

mod common;

use common::support;

use std::path::Path;
use std::time::Duration;

use pgnotify_core::Config;
use pgnotify_core::config::{HostSpec, SslMode, SslRootCert};
use pgnotify_driver::{BusError, ListenerError, MaybeTlsStream, Runtime, TlsConnector, TlsError};
use pgnotify_testkit::server::{AuthMethod, TestServer};
use support::{Listener, fast, listen, next_notification, on_each_runtime, within};

fn tls_config(server: &TestServer, host: &str, mode: SslMode, ca: &Path) -> Config {
    let config = Config::builder()
        .host(HostSpec::Tcp {
            host: host.to_owned(),
            port: server.port(),
            hostaddr: Some([127, 0, 0, 1].into()),
        })
        .user("alice")
        .password("s3cret")
        .dbname("postgres")
        .application_name("tls")
        .ssl_mode(mode)
        .ssl_root_cert(SslRootCert::File(ca.to_owned()))
        .build()
        .expect("valid");
    fast(config)
}

/// The SASL mechanisms the server offers alice over TLS.
async fn offered_mechanisms(server: &TestServer) -> Vec<String> {
    let runtime = pgnotify_smol::SmolRuntime;
    let transport = runtime.connect_tcp(server.addr()).await.expect("connect");
    let mut stream = MaybeTlsStream::new(transport);
    common::write_all(&mut stream, &common::SSL_REQUEST)
        .await
        .expect("SSLRequest");
    assert_eq!(
        common::read_exact(&mut stream, 1).await.expect("reply"),
        b"S"
    );
    let connector = TlsConnector::for_ssl_mode(SslMode::Require, None).expect("connector");
    stream
        .start_tls(&connector, "db.test")
        .await
        .expect("TLS handshake");
    let reply = common::startup(&mut stream, "alice").await;
    common::sasl_mechanisms(&reply).expect("AuthenticationSASL")
}

#[test]
fn a_listener_over_tls_authenticates_with_scram_plus_in_every_verifying_mode() {
    let pki = common::pki(
        "pgnotify test CA",
        &["db.test"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    let server = TestServer::builder()
        .auth(AuthMethod::ScramSha256)
        .user("alice", "s3cret")
        .ssl(pki.cert_pem.clone(), pki.key_pem.clone())
        .hba_line("hostnossl all all 127.0.0.1/32 reject")
        .start()
        .expect("a server with ssl=on");
    let ca = server.data_dir().join("test-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write the CA");
    let other = common::pki("another CA", &["db.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let other_ca = server.data_dir().join("other-ca.pem");
    std::fs::write(&other_ca, &other.ca_pem).expect("write the other CA");
    // When the server offers SCRAM-SHA-256-PLUS it refuses a client that has binding data
    // yet says the server offered none, so each login below proves the listener used it.
    // Without it on offer (a build without channel binding) the listener logs in with
    // SCRAM-SHA-256, and the test still proves TLS in every mode.
    let offered = smol::block_on(offered_mechanisms(&server));
    if !offered.iter().any(|m| m == "SCRAM-SHA-256-PLUS") {
        pgnotify_testkit::skip(format_args!(
            "its SCRAM-SHA-256-PLUS part: PostgreSQL {} offers only {offered:?} (built without \
             channel binding); TLS in every mode is still tested",
            server.version()
        ));
    }
    let (server, ca, other_ca) = (&server, &ca, &other_ca);

    on_each_runtime(|rt| async move {
        let rt = &rt;
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            let listener = listen(rt, tls_config(server, "db.test", mode, ca)).await;
            let mut sub = listener.subscribe("secure").await.expect("subscribe");
            listener
                .notify("secure", mode.name())
                .await
                .expect("notify");
            assert_eq!(&*next_notification(rt, &mut sub).await.payload, mode.name());
            let pid = listener.backend_pid().expect("a backend pid");
            let ssl = server
                .execute(&format!("SELECT ssl FROM pg_stat_ssl WHERE pid = {pid}"))
                .expect("query");
            assert_eq!(ssl, "t", "{mode:?}");
            listener.close().await;
        }

        // A certificate from a CA not trusted: the first attempt fails with
        // the verification error rather than retrying forever.
        let untrusted = tls_config(server, "db.test", SslMode::VerifyFull, other_ca);
        let result = within(
            rt,
            "the failed connect",
            Listener::builder(untrusted)
                .runtime(rt.clone())
                .give_up_after(Duration::from_secs(10))
                .connect(),
        )
        .await;
        match result {
            Err(ListenerError::Connect(BusError::Transport(e))) => {
                assert!(e.to_string().contains("certificate"), "{e}");
                // The TLS error itself is kept as the source, for matching on.
                let cause = std::error::Error::source(&e).and_then(|s| s.downcast_ref());
                assert!(
                    matches!(cause, Some(TlsError::Certificate { .. })),
                    "expected TlsError::Certificate as the source, got {cause:?}"
                );
            }
            other => panic!("expected a TLS verification error, got {other:?}"),
        }
    });
}

/// Issue 15: PostgreSQL's documented self-signed setup (`openssl req -x509`,
/// a CA-flagged certificate, given as `sslrootcert`) works with
/// `verify-ca` and `verify-full`, as in libpq; an expired one, another
/// self-signed one, and a wrong host name are refused with sentences, not
/// Debug text.
#[test]
fn a_self_signed_server_certificate_given_as_the_root_is_trusted_as_libpq_does() {
    let self_signed = |names: &[&str], expired: bool| {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "db.test");
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = params.self_signed(&key).expect("certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = self_signed(&["db.test", "127.0.0.1"], false);
    let server = TestServer::builder()
        .auth(AuthMethod::ScramSha256)
        .user("alice", "s3cret")
        .ssl(cert.clone(), key)
        .hba_line("hostnossl all all 127.0.0.1/32 reject")
        .start()
        .expect("a server with ssl=on");
    let own = server.data_dir().join("server-as-root.pem");
    std::fs::write(&own, &cert).expect("write the root");
    let other = server.data_dir().join("other-self-signed.pem");
    std::fs::write(&other, self_signed(&["db.test"], false).0).expect("write");
    let (server, own, other) = (&server, &own, &other);

    on_each_runtime(|rt| async move {
        let rt = &rt;
        for (host, mode) in [
            ("elsewhere.test", SslMode::VerifyCa),
            ("db.test", SslMode::VerifyFull),
        ] {
            let listener = listen(rt, tls_config(server, host, mode, own)).await;
            assert!(listener.backend_pid().is_some(), "{mode:?} as {host}");
            listener.close().await;
        }
        for (host, mode, root, expected) in [
            (
                "elsewhere.test",
                SslMode::VerifyFull,
                own,
                "not valid for host name \"elsewhere.test\"",
            ),
            (
                "db.test",
                SslMode::VerifyCa,
                other,
                "it is a CA certificate, not a server's",
            ),
        ] {
            let result = within(
                rt,
                "the refused connect",
                Listener::builder(tls_config(server, host, mode, root))
                    .runtime(rt.clone())
                    .connect(),
            )
            .await;
            let error = match result {
                Err(ListenerError::Connect(error)) => error.to_string(),
                other => panic!("{mode:?} as {host}: expected a refusal, got {other:?}"),
            };
            assert!(error.contains(expected), "{mode:?} as {host}: {error}");
            assert!(
                !error.contains("Other(") && !error.contains("Error("),
                "{error}"
            );
        }
    });
}

/// An expired self-signed root is refused as expired.
#[test]
fn an_expired_self_signed_server_certificate_is_refused() {
    let names = vec!["db.test".to_owned()];
    let mut params = rcgen::CertificateParams::new(names).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    let server = TestServer::builder()
        .ssl(cert.pem(), key.serialize_pem())
        .hba_line("hostnossl all all 127.0.0.1/32 reject")
        .start()
        .expect("a server with ssl=on");
    let own = server.data_dir().join("expired-root.pem");
    std::fs::write(&own, cert.pem()).expect("write the root");
    let (server, own) = (&server, &own);
    on_each_runtime(|rt| async move {
        let result = within(
            &rt,
            "the refused connect",
            Listener::builder(tls_config(server, "db.test", SslMode::VerifyCa, own))
                .runtime(rt.clone())
                .connect(),
        )
        .await;
        match result {
            Err(ListenerError::Connect(error)) => {
                assert!(error.to_string().contains("has expired"), "{error}")
            }
            other => panic!("expected an expired certificate, got {other:?}"),
        }
    });
}

/// A CA and a client certificate it signed for `user` (its CommonName),
/// as PEM: (CA, certificate, key).
fn client_pki(user: &str) -> (String, String, String) {
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pgnotify client CA");
    let ca_key = rcgen::KeyPair::generate_for(alg).expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("client params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, user);
    let key = rcgen::KeyPair::generate_for(alg).expect("client key");
    let cert = params.signed_by(&key, &ca).expect("client certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Writes `text` to `path` with `mode`.
fn write_with_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Issue 15: client-certificate authentication (`hostssl … cert` in
/// pg_hba.conf) with `sslcert`/`sslkey`; a key readable by others and an
/// encrypted key are refused with libpq's reasons, before connecting.
#[test]
fn client_certificate_authentication_with_sslcert_and_sslkey() {
    let server_pki = common::pki(
        "pgnotify test CA",
        &["db.test"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    let (client_ca, client_cert, client_key) = client_pki("alice");
    // The server reads its client CA at start: a file the postgres user can read.
    let dir = std::env::temp_dir().join(format!("pgnotify-client-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let ca_file = dir.join("client-ca.pem");
    write_with_mode(&ca_file, &client_ca, 0o644);
    let server = TestServer::builder()
        .user("alice", "unused-password")
        .ssl(server_pki.cert_pem.clone(), server_pki.key_pem.clone())
        .setting("ssl_ca_file", ca_file.display().to_string())
        .hba_line("hostssl all alice 127.0.0.1/32 cert")
        .hba_line("hostnossl all all 127.0.0.1/32 reject")
        .start()
        .expect("a server asking for client certificates");
    let root = server.data_dir().join("root.pem");
    std::fs::write(&root, &server_pki.ca_pem).expect("write the root");
    let cert = dir.join("postgresql.crt");
    write_with_mode(&cert, &client_cert, 0o644);
    let key = dir.join("postgresql.key");
    write_with_mode(&key, &client_key, 0o600);
    let loose_key = dir.join("loose.key");
    write_with_mode(&loose_key, &client_key, 0o644);
    let encrypted_key = dir.join("encrypted.key");
    write_with_mode(
        &encrypted_key,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        0o600,
    );
    let with_cert = |key: &Path| {
        let url = format!(
            "postgres://alice@db.test:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full\
             &sslrootcert={}&sslcert={}&sslkey={}",
            server.port(),
            root.display(),
            cert.display(),
            key.display()
        );
        fast(Config::parse(&url).expect("a valid URL"))
    };
    let (with_cert, key, loose_key, encrypted_key) = (&with_cert, &key, &loose_key, &encrypted_key);
    let server = &server;

    on_each_runtime(|rt| async move {
        let rt = &rt;
        let listener = listen(rt, with_cert(key)).await;
        let pid = listener.backend_pid().expect("connected");
        let row = server
            .execute(&format!(
                "SELECT client_dn FROM pg_stat_ssl WHERE pid = {pid}"
            ))
            .expect("query");
        assert_eq!(row, "/CN=alice");
        listener.close().await;

        for (key, expected) in [
            (loose_key, "has group or world access"),
            (encrypted_key, "does not support sslpassword"),
        ] {
            let result = within(
                rt,
                "the refused connect",
                Listener::builder(with_cert(key))
                    .runtime(rt.clone())
                    .connect(),
            )
            .await;
            match result {
                Err(ListenerError::Connect(error)) => {
                    assert!(error.to_string().contains(expected), "{error}")
                }
                other => panic!("expected a key error, got {other:?}"),
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
