//! Deterministic simulation of a [`Bus`](pgnotify_core::bus::Bus) against
//! simulated PostgreSQL hosts, checking the ten invariants of ARCHITECTURE.md
//! after every step.
//!
//! A [`World`] holds one or two [`SimServer`](crate::sim_server::SimServer) hosts
//! (host 1 starts as a standby, for failover), one bus, a virtual clock, a
//! seeded generator and the network between them. `step` moves pending
//! bytes both ways in random chunks, performs the bus's actions (connect,
//! disconnect), reports server-side closes, honours `wants_input`, and
//! `drive_until` jumps virtual time to the next wake-up of the bus or a
//! server. A seed draws the bus's settings and a random schedule
//! ([`World::run_schedule`]): subscribes with every policy, unsubscribes,
//! fast, slow and stalled consumers, NOTIFYs from other sessions, publishes,
//! bounces, and with faults on, cuts at any byte, delayed replies, black
//! holes, refusals, terminated backends, shutdowns, failover and server
//! errors.
//!
//! The reference model reconstructs from each server's sent log what every
//! subscriber was owed (committed to the bus's current connection while its
//! LISTEN was acknowledged, between its ready point and its end) and checks
//! every drained batch against it: order, exact overflow counts where the
//! queue puts its gaps, reconnection gaps, capacity, backoff windows,
//! generations, the one-query re-LISTEN, black-hole detection time,
//! convergence at quiet points, and one result per publish. A failure names
//! the invariant, what was expected and what happened, and the command
//! that replays the seed ([`replay_command`]).
//!
//! ```
//! use pgnotify_testkit::simulation::{run_seed, SeedKind};
//! let stats = run_seed(7, SeedKind::Faults).expect("seed 7 holds every invariant");
//! assert_eq!(stats.schedules, 1);
//! ```

mod backoff;
mod check;
mod durable;
mod frames;
mod notes;
mod rng;
mod schedule;
mod subscriber;
mod world;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use check::{CheckCounts, Violation, invariant_name};
pub use durable::{DurableRunStats, DurableViolation, Scheme, run_durable_seed};
pub use notes::LinkId;
pub use world::{ConsumerKind, RunStats, World, WorldOptions};

/// How many operations one schedule makes.
pub const OPS_PER_SCHEDULE: usize = 40;

/// Which kind of schedule a seed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedKind {
    /// Faults injected; one or two hosts.
    Faults,
    /// No faults: the application side only, one host.
    Calm,
}

/// The command that replays `seed` alone.
pub fn replay_command(seed: u64, kind: SeedKind) -> String {
    let calm = if kind == SeedKind::Calm {
        "PGNOTIFY_SIM_CALM=1 "
    } else {
        ""
    };
    format!(
        "{calm}PGNOTIFY_SIM_SEED={seed} cargo test -p pgnotify-testkit --test simulation -- --nocapture"
    )
}

/// The world options a seed runs with.
pub fn options_for(seed: u64, kind: SeedKind) -> WorldOptions {
    match kind {
        SeedKind::Calm => WorldOptions {
            faults: false,
            hosts: 1,
            read_write: false,
        },
        SeedKind::Faults => WorldOptions {
            faults: true,
            hosts: if seed % 3 == 0 { 2 } else { 1 },
            read_write: seed % 2 == 0,
        },
    }
}

/// A seed that broke an invariant (or panicked).
#[derive(Debug, Clone)]
pub struct SeedFailure {
    /// The seed.
    pub seed: u64,
    /// Its kind.
    pub kind: SeedKind,
    /// Virtual time into the run.
    pub at: Duration,
    /// What broke.
    pub violation: Violation,
}

impl fmt::Display for SeedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({:?}) at {:?} virtual: {}\nreplay: {}",
            self.seed,
            self.kind,
            self.at,
            self.violation,
            replay_command(self.seed, self.kind)
        )
    }
}

/// Runs one seed's schedule; a panic anywhere is reported as invariant 9.
pub fn run_seed(seed: u64, kind: SeedKind) -> Result<RunStats, SeedFailure> {
    let at = Mutex::new(Duration::ZERO);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut world = World::new(seed, options_for(seed, kind))?;
        let outcome = world.run_schedule(OPS_PER_SCHEDULE);
        if let Ok(mut at) = at.lock() {
            *at = world.elapsed();
        }
        outcome.map(|()| world.stats())
    }));
    let at = at.into_inner().unwrap_or_default();
    match result {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(violation)) => Err(SeedFailure {
            seed,
            kind,
            at,
            violation,
        }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned());
            Err(SeedFailure {
                seed,
                kind,
                at,
                violation: Violation::new(9, format!("expected no panic, got: {message}")),
            })
        }
    }
}

/// The outcome of many seeds.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Counters over every seed run.
    pub stats: RunStats,
    /// The failures (the run stops at the first).
    pub failures: Vec<SeedFailure>,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Runs seeds `seeds` of `kind` on `threads` threads, stopping at the first
/// failure.
pub fn run_seeds(seeds: std::ops::Range<u64>, kind: SeedKind, threads: usize) -> Summary {
    let started = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let stop = AtomicBool::new(false);
    let total = Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut local = RunStats::default();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    match run_seed(seed, kind) {
                        Ok(stats) => local.add(&stats),
                        Err(failure) => {
                            stop.store(true, Ordering::Relaxed);
                            failures.push(failure);
                        }
                    }
                }
                if let Ok(mut total) = total.lock() {
                    total.stats.add(&local);
                    total.failures.extend(failures);
                }
            });
        }
    });
    let mut summary = total.into_inner().unwrap_or_default();
    summary.failures.sort_by_key(|f| f.seed);
    summary.elapsed = started.elapsed();
    summary
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "schedules run: {} in {:.1?} ({} steps, {:.0?} virtual time)",
            s.schedules, self.elapsed, s.steps, s.virtual_time
        )?;
        let faults: u64 = s.faults.values().sum();
        writeln!(f, "faults injected: {faults}")?;
        for (kind, n) in &s.faults {
            writeln!(f, "  {kind}: {n}")?;
        }
        writeln!(f, "invariant checks made: {}", s.checks.total())?;
        for n in 1..=10u8 {
            writeln!(
                f,
                "  {n:>2} {}: {}",
                invariant_name(n),
                s.checks.0[usize::from(n)]
            )?;
        }
        writeln!(
            f,
            "notifications committed: {}, delivered to consumers: {}, gaps: {}",
            s.committed, s.delivered, s.gaps
        )?;
        writeln!(
            f,
            "connections: {}, publishes: {} ({} outcome unknown) in {} transactions \
             ({} on a second session while reading was paused)",
            s.connections,
            s.publishes,
            s.outcome_unknown,
            s.publish_transactions,
            s.side_publish_transactions
        )?;
        writeln!(
            f,
            "backoff delays: {} (longest {:?}); black holes detected: {} (slowest {:?})",
            s.backoff_delays, s.longest_backoff, s.black_holes_detected, s.slowest_detection
        )?;
        for failure in &self.failures {
            writeln!(f, "FAILED {failure}")?;
        }
        Ok(())
    }
}
