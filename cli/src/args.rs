//! The command line: subcommands, options and their help texts.

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use pgnotify_core::config::MAX_QUEUE_CAPACITY;
use pgnotify_core::durable::{DEFAULT_MAX_PAYLOAD, DurableSchema, Since};
use pgnotify_core::{DEFAULT_CAPACITY, OverflowPolicy};

const MAIN_EXAMPLES: &str = "\
Connection: --url, else DATABASE_URL, else the PG* variables (PGHOST, PGPORT,
PGUSER, PGPASSWORD, PGDATABASE, ...), else localhost:5432 as libpq would.

Examples:
  pgnotify demo                                   # a guided tour on a throwaway local server
  pgnotify --url postgres://app@db/app listen jobs
  pgnotify notify jobs '{\"id\": 42}'
  seq 1 1000 | pgnotify notify jobs               # one NOTIFY per line, pipelined
  pgnotify install                                # durable channels (once per database)
  pgnotify notify --durable orders '...'          # kept in a table: survives reconnects
  pgnotify listen --durable --since 41 orders     # every message after position 41
  pgnotify completions bash                       # or zsh, fish, ...; and `pgnotify man`";

const LISTEN_EXAMPLES: &str = "\
For example:
  {\"type\":\"notification\",\"channel\":\"jobs\",\"payload\":\"42\",\"pid\":4250,\"ts\":\"...\",\"v\":1}
  {\"type\":\"gap\",\"kind\":\"overflow\",\"missed\":3,\"channel\":\"jobs\",\"ts\":\"...\",\"v\":1}
A live status line goes to stderr when stdout is a terminal, and a summary
line (notifications, gaps, reconnects) when it exits. Ctrl-C stops.

Exit status: 0 after Ctrl-C, --count or --until-payload; 3 when --timeout
passed first (or, alone, passed with no notification); 1 when every
subscription ended or on a failure; 2 for bad arguments.

Examples:
  pgnotify listen jobs events
  pgnotify listen --format text jobs
  pgnotify listen --policy keep-latest --capacity 1 wakeups
  pgnotify listen --until-payload 'done 42' --timeout 5m jobs   # wait for job 42
  pgnotify listen --count 1 --timeout 30s ready                 # the first one, or exit 3
  pgnotify listen jobs | jq -r 'select(.type==\"notification\") | .payload'

Durable channels (after `pgnotify install`): with --durable, listen prints
every message published with `notify --durable` (or SQL's pgnotify.publish)
after --since, exactly once and in order, as \"message\" lines with their
position; a reconnect or an overflow costs time, never a message. Store the
last position printed and pass it to --since to resume after it. Messages
pruned before they were read come as one \"gap\" line of kind \"expired\".
One CHANNEL only.
  pgnotify listen --durable --since 0 orders            # everything retained
  pgnotify listen --durable --since now --count 1 orders";

const NOTIFY_EXAMPLES: &str = "\
With no PAYLOAD, --file or --stdin-whole, every line of standard input is
sent as one notification (pipelined, in order); failures are reported per
line on stderr and the exit status is 1 if any failed. --file and
--stdin-whole send the whole text as one payload, byte for byte (a final
newline included).

Examples:
  pgnotify notify jobs 42
  pgnotify notify --file job.json jobs
  jq -c . job.json | pgnotify notify --stdin-whole jobs
  pgnotify notify jobs                 # then type payloads, one per line; Ctrl-D ends
  printf 'a\\nb\\nc\\n' | pgnotify notify jobs

With --durable (after `pgnotify install`), each payload is published with
the schema's publish() function in a transaction of its own and kept in its
table until pruned; the ticket publish() returned is printed on stdout (one
per line of stdin, published one after another, so their positions follow
the lines). Payloads may be as long as the schema's bound (16 MiB unless
installed otherwise), far beyond NOTIFY's 8,000 bytes.
  pgnotify notify --durable orders '{\"id\": 42}'
  pgnotify notify --durable --file big.json orders";

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
    /// Log the library's connection life to stderr (-v: info, -vv: debug, -vvv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print the notifications on one or more channels, one line per event
    #[command(after_help = listen_help())]
    Listen(ListenArgs),
    /// Send a notification, or one per line of standard input
    #[command(after_help = NOTIFY_EXAMPLES)]
    Notify(NotifyArgs),
    /// Install durable channels in a schema (idempotent): a table and a publish() function
    #[command(after_help = INSTALL_EXAMPLES)]
    Install(InstallArgs),
    /// Delete old durable messages, by age and/or count per channel
    #[command(after_help = PRUNE_EXAMPLES)]
    Prune(PruneArgs),
    /// A guided tour: shared connection, overflow gap, reconnect gap, stats
    #[command(after_help = DEMO_EXAMPLES)]
    Demo,
    /// Print a shell completion script to stdout (bash, zsh, fish, elvish, powershell)
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete in
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout
    #[command(after_help = MAN_EXAMPLES)]
    Man,
}

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  pgnotify completions bash > /etc/bash_completion.d/pgnotify
  pgnotify completions zsh > \"${fpath[1]}/_pgnotify\"
  pgnotify completions fish > ~/.config/fish/completions/pgnotify.fish";

const INSTALL_EXAMPLES: &str = "\
Creates (or upgrades) the schema, its tables messages and channels, and the
functions publish(channel, payload), prune(max_age, keep_last),
schema_version() and max_payload(), in one transaction. Running it again
changes nothing but the payload bound. Needs the right to create in the
database. Then publish from anywhere, in your own transaction:
  SELECT pgnotify.publish('orders', '{\"id\": 42}');

Examples:
  pgnotify install
  pgnotify install --schema outbox --max-payload 1048576";

const PRUNE_EXAMPLES: &str = "\
Deletes, in every channel of the schema, the messages older than --max-age
and all but the last --keep-last; prints how many it deleted. A durable
listener whose cursor falls among them gets one \"expired\" gap line. The
same as SQL's SELECT pgnotify.prune(max_age => '7 days', keep_last => 100000).

Examples:
  pgnotify prune --max-age 7d
  pgnotify prune --keep-last 100000
  pgnotify prune --schema outbox --max-age 12h --keep-last 1000";

const MAN_EXAMPLES: &str = "\
Examples:
  pgnotify man | man -l -
  pgnotify man > /usr/local/share/man/man1/pgnotify.1";

/// `listen --help`'s text after the options: the JSON line format, from
/// [`schema`](crate::schema), then the rest.
fn listen_help() -> String {
    format!("{}\n\n{LISTEN_EXAMPLES}", crate::schema::help())
}

/// `pgnotify listen`.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Channels to listen on (case-sensitive, 1 to 63 bytes each; a repeated one counts once)
    #[arg(required = true, value_name = "CHANNEL")]
    pub(crate) channels: Vec<String>,
    /// Exit (status 0) after N notifications
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Exit (status 0) after a notification whose payload is exactly TEXT (printed too)
    #[arg(long, value_name = "TEXT")]
    pub(crate) until_payload: Option<String>,
    /// Exit with status 3 if --count or --until-payload is not met within DURATION, counted from the start (alone: if no notification arrived)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub(crate) format: Format,
    /// What a channel's queue does when it is full: absorb (pause reading, bounded by a stall limit and a server-queue guard), drop-oldest, drop-newest, keep-latest, close, backpressure
    #[arg(long, value_name = "POLICY", default_value = "absorb", value_parser = parse_policy)]
    pub(crate) policy: OverflowPolicy,
    /// Queue capacity per channel, in notifications
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAPACITY, value_parser = parse_capacity)]
    pub(crate) capacity: usize,
    /// Receive durable messages (see `pgnotify install`) with their positions: exactly once, in order, across reconnects; one CHANNEL only
    #[arg(long)]
    pub(crate) durable: bool,
    /// With --durable: start after this position (0: every retained message), or `now`
    #[arg(long, value_name = "POSITION|now", default_value = "now", value_parser = parse_since, requires = "durable")]
    pub(crate) since: Since,
    /// With --durable: the schema durable channels are installed in
    #[arg(long, value_name = "NAME", default_value = "pgnotify", value_parser = parse_schema, requires = "durable")]
    pub(crate) schema: DurableSchema,
}

