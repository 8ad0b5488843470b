//! The application's handle on the bus: [`Listener`] and its builder.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use pgnotify_core::bus::{Bus, BusError, NotifyError, PublishId, Stats};
use pgnotify_core::durable::DurableSchema;
use pgnotify_core::{Config, ConfigError, SubscribeOptions};

use crate::driver::Driver;
use crate::durable::DurablePool;
use crate::event_stream::ConnectionEvents;
use crate::multi::MultiSubscription;
use crate::runtime::{Runtime, with_deadline};
use crate::shared::{PublishSlot, Shared};
use crate::signal::store_waker;
use crate::subscription::{SubscribeError, Subscription};

/// A runtime that [`Listener::connect`] can find by itself: the one the
/// caller runs on.
///
/// Implemented by each runtime crate's runtime type (`TokioRuntime`,
/// `SmolRuntime`, `AsyncStdRuntime`), which those crates name in their
/// `Listener` type alias. It only picks the runtime; the listener itself is
/// the same code for all.
pub trait CurrentRuntime: 'static {
    /// The runtime to spawn the listener's task on, or `None` when there is
    /// none (for tokio: when not called from within a tokio runtime).
    fn current() -> Option<Arc<dyn Runtime>>;
}

/// The [`CurrentRuntime`] of a [`Listener`] that names no runtime: it finds
/// none, so the runtime must be given with [`ListenerBuilder::runtime`].
#[derive(Debug, Clone, Copy)]
pub enum AnyRuntime {}

impl CurrentRuntime for AnyRuntime {
    fn current() -> Option<Arc<dyn Runtime>> {
        None
    }
}

/// One PostgreSQL LISTEN connection shared by any number of subscriptions.
///
/// A listener owns one connection, made and kept by a background task:
/// it reconnects with backoff when the connection is lost, pings it to
/// detect a dead one, and LISTENs again on every channel that has a
/// subscriber. [`subscribe`](Self::subscribe) returns once the server has
/// acknowledged the LISTEN, so every NOTIFY committed afterwards reaches the
/// [`Subscription`] or is covered by a gap item in it.
///
/// `R` only says how [`connect`](Self::connect) finds its runtime; the
/// runtime crates name it, so application code writes
/// `pgnotify_tokio::Listener` (or `pgnotify_smol::Listener`, ...):
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # type Listener = pgnotify_driver::Listener;
/// # let config = pgnotify_core::Config::parse("postgres://localhost")?;
/// # let listener = Listener::builder(config).connect().await?;
/// // let listener = pgnotify_tokio::Listener::connect("postgres://app@db/app").await?;
/// let mut jobs = listener.subscribe("jobs").await?;
/// listener.notify("jobs", "42").await?;
/// while let Some(event) = jobs.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
///
/// A listener is a cheap handle (an `Arc`): clone it freely; it is `Send`
/// and `Sync`.
///
/// # Dropping
///
/// The connection stays open while any `Listener` clone or any
/// [`Subscription`] is alive. When the last of them is dropped the listener
/// closes as [`close`](Self::close) does (`UNLISTEN *`, Terminate), in the
/// background. [`ConnectionEvents`] receivers do not keep it open.
pub struct Listener<R = AnyRuntime> {
    handle: Arc<Handle>,
    _runtime: PhantomData<fn() -> R>,
}

/// Closes the bus when the last `Listener` clone goes (and no subscription is left).
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    /// Durable channels' idle sessions and group-commit queue, one per
    /// schema, shared by every `Durable` made for it.
    durable_pools: std::sync::Mutex<HashMap<String, Arc<DurablePool>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.command(|state, now| {
            state.lifecycle.listeners_gone = true;
            state.close_if_unused(now);
        });
    }
}

impl<R> Clone for Listener<R> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            _runtime: PhantomData,
        }
    }
}

impl<R> Listener<R> {
    /// The same listener, with the runtime type forgotten (for handles
    /// that are not generic, such as `Durable`).
    /// The pool of durable sessions for `schema`, made at its first use.
    pub(crate) fn durable_pool(&self, schema: &DurableSchema) -> Arc<DurablePool> {
        let mut pools = self.handle.durable_pools.lock().expect("pools lock");
        pools
            .entry(schema.name().to_owned())
            .or_insert_with(|| Arc::new(DurablePool::new()))
            .clone()
    }

