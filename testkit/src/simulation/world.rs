//! The world: simulated hosts, one bus, a virtual clock and the network
//! between them, stepped the way quinn-proto's tests step two endpoints.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use pgnotify_core::bus::Output;
use pgnotify_core::bus::{
    Action, Bus, BusError, BusEvent, CheckKind, EventBatch, NotifyError, PublishId, SideCheck,
    SidePublishOutcome, SubscriberId, SubscriberStatus, TransportError, TransportErrorKind,
};
use pgnotify_core::config::{Config, HostSpec, SslMode, TargetSessionAttrs};
use pgnotify_core::protocol::ServerError;
use pgnotify_core::{EndReason, Event};

use crate::sim_server::{ServerRole, Severity, SimConfig, SimServer};

use super::backoff::BackoffModel;
use super::check::{CheckCounts, Violation};
use super::frames::FrameScanner;
use super::notes::{LinkId, Notes};
use super::rng::SimRng;
use super::subscriber::{Consumer, Lending, SubModel};

/// How many steps one `drive` may take at one instant before the world is
/// declared hung (invariant 9: no busy loop).
const MAX_STEPS_AT_ONE_INSTANT: u32 = 20_000;

/// What a world is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldOptions {
    /// Inject faults (disconnects, black holes, errors, failover...).
    pub faults: bool,
    /// How many hosts (1 or 2); with 2, host 1 starts as a standby.
    pub hosts: usize,
    /// `target_session_attrs=read-write`.
    pub read_write: bool,
}

/// The size of the simulated server's notification queue, for the server
/// guard: a backlog of this many bytes not yet read by the bus is "full".
const SIM_SERVER_QUEUE: usize = 256 * 1024;

/// One bus connection as the network sees it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: LinkId,
    /// Bytes the bus wrote that the server has not read.
    up: Vec<u8>,
    /// Bytes the server wrote that the bus has not read.
    down: Vec<u8>,
    /// Bytes moved either way so far.
    moved: u64,
    /// Cut the connection when `moved` reaches this.
    pub(crate) cut_at: Option<u64>,
    pub(crate) black_holed_at: Option<Instant>,
    /// Replies were delayed or black-holed: a timeout on it is explained.
    pub(crate) slowed: bool,
    /// Reading was paused on purpose since the black hole (the ping
    /// deadline is then suspended, by design).
    paused_since_hole: bool,
    client_scan: FrameScanner,
    server_scan: FrameScanner,
    /// Queries sent with a LISTEN in them before the connection was up.
    listen_queries: u32,
    delivered_synced: usize,
    /// NotificationResponse messages handed to the bus.
    read_notes: usize,
    pub(crate) up_since: Option<Instant>,
}

impl Link {
    /// Counts a chunk of `n` bytes as moved, shortened to where the link is
    /// to be cut; returns its length and whether the cut is reached.
    fn advance(&mut self, n: usize) -> (usize, bool) {
        let cut = self.cut_at.is_some_and(|at| self.moved + n as u64 >= at);
        let n = match self.cut_at.filter(|_| cut) {
            Some(at) => at.saturating_sub(self.moved) as usize,
            None => n,
        };
        self.moved += n as u64;
        (n, cut)
    }
}

/// A publish and what became of it.
#[derive(Debug)]
struct Publish {
    channel: String,
    payload: String,
    done: Option<Result<(), NotifyError>>,
}

/// Counters of one or many runs.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Schedules run.
    pub schedules: u64,
    /// Steps taken.
    pub steps: u64,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Invariant checks made.
    pub checks: CheckCounts,
    /// Notifications committed on the servers.
    pub committed: u64,
    /// Notifications drained by consumers.
    pub delivered: u64,
    /// Gaps drained by consumers.
    pub gaps: u64,
    /// Connections that came up.
    pub connections: u64,
    /// Publishes made, and how many ended with an unknown outcome.
    pub publishes: u64,
    /// Publishes whose outcome was unknown.
    pub outcome_unknown: u64,
    /// Transactions the bus sent publishes in (fewer than `publishes` when
    /// group commit shared them).
    pub publish_transactions: u64,
    /// Of those, sent on a second session while reading was paused.
    pub side_publish_transactions: u64,
    /// Backoff delays observed (non-zero ones), and the longest.
    pub backoff_delays: u64,
    /// The longest backoff delay observed.
    pub longest_backoff: Duration,
    /// Black holes detected, and the slowest detection in virtual time.
    pub black_holes_detected: u64,
    /// The slowest black-hole detection.
    pub slowest_detection: Duration,
}

impl RunStats {
    pub(crate) fn fault(&mut self, kind: &'static str) {
        if std::env::var_os("PGNOTIFY_SIM_TRACE").is_some() {
            eprintln!("fault: {kind}");
        }
        *self.faults.entry(kind).or_default() += 1;
    }

    /// Adds another run's counters.
    pub fn add(&mut self, other: &Self) {
        self.schedules += other.schedules;
        self.steps += other.steps;
        self.virtual_time += other.virtual_time;
        for (k, v) in &other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        self.checks.add(&other.checks);
        self.committed += other.committed;
        self.delivered += other.delivered;
        self.gaps += other.gaps;
        self.connections += other.connections;
        self.publishes += other.publishes;
        self.outcome_unknown += other.outcome_unknown;
        self.publish_transactions += other.publish_transactions;
        self.side_publish_transactions += other.side_publish_transactions;
        self.backoff_delays += other.backoff_delays;
        self.longest_backoff = self.longest_backoff.max(other.longest_backoff);
        self.black_holes_detected += other.black_holes_detected;
        self.slowest_detection = self.slowest_detection.max(other.slowest_detection);
    }
}

/// Simulated hosts, one [`Bus`], a virtual clock and the network between
/// them, with the reference model checked after every step.
#[derive(Debug)]
pub struct World {
    pub(crate) rng: SimRng,
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) servers: Vec<SimServer>,
    pub(crate) bus: Bus,
    pub(crate) link: Option<Link>,
    pending_connect: Option<(usize, Instant)>,
    pub(crate) notes: Notes,
    pub(crate) subs: Vec<SubModel>,
    publishes: BTreeMap<PublishId, Publish>,
    pub(crate) backoff: BackoffModel,
    generation: u64,
    pub(crate) close_called: bool,
    closed_event: bool,
    pub(crate) options: WorldOptions,
    pub(crate) stats: RunStats,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    max_chunk_notifications: u64,
    ssl_request: bool,
    pub(crate) next_payload: u64,
    /// Black-hole detection times (virtual), in order.
    pub(crate) detections: Vec<Duration>,
    /// Print every action, event and fault (`PGNOTIFY_SIM_TRACE`).
    tracing: bool,
    /// Subscribers announced readable in the current pass, for the
    /// consumers that drain only when announced.
    announced: Vec<SubscriberId>,
}

