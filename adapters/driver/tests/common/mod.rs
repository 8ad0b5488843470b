//! Shared by the driver's integration tests: running one async test body on
//! every runtime, certificates made on the spot, and the few raw protocol
//! bytes needed before the core's protocol layer is wired in.

#![allow(dead_code, unreachable_pub)]

use std::future::poll_fn;
use std::io;

use pgnotify_driver::MaybeTlsStream;

#[path = "../support/mod.rs"]
pub mod support;

/// Runs a test body on tokio, smol and async-std in turn, naming the runtime
/// if it panics (one definition, shared with the listener suites).
#[allow(unused_imports)] // not every test crate that includes this module uses it
pub use support::on_each_runtime as on_every_runtime;

/// A CA and a server certificate it signed, all PEM.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub leaf_der: Vec<u8>,
}

/// Makes a CA named `ca_name` and a server certificate for `names` (DNS
/// names or IP addresses), both with keys of `alg`.
pub fn pki(ca_name: &str, names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_key = rcgen::KeyPair::generate_for(alg).expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");

    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("server params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pgnotify test server");
    let key = rcgen::KeyPair::generate_for(alg).expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        leaf_der: cert.der().to_vec(),
    }
}

/// PostgreSQL's SSLRequest: length 8, code 80877103.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A protocol 3.0 StartupMessage for `user` on database `postgres`.
pub fn startup_message(user: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in [("user", user), ("database", "postgres")] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

/// Writes all of `data` and flushes it.
pub async fn write_all(stream: &mut MaybeTlsStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| stream.poll_write(cx, data)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    poll_fn(|cx| stream.poll_flush(cx)).await
}

/// Reads exactly `len` bytes.
pub async fn read_exact(stream: &mut MaybeTlsStream, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let n = poll_fn(|cx| stream.poll_read(cx, &mut buf[filled..])).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    Ok(buf)
}

/// Reads one backend message: its type byte and body.
pub async fn read_message(stream: &mut MaybeTlsStream) -> io::Result<(u8, Vec<u8>)> {
    let header = read_exact(stream, 5).await?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let body = read_exact(stream, len.saturating_sub(4)).await?;
    Ok((header[0], body))
}

/// Sends a StartupMessage and returns the server's first reply.
pub async fn startup(stream: &mut MaybeTlsStream, user: &str) -> (u8, Vec<u8>) {
    write_all(stream, &startup_message(user))
        .await
        .expect("send StartupMessage");
    read_message(stream).await.expect("the server's reply")
}

/// The SASL mechanisms the server offers in an `AuthenticationSASL` message body (code 10
/// followed by NUL-terminated names), or `None` when the message is another one.
pub fn sasl_mechanisms(message: &(u8, Vec<u8>)) -> Option<Vec<String>> {
    let (kind, body) = message;
    if *kind != b'R' || body.get(..4)? != [0, 0, 0, 10] {
        return None;
    }
    Some(
        body[4..]
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect(),
    )
}

/// For a test of SCRAM-SHA-256-PLUS: `true`, after printing why the test skips, when the
/// server did not offer it (over TLS, a server built without channel binding offers only
/// SCRAM-SHA-256). `offered` is what its `AuthenticationSASL` listed.
pub fn skip_without_scram_plus(
    offered: &[String],
    server: &pgnotify_testkit::server::TestServer,
) -> bool {
    if offered.iter().any(|m| m == "SCRAM-SHA-256-PLUS") {
        return false;
    }
    pgnotify_testkit::skip(format_args!(
        "PostgreSQL {} offers no SCRAM-SHA-256-PLUS over TLS (built without channel binding); \
         it offered {offered:?}",
        server.version()
    ));
    true
}

/// `AuthenticationOk`: type `R`, code 0.
pub fn is_authentication_ok(message: &(u8, Vec<u8>)) -> bool {
    message.0 == b'R' && message.1 == [0, 0, 0, 0]
}