    pub(crate) fn erased(&self) -> Listener {
        Listener {
            handle: self.handle.clone(),
            _runtime: PhantomData,
        }
    }
}

impl<R> fmt::Debug for Listener<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<R: CurrentRuntime> Listener<R> {
    /// Connects to the server named by a libpq connection string (URL or
    /// `key=value`), with the PG* environment variables as defaults and
    /// libpq's service files for `service=` ([`load_config`](crate::load_config)),
    /// on the current runtime.
    ///
    /// Returns once the first connection is up (see
    /// [`ListenerBuilder::connect`] for when it fails).
    pub async fn connect(url: &str) -> Result<Self, ListenerError> {
        let config = crate::load::load_config(url)?;
        Self::connect_with(config).await
    }

    /// Connects with a ready-made [`Config`], on the current runtime.
    ///
    /// The configuration is used as it is: unlike [`connect`](Self::connect),
    /// this reads no PG* environment variables (build the configuration
    /// with [`Config::parse_with_env`] for them).
    pub async fn connect_with(config: Config) -> Result<Self, ListenerError> {
        Self::builder(config).connect().await
    }
}

impl<R> Listener<R> {
    /// A builder for a listener with a chosen runtime or a bound on the
    /// first connection.
    pub fn builder(config: Config) -> ListenerBuilder<R> {
        ListenerBuilder {
            config,
            runtime: None,
            first_connect: FirstConnect::Rounds(DEFAULT_FIRST_CONNECT_ROUNDS),
            _runtime: PhantomData,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Subscribes to `channel` with the configuration's default queue
    /// capacity and overflow policy (`queue_capacity`, `overflow_policy`).
    ///
    /// Returns once the server has acknowledged the LISTEN — at once when the
    /// channel is LISTENed already; while disconnected, after the next
    /// connection. Channel names are case-sensitive and quoted as given.
    ///
    /// Cancel safe: dropping the future unsubscribes.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, SubscribeError> {
        let subscription = Subscription::register(self.shared(), channel, None)?;
        subscription.ready().await?;
        Ok(subscription)
    }

    /// Subscribes to `channel` with its own queue capacity and overflow
    /// policy. Otherwise as [`subscribe`](Self::subscribe).
    pub async fn subscribe_with(
        &self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        let subscription = Subscription::register(self.shared(), channel, Some(options))?;
        subscription.ready().await?;
        Ok(subscription)
    }

    /// Subscribes to every channel in `channels` as one stream, each with
    /// the configuration's default capacity and policy; returns once the
    /// server has acknowledged every LISTEN (they go out together, not one
    /// round trip each). A channel named twice is subscribed once.
    ///
    /// Fails, and subscribes to nothing, if any channel name is invalid or
    /// the listener is closed.
    pub async fn subscribe_all<I, S>(
        &self,
        channels: I,
    ) -> Result<MultiSubscription, SubscribeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.subscribe_all_with(channels, None).await
    }

