//! Where to connect: `--url`, `DATABASE_URL` or the PG* variables, and the
//! first connection with a time limit.

use std::time::Duration;

use pgnotify_core::Config;
use pgnotify_tokio::{Listener, load_config};

use crate::error::CliError;

/// The PG* variables that name a server; when none is set (and neither
/// `--url` nor `DATABASE_URL` is), the demo starts its own.
const SERVER_VARIABLES: [&str; 5] = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE"];

/// The application name set when the connection string gives none, so the
/// session is recognisable in `pg_stat_activity`.
const APPLICATION_NAME: &str = "pgnotify";

/// A parsed connection setting and whether the user named a server at all.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) config: Config,
    /// Whether `--url`, `DATABASE_URL` or a PG* variable naming a server was given.
    pub(crate) named: bool,
}

/// Builds the configuration from `--url`, else `DATABASE_URL`, else the PG*
/// variables, with the PG* variables as defaults throughout.
pub(crate) fn resolve(url: Option<&str>) -> Result<Target, CliError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let var = |name: &str| {
        env.iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let (config, named) = match (url, var("DATABASE_URL")) {
        (Some(url), _) => (parse(url, "--url")?, true),
        (None, Some(url)) => (parse(url, "DATABASE_URL")?, true),
        (None, None) => {
            let config = load_config("").map_err(CliError::Config)?;
            (config, SERVER_VARIABLES.iter().any(|v| var(v).is_some()))
        }
    };
    Ok(Target {
        config: with_application_name(config, APPLICATION_NAME),
        named,
    })
}

/// Parses as libpq would here: PG* variables and service files
/// ([`load_config`]).
fn parse(url: &str, origin: &'static str) -> Result<Config, CliError> {
    load_config(url).map_err(|source| CliError::ConnectionString { origin, source })
}

/// Shortens each connection attempt to end before `limit`, so that when
/// the CLI gives up at least one attempt has failed and its cause can be
/// named. An attempt lasts `connect_timeout`, or `ping_interval +
/// ping_timeout` (15 s by default) without one; `connect_timeout` counts
/// whole seconds from 2 up, so a `limit` under about 2.3 s is left alone.
fn attempts_within(config: Config, limit: Duration) -> Config {
    let attempt = config
        .connect_timeout()
        .unwrap_or(config.ping_interval() + config.ping_timeout());
    let cap = Duration::from_secs(limit.mul_f64(0.9).as_secs());
    if attempt <= cap || cap < Duration::from_secs(2) {
        return config;
    }
    config
        .to_builder()
        .connect_timeout(cap)
        .build()
        .unwrap_or(config)
}

/// Sets `application_name` unless the connection string chose one.
pub(crate) fn with_application_name(config: Config, name: &str) -> Config {
    if config.application_name().is_some() {
        return config;
    }
    config
        .to_builder()
        .application_name(name)
        .build()
        .unwrap_or(config)
}

/// Connects a listener, giving up after `limit` if no connection is up by then.
pub(crate) async fn connect(target: Target, limit: Duration) -> Result<Listener, CliError> {
    let Target { config, named } = target;
    let config = attempts_within(config, limit);
    let target = config
        .hosts()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Listener::builder(config)
        .give_up_after(limit)
        .connect()
        .await
        .map_err(|source| CliError::Connect {
            target,
            source: Box::new(source),
            defaulted: !named,
        })
}
