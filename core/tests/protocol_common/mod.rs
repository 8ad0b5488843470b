//! Scripted-server harness for the protocol tests.
//!
//! A script is a list of steps: bytes the server sends, replies computed from
//! what the client has sent so far (for SCRAM), and calls on the connection.
//! [`run_all`] plays a script with the server's bytes delivered whole, byte
//! by byte and in seeded random chunks, and checks that every delivery gives
//! the same events and the same transmitted bytes.
//!
//! Still to test against a real server (the testkit's throwaway cluster),
//! once it exists: trust, password, md5 and scram-sha-256 logins with right
//! and wrong passwords (28P01) and an unknown database (3D000); TLS with
//! `sslmode=require` and SCRAM-SHA-256-PLUS with the driver's
//! tls-server-end-point hash; `ssl=off` with Prefer (plaintext) and Require
//! (TlsRefused); LISTEN then NOTIFY from another session arriving as a
//! notification with that session's pid; a pipeline of publishes with one
//! over-long payload failing alone; pg_terminate_backend during a query
//! giving Failed(Server 57P01); `DISCARD ALL` between publishes (statement
//! re-parsed); and `in_hot_standby` on a standby (PostgreSQL 14+).

#![allow(dead_code, unreachable_pub)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use pgnotify_core::protocol::{Connection, StartupParams, TlsNegotiation, WireEvent};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- scripts --

/// Computes server bytes from everything the client has sent so far.
pub type ReplyFn = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// One step of a script.
pub enum Step {
    /// The server sends these bytes.
    Server(Vec<u8>),
    /// The server sends bytes computed from the client's bytes so far.
    Reply(ReplyFn),
    /// The test calls the connection (simple_query, publish, terminate...).
    Call(Box<dyn Fn(&mut Connection)>),
    /// The driver reports a finished TLS handshake.
    TlsEstablished(Option<Vec<u8>>),
}

pub fn server(bytes: impl AsRef<[u8]>) -> Step {
    Step::Server(bytes.as_ref().to_vec())
}

pub fn call(f: impl Fn(&mut Connection) + 'static) -> Step {
    Step::Call(Box::new(f))
}

pub fn reply(f: impl Fn(&[u8]) -> Vec<u8> + 'static) -> Step {
    Step::Reply(Box::new(f))
}

/// How the server's bytes are cut into `handle_input` calls.
#[derive(Clone, Copy, Debug)]
pub enum Chunking {
    Whole,
    ByteByByte,
    Random(u64),
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<WireEvent>,
    pub sent: Vec<u8>,
}

impl Outcome {
    /// The last event, usually the one a test is about.
    pub fn last(&self) -> &WireEvent {
        self.events.last().expect("no events")
    }

    /// The client's messages, decoded into (tag, body); untagged startup
    /// packets have tag 0.
    pub fn messages(&self) -> Vec<(u8, Vec<u8>)> {
        client_messages(&self.sent)
    }

    /// Just the tags of the client's messages, as a string.
    pub fn tags(&self) -> String {
        self.messages()
            .iter()
            .map(|(t, _)| if *t == 0 { '_' } else { char::from(*t) })
            .collect()
    }

    /// Events other than ParameterStatus (which startup scripts send many of).
    pub fn main_events(&self) -> Vec<WireEvent> {
        self.events
            .iter()
            .filter(|e| !matches!(e, WireEvent::ParameterStatus { .. }))
            .cloned()
            .collect()
    }
}

/// A tiny xorshift generator for seeded chunk sizes.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn drain(conn: &mut Connection, out: &mut Outcome, failed: &mut bool) {
    let before = (out.events.len(), out.sent.len());
    conn.poll_transmit(&mut out.sent);
    while let Some(e) = conn.poll_event() {
        out.events.push(e);
    }
    if *failed {
        assert_eq!(
            (out.events.len(), out.sent.len()),
            before,
            "the connection produced output after Failed: {:?}",
            &out.events[before.0..]
        );
    }
    if matches!(out.events.last(), Some(WireEvent::Failed(_))) {
        *failed = true;
    }
}

/// Plays `script` once with the given chunking.
pub fn run(params: StartupParams, script: &[Step], chunking: Chunking) -> Outcome {
    let mut conn = Connection::new(params);
    let mut out = Outcome {
        events: Vec::new(),
        sent: Vec::new(),
    };
    let mut failed = false;
    let mut rng = match chunking {
        Chunking::Random(seed) => Some(XorShift::new(seed)),
        _ => None,
    };
    drain(&mut conn, &mut out, &mut failed);
    for step in script {
        match step {
            Step::Server(bytes) => {
                feed(&mut conn, bytes, chunking, &mut rng, &mut out, &mut failed)
            }
            Step::Reply(f) => {
                let bytes = f(&out.sent);
                feed(&mut conn, &bytes, chunking, &mut rng, &mut out, &mut failed);
            }
            Step::Call(f) => {
                f(&mut conn);
                drain(&mut conn, &mut out, &mut failed);
            }
            Step::TlsEstablished(cb) => {
                conn.handle_tls_established(cb.clone());
                drain(&mut conn, &mut out, &mut failed);
            }
        }
    }
    out
}

