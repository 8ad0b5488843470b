//! The deterministic simulation: a random schedule per seed against
//! simulated hosts, the ten invariants of ARCHITECTURE.md checked after every step.
//!
//! - `PGNOTIFY_SIM_SEED=n` replays one seed (add `PGNOTIFY_SIM_CALM=1` for a
//!   seed of the fault-free set);
//! - `PGNOTIFY_SIM_SEEDS=n` runs `n` seeds with faults (default 2,000) and
//!   prints a summary; `PGNOTIFY_SIM_FROM=k` starts them at seed `k`
//!   (default 0), to sweep further than earlier runs went.

use std::time::Duration;

use pgnotify_core::OverflowPolicy;
use pgnotify_testkit::sim_server::{FaultPoint, SqlError};
use pgnotify_testkit::simulation::{
    ConsumerKind, SeedKind, World, WorldOptions, replay_command, run_seed, run_seeds,
};

/// Seeds with faults in a default run.
const DEFAULT_FAULT_SEEDS: u64 = 2_000;
/// Fault-free seeds in a default run.
const DEFAULT_CALM_SEEDS: u64 = 500;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[test]
fn random_schedules_with_faults_hold_every_invariant() {
    if let Some(seed) = env_u64("PGNOTIFY_SIM_SEED") {
        let kind = if std::env::var_os("PGNOTIFY_SIM_CALM").is_some() {
            SeedKind::Calm
        } else {
            SeedKind::Faults
        };
        match run_seed(seed, kind) {
            Ok(stats) => println!("seed {seed} ({kind:?}) held every invariant: {stats:?}"),
            Err(failure) => panic!("{failure}"),
        }
        return;
    }
    let seeds = env_u64("PGNOTIFY_SIM_SEEDS").unwrap_or(DEFAULT_FAULT_SEEDS);
    let from = env_u64("PGNOTIFY_SIM_FROM").unwrap_or(0);
    let summary = run_seeds(from..from + seeds, SeedKind::Faults, threads());
    println!("simulation with faults\n{summary}");
    if let Some(failure) = summary.failures.first() {
        panic!("{failure}");
    }
    assert_eq!(summary.stats.schedules, seeds);
}

#[test]
fn random_schedules_without_faults_hold_every_invariant() {
    if env_u64("PGNOTIFY_SIM_SEED").is_some() {
        return;
    }
    let summary = run_seeds(0..DEFAULT_CALM_SEEDS, SeedKind::Calm, threads());
    println!("simulation without faults\n{summary}");
    if let Some(failure) = summary.failures.first() {
        panic!("{failure}");
    }
    assert_eq!(summary.stats.schedules, DEFAULT_CALM_SEEDS);
}

fn quiet_world(seed: u64) -> World {
    let mut world = World::new(
        seed,
        WorldOptions {
            faults: false,
            hosts: 1,
            read_write: false,
        },
    )
    .expect("world");
    world
        .subscribe(
            "jobs",
            OverflowPolicy::DropOldest,
            16,
            None,
            ConsumerKind::Fast,
            64,
        )
        .expect("subscribe");
    world.drive_for(Duration::from_secs(1)).expect("connects");
    world
}

#[test]
fn backoff_in_an_outage_starts_immediately_then_stays_within_min_and_max() {
    let mut world = quiet_world(11);
    let min = world.bus().config().backoff_min();
    let max = world.bus().config().backoff_max();
    world.servers_mut()[0].shutdown(
        std::time::Instant::now(),
        pgnotify_testkit::sim_server::ShutdownMode::Fast,
    );
    world.drive_for(Duration::from_secs(60)).expect("outage");
    world.servers_mut()[0].restart();
    world.drive_for(Duration::from_secs(15)).expect("recovers");
    let delays = world.backoff_delays().to_vec();
    println!(
        "backoff_min {min:?}, backoff_max {max:?}; delays observed in a 60 s outage: {delays:?}"
    );
    assert!(
        delays.len() >= 3,
        "expected several attempts, got {delays:?}"
    );
    assert_eq!(
        delays[0],
        Duration::ZERO,
        "the first retry is immediate: {delays:?}"
    );
    for d in &delays[1..] {
        assert!(
            *d >= min && *d <= max,
            "expected every later delay in [{min:?}, {max:?}], got {delays:?}"
        );
    }
    assert!(
        world.bus().stats().connected,
        "expected to reconnect after the restart"
    );
    world.close_and_check().expect("close");
}

