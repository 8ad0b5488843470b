//! The channel-binding data the driver computes must be what PostgreSQL
//! computes, or SCRAM-SHA-256-PLUS fails. These tests authenticate with
//! SCRAM-SHA-256-PLUS against a real server, by hand (postgres-protocol's
//! SCRAM client), using the driver's data; and they read a large result
//! over TLS, so that many TLS records pass through the driver's stream.

mod common;

use std::sync::OnceLock;

use common::{
    Pki, SSL_REQUEST, on_every_runtime, pki, read_exact, read_message, sasl_mechanisms,
    skip_without_scram_plus, startup, write_all,
};
use pgnotify_core::config::SslMode;
use pgnotify_driver::{MaybeTlsStream, Runtime, TlsConnector};
use pgnotify_testkit::server::{AuthMethod, TestServer};
use postgres_protocol::authentication::sasl::{
    ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramSha256,
};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

fn scram_server(alg: &'static rcgen::SignatureAlgorithm) -> (TestServer, Pki) {
    let pki = pki("pgnotify test CA", &["db.test"], alg);
    let server = TestServer::builder()
        .auth(AuthMethod::ScramSha256)
        .user(USER, PASSWORD)
        .ssl(pki.cert_pem.clone(), pki.key_pem.clone())
        .start()
        .expect("a PostgreSQL server with ssl=on and SCRAM");
    (server, pki)
}

fn p256_server() -> &'static (TestServer, Pki) {
    static SERVER: OnceLock<(TestServer, Pki)> = OnceLock::new();
    SERVER.get_or_init(|| scram_server(&rcgen::PKCS_ECDSA_P256_SHA256))
}

fn p384_server() -> &'static (TestServer, Pki) {
    static SERVER: OnceLock<(TestServer, Pki)> = OnceLock::new();
    SERVER.get_or_init(|| scram_server(&rcgen::PKCS_ECDSA_P384_SHA384))
}

/// Connects over TLS (sslmode=require) and returns the stream and binding.
async fn tls_stream(runtime: &dyn Runtime, server: &TestServer) -> (MaybeTlsStream, Vec<u8>) {
    let transport = runtime.connect_tcp(server.addr()).await.expect("connect");
    let mut stream = MaybeTlsStream::new(transport);
    write_all(&mut stream, &SSL_REQUEST).await.unwrap();
    assert_eq!(read_exact(&mut stream, 1).await.unwrap(), b"S");
    let connector = TlsConnector::for_ssl_mode(SslMode::Require, None).unwrap();
    let binding = stream.start_tls(&connector, "db.test").await.expect("TLS");
    (stream, binding.expect("channel-binding data"))
}

/// A frontend message: type byte, length, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Expects an `R` message with `code`; returns what follows the code.
fn auth_body(reply: (u8, Vec<u8>), code: u32) -> Vec<u8> {
    let (kind, body) = reply;
    assert_eq!(
        char::from(kind),
        'R',
        "expected an authentication message, got {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(body[..4], code.to_be_bytes(), "authentication code");
    body[4..].to_vec()
}

/// Sends a StartupMessage and returns the SASL mechanisms the server offers.
async fn offered_mechanisms(stream: &mut MaybeTlsStream) -> Vec<String> {
    let reply = startup(stream, USER).await;
    sasl_mechanisms(&reply).unwrap_or_else(|| {
        panic!(
            "expected AuthenticationSASL, got {:?}: {}",
            char::from(reply.0),
            String::from_utf8_lossy(&reply.1)
        )
    })
}

/// Runs SCRAM-SHA-256-PLUS with `binding`; returns the server's verdict
/// (`R` code 0 on success, `E` otherwise), or `None`, the test skipping, when
/// the server does not offer SCRAM-SHA-256-PLUS (a build without channel
/// binding).
async fn scram_plus(
    stream: &mut MaybeTlsStream,
    server: &TestServer,
    binding: Vec<u8>,
) -> Option<(u8, Vec<u8>)> {
    let offered = offered_mechanisms(stream).await;
    if skip_without_scram_plus(&offered, server) {
        return None;
    }
    Some(scram(stream, Some(binding)).await)
}

/// Runs the SCRAM exchange after AuthenticationSASL: SCRAM-SHA-256-PLUS with
/// `binding`, or SCRAM-SHA-256 without (saying the server offered no binding);
/// returns the server's verdict.
async fn scram(stream: &mut MaybeTlsStream, binding: Option<Vec<u8>>) -> (u8, Vec<u8>) {
    let (channel_binding, mechanism) = match binding {
        Some(data) => (
            ChannelBinding::tls_server_end_point(data),
            SCRAM_SHA_256_PLUS,
        ),
        None => (ChannelBinding::unrequested(), SCRAM_SHA_256),
    };
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), channel_binding);
    let mut initial = mechanism.as_bytes().to_vec();
    initial.push(0);
    initial.extend_from_slice(&(scram.message().len() as u32).to_be_bytes());
    initial.extend_from_slice(scram.message());
    write_all(stream, &message(b'p', &initial)).await.unwrap();

    let server_first = read_message(stream).await.unwrap();
    if server_first.0 == b'E' {
        return server_first;
    }
    scram
        .update(&auth_body(server_first, 11))
        .expect("server-first-message");
    write_all(stream, &message(b'p', scram.message()))
        .await
        .unwrap();

    let server_final = read_message(stream).await.unwrap();
    if server_final.0 == b'E' {
        return server_final;
    }
    scram
        .finish(&auth_body(server_final, 12))
        .expect("the server proves it knows the password");
    read_message(stream).await.unwrap()
}

