//! Opening transports on every runtime: TCP by address and by name, the unix
//! socket, socket options, timeouts, and the runtime's timer and spawn.

mod common;

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use common::{is_authentication_ok, on_every_runtime, startup};
use pgnotify_core::config::{HostSpec, Keepalive};
use pgnotify_driver::{
    BoxFuture, ConnectError, MaybeTlsStream, Runtime, Timer, Transport, connect,
};
use pgnotify_testkit::server::{SUPERUSER, TestServer};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));

fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::new().expect("a PostgreSQL server"))
}

/// Connects to `host` and checks that the server answers a startup.
async fn assert_reaches_server(runtime: &dyn Runtime, host: HostSpec) {
    let transport = connect(runtime, &host, TIMEOUT, &Keepalive::default())
        .await
        .unwrap_or_else(|e| panic!("connect to {host:?}: {e}"));
    let mut stream = MaybeTlsStream::new(transport);
    let reply = startup(&mut stream, SUPERUSER).await;
    assert!(
        is_authentication_ok(&reply),
        "expected AuthenticationOk from {host:?}, got {:?}",
        char::from(reply.0)
    );
}

#[test]
fn tcp_connect_by_address_reaches_the_server() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let host = HostSpec::tcp("127.0.0.1", server().port());
            assert_reaches_server(&*runtime, host).await;
        })
    });
}

#[test]
fn tcp_connect_by_name_resolves_and_reaches_the_server() {
    // `localhost` may resolve to ::1 first, where nothing listens: the
    // next address is then tried.
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let host = HostSpec::tcp("localhost", server().port());
            assert_reaches_server(&*runtime, host).await;
        })
    });
}

#[test]
fn unix_socket_connect_reaches_the_server() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let server = server();
            let host = HostSpec::unix(server.unix_socket_dir(), server.port());
            assert_reaches_server(&*runtime, host).await;
        })
    });
}

#[test]
fn hostaddr_is_connected_to_without_resolving_the_host() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let host = HostSpec::Tcp {
                host: "name.that.does.not.resolve.invalid".into(),
                port: server().port(),
                hostaddr: Some([127, 0, 0, 1].into()),
            };
            assert_reaches_server(&*runtime, host).await;
        })
    });
}

#[test]
fn keepalive_settings_are_applied_to_the_tcp_socket() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let keepalive = Keepalive::new()
                .idle(Duration::from_secs(7))
                .interval(Duration::from_secs(3))
                .count(4)
                .user_timeout(Duration::from_millis(9_000));
            let host = HostSpec::tcp("127.0.0.1", server().port());
            let transport = connect(&*runtime, &host, TIMEOUT, &keepalive)
                .await
                .unwrap();
            let socket = transport.socket();
            assert!(socket.keepalive().unwrap(), "SO_KEEPALIVE");
            assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
            #[cfg(target_os = "linux")]
            {
                assert_eq!(
                    socket.tcp_keepalive_interval().unwrap(),
                    Duration::from_secs(3)
                );
                assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
                let user_timeout = socket.tcp_user_timeout().unwrap();
                assert_eq!(user_timeout, Some(Duration::from_millis(9_000)));
            }
        })
    });
}

#[test]
fn keepalives_can_be_turned_off() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let keepalive = Keepalive::new().enabled(false);
            let host = HostSpec::tcp("127.0.0.1", server().port());
            let transport = connect(&*runtime, &host, TIMEOUT, &keepalive)
                .await
                .unwrap();
            assert!(!transport.socket().keepalive().unwrap());
        })
    });
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_refused_connection_names_the_address() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let port = closed_port();
            let host = HostSpec::tcp("127.0.0.1", port);
            let error = connect(&*runtime, &host, TIMEOUT, &Keepalive::default())
                .await
                .expect_err("nothing listens there");
            let ConnectError::Connect { source, .. } = &error else {
                panic!("expected a connect error, got {error:?}");
            };
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
            let expected = format!("could not connect to 127.0.0.1:{port}: ");
            assert!(error.to_string().starts_with(&expected), "{error}");
        })
    });
}

#[test]
fn a_missing_unix_socket_names_the_socket_file() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let host = HostSpec::unix("/nonexistent-pgnotify-dir", 5432);
            let error = connect(&*runtime, &host, TIMEOUT, &Keepalive::default())
                .await
                .expect_err("no such socket");
            assert!(matches!(error, ConnectError::Unix { .. }), "{error:?}");
            let text = error.to_string();
            assert!(
                text.contains("/nonexistent-pgnotify-dir/.s.PGSQL.5432"),
                "{text}"
            );
        })
    });
}

