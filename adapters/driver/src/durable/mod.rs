//! Durable channels on a listener: [`Durable`] publishes, installs and
//! prunes; [`DurableSubscription`] receives every message after a cursor
//! exactly once, in order, across reconnects and overflows.
//!
//! The SQL, the parsing and the merge of the live stream with the table are
//! the core's ([`pgnotify_core::durable`], where the ordering argument is
//! written out). This module runs them: the live stream is an ordinary
//! [`Subscription`](crate::Subscription) of the listener, and every
//! statement runs on a second session to the same server (the listener's
//! connection settings, application name `<name> (durable)`), taken from a
//! small pool of idle sessions.

mod error;
mod outbox;
mod subscription;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgnotify_core::durable::{DEFAULT_PAGE_LIMIT, DurableSchema, SCHEMA_VERSION, Since};
use pgnotify_core::{OverflowPolicy, SubscribeOptions, validate_channel};

pub use error::DurableError;
pub use subscription::DurableSubscription;

use crate::listener::Listener;
use crate::runtime::with_deadline;
use crate::sql::{Rows, SqlError, SqlSession};

/// How long one statement may take unless told otherwise.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle sessions kept for the next statement; more are opened when more
/// statements run at once, and closed after.
const MAX_IDLE_SESSIONS: usize = 16;

/// Room for a row's framing around its payload, in a session's frame cap.
const ROW_OVERHEAD: usize = 64 * 1024;

/// What [`Durable::run_raw`] runs.
pub(crate) enum Statement {
    /// A simple query (one or more statements, values as literals).
    Simple(String),
    /// A statement with two `text` parameters, once per pair, in one
    /// transaction.
    Calls(String, Vec<(String, String)>),
}

/// Durable channels in one schema, reached through a listener: made by
/// [`Listener::durable`] or [`Listener::durable_in`].
///
/// Cheap to make and to clone: every `Durable` of one listener and schema
/// shares its idle sessions and its group-commit queue.
///
/// ```no_run
/// # async fn example(listener: pgnotify_tokio::Listener) -> Result<(), pgnotify_tokio::DurableError> {
/// use pgnotify_tokio::{DurableEvent, Since};
///
/// let durable = listener.durable();
/// durable.install().await?; // once per database; running it again changes nothing
/// let mut orders = durable.subscribe("orders", Since::After(0)).await?;
/// durable.notify("orders", "order 42 paid").await?;
/// loop {
///     match orders.recv().await? {
///         DurableEvent::Message(m) => {
///             println!("{} {}", m.position, m.payload);
///             // store m.position: Since::After(it) resumes after it
///         }
///         other => println!("{other}"), // Expired: pruned before it was read
///     }
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Durable {
    listener: Listener,
    schema: DurableSchema,
    pool: Arc<DurablePool>,
    query_timeout: Duration,
    page_limit: u32,
}

/// One schema's idle sessions and group-commit queue, kept by the listener
/// so that every [`Durable`] for the schema shares them.
#[derive(Debug)]
pub(crate) struct DurablePool {
    idle: Mutex<Vec<SqlSession>>,
    /// `notify` calls waiting for their transaction (group commit).
    outbox: outbox::Outbox,
    /// The frame cap for new sessions: the payload bound the server said it
    /// has, once asked, plus room for the row around it.
    max_frame_len: AtomicUsize,
}

impl DurablePool {
    pub(crate) fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            outbox: outbox::Outbox::default(),
            max_frame_len: AtomicUsize::new(0),
        }
    }

    /// New sessions accept payloads of `max_payload` bytes (the frame cap
    /// only ever grows: sessions of one pool serve every bound seen).
    fn accept_payloads_of(&self, max_payload: usize) {
        let frame = max_payload.saturating_add(ROW_OVERHEAD);
        self.max_frame_len.fetch_max(frame, Ordering::Relaxed);
    }
}

impl Durable {
    pub(crate) fn new(listener: Listener, schema: DurableSchema) -> Self {
        let pool = listener.durable_pool(&schema);
        pool.accept_payloads_of(schema.max_payload());
        Self {
            listener,
            schema,
            pool,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            page_limit: DEFAULT_PAGE_LIMIT,
        }
    }

    /// The schema these channels live in.
    pub fn schema(&self) -> &DurableSchema {
        &self.schema
    }

