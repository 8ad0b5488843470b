//! `pgnotify demo`: a narrated tour of what pgnotify does, on a throwaway
//! local server unless a server was named.
//!
//! The steps: one multiplexed connection for several subsystems, a
//! notification round, an overflow gap under a burst, a reconnect gap after
//! the backend is terminated, and the final statistics.

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgnotify_core::{Config, Event, Gap, OverflowPolicy, SubscribeOptions};
use pgnotify_throwaway::server::TestServer;
use pgnotify_tokio::{ConnectionEvent, Listener, Stats, Subscription};

use crate::connection::{Target, connect};
use crate::error::CliError;
use crate::shutdown::Shutdown;

/// The listener's `application_name`, by which its backend is terminated.
const APPLICATION_NAME: &str = "pgnotify-demo";
const ORDERS: &str = "demo.orders";
const USERS: &str = "demo.users";
/// The slow subscriber's queue capacity.
const SMALL_CAPACITY: usize = 3;
/// How many notifications the burst sends.
const BURST: u64 = 20;
const STEPS: usize = 6;
/// The longest any step may wait for an event before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the tour; Ctrl-C stops it and still removes the throwaway server.
pub(crate) async fn run(target: Target, connect_timeout: Duration) -> Result<(), CliError> {
    let mut shutdown = Shutdown::install();
    tokio::select! {
        result = tour(target, connect_timeout) => result,
        () = shutdown.wait() => Err(CliError::Demo("interrupted; cleaned up".to_owned())),
    }
}

/// Where the demo's server comes from.
enum Server {
    /// Started by the demo; removed when dropped.
    Throwaway(Arc<TestServer>),
    /// Named by the user: the demo cannot terminate backends there.
    Given,
}

/// A subsystem's subscription, with a name for the narration.
struct Subsystem {
    name: &'static str,
    subscription: Subscription,
}

async fn tour(target: Target, connect_timeout: Duration) -> Result<(), CliError> {
    let started = Instant::now();
    println!(
        "pgnotify demo: one LISTEN connection for the whole process, every loss accounted for."
    );

    step(1, "A PostgreSQL server");
    let (server, config) = server(target).await?;

    step(2, "One connection, three subsystems, two channels");
    let target = Target {
        config,
        named: true,
    };
    let listener = connect(target, connect_timeout).await?;
    let mut connection_events = listener.connection_events();
    let mut subsystems = subscribe_all(&listener).await?;
    show_multiplexing(&listener, &server).await?;

    step(
        3,
        "Notifications fan out to every subscriber of their channel",
    );
    publish_round(&listener, &mut subsystems).await?;

    step(
        4,
        "A slow subscriber under a burst: an overflow gap, counted exactly",
    );
    overflow(&listener, &mut subsystems).await?;

    step(
        5,
        "The connection dies: a reconnect gap, then nothing more is missed",
    );
    reconnect(&listener, &server, &mut connection_events, &mut subsystems).await?;

    step(6, "What the listener counted");
    show_stats(&listener.stats());

    drop(subsystems);
    listener.close().await;
    if let Server::Throwaway(server) = server {
        // Dropping the last handle stops the server and removes its files.
        tokio::task::spawn_blocking(move || drop(server))
            .await
            .map_err(|e| CliError::Demo(format!("could not remove the server: {e}")))?;
        say("closed the listener (UNLISTEN *, Terminate); stopped and removed the server");
    } else {
        say("closed the listener (UNLISTEN *, Terminate)");
    }
    println!(
        "\nDone in {:.1} s. Next: `pgnotify listen --help`, `pgnotify notify --help`.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every line of `error` and of each of its sources (unless its message already said it), one
/// per line, indented, without blank lines: a server that failed to start explains itself in
/// its log or initdb's output, which may begin with an empty line.
fn whole_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let message = error.to_string();
        if !text.contains(message.trim()) {
            for line in message.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                text.push_str("\n  ");
                text.push_str(line);
            }
        }
        next = error.source();
    }
    text
}

