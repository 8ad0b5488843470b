//! Starts a throwaway PostgreSQL server the way the tests do, for poking at by hand or for
//! measuring how long a start takes.
//!
//! - `throwaway-postgres`: starts a server, prints `key=value` lines (`url`, `conninfo`, `pid`,
//!   `port`, `data_dir`, `unix_socket_dir`) and keeps it running until stdin closes.
//! - `throwaway-postgres --measure N`: starts and drops N+1 servers one after the other and
//!   prints the first start (which includes the once-per-process `initdb`) and the median of
//!   the other N.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pgnotify_testkit::server::TestServer;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [] => serve(),
        [flag, n] if flag == "--measure" => match n.parse() {
            Ok(n) if n > 0 => measure(n),
            _ => Err(format!("--measure takes a positive count, not {n:?}")),
        },
        _ => Err("usage: throwaway-postgres [--measure N]".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("throwaway-postgres: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> Result<(), String> {
    let server = TestServer::new().map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let pid = server.pid().unwrap_or_default();
    let lines = [
        format!("url={}", server.url()),
        format!("conninfo={}", server.conninfo()),
        format!("pid={pid}"),
        format!("port={}", server.port()),
        format!("data_dir={}", server.data_dir().display()),
        format!("unix_socket_dir={}", server.unix_socket_dir().display()),
    ];
    for line in lines {
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    // Runs until whoever started us closes our stdin (or kills us).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

fn measure(n: usize) -> Result<(), String> {
    let first = time_one_start()?;
    println!("first start (includes initdb of the template): {first:?}");
    let mut times = (0..n)
        .map(|_| time_one_start())
        .collect::<Result<Vec<_>, _>>()?;
    times.sort();
    println!("starts: {times:?}");
    println!("median of {n} starts: {:?}", times[n / 2]);
    Ok(())
}

fn time_one_start() -> Result<Duration, String> {
    let started = Instant::now();
    let server = TestServer::new().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    drop(server);
    Ok(elapsed)
}