fn feed(
    conn: &mut Connection,
    bytes: &[u8],
    chunking: Chunking,
    rng: &mut Option<XorShift>,
    out: &mut Outcome,
    failed: &mut bool,
) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = match (chunking, rng.as_mut()) {
            (Chunking::Whole, _) => rest.len(),
            (Chunking::ByteByByte, _) => 1,
            (Chunking::Random(_), Some(r)) => 1 + r.below(rest.len().min(64)),
            (Chunking::Random(_), None) => unreachable!(),
        };
        let (now, later) = rest.split_at(n);
        conn.handle_input(now);
        drain(conn, out, failed);
        rest = later;
    }
}

/// How runs are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Events and transmitted bytes must be identical.
    Exact,
    /// Events identical; transmitted messages identical in tags and lengths
    /// (SCRAM's client nonce is random, so its bytes differ run to run).
    Framing,
}

/// Plays `script` whole, byte by byte and with several random chunkings;
/// asserts that all give the same outcome, and returns it.
pub fn run_all_with(params: StartupParams, script: &[Step], compare: Compare) -> Outcome {
    let whole = run(params.clone(), script, Chunking::Whole);
    let mut others = vec![(
        Chunking::ByteByByte,
        run(params.clone(), script, Chunking::ByteByByte),
    )];
    for seed in 1..=8 {
        let c = Chunking::Random(seed);
        others.push((c, run(params.clone(), script, c)));
    }
    for (chunking, other) in others {
        assert_eq!(
            whole.events, other.events,
            "events differ between whole input and {chunking:?}"
        );
        match compare {
            Compare::Exact => assert_eq!(
                whole.sent, other.sent,
                "transmitted bytes differ between whole input and {chunking:?}"
            ),
            Compare::Framing => assert_eq!(
                framing(&whole.sent),
                framing(&other.sent),
                "transmitted framing differs between whole input and {chunking:?}"
            ),
        }
    }
    whole
}

/// [`run_all_with`] comparing bytes exactly.
pub fn run_all(params: StartupParams, script: &[Step]) -> Outcome {
    run_all_with(params, script, Compare::Exact)
}

fn framing(sent: &[u8]) -> Vec<(u8, usize)> {
    client_messages(sent)
        .into_iter()
        .map(|(t, b)| (t, b.len()))
        .collect()
}

/// Splits client bytes into messages; startup packets (no tag) get tag 0.
pub fn client_messages(mut sent: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !sent.is_empty() {
        let (tag, rest) = if sent[0] == 0 {
            (0, sent)
        } else {
            (sent[0], &sent[1..])
        };
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push((tag, rest[4..len].to_vec()));
        sent = &rest[len..];
    }
    out
}

// ----------------------------------------------------------- parameters --

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret";

/// Plaintext, no password.
pub fn params() -> StartupParams {
    let mut p = StartupParams::new(USER);
    p.database = Some("app".into());
    p.application_name = Some("pgnotify-test".into());
    p.tls = TlsNegotiation::Disable;
    p
}

pub fn params_with_password() -> StartupParams {
    let mut p = params();
    p.password = Some(PASSWORD.into());
    p
}

// -------------------------------------------------------- server messages --

pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

pub fn auth(code: i32, rest: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(rest);
    frame(b'R', &body)
}

pub fn auth_ok() -> Vec<u8> {
    auth(0, &[])
}

pub fn auth_sasl(mechanisms: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for m in mechanisms {
        cstr(&mut body, m);
    }
    body.push(0);
    auth(10, &body)
}

pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, name);
    cstr(&mut body, value);
    frame(b'S', &body)
}

pub fn backend_key(pid: i32, key: i32) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(&key.to_be_bytes());
    frame(b'K', &body)
}

pub fn ready(status: u8) -> Vec<u8> {
    frame(b'Z', &[status])
}

pub fn error_fields(tag: u8, severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(f);
        cstr(&mut body, v);
    }
    body.push(0);
    frame(tag, &body)
}

pub fn error(severity: &str, code: &str, message: &str) -> Vec<u8> {
    error_fields(b'E', severity, code, message)
}

pub fn notice(message: &str) -> Vec<u8> {
    error_fields(b'N', "WARNING", "01000", message)
}

pub fn notification(pid: i32, channel: &str, payload: &str) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    cstr(&mut body, channel);
    cstr(&mut body, payload);
    frame(b'A', &body)
}

pub fn row_description(columns: &[&str]) -> Vec<u8> {
    let mut body = (columns.len() as u16).to_be_bytes().to_vec();
    for c in columns {
        cstr(&mut body, c);
        body.extend_from_slice(&0u32.to_be_bytes()); // table oid
        body.extend_from_slice(&0i16.to_be_bytes()); // column
        body.extend_from_slice(&25u32.to_be_bytes()); // type text
        body.extend_from_slice(&(-1i16).to_be_bytes()); // size
        body.extend_from_slice(&(-1i32).to_be_bytes()); // modifier
        body.extend_from_slice(&0i16.to_be_bytes()); // format
    }
    frame(b'T', &body)
}