/// Starts a throwaway server unless the user named one.
async fn server(target: Target) -> Result<(Server, Config), CliError> {
    if target.named {
        say("using the server you named (--url, DATABASE_URL or PG* variables)");
        let config = crate::connection::with_application_name(target.config, APPLICATION_NAME);
        return Ok((Server::Given, config));
    }
    say(
        "no --url, DATABASE_URL or PGHOST given: starting a throwaway PostgreSQL (a second or two)...",
    );
    let started = Instant::now();
    let server = tokio::task::spawn_blocking(TestServer::new)
        .await
        .map_err(|e| CliError::Demo(format!("could not start a server: {e}")))?
        .map_err(|e| {
            CliError::Demo(format!(
                "could not start a throwaway PostgreSQL (or run the demo on a server of yours \
                 with --url); the cause:{}",
                whole_cause(&e)
            ))
        })?;
    say(format!(
        "up on {} in {} ms (data in {}, removed at the end)",
        server.addr(),
        started.elapsed().as_millis(),
        server.data_dir().display()
    ));
    let config = Config::parse(&server.url())
        .and_then(|c| c.to_builder().application_name(APPLICATION_NAME).build())
        .map_err(|e| CliError::Demo(format!("the throwaway server's URL is invalid: {e}")))?;
    Ok((Server::Throwaway(Arc::new(server)), config))
}

async fn subscribe_all(listener: &Listener) -> Result<Vec<Subsystem>, CliError> {
    let slow = SubscribeOptions::new()
        .capacity(SMALL_CAPACITY)
        .policy(OverflowPolicy::DropOldest);
    let plan: [(&'static str, &str, Option<SubscribeOptions>); 5] = [
        ("cache", ORDERS, None),
        ("audit", ORDERS, None),
        ("audit", USERS, None),
        ("mailer", USERS, None),
        ("dashboard", ORDERS, Some(slow)),
    ];
    let mut subsystems = Vec::with_capacity(plan.len());
    for (name, channel, options) in plan {
        let subscription = match options {
            Some(options) => listener.subscribe_with(channel, options).await,
            None => listener.subscribe(channel).await,
        }
        .map_err(|source| CliError::Subscribe {
            channel: channel.to_owned(),
            source,
        })?;
        let queue = match name {
            "dashboard" => format!("queue of {SMALL_CAPACITY}, drop-oldest: the slow one"),
            _ => "default queue (1024, absorb: bursts wait in the server)".to_owned(),
        };
        say(format!("{name:<9} subscribes to {channel:<11} {queue}"));
        subsystems.push(Subsystem { name, subscription });
    }
    Ok(subsystems)
}

/// Shows that five subscriptions share one connection (and, on a throwaway
/// server, that the server sees one session).
async fn show_multiplexing(listener: &Listener, server: &Server) -> Result<(), CliError> {
    let stats = listener.stats();
    say(format!(
        "{} subscriptions on {} channels share 1 connection (backend pid {})",
        stats.subscribers,
        stats.channels,
        pid(listener)
    ));
    if let Server::Throwaway(server) = server {
        let server = server.clone();
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APPLICATION_NAME}'"
        );
        let sessions = tokio::task::spawn_blocking(move || server.execute(&sql))
            .await
            .map_err(|e| CliError::Demo(format!("could not ask the server: {e}")))?
            .map_err(|e| CliError::Demo(format!("could not ask the server: {e}")))?;
        say(format!(
            "the server agrees: {sessions} session named {APPLICATION_NAME:?} in pg_stat_activity"
        ));
    }
    Ok(())
}

