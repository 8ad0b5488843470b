//! A random schedule per seed: application calls, NOTIFYs from other
//! sessions, faults, and the way time moves between them.

use std::time::Duration;

use pgnotify_core::OverflowPolicy;
use pgnotify_core::bus::TransportErrorKind;

use crate::sim_server::{FaultPoint, ServerRole, ShutdownMode, SqlError};

use super::check::Violation;
use super::subscriber::Consumer;
use super::world::{ConsumerKind, World};

/// Channels drawn from: case variants, quotes, spaces, non-ASCII, the
/// longest allowed name.
const CHANNELS: [&str; 8] = [
    "jobs",
    "Jobs",
    "JOBS",
    "a b",
    "quote\"d",
    "it's",
    "ünï",
    "c23456789012345678901234567890123456789012345678901234567890123",
];

/// Channel names and payloads the bus must refuse before sending anything.
const BAD_CHANNELS: [&str; 3] = [
    "",
    "c234567890123456789012345678901234567890123456789012345678901234",
    "nul\0",
];

impl World {
    fn channel(&mut self) -> &'static str {
        // Favour a few channels so subscribers share them.
        if self.rng.chance(2, 3) {
            CHANNELS[self.rng.below(3) as usize]
        } else {
            CHANNELS[self.rng.below(CHANNELS.len() as u64) as usize]
        }
    }

    fn random_subscribe(&mut self) -> Result<(), Violation> {
        let channel = self.channel();
        let policy = *self.rng.pick(&OverflowPolicy::ALL);
        let capacity = *self.rng.pick(&[1usize, 1, 2, 3, 8, 1024]);
        let max_bytes = self
            .rng
            .chance(1, 6)
            .then(|| *self.rng.pick(&[64usize, 500, 4096]));
        let consumer = *self.rng.pick(&[
            ConsumerKind::Fast,
            ConsumerKind::Fast,
            ConsumerKind::Slow,
            ConsumerKind::Never,
        ]);
        let batch = *self.rng.pick(&[1usize, 2, 5, 64]);
        self.subscribe(channel, policy, capacity, max_bytes, consumer, batch)
    }

    fn random_external(&mut self) -> Result<(), Violation> {
        let host = self.rng.below(self.servers.len() as u64) as usize;
        let count = self.rng.between(1, 6);
        let mut batch: Vec<(&str, String)> = Vec::new();
        for _ in 0..count {
            if !batch.is_empty() && self.rng.chance(1, 5) {
                // A duplicate in the same transaction: collapsed by the server.
                let dup = batch[self.rng.below(batch.len() as u64) as usize].clone();
                batch.push(dup);
            } else {
                let channel = self.channel();
                let payload = self.payload('e');
                batch.push((channel, payload));
            }
        }
        let pairs: Vec<(&str, &str)> = batch.iter().map(|(c, p)| (*c, p.as_str())).collect();
        if self.rng.chance(1, 2) {
            let mut seen: Vec<(&str, &str)> = Vec::new();
            for pair in pairs {
                // One transaction each: a duplicate would be a second commit.
                if seen.contains(&pair) {
                    continue;
                }
                seen.push(pair);
                self.notify_external(host, &[pair])?;
            }
            Ok(())
        } else {
            self.notify_external(host, &pairs)
        }
    }

    /// Bad arguments are rejected before anything is sent (invariant 9).
    fn bad_arguments(&mut self) -> Result<(), Violation> {
        self.settle()?;
        let bad = *self.rng.pick(&BAD_CHANNELS);
        let rejected_sub = self.bus.subscribe(bad, Default::default()).is_err();
        let rejected_pub = self.bus.notify(self.now, bad, "x").is_err();
        let long = "y".repeat(8000);
        let rejected_payload = self.bus.notify(self.now, "jobs", &long).is_err()
            && self.bus.notify(self.now, "jobs", "nul\0").is_err();
        let output = self.bus.poll_output(&mut Vec::new());
        self.stats.checks.hit(9);
        if !(rejected_sub && rejected_pub && rejected_payload) || output.is_some() {
            return Err(Violation::new(
                9,
                format!(
                    "expected {bad:?} and a bad payload rejected with nothing sent, got subscribe \
                     rejected {rejected_sub}, notify {rejected_pub}, payload {rejected_payload}, \
                     output {output:?}"
                ),
            ));
        }
        Ok(())
    }

    fn random_fault(&mut self) -> Result<(), Violation> {
        let hosts = self.servers.len();
        let link_host = self.link.as_ref().map(|l| l.id.0);
        match self.rng.below(13) {
            0 => {
                self.stats.fault("disconnect now");
                self.cut(TransportErrorKind::Io)?;
            }
            1 => {
                if let Some(link) = &mut self.link {
                    let at = self.rng.between(0, 400);
                    link.cut_at = Some(at);
                    self.stats.fault("disconnect at byte");
                }
            }
            2 => self.black_hole()?,
            3 => {
                if let Some(link) = &mut self.link {
                    link.slowed = true;
                    let (host, conn) = link.id;
                    let delay = self.ping_timeout + self.rng.millis(1, 2000);
                    self.servers[host].delay_replies(conn, delay);
                    self.stats.fault("replies delayed past ping timeout");
                }
            }
            4 => {
                let host = self.rng.below(hosts as u64) as usize;
                self.servers[host].set_refusing(true);
                self.stats.fault("refusing connections");
            }
            5 => {
                if let Some(link) = &self.link {
                    let (host, conn) = link.id;
                    self.servers[host].terminate(conn, self.now);
                    self.stats.fault("backend terminated");
                }
            }
            6 => {
                let host = link_host.unwrap_or(0);
                let mode = *self.rng.pick(&[
                    ShutdownMode::Fast,
                    ShutdownMode::Immediate,
                    ShutdownMode::Crash,
                ]);
                self.servers[host].shutdown(self.now, mode);
                self.stats.fault("server shutdown");
            }
            7 => {
                for s in &mut self.servers {
                    s.restart();
                    s.set_refusing(false);
                }
                self.stats.fault("server restart");
            }
            8 if hosts == 2 => {
                let primary = self
                    .servers
                    .iter()
                    .position(|s| s.role() == ServerRole::Primary)
                    .unwrap_or(0);
                let other = 1 - primary;
                self.servers[primary].set_role(ServerRole::Standby);
                self.servers[other].set_role(ServerRole::Primary);
                // A primary does not become a standby with sessions alive:
                // its connections end.
                if let Some(link) = &self.link
                    && link.id.0 == primary
                {
                    let (host, conn) = link.id;
                    self.servers[host].terminate(conn, self.now);
                }
                self.stats.fault("failover");
            }
            9 => {
                let host = self.rng.below(hosts as u64) as usize;
                let error = if self.rng.chance(1, 2) {
                    SqlError::error("53100", "could not extend file: No space left on device")
                } else {
                    SqlError::error("54000", "too many notifications in the NOTIFY queue")
                };
                self.servers[host].fail_next(FaultPoint::Listen, error);
                self.stats.fault("error on LISTEN");
            }
            10 => {
                let host = self.rng.below(hosts as u64) as usize;
                self.servers[host].fail_next(
                    FaultPoint::Notify,
                    SqlError::error("54000", "too many notifications in the NOTIFY queue"),
                );
                self.stats.fault("error on NOTIFY");
            }
            11 => {
                let host = self.rng.below(hosts as u64) as usize;
                let point =
                    *self
                        .rng
                        .pick(&[FaultPoint::Unlisten, FaultPoint::Commit, FaultPoint::Query]);
                let error = if point == FaultPoint::Query && self.rng.chance(1, 3) {
                    SqlError::fatal(
                        "57P01",
                        "terminating connection due to administrator command",
                    )
                } else {
                    SqlError::error("54000", "too many notifications in the NOTIFY queue")
                };
                self.servers[host].fail_next(point, error);
                self.stats.fault("error on UNLISTEN/commit/query");
            }
            _ => {
                let host = self.rng.below(hosts as u64) as usize;
                self.servers[host].fail_next(
                    FaultPoint::Startup,
                    SqlError::fatal("53300", "sorry, too many clients already"),
                );
                self.stats.fault("error on startup");
            }
        }
        self.sync()?;
        self.pump()?;
        Ok(())
    }

    /// How time moves after an operation.
    fn advance(&mut self) -> Result<(), Violation> {
        match self.rng.below(6) {
            0 => {
                for _ in 0..self.rng.below(4) {
                    self.step()?;
                }
                Ok(())
            }
            1 | 2 => self.settle(),
            3 => {
                let span = self.rng.millis(1, 50);
                self.drive_for(span)
            }
            4 => {
                let span = self.rng.millis(50, 3000);
                self.drive_for(span)
            }
            _ => {
                let span = self.rng.millis(1000, 20_000);
                self.drive_for(span)
            }
        }
    }

    /// Runs one random schedule of `ops` operations, then brings the world
    /// to rest, checks what it owes, and closes the bus.
    pub fn run_schedule(&mut self, ops: usize) -> Result<(), Violation> {
        let faults = self.options.faults;
        for _ in 0..ops {
            let weights = [
                12,                         // subscribe
                4,                          // unsubscribe
                14,                         // external notify
                6,                          // publish
                1,                          // bounce
                1,                          // bad arguments
                if faults { 7 } else { 0 }, // fault
                3,                          // quiet-point checks
            ];
            match self.rng.weighted(&weights) {
                0 => self.random_subscribe()?,
                1 => {
                    let k = self.rng.below(64) as usize;
                    self.unsubscribe(k)?;
                }
                2 => self.random_external()?,
                3 => {
                    let channel = self.channel();
                    self.publish(channel)?;
                }
                4 => self.bounce()?,
                5 => self.bad_arguments()?,
                6 => self.random_fault()?,
                _ => {
                    self.settle()?;
                    if self.is_quiet() {
                        self.check_convergence()?;
                        // Fast consumers are drained already, and so are
                        // those drained per announcement (readiness is
                        // level-triggered): their tails can be checked
                        // without changing the schedule.
                        if let Some(current) = self.link_id() {
                            for s in self.subs.iter().filter(|s| {
                                matches!(s.consumer, Consumer::Fast | Consumer::Announced)
                            }) {
                                s.check_tail(&self.notes, current, &mut self.stats.checks)?;
                            }
                        }
                    }
                }
            }
            self.advance()?;
        }
        self.finish()
    }

    /// Heals every fault, waits for the bus to converge, checks everything
    /// owed, then closes.
    pub(crate) fn finish(&mut self) -> Result<(), Violation> {
        for s in &mut self.servers {
            s.clear_faults();
            s.restart();
            s.set_refusing(false);
        }
        for s in &mut self.subs {
            s.consumer = Consumer::Fast;
        }
        if let Some(link) = &self.link {
            let (host, conn) = link.id;
            self.servers[host].delay_replies(conn, Duration::ZERO);
        }
        // Converge: at most a few minutes of virtual time.
        let mut waited = Duration::ZERO;
        let limit = Duration::from_secs(300);
        loop {
            self.settle()?;
            if self.is_quiet() {
                break;
            }
            if waited >= limit {
                return Err(Violation::new(
                    5,
                    format!(
                        "expected the bus connected and settled within {limit:?} once faults \
                         stopped, got connected={} settled={} wants_input={} link={:?}",
                        self.bus.stats().connected,
                        self.bus.is_settled(),
                        self.bus.wants_input(),
                        self.link_id()
                    ),
                ));
            }
            let step = Duration::from_millis(100);
            self.drive_for(step)?;
            waited += step;
        }
        self.check_convergence()?;
        self.check_tails()?;
        if self.servers.len() == 2
            && let Some((host, _)) = self.link_id()
            && self
                .servers
                .iter()
                .filter(|s| s.role() == ServerRole::Primary)
                .count()
                == 1
        {
            self.stats.checks.hit(7);
            if self.servers[host].role() != ServerRole::Primary {
                return Err(Violation::new(
                    7,
                    format!(
                        "expected the bus on the primary after failover, got it on standby host {host}"
                    ),
                ));
            }
        }
        self.close_and_check()
    }
}
