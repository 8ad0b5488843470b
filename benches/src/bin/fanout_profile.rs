//! Runs one fan-out scenario in a loop without criterion, for a profiler:
//!
//! ```text
//! cargo build --profile bench -p pgnotify-benches --bin fanout_profile
//! valgrind --tool=callgrind target/release/fanout_profile 100sub_1ch_16B pgnotify 200
//! ```
//!
//! Arguments: the scenario name (as in the benchmark ids), `pgnotify` or
//! `broadcast_string`, and the number of chunks to feed.

use std::hint::black_box;
use std::process::ExitCode;

use pgnotify_benches::fanout::{BroadcastFanout, PgnotifyFanout, Scenario};

/// Feeds one chunk and returns the deliveries it made.
type RunChunk = Box<dyn FnMut(&[u8]) -> usize>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, which, iterations] = args.as_slice() else {
        eprintln!("usage: fanout_profile <scenario> <pgnotify|broadcast_string> <chunks>");
        return ExitCode::FAILURE;
    };
    let Some(scenario) = Scenario::all().into_iter().find(|s| s.name() == *name) else {
        let names: Vec<String> = Scenario::all().iter().map(Scenario::name).collect();
        eprintln!("no scenario {name}; there are {}", names.join(", "));
        return ExitCode::FAILURE;
    };
    let Ok(iterations) = iterations.parse::<usize>() else {
        eprintln!("{iterations} is not a number of chunks");
        return ExitCode::FAILURE;
    };
    let chunks = scenario.chunks();
    let mut run: RunChunk = match which.as_str() {
        "pgnotify" => {
            let mut fanout = match PgnotifyFanout::new(&scenario) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            Box::new(move |c| fanout.run_chunk(c))
        }
        "broadcast_string" => {
            let mut fanout = BroadcastFanout::new(&scenario);
            Box::new(move |c| fanout.run_chunk(c))
        }
        other => {
            eprintln!("{other} is neither pgnotify nor broadcast_string");
            return ExitCode::FAILURE;
        }
    };
    let mut delivered = 0;
    for i in 0..iterations {
        delivered += run(black_box(&chunks[i % chunks.len()]));
    }
    println!("{delivered} deliveries");
    ExitCode::SUCCESS
}