/// Issue 21: a backend terminated every 20 s (virtual) for five minutes,
/// with every reconnect succeeding at once. Each connection answers its
/// first ping long before the next kill, so each loss retries at once and
/// no backoff delay accumulates, although 20 s is below
/// `backoff_reset_after` (which used to be the only way the backoff reset).
#[test]
fn backend_terminated_every_20_s_reconnects_at_once_every_time() {
    // Seed 8 draws the defaults: backoff 100 ms to 10 s, reset after 30 s.
    let mut world = quiet_world(8);
    let every = Duration::from_secs(20);
    let reset_after = world.bus().config().backoff_reset_after();
    assert!(
        reset_after > every,
        "the seed must draw backoff_reset_after above {every:?} to pin the rule, got {reset_after:?}"
    );
    // One attempt in the simulation: connect latency, startup and the
    // re-LISTEN, a few milliseconds of virtual time; the smallest backoff
    // window after the first retry starts at backoff_min (10 ms or more).
    let one_attempt = Duration::from_millis(10);
    let kills = 15;
    for kill in 1..=kills {
        world.drive_for(every).expect("runs");
        assert!(
            world.terminate_backend().expect("terminate"),
            "kill {kill}: connected"
        );
        world.drive_for(one_attempt).expect("reconnects");
        let stats = world.bus().stats();
        assert!(
            stats.connected && stats.generation == kill + 1,
            "kill {kill}: expected connection {} up within {one_attempt:?}, got {stats:?}",
            kill + 1
        );
    }
    world.drive_for(every).expect("runs");
    let delays = world.backoff_delays().to_vec();
    println!("backoff_reset_after {reset_after:?}; delays after {kills} kills: {delays:?}");
    assert_eq!(
        delays,
        vec![Duration::ZERO; kills as usize],
        "expected every reconnect immediate (no backoff accumulating)"
    );
    assert_eq!(world.bus().stats().connect_failures, 0);
    world.close_and_check().expect("close");
}

/// Issue 21: a server that accepts, acknowledges the LISTENs and then dies
/// before answering the first ping (its NOTIFY fails FATAL) never proves
/// itself, so every loss counts: the delay grows to `backoff_max` and the
/// attempt rate stays bounded. Once the server behaves, the first answered
/// ping resets the backoff and the next loss retries at once.
#[test]
fn server_that_dies_before_the_first_ping_answer_is_backed_off_to_the_maximum() {
    let mut world = quiet_world(8);
    let min = world.bus().config().backoff_min();
    let max = world.bus().config().backoff_max();
    for _ in 0..10_000 {
        world.servers_mut()[0].fail_next(
            FaultPoint::Notify,
            SqlError::fatal(
                "57P01",
                "terminating connection due to administrator command",
            ),
        );
    }
    assert!(world.terminate_backend().expect("terminate"), "connected");
    let span = Duration::from_secs(300);
    world.drive_for(span).expect("flaps");
    let delays = world.backoff_delays().to_vec();
    println!(
        "backoff_min {min:?}, backoff_max {max:?}; {} attempts in {span:?} while flapping, \
         the first ten after delays of {:?}",
        delays.len(),
        &delays[..delays.len().min(10)]
    );
    assert!(
        delays.len() >= 5,
        "expected the flapping connections to come up and die, got {delays:?}"
    );
    assert_eq!(delays[0], Duration::ZERO, "the first retry is immediate");
    for (i, d) in delays.iter().enumerate().skip(1) {
        assert!(
            *d >= min && *d <= max,
            "retry {i}: expected a delay in [{min:?}, {max:?}] (no reset while flapping), got {delays:?}"
        );
    }
    // The window doubles from [min, 2 min] until it is [max/2, max]: after
    // that many retries every delay is at least max/2.
    let doublings = (max.as_secs_f64() / min.as_secs_f64()).log2().ceil() as usize;
    for (i, d) in delays.iter().enumerate().skip(doublings + 1) {
        assert!(
            *d >= max / 2,
            "retry {i}: expected the backoff grown to [{:?}, {max:?}], got {delays:?}",
            max / 2
        );
    }
    // So the attempts over the span are bounded by the capped rate.
    let bound = doublings + 2 + (span.as_secs_f64() / (max / 2).as_secs_f64()) as usize;
    assert!(
        delays.len() <= bound,
        "expected at most {bound} attempts in {span:?}, got {}",
        delays.len()
    );
    assert!(
        world.bus().stats().generation as usize >= delays.len(),
        "expected each attempt to come up before dying, got {:?}",
        world.bus().stats()
    );

    // The server behaves again: the next connection proves itself, and a
    // loss after that retries at once.
    world.servers_mut()[0].clear_faults();
    world
        .drive_for(max + Duration::from_secs(1))
        .expect("recovers");
    assert!(world.bus().stats().connected, "expected to reconnect");
    let before = world.backoff_delays().len();
    assert!(world.terminate_backend().expect("terminate"), "connected");
    world.drive_for(Duration::from_secs(1)).expect("reconnects");
    assert_eq!(
        world.backoff_delays()[before..],
        [Duration::ZERO],
        "expected the retry after a proved connection immediate"
    );
    world.close_and_check().expect("close");
}