async fn publish_round(listener: &Listener, subsystems: &mut [Subsystem]) -> Result<(), CliError> {
    let round = [
        (ORDERS, "order 1 created"),
        (USERS, "alice signed up"),
        (ORDERS, "order 1 paid"),
    ];
    for (channel, payload) in round {
        notify(listener, channel, payload).await?;
        say(format!("NOTIFY {channel}, {payload:?}"));
    }
    for subsystem in subsystems.iter_mut() {
        let expected = round
            .iter()
            .filter(|(channel, _)| *channel == subsystem.subscription.channel())
            .count();
        for _ in 0..expected {
            let event = next(subsystem).await?;
            say(format!(
                "  {:<9} <- {:<11} {}",
                subsystem.name,
                subsystem.subscription.channel(),
                describe(&event)
            ));
        }
    }
    say(format!(
        "(pid {}: notify goes through the listener's own connection)",
        pid(listener)
    ));
    Ok(())
}

async fn overflow(listener: &Listener, subsystems: &mut [Subsystem]) -> Result<(), CliError> {
    say(format!(
        "{BURST} orders arrive while the dashboard is busy; its queue holds {SMALL_CAPACITY}"
    ));
    for n in 1..=BURST {
        notify(listener, ORDERS, &format!("order {} created", n + 1)).await?;
    }
    // The fast subscribers take the whole burst; once they have it, the
    // dashboard's queue has seen all of it too (fan-out is one step).
    for subsystem in subsystems
        .iter_mut()
        .filter(|s| s.subscription.channel() == ORDERS && s.name != "dashboard")
    {
        let mut in_order = true;
        for n in 1..=BURST {
            let event = next(subsystem).await?;
            let expected = format!("order {} created", n + 1);
            in_order &= event
                .notification()
                .is_some_and(|n| *n.payload == *expected);
        }
        let verdict = if in_order {
            "in order, none missing"
        } else {
            "NOT in the order sent (this is a bug: please report it)"
        };
        say(format!(
            "  {:<9} <- all {BURST} ({verdict})",
            subsystem.name
        ));
    }
    let dashboard = subsystems
        .iter_mut()
        .find(|s| s.name == "dashboard")
        .ok_or_else(|| CliError::Demo("the dashboard subscription is missing".to_owned()))?;
    let mut notifications = 0;
    while notifications < SMALL_CAPACITY {
        let event = next(dashboard).await?;
        if matches!(event, Event::Notification(_)) {
            notifications += 1;
        }
        say(format!("  {:<9} <- {}", dashboard.name, describe(&event)));
    }
    say("the gap stands exactly where the dropped ones were: the dashboard reloads its view");
    Ok(())
}

async fn reconnect(
    listener: &Listener,
    server: &Server,
    connection_events: &mut pgnotify_tokio::ConnectionEvents,
    subsystems: &mut [Subsystem],
) -> Result<(), CliError> {
    let old_pid = pid(listener);
    match server {
        Server::Throwaway(server) => {
            let server = server.clone();
            let killed =
                tokio::task::spawn_blocking(move || server.terminate_backends(APPLICATION_NAME))
                    .await
                    .map_err(|e| CliError::Demo(format!("could not terminate: {e}")))?
                    .map_err(|e| CliError::Demo(format!("could not terminate: {e}")))?;
            say(format!(
                "pg_terminate_backend({old_pid}) from another session, as an admin or a \
                 failover would ({killed} terminated)"
            ));
        }
        Server::Given => {
            listener.bounce();
            say(format!(
                "dropping the connection (backend pid {old_pid}) with Listener::bounce(): on a \
                 server you named the demo does not terminate backends"
            ));
        }
    }
    loop {
        let event = within("a connection event", connection_events.recv())
            .await?
            .ok_or_else(|| CliError::Demo("the listener closed unexpectedly".to_owned()))?;
        say(format!("  connection: {event}"));
        if matches!(event, ConnectionEvent::Connected { .. }) {
            break;
        }
    }
    say(format!(
        "reconnected at once (first retry is immediate), backend pid {}, every channel \
         LISTENed again in one round trip",
        pid(listener)
    ));
    for subsystem in subsystems.iter_mut() {
        let event = next(subsystem).await?;
        say(format!(
            "  {:<9} <- {:<11} {}",
            subsystem.name,
            subsystem.subscription.channel(),
            describe(&event)
        ));
    }
    notify(listener, ORDERS, "order 22 created").await?;
    let cache = &mut subsystems[0];
    let event = next(cache).await?;
    say(format!(
        "NOTIFY after the gap: {} <- {}",
        cache.name,
        describe(&event)
    ));
    Ok(())
}

