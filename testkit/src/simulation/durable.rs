//! Deterministic simulation of durable channels (issue 17): concurrent
//! publishing transactions that commit out of order (or roll back), a
//! listening connection that is killed and comes back, subscribers whose
//! live queues overflow, page reads that see the table as it was when they
//! ran, and pruning, around the core's real [`DurableReader`] and
//! [`Page::from_rows`].
//!
//! The model of the server follows what `core/src/durable/schema.rs` makes
//! PostgreSQL do, in one of two [`Scheme`]s: positions given at commit
//! (ours), or given at insert (the obvious design, which skips late
//! commits). The model of the live stream follows the bus's contract, which
//! the bus simulation (`world.rs`) checks on the real bus: a notification is
//! delivered, or a gap item stands where it was lost (an overflow, or a
//! reconnect, after which the channel is LISTENed again before the gap item
//! is delivered).
//!
//! After a schedule the world goes quiet (every transaction ends, the
//! connection comes back, every subscriber drains) and every subscriber's
//! items are checked: positions strictly increasing; every message
//! committed after its start received exactly once with its payload, or,
//! only if it was pruned, inside an `Expired` item; nothing else expired.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use pgnotify_core::durable::{DurableEvent, DurableReader, Page, PageRequest, Since};

use super::rng::SimRng;

/// How positions are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// At commit, under the commit lock: what `commit_message` does.
    CommitOrdered,
    /// At insert, from a counter that rollbacks do not give back: the flaw
    /// the design avoids, kept to show that the checks catch it.
    InsertOrdered,
}

/// What one schedule did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurableRunStats {
    /// Schedules run.
    pub schedules: u64,
    /// Messages committed.
    pub committed: u64,
    /// Transactions rolled back.
    pub rolled_back: u64,
    /// Commits that overtook a transaction which had begun earlier and was
    /// still open.
    pub overtakes: u64,
    /// Times the listening connection was killed.
    pub kills: u64,
    /// Live notifications dropped by a full subscriber queue.
    pub overflowed: u64,
    /// Pages read by subscribers.
    pub pages: u64,
    /// Messages subscribers received.
    pub delivered: u64,
    /// Positions subscribers were told had expired.
    pub expired: u64,
}

impl std::ops::AddAssign for DurableRunStats {
    fn add_assign(&mut self, o: Self) {
        self.schedules += o.schedules;
        self.committed += o.committed;
        self.rolled_back += o.rolled_back;
        self.overtakes += o.overtakes;
        self.kills += o.kills;
        self.overflowed += o.overflowed;
        self.pages += o.pages;
        self.delivered += o.delivered;
        self.expired += o.expired;
    }
}

/// A schedule whose subscribers did not receive what they were owed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableViolation {
    /// The seed that replays it.
    pub seed: u64,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for DurableViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "durable seed {} failed: {} (replay: PGNOTIFY_DURABLE_SEED={} cargo test -p \
             pgnotify-testkit --test durable_simulation)",
            self.seed, self.what, self.seed
        )
    }
}

/// Operations in one schedule before the world goes quiet.
const OPS: usize = 300;
/// Steps allowed for the quiet end before the schedule counts as stuck.
const QUIET_STEPS: usize = 20_000;

struct Message {
    payload: String,
    /// Too long for a NOTIFY: announced by position alone, and left out of
    /// a page unless it heads it.
    large: bool,
}

struct Transaction {
    began: u64,
    messages: Vec<Message>,
    /// The positions given at insert (`InsertOrdered` only).
    early_positions: Vec<u64>,
}

/// The channel's rows as committed.
#[derive(Default)]
struct Table {
    rows: BTreeMap<u64, (String, bool)>,
    last_position: u64,
    pruned_through: u64,
    /// Every message ever committed, pruned or not, for the checks.
    history: BTreeMap<u64, String>,
    /// `InsertOrdered`'s counter.
    next_early: u64,
}

impl Table {
    /// One page as `page_sql` reads it, as the server's text rows.
    fn page(&self, request: PageRequest) -> Rows {
        if self.last_position == 0 && self.pruned_through == 0 {
            return Vec::new(); // no channel row yet
        }
        let state = |position: Option<u64>, size: Option<usize>, payload: Option<&str>| {
            vec![
                Some(self.last_position.to_string()),
                Some(self.pruned_through.to_string()),
                position.map(|p| p.to_string()),
                size.map(|s| s.to_string()),
                payload.map(str::to_owned),
            ]
        };
        let rows: Vec<_> = self
            .rows
            .range(request.after + 1..)
            .take(request.limit as usize)
            .enumerate()
            .map(|(index, (&position, (payload, large)))| {
                let inline = index == 0 || !large;
                state(
                    Some(position),
                    Some(payload.len()),
                    inline.then_some(payload.as_str()),
                )
            })
            .collect();
        if rows.is_empty() {
            vec![state(None, None, None)]
        } else {
            rows
        }
    }
}

