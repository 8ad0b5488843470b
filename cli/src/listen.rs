//! `pgnotify listen`: every event of one or more subscriptions, one line each.

use std::future::poll_fn;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pgnotify_core::durable::DurableEvent;
use pgnotify_core::{EndReason, Event, SubscribeOptions};
use pgnotify_tokio::{ConnectionEvent, ConnectionEvents, Listener, Subscription};
use tokio::io::{AsyncWriteExt, Stdout};
use tokio::time::Instant;

use crate::args::ListenArgs;
use crate::connection::{self, Target};
use crate::error::CliError;
use crate::output::Lines;
use crate::shutdown::Shutdown;
use crate::status::StatusLine;

/// How many ready items are rendered before they are written out together.
pub(crate) const BATCH: usize = 1024;

/// How often the status line is refreshed.
pub(crate) const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Runs `listen` until Ctrl-C, SIGTERM, a closed stdout, the end of every
/// subscription, or `--count`, `--until-payload` or `--timeout`; then prints
/// the summary line on stderr.
pub(crate) async fn run(
    args: ListenArgs,
    target: Target,
    connect_timeout: Duration,
) -> Result<(), CliError> {
    let started = Instant::now();
    let deadline = args.timeout.map(|timeout| started + timeout);
    // `listen jobs jobs` listens once and prints each notification once.
    let channels = distinct_channels(&args.channels)?;
    if args.durable {
        return crate::durable::listen(args, channels, target, connect_timeout).await;
    }
    let mut shutdown = Shutdown::install();
    let setup = setup(&args, &channels, target, connect_timeout);
    let Some((listener, events, mut subscriptions)) =
        set_up(setup, &mut shutdown, deadline, args.timeout).await?
    else {
        return Ok(());
    };
    let mut tally = Tally::new(&args);
    let mut events = Some(events);
    let mut out = Output::new(Lines::new(args.format));
    // What happened while subscribing (a reconnect) comes before the
    // listening line, in the order it happened.
    while let Some(Item::Connection(Some(event))) = poll_ready(&mut [], &mut events, &mut 0) {
        out.lines.connection(&event);
    }
    let stats = listener.stats();
    out.lines
        .listening(&channels, stats.generation, listener.backend_pid(), None);
    let result = pump(
        &listener,
        &mut subscriptions,
        &mut events,
        &mut out,
        &mut shutdown,
        &mut tally,
        deadline,
    )
    .await;
    drop(subscriptions);
    finish(listener, &mut out, &tally, started, result).await
}

/// Waits for `setup` (connect and subscribe), unless a signal comes first
/// (`None`: end quietly) or `--timeout` passes (an error).
pub(crate) async fn set_up<T>(
    setup: impl std::future::Future<Output = Result<T, CliError>>,
    shutdown: &mut Shutdown,
    deadline: Option<Instant>,
    timeout: Option<std::time::Duration>,
) -> Result<Option<T>, CliError> {
    tokio::select! {
        result = setup => result.map(Some),
        () = shutdown.wait() => Ok(None),
        () = until(deadline) => {
            let waited_for = format!("not listening within {:?}", timeout.unwrap_or_default());
            Err(CliError::TimedOut { waited_for })
        }
    }
}

/// The end of a `listen`: the status line cleared, the listener closed, the
/// summary line written; a closed stdout is no error.
pub(crate) async fn finish(
    listener: Listener,
    out: &mut Output,
    tally: &Tally,
    started: Instant,
    result: Result<(), CliError>,
) -> Result<(), CliError> {
    out.status.clear();
    let reconnects = listener.stats().reconnects;
    listener.close().await;
    tally.summary(reconnects, started);
    quiet_broken_pipe(result)
}

/// The channels named, checked, each once: `listen jobs jobs` listens once
/// and prints each notification once.
fn distinct_channels(names: &[String]) -> Result<Vec<String>, CliError> {
    let mut channels: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        pgnotify_core::validate_channel(name).map_err(|source| CliError::Channel {
            name: name.clone(),
            source,
        })?;
        if !channels.contains(name) {
            channels.push(name.clone());
        }
    }
    Ok(channels)
}

