//! Applying one named parameter, as written in a connection string or an
//! environment variable, to the configuration being assembled.

use std::path::PathBuf;
use std::time::Duration;

use super::builder::ConfigBuilder;
use super::error::ConfigError;
use super::password::Password;
use super::tls::SslRootCert;
use super::{Config, duration, host};
use crate::OverflowPolicy;

/// Every parameter a connection string may hold, libpq's first.
pub const PARAMETERS: [&str; 36] = [
    "service",
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "passfile",
    "dbname",
    "application_name",
    "options",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "ping_interval",
    "ping_timeout",
    "backoff_min",
    "backoff_max",
    "backoff_reset_after",
    "publish_timeout",
    "group_commit",
    "listen_check_every",
    "queue_capacity",
    "overflow_policy",
    "stall_limit",
    "server_queue_limit",
    "transaction_pooler",
    "max_frame_size",
    "jitter_seed",
];

/// libpq parameters pgnotify refuses by name rather than as unknown.
const UNSUPPORTED: [&str; 25] = [
    "require_auth",
    "channel_binding",
    "client_encoding",
    "fallback_application_name",
    "replication",
    "gssencmode",
    "gsslib",
    "gssdelegation",
    "krbsrvname",
    "sslnegotiation",
    "sslcompression",
    "sslpassword",
    "sslcertmode",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "min_protocol_version",
    "max_protocol_version",
    "requirepeer",
    "load_balance_hosts",
    "scram_client_key",
    "scram_server_key",
    "oauth_issuer",
];

/// A configuration being assembled from named parameters.
///
/// `host`, `hostaddr` and `port` stay text until [`finish`](Self::finish),
/// because libpq pairs their lists only once every source has been read
/// (`PGHOST=a,b` with `port=1,2` in the string is fine).
#[derive(Default)]
pub(crate) struct Params {
    builder: ConfigBuilder,
    host: Option<String>,
    hostaddr: Option<String>,
    port: Option<String>,
    /// The user to fall back on before [`DEFAULT_USER`](super::DEFAULT_USER).
    pub(crate) os_user: Option<String>,
}