/// A page as the server's text rows.
type Rows = Vec<Vec<Option<String>>>;

/// What the live stream hands a subscriber.
enum LiveItem {
    Note(String),
    Gap,
}

struct Subscriber {
    reader: DurableReader,
    /// Its cursor when it started (after the first page, for `Since::Now`).
    start: Option<u64>,
    live: VecDeque<LiveItem>,
    capacity: usize,
    /// Notifications dropped since the last gap item was queued.
    dropped: u64,
    /// A page read in progress: the request, the operation at which the
    /// server runs it, and its rows once run.
    page: Option<(PageRequest, usize, Option<Rows>)>,
    received: Vec<DurableEvent>,
    /// How likely it is to take an item in a step (slow consumers overflow).
    appetite: u64,
}

impl Subscriber {
    fn push_live(&mut self, item: LiveItem, stats: &mut DurableRunStats) {
        if self.live.len() >= self.capacity {
            self.dropped += 1;
            stats.overflowed += 1;
            return;
        }
        if self.dropped > 0 {
            // The gap item stands where the dropped ones were.
            self.dropped = 0;
            self.live.push_back(LiveItem::Gap);
        }
        self.live.push_back(item);
    }

    fn is_quiet(&self) -> bool {
        self.page.is_none()
            && !self.reader.is_catching_up()
            && self.live.is_empty()
            && self.dropped == 0
    }
}

struct DurableWorld {
    rng: SimRng,
    scheme: Scheme,
    op: usize,
    open: Vec<Transaction>,
    began: u64,
    table: Table,
    /// Whether the listening connection has its LISTEN acknowledged.
    listening: bool,
    /// Notifications the server sent that the listener has not read.
    in_flight: VecDeque<String>,
    subscribers: Vec<Subscriber>,
    stats: DurableRunStats,
}

/// Runs one schedule under `scheme` and checks what every subscriber received.
pub fn run_durable_seed(seed: u64, scheme: Scheme) -> Result<DurableRunStats, DurableViolation> {
    let mut world = DurableWorld {
        rng: SimRng::new(seed),
        scheme,
        op: 0,
        open: Vec::new(),
        began: 0,
        table: Table::default(),
        listening: true,
        in_flight: VecDeque::new(),
        subscribers: Vec::new(),
        stats: DurableRunStats {
            schedules: 1,
            ..DurableRunStats::default()
        },
    };
    let violation = |what: String| DurableViolation { seed, what };
    for _ in 0..OPS {
        world.op += 1;
        world.random_op().map_err(violation)?;
    }
    world.quiet_down().map_err(violation)?;
    world.check().map_err(violation)?;
    Ok(world.stats)
}

impl DurableWorld {
    fn random_op(&mut self) -> Result<(), String> {
        let weights = [
            8,  // begin a transaction
            14, // publish in an open one
            8,  // commit one (any: out of order)
            2,  // roll one back
            14, // the listener reads a notification
            2,  // kill the listening connection
            3,  // it comes back
            20, // subscribers act
            6,  // page reads run and return
            2,  // a subscriber joins
            1,  // prune
        ];
        match self.rng.weighted(&weights) {
            0 if self.open.len() < 8 => {
                self.began += 1;
                self.open.push(Transaction {
                    began: self.began,
                    messages: Vec::new(),
                    early_positions: Vec::new(),
                });
            }
            1 if !self.open.is_empty() => self.publish(),
            2 if !self.open.is_empty() => self.commit(),
            3 if !self.open.is_empty() => {
                let index = self.rng.below(self.open.len() as u64) as usize;
                self.open.swap_remove(index);
                self.stats.rolled_back += 1;
            }
            4 => self.read_notification(),
            5 if self.listening => self.kill(),
            6 if !self.listening => self.reconnect(),
            7 => {
                for index in 0..self.subscribers.len() {
                    self.subscriber_step(index)?;
                }
            }
            8 => self.run_pages(false)?,
            9 if self.subscribers.len() < 3 && self.listening => self.join(),
            10 => self.prune(),
            _ => {}
        }
        Ok(())
    }