/// Whether a NotificationResponse body is a health ping's answer: a
/// notification on a `pgnotify.ping.<pid>` channel, which only the bus
/// LISTENs to (its `<pid>` is BackendKeyData's, which need not be the
/// sender's: see `SimConfig::made_up_backend_pid`).
fn is_ping_answer(body: &[u8]) -> bool {
    let Some((_pid, rest)) = body.split_first_chunk::<4>() else {
        return false;
    };
    let channel = rest.split(|&b| b == 0).next().unwrap_or_default();
    channel.starts_with(b"pgnotify.ping.")
}

fn host_name(i: usize) -> String {
    format!("host{i}")
}

impl World {
    /// A world for `seed`: the bus's settings and the hosts are drawn from it.
    pub fn new(seed: u64, options: WorldOptions) -> Result<Self, Violation> {
        let mut rng = SimRng::new(seed);
        let start = Instant::now();
        let hosts = options.hosts.clamp(1, 2);
        let servers: Vec<SimServer> = (0..hosts)
            .map(|i| {
                SimServer::new(SimConfig {
                    seed: seed.wrapping_mul(31).wrapping_add(i as u64),
                    role: if i == 0 {
                        ServerRole::Primary
                    } else {
                        ServerRole::Standby
                    },
                    notify_placement: if rng.chance(1, 2) {
                        crate::sim_server::NotifyPlacement::BeforeReady
                    } else {
                        crate::sim_server::NotifyPlacement::AfterReady
                    },
                    // One world in four sits behind a pooler's made-up
                    // BackendKeyData pid (from the seed, not the generator,
                    // so that every seed still draws what it drew before).
                    made_up_backend_pid: seed % 4 == 3,
                    ..SimConfig::default()
                })
            })
            .collect();
        let ping_interval = *rng.pick(&[
            Duration::from_millis(500),
            Duration::from_secs(2),
            Duration::from_secs(10),
        ]);
        let ping_timeout = *rng.pick(&[
            Duration::from_millis(200),
            Duration::from_secs(1),
            Duration::from_secs(5),
        ]);
        let backoff_min = *rng.pick(&[
            Duration::from_millis(10),
            Duration::from_millis(100),
            Duration::from_secs(1),
        ]);
        let backoff_max = *rng.pick(&[
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(10),
        ]);
        let reset_after = *rng.pick(&[Duration::from_secs(1), Duration::from_secs(30)]);
        let ssl_request = rng.chance(1, 2);
        let mut builder = Config::builder()
            .hosts((0..hosts).map(|i| HostSpec::tcp(host_name(i), 5432)))
            .user("app")
            .dbname("app")
            .ssl_mode(if ssl_request {
                SslMode::Prefer
            } else {
                SslMode::Disable
            })
            .ping_interval(ping_interval)
            .ping_timeout(ping_timeout)
            .backoff_min(backoff_min)
            .backoff_max(backoff_max)
            .backoff_reset_after(reset_after)
            .publish_timeout(*rng.pick(&[Duration::from_millis(300), Duration::from_secs(5)]))
            .seed(seed);
        if options.read_write {
            builder = builder.target_session_attrs(TargetSessionAttrs::ReadWrite);
        }
        if rng.chance(1, 4) {
            builder = builder.listen_check_every(1 + rng.below(3) as u32);
        }
        let config = builder
            .build()
            .map_err(|e| Violation::new(0, format!("expected a valid config, got {e}")))?;
        let mut bus = Bus::new(config, start);
        // Publishes while reading is paused go on a second session, run below.
        bus.enable_side_publishes(true);
        let backoff = BackoffModel::new(start, backoff_min, backoff_max, reset_after, hosts);
        let mut world = Self {
            rng,
            start,
            now: start,
            notes: Notes::new(hosts),
            servers,
            bus,
            link: None,
            pending_connect: None,
            subs: Vec::new(),
            publishes: BTreeMap::new(),
            backoff,
            generation: 0,
            close_called: false,
            closed_event: false,
            announced: Vec::new(),
            options,
            stats: RunStats {
                schedules: 1,
                ..RunStats::default()
            },
            ping_interval,
            ping_timeout,
            max_chunk_notifications: 1,
            ssl_request,
            next_payload: 0,
            detections: Vec::new(),
            tracing: std::env::var_os("PGNOTIFY_SIM_TRACE").is_some(),
        };
        world.pump()?;
        Ok(world)
    }

    /// Virtual time since the world began.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The delays between a failure and the next attempt, in order.
    pub fn backoff_delays(&self) -> &[Duration] {
        &self.backoff.delays
    }

    /// Black-hole detection times observed, in virtual time.
    pub fn detections(&self) -> &[Duration] {
        &self.detections
    }

    /// The notifications the `subscriber`-th subscription (in the order of
    /// `subscribe`) has taken so far, checked against the model.
    pub fn notifications_taken(&self, subscriber: usize) -> u64 {
        self.subs[subscriber].delivered
    }

    /// The bus under test.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The simulated hosts.
    pub fn servers_mut(&mut self) -> &mut [SimServer] {
        &mut self.servers
    }

    /// The counters of this run so far.
    pub fn stats(&self) -> RunStats {
        let mut stats = self.stats.clone();
        stats.virtual_time = self.elapsed();
        stats.committed = self.notes.len() as u64;
        stats.publish_transactions = self.bus.stats().publish_transactions;
        stats.side_publish_transactions = self.bus.stats().side_publish_transactions;
        stats.backoff_delays = self.backoff.delays.iter().filter(|d| !d.is_zero()).count() as u64;
        stats.longest_backoff = self
            .backoff
            .delays
            .iter()
            .copied()
            .max()
            .unwrap_or_default();
        stats.black_holes_detected = self.detections.len() as u64;
        stats.slowest_detection = self.detections.iter().copied().max().unwrap_or_default();
        stats
    }