/// `pgnotify notify`.
#[derive(Debug, Args)]
pub(crate) struct NotifyArgs {
    /// The channel to notify (case-sensitive, 1 to 63 bytes)
    #[arg(value_name = "CHANNEL")]
    pub(crate) channel: String,
    /// The payload (at most 7999 bytes, or the schema's bound with --durable); without it, one notification per line of stdin
    #[arg(value_name = "PAYLOAD", conflicts_with_all = ["file", "stdin_whole"])]
    pub(crate) payload: Option<String>,
    /// Send the contents of PATH (UTF-8) as one payload
    #[arg(long, value_name = "PATH", conflicts_with = "stdin_whole")]
    pub(crate) file: Option<std::path::PathBuf>,
    /// Send all of standard input as one payload, instead of one per line
    #[arg(long)]
    pub(crate) stdin_whole: bool,
    /// Publish durably (see `pgnotify install`): kept in a table, no 8,000-byte limit; prints the ticket publish() returns
    #[arg(long)]
    pub(crate) durable: bool,
    /// With --durable: the schema durable channels are installed in
    #[arg(long, value_name = "NAME", default_value = "pgnotify", value_parser = parse_schema, requires = "durable")]
    pub(crate) schema: DurableSchema,
}

/// `pgnotify install`.
#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// The schema to install in (created if missing; ASCII letters, digits and `_`)
    #[arg(long, value_name = "NAME", default_value = "pgnotify", value_parser = parse_schema)]
    pub(crate) schema: DurableSchema,
    /// The longest payload publish() accepts, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_PAYLOAD, value_parser = parse_max_payload)]
    pub(crate) max_payload: usize,
}

