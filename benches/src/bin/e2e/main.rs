//! End-to-end benchmarks against a real, throwaway PostgreSQL (issue 8,
//! items 2–6), each with its baseline in the same run. Prints markdown
//! tables; asserts nothing about time.
//!
//! ```text
//! cargo run --release -p pgnotify-benches --bin e2e -- <figure> [--option value ...]
//! ```
//!
//! Figures: `burst`, `drain`, `latency`, `memory`, `reconnect`, `publish`, `flap`,
//! `stall`, `durable-publish`, `durable-latency`, `durable-catchup`. Options
//! are listed by `--help`.

mod burst;
mod drain;
mod durable;
mod exec;
mod flap;
mod latency;
mod memory;
mod peers;
mod publish;
mod raw;
mod reconnect;
mod report;
mod stall;

use std::collections::HashMap;
use std::str::FromStr;

use pgnotify_core::Config;
use pgnotify_testkit::server::TestServer;

use exec::Kind;

const HELP: &str = "\
usage: e2e <figure> [--option value ...]

figures and their options (defaults in brackets):
  burst      one transaction of N notifications while default subscribers read:
             --n [10000,100000,1000000] --subs [1,100] --payload [16] --trials [1]
  drain      burst drain: --n [1000000] --payloads [16,1000] --subs [1,100]
             --runtimes [tokio,smol,async-std] --capacity [1024] --trials [1]
             --readers [recv,batch] (also: stream) --peers [raw,sqlx,forge]
  latency    NOTIFY-to-subscriber latency: --rate [10000] --secs [10] --warmup [1]
             --subs [1,100] --runtimes [tokio,smol,async-std]
  memory     RSS with --subs [100000] subscribers over --channels [10000]
  reconnect  re-LISTEN after pg_terminate_backend: --channels [10000] --trials [5]
  publish-lone  one notify at a time, latency per call: --n [500] --rate [100]
  publish    pipelined notify: --n [100000] --in-flight [1000] --trials [3]
             --runtimes [tokio,smol,async-std]
  flap       backend terminated every --every [20] s for --secs [300] s: --rate [100]
  stall      one subscriber never reads among --readers [9], default options: --n [200000]
  durable-publish  64 concurrent autocommit publishers, pgnotify.publish vs pg_notify
             (tokio-postgres) and Durable::notify vs Listener::notify:
             --n [20000] --publishers [64] --trials [3]
  durable-latency  publish call → recv, one at a time, durable vs plain, and 64 KiB
             and 1 MiB durable payloads: --n [500] --rate [100] --big-n [30]
  durable-catchup  10,000 missed durable messages: a late Since::After(0) subscriber,
             and a bounced listener kept out while they were published: --n [10000] --trials [3]
";

/// The command line: a figure and `--key value` options.
pub(crate) struct Args {
    figure: String,
    options: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = std::env::args().skip(1);
        let figure = args.next().ok_or("no figure given")?;
        let mut options = HashMap::new();
        while let Some(key) = args.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {key:?}"))?
                .to_owned();
            let value = args
                .next()
                .ok_or_else(|| format!("--{key} needs a value"))?;
            options.insert(key, value);
        }
        Ok(Self { figure, options })
    }

    /// Option `key` parsed, or `default`.
    pub(crate) fn get<T: FromStr>(&self, key: &str, default: T) -> T {
        match self.options.get(key) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| exit_with(&format!("--{key}: cannot parse {v:?}"))),
            None => default,
        }
    }

    /// Option `key` as a comma-separated list, or `default`.
    pub(crate) fn list<T: FromStr>(&self, key: &str, default: &str) -> Vec<T> {
        let text = self.options.get(key).map_or(default, String::as_str);
        text.split(',')
            .map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| exit_with(&format!("--{key}: cannot parse {v:?}")))
            })
            .collect()
    }

    /// The runtimes to run on.
    pub(crate) fn runtimes(&self) -> Vec<Kind> {
        self.list("runtimes", "tokio,smol,async-std")
    }
}

fn exit_with(message: &str) -> ! {
    eprintln!("e2e: {message}\n\n{HELP}");
    std::process::exit(2)
}

/// The listener's configuration for `server`, with `application_name` set
/// so the backend can be found (and terminated) by name.
pub(crate) fn listener_config(server_conninfo: &str, application_name: &str) -> Config {
    Config::parse(&format!(
        "{server_conninfo} application_name={application_name}"
    ))
    .expect("a valid connection string")
}

/// Calls the generic `$f::<R>(args)` with the runtime type of `$kind`.
macro_rules! on_runtime {
    ($kind:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $kind {
            $crate::exec::Kind::Tokio => $f::<pgnotify_tokio::TokioRuntime>($($arg),*),
            $crate::exec::Kind::Smol => $f::<pgnotify_smol::SmolRuntime>($($arg),*),
            $crate::exec::Kind::AsyncStd => $f::<pgnotify_async_std::AsyncStdRuntime>($($arg),*),
        }
    };
}
pub(crate) use on_runtime;

fn main() {
    let args = Args::parse().unwrap_or_else(|e| exit_with(&e));
    if ["help", "--help", "-h"].contains(&args.figure.as_str()) {
        print!("{HELP}");
        return;
    }
    if args.figure == "memory-child" {
        // A child process of `memory`: one implementation, measured alone.
        memory::child(&args);
        return;
    }
    if ![
        "burst",
        "drain",
        "latency",
        "memory",
        "reconnect",
        "publish",
        "publish-lone",
        "flap",
        "stall",
        "durable-publish",
        "durable-latency",
        "durable-catchup",
    ]
    .contains(&args.figure.as_str())
    {
        exit_with(&format!("unknown figure {:?}", args.figure));
    }
    let server = TestServer::new().expect("start a throwaway PostgreSQL");
    let version = server.execute("SHOW server_version").unwrap_or_default();
    println!(
        "PostgreSQL {version} on 127.0.0.1:{}; nproc {}; load average {}",
        server.port(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    match args.figure.as_str() {
        "burst" => burst::run(&server, &args),
        "drain" => drain::run(&server, &args),
        "latency" => latency::run(&server, &args),
        "memory" => memory::run(&server, &args),
        "reconnect" => reconnect::run(&server, &args),
        "publish" => publish::run(&server, &args),
        "publish-lone" => publish::run_lone(&server, &args),
        "flap" => flap::run(&server, &args),
        "stall" => stall::run(&server, &args),
        "durable-publish" => durable::run_publish(&server, &args),
        "durable-latency" => durable::run_latency(&server, &args),
        "durable-catchup" => durable::run_catchup(&server, &args),
        _ => unreachable!("checked above"),
    }
}
