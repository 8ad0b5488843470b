//! The fault proxy: every mode with real traffic, against an echo server and a real PostgreSQL.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use pgnotify_testkit::proxy::{Direction, FaultProxy, Mode};
use pgnotify_testkit::server::TestServer;

const WAIT: Duration = Duration::from_secs(10);

/// Long enough that a relayed byte would have arrived; used only to show that none does.
const QUIET: Duration = Duration::from_millis(300);

/// An upstream that echoes every byte and, when a connection ends, reports all it received.
struct EchoServer {
    addr: SocketAddr,
    received: Receiver<Vec<u8>>,
}

impl EchoServer {
    fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let (report, received) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let report = report.clone();
                thread::spawn(move || {
                    let mut all = Vec::new();
                    let mut buf = [0; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        all.extend_from_slice(&buf[..n]);
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = report.send(all);
                });
            }
        });
        Self { addr, received }
    }

    /// What the next connection to end had received in total.
    fn next_report(&self) -> Vec<u8> {
        self.received
            .recv_timeout(WAIT)
            .expect("an upstream connection ended")
    }
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).unwrap();
    let mut answer = vec![0; message.len()];
    stream.read_exact(&mut answer).unwrap();
    answer
}

/// Reads until end-of-file (or a reset), returning everything read.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("expected the connection to close, got {e}"),
        }
    }
}

#[test]
fn pass_relays_both_ways_and_counts_open_connections() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    assert_eq!(proxy.mode(), Mode::Pass);
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    assert_eq!(round_trip(&mut a, b"hello"), b"hello");
    assert_eq!(round_trip(&mut b, b"world"), b"world");
    assert!(proxy.wait_for_connection_count(2, WAIT));

    a.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_to_close(&mut a),
        b"",
        "the half-close reached the server and back"
    );
    assert_eq!(echo.next_report(), b"hello");
    assert!(
        proxy.wait_for_connection_count(1, WAIT),
        "{}",
        proxy.connection_count()
    );
    drop(b);
    assert!(proxy.wait_for_connection_count(0, WAIT));
}

#[test]
fn black_hole_holds_traffic_with_connections_open_and_releases_it_when_healed() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    let mut stream = connect(&proxy);
    assert_eq!(round_trip(&mut stream, b"before"), b"before");

    proxy.set_mode(Mode::BlackHole);
    stream.write_all(b"lost?").unwrap();
    stream.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0; 16];
    let quiet = stream.read(&mut buf);
    assert!(
        matches!(&quiet, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "a black hole let something through: {quiet:?}"
    );
    assert_eq!(
        proxy.connection_count(),
        1,
        "a black hole closed the connection"
    );
    // New connections are accepted but stay silent too.
    let mut late = connect(&proxy);
    late.write_all(b"late").unwrap();
    assert!(proxy.wait_for_connection_count(2, WAIT));

    proxy.set_mode(Mode::Pass);
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut held = [0; 5];
    stream.read_exact(&mut held).unwrap();
    assert_eq!(
        &held, b"lost?",
        "held bytes were not delivered after healing"
    );
    let mut held = [0; 4];
    late.read_exact(&mut held).unwrap();
    assert_eq!(&held, b"late");
}

#[test]
fn cut_all_closes_current_connections_and_lets_new_ones_through() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    let mut stream = connect(&proxy);
    assert_eq!(round_trip(&mut stream, b"ping"), b"ping");

    assert_eq!(proxy.cut_all(), 1);
    assert_eq!(proxy.connection_count(), 0);
    assert_eq!(read_to_close(&mut stream), b"");
    assert_eq!(
        echo.next_report(),
        b"ping",
        "the server side was closed too"
    );

    let mut fresh = connect(&proxy);
    assert_eq!(round_trip(&mut fresh, b"again"), b"again");
}

#[test]
fn latency_delays_every_chunk_and_keeps_the_bytes_intact() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    let delay = Duration::from_millis(100);
    proxy.set_mode(Mode::Latency(delay));
    let mut stream = connect(&proxy);
    let started = Instant::now();
    assert_eq!(round_trip(&mut stream, b"slow"), b"slow");
    // A lower bound, which cannot flake: each direction slept at least `delay`.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= 2 * delay,
        "a round trip took {elapsed:?} with {delay:?} each way"
    );
}

#[test]
fn cut_after_server_to_client_bytes_delivers_exactly_that_many() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    proxy.set_mode(Mode::CutAfter {
        bytes: 1000,
        direction: Direction::ServerToClient,
    });
    let mut stream = connect(&proxy);
    let message: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    stream.write_all(&message).unwrap();
    let got = read_to_close(&mut stream);
    assert_eq!(got.len(), 1000);
    assert_eq!(got, message[..1000]);
    assert!(proxy.wait_for_connection_count(0, WAIT));
}