#[test]
fn black_holed_connection_is_replaced_within_ping_interval_plus_timeout() {
    let mut world = quiet_world(5);
    let interval = world.bus().config().ping_interval();
    let timeout = world.bus().config().ping_timeout();
    world.drive_for(Duration::from_secs(3)).expect("runs");
    world.black_hole().expect("black hole");
    world
        .drive_for(interval + timeout + Duration::from_secs(5))
        .expect("detects");
    let detections = world.detections().to_vec();
    println!(
        "ping_interval {interval:?}, ping_timeout {timeout:?}; black hole detected after {detections:?} (virtual)"
    );
    assert_eq!(
        detections.len(),
        1,
        "expected one detection, got {detections:?}"
    );
    assert!(
        detections[0] <= interval + timeout,
        "expected within {:?}, got {detections:?}",
        interval + timeout
    );
    world.close_and_check().expect("close");
}

#[test]
fn a_failing_seed_names_the_command_that_replays_it() {
    assert_eq!(
        replay_command(1234, SeedKind::Faults),
        "PGNOTIFY_SIM_SEED=1234 cargo test -p pgnotify-testkit --test simulation -- --nocapture"
    );
}

#[test]
fn backpressured_subscriber_survives_a_reconnect_and_resumes_when_drained() {
    let mut world = quiet_world(21);
    world
        .subscribe(
            "bp",
            OverflowPolicy::Backpressure,
            1,
            None,
            ConsumerKind::Never,
            64,
        )
        .expect("subscribe");
    world.drive_for(Duration::from_secs(1)).expect("ready");
    world.notify_external(0, &[("bp", "one")]).expect("notify");
    world.notify_external(0, &[("bp", "two")]).expect("notify");
    world.drive_for(Duration::from_secs(1)).expect("fills");
    assert!(
        !world.bus().wants_input(),
        "expected reading paused behind the full subscriber"
    );
    world.bounce().expect("bounce");
    world
        .drive_for(Duration::from_secs(120))
        .expect("paused across a reconnect");
    let stats = world.bus().stats();
    assert!(
        stats.connected && stats.generation == 2 && stats.connect_failures == 0,
        "expected the new connection up at once although reading stays paused, got {stats:?}"
    );
    assert!(
        world.check_quiet_point().expect("drained"),
        "expected quiet once drained"
    );
    world.close_and_check().expect("close");
}

/// Issue 22: readiness is level-triggered. A consumer that takes 1, 2 or 7
/// items per `SubscriberReadable` and never looks otherwise receives whole
/// bursts of 5, 100 and 10,000 committed in one transaction (the default
/// `Absorb` policy pauses reading at 1,024 and resumes as it drains); the
/// world checks after every step that it has nothing left queued.
#[test]
fn consumers_draining_1_2_or_7_per_announcement_receive_every_burst() {
    for (seed, batch) in [(31, 1), (32, 2), (33, 7)] {
        let mut world = quiet_world(seed);
        world
            .subscribe(
                "burst",
                OverflowPolicy::Absorb,
                pgnotify_core::DEFAULT_CAPACITY,
                None,
                ConsumerKind::Announced,
                batch,
            )
            .expect("subscribe");
        world.drive_for(Duration::from_secs(1)).expect("ready");
        let mut sent = 0;
        for n in [5, 100, 10_000] {
            let payloads: Vec<String> = (0..n).map(|i| format!("{n}/{i}")).collect();
            let notes: Vec<(&str, &str)> = payloads.iter().map(|p| ("burst", p.as_str())).collect();
            world.notify_external(0, &notes).expect("commit");
            sent += n as u64;
            world
                .drive_for(Duration::from_secs(5))
                .unwrap_or_else(|v| panic!("batches of {batch}, burst of {n}: {v}"));
            assert_eq!(
                world.notifications_taken(1),
                sent,
                "batches of {batch}: expected every notification of the bursts so far taken"
            );
        }
        assert!(world.check_quiet_point().expect("quiet"), "quiet");
        world.close_and_check().expect("close");
    }
}