    /// [`subscribe_all`](Self::subscribe_all) with the same queue capacity
    /// and overflow policy for each channel (`None`: the configuration's).
    pub async fn subscribe_all_with<I, S>(
        &self,
        channels: I,
        options: impl Into<Option<SubscribeOptions>>,
    ) -> Result<MultiSubscription, SubscribeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let options = options.into();
        let mut subscriptions: Vec<Subscription> = Vec::new();
        for channel in channels {
            let channel = channel.as_ref();
            if subscriptions.iter().any(|s| s.channel() == channel) {
                continue;
            }
            subscriptions.push(Subscription::register(
                self.shared(),
                channel,
                options.clone(),
            )?);
        }
        for subscription in &subscriptions {
            subscription.ready().await?;
        }
        Ok(MultiSubscription::new(subscriptions))
    }

    /// The channels LISTENed on the server right now, as the listener
    /// knows them (acknowledged LISTENs; its own ping channel excluded).
    /// Empty while disconnected.
    pub fn listening_channels(&self) -> Vec<String> {
        let mut channels = self.shared().lock().bus.listening_channels();
        channels.sort();
        channels
    }

    /// Sends `NOTIFY channel, payload` (as `pg_notify`) on the listener's
    /// connection and waits for the server's answer.
    ///
    /// With group commit (the default, `group_commit=on`), calls made while
    /// another is in flight share the next transaction, so many tasks
    /// publishing at once pay one commit per round trip rather than one
    /// each; a lone call goes out at once. Two identical (channel, payload)
    /// pairs never share a transaction (PostgreSQL would fold them into
    /// one delivery). A shared transaction the server refuses is rolled back
    /// whole and its calls are sent again one by one, so a call fails only
    /// for its own error.
    ///
    /// Each call gets exactly one result. Arguments are checked before
    /// anything is sent. While disconnected the notification waits up to
    /// `publish_timeout` for a connection. If the connection dies while it
    /// is in flight the result is [`NotifyError::OutcomeUnknown`]: it is not
    /// resent.
    ///
    /// Dropping the future does not recall a notification already queued;
    /// its result is discarded.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), NotifyError> {
        self.publish(|bus, now| bus.notify(now, channel, payload))
            .await
    }

    /// Sends every `(channel, payload)` of `items` in one transaction and
    /// waits for the server's answer: all are delivered, or none is.
    ///
    /// A batch holding the same pair twice is refused before anything is
    /// sent ([`NotifyError::Duplicate`]): PostgreSQL would deliver it once.
    /// Otherwise as [`notify`](Self::notify).
    ///
    /// ```no_run
    /// # async fn f(listener: pgnotify_tokio::Listener) -> Result<(), pgnotify_tokio::NotifyError> {
    /// listener
    ///     .notify_many([("jobs", "41"), ("jobs", "42"), ("audit", "two jobs")])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn notify_many<C, P>(
        &self,
        items: impl IntoIterator<Item = (C, P)>,
    ) -> Result<(), NotifyError>
    where
        C: AsRef<str>,
        P: AsRef<str>,
    {
        self.publish(|bus, now| bus.notify_many(now, items)).await
    }

    /// Starts a publish on the bus with `start`, and waits for its one result.
    async fn publish(
        &self,
        start: impl FnOnce(&mut Bus, Instant) -> Result<PublishId, NotifyError>,
    ) -> Result<(), NotifyError> {
        let id = self.shared().command(|state, now| {
            let id = start(&mut state.bus, now)?;
            state.publishes.insert(id, PublishSlot::default());
            Ok::<_, NotifyError>(id)
        })?;
        PublishWait {
            shared: self.shared(),
            id,
        }
        .wait()
        .await
    }

    /// A stream of this listener's connection events (connected,
    /// disconnected, attempt failed) from now on.
    pub fn connection_events(&self) -> ConnectionEvents {
        ConnectionEvents::new(self.shared().clone())
    }

    /// A snapshot of the listener's counters and gauges.
    pub fn stats(&self) -> Stats {
        self.shared().lock().bus.stats()
    }

    /// The backend process id of the current connection, if one is up.
    ///
    /// Notifications the listener sent itself carry this pid.
    pub fn backend_pid(&self) -> Option<i32> {
        self.shared().lock().bus.backend_pid()
    }

    /// Drops the connection and reconnects at once. Subscriptions see a
    /// [`Gap::Reconnected`](pgnotify_core::Gap::Reconnected).
    pub fn bounce(&self) {
        self.shared().command(|state, now| state.bus.bounce(now));
    }

    /// Closes the listener and waits until its connection is gone.
    ///
    /// Every subscription ends with
    /// [`EndReason::BusClosed`](pgnotify_core::EndReason::BusClosed) at once
    /// (items already queued stay readable); notifications still waiting for
    /// a connection fail with [`NotifyError::Closed`], those in flight get
    /// their result first. The listener sends `UNLISTEN *` and Terminate and
    /// closes the socket. Every clone of this listener is closed too.
    pub async fn close(&self) {
        self.shared().command(|state, now| state.close(now));
        std::future::poll_fn(|cx| {
            let mut state = self.shared().lock();
            if state.lifecycle.driver_stopped {
                return Poll::Ready(());
            }
            state.wait_lifecycle(cx);
            Poll::Pending
        })
        .await;
    }
}

/// Waits for one publish's result; forgets the slot if dropped first.
struct PublishWait<'a> {
    shared: &'a Shared,
    id: PublishId,
}

impl PublishWait<'_> {
    async fn wait(self) -> Result<(), NotifyError> {
        std::future::poll_fn(|cx| {
            let mut state = self.shared.lock();
            let stopped = state.lifecycle.driver_stopped;
            let Some(slot) = state.publishes.get_mut(&self.id) else {
                return Poll::Ready(Err(NotifyError::Closed));
            };
            if let Some(result) = slot.result.take() {
                return Poll::Ready(result);
            }
            if stopped {
                return Poll::Ready(Err(NotifyError::Closed));
            }
            store_waker(&mut slot.waker, cx);
            Poll::Pending
        })
        .await
    }
}