/// A closed stdout (`listen ... | head -1`) ends `listen` quietly.
pub(crate) fn quiet_broken_pipe(result: Result<(), CliError>) -> Result<(), CliError> {
    match result {
        Err(CliError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        other => other,
    }
}

/// Waits until `deadline`, or forever without one.
pub(crate) async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What `listen` has printed, and what it stops after.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Notifications, or durable messages.
    notifications: u64,
    /// Gaps, or expired items.
    gaps: u64,
    /// Whether these are durable messages (for the wording).
    durable: bool,
    /// `--count`.
    count: Option<u64>,
    /// `--until-payload`.
    until_payload: Option<String>,
    /// Whether that payload has arrived.
    payload_seen: bool,
    /// `--timeout`, for the message.
    timeout: Duration,
}

impl Tally {
    pub(crate) fn new(args: &ListenArgs) -> Self {
        Self {
            count: args.count,
            until_payload: args.until_payload.clone(),
            timeout: args.timeout.unwrap_or_default(),
            durable: args.durable,
            ..Self::default()
        }
    }

    /// What is counted: notifications, or durable messages.
    fn noun(&self) -> &'static str {
        if self.durable {
            "messages"
        } else {
            "notifications"
        }
    }

    fn observe(&mut self, event: &Event) {
        match event {
            Event::Notification(n) => {
                self.notifications += 1;
                if self.until_payload.as_deref() == Some(&*n.payload) {
                    self.payload_seen = true;
                }
            }
            Event::Gap(_) => self.gaps += 1,
            _ => {}
        }
    }

    pub(crate) fn observe_durable(&mut self, event: &DurableEvent) {
        match event {
            DurableEvent::Message(m) => {
                self.notifications += 1;
                if self.until_payload.as_deref() == Some(&*m.payload) {
                    self.payload_seen = true;
                }
            }
            _ => self.gaps += 1,
        }
    }

    /// The summary line on stderr.
    pub(crate) fn summary(&self, reconnects: u64, started: Instant) {
        let gaps = if self.durable { "expired" } else { "gaps" };
        eprintln!(
            "pgnotify: {} {}, {} {gaps}, {reconnects} reconnects in {:.1}s",
            self.notifications,
            self.noun(),
            self.gaps,
            started.elapsed().as_secs_f64()
        );
    }

    /// Whether `--count` or `--until-payload` is met.
    pub(crate) fn done(&self) -> bool {
        self.payload_seen || self.count.is_some_and(|count| self.notifications >= count)
    }

    /// The outcome when `--timeout` passes: success only for a bare
    /// `--timeout` that saw a notification.
    pub(crate) fn timed_out(&self) -> Result<(), CliError> {
        let after = self.timeout;
        let noun = self.noun();
        let mut missing = Vec::new();
        if let Some(count) = self.count {
            missing.push(format!(
                "{} of {count} {noun} arrived within {after:?}",
                self.notifications
            ));
        }
        if let Some(payload) = &self.until_payload {
            missing.push(format!("no payload {payload:?} within {after:?}"));
        }
        if missing.is_empty() {
            if self.notifications > 0 {
                return Ok(());
            }
            let one = noun.trim_end_matches('s');
            missing.push(format!("no {one} within {after:?}"));
        }
        Err(CliError::TimedOut {
            waited_for: missing.join(", "),
        })
    }
}

/// Connects and subscribes to every channel.
async fn setup(
    args: &ListenArgs,
    channels: &[String],
    target: Target,
    connect_timeout: Duration,
) -> Result<(Listener, ConnectionEvents, Vec<Subscription>), CliError> {
    let listener = connection::connect(target, connect_timeout).await?;
    // Taken before subscribing, so a reconnect meanwhile is reported too.
    let events = listener.connection_events();
    let options = SubscribeOptions::new()
        .capacity(args.capacity)
        .policy(args.policy);
    let mut subscriptions = Vec::with_capacity(channels.len());
    for channel in channels {
        let subscription = listener
            .subscribe_with(channel, options.clone())
            .await
            .map_err(|source| CliError::Subscribe {
                channel: channel.clone(),
                source,
            })?;
        subscriptions.push(subscription);
    }
    Ok((listener, events, subscriptions))
}

/// Stdout, the pending lines and the status line.
pub(crate) struct Output {
    pub(crate) lines: Lines,
    stdout: Stdout,
    pub(crate) status: StatusLine,
}

impl Output {
    pub(crate) fn new(lines: Lines) -> Self {
        Self {
            lines,
            stdout: tokio::io::stdout(),
            status: StatusLine::for_terminal(),
        }
    }