fn show_stats(stats: &Stats) {
    let rows: [(&str, String); 9] = [
        (
            "connection",
            format!(
                "generation {}, {} reconnect(s), connected: {}",
                stats.generation, stats.reconnects, stats.connected
            ),
        ),
        (
            "channels / subscribers",
            format!("{} / {}", stats.channels, stats.subscribers),
        ),
        (
            "notifications received",
            stats.notifications_received.to_string(),
        ),
        (
            "queued to subscribers",
            stats.notifications_queued.to_string(),
        ),
        ("dropped (drop-oldest)", stats.dropped_oldest.to_string()),
        ("published", stats.published.to_string()),
        ("publish failures", stats.publish_failures.to_string()),
        ("pings sent", stats.pings_sent.to_string()),
        (
            "last ping round trip",
            stats.last_ping_rtt.map_or_else(
                || "none yet".to_owned(),
                |rtt| format!("{:.2} ms", rtt.as_secs_f64() * 1000.0),
            ),
        ),
    ];
    for (name, value) in rows {
        say(format!("{name:<24} {value}"));
    }
}

fn step(n: usize, title: &str) {
    println!("\n[{n}/{STEPS}] {title}");
}

fn say(line: impl Display) {
    println!("      {line}");
}

fn pid(listener: &Listener) -> String {
    listener
        .backend_pid()
        .map_or_else(|| "none".to_owned(), |pid| pid.to_string())
}

fn describe(event: &Event) -> String {
    match event {
        Event::Notification(n) => format!("{:?} (pid {})", &*n.payload, n.process_id),
        Event::Gap(gap @ Gap::Overflow { .. }) => format!("GAP (overflow): {gap}"),
        Event::Gap(gap @ Gap::Reconnected { .. }) => format!("GAP (reconnect): {gap}"),
        other => format!("{other:?}"),
    }
}

async fn notify(listener: &Listener, channel: &str, payload: &str) -> Result<(), CliError> {
    listener
        .notify(channel, payload)
        .await
        .map_err(|e| CliError::Notify(Box::new(e)))
}

/// The subsystem's next item, within [`STEP_TIMEOUT`].
async fn next(subsystem: &mut Subsystem) -> Result<Event, CliError> {
    let what = format!("{}'s next item", subsystem.name);
    match within(&what, subsystem.subscription.recv()).await? {
        Some(event) => Ok(event),
        None => Err(CliError::Demo(format!(
            "{}'s subscription ended: {}",
            subsystem.name,
            subsystem
                .subscription
                .end_reason()
                .map_or_else(|| "no reason".to_owned(), |r| r.to_string())
        ))),
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, CliError> {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .map_err(|_| CliError::Demo(format!("gave up waiting for {what} after {STEP_TIMEOUT:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_cause_keeps_every_line_and_every_source() {
        let log = "\n2026-01-01 LOG  starting\n\nFATAL:  could not create lock file\n";
        let error = pgnotify_throwaway::server::Error::StartFailed {
            log: log.to_owned(),
        };
        assert_eq!(
            whole_cause(&error),
            "\n  the PostgreSQL server exited while starting; its log:\
             \n  2026-01-01 LOG  starting\
             \n  FATAL:  could not create lock file"
        );
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let error = pgnotify_throwaway::server::Error::Io {
            action: "create /x".to_owned(),
            source: io,
        };
        assert_eq!(whole_cause(&error), "\n  could not create /x: denied");
    }
}