/// `pgnotify prune`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["max_age", "keep_last"])))]
pub(crate) struct PruneArgs {
    /// The schema durable channels are installed in
    #[arg(long, value_name = "NAME", default_value = "pgnotify", value_parser = parse_schema)]
    pub(crate) schema: DurableSchema,
    /// Delete messages published longer ago than this (e.g. 7d, 12h, 30m, 90s)
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    pub(crate) max_age: Option<Duration>,
    /// Keep only the last N messages of each channel
    #[arg(long, value_name = "N")]
    pub(crate) keep_last: Option<u64>,
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

fn parse_schema(s: &str) -> Result<DurableSchema, String> {
    DurableSchema::new(s).map_err(|e| e.to_string())
}

/// `now`, or a position: a whole number, 0 for "every retained message".
fn parse_since(s: &str) -> Result<Since, String> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(Since::Now);
    }
    s.parse()
        .map(Since::After)
        .map_err(|_| format!("{s:?} is neither a position (0, 1, 2, ...) nor `now`"))
}

fn parse_max_payload(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a positive number of bytes")),
        Ok(n) => Ok(n),
    }
}

/// Parses an age for `prune`: `7d`, `12h`, or whatever [`parse_duration`]
/// takes; whole seconds count.
fn parse_age(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    for (unit, seconds) in [("d", 86_400.0), ("h", 3_600.0)] {
        if let Some(number) = t.strip_suffix(unit) {
            let value: f64 = number
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not an age (try 7d, 12h, 30m or 90s)"))?;
            return Duration::try_from_secs_f64(value * seconds)
                .map_err(|_| format!("{s:?} is out of range"));
        }
    }
    parse_duration(t)
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
    fn since_ages_and_payload_bounds_parse() {
        assert_eq!(parse_since("now"), Ok(Since::Now));
        assert_eq!(parse_since("0"), Ok(Since::After(0)));
        assert_eq!(parse_since("41"), Ok(Since::After(41)));
        assert!(parse_since("-1").is_err());
        assert!(parse_since("later").is_err());
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_age("0"), Ok(Duration::ZERO));
        assert!(parse_age("soon").is_err());
        assert!(parse_max_payload("0").is_err());
        assert_eq!(parse_max_payload("1048576"), Ok(1 << 20));
        assert!(parse_schema("no-dashes").is_err());
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