    /// Writes the pending lines and redraws the status line under them.
    pub(crate) async fn flush(&mut self, listener: &Listener) -> Result<(), CliError> {
        if !self.lines.is_empty() {
            self.status.clear();
            let io = |source| CliError::Io {
                action: "write to stdout",
                source,
            };
            self.stdout
                .write_all(self.lines.as_bytes())
                .await
                .map_err(io)?;
            self.stdout.flush().await.map_err(io)?;
            self.lines.clear();
        }
        self.status.draw(&listener.stats());
        Ok(())
    }
}

/// Prints events until a shutdown signal, the end of every subscription, or
/// what `tally` stops after.
async fn pump(
    listener: &Listener,
    subscriptions: &mut Vec<Subscription>,
    events: &mut Option<ConnectionEvents>,
    out: &mut Output,
    shutdown: &mut Shutdown,
    tally: &mut Tally,
    deadline: Option<Instant>,
) -> Result<(), CliError> {
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    let mut next_start = 0;
    out.flush(listener).await?;
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => return Ok(()),
            () = until(deadline) => return tally.timed_out(),
            item = poll_fn(|cx| poll_item(cx, subscriptions, events, &mut next_start)) => {
                let mut item = Some(item);
                let mut rendered = 0;
                // Take whatever else is ready now, then write it all at once.
                while let Some(ready) = item.take() {
                    if let Some(ended) = render(ready, subscriptions, events, &mut out.lines, tally) {
                        if subscriptions.is_empty() {
                            out.flush(listener).await?;
                            let reason = end_cause(ended, listener);
                            return Err(CliError::AllSubscriptionsEnded { reason });
                        }
                    }
                    if tally.done() {
                        // Nothing after the item that met --count or --until-payload.
                        return out.flush(listener).await;
                    }
                    rendered += 1;
                    if rendered < BATCH {
                        item = poll_ready(subscriptions, events, &mut next_start);
                    }
                }
                out.flush(listener).await?;
            }
            _ = ticker.tick(), if out.status.enabled() => out.status.update(&listener.stats()),
        }
    }
}

/// Something to print: a subscription's item or end, or a connection event.
enum Item {
    Subscription(usize, Option<Event>),
    Connection(Option<ConnectionEvent>),
}

/// Why a subscription ended, with the listener's error when it stopped on one.
fn end_cause(reason: EndReason, listener: &Listener) -> String {
    match (reason, listener.stats().last_error) {
        (EndReason::Failed, Some(error)) => format!("{reason}: {error}"),
        _ => reason.to_string(),
    }
}

/// Renders one item; returns the end reason when it ended a subscription
/// (which is then removed).
fn render(
    item: Item,
    subscriptions: &mut Vec<Subscription>,
    events: &mut Option<ConnectionEvents>,
    lines: &mut Lines,
    tally: &mut Tally,
) -> Option<EndReason> {
    match item {
        Item::Subscription(i, Some(event)) => {
            tally.observe(&event);
            lines.event(subscriptions[i].channel(), &event);
            None
        }
        Item::Subscription(i, None) => {
            let subscription = subscriptions.remove(i);
            let reason = subscription.end_reason();
            lines.end(subscription.channel(), reason);
            Some(reason.unwrap_or(EndReason::BusClosed))
        }
        Item::Connection(Some(event)) => {
            lines.connection(&event);
            None
        }
        Item::Connection(None) => {
            *events = None;
            None
        }
    }
}

/// Polls the connection events, then every subscription starting after the
/// one served last, so a busy channel cannot starve the others.
fn poll_item(
    cx: &mut Context<'_>,
    subscriptions: &mut [Subscription],
    events: &mut Option<ConnectionEvents>,
    next_start: &mut usize,
) -> Poll<Item> {
    if let Some(receiver) = events {
        if let Poll::Ready(event) = receiver.poll_recv(cx) {
            return Poll::Ready(Item::Connection(event));
        }
    }
    let n = subscriptions.len();
    for k in 0..n {
        let i = (*next_start + k) % n;
        if let Poll::Ready(event) = subscriptions[i].poll_recv(cx) {
            *next_start = (i + 1) % n;
            return Poll::Ready(Item::Subscription(i, event));
        }
    }
    Poll::Pending
}

/// An item that is ready now, without waiting.
fn poll_ready(
    subscriptions: &mut [Subscription],
    events: &mut Option<ConnectionEvents>,
    next_start: &mut usize,
) -> Option<Item> {
    let mut cx = Context::from_waker(Waker::noop());
    match poll_item(&mut cx, subscriptions, events, next_start) {
        Poll::Ready(item) => Some(item),
        Poll::Pending => None,
    }
}
