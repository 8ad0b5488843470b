//! Writing a [`Config`] back as a `key=value` connection string.

use super::error::REDACTED;
use super::host::HostSpec;
use super::keyvalue::push_pair;
use super::{Config, defaults, duration};
use crate::{DEFAULT_CAPACITY, OverflowPolicy};

/// Renders `config` so that parsing the result gives an equal `Config`.
///
/// Hosts, ports, user and database are always written; everything else only
/// when it differs from its default. With `redact`, the password is replaced
/// by `<redacted>` (for `Display`).
pub(crate) fn conninfo(config: &Config, redact: bool) -> String {
    let mut out = String::new();
    let list =
        |f: &dyn Fn(&HostSpec) -> String| config.hosts.iter().map(f).collect::<Vec<_>>().join(",");
    push_pair(&mut out, "host", &list(&|h| h.host_text().to_owned()));
    if config.hosts.iter().any(|h| {
        matches!(
            h,
            HostSpec::Tcp {
                hostaddr: Some(_),
                ..
            }
        )
    }) {
        let addrs = list(&|h| match h {
            HostSpec::Tcp {
                hostaddr: Some(addr),
                ..
            } => addr.to_string(),
            _ => String::new(),
        });
        push_pair(&mut out, "hostaddr", &addrs);
    }
    push_pair(&mut out, "port", &list(&|h| h.port().to_string()));
    push_pair(&mut out, "user", &config.user);
    if let Some(password) = &config.password {
        push_pair(
            &mut out,
            "password",
            if redact { REDACTED } else { password.as_str() },
        );
    }
    push_pair(&mut out, "dbname", &config.dbname);
    if let Some(name) = &config.application_name {
        push_pair(&mut out, "application_name", name);
    }
    if let Some(options) = &config.options {
        push_pair(&mut out, "options", options);
    }
    if config.ssl_mode != Default::default() {
        push_pair(&mut out, "sslmode", config.ssl_mode.name());
    }
    if let Some(roots) = &config.ssl_root_cert {
        push_pair(&mut out, "sslrootcert", &roots.to_string());
    }
    for (name, path) in [
        ("passfile", &config.passfile),
        ("sslcert", &config.ssl_cert),
        ("sslkey", &config.ssl_key),
    ] {
        if let Some(path) = path {
            push_pair(&mut out, name, &path.to_string_lossy());
        }
    }
    if let Some(timeout) = config.connect_timeout {
        push_pair(&mut out, "connect_timeout", &timeout.as_secs().to_string());
    }
    let keepalive = &config.keepalive;
    if !keepalive.enabled {
        push_pair(&mut out, "keepalives", "0");
    }
    if let Some(idle) = keepalive.idle {
        push_pair(&mut out, "keepalives_idle", &idle.as_secs().to_string());
    }
    if let Some(interval) = keepalive.interval {
        push_pair(
            &mut out,
            "keepalives_interval",
            &interval.as_secs().to_string(),
        );
    }
    if let Some(count) = keepalive.count {
        push_pair(&mut out, "keepalives_count", &count.to_string());
    }
    if let Some(timeout) = keepalive.user_timeout {
        push_pair(
            &mut out,
            "tcp_user_timeout",
            &timeout.as_millis().to_string(),
        );
    }
    if config.target_session_attrs != Default::default() {
        push_pair(
            &mut out,
            "target_session_attrs",
            config.target_session_attrs.name(),
        );
    }
    if !config.group_commit {
        push_pair(&mut out, "group_commit", "off");
    }
    if config.transaction_pooler != Default::default() {
        push_pair(
            &mut out,
            "transaction_pooler",
            config.transaction_pooler.name(),
        );
    }
    for (name, value, default) in [
        (
            "ping_interval",
            config.ping_interval,
            defaults::PING_INTERVAL,
        ),
        ("ping_timeout", config.ping_timeout, defaults::PING_TIMEOUT),
        ("backoff_min", config.backoff_min, defaults::BACKOFF_MIN),
        ("backoff_max", config.backoff_max, defaults::BACKOFF_MAX),
        (
            "backoff_reset_after",
            config.backoff_reset_after,
            defaults::BACKOFF_RESET_AFTER,
        ),
        (
            "publish_timeout",
            config.publish_timeout,
            defaults::PUBLISH_TIMEOUT,
        ),
    ] {
        if value != default {
            push_pair(&mut out, name, &duration::format(value));
        }
    }
    if config.listen_check_every != 0 {
        push_pair(
            &mut out,
            "listen_check_every",
            &config.listen_check_every.to_string(),
        );
    }
    let options = &config.subscribe_options;
    if options.capacity_items() != DEFAULT_CAPACITY {
        push_pair(
            &mut out,
            "queue_capacity",
            &options.capacity_items().to_string(),
        );
    }
    if options.overflow_policy() != OverflowPolicy::default() {
        push_pair(
            &mut out,
            "overflow_policy",
            options.overflow_policy().name(),
        );
    }
    if options.stall_limit_duration() != crate::DEFAULT_STALL_LIMIT {
        push_pair(
            &mut out,
            "stall_limit",
            &duration::format(options.stall_limit_duration()),
        );
    }
    if config.server_queue_limit_ppm != defaults::SERVER_QUEUE_LIMIT_PPM {
        let fraction = f64::from(config.server_queue_limit_ppm) / 1_000_000.0;
        push_pair(&mut out, "server_queue_limit", &fraction.to_string());
    }
    if config.max_frame_len != defaults::MAX_FRAME_LEN {
        push_pair(
            &mut out,
            "max_frame_size",
            &config.max_frame_len.to_string(),
        );
    }
    if let Some(seed) = config.seed {
        push_pair(&mut out, "jitter_seed", &seed.to_string());
    }
    out
}
