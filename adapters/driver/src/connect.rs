//! Opening the transport to one host: name resolution, connect timeout,
//! socket options. Written once over [`Runtime`].

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgnotify_core::bus::{TransportError, TransportErrorKind};
use pgnotify_core::config::{HostSpec, Keepalive};

use crate::runtime::{Runtime, Transport, with_deadline};

/// Opens a transport to `host`, as libpq would.
///
/// For TCP, the host name is resolved (unless it is an IP literal or
/// `hostaddr` is given), each address is tried in turn with
/// `connect_timeout` per address, and `keepalive` is applied to the socket
/// that connects. For a unix socket, the file is `dir/.s.PGSQL.<port>` and
/// `keepalive` is ignored.
pub async fn connect(
    runtime: &dyn Runtime,
    host: &HostSpec,
    connect_timeout: Option<Duration>,
    keepalive: &Keepalive,
) -> Result<Box<dyn Transport>, ConnectError> {
    match host {
        HostSpec::Tcp {
            host,
            port,
            hostaddr,
        } => {
            let addresses = match hostaddr.or_else(|| host.parse::<IpAddr>().ok()) {
                Some(ip) => vec![SocketAddr::new(ip, *port)],
                None => resolve(runtime, host, *port, connect_timeout).await?,
            };
            let transport = connect_tcp(runtime, host, &addresses, connect_timeout).await?;
            set_keepalive(&transport.socket(), keepalive)?;
            Ok(transport)
        }
        HostSpec::Unix { .. } => {
            let path = host.socket_path().unwrap_or_default();
            connect_unix(runtime, &path, connect_timeout).await
        }
    }
}

fn deadline(runtime: &dyn Runtime, timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| runtime.now().checked_add(t))
}

async fn resolve(
    runtime: &dyn Runtime,
    host: &str,
    port: u16,
    timeout: Option<Duration>,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let lookup = runtime.resolve(host, port);
    let result = with_deadline(runtime, deadline(runtime, timeout), lookup).await;
    let target = || host.to_owned();
    match result {
        None => Err(ConnectError::TimedOut {
            target: target(),
            after: timeout.unwrap_or_default(),
        }),
        Some(Err(source)) => Err(ConnectError::Resolve {
            host: target(),
            source,
        }),
        Some(Ok(addresses)) if addresses.is_empty() => {
            Err(ConnectError::NoAddress { host: target() })
        }
        Some(Ok(addresses)) => Ok(addresses),
    }
}

/// Tries each address in order; the error is the last address's.
async fn connect_tcp(
    runtime: &dyn Runtime,
    host: &str,
    addresses: &[SocketAddr],
    timeout: Option<Duration>,
) -> Result<Box<dyn Transport>, ConnectError> {
    let mut last_error = ConnectError::NoAddress {
        host: host.to_owned(),
    };
    for &address in addresses {
        let attempt = runtime.connect_tcp(address);
        last_error = match with_deadline(runtime, deadline(runtime, timeout), attempt).await {
            Some(Ok(transport)) => return Ok(transport),
            Some(Err(source)) => ConnectError::Connect {
                target: describe_tcp(host, address),
                source,
            },
            None => ConnectError::TimedOut {
                target: describe_tcp(host, address),
                after: timeout.unwrap_or_default(),
            },
        };
    }
    Err(last_error)
}

fn describe_tcp(host: &str, address: SocketAddr) -> String {
    if host == address.ip().to_string() {
        address.to_string()
    } else {
        format!("{host} ({address})")
    }
}

async fn connect_unix(
    runtime: &dyn Runtime,
    path: &Path,
    timeout: Option<Duration>,
) -> Result<Box<dyn Transport>, ConnectError> {
    let attempt = runtime.connect_unix(path);
    match with_deadline(runtime, deadline(runtime, timeout), attempt).await {
        Some(Ok(transport)) => Ok(transport),
        Some(Err(source)) => Err(ConnectError::Unix {
            path: path.to_owned(),
            source,
        }),
        None => Err(ConnectError::TimedOut {
            target: path.display().to_string(),
            after: timeout.unwrap_or_default(),
        }),
    }
}

