//! A listener over TLS against a real PostgreSQL that refuses plain TCP,
//! authenticating with SCRAM-SHA-256-PLUS, on every runtime.
//!
//! The core picks SCRAM-SHA-256-PLUS whenever the driver hands it
//! channel-binding data and the server offers it (both hold here, unless the
//! server was built without channel binding: then the test says so and
//! proves TLS alone), and the server rejects a wrong binding, so a successful
//! login proves the driver's `tls-server-end-point` data was right.

// The errors are the library's own, matched on as they are.
#![allow(clippy::result_large_err)]

mod common;

use common::support;

use std::path::Path;
use std::time::Duration;

use pgnotify_core::Config;
use pgnotify_core::config::{HostSpec, SslMode, SslRootCert};
use pgnotify_driver::{BusError, ListenerError, Runtime, Stream, TlsConnector};
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
    let mut stream = Stream::new(transport);
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
                assert!(e.to_string().contains("certificate"), "{e}")
            }
            other => panic!("expected a TLS verification error, got {other:?}"),
        }
    });
}