#[test]
fn cut_after_client_to_server_bytes_lets_the_server_see_exactly_that_many() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    proxy.set_mode(Mode::CutAfter {
        bytes: 10,
        direction: Direction::ClientToServer,
    });
    let mut stream = connect(&proxy);
    stream.write_all(b"0123456789abcdef").unwrap();
    assert_eq!(echo.next_report(), b"0123456789");
    read_to_close(&mut stream);
}

#[test]
fn cut_after_both_directions_counts_the_sum_from_when_the_mode_is_set() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    let mut stream = connect(&proxy);
    // Traffic before the mode is set does not count.
    assert_eq!(
        round_trip(&mut stream, b"warm-up traffic"),
        b"warm-up traffic"
    );

    proxy.set_mode(Mode::CutAfter {
        bytes: 10,
        direction: Direction::Both,
    });
    stream.write_all(b"sixsix").unwrap(); // 6 bytes up, then 4 of the 6 echoed down
    assert_eq!(read_to_close(&mut stream), b"sixs");
}

#[test]
fn reject_closes_new_connections_but_keeps_current_ones() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).unwrap();
    let mut current = connect(&proxy);
    assert_eq!(round_trip(&mut current, b"one"), b"one");

    proxy.set_mode(Mode::Reject);
    let mut rejected = connect(&proxy);
    assert_eq!(read_to_close(&mut rejected), b"");
    assert_eq!(round_trip(&mut current, b"two"), b"two");
    assert_eq!(proxy.connection_count(), 1);

    proxy.set_mode(Mode::Pass);
    let mut accepted = connect(&proxy);
    assert_eq!(round_trip(&mut accepted, b"three"), b"three");
}

#[test]
fn a_stopped_target_closes_connections_through_the_proxy() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let proxy = FaultProxy::start(addr).unwrap();
    let mut stream = connect(&proxy);
    assert_eq!(read_to_close(&mut stream), b"");
    assert_eq!(proxy.connection_count(), 0);
}

/// Runs `psql -c sql` through the proxy and returns (success, stdout, stderr).
fn psql_via(server: &TestServer, proxy: &FaultProxy, sql: &str) -> (bool, String, String) {
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
        proxy.port()
    );
    let output = server
        .psql_command("postgres")
        .args(["--dbname", &conninfo, "-c", sql])
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_mode_against_a_real_postgres() {
    let server = TestServer::new().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();

    let (ok, out, err) = psql_via(&server, &proxy, "SELECT 'through'");
    assert!(ok && out == "through", "pass: {out} {err}");

    proxy.set_mode(Mode::Latency(Duration::from_millis(5)));
    let (ok, out, err) = psql_via(&server, &proxy, "SELECT 'slowly'");
    assert!(ok && out == "slowly", "latency: {out} {err}");

    proxy.set_mode(Mode::BlackHole);
    let (ok, _, err) = psql_via(&server, &proxy, "SELECT 1");
    assert!(!ok && err.contains("timeout expired"), "black hole: {err}");

    // A result bigger than the limit: the connection drops mid-answer.
    proxy.set_mode(Mode::CutAfter {
        bytes: 2000,
        direction: Direction::ServerToClient,
    });
    let (ok, _, err) = psql_via(&server, &proxy, "SELECT repeat('x', 100000)");
    assert!(
        !ok && err.contains("server closed the connection unexpectedly"),
        "cut after: {err}"
    );

    proxy.set_mode(Mode::Reject);
    let (ok, _, err) = psql_via(&server, &proxy, "SELECT 1");
    assert!(
        !ok && err.contains("server closed the connection unexpectedly"),
        "reject: {err}"
    );

    proxy.set_mode(Mode::Pass);
    let (ok, out, err) = psql_via(&server, &proxy, "SELECT 'healed'");
    assert!(ok && out == "healed", "pass again: {out} {err}");
}

#[test]
fn cut_all_drops_a_live_postgres_session() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = TestServer::new().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        proxy.port()
    );
    let mut psql = server
        .psql_command("postgres")
        .args(["--dbname", &conninfo])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = psql.stdin.take().unwrap();
    let mut stdout = BufReader::new(psql.stdout.take().unwrap());
    writeln!(stdin, "SELECT 'one';").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "one");
    assert_eq!(proxy.connection_count(), 1);

    assert_eq!(proxy.cut_all(), 1);
    writeln!(stdin, "SELECT 'two';").unwrap();
    drop(stdin);
    let output = psql.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "psql survived the cut");
    assert!(stderr.contains("connection to server was lost"), "{stderr}");
}