impl Drop for PublishWait<'_> {
    fn drop(&mut self) {
        self.shared.lock().publishes.remove(&self.id);
    }
}

/// How many times [`ListenerBuilder::connect`] tries every configured host
/// before it fails, unless told otherwise
/// ([`give_up_after`](ListenerBuilder::give_up_after),
/// [`first_connect_rounds`](ListenerBuilder::first_connect_rounds),
/// [`retry_forever`](ListenerBuilder::retry_forever)).
///
/// With one host, three attempts: the first retry is immediate and the next
/// waits `backoff_min` (100 ms) with jitter, so a refused port fails within
/// about half a second; an unreachable host takes three attempt timeouts
/// (`connect_timeout`, or `ping_interval + ping_timeout`: 15 s by default).
pub const DEFAULT_FIRST_CONNECT_ROUNDS: u32 = 3;

/// When the first connection is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstConnect {
    /// After every host failed this many times.
    Rounds(u32),
    /// After this long.
    Within(Duration),
    /// Never.
    Forever,
}

/// Configuration of a [`Listener`] beyond its [`Config`]: the runtime and
/// how long the first connection may take.
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct ListenerBuilder<R = AnyRuntime> {
    config: Config,
    runtime: Option<Arc<dyn Runtime>>,
    first_connect: FirstConnect,
    _runtime: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for ListenerBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerBuilder")
            .field("config", &self.config)
            .field("runtime", &self.runtime)
            .field("first_connect", &self.first_connect)
            .finish()
    }
}

impl<R> ListenerBuilder<R> {
    /// Runs the listener's task on `runtime` instead of the current one.
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Makes [`connect`](Self::connect) fail with
    /// [`ListenerError::TimedOut`] when no connection is up after `limit`,
    /// however many attempts that takes (instead of
    /// [`DEFAULT_FIRST_CONNECT_ROUNDS`] rounds of attempts).
    pub fn give_up_after(mut self, limit: Duration) -> Self {
        self.first_connect = FirstConnect::Within(limit);
        self
    }

    /// Makes [`connect`](Self::connect) fail with
    /// [`ListenerError::Unreachable`] once every configured host has failed
    /// `rounds` times (at least once; [`DEFAULT_FIRST_CONNECT_ROUNDS`]
    /// unless set).
    pub fn first_connect_rounds(mut self, rounds: u32) -> Self {
        self.first_connect = FirstConnect::Rounds(rounds.max(1));
        self
    }

    /// Makes [`connect`](Self::connect) retry a first connection that fails
    /// for a transient reason (the server is down, refusing connections, or
    /// unreachable) with backoff until it succeeds, however long that takes,
    /// for a service that must start before its database.
    pub fn retry_forever(mut self) -> Self {
        self.first_connect = FirstConnect::Forever;
        self
    }
}