    /// The same channels, with statements given up after `timeout` (a
    /// subscription then tries again; default [`DEFAULT_QUERY_TIMEOUT`]).
    #[must_use]
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// The same channels, with subscriptions reading at most `limit`
    /// messages per page when they catch up (default
    /// [`DEFAULT_PAGE_LIMIT`]).
    #[must_use]
    pub fn page_limit(mut self, limit: u32) -> Self {
        self.page_limit = limit.max(1);
        self
    }

    /// Creates (or upgrades) the schema's tables and functions, in one
    /// transaction; running it again changes nothing but the payload bound,
    /// which becomes the schema's [`max_payload`](DurableSchema::max_payload).
    /// Needs the right to create in the database (or the schema).
    pub async fn install(&self) -> Result<(), DurableError> {
        self.run(self.schema.install_sql()).await.map(drop)
    }

    /// Checks that the schema is installed in a version this pgnotify
    /// knows, and reads its payload bound (sessions opened from now on
    /// accept messages that long).
    pub async fn check(&self) -> Result<(), DurableError> {
        let rows = self.run(self.schema.version_sql()).await?;
        let value = |column: usize| {
            rows.first()
                .and_then(|row| row.get(column))
                .and_then(|v| v.as_deref())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let (Some(version), Some(max_payload)) = (value(0), value(1)) else {
            return Err(DurableError::Unavailable {
                reason: format!("unexpected answer to the version check: {rows:?}"),
            });
        };
        if version > u64::from(SCHEMA_VERSION) {
            return Err(DurableError::NewerSchema {
                schema: self.schema.name().to_owned(),
                version: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        self.pool
            .accept_payloads_of(usize::try_from(max_payload).unwrap_or(usize::MAX));
        Ok(())
    }

    /// Publishes `payload` on `channel` durably and returns the call's
    /// ticket (a number no other call gets; the message's position is
    /// given at commit and reaches subscribers with it) once the
    /// transaction carrying it committed.
    ///
    /// Calls made while another is in flight share the next transaction
    /// (group commit: at most 1,000 calls and 4 MiB of payload per transaction): many tasks publishing at
    /// once pay one commit per round trip, a lone call goes out at once. A
    /// shared transaction the server refuses is sent again call by call, so
    /// a call fails only for its own error. If the session breaks after the
    /// transaction was sent the result is [`DurableError::OutcomeUnknown`]:
    /// it is not sent again. Dropping the future does not recall the call.
    ///
    /// The payload may be as long as the schema's bound (16 MiB unless
    /// installed otherwise), far beyond NOTIFY's 8,000 bytes. To publish
    /// atomically with the application's own writes, run
    /// [`DurableSchema::publish_sql`] (or `SELECT pgnotify.publish(...)`)
    /// in its transaction instead.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<u64, DurableError> {
        validate_channel(channel).map_err(DurableError::Channel)?;
        if payload.contains('\0') {
            return Err(DurableError::Payload {
                reason: "it contains a NUL byte, which PostgreSQL cannot store".to_owned(),
            });
        }
        self.publish_grouped(channel, payload).await
    }

    /// Subscribes to `channel` from `since`. Returns once the LISTEN is
    /// acknowledged and the schema checked.
    ///
    /// The live stream gets the configuration's queue capacity with
    /// [`OverflowPolicy::DropNewest`], whatever the configuration's policy:
    /// for a durable subscriber an overflow costs one page read, so a slow
    /// one never holds the listening connection (as `Absorb` would) and
    /// keeps the oldest items, which follow its cursor.
    pub async fn subscribe(
        &self,
        channel: &str,
        since: Since,
    ) -> Result<DurableSubscription, DurableError> {
        let capacity = self
            .listener
            .shared()
            .lock()
            .bus
            .config()
            .default_subscribe_options()
            .capacity_items();
        let options = SubscribeOptions::new()
            .capacity(capacity)
            .policy(OverflowPolicy::DropNewest);
        self.subscribe_with(channel, since, options).await
    }

    /// [`subscribe`](Self::subscribe) with the live stream's own queue
    /// capacity and overflow policy (`Absorb` holds the listening
    /// connection for a slow consumer, as for any subscriber; the drop
    /// policies cost page reads).
    pub async fn subscribe_with(
        &self,
        channel: &str,
        since: Since,
        options: SubscribeOptions,
    ) -> Result<DurableSubscription, DurableError> {
        let live = self.listener.subscribe_with(channel, options).await?;
        self.start(live, since).await
    }

    /// A subscription from `since` on `live`, whose LISTEN is acknowledged:
    /// [`Since::Now`] is read now, so that it means "when subscribe
    /// returned", not "when `recv` was first called".
    async fn start(
        &self,
        live: crate::Subscription,
        since: Since,
    ) -> Result<DurableSubscription, DurableError> {
        self.check().await?;
        let mut subscription = DurableSubscription::new(self.clone(), live, since);
        if since == Since::Now {
            subscription.read_page().await?;
        }
        Ok(subscription)
    }

    /// Deletes the oldest messages of every channel: those published more
    /// than `max_age` ago (whole seconds), and all but the last `keep_last`
    /// of each channel. Returns how many were deleted. A subscriber whose
    /// cursor falls among them receives
    /// [`DurableEvent::Expired`](pgnotify_core::durable::DurableEvent::Expired).
    /// The same as `SELECT pgnotify.prune(max_age, keep_last)`.
    pub async fn prune(
        &self,
        max_age: Option<Duration>,
        keep_last: Option<u64>,
    ) -> Result<u64, DurableError> {
        let age = max_age.map(|d| format!("{} seconds", d.as_secs()));
        let rows = self
            .run(self.schema.prune_sql(age.as_deref(), keep_last))
            .await?;
        Ok(rows
            .first()
            .and_then(|row| row.first())
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Runs `sql` on an idle session (or a new one).
    pub(crate) async fn run(&self, sql: String) -> Result<Rows, DurableError> {
        self.run_raw(Statement::Simple(sql))
            .await
            .map_err(|e| DurableError::from_sql(self.schema.name(), e))
    }

    /// Runs `statement`, with the session-level error (which says whether
    /// trying again may help).
    pub(crate) async fn run_raw(&self, statement: Statement) -> Result<Rows, SqlError> {
        let runtime = self.listener.shared().runtime.clone();
        let idle = self.pool.idle.lock().expect("pool lock").pop();
        let mut session = match idle {
            Some(session) => session,
            None => {
                let target = self.listener.shared().lock().bus.session_target("durable");
                let frame = self.pool.max_frame_len.load(Ordering::Relaxed);
                SqlSession::open(&*runtime, &target, frame, None).await?
            }
        };
        let deadline = runtime.now() + self.query_timeout;
        let run = async {
            match statement {
                Statement::Simple(sql) => session.query(sql).await,
                Statement::Calls(sql, items) => session.call_all(sql, items).await,
            }
        };
        let result = with_deadline(&*runtime, Some(deadline), run)
            .await
            .unwrap_or_else(|| {
                Err(SqlError::Lost(format!(
                    "no answer within {:?}",
                    self.query_timeout
                )))
            });
        let broken = matches!(result, Err(SqlError::Unavailable(_) | SqlError::Lost(_)));
        if !broken && session.is_usable() {
            let mut idle = self.pool.idle.lock().expect("pool lock");
            if idle.len() < MAX_IDLE_SESSIONS {
                idle.push(session);
            } else {
                drop(idle);
                runtime.spawn(Box::pin(session.close()));
            }
        }
        result
    }

    pub(crate) fn runtime(&self) -> Arc<dyn crate::Runtime> {
        self.listener.shared().runtime.clone()
    }
}

impl<R> Listener<R> {
    /// Durable channels in the default schema (`pgnotify`): see [`Durable`].
    pub fn durable(&self) -> Durable {
        Durable::new(self.erased(), DurableSchema::default())
    }

    /// Durable channels in `schema` (its name and payload bound).
    pub fn durable_in(&self, schema: DurableSchema) -> Durable {
        Durable::new(self.erased(), schema)
    }

    /// Publishes durably on `channel` in the default schema:
    /// [`durable()`](Self::durable)[`.notify(channel, payload)`](Durable::notify).
    pub async fn notify_durable(&self, channel: &str, payload: &str) -> Result<u64, DurableError> {
        self.durable().notify(channel, payload).await
    }
}