/// A runtime that resolves every name to fixed addresses, records the
/// addresses it is asked to connect to, and may never finish connecting.
#[derive(Debug)]
struct Scripted {
    inner: Arc<dyn Runtime>,
    addresses: Vec<SocketAddr>,
    hang: bool,
    attempts: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Runtime for Scripted {
    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn Transport>>> {
        self.attempts.lock().unwrap().push(addr);
        if self.hang {
            return Box::pin(std::future::pending());
        }
        self.inner.connect_tcp(addr)
    }

    fn connect_unix(&self, path: &Path) -> BoxFuture<io::Result<Box<dyn Transport>>> {
        self.inner.connect_unix(path)
    }

    fn resolve(&self, _host: &str, _port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let addresses = self.addresses.clone();
        Box::pin(async move { Ok(addresses) })
    }

    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        self.inner.new_timer(deadline)
    }

    fn spawn(&self, future: BoxFuture<()>) {
        self.inner.spawn(future)
    }
}

#[test]
fn each_resolved_address_is_tried_in_order_until_one_connects() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let dead: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
            let live = server().addr();
            let scripted = Scripted {
                inner: runtime,
                addresses: vec![dead, live, dead],
                hang: false,
                attempts: Arc::default(),
            };
            let host = HostSpec::tcp("db.example", live.port());
            connect(&scripted, &host, TIMEOUT, &Keepalive::default())
                .await
                .expect("the second address connects");
            assert_eq!(*scripted.attempts.lock().unwrap(), [dead, live]);
        })
    });
}

#[test]
fn a_name_without_addresses_is_an_error() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let scripted = Scripted {
                inner: runtime,
                addresses: Vec::new(),
                hang: false,
                attempts: Arc::default(),
            };
            let host = HostSpec::tcp("db.example", 5432);
            let error = connect(&scripted, &host, TIMEOUT, &Keepalive::default())
                .await
                .expect_err("no address");
            assert_eq!(error.to_string(), "host name \"db.example\" has no address");
        })
    });
}

#[test]
fn connect_timeout_applies_to_each_address() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let a: SocketAddr = ([192, 0, 2, 1], 5432).into();
            let b: SocketAddr = ([192, 0, 2, 2], 5432).into();
            let scripted = Scripted {
                inner: runtime,
                addresses: vec![a, b],
                hang: true,
                attempts: Arc::default(),
            };
            let timeout = Duration::from_millis(20);
            let host = HostSpec::tcp("db.example", 5432);
            let error = connect(&scripted, &host, Some(timeout), &Keepalive::default())
                .await
                .expect_err("connecting never finishes");
            assert!(
                matches!(&error, ConnectError::TimedOut { after, .. } if *after == timeout),
                "expected a timeout, got {error:?}"
            );
            assert_eq!(
                error.to_string(),
                "connecting to db.example (192.0.2.2:5432) timed out after 20ms"
            );
            assert_eq!(*scripted.attempts.lock().unwrap(), [a, b]);
        })
    });
}

#[test]
fn runtime_resolves_localhost_to_a_loopback_address() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let addresses = runtime.resolve("localhost", 5432).await.expect("resolve");
            assert!(
                addresses
                    .iter()
                    .any(|a| a.ip().is_loopback() && a.port() == 5432),
                "{addresses:?}"
            );
        })
    });
}

#[test]
fn timer_fires_at_its_deadline_and_again_after_a_reset() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            let first = Instant::now() + Duration::from_millis(5);
            let mut timer = runtime.new_timer(first);
            poll_fn(|cx| timer.as_mut().poll(cx)).await;
            assert!(Instant::now() >= first, "fired before its deadline");

            let second = Instant::now() + Duration::from_millis(5);
            timer.as_mut().reset(second);
            poll_fn(|cx| timer.as_mut().poll(cx)).await;
            assert!(Instant::now() >= second, "fired before its new deadline");
        })
    });
}

#[test]
fn spawned_tasks_run_to_completion() {
    on_every_runtime(|runtime| {
        Box::pin(async move {
            // (done, waker of the waiting test)
            let state: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
            let task_state = state.clone();
            runtime.spawn(Box::pin(async move {
                let mut state = task_state.lock().unwrap();
                state.0 = true;
                if let Some(waker) = state.1.take() {
                    waker.wake();
                }
            }));
            poll_fn(|cx| {
                let mut state = state.lock().unwrap();
                if state.0 {
                    Poll::Ready(())
                } else {
                    state.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
        })
    });
}