impl<R: CurrentRuntime> ListenerBuilder<R> {
    /// Starts the listener's task and waits for its first connection.
    ///
    /// Fails fast, with the server's own error, when the first round of
    /// attempts (every configured host once) fails for a reason retrying
    /// will not fix: authentication, a missing database or role, TLS refused
    /// by the server, LISTEN refused. Transient failures (the server down,
    /// refusing connections or unreachable) are retried with backoff, and
    /// `connect` fails with [`ListenerError::Unreachable`], naming the last
    /// cause, once every host has failed [`DEFAULT_FIRST_CONNECT_ROUNDS`]
    /// times; [`give_up_after`](Self::give_up_after),
    /// [`first_connect_rounds`](Self::first_connect_rounds) and
    /// [`retry_forever`](Self::retry_forever) change that. Once connected,
    /// every later failure is retried by the listener, without limit, and
    /// reported through [`Listener::connection_events`] and
    /// [`Listener::stats`].
    ///
    /// Cancel safe: dropping the future closes the half-made listener.
    pub async fn connect(self) -> Result<Listener<R>, ListenerError> {
        let runtime = self
            .runtime
            .or_else(R::current)
            .ok_or(ListenerError::NoRuntime)?;
        let hosts = u32::try_from(self.config.hosts().len()).unwrap_or(u32::MAX);
        let config = crate::passfile::with_password_file(with_random_seed(self.config));
        let mut bus = Bus::new(config, runtime.now());
        bus.enable_side_publishes(true);
        let shared = Shared::new(bus, runtime.clone());
        runtime.spawn(Box::pin(Driver::new(shared.clone())));
        let listener = Listener {
            handle: Arc::new(Handle {
                durable_pools: Default::default(),
                shared: shared.clone(),
            }),
            _runtime: PhantomData,
        };
        let (deadline, attempts) = match self.first_connect {
            FirstConnect::Within(limit) => (runtime.now().checked_add(limit), None),
            FirstConnect::Rounds(rounds) => (None, Some(rounds.saturating_mul(hosts.max(1)))),
            FirstConnect::Forever => (None, None),
        };
        let first = std::future::poll_fn(|cx| {
            let mut state = shared.lock();
            let connected_once = state.bus.generation() > 0;
            let lifecycle = &mut state.lifecycle;
            if connected_once {
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = lifecycle.startup_error.take() {
                return Poll::Ready(Err(ListenerError::Connect(error)));
            }
            if let (Some(attempts), Some(last_error)) = (attempts, &lifecycle.last_error) {
                if lifecycle.failed_before_connected >= attempts {
                    return Poll::Ready(Err(ListenerError::Unreachable {
                        attempts,
                        last_error: last_error.clone(),
                    }));
                }
            }
            if lifecycle.closing {
                return Poll::Ready(Err(ListenerError::Closed));
            }
            state.wait_lifecycle(cx);
            Poll::Pending
        });
        match with_deadline(&*runtime, deadline, first).await {
            Some(Ok(())) => Ok(listener),
            Some(Err(error)) => Err(error),
            None => Err(ListenerError::TimedOut {
                after: match self.first_connect {
                    FirstConnect::Within(limit) => limit,
                    _ => Duration::ZERO,
                },
                last_error: shared.lock().lifecycle.last_error.clone(),
            }),
        }
    }
}

/// Gives the config a seed of its own unless it has one: listeners that
/// share a seed reconnect in step after an outage.
fn with_random_seed(config: Config) -> Config {
    if config.explicit_seed().is_some() {
        return config;
    }
    let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    config.to_builder().seed(seed).build().unwrap_or(config)
}

/// Why a [`Listener`] could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerError {
    /// The connection string is invalid.
    Config(ConfigError),
    /// No runtime was given and none is current.
    NoRuntime,
    /// The first connection failed for a reason retrying will not fix
    /// (the server's own error: authentication, missing database, ...).
    Connect(BusError),
    /// Every configured host failed [`DEFAULT_FIRST_CONNECT_ROUNDS`] times
    /// (or [`ListenerBuilder::first_connect_rounds`]) for transient reasons.
    Unreachable {
        /// How many attempts failed.
        attempts: u32,
        /// Why the last one failed.
        last_error: BusError,
    },
    /// No connection was up within the [`ListenerBuilder::give_up_after`] limit.
    TimedOut {
        /// The limit.
        after: Duration,
        /// The latest failure, if an attempt failed.
        last_error: Option<BusError>,
    },
    /// The listener's task stopped before it connected (its runtime shut down).
    Closed,
}

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid connection settings: {e}"),
            Self::NoRuntime => f.write_str(
                "no async runtime to run the listener on: connect from within the runtime, \
                 or give one with ListenerBuilder::runtime",
            ),
            Self::Connect(e) => write!(f, "could not connect: {}", e.after_could_not_connect()),
            Self::Unreachable {
                attempts,
                last_error,
            } => write!(
                f,
                "could not connect in {attempts} attempts; the last one failed: {last_error}"
            ),
            Self::TimedOut {
                after,
                last_error: Some(e),
            } => write!(
                f,
                "not connected after {after:?}; the last attempt failed: {e}"
            ),
            Self::TimedOut {
                after,
                last_error: None,
            } => write!(f, "not connected after {after:?}"),
            Self::Closed => f.write_str("the listener's task stopped before it connected"),
        }
    }
}

impl std::error::Error for ListenerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Connect(e) => Some(e),
            Self::Unreachable { last_error, .. } => Some(last_error),
            Self::TimedOut {
                last_error: Some(e),
                ..
            } => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for ListenerError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}
