//! [`HostSpec`], and turning libpq's `host`, `hostaddr` and `port` lists
//! into one.

use core::net::IpAddr;
use std::fmt;
use std::path::PathBuf;

use super::error::ConfigError;

/// PostgreSQL's default port, used for every host without one.
pub const DEFAULT_PORT: u16 = 5432;

/// The host used when none is given.
///
/// libpq defaults to a unix socket directory chosen when it was compiled; the
/// core cannot know it, so pgnotify's default is TCP to `localhost`. Write
/// `host=/var/run/postgresql` (or set `PGHOST`) for a socket.
pub const DEFAULT_HOST: &str = "localhost";

/// One server to try, in the order given.
///
/// A libpq host that starts with `/` is a unix socket directory; every other
/// host is a TCP host name or address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostSpec {
    /// A TCP server.
    Tcp {
        /// The host name (or address) as written: resolved by the driver
        /// unless `hostaddr` is given, and the name a `verify-full`
        /// certificate must carry.
        host: String,
        /// The TCP port.
        port: u16,
        /// The address to connect to without a name lookup (libpq's
        /// `hostaddr`).
        hostaddr: Option<IpAddr>,
    },
    /// A unix-domain socket in `dir`, named `.s.PGSQL.<port>`.
    Unix {
        /// The socket directory.
        dir: PathBuf,
        /// The port, which only names the socket file.
        port: u16,
    },
}

impl HostSpec {
    /// A TCP host resolved by name.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Self::Tcp {
            host: host.into(),
            port,
            hostaddr: None,
        }
    }

    /// A unix socket directory.
    pub fn unix(dir: impl Into<PathBuf>, port: u16) -> Self {
        Self::Unix {
            dir: dir.into(),
            port,
        }
    }

    /// The port (for a unix socket, the number in the socket's file name).
    pub fn port(&self) -> u16 {
        match self {
            Self::Tcp { port, .. } | Self::Unix { port, .. } => *port,
        }
    }

    /// The full path of the socket file, for a unix socket.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match self {
            Self::Tcp { .. } => None,
            Self::Unix { dir, port } => Some(dir.join(format!(".s.PGSQL.{port}"))),
        }
    }

    /// The host name to verify a certificate against and send as SNI, for a
    /// TCP host.
    pub fn server_name(&self) -> Option<&str> {
        match self {
            Self::Tcp { host, .. } => Some(host),
            Self::Unix { .. } => None,
        }
    }

    /// The text this host has in a libpq `host` list.
    pub(crate) fn host_text(&self) -> &str {
        match self {
            Self::Tcp { host, .. } => host,
            // Validation keeps socket directories UTF-8.
            Self::Unix { dir, .. } => dir.to_str().unwrap_or_default(),
        }
    }

    /// Checks what a connection string cannot express or a driver cannot use.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Tcp { host, port, .. } => {
                check_list_entry("host", host)?;
                if host.starts_with('/') {
                    return Err(ConfigError::invalid(
                        "host",
                        host,
                        "a TCP host cannot start with '/', which marks a unix socket directory",
                    ));
                }
                check_port(*port)
            }
            Self::Unix { dir, port } => {
                let text = dir.to_str().ok_or_else(|| {
                    ConfigError::invalid(
                        "host",
                        &dir.to_string_lossy(),
                        "a socket directory must be valid UTF-8",
                    )
                })?;
                check_list_entry("host", text)?;
                if !text.starts_with('/') {
                    return Err(ConfigError::invalid(
                        "host",
                        text,
                        "a socket directory must be an absolute path",
                    ));
                }
                check_port(*port)
            }
        }
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port, .. } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port, .. } => write!(f, "{host}:{port}"),
            Self::Unix { dir, port } => write!(f, "{}/.s.PGSQL.{port}", dir.display()),
        }
    }
}

fn check_list_entry(name: &str, text: &str) -> Result<(), ConfigError> {
    if text.is_empty() {
        return Err(ConfigError::invalid(name, text, "must not be empty"));
    }
    if text.contains(',') {
        return Err(ConfigError::invalid(
            name,
            text,
            "a host cannot contain a comma, which separates hosts",
        ));
    }
    if text.contains('\0') {
        return Err(ConfigError::invalid(
            name,
            text,
            "must not contain a NUL byte",
        ));
    }
    Ok(())
}

fn check_port(port: u16) -> Result<(), ConfigError> {
    if port == 0 {
        return Err(ConfigError::invalid("port", "0", PORT_EXPECTED));
    }
    Ok(())
}

const PORT_EXPECTED: &str = "expected a port number from 1 to 65535";