    fn publish(&mut self) {
        let index = self.rng.below(self.open.len() as u64) as usize;
        let large = self.rng.chance(1, 8);
        let tx = &mut self.open[index];
        let payload = format!("t{}-m{}", tx.began, tx.messages.len());
        tx.messages.push(Message { payload, large });
        if self.scheme == Scheme::InsertOrdered {
            self.table.next_early += 1;
            tx.early_positions.push(self.table.next_early);
        }
    }

    fn commit(&mut self) {
        let index = self.rng.below(self.open.len() as u64) as usize;
        let tx = self.open.swap_remove(index);
        if self.open.iter().any(|other| other.began < tx.began) {
            self.stats.overtakes += 1;
        }
        for (n, message) in tx.messages.into_iter().enumerate() {
            let position = match self.scheme {
                Scheme::CommitOrdered => self.table.last_position + 1,
                Scheme::InsertOrdered => tx.early_positions[n],
            };
            self.table.last_position = self.table.last_position.max(position);
            self.table.history.insert(position, message.payload.clone());
            let note = if message.large {
                position.to_string()
            } else {
                format!("{position}:{}", message.payload)
            };
            self.table
                .rows
                .insert(position, (message.payload, message.large));
            self.stats.committed += 1;
            if self.listening {
                self.in_flight.push_back(note);
            }
        }
    }

    /// The listener reads one notification and fans it out.
    fn read_notification(&mut self) {
        if !self.listening {
            return;
        }
        let Some(note) = self.in_flight.pop_front() else {
            return;
        };
        for subscriber in &mut self.subscribers {
            subscriber.push_live(LiveItem::Note(note.clone()), &mut self.stats);
        }
    }

    /// The backend is killed: what it had sent and the listener had not
    /// read is lost, and so is whatever commits until it is back.
    fn kill(&mut self) {
        self.listening = false;
        self.in_flight.clear();
        self.stats.kills += 1;
    }

    /// Connected and LISTENing again: each subscriber's gap item comes
    /// after that, so nothing after it is missed.
    fn reconnect(&mut self) {
        self.listening = true;
        for subscriber in &mut self.subscribers {
            // A gap item is never dropped (the bus keeps room for it).
            subscriber.live.push_back(LiveItem::Gap);
        }
    }

    /// A subscriber joins, its LISTEN acknowledged: `Now` (its first page
    /// is read before it can take anything), or after a position the
    /// channel has reached.
    fn join(&mut self) {
        let since = if self.rng.chance(1, 2) {
            Since::Now
        } else {
            Since::After(self.rng.below(self.table.last_position + 1))
        };
        let capacity = *self.rng.pick(&[1, 2, 4, 64]);
        let page_limit = *self.rng.pick(&[1, 3, 1000]) as u32;
        let appetite = *self.rng.pick(&[1, 3, 8]);
        self.subscribers.push(Subscriber {
            reader: DurableReader::new(since).with_page_limit(page_limit),
            start: match since {
                Since::Now => None,
                Since::After(p) => Some(p),
            },
            live: VecDeque::new(),
            capacity,
            dropped: 0,
            page: None,
            received: Vec::new(),
            appetite,
        });
    }

    fn subscriber_step(&mut self, index: usize) -> Result<(), String> {
        let op = self.op;
        let delay = self.rng.between(0, 6) as usize;
        let hungry = self.rng.below(8) < self.subscribers[index].appetite;
        let subscriber = &mut self.subscribers[index];
        if let Some(event) = subscriber.reader.poll_event() {
            match &event {
                DurableEvent::Message(_) => self.stats.delivered += 1,
                DurableEvent::Expired { missed, .. } => self.stats.expired += missed,
                _ => {}
            }
            subscriber.received.push(event);
            return Ok(());
        }
        if subscriber.page.is_some() {
            return Ok(());
        }
        if let Some(request) = subscriber.reader.poll_request() {
            subscriber.page = Some((request, op + delay, None));
            return Ok(());
        }
        if !hungry {
            return Ok(());
        }
        match subscriber.live.pop_front() {
            Some(LiveItem::Note(note)) => {
                subscriber
                    .reader
                    .handle_live(&note)
                    .map_err(|e| format!("a live note {note:?} was refused: {e}"))?;
            }
            Some(LiveItem::Gap) => subscriber.reader.handle_gap(),
            None if subscriber.dropped > 0 => {
                // Room again: the gap item for the tail that was dropped.
                subscriber.dropped = 0;
                subscriber.reader.handle_gap();
            }
            None => {}
        }
        Ok(())
    }