    /// The current connection, if the bus has one.
    pub fn link_id(&self) -> Option<LinkId> {
        self.link.as_ref().map(|l| l.id)
    }

    // ------------------------------------------------------------ the network

    /// Takes what the servers committed and wrote.
    pub(crate) fn sync(&mut self) -> Result<(), Violation> {
        let link = self.link.as_mut().map(|l| (l.id, &mut l.delivered_synced));
        self.notes.sync(&self.servers, link)
    }

    /// Drains the bus's outputs, in the documented order, and acts on them.
    ///
    /// Each pass takes everything `Bus::poll_output` gives before acting on
    /// any of it, so the checks see a pass's events together (an
    /// `OutcomeUnknown` with the connection's death) and handle the events
    /// before the actions.
    pub(crate) fn pump(&mut self) -> Result<bool, Violation> {
        let mut any = false;
        let mut bytes = Vec::new();
        loop {
            let mut progress = false;
            let mut actions = Vec::new();
            let mut events = Vec::new();
            while let Some(output) = self.bus.poll_output(&mut bytes) {
                progress = true;
                match output {
                    Output::Transmit => {
                        if let Some(link) = &mut self.link {
                            link.up.extend_from_slice(&bytes);
                        }
                        bytes.clear();
                    }
                    Output::Action(action) => actions.push(action),
                    Output::Event(event) => events.push(event),
                    other => return Err(Violation::new(0, format!("unknown output {other:?}"))),
                }
            }
            self.on_events(events)?;
            for action in actions {
                self.on_action(action)?;
            }
            // One batch per announcement, as a driver that follows the
            // level-triggered contract takes them: a drain that leaves items
            // is announced again, in the next pass.
            for id in std::mem::take(&mut self.announced) {
                let announced = self
                    .subs
                    .iter()
                    .position(|s| s.id == id && s.consumer == Consumer::Announced);
                if let Some(i) = announced {
                    let batch = self.subs[i].batch;
                    self.take_items(i, batch)?;
                    progress = true;
                }
            }
            if !progress {
                return Ok(any);
            }
            any = true;
        }
    }

    fn trace(&self, what: fmt::Arguments<'_>) {
        if self.tracing {
            eprintln!("[{:>12.3?}] {what}", self.now - self.start);
        }
    }

    fn on_action(&mut self, action: Action) -> Result<(), Violation> {
        self.trace(format_args!("action {action:?}"));
        match action {
            Action::Connect(target) => {
                self.stats.checks.hit(7);
                if self.link.is_some() || self.pending_connect.is_some() {
                    return Err(Violation::new(
                        7,
                        "expected a new attempt only after the last transport closed, got Connect \
                         while one is open",
                    ));
                }
                if self.closed_event || self.close_called {
                    return Err(Violation::new(
                        7,
                        "expected no attempt after close, got Connect",
                    ));
                }
                let host = match &target.host {
                    HostSpec::Tcp { host, .. } => host
                        .strip_prefix("host")
                        .and_then(|i| i.parse::<usize>().ok())
                        .unwrap_or(usize::MAX),
                    HostSpec::Unix { .. } => usize::MAX,
                };
                if host >= self.servers.len() {
                    return Err(Violation::new(
                        7,
                        format!("expected a configured host, got {:?}", target.host),
                    ));
                }
                self.backoff.connect(self.now, host)?;
                let latency = Duration::from_millis(*self.rng.pick(&[0, 0, 1, 3]));
                self.pending_connect = Some((host, self.now + latency));
            }
            Action::Disconnect => {
                if self.pending_connect.take().is_some() {
                    return Ok(());
                }
                let Some(mut link) = self.link.take() else {
                    return Err(Violation::new(
                        9,
                        "expected Disconnect only while a transport is open, got one with none",
                    ));
                };
                // Flush what the bus wrote, then close.
                let (host, conn) = link.id;
                if !link.up.is_empty() {
                    self.servers[host].handle_client_bytes(conn, self.now, &link.up);
                    link.up.clear();
                }
                if let Some(at) = link.black_holed_at
                    && !link.paused_since_hole
                {
                    self.detections.push(self.now - at);
                }
                self.link = Some(link);
                self.sync()?;
                self.link = None;
                self.servers[host].disconnect(conn);
            }
            Action::SideCheck(SideCheck {
                kind: CheckKind::DeliveryProbe { channel, payload },
                ..
            }) => {
                // The delivery probe's second session commits its NOTIFY on
                // the host the bus is connected to; the simulated server is
                // no pooler, so it is delivered.
                if let Some(link) = &self.link {
                    let host = link.id.0;
                    let _ = self.servers[host].commit_external(self.now, &[(&channel, &payload)]);
                }
                self.bus.handle_delivery_probe(self.now, Ok(()));
            }
            Action::SideCheck(_) => {
                // The server guard's second session. The simulated server's
                // notification queue is modelled by what it has written to
                // the bus and the bus has not read: SIM_SERVER_QUEUE bytes
                // make it full.
                let backlog = self.link.as_ref().map_or(0, |l| l.down.len());
                let usage = backlog as f64 / SIM_SERVER_QUEUE as f64;
                self.bus
                    .handle_server_queue_usage(self.now, Ok(usage.min(1.0)));
            }
            Action::SidePublish(publish) => {
                // The second session commits on the host the bus is
                // connected to, at once; one in eight cannot be opened (the
                // bus then publishes on the listening connection).
                let host = self.link.as_ref().map(|l| l.id.0);
                let outcome = match host {
                    Some(host) if !self.rng.chance(1, 8) => {
                        let items: Vec<(&str, &str)> = publish
                            .items
                            .iter()
                            .map(|(c, p)| (c.as_str(), p.as_str()))
                            .collect();
                        match self.servers[host].commit_external(self.now, &items) {
                            Ok(_) => SidePublishOutcome::Committed,
                            Err(e) if e.severity == Severity::Fatal => {
                                SidePublishOutcome::NotSent(e.message)
                            }
                            Err(e) => SidePublishOutcome::Refused(ServerError::new(
                                "ERROR", e.code, e.message,
                            )),
                        }
                    }
                    _ => SidePublishOutcome::NotSent("no session (simulated)".into()),
                };
                // The checks of the outcome look for the commit in the log.
                self.sync()?;
                self.bus.handle_side_publish(self.now, publish.id, outcome);
            }
            Action::StartTls(_) => {
                return Err(Violation::new(
                    9,
                    "expected no TLS handshake (the server answered SSLRequest with N), got StartTls",
                ));
            }
            other => {
                return Err(Violation::new(0, format!("unknown action {other:?}")));
            }
        }
        Ok(())
    }