impl Params {
    /// Sets parameter `name` from its text. An empty value means "not
    /// given": the parameter goes back to its default, as in libpq.
    pub(crate) fn apply(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let b = &mut self.builder;
        let text = (!value.is_empty()).then(|| value.to_owned());
        if !PARAMETERS.contains(&name) {
            let name = name.to_owned();
            return Err(if UNSUPPORTED.contains(&name.as_str()) {
                ConfigError::UnsupportedParameter { name }
            } else {
                ConfigError::UnknownParameter { name }
            });
        }
        if value.contains('\0') {
            // Checked here as well as in `build`, so that the error names the
            // environment variable a bad value came from.
            return Err(ConfigError::invalid(
                name,
                value,
                "must not contain a NUL byte",
            ));
        }
        let given = !value.is_empty();
        match name {
            // Resolved by `Config::parse_with_services` before any parameter.
            "service" => {}
            "host" => self.host = text,
            "hostaddr" => {
                host::check_hostaddr_list(value)?;
                self.hostaddr = text;
            }
            "port" => {
                host::check_port_list(value)?;
                self.port = text;
            }
            "user" => b.user = text,
            "password" => b.password = text.map(Password::new),
            "passfile" => b.passfile = text.map(PathBuf::from),
            "dbname" => b.dbname = text,
            "application_name" => b.application_name = text,
            "options" => b.options = text,
            "sslmode" => b.ssl_mode = given.then(|| value.parse()).transpose()?,
            "sslcert" => b.ssl_cert = text.map(PathBuf::from),
            "sslkey" => b.ssl_key = text.map(PathBuf::from),
            "sslrootcert" => {
                b.ssl_root_cert = text.map(|path| match path.as_str() {
                    "system" => SslRootCert::System,
                    _ => SslRootCert::File(PathBuf::from(path)),
                });
            }
            "connect_timeout" => {
                // libpq: zero or negative waits forever.
                let seconds = if given { int(name, value)? } else { 0 };
                let seconds = u64::try_from(seconds).unwrap_or(0);
                if seconds > 86_400 {
                    return Err(ConfigError::invalid(
                        name,
                        value,
                        "must be at most 86400 seconds",
                    ));
                }
                b.connect_timeout = Some(Duration::from_secs(seconds));
            }
            "keepalives" => b.keepalive.enabled = !given || int(name, value)? != 0,
            "keepalives_idle" => b.keepalive.idle = count(name, value)?.map(Duration::from_secs),
            "keepalives_interval" => {
                b.keepalive.interval = count(name, value)?.map(Duration::from_secs);
            }
            "keepalives_count" => {
                b.keepalive.count = count(name, value)?.and_then(|c| u32::try_from(c).ok());
            }
            "tcp_user_timeout" => {
                b.keepalive.user_timeout = count(name, value)?.map(Duration::from_millis);
            }
            "target_session_attrs" => {
                b.target_session_attrs = if given {
                    value.parse()?
                } else {
                    Default::default()
                };
            }
            "group_commit" => {
                b.group_commit = Some(match value {
                    "" | "on" | "true" | "yes" | "1" => true,
                    "off" | "false" | "no" | "0" => false,
                    _ => return Err(ConfigError::invalid(name, value, "expected on or off")),
                });
            }
            "transaction_pooler" => {
                b.transaction_pooler = if given {
                    value.parse()?
                } else {
                    Default::default()
                };
            }
            "ping_interval" => b.ping_interval = dur(name, value)?,
            "ping_timeout" => b.ping_timeout = dur(name, value)?,
            "backoff_min" => b.backoff_min = dur(name, value)?,
            "backoff_max" => b.backoff_max = dur(name, value)?,
            "backoff_reset_after" => b.backoff_reset_after = dur(name, value)?,
            "publish_timeout" => b.publish_timeout = dur(name, value)?,
            "listen_check_every" => {
                b.listen_check_every = if given {
                    value.trim().parse().map_err(|_| {
                        ConfigError::invalid(name, value, "expected a whole number of pings")
                    })?
                } else {
                    0
                };
            }
            "queue_capacity" => {
                b.queue_capacity = given
                    .then(|| value.trim().parse::<usize>())
                    .transpose()
                    .map_err(|_| ConfigError::invalid(name, value, "expected a number of items"))?;
            }
            "overflow_policy" => {
                b.overflow_policy = if given {
                    value.parse::<OverflowPolicy>().map_err(|_| {
                        ConfigError::invalid(
                            name,
                            value,
                            "expected absorb, drop-oldest, drop-newest, keep-latest, close or \
                             backpressure",
                        )
                    })?
                } else {
                    OverflowPolicy::default()
                };
            }
            "stall_limit" => b.stall_limit = dur(name, value)?,
            "server_queue_limit" => {
                b.server_queue_limit = given.then(|| fraction(name, value)).transpose()?;
            }
            "max_frame_size" => b.max_frame_len = given.then(|| bytes(name, value)).transpose()?,
            "jitter_seed" => {
                b.seed = given
                    .then(|| value.trim().parse::<u64>())
                    .transpose()
                    .map_err(|_| {
                        ConfigError::invalid(name, value, "expected a number from 0 to 2^64-1")
                    })?;
            }
            _ => {
                return Err(ConfigError::UnknownParameter {
                    name: name.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Pairs the host lists, applies the user fallbacks and checks the whole.
    pub(crate) fn finish(self) -> Result<Config, ConfigError> {
        let mut builder = self.builder;
        builder.hosts = host::resolve(
            self.host.as_deref(),
            self.hostaddr.as_deref(),
            self.port.as_deref(),
        )?;
        if builder.user.is_none() {
            builder.user = self.os_user;
        }
        builder.build()
    }
}

/// An integer as libpq reads one: optional sign, surrounding spaces allowed.
fn int(name: &str, value: &str) -> Result<i64, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid(name, value, "expected a whole number"))
}

/// A non-negative count that fits a C `int`; zero or empty means the
/// system default (`None`).
fn count(name: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    match int(name, value)? {
        0 => Ok(None),
        n if (1..=i64::from(i32::MAX)).contains(&n) => Ok(u64::try_from(n).ok()),
        _ => Err(ConfigError::invalid(
            name,
            value,
            "must be from 0 (the system default) to 2147483647",
        )),
    }
}

fn dur(name: &str, value: &str) -> Result<Option<Duration>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    duration::parse(value)
        .map(Some)
        .map_err(|reason| ConfigError::invalid(name, value, reason))
}

/// A size in bytes, optionally with a `KiB` or `MiB` suffix.
fn bytes(name: &str, value: &str) -> Result<usize, ConfigError> {
    const EXPECTED: &str = "expected a number of bytes, optionally with KiB or MiB";
    let text = value.trim();
    let (digits, scale) = if let Some(d) = text.strip_suffix("KiB") {
        (d, 1024)
    } else if let Some(d) = text.strip_suffix("MiB") {
        (d, 1024 * 1024)
    } else {
        (text, 1)
    };
    digits
        .trim_end()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| ConfigError::invalid(name, value, EXPECTED))
}

/// A fraction written `0.5` or `50%`, in parts per million, from 1 ppm to
/// the whole (1 or 100%).
fn fraction(name: &str, value: &str) -> Result<u32, ConfigError> {
    let text = value.trim();
    let (number, scale) = match text.strip_suffix('%') {
        Some(percent) => (percent.trim(), 10_000.0),
        None => (text, 1_000_000.0),
    };
    let ppm = number
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(|f| (f * scale).round())
        .filter(|ppm| (1.0..=1_000_000.0).contains(ppm));
    match ppm {
        Some(ppm) => Ok(ppm as u32),
        None => Err(ConfigError::invalid(
            name,
            value,
            "expected a fraction above 0 and at most 1, e.g. 0.5 or 50%",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_parameter_is_applied_and_none_is_both_known_and_unsupported() {
        for name in PARAMETERS {
            assert_eq!(
                Params::default().apply(name, ""),
                Ok(()),
                "parameter {name}"
            );
            assert!(!UNSUPPORTED.contains(&name), "{name} is listed twice");
        }
    }

    #[test]
    fn unsupported_libpq_parameters_are_named_as_such() {
        for name in UNSUPPORTED {
            assert_eq!(
                Params::default().apply(name, "x"),
                Err(ConfigError::UnsupportedParameter {
                    name: name.to_owned()
                })
            );
        }
    }
}