/// Combines libpq's comma-separated `host`, `hostaddr` and `port` lists.
///
/// As in libpq: the host count comes from `hostaddr` when it is given, else
/// from `host`; the lists of names and addresses must match in length; the
/// port list holds either one port for every host or one per host; an empty
/// entry means the default (host [`DEFAULT_HOST`], port [`DEFAULT_PORT`]).
pub(crate) fn resolve(
    host: Option<&str>,
    hostaddr: Option<&str>,
    port: Option<&str>,
) -> Result<Vec<HostSpec>, ConfigError> {
    let names: Vec<&str> = host.map_or_else(Vec::new, |h| h.split(',').collect());
    let addrs: Vec<Option<IpAddr>> = match hostaddr {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(parse_hostaddr)
            .collect::<Result<_, _>>()?,
    };
    if !names.is_empty() && !addrs.is_empty() && names.len() != addrs.len() {
        return Err(ConfigError::HostaddrCountMismatch {
            hosts: names.len(),
            hostaddrs: addrs.len(),
        });
    }
    let count = names.len().max(addrs.len()).max(1);
    let ports: Vec<u16> = port
        .unwrap_or("")
        .split(',')
        .map(parse_port)
        .collect::<Result<_, _>>()?;
    if ports.len() != 1 && ports.len() != count {
        return Err(ConfigError::PortCountMismatch {
            hosts: count,
            ports: ports.len(),
        });
    }
    (0..count)
        .map(|i| {
            let name = names.get(i).copied().unwrap_or("");
            let addr = addrs.get(i).copied().flatten();
            let port = if ports.len() == 1 { ports[0] } else { ports[i] };
            host_spec(name, addr, port)
        })
        .collect()
}

/// Checks every entry of a `port` list, so that a bad one is reported
/// where it was read (a string or an environment variable).
pub(crate) fn check_port_list(list: &str) -> Result<(), ConfigError> {
    list.split(',').try_for_each(|p| parse_port(p).map(drop))
}

/// Checks every entry of a `hostaddr` list.
pub(crate) fn check_hostaddr_list(list: &str) -> Result<(), ConfigError> {
    list.split(',')
        .try_for_each(|a| parse_hostaddr(a).map(drop))
}

fn host_spec(name: &str, hostaddr: Option<IpAddr>, port: u16) -> Result<HostSpec, ConfigError> {
    if name.starts_with('/') {
        if let Some(addr) = hostaddr {
            return Err(ConfigError::invalid(
                "hostaddr",
                &addr.to_string(),
                "a hostaddr cannot go with a unix socket directory",
            ));
        }
        return Ok(HostSpec::unix(name, port));
    }
    let host = match (name, hostaddr) {
        ("", Some(addr)) => addr.to_string(),
        ("", None) => DEFAULT_HOST.to_owned(),
        (name, _) => name.to_owned(),
    };
    Ok(HostSpec::Tcp {
        host,
        port,
        hostaddr,
    })
}

fn parse_hostaddr(text: &str) -> Result<Option<IpAddr>, ConfigError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    trimmed.parse().map(Some).map_err(|_| {
        ConfigError::invalid("hostaddr", text, "expected a numeric IPv4 or IPv6 address")
    })
}

fn parse_port(text: &str) -> Result<u16, ConfigError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(DEFAULT_PORT);
    }
    match trimmed.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ConfigError::invalid("port", text, PORT_EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn one_port_applies_to_every_host() {
        let hosts = resolve(Some("a,b"), None, Some("6000")).unwrap();
        assert_eq!(hosts, [HostSpec::tcp("a", 6000), HostSpec::tcp("b", 6000)]);
    }

    #[test]
    fn empty_entries_take_the_defaults() {
        let hosts = resolve(Some(",/tmp"), None, Some("7,")).unwrap();
        assert_eq!(
            hosts,
            [
                HostSpec::tcp(DEFAULT_HOST, 7),
                HostSpec::unix("/tmp", DEFAULT_PORT)
            ]
        );
    }

    #[test]
    fn hostaddr_alone_names_the_host_by_its_address() {
        let hosts = resolve(None, Some("10.0.0.1"), None).unwrap();
        assert_eq!(
            hosts,
            [HostSpec::Tcp {
                host: "10.0.0.1".into(),
                port: DEFAULT_PORT,
                hostaddr: Some("10.0.0.1".parse().unwrap()),
            }]
        );
    }

    #[test]
    fn mismatched_lists_are_refused() {
        assert_eq!(
            resolve(Some("a,b,c"), None, Some("1,2")),
            Err(ConfigError::PortCountMismatch { hosts: 3, ports: 2 })
        );
        assert_eq!(
            resolve(Some("a,b"), Some("10.0.0.1"), None),
            Err(ConfigError::HostaddrCountMismatch {
                hosts: 2,
                hostaddrs: 1
            })
        );
    }

    #[test]
    fn socket_path_appends_the_port_file_name() {
        let host = HostSpec::unix("/var/run/postgresql", 5433);
        assert_eq!(
            host.socket_path().unwrap(),
            Path::new("/var/run/postgresql/.s.PGSQL.5433")
        );
        assert_eq!(host.to_string(), "/var/run/postgresql/.s.PGSQL.5433");
        assert_eq!(HostSpec::tcp("::1", 5432).to_string(), "[::1]:5432");
    }
}