pub fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut body = (values.len() as u16).to_be_bytes().to_vec();
    for v in values {
        match v {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(s) => {
                body.extend_from_slice(&(s.len() as i32).to_be_bytes());
                body.extend_from_slice(s.as_bytes());
            }
        }
    }
    frame(b'D', &body)
}

pub fn command_complete(tag: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, tag);
    frame(b'C', &body)
}

pub fn parse_complete() -> Vec<u8> {
    frame(b'1', &[])
}

pub fn bind_complete() -> Vec<u8> {
    frame(b'2', &[])
}

/// The server's answer to one successful publish.
pub fn publish_ok() -> Vec<u8> {
    let mut v = parse_complete();
    v.extend(bind_complete());
    v.extend(data_row(&[Some("")]));
    v.extend(command_complete("SELECT 1"));
    v.extend(ready(b'I'));
    v
}

/// A typical startup after authentication: parameters, key data, ready.
pub fn startup_tail() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(parameter_status("server_version", "15.4"));
    v.extend(parameter_status("in_hot_standby", "off"));
    v.extend(parameter_status("client_encoding", "UTF8"));
    v.extend(backend_key(4242, 0x1234_5678));
    v.extend(ready(b'I'));
    v
}

/// Trust authentication and startup: a connection that ends up Ready.
pub fn trust_startup() -> Step {
    let mut v = auth_ok();
    v.extend(startup_tail());
    server(v)
}

pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ----------------------------------------------------------------- SCRAM --

pub const SALT: &[u8] = b"pgnotify-salt-16";
pub const ITERATIONS: u32 = 256; // low: the tests run in debug builds
pub const SERVER_NONCE: &str = "serverNONCEpart";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hi(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut salted = salt.to_vec();
    salted.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &salted);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(&u) {
            *o ^= x;
        }
    }
    out
}

/// The data of the client's SASLInitialResponse: (mechanism, client-first).
pub fn sasl_initial(sent: &[u8]) -> (String, String) {
    let (_, body) = client_messages(sent)
        .into_iter()
        .find(|(t, _)| *t == b'p')
        .expect("no SASLInitialResponse");
    let nul = body.iter().position(|&b| b == 0).unwrap();
    let mechanism = String::from_utf8(body[..nul].to_vec()).unwrap();
    let data = &body[nul + 5..];
    (mechanism, String::from_utf8(data.to_vec()).unwrap())
}

/// The data of the client's last SASLResponse (client-final).
pub fn sasl_response(sent: &[u8]) -> String {
    let (_, body) = client_messages(sent)
        .into_iter()
        .filter(|(t, _)| *t == b'p')
        .nth(1)
        .expect("no SASLResponse");
    String::from_utf8(body).unwrap()
}

fn server_first(client_first: &str) -> String {
    // The nonce may itself contain "r=", so strip the known prefix.
    let cnonce = client_first_bare(client_first)
        .strip_prefix("n=,r=")
        .unwrap();
    format!(
        "r={cnonce}{SERVER_NONCE},s={},i={ITERATIONS}",
        B64.encode(SALT)
    )
}

fn client_first_bare(client_first: &str) -> &str {
    // Skip the GS2 header ("n,,", "y,,", "p=tls-server-end-point,,").
    let mut parts = client_first.splitn(3, ',');
    parts.next();
    parts.next();
    parts.next().unwrap()
}

/// AuthenticationSASLContinue computed from the client-first message.
pub fn scram_continue(sent: &[u8]) -> Vec<u8> {
    let (_, client_first) = sasl_initial(sent);
    auth(11, server_first(&client_first).as_bytes())
}

/// Verifies the client's proof (panicking if wrong) and builds the
/// AuthenticationSASLFinal with the server's signature.
pub fn scram_final(sent: &[u8], expected_binding: &[u8]) -> Vec<u8> {
    let (_, client_first) = sasl_initial(sent);
    let client_final = sasl_response(sent);
    let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();

    let gs2_end = client_first.len() - client_first_bare(&client_first).len();
    let mut cbind = client_first.as_bytes()[..gs2_end].to_vec();
    cbind.extend_from_slice(expected_binding);
    assert_eq!(
        without_proof.split(',').next().unwrap(),
        format!("c={}", B64.encode(&cbind)),
        "channel binding in client-final"
    );

    let auth_message = format!(
        "{},{},{}",
        client_first_bare(&client_first),
        server_first(&client_first),
        without_proof
    );
    let salted = hi(PASSWORD.as_bytes(), SALT, ITERATIONS);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let expected: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    assert_eq!(B64.decode(proof).unwrap(), expected, "client proof");

    let server_key = hmac(&salted, b"Server Key");
    let verifier = hmac(&server_key, auth_message.as_bytes());
    auth(12, format!("v={}", B64.encode(verifier)).as_bytes())
}