fn assert_authenticated(reply: &(u8, Vec<u8>)) {
    assert!(
        common::is_authentication_ok(reply),
        "expected AuthenticationOk, got {:?}: {}",
        char::from(reply.0),
        String::from_utf8_lossy(&reply.1)
    );
}

#[test]
fn scram_sha_256_plus_succeeds_with_the_binding_of_a_sha256_certificate() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let (server, _) = p256_server();
            let (mut stream, binding) = tls_stream(&*runtime, server).await;
            assert_eq!(binding.len(), 32);
            if let Some(reply) = scram_plus(&mut stream, server, binding).await {
                assert_authenticated(&reply);
            }
        })
    });
}

#[test]
fn scram_sha_256_plus_succeeds_with_the_binding_of_a_sha384_certificate() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let (server, _) = p384_server();
            let (mut stream, binding) = tls_stream(&*runtime, server).await;
            assert_eq!(
                binding.len(),
                48,
                "RFC 5929: SHA-384 for an ecdsa-with-SHA384 certificate"
            );
            if let Some(reply) = scram_plus(&mut stream, server, binding).await {
                assert_authenticated(&reply);
            }
        })
    });
}

#[test]
fn scram_sha_256_plus_fails_with_wrong_binding_data() {
    // Guards the two tests above: the server does check the binding.
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let (server, _) = p256_server();
            let (mut stream, mut binding) = tls_stream(&*runtime, server).await;
            binding[0] ^= 1;
            if let Some(reply) = scram_plus(&mut stream, server, binding).await {
                assert_eq!(char::from(reply.0), 'E', "a wrong binding must be refused");
            }
        })
    });
}

#[test]
fn a_large_result_arrives_intact_over_tls() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let (server, _) = p256_server();
            let (mut stream, binding) = tls_stream(&*runtime, server).await;
            // Any SCRAM will do to log in: with channel binding where the server offers it.
            let offered = offered_mechanisms(&mut stream).await;
            let plus = offered.iter().any(|m| m == SCRAM_SHA_256_PLUS);
            let reply = scram(&mut stream, plus.then_some(binding)).await;
            assert_authenticated(&reply);
            loop {
                let (kind, _) = read_message(&mut stream).await.unwrap();
                if kind == b'Z' {
                    break;
                }
            }
            // 1 MB in one DataRow: dozens of TLS records, more than rustls buffers.
            let size = 1 << 20;
            let sql = format!("SELECT repeat('ab', {})\0", size / 2);
            write_all(&mut stream, &message(b'Q', sql.as_bytes()))
                .await
                .unwrap();
            let mut value = None;
            loop {
                let (kind, body) = read_message(&mut stream).await.unwrap();
                match kind {
                    b'D' => value = Some(body[6..].to_vec()),
                    b'Z' => break,
                    b'E' => panic!("query failed: {}", String::from_utf8_lossy(&body)),
                    _ => {}
                }
            }
            let value = value.expect("a data row");
            assert_eq!(value.len(), size);
            assert!(value.chunks(2).all(|pair| pair == b"ab"), "corrupted data");
        })
    });
}
