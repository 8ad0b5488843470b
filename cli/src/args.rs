//! The command line: subcommands, options and their help texts.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pgnotify_core::config::MAX_QUEUE_CAPACITY;
use pgnotify_core::{DEFAULT_CAPACITY, OverflowPolicy};

const MAIN_EXAMPLES: &str = "\
Connection: --url, else DATABASE_URL, else the PG* variables (PGHOST, PGPORT,
PGUSER, PGPASSWORD, PGDATABASE, ...), else localhost:5432 as libpq would.

Examples:
  pgnotify demo                                   # a guided tour on a throwaway local server
  pgnotify --url postgres://app@db/app listen jobs
  pgnotify notify jobs '{\"id\": 42}'
  seq 1 1000 | pgnotify notify jobs               # one NOTIFY per line, pipelined";

const LISTEN_EXAMPLES: &str = "\
Output: one line per event. JSON lines by default:
  {\"type\":\"listening\",\"channels\":[\"jobs\"],\"generation\":1,\"backend_pid\":4242}
  {\"type\":\"notification\",\"channel\":\"jobs\",\"payload\":\"42\",\"pid\":4250}
  {\"type\":\"gap\",\"kind\":\"overflow\",\"missed\":3,\"channel\":\"jobs\"}
  {\"type\":\"disconnected\",\"error\":\"...\"}
  {\"type\":\"connected\",\"generation\":2}
  {\"type\":\"gap\",\"kind\":\"reconnected\",\"generation\":2,\"channel\":\"jobs\"}
A gap line means notifications may be missing there: resynchronise.
A live status line goes to stderr when stdout is a terminal. Ctrl-C stops.

Examples:
  pgnotify listen jobs events
  pgnotify listen --format text jobs
  pgnotify listen --policy keep-latest --capacity 1 wakeups
  pgnotify listen jobs | jq -r 'select(.type==\"notification\") | .payload'";

const NOTIFY_EXAMPLES: &str = "\
With no PAYLOAD, every line of standard input is sent as one notification
(pipelined, in order); failures are reported per line on stderr and the exit
status is 1 if any failed.

Examples:
  pgnotify notify jobs 42
  pgnotify notify jobs                 # then type payloads, one per line; Ctrl-D ends
  printf 'a\\nb\\nc\\n' | pgnotify notify jobs";

const DEMO_EXAMPLES: &str = "\
With no --url, DATABASE_URL, PGHOST, PGHOSTADDR, PGPORT or PGDATABASE, the demo
starts a throwaway PostgreSQL from this machine's server binaries (Debian:
apt-get install postgresql) and removes it afterwards. Against a given server
it uses the channels demo.orders and demo.users, and forces the reconnect by
dropping its own connection (it cannot terminate backends there).

Examples:
  pgnotify demo
  pgnotify --url postgres://postgres@localhost/postgres demo";

/// `pgnotify`: LISTEN and NOTIFY from the shell, through pgnotify.
#[derive(Debug, Parser)]
#[command(
    name = "pgnotify",
    version,
    about = "LISTEN and NOTIFY from the shell: one connection, in-band gaps, no silent loss.",
    after_help = MAIN_EXAMPLES,
    propagate_version = true
)]
pub(crate) struct Cli {
    /// Where to connect.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Connection options, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub(crate) struct ConnectionArgs {
    /// Connection string: a postgres:// URL or key=value pairs [default: DATABASE_URL, then the PG* variables]
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// How long to keep trying the first connection before giving up (e.g. 500ms, 10s, 2m)
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print the notifications on one or more channels, one line per event
    #[command(after_help = LISTEN_EXAMPLES)]
    Listen(ListenArgs),
    /// Send a notification, or one per line of standard input
    #[command(after_help = NOTIFY_EXAMPLES)]
    Notify(NotifyArgs),
    /// A guided tour: shared connection, overflow gap, reconnect gap, stats
    #[command(after_help = DEMO_EXAMPLES)]
    Demo,
}

/// `pgnotify listen`.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Channels to listen on (case-sensitive, 1 to 63 bytes each)
    #[arg(required = true, value_name = "CHANNEL")]
    pub(crate) channels: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub(crate) format: Format,
    /// What a channel's queue does when it is full: absorb (pause reading, bounded by a stall limit and a server-queue guard), drop-oldest, drop-newest, keep-latest, close, backpressure
    #[arg(long, value_name = "POLICY", default_value = "absorb", value_parser = parse_policy)]
    pub(crate) policy: OverflowPolicy,
    /// Queue capacity per channel, in notifications
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAPACITY, value_parser = parse_capacity)]
    pub(crate) capacity: usize,
}

/// `pgnotify notify`.
#[derive(Debug, Args)]
pub(crate) struct NotifyArgs {
    /// The channel to notify (case-sensitive, 1 to 63 bytes)
    #[arg(value_name = "CHANNEL")]
    pub(crate) channel: String,
    /// The payload (at most 7999 bytes); without it, one notification per line of stdin
    #[arg(value_name = "PAYLOAD")]
    pub(crate) payload: Option<String>,
}

/// How `listen` prints events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line
    Json,
    /// One readable line per event
    Text,
}

fn parse_policy(s: &str) -> Result<OverflowPolicy, String> {
    s.parse()
        .map_err(|e: pgnotify_core::UnknownPolicy| e.to_string())
}

fn parse_capacity(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if (1..=MAX_QUEUE_CAPACITY).contains(&n) {
        Ok(n)
    } else {
        Err(format!("the capacity must be 1 to {MAX_QUEUE_CAPACITY}"))
    }
}

/// Parses `500ms`, `10s`, `2m` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.');
    let (number, unit) = s.split_at(split.unwrap_or(s.len()));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 500ms, 10s or 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn capacity_outside_the_core_limits_is_rejected() {
        assert!(parse_capacity("0").is_err());
        assert!(parse_capacity("-1").is_err());
        assert_eq!(parse_capacity("1"), Ok(1));
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
