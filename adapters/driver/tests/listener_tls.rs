//! A listener over TLS against a real PostgreSQL that refuses plain TCP,
//! authenticating with SCRAM-SHA-256-PLUS, on every runtime.
//!
//! The core picks SCRAM-SHA-256-PLUS whenever the driver hands it
//! channel-binding data and the server offers it (both hold here), and the
//! server rejects a wrong binding, so a successful login proves the
//! driver's `tls-server-end-point` data was right.

// The errors are the library's own, matched on as they are.
#![allow(clippy::result_large_err)]

mod common;

use common::support;

use std::path::Path;
use std::time::Duration;

use pgnotify_core::Config;
use pgnotify_core::config::{HostSpec, SslMode, SslRootCert};
use pgnotify_driver::{BusError, ListenerError};
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
                assert!(e.to_string().contains("certificate"), "{e}")
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
