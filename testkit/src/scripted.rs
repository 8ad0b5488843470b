//! A scripted server on a real socket: it speaks just enough of the
//! PostgreSQL protocol to bring a client to one hostile behaviour, then
//! keeps it up. A real PostgreSQL cannot be made to stream notices forever
//! during startup, to flood while never answering a ping, or to lie in
//! answer to SSLRequest; the deadline and trust tests need exactly that,
//! over a real socket and a real runtime.
//!
//! ```no_run
//! use pgnotify_testkit::scripted::{Script, ScriptedServer};
//!
//! let server = ScriptedServer::start(Script::NoticesDuringStartup).unwrap();
//! let url = server.url(); // connect a listener here; startup never ends
//! assert!(server.accepted().is_empty());
//! # let _ = url;
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fuzz::wire;

/// The request code of SSLRequest.
const SSL_REQUEST_CODE: u32 = 80_877_103;

/// The pid the scripted server reports and sends notifications from.
pub const SCRIPTED_PID: i32 = 4242;

/// How long a blocked write waits before the connection looks at the stop
/// flag again.
const WRITE_POLL: Duration = Duration::from_millis(100);

/// What the server does with each connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Script {
    /// AuthenticationOk, then NoticeResponses forever: startup never ends.
    NoticesDuringStartup,
    /// Startup completes; the first query (the LISTENs) is answered with
    /// NoticeResponses forever.
    NoticesDuringListen,
    /// Startup and the first query (the LISTENs) complete; then
    /// NotificationResponses on `channel` forever, and no later query (a
    /// ping) is ever answered.
    FloodWithoutPongs {
        /// The channel the notifications are on.
        channel: String,
    },
    /// SSLRequest is answered with an ErrorResponse that claims a bad
    /// password, with a newline and a terminal escape in its text, as a
    /// man in the middle could; the connection is then closed.
    ErrorAnswerToSslRequest,
}

/// The message an [`Script::ErrorAnswerToSslRequest`] server sends.
pub const INJECTED_SSL_ERROR: &str =
    "password authentication failed for user \"app\"\nFATAL: \x1b[2Jinjected";

/// A server running one [`Script`] on every connection, on a loopback port.
/// Stops (and closes every connection) when dropped.
#[derive(Debug)]
pub struct ScriptedServer {
    port: u16,
    accepts: Arc<Accepts>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    /// Listens on a free loopback port and runs `script` on every
    /// connection, each on its own thread.
    pub fn start(script: Script) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let accepts = Arc::new(Accepts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (accepts, stop) = (accepts.clone(), stop.clone());
            std::thread::Builder::new()
                .name("scripted-server".into())
                .spawn(move || accept(&listener, &script, &accepts, &stop))?
        };
        Ok(Self {
            port,
            accepts,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for it, with no `sslmode`: the test adds the one
    /// it needs.
    pub fn url(&self) -> String {
        format!("postgres://app@127.0.0.1:{}/app", self.port)
    }

    /// When each connection so far was accepted, in order.
    pub fn accepted(&self) -> Vec<Instant> {
        self.accepts
            .times
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Waits until `n` connections were accepted (or `limit` passed), and
    /// returns when each was.
    pub fn wait_for_connections(&self, n: usize, limit: Duration) -> Vec<Instant> {
        let Ok(times) = self.accepts.times.lock() else {
            return Vec::new();
        };
        let waited = self
            .accepts
            .accepted
            .wait_timeout_while(times, limit, |times| times.len() < n);
        waited.map(|(times, _)| times.clone()).unwrap_or_default()
    }
}

/// The accept times, and a signal for each new one.
#[derive(Debug, Default)]
struct Accepts {
    times: Mutex<Vec<Instant>>,
    accepted: Condvar,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor out of `accept`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: &TcpListener, script: &Script, accepts: &Accepts, stop: &Arc<AtomicBool>) {
    let mut handlers = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        if let Ok(mut times) = accepts.times.lock() {
            times.push(Instant::now());
        }
        accepts.accepted.notify_all();
        let (script, stop) = (script.clone(), stop.clone());
        handlers.push(std::thread::spawn(move || {
            // A client that goes away ends the script with an io error.
            let _ = serve(stream, &script, &stop);
        }));
    }
    for handler in handlers {
        let _ = handler.join();
    }
}

fn serve(mut stream: TcpStream, script: &Script, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_POLL))?;
    let mut conn = Conn {
        stream: &mut stream,
        stop,
    };
    let outcome = conn.run(script);
    let _ = stream.shutdown(Shutdown::Both);
    outcome
}

