//! One relayed connection: two sockets and a thread per direction.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use super::{Direction, Mode, Shared};

/// How much one relay thread reads, and so forwards or delays, at a time.
const CHUNK: usize = 16 * 1024;

/// A client connection and its upstream twin.
#[derive(Debug)]
pub(super) struct Connection {
    client: TcpStream,
    server: TcpStream,
    cut: AtomicBool,
    budget: Mutex<Budget>,
    /// Relay threads still running; the last one out forgets the connection.
    running: AtomicUsize,
}

/// Bytes counted toward a [`Mode::CutAfter`] limit since the mode (its generation) was set.
#[derive(Debug)]
struct Budget {
    generation: u64,
    used: u64,
}

impl Connection {
    /// Shuts both sockets down in both directions, which ends both relay threads: blocked
    /// reads return end-of-file and writes fail.
    pub(super) fn shut_sockets(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// How much of an `n`-byte chunk going `direction` may be forwarded under `CutAfter`
    /// (set at `generation`), and whether the connection must be cut after forwarding it.
    fn take_budget(&self, limit: u64, counted: bool, generation: u64, n: usize) -> (usize, bool) {
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        if budget.generation != generation {
            *budget = Budget {
                generation,
                used: 0,
            };
        }
        if !counted {
            return (n, false);
        }
        let remaining = limit.saturating_sub(budget.used);
        let allowed = usize::try_from(remaining).map_or(n, |remaining| remaining.min(n));
        budget.used += allowed as u64;
        (allowed, budget.used >= limit)
    }
}

/// Registers the connection and starts relaying it in both directions.
pub(super) fn relay(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let generation = shared.lock().generation;
    let connection = Arc::new(Connection {
        client: client.try_clone()?,
        server: server.try_clone()?,
        cut: AtomicBool::new(false),
        budget: Mutex::new(Budget {
            generation,
            used: 0,
        }),
        running: AtomicUsize::new(2),
    });
    shared.lock().connections.push(connection.clone());
    shared.changed.notify_all();

    let upstream = (
        client.try_clone(),
        server.try_clone(),
        connection.clone(),
        shared.clone(),
    );
    let spawned = thread::Builder::new()
        .name("fault-proxy-up".into())
        .spawn(move || {
            let (from, to, connection, shared) = upstream;
            if let (Ok(from), Ok(to)) = (from, to) {
                pump(&from, &to, Direction::ClientToServer, &connection, &shared);
            }
            finish(&connection, &shared);
        });
    if let Err(error) = spawned {
        shared.cut(&connection);
        return Err(error);
    }
    let (connection2, shared2) = (connection.clone(), shared.clone());
    let spawned = thread::Builder::new()
        .name("fault-proxy-down".into())
        .spawn(move || {
            pump(
                &server,
                &client,
                Direction::ServerToClient,
                &connection2,
                &shared2,
            );
            finish(&connection2, &shared2);
        });
    if let Err(error) = spawned {
        shared.cut(&connection);
        return Err(error);
    }
    Ok(())
}

fn finish(connection: &Arc<Connection>, shared: &Shared) {
    if connection.running.fetch_sub(1, Ordering::SeqCst) == 1 {
        shared.forget(connection);
    }
}

/// Relays `from` to `to` under the proxy's mode until either side closes or the connection
/// is cut.
fn pump(
    mut from: &TcpStream,
    mut to: &TcpStream,
    direction: Direction,
    connection: &Arc<Connection>,
    shared: &Shared,
) {
    let mut buf = vec![0; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                // A half-close: pass it on, and let the other direction carry on.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return shared.cut(connection),
        };
        let Some((mode, generation)) = wait_until_forwardable(connection, shared) else {
            return; // cut while holding the chunk
        };
        let (allowed, cut_after) = match mode {
            Mode::Latency(delay) => {
                thread::sleep(delay);
                (n, false)
            }
            Mode::CutAfter {
                bytes,
                direction: counted,
            } => {
                let counts = counted == Direction::Both || counted == direction;
                connection.take_budget(bytes, counts, generation, n)
            }
            _ => (n, false),
        };
        if to.write_all(&buf[..allowed]).is_err() {
            return shared.cut(connection);
        }
        if cut_after {
            return shared.cut(connection);
        }
    }
}

/// Waits while the proxy is a black hole; returns the mode to forward under and its
/// generation, or `None` once the connection is cut.
fn wait_until_forwardable(connection: &Connection, shared: &Shared) -> Option<(Mode, u64)> {
    let mut state = shared.lock();
    loop {
        if connection.is_cut() {
            return None;
        }
        if state.mode != Mode::BlackHole {
            return Some((state.mode, state.generation));
        }
        state = shared
            .changed
            .wait(state)
            .unwrap_or_else(|e| e.into_inner());
    }
}