/// Applies TCP keepalive and `TCP_USER_TIMEOUT` settings to a TCP socket.
///
/// Settings the platform lacks are skipped (`keepalives_count` on some
/// systems, `TCP_USER_TIMEOUT` outside Linux), as libpq does.
pub fn set_keepalive(
    socket: &socket2::SockRef<'_>,
    keepalive: &Keepalive,
) -> Result<(), ConnectError> {
    let failed = |option: &'static str| move |source| ConnectError::SocketOption { option, source };
    socket
        .set_keepalive(keepalive.enabled)
        .map_err(failed("SO_KEEPALIVE"))?;
    if keepalive.enabled {
        let mut params = socket2::TcpKeepalive::new();
        let mut any = false;
        if let Some(idle) = keepalive.idle {
            params = params.with_time(idle);
            any = true;
        }
        // The platforms where socket2 can set the probe interval and count.
        #[cfg(any(
            target_os = "linux",
            target_os = "android",
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "windows"
        ))]
        {
            if let Some(interval) = keepalive.interval {
                params = params.with_interval(interval);
                any = true;
            }
            if let Some(count) = keepalive.count {
                params = params.with_retries(count);
                any = true;
            }
        }
        if any {
            socket
                .set_tcp_keepalive(&params)
                .map_err(failed("TCP keepalive parameters"))?;
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(timeout) = keepalive.user_timeout {
        socket
            .set_tcp_user_timeout(Some(timeout))
            .map_err(failed("TCP_USER_TIMEOUT"))?;
    }
    Ok(())
}

/// Why a transport to a host could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The host name could not be resolved.
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host name resolved to no address.
    NoAddress {
        /// The host name.
        host: String,
    },
    /// The TCP connection was refused or failed.
    Connect {
        /// The host and address tried last.
        target: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The unix-domain socket could not be connected.
    Unix {
        /// The socket file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Resolving or connecting took longer than `connect_timeout`.
    TimedOut {
        /// What was being resolved or connected to.
        target: String,
        /// The timeout.
        after: Duration,
    },
    /// A socket option could not be set.
    SocketOption {
        /// The option.
        option: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve { host, source } => {
                write!(
                    f,
                    "could not translate host name \"{host}\" to an address: {source}"
                )
            }
            ConnectError::NoAddress { host } => {
                write!(f, "host name \"{host}\" has no address")
            }
            ConnectError::Connect { target, source } => {
                write!(f, "could not connect to {target}: {source}")
            }
            ConnectError::Unix { path, source } => write!(
                f,
                "could not connect to the server's unix socket \"{}\": {source} (is the server running locally and accepting connections on that socket?)",
                path.display()
            ),
            ConnectError::TimedOut { target, after } => {
                write!(f, "connecting to {target} timed out after {after:?}")
            }
            ConnectError::SocketOption { option, source } => {
                write!(f, "could not set socket option {option}: {source}")
            }
        }
    }
}

impl ConnectError {
    /// The kind of transport error this is for the bus, and its message:
    /// where and why, without the kind's own phrase ("could not connect"),
    /// which the [`TransportError`]'s `Display` puts in front. The OS's
    /// `io::Error`, when there is one, becomes its source.
    pub(crate) fn into_transport_error(self) -> TransportError {
        let (kind, message) = match &self {
            ConnectError::Resolve { host, source } => {
                (TransportErrorKind::Resolve, format!("\"{host}\": {source}"))
            }
            ConnectError::NoAddress { host } => (
                TransportErrorKind::Resolve,
                format!("\"{host}\" has no address"),
            ),
            ConnectError::Connect { target, source } => {
                (TransportErrorKind::Connect, format!("{target}: {source}"))
            }
            ConnectError::Unix { path, source } => (
                TransportErrorKind::Connect,
                format!(
                    "unix socket \"{}\": {source} (is the server running locally and \
                     accepting connections on that socket?)",
                    path.display()
                ),
            ),
            ConnectError::TimedOut { target, after } => (
                TransportErrorKind::ConnectTimedOut,
                format!("{target} did not answer within {after:?}"),
            ),
            ConnectError::SocketOption { option, source } => (
                TransportErrorKind::Connect,
                format!("setting {option} failed: {source}"),
            ),
        };
        let error = TransportError::new(kind, message);
        match self {
            ConnectError::Resolve { source, .. }
            | ConnectError::Connect { source, .. }
            | ConnectError::Unix { source, .. }
            | ConnectError::SocketOption { source, .. } => error.with_source(source),
            ConnectError::NoAddress { .. } | ConnectError::TimedOut { .. } => error,
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Resolve { source, .. }
            | ConnectError::Connect { source, .. }
            | ConnectError::Unix { source, .. }
            | ConnectError::SocketOption { source, .. } => Some(source),
            _ => None,
        }
    }
}