struct Conn<'a> {
    stream: &'a mut TcpStream,
    stop: &'a AtomicBool,
}

impl Conn<'_> {
    fn run(&mut self, script: &Script) -> io::Result<()> {
        let ssl_request = self.read_startup_packet()?;
        if ssl_request {
            if *script == Script::ErrorAnswerToSslRequest {
                return self.send(&wire::error_response("FATAL", "28P01", INJECTED_SSL_ERROR));
            }
            self.send(b"N")?;
            self.read_startup_packet()?;
        }
        self.send(&wire::auth_ok())?;
        if *script == Script::NoticesDuringStartup {
            return self.forever(|_| wire::notice_response("still starting up"));
        }
        let mut tail = wire::parameter_status("server_version", "15.8");
        tail.extend(wire::parameter_status("client_encoding", "UTF8"));
        tail.extend(wire::backend_key_data(SCRIPTED_PID, 1));
        tail.extend(wire::ready_for_query(b'I'));
        self.send(&tail)?;
        let query = self.read_query()?;
        match script {
            Script::NoticesDuringListen => self.forever(|_| wire::notice_response("busy")),
            Script::FloodWithoutPongs { channel } => {
                self.send(&answer(&query))?;
                self.forever(|i| wire::notification(SCRIPTED_PID + 1, channel, &i.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Reads a length-prefixed startup packet; `true` if it was SSLRequest.
    fn read_startup_packet(&mut self) -> io::Result<bool> {
        let mut header = [0; 8];
        self.stream.read_exact(&mut header)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let mut rest = vec![0; len.saturating_sub(8)];
        self.stream.read_exact(&mut rest)?;
        Ok(code == SSL_REQUEST_CODE)
    }

    /// Reads messages until a simple Query, and returns its text.
    fn read_query(&mut self) -> io::Result<String> {
        loop {
            let mut header = [0; 5];
            self.stream.read_exact(&mut header)?;
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut body = vec![0; len.saturating_sub(4)];
            self.stream.read_exact(&mut body)?;
            if header[0] == b'Q' {
                body.pop(); // the terminating NUL
                return Ok(String::from_utf8_lossy(&body).into_owned());
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.stop.load(Ordering::SeqCst) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            match self.stream.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends `message(i)` for i = 0, 1, ... until the client goes away or
    /// the server stops, 64 messages per write.
    fn forever(&mut self, message: impl Fn(u64) -> Vec<u8>) -> io::Result<()> {
        let mut i = 0;
        loop {
            let mut batch = Vec::new();
            for _ in 0..64 {
                batch.extend(message(i));
                i += 1;
            }
            self.send(&batch)?;
        }
    }
}

/// The answer to the LISTEN query of a new connection: a row for
/// `SELECT pg_backend_pid()`, a CommandComplete per other statement.
fn answer(query: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for statement in query.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        if statement.eq_ignore_ascii_case("SELECT pg_backend_pid()") {
            out.extend(wire::row_description(&["pg_backend_pid"]));
            out.extend(wire::data_row(&[Some(&SCRIPTED_PID.to_string())]));
            out.extend(wire::command_complete("SELECT 1"));
        } else {
            let tag = statement.split_whitespace().next().unwrap_or_default();
            out.extend(wire::command_complete(&tag.to_ascii_uppercase()));
        }
    }
    out.extend(wire::ready_for_query(b'I'));
    out
}