    fn on_events(&mut self, events: Vec<BusEvent>) -> Result<(), Violation> {
        let connection_died = events.iter().any(|e| {
            matches!(
                e,
                BusEvent::Disconnected { .. } | BusEvent::ConnectFailed { .. } | BusEvent::Closed
            )
        });
        for event in events {
            self.trace(format_args!("event {event:?}"));
            match event {
                BusEvent::SubscriberReady(id) => self.on_ready(id)?,
                BusEvent::SubscriberReadable(id) => self.announced.push(id),
                BusEvent::SubscriberEnded(id, reason) => {
                    let at = self.notes.len();
                    if let Some(s) = self.subs.iter_mut().find(|s| s.id == id) {
                        if s.unsubscribed {
                            return Err(Violation::new(
                                4,
                                format!(
                                    "expected no event after unsubscribe, got {id} ended {reason:?}"
                                ),
                            ));
                        }
                        s.ended = Some(reason);
                        s.close(at);
                    }
                }
                BusEvent::PublishDone(id, result) => {
                    self.stats.checks.hit(10);
                    let Some(p) = self.publishes.get_mut(&id) else {
                        return Err(Violation::new(
                            10,
                            format!("expected a result for a known publish, got {id:?}"),
                        ));
                    };
                    if p.done.is_some() {
                        return Err(Violation::new(
                            10,
                            format!(
                                "expected exactly one result for publish {id:?}, got a second: {result:?}"
                            ),
                        ));
                    }
                    if matches!(result, Err(NotifyError::OutcomeUnknown { .. })) {
                        self.stats.outcome_unknown += 1;
                        if !connection_died {
                            return Err(Violation::new(
                                10,
                                format!(
                                    "expected OutcomeUnknown only with the connection's death, got it \
                                     for {id:?} while the connection lives"
                                ),
                            ));
                        }
                    }
                    if result.is_ok() && !self.notes.committed(&p.channel, &p.payload) {
                        return Err(Violation::new(
                            10,
                            format!(
                                "expected an Ok publish to be committed, got {id:?} ({:?}) not in the server's log",
                                p.payload
                            ),
                        ));
                    }
                    p.done = Some(result);
                }
                BusEvent::Connected { generation } => self.on_connected(generation)?,
                BusEvent::Disconnected { .. } => {
                    let at = self.notes.len();
                    for s in &mut self.subs {
                        if s.open_window().is_some() {
                            s.outages += 1;
                        }
                        s.close(at);
                    }
                    self.backoff.failed(self.now, true);
                    if let Some(link) = &mut self.link {
                        link.up_since = None;
                    }
                }
                BusEvent::ConnectFailed { error, .. } => {
                    self.stats.checks.hit(8);
                    if matches!(error, BusError::StartupTimedOut { .. })
                        && self.link.as_ref().is_some_and(|l| !l.slowed)
                    {
                        return Err(Violation::new(
                            8,
                            format!(
                                "expected a connection to a server that answers to start up, got \
                                 {error} on {:?}",
                                self.link_id()
                            ),
                        ));
                    }
                    let at = self.notes.len();
                    for s in &mut self.subs {
                        s.close(at);
                    }
                    self.backoff.failed(self.now, false);
                }
                BusEvent::Closed => {
                    if self.closed_event {
                        return Err(Violation::new(9, "expected one Closed event, got two"));
                    }
                    self.closed_event = true;
                    self.backoff.closed();
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_ready(&mut self, id: pgnotify_core::bus::SubscriberId) -> Result<(), Violation> {
        self.stats.checks.hit(3);
        let link = self.link.as_ref().map(|l| l.id);
        let from = self.notes.len();
        let Some(s) = self.subs.iter_mut().find(|s| s.id == id) else {
            return Err(Violation::new(
                3,
                format!("expected SubscriberReady for a known subscriber, got {id}"),
            ));
        };
        if s.unsubscribed || s.ready {
            return Err(Violation::new(
                3,
                format!("expected one SubscriberReady per live subscriber, got another for {id}"),
            ));
        }
        let Some(link) = link else {
            return Err(Violation::new(
                3,
                format!("expected {id} ready only while connected, got it with no connection"),
            ));
        };
        // A backend that has exited has no LISTEN set left to compare.
        let listening = self.servers[link.0].listening_channels(link.1);
        if self.servers[link.0].is_ready(link.1) && !listening.contains(&s.channel) {
            return Err(Violation::new(
                3,
                format!(
                    "expected {:?} LISTENed on the server when {id} is ready, got {listening:?}",
                    s.channel
                ),
            ));
        }
        s.ready = true;
        s.open(link, from);
        Ok(())
    }

    fn on_connected(&mut self, generation: u64) -> Result<(), Violation> {
        self.stats.checks.hit(7);
        self.stats.connections += 1;
        if generation != self.generation + 1 {
            return Err(Violation::new(
                7,
                format!(
                    "expected generation {}, got {generation}",
                    self.generation + 1
                ),
            ));
        }
        self.generation = generation;
        self.backoff.connected(self.now);
        let from = self.notes.len();
        let Some(link) = &mut self.link else {
            return Err(Violation::new(
                7,
                "expected Connected with a transport open, got none",
            ));
        };
        link.up_since = Some(self.now);
        if link.listen_queries != 1 {
            return Err(Violation::new(
                7,
                format!(
                    "expected every channel re-LISTENed in one query, got {} LISTEN queries before Connected",
                    link.listen_queries
                ),
            ));
        }
        let id = link.id;
        // The same read may have ended the connection too (its backend's
        // FATAL right after the acknowledgement): then there is no LISTEN
        // set left to compare, and the bus has moved on.
        if !self.servers[id.0].is_ready(id.1) || !self.bus.stats().connected {
            for s in &mut self.subs {
                if s.live() && s.ready {
                    s.open(id, from);
                }
            }
            return Ok(());
        }
        let mut on_server: Vec<String> = self.servers[id.0].listening_channels(id.1).to_vec();
        on_server.sort();
        let mut expected = self.bus.listening_channels();
        expected.extend(self.bus.ping_channel().map(str::to_owned));
        expected.sort();
        if on_server != expected {
            return Err(Violation::new(
                7,
                format!(
                    "expected the server LISTENing on {expected:?} once connected, got {on_server:?}"
                ),
            ));
        }
        for s in &mut self.subs {
            if s.live() && s.ready {
                if !on_server.contains(&s.channel) {
                    return Err(Violation::new(
                        3,
                        format!(
                            "expected {:?} re-LISTENed for {} on reconnect, got {on_server:?}",
                            s.channel, s.id
                        ),
                    ));
                }
                s.open(id, from);
            }
        }
        Ok(())
    }

    /// One step: connect what is due, move bytes both ways in random
    /// chunks, fire due timers, let fast consumers drain; then check.
    /// Returns whether anything happened.
    pub(crate) fn step(&mut self) -> Result<bool, Violation> {
        self.stats.steps += 1;
        let mut progress = self.pump()?;
        if let Some((host, at)) = self.pending_connect
            && at <= self.now
        {
            self.pending_connect = None;
            progress = true;
            match self.servers[host].accept(self.now) {
                Ok(conn) => {
                    self.link = Some(Link {
                        id: (host, conn),
                        up: Vec::new(),
                        down: Vec::new(),
                        moved: 0,
                        cut_at: None,
                        black_holed_at: None,
                        slowed: false,
                        paused_since_hole: false,
                        client_scan: FrameScanner::client(b'Q'),
                        server_scan: FrameScanner::server(self.ssl_request, b'A'),
                        listen_queries: 0,
                        delivered_synced: 0,
                        read_notes: 0,
                        up_since: None,
                    });
                    self.bus.handle_connected(self.now);
                }
                Err(refused) => {
                    self.bus.handle_closed(
                        self.now,
                        TransportError::new(TransportErrorKind::Connect, refused.to_string()),
                    );
                }
            }
            self.pump()?;
        }
        progress |= self.move_up()?;
        progress |= self.move_down()?;
        if self.bus.poll_timeout().is_some_and(|t| t <= self.now) {
            self.bus.handle_timeout(self.now);
            self.pump()?;
            progress = true;
        }
        for i in 0..self.subs.len() {
            if self.subs[i].consumer == Consumer::Fast && self.drain(i, usize::MAX)? {
                progress = true;
            }
        }
        self.check_step()?;
        Ok(progress)
    }

    fn chunk_len(&mut self, available: usize) -> usize {
        match self.rng.below(4) {
            0 => 1 + self.rng.below(available.min(16) as u64) as usize,
            1 => 1 + self.rng.below(available as u64) as usize,
            _ => available,
        }
    }

    /// Moves a chunk of the bus's bytes to the server; returns whether any moved.
    fn move_up(&mut self) -> Result<bool, Violation> {
        let Some(link) = &self.link else {
            return Ok(false);
        };
        if link.up.is_empty() {
            return Ok(false);
        }
        let available = link.up.len();
        let n = self.chunk_len(available);
        let Some(link) = &mut self.link else {
            return Ok(false);
        };
        let (n, cut) = link.advance(n);
        let (host, conn) = link.id;
        let bytes: Vec<u8> = link.up.drain(..n).collect();
        let mut listen_queries = 0;
        link.client_scan.feed(&bytes, |kind, body| {
            let sql = String::from_utf8_lossy(body);
            if kind == b'Q' && (sql.starts_with("LISTEN ") || sql.contains("; LISTEN ")) {
                listen_queries += 1;
            }
        });
        if link.up_since.is_none() {
            link.listen_queries += listen_queries;
        }
        self.trace(format_args!("up {n} bytes"));
        self.servers[host].handle_client_bytes(conn, self.now, &bytes);
        self.sync()?;
        if cut {
            self.cut(TransportErrorKind::Io)?;
        }
        Ok(true)
    }

    /// Moves a chunk of the server's bytes to the bus (if it wants input),
    /// or reports the server's close.
    fn move_down(&mut self) -> Result<bool, Violation> {
        let Some(link) = &mut self.link else {
            return Ok(false);
        };
        let (host, conn) = link.id;
        self.servers[host].poll_server_bytes(conn, self.now, &mut link.down);
        if link.down.is_empty() {
            if !self.servers[host].is_open(conn) {
                self.trace(format_args!("server closed {:?}", (host, conn)));
                self.link = None;
                self.bus.handle_closed(
                    self.now,
                    TransportError::new(TransportErrorKind::Closed, "end of file"),
                );
                self.pump()?;
                return Ok(true);
            }
            return Ok(false);
        }
        if !self.bus.wants_input() {
            return Ok(false);
        }
        let available = link.down.len();
        let n = self.chunk_len(available);
        let Some(link) = &mut self.link else {
            return Ok(false);
        };
        let (n, cut) = link.advance(n);
        let bytes: Vec<u8> = link.down.drain(..n).collect();
        let mut notifications = 0;
        let mut ping_answered = false;
        link.server_scan.feed(&bytes, |kind, body| {
            if kind == b'A' {
                notifications += 1;
                ping_answered |= is_ping_answer(body);
            }
        });
        let up = link.up_since.is_some();
        link.read_notes += notifications as usize;
        self.max_chunk_notifications = self.max_chunk_notifications.max(notifications);
        self.trace(format_args!(
            "down {n} bytes ({notifications} notifications)"
        ));
        self.bus.handle_input(self.now, &bytes);
        // Only a connection that is up has pings out. The bus handles a
        // chunk in order, so a loss later in it comes after the proof, as
        // the model's events do, unless it stopped to hold the rest of the
        // chunk for a full `Backpressure` queue (it then wants no input).
        if ping_answered && up {
            self.backoff.ping_answered(self.bus.wants_input());
        }
        self.pump()?;
        if cut {
            self.cut(TransportErrorKind::Io)?;
        }
        Ok(true)
    }

    /// The network breaks the current connection: both ends see it.
    pub(crate) fn cut(&mut self, kind: TransportErrorKind) -> Result<(), Violation> {
        if let Some(link) = self.link.take() {
            self.trace(format_args!("network cut {:?}", link.id));
            self.servers[link.id.0].disconnect(link.id.1);
            self.bus
                .handle_closed(self.now, TransportError::new(kind, "connection reset"));
            self.pump()?;
        }
        Ok(())
    }

    /// Lets subscriber `i` drain up to `max` items, then drains the bus's
    /// outputs; returns whether it got any.
    pub(crate) fn drain(&mut self, i: usize, max: usize) -> Result<bool, Violation> {
        let got = self.take_items(i, max)?;
        self.pump()?;
        Ok(got)
    }

    /// Lets subscriber `i` take up to `max` items and checks them; returns
    /// whether it got any. The bus's outputs are left to the caller.
    fn take_items(&mut self, i: usize, max: usize) -> Result<bool, Violation> {
        let s = &self.subs[i];
        if s.finished || (s.unsubscribed && !self.rng.chance(1, 8)) {
            return Ok(false);
        }
        let id = s.id;
        let mut out: Vec<Event> = Vec::new();
        let (status, emptied) = match &mut self.subs[i].lending {
            // Consume from the lent batch; take the next only when it is used up.
            Some(lending) => {
                if lending.held.is_empty() {
                    let status = self
                        .bus
                        .lend_batch(self.now, id, &mut lending.held, usize::MAX);
                    if lending.held.is_empty() {
                        (status, true)
                    } else {
                        (status, false)
                    }
                } else {
                    (self.bus.subscriber_status(id), false)
                }
            }
            None => {
                let status = self.bus.drain_events(self.now, id, &mut out, max);
                let emptied = out.len() < max;
                (status, emptied)
            }
        };
        if let Some(lending) = &mut self.subs[i].lending {
            while out.len() < max {
                let Some(event) = lending.held.pop_front() else {
                    break;
                };
                if let Event::Notification(n) = &event {
                    lending.consumption.record(1, n.size() as u64);
                }
                out.push(event);
            }
        }
        let generation = self.bus.generation();
        let s = &mut self.subs[i];
        self.stats.delivered += out.iter().filter(|e| e.notification().is_some()).count() as u64;
        self.stats.gaps += out.iter().filter(|e| e.notification().is_none()).count() as u64;
        s.take_batch(
            &self.notes,
            &out,
            emptied,
            generation,
            self.max_chunk_notifications,
            &mut self.stats.checks,
        )?;
        match status {
            SubscriberStatus::Unknown if !s.unsubscribed && s.ended.is_none() => {
                return Err(Violation::new(
                    4,
                    format!("expected {id} known to the bus, got Unknown while subscribed"),
                ));
            }
            SubscriberStatus::Ended(reason) => {
                if s.ended.is_some_and(|r| r != reason) {
                    return Err(Violation::new(
                        4,
                        format!("expected {id} ended {:?}, got status {reason:?}", s.ended),
                    ));
                }
                if emptied {
                    s.finished = true;
                }
            }
            SubscriberStatus::Unknown => s.finished = true,
            _ => {}
        }
        Ok(!out.is_empty())
    }

    /// Checks after every step.
    pub(crate) fn check_step(&mut self) -> Result<(), Violation> {
        // Invariant 2 through the drive contract: readiness is
        // level-triggered, so a consumer that takes one bounded batch per
        // announcement, and nothing otherwise, has nothing left queued once
        // the outputs are drained. (Edge-triggered, it would strand the
        // rest of every partial batch, silently.)
        for s in self
            .subs
            .iter()
            .filter(|s| s.consumer == Consumer::Announced && !s.finished && !s.unsubscribed)
        {
            self.stats.checks.hit(2);
            if self.bus.is_readable(s.id) {
                return Err(Violation::new(
                    2,
                    format!(
                        "expected nothing queued for {}, which takes {} items per \
                         SubscriberReadable, after the outputs were drained; got {} \
                         notifications still queued and no announcement",
                        s.id,
                        s.batch,
                        self.bus.pending(s.id)
                    ),
                ));
            }
        }
        // Invariant 6, per subscriber: what it was delivered and has not
        // consumed (queued, or lent and not reported) stays within its bound.
        for s in self.subs.iter().filter(|s| !s.finished) {
            let pending = self.bus.pending(s.id) as u64;
            let bound = s.item_bound(self.max_chunk_notifications);
            self.stats.checks.hit(6);
            if pending > bound {
                return Err(Violation::new(
                    6,
                    format!(
                        "expected at most {bound} notifications pending for {} ({:?}, capacity \
                         {}, {}), got {pending}",
                        s.id,
                        s.policy,
                        s.capacity,
                        if s.lending.is_some() {
                            "lending"
                        } else {
                            "draining"
                        }
                    ),
                ));
            }
        }
        // Invariant 6: the bus's own gauge of its largest queue.
        let stats = self.bus.stats();
        let bound = self
            .subs
            .iter()
            .filter(|s| s.live() || (s.ended.is_some() && !s.unsubscribed && !s.finished))
            .map(|s| s.item_bound(self.max_chunk_notifications))
            .max()
            .unwrap_or(0);
        self.stats.checks.hit(6);
        if stats.largest_queue as u64 > bound {
            return Err(Violation::new(
                6,
                format!(
                    "expected no queue above {bound} notifications, got one of {}",
                    stats.largest_queue
                ),
            ));
        }
        // Invariants 3 and 4: every ready subscriber's channel is LISTENed on
        // the live connection (UNLISTEN only after the last one left).
        if let Some(link) = &mut self.link {
            let (host, conn) = link.id;
            if !self.bus.wants_input() {
                link.paused_since_hole = true;
            }
            if self.servers[host].is_ready(conn) && link.black_holed_at.is_none() {
                let on_server = self.servers[host].listening_channels(conn);
                for s in &self.subs {
                    if s.live() && s.open_window().is_some_and(|w| w.link == link.id) {
                        self.stats.checks.hit(4);
                        if !on_server.contains(&s.channel) {
                            return Err(Violation::new(
                                4,
                                format!(
                                    "expected {:?} LISTENed while {} is ready on it, got {on_server:?}",
                                    s.channel, s.id
                                ),
                            ));
                        }
                    }
                }
            }
            // Invariant 8: a black hole is noticed within interval + timeout.
            if let Some(at) = link.black_holed_at
                && !link.paused_since_hole
            {
                self.stats.checks.hit(8);
                let limit = self.ping_interval + self.ping_timeout;
                if self.now - at > limit {
                    return Err(Violation::new(
                        8,
                        format!(
                            "expected the black-holed connection replaced within {limit:?}, still on \
                             it after {:?}",
                            self.now - at
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Steps until nothing happens at the current instant.
    pub(crate) fn settle(&mut self) -> Result<(), Violation> {
        let mut steps = 0;
        while self.step()? {
            steps += 1;
            if steps > MAX_STEPS_AT_ONE_INSTANT {
                return Err(Violation::new(
                    9,
                    format!(
                        "expected the bus to go quiet, got {steps} steps at one instant (a busy loop)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Runs until `deadline` in virtual time, jumping to each wake-up.
    pub fn drive_until(&mut self, deadline: Instant) -> Result<(), Violation> {
        loop {
            self.settle()?;
            let mut next = deadline;
            let wakeups = [
                self.bus.poll_timeout(),
                self.pending_connect.map(|(_, at)| at),
            ];
            for t in wakeups.into_iter().flatten() {
                next = next.min(t.max(self.now));
            }
            for s in &self.servers {
                if let Some(t) = s.next_wakeup().filter(|&t| t > self.now) {
                    next = next.min(t);
                }
            }
            if next <= self.now {
                if self.now >= deadline {
                    return Ok(());
                }
                // Something is due now but nothing moved: a timer in the past.
                if self.bus.poll_timeout().is_some_and(|t| t <= self.now) {
                    return Err(Violation::new(
                        9,
                        "expected handle_timeout to move the bus's timer forward, got it still due",
                    ));
                }
                next = deadline;
            }
            self.now = next;
            for s in &mut self.servers {
                s.handle_timeout(next);
            }
            for i in 0..self.subs.len() {
                if self.subs[i].consumer == Consumer::Slow {
                    let batch = self.subs[i].batch;
                    self.drain(i, batch)?;
                }
            }
        }
    }

    /// Runs for `span` of virtual time.
    pub fn drive_for(&mut self, span: Duration) -> Result<(), Violation> {
        self.drive_until(self.now + span)
    }

    // ------------------------------------------------------- application side

    /// A payload no other notification has.
    pub(crate) fn payload(&mut self, prefix: char) -> String {
        self.next_payload += 1;
        let mut p = format!("{prefix}{}", self.next_payload);
        match self.rng.below(8) {
            0 => p.push_str(" it's \"quoted\" \\ and ünïcode"),
            1 => p.push_str(&"x".repeat(self.rng.between(100, 3000) as usize)),
            2 => p.push_str("\n\ttab"),
            _ => {}
        }
        p
    }

    /// Subscribes with the given options and consumer.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &mut self,
        channel: &str,
        policy: pgnotify_core::OverflowPolicy,
        capacity: usize,
        max_bytes: Option<usize>,
        consumer: ConsumerKind,
        batch: usize,
    ) -> Result<(), Violation> {
        let mut options = pgnotify_core::SubscribeOptions::new()
            .policy(policy)
            .capacity(capacity);
        if let Some(b) = max_bytes {
            options = options.max_bytes(b);
        }
        let first_unread = match &self.link {
            Some(link) => self.notes.first_unread(link.id, link.read_notes),
            None => self.notes.len(),
        };
        match self.bus.subscribe(channel, options) {
            Ok(id) => {
                let mut model = SubModel::new(
                    id,
                    channel.to_owned(),
                    policy,
                    capacity.max(1),
                    max_bytes,
                    consumer.into(),
                    batch.max(1),
                    first_unread,
                );
                // Every other slow consumer reads as the driver does: lent
                // batches, consumed a few items at a time (no extra draw,
                // so existing seeds keep their schedules).
                if model.consumer == Consumer::Slow && id.as_u64() % 4 == 1 {
                    // A quarter of the slow consumers drain only when the bus
                    // announces them, one batch each time (no extra draw).
                    model.consumer = Consumer::Announced;
                }
                if model.consumer == Consumer::Slow && id.as_u64() % 2 == 0 {
                    model.lending =
                        self.bus
                            .take_consumption(id, 0, 0)
                            .map(|consumption| Lending {
                                held: EventBatch::new(),
                                consumption,
                            });
                }
                self.subs.push(model);
                self.pump()?;
                Ok(())
            }
            Err(e) => Err(Violation::new(
                9,
                format!("expected {channel:?} accepted, got {e}"),
            )),
        }
    }

    /// Unsubscribes the `k`-th live subscriber (if any) and checks nothing
    /// comes after.
    pub(crate) fn unsubscribe(&mut self, k: usize) -> Result<(), Violation> {
        let live: Vec<usize> = (0..self.subs.len())
            .filter(|&i| !self.subs[i].unsubscribed)
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let i = live[k % live.len()];
        let at = self.notes.len();
        let s = &mut self.subs[i];
        s.unsubscribed = true;
        s.close(at);
        if let Some(lending) = &mut s.lending {
            // Dropping a subscription drops what it had buffered.
            lending.held.clear();
        }
        let id = s.id;
        self.bus.unsubscribe(self.now, id);
        self.pump()?;
        let mut out = Vec::new();
        let status = self.bus.drain_events(self.now, id, &mut out, usize::MAX);
        self.stats.checks.hit(4);
        if !out.is_empty() || status != SubscriberStatus::Unknown {
            return Err(Violation::new(
                4,
                format!(
                    "expected nothing and Unknown after unsubscribing {id}, got {out:?} and {status:?}"
                ),
            ));
        }
        self.subs[i].finished = true;
        Ok(())
    }

    /// Publishes through the bus.
    pub fn publish(&mut self, channel: &str) -> Result<(), Violation> {
        let payload = self.payload('p');
        match self.bus.notify(self.now, channel, &payload) {
            Ok(id) => {
                self.stats.publishes += 1;
                self.publishes.insert(
                    id,
                    Publish {
                        channel: channel.to_owned(),
                        payload,
                        done: None,
                    },
                );
            }
            Err(NotifyError::Closed) if self.close_called => {}
            Err(e) => {
                return Err(Violation::new(
                    9,
                    format!("expected a valid publish accepted, got {e}"),
                ));
            }
        }
        self.pump()?;
        Ok(())
    }

    /// Commits notifications from another session on `host`.
    pub fn notify_external(
        &mut self,
        host: usize,
        notes: &[(&str, &str)],
    ) -> Result<(), Violation> {
        let _ = self.servers[host].commit_external(self.now, notes);
        self.sync()
    }

    /// `bounce`: drop the connection and reconnect.
    pub fn bounce(&mut self) -> Result<(), Violation> {
        if !self.close_called {
            self.backoff.bounced(self.now);
        }
        self.bus.bounce(self.now);
        self.pump()?;
        Ok(())
    }

    /// Terminates the current connection's backend as `pg_terminate_backend`
    /// does (FATAL 57P01, then close); false if there is no connection.
    pub fn terminate_backend(&mut self) -> Result<bool, Violation> {
        let Some((host, conn)) = self.link_id() else {
            return Ok(false);
        };
        self.servers[host].terminate(conn, self.now);
        self.stats.fault("backend terminated");
        self.sync()?;
        self.pump()?;
        Ok(true)
    }

    /// Black-holes the current connection.
    pub fn black_hole(&mut self) -> Result<(), Violation> {
        if let Some(link) = &mut self.link
            && link.black_holed_at.is_none()
        {
            link.black_holed_at = Some(self.now);
            link.slowed = true;
            link.paused_since_hole = !self.bus.wants_input();
            link.down.clear();
            self.servers[link.id.0].black_hole(link.id.1);
            self.stats.fault("black hole");
        }
        Ok(())
    }

    /// Whether the world is quiet: connected and listening, nothing in
    /// flight anywhere, reading not paused.
    pub(crate) fn is_quiet(&mut self) -> bool {
        let Some(link) = &mut self.link else {
            return false;
        };
        let (host, conn) = link.id;
        self.servers[host].poll_server_bytes(conn, self.now, &mut link.down);
        link.up.is_empty()
            && link.down.is_empty()
            && link.black_holed_at.is_none()
            && link.up_since.is_some()
            && self.servers[host].is_ready(conn)
            && self.servers[host].next_wakeup().is_none()
            && self.bus.wants_input()
            && self.bus.is_settled()
            && self.bus.stats().connected
    }

    /// Drains every subscriber, settles and, if the world is then quiet,
    /// checks convergence and every subscriber's tail; returns whether it
    /// was quiet.
    pub fn check_quiet_point(&mut self) -> Result<bool, Violation> {
        for i in 0..self.subs.len() {
            self.drain(i, usize::MAX)?;
        }
        self.settle()?;
        if !self.is_quiet() {
            return Ok(false);
        }
        self.check_convergence()?;
        self.check_tails()?;
        Ok(true)
    }

    /// Invariant 5 at a quiet point: the server LISTENs on exactly the
    /// subscribed channels plus the ping channel.
    pub(crate) fn check_convergence(&mut self) -> Result<(), Violation> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let (host, conn) = link.id;
        self.stats.checks.hit(5);
        let mut on_server: Vec<String> = self.servers[host].listening_channels(conn).to_vec();
        on_server.sort();
        let mut expected = self.bus.subscribed_channels();
        expected.extend(self.bus.ping_channel().map(str::to_owned));
        expected.sort();
        expected.dedup();
        let mut live: Vec<String> = self
            .subs
            .iter()
            .filter(|s| s.live())
            .map(|s| s.channel.clone())
            .collect();
        live.extend(self.bus.ping_channel().map(str::to_owned));
        live.sort();
        live.dedup();
        if on_server != expected || expected != live {
            return Err(Violation::new(
                5,
                format!(
                    "expected the server LISTENing on {live:?} (the bus says {expected:?}), got {on_server:?}"
                ),
            ));
        }
        Ok(())
    }

    /// At a quiet point: drain every consumer fully and check what each
    /// was owed since its last item.
    pub(crate) fn check_tails(&mut self) -> Result<(), Violation> {
        let Some(current) = self.link_id() else {
            return Ok(());
        };
        for i in 0..self.subs.len() {
            self.drain(i, usize::MAX)?;
        }
        for s in &self.subs {
            s.check_tail(&self.notes, current, &mut self.stats.checks)?;
        }
        Ok(())
    }

    /// Closes the bus and checks the end: every subscription ended, every
    /// publish answered once, no attempt after.
    pub fn close_and_check(&mut self) -> Result<(), Violation> {
        self.close_called = true;
        self.backoff.closed();
        self.bus.close(self.now);
        self.pump()?;
        self.drive_for(self.ping_timeout * 2 + Duration::from_secs(1))?;
        for i in 0..self.subs.len() {
            self.drain(i, usize::MAX)?;
        }
        self.stats.checks.hit(10);
        if !self.closed_event {
            return Err(Violation::new(9, "expected Closed after close, got none"));
        }
        if self.link.is_some() {
            return Err(Violation::new(
                9,
                "expected no transport after close, got one open",
            ));
        }
        for s in &self.subs {
            if !s.unsubscribed && s.ended.is_none() {
                return Err(Violation::new(
                    4,
                    format!("expected {} ended by close, got it still open", s.id),
                ));
            }
            if !s.unsubscribed && s.ended == Some(EndReason::Unsubscribed) {
                return Err(Violation::new(
                    4,
                    format!("expected {} not ended as unsubscribed", s.id),
                ));
            }
        }
        for (id, p) in &self.publishes {
            match &p.done {
                None => {
                    return Err(Violation::new(
                        10,
                        format!("expected exactly one result for {id:?}, got none after close"),
                    ));
                }
                Some(Err(NotifyError::OutcomeUnknown { .. })) | Some(Ok(())) => {}
                Some(Err(e)) => {
                    if self.notes.committed(&p.channel, &p.payload) {
                        return Err(Violation::new(
                            10,
                            format!(
                                "expected a failed publish not committed, got {id:?} failed ({e}) yet committed"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// How a simulated consumer drains, for [`World::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKind {
    /// After every step, everything.
    Fast,
    /// A batch each time virtual time advances.
    Slow,
    /// Only at the end.
    Never,
    /// A batch each time the bus announces it readable, and only then.
    Announced,
}

impl From<ConsumerKind> for Consumer {
    fn from(k: ConsumerKind) -> Self {
        match k {
            ConsumerKind::Fast => Consumer::Fast,
            ConsumerKind::Slow => Consumer::Slow,
            ConsumerKind::Never => Consumer::Never,
            ConsumerKind::Announced => Consumer::Announced,
        }
    }
}
