//! A fault-injecting TCP proxy on loopback, for putting a network between client and server.
//!
//! [`FaultProxy`] listens on a free loopback port and relays every connection to a target
//! address, one thread per direction. What it does to the traffic is switched at run time with
//! [`FaultProxy::set_mode`]: pass it through, hold it (a black hole that keeps both TCP
//! connections open), delay it, cut connections after a number of bytes, or refuse new
//! connections; [`FaultProxy::cut_all`] closes every current connection.
//!
//! ```no_run
//! use pgnotify_testkit::proxy::{FaultProxy, Mode};
//! # let server_addr: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
//! let proxy = FaultProxy::start(server_addr)?;
//! // Point the client at proxy.addr(), then:
//! proxy.set_mode(Mode::BlackHole); // the client's pings go unanswered...
//! proxy.set_mode(Mode::Pass); // ...until the network heals, with nothing lost.
//! proxy.cut_all(); // or every connection drops.
//! # Ok::<(), std::io::Error>(())
//! ```

mod connection;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use connection::Connection;

/// What a [`FaultProxy`] does to the traffic it relays.
///
/// A mode applies to current and new connections alike, from the moment it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Relay everything as it comes.
    #[default]
    Pass,
    /// Forward nothing in either direction while keeping both TCP connections open, like a
    /// network partition: reads from each side stop, so each sender's buffers fill. New
    /// connections are accepted and connected upstream but stay silent too. Bytes already read
    /// are held, not dropped: switching back to another mode delivers them, as TCP would once
    /// a partition heals.
    BlackHole,
    /// Delay every chunk (every read, up to 16 KiB) by this long before forwarding it, in both
    /// directions.
    Latency(Duration),
    /// Cut each connection once it has forwarded `bytes` bytes in `direction`, counted from
    /// the moment the mode is set (or from a connection's start, for new connections). The
    /// chunk that crosses the limit is forwarded only up to it; `bytes: 0` cuts a connection
    /// at its first chunk in that direction.
    CutAfter {
        /// How many bytes to let through before cutting.
        bytes: u64,
        /// Which traffic is counted.
        direction: Direction,
    },
    /// Close every new connection right after accepting it, as a crashed or restarting
    /// server would; current connections are left alone.
    Reject,
}

/// Which traffic a [`Mode::CutAfter`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// Bytes from the server to the client.
    ServerToClient,
    /// Bytes from the client to the server.
    ClientToServer,
    /// Bytes in both directions, added together.
    Both,
}

/// A loopback TCP proxy that relays connections to a target and injects faults on command.
///
/// Dropping it stops accepting and cuts every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the proxy's threads share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled on every mode change, cut and connection open or close.
    changed: Condvar,
    closing: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    mode: Mode,
    /// Bumped on every `set_mode`, so byte budgets know when to start counting afresh.
    generation: u64,
    connections: Vec<Arc<Connection>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes one connection's sockets and forgets it.
    fn cut(&self, connection: &Arc<Connection>) {
        connection.shut_sockets();
        self.forget(connection);
    }

    /// Removes a connection from the open ones (it was cut, or both its directions ended).
    fn forget(&self, connection: &Arc<Connection>) {
        self.lock()
            .connections
            .retain(|c| !Arc::ptr_eq(c, connection));
        self.changed.notify_all();
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port relaying to `target`, in [`Mode::Pass`].
    pub fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("fault-proxy-{}", addr.port()))
                .spawn(move || accept_loop(&listener, target, &shared))?
        };
        Ok(Self {
            addr,
            target,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address connections are relayed to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.shared.lock().mode
    }

    /// Switches what the proxy does to current and new connections.
    pub fn set_mode(&self, mode: Mode) {
        let mut state = self.shared.lock();
        state.mode = mode;
        state.generation += 1;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Closes every current connection on both sides (each peer reads end-of-file); returns
    /// how many there were. New connections are unaffected.
    pub fn cut_all(&self) -> usize {
        // Cut under the lock, so a relay thread checking for a cut before it waits cannot
        // miss the wake-up.
        let mut state = self.shared.lock();
        let connections = std::mem::take(&mut state.connections);
        for connection in &connections {
            connection.shut_sockets();
        }
        drop(state);
        self.shared.changed.notify_all();
        connections.len()
    }

    /// How many connections are open: accepted, relayed, and not yet closed or cut.
    pub fn connection_count(&self) -> usize {
        self.shared.lock().connections.len()
    }

    /// Waits until exactly `count` connections are open, or `timeout` passes; returns whether
    /// the count was reached. Lets a test know a client has connected (or let go) without
    /// sleeping.
    pub fn wait_for_connection_count(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.connections.len() == count {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Wake the acceptor, blocked in accept(), with a connection of our own.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut_all();
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        // Accept errors (the peer gave up, descriptors ran out) concern that connection only.
        let Ok(client) = client else { continue };
        if shared.lock().mode == Mode::Reject {
            continue; // dropping `client` closes it
        }
        let Ok(server) = TcpStream::connect(target) else {
            continue; // the target is down: the client sees its connection closed
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        // Only cloning sockets or creating threads can fail here, and then the connection is
        // closed on the way out, which its client sees like any other cut.
        let _ = connection::relay(client, server, shared);
    }
}