/// Seeds that once broke an invariant, replayed on every run.
#[test]
fn regression_seeds_hold_every_invariant() {
    // 93: close racing a network cut made the bus ask to Disconnect a
    //     transport already reported closed.
    // 0 (and calm 11): a full Backpressure subscriber across a reconnect
    //     kept the new connection unread until its startup timed out.
    // 8597: the same, once reading a new connection while full: the queue
    //     takes the acknowledging read's notifications (capacity + n).
    // 15483: (harness) a failover's FATAL in the same read as the re-LISTEN
    //     acknowledgement; the model compared LISTEN sets of a dead backend.
    // 28250: a black hole right after the first ping's NOTIFY completed,
    //     with notifications placed after ReadyForQuery: the bus blamed a
    //     transaction pooler and gave up instead of reconnecting.
    // 35695: a subscriber joined a listened channel while reading was
    //     paused and became ready once the decoded input was handled, before
    //     the unread notifications sent ahead of it (it now waits for a
    //     query's answer).
    // 160171: a subscriber joined while its channel's LISTEN was in flight
    //     and became ready with that LISTEN's acknowledgement, which was
    //     already on its way with notifications sent before it joined.
    for (seed, kind) in [
        (93, SeedKind::Faults),
        (0, SeedKind::Faults),
        (11, SeedKind::Calm),
        (8597, SeedKind::Faults),
        (15483, SeedKind::Faults),
        (28250, SeedKind::Faults),
        (35695, SeedKind::Faults),
        (160171, SeedKind::Faults),
    ] {
        if let Err(failure) = run_seed(seed, kind) {
            panic!("{failure}");
        }
    }
}

/// The first seed at or after `from` whose world draws `ping_interval`
/// and whose number satisfies `seed_rule`.
fn seed_with(from: u64, ping_interval: Duration, seed_rule: impl Fn(u64) -> bool) -> u64 {
    (from..from + 1000)
        .find(|&seed| {
            seed_rule(seed)
                && World::new(seed, calm_options())
                    .expect("world")
                    .bus()
                    .config()
                    .ping_interval()
                    == ping_interval
        })
        .expect("some seed draws it")
}

fn calm_options() -> WorldOptions {
    WorldOptions {
        faults: false,
        hosts: 1,
        read_write: false,
    }
}

/// Issue 14: a server with `idle_session_timeout=2s` and the default 10 s
/// ping interval. The bus turns the timeout off for its own session after
/// the first ping comes back, so the session outlives many timeouts.
#[test]
fn idle_session_timeout_does_not_end_the_listening_session() {
    let seed = seed_with(0, Duration::from_secs(10), |_| true);
    let mut world = World::new(seed, calm_options()).expect("world");
    world.servers_mut()[0].set_idle_session_timeout(Some(Duration::from_secs(2)));
    world
        .subscribe(
            "jobs",
            OverflowPolicy::DropOldest,
            16,
            None,
            ConsumerKind::Fast,
            64,
        )
        .expect("subscribe");
    world.drive_for(Duration::from_secs(60)).expect("runs");
    let stats = world.bus().stats();
    println!("idle_session_timeout 2s, ping_interval 10s, 60 s (virtual): {stats:?}");
    assert_eq!(
        (stats.generation, stats.reconnects, stats.connect_failures),
        (1, 0, 0),
        "expected one connection for the whole minute"
    );
    assert_eq!(stats.session_settings_failed, 0);
    world.close_and_check().expect("close");
}

/// Issue 20: behind a pooler BackendKeyData's pid is made up. The bus
/// recognises its pings by the pid `pg_backend_pid()` gives, so they are
/// answered and the connection stays up.
#[test]
fn a_made_up_backend_key_pid_does_not_fail_the_pings() {
    let seed = seed_with(0, Duration::from_millis(500), |seed| seed % 4 == 3);
    let mut world = quiet_world(seed);
    assert!(world.servers_mut()[0].config().made_up_backend_pid);
    world.drive_for(Duration::from_secs(30)).expect("runs");
    let stats = world.bus().stats();
    println!("made-up BackendKeyData pid, 30 s (virtual): {stats:?}");
    assert_eq!((stats.generation, stats.reconnects), (1, 0), "{stats:?}");
    assert!(stats.pings_sent >= 30, "{stats:?}");
    assert!(stats.last_ping_rtt.is_some(), "pings answered: {stats:?}");
    world.close_and_check().expect("close");
}
