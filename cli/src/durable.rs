//! Durable channels from the shell: `install`, `prune`, `notify --durable`
//! and `listen --durable`, through the library's `Durable`.

use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use pgnotify_core::SubscribeOptions;
use pgnotify_core::durable::{DurableEvent, DurableSchema, SCHEMA_VERSION};
use pgnotify_tokio::{
    ConnectionEvent, ConnectionEvents, DurableError, DurableSubscription, Listener,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::args::{InstallArgs, ListenArgs, PruneArgs};
use crate::connection::{self, Target};
use crate::error::CliError;
use crate::listen::{BATCH, Output, STATUS_EVERY, Tally, finish, set_up, until};
use crate::output::Lines;
use crate::shutdown::Shutdown;

/// `pgnotify install`: creates or upgrades the schema and says which it did.
pub(crate) async fn install(
    args: InstallArgs,
    target: Target,
    connect_timeout: Duration,
) -> Result<(), CliError> {
    let schema = args.schema.with_max_payload(args.max_payload);
    let listener = connection::connect(target, connect_timeout).await?;
    let durable = listener.durable_in(schema.clone());
    let result = async {
        // Only to say what install did: a failing check is reported by install itself.
        let existed = durable.check().await.is_ok();
        durable
            .install()
            .await
            .map_err(|e| durable_error("install", e))?;
        let name = schema.name();
        let bound = schema.max_payload();
        let line = if existed {
            format!(
                "durable channels in schema {name:?} were already installed (version \
                 {SCHEMA_VERSION}); payloads up to {bound} bytes"
            )
        } else {
            format!(
                "installed durable channels in schema {name:?} (version {SCHEMA_VERSION}, \
                 payloads up to {bound} bytes); publish with SELECT \"{name}\".publish(channel, \
                 payload)"
            )
        };
        print_line(&line)
    }
    .await;
    listener.close().await;
    result
}

/// `pgnotify prune`: deletes old messages and says how many.
pub(crate) async fn prune(
    args: PruneArgs,
    target: Target,
    connect_timeout: Duration,
) -> Result<(), CliError> {
    let listener = connection::connect(target, connect_timeout).await?;
    let durable = listener.durable_in(args.schema.clone());
    let result = match durable.prune(args.max_age, args.keep_last).await {
        Ok(deleted) => print_line(&format!(
            "pruned {deleted} messages from schema {:?}",
            args.schema.name()
        )),
        Err(e) => Err(durable_error("prune", e)),
    };
    listener.close().await;
    result
}

/// `pgnotify notify --durable`: publishes `payload` (or each line of stdin,
/// one after another so their positions follow the lines) and prints each
/// ticket `publish()` returned (the message's position is given at commit
/// and printed by `listen --durable`).
pub(crate) async fn notify(
    listener: &Listener,
    schema: DurableSchema,
    channel: &str,
    payload: Option<String>,
) -> Result<(), CliError> {
    let durable = listener.durable_in(schema);
    if let Some(payload) = payload {
        let ticket = durable
            .notify(channel, &payload)
            .await
            .map_err(|e| durable_error("publish durably", e))?;
        return print_line(&ticket.to_string());
    }
    if std::io::stdin().is_terminal() {
        eprintln!("pgnotify: publishing each line typed to {channel:?} durably; Ctrl-D ends");
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (mut read, mut failed) = (0u64, 0u64);
    while let Some(line) = lines.next_line().await.map_err(|source| CliError::Io {
        action: "read stdin",
        source,
    })? {
        read += 1;
        match durable.notify(channel, &line).await {
            Ok(ticket) => print_line(&ticket.to_string())?,
            Err(e) => {
                failed += 1;
                eprintln!("pgnotify: line {read}: {e}");
            }
        }
    }
    if failed > 0 {
        return Err(CliError::SomeNotifiesFailed {
            failed,
            total: read,
        });
    }
    Ok(())
}

/// `pgnotify listen --durable`: every message of one channel after
/// `--since`, with its position, until Ctrl-C, `--count`,
/// `--until-payload`, `--timeout`, or an error the subscription cannot get
/// past.
pub(crate) async fn listen(
    args: ListenArgs,
    channels: Vec<String>,
    target: Target,
    connect_timeout: Duration,
) -> Result<(), CliError> {
    let [channel] = <[String; 1]>::try_from(channels).map_err(|channels| {
        CliError::Usage(format!(
            "listen --durable takes one channel, not {} (run one per channel)",
            channels.len()
        ))
    })?;
    let started = Instant::now();
    let deadline = args.timeout.map(|timeout| started + timeout);
    let mut shutdown = Shutdown::install();
    let setup = subscribe(&args, &channel, target, connect_timeout);
    let Some((listener, events, subscription)) =
        set_up(setup, &mut shutdown, deadline, args.timeout).await?
    else {
        return Ok(());
    };
    let mut out = Output::new(Lines::new(args.format));
    let generation = listener.stats().generation;
    out.lines.listening(
        std::slice::from_ref(&channel),
        generation,
        listener.backend_pid(),
        subscription.cursor(),
    );
    // The subscription reads on a task of its own, so a page being read is
    // never cancelled by a line being written, and what is ready is taken
    // in batches.
    let (tx, items) = mpsc::channel(BATCH);
    let reader = tokio::spawn(read_into(subscription, tx));
    let mut tally = Tally::new(&args);
    let mut events = Some(events);
    let result = pump(
        &listener,
        &channel,
        items,
        &mut events,
        &mut out,
        &mut shutdown,
        &mut tally,
        deadline,
    )
    .await;
    reader.abort();
    let _ = reader.await;
    finish(listener, &mut out, &tally, started, result).await
}

/// Connects and subscribes from `--since`; connection events are taken
/// first, so a reconnect meanwhile is reported too.
async fn subscribe(
    args: &ListenArgs,
    channel: &str,
    target: Target,
    connect_timeout: Duration,
) -> Result<(Listener, ConnectionEvents, DurableSubscription), CliError> {
    let listener = connection::connect(target, connect_timeout).await?;
    let events = listener.connection_events();
    let options = SubscribeOptions::new()
        .capacity(args.capacity)
        .policy(args.policy);
    let subscription = listener
        .durable_in(args.schema.clone())
        .subscribe_with(channel, args.since, options)
        .await
        .map_err(|e| durable_error("listen durably", e));
    match subscription {
        Ok(subscription) => Ok((listener, events, subscription)),
        Err(e) => {
            listener.close().await;
            Err(e)
        }
    }
}

/// Sends every item of `subscription` to `tx`, up to and including the
/// first error (after which `recv` would only try again, from the same cursor).
async fn read_into(
    mut subscription: DurableSubscription,
    tx: mpsc::Sender<Result<DurableEvent, DurableError>>,
) {
    loop {
        let item = subscription.recv().await;
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Prints items and connection events until a shutdown signal, an error, or
/// what `tally` stops after.
#[allow(clippy::too_many_arguments)]
async fn pump(
    listener: &Listener,
    channel: &str,
    mut items: mpsc::Receiver<Result<DurableEvent, DurableError>>,
    events: &mut Option<ConnectionEvents>,
    out: &mut Output,
    shutdown: &mut Shutdown,
    tally: &mut Tally,
    deadline: Option<Instant>,
) -> Result<(), CliError> {
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    out.flush(listener).await?;
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => return Ok(()),
            () = until(deadline) => return tally.timed_out(),
            event = next_event(events) => match event {
                Some(event) => {
                    out.lines.connection(&event);
                    out.flush(listener).await?;
                }
                None => *events = None,
            },
            item = items.recv() => {
                let mut item = item;
                let mut rendered = 0;
                // Take whatever else is ready now, then write it all at once.
                loop {
                    match item {
                        Some(Ok(event)) => {
                            tally.observe_durable(&event);
                            out.lines.durable(channel, &event);
                        }
                        Some(Err(e)) => {
                            out.flush(listener).await?;
                            return Err(durable_error("receive durable messages", e));
                        }
                        None => {
                            out.flush(listener).await?;
                            let reason = "the durable subscription stopped".to_owned();
                            return Err(CliError::AllSubscriptionsEnded { reason });
                        }
                    }
                    if tally.done() {
                        // Nothing after the item that met --count or --until-payload.
                        return out.flush(listener).await;
                    }
                    rendered += 1;
                    if rendered >= BATCH {
                        break;
                    }
                    match items.try_recv() {
                        Ok(next) => item = Some(next),
                        Err(_) => break,
                    }
                }
                out.flush(listener).await?;
            }
            _ = ticker.tick(), if out.status.enabled() => out.status.update(&listener.stats()),
        }
    }
}

/// The next connection event; pending forever once they ended.
async fn next_event(events: &mut Option<ConnectionEvents>) -> Option<ConnectionEvent> {
    match events {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn durable_error(action: &'static str, source: DurableError) -> CliError {
    CliError::Durable {
        action,
        source: Box::new(source),
    }
}

/// One line on stdout.
fn print_line(line: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|source| CliError::Io {
            action: "write to stdout",
            source,
        })
}
