//! `pgnotify listen`: every event of one or more subscriptions, one line each.

use std::future::poll_fn;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pgnotify_core::{EndReason, Event, SubscribeOptions};
use pgnotify_tokio::{ConnectionEvent, ConnectionEvents, Listener, Subscription};
use tokio::io::{AsyncWriteExt, Stdout};

use crate::args::ListenArgs;
use crate::connection::{self, Target};
use crate::error::CliError;
use crate::output::Lines;
use crate::shutdown::Shutdown;
use crate::status::StatusLine;

/// How many ready items are rendered before they are written out together.
const BATCH: usize = 1024;

/// How often the status line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Runs `listen` until Ctrl-C, SIGTERM, a closed stdout or the end of every
/// subscription.
pub(crate) async fn run(
    args: ListenArgs,
    target: Target,
    connect_timeout: Duration,
) -> Result<(), CliError> {
    for name in &args.channels {
        pgnotify_core::validate_channel(name).map_err(|source| CliError::Channel {
            name: name.clone(),
            source,
        })?;
    }
    let mut shutdown = Shutdown::install();
    let setup = setup(&args, target, connect_timeout);
    let (listener, events, mut subscriptions) = tokio::select! {
        result = setup => result?,
        () = shutdown.wait() => return Ok(()),
    };
    let mut events = Some(events);
    let mut out = Output::new(Lines::new(args.format));
    // What happened while subscribing (a reconnect) comes before the
    // listening line, in the order it happened.
    while let Some(Item::Connection(Some(event))) = poll_ready(&mut [], &mut events, &mut 0) {
        out.lines.connection(&event);
    }
    let stats = listener.stats();
    out.lines
        .listening(&args.channels, stats.generation, listener.backend_pid());
    let result = pump(
        &listener,
        &mut subscriptions,
        &mut events,
        &mut out,
        &mut shutdown,
    )
    .await;
    out.status.clear();
    drop(subscriptions);
    listener.close().await;
    match result {
        Err(CliError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        other => other,
    }
}

/// Connects and subscribes to every channel.
async fn setup(
    args: &ListenArgs,
    target: Target,
    connect_timeout: Duration,
) -> Result<(Listener, ConnectionEvents, Vec<Subscription>), CliError> {
    let listener = connection::connect(target, connect_timeout).await?;
    // Taken before subscribing, so a reconnect meanwhile is reported too.
    let events = listener.connection_events();
    let options = SubscribeOptions::new()
        .capacity(args.capacity)
        .policy(args.policy);
    let mut subscriptions = Vec::with_capacity(args.channels.len());
    for channel in &args.channels {
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
struct Output {
    lines: Lines,
    stdout: Stdout,
    status: StatusLine,
}

impl Output {
    fn new(lines: Lines) -> Self {
        Self {
            lines,
            stdout: tokio::io::stdout(),
            status: StatusLine::for_terminal(),
        }
    }

    /// Writes the pending lines and redraws the status line under them.
    async fn flush(&mut self, listener: &Listener) -> Result<(), CliError> {
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

/// Prints events until a shutdown signal or the end of every subscription.
async fn pump(
    listener: &Listener,
    subscriptions: &mut Vec<Subscription>,
    events: &mut Option<ConnectionEvents>,
    out: &mut Output,
    shutdown: &mut Shutdown,
) -> Result<(), CliError> {
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    let mut next_start = 0;
    out.flush(listener).await?;
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => return Ok(()),
            item = poll_fn(|cx| poll_item(cx, subscriptions, events, &mut next_start)) => {
                let mut item = Some(item);
                let mut rendered = 0;
                // Take whatever else is ready now, then write it all at once.
                while let Some(ready) = item.take() {
                    if let Some(ended) = render(ready, subscriptions, events, &mut out.lines) {
                        if subscriptions.is_empty() {
                            out.flush(listener).await?;
                            let reason = end_cause(ended, listener);
                            return Err(CliError::AllSubscriptionsEnded { reason });
                        }
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
) -> Option<EndReason> {
    match item {
        Item::Subscription(i, Some(event)) => {
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