    /// Page reads whose time has come run against the table as it is now;
    /// those that ran return (`all`: every one, at once).
    fn run_pages(&mut self, all: bool) -> Result<(), String> {
        for subscriber in &mut self.subscribers {
            let Some((request, at, rows)) = subscriber.page.as_mut() else {
                continue;
            };
            if rows.is_none() && (all || *at <= self.op) {
                *rows = Some(self.table.page(*request));
                if !all {
                    continue; // it returns at a later step
                }
            }
            if rows.is_some() && (all || self.rng.chance(1, 2)) {
                let (request, _, rows) = subscriber.page.take().expect("a page");
                let page = Page::from_rows(rows.expect("ran")).map_err(|e| e.to_string())?;
                subscriber
                    .reader
                    .handle_page(request, page)
                    .map_err(|e| e.to_string())?;
                self.stats.pages += 1;
                if subscriber.start.is_none() {
                    subscriber.start = subscriber.reader.cursor();
                }
            }
        }
        Ok(())
    }

    fn prune(&mut self) {
        let keep = self.rng.below(6);
        let through = self.table.last_position.saturating_sub(keep);
        if through > self.table.pruned_through {
            self.table.pruned_through = through;
            self.table.rows = self.table.rows.split_off(&(through + 1));
        }
    }

    /// Every transaction ends, the connection comes back, and everyone
    /// drains until nothing moves.
    fn quiet_down(&mut self) -> Result<(), String> {
        while !self.open.is_empty() {
            self.commit();
        }
        if !self.listening {
            self.reconnect();
        }
        for _ in 0..QUIET_STEPS {
            self.op += 1;
            while !self.in_flight.is_empty() {
                self.read_notification();
            }
            for index in 0..self.subscribers.len() {
                let subscriber = &mut self.subscribers[index];
                subscriber.appetite = 8;
                self.subscriber_step(index)?;
            }
            self.run_pages(true)?;
            let quiet = self.subscribers.iter_mut().all(|s| {
                if let Some(event) = s.reader.poll_event() {
                    s.received.push(event);
                    return false;
                }
                s.is_quiet()
            });
            if quiet && self.in_flight.is_empty() {
                return Ok(());
            }
        }
        Err(format!("still moving after {QUIET_STEPS} quiet steps"))
    }

    fn check(&self) -> Result<(), String> {
        for (index, subscriber) in self.subscribers.iter().enumerate() {
            let start = subscriber
                .start
                .ok_or_else(|| format!("subscriber {index} never read its first page"))?;
            let mut covered: BTreeMap<u64, Option<&str>> = BTreeMap::new();
            let mut last = start;
            for event in &subscriber.received {
                match event {
                    DurableEvent::Message(m) => {
                        if self.table.history.get(&m.position) != Some(&m.payload) {
                            return Err(format!(
                                "subscriber {index}: position {} carried {:?}, which was not \
                                 committed there",
                                m.position, m.payload
                            ));
                        }
                        if m.position <= last {
                            return Err(format!(
                                "subscriber {index}: position {} after {last}",
                                m.position
                            ));
                        }
                        covered.insert(m.position, Some(&m.payload));
                        last = m.position;
                    }
                    DurableEvent::Expired { missed, through } => {
                        let first = through + 1 - missed;
                        if first <= last {
                            return Err(format!(
                                "subscriber {index}: expired {first}..={through} after {last}"
                            ));
                        }
                        for p in first..=*through {
                            if p > self.table.pruned_through {
                                return Err(format!(
                                    "subscriber {index}: position {p} called expired but it \
                                     was never pruned (pruned through {})",
                                    self.table.pruned_through
                                ));
                            }
                            covered.insert(p, None);
                        }
                        last = *through;
                    }
                    _ => {}
                }
            }
            for (&position, payload) in self.table.history.range(start + 1..) {
                match covered.get(&position) {
                    Some(Some(got)) if got == payload => {}
                    Some(Some(got)) => {
                        return Err(format!(
                            "subscriber {index}: position {position} carried {got:?}, not \
                             {payload:?}"
                        ));
                    }
                    Some(None) => {}
                    None => {
                        return Err(format!(
                            "subscriber {index} (from {start}) never received position \
                             {position} ({payload:?}), committed and not pruned"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
