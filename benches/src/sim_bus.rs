//! A [`Bus`] brought to the listening state without a network: the
//! testkit's simulated server answers its startup and its LISTENs in memory.

use std::fmt;
use std::time::Instant;

use pgnotify_core::SubscribeOptions;
use pgnotify_core::bus::{Action, Bus, SubscriberId, SubscriberStatus};
use pgnotify_core::config::Config;
use pgnotify_testkit::sim_server::{ConnId, Refused, SimConfig, SimServer};

/// Why a bus could not be brought to the listening state.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// The simulated server refused the connection.
    Refused(Refused),
    /// The bus asked for something the in-memory driver does not do.
    UnsupportedAction(Box<Action>),
    /// The bus transmitted bytes before asking for a connection.
    NoConnection,
    /// The exchange settled with subscribers that are not ready.
    NotReady {
        /// How many subscribers were not ready.
        pending: usize,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "the simulated server refused the connection: {e}"),
            Self::UnsupportedAction(a) => {
                write!(
                    f,
                    "the bus asked for {a:?}, which the in-memory driver does not do"
                )
            }
            Self::NoConnection => f.write_str("the bus transmitted bytes with no connection open"),
            Self::NotReady { pending } => write!(
                f,
                "{pending} subscribers were still not ready once startup and LISTEN settled"
            ),
        }
    }
}

impl std::error::Error for SetupError {}

/// A bus whose subscribers are all ready, with the ids of its subscribers.
#[derive(Debug)]
pub struct ListeningBus {
    /// The bus, connected and listening on every subscribed channel.
    pub bus: Bus,
    /// The subscribers, in the order of the `channels` they were made for.
    pub subscribers: Vec<SubscriberId>,
    /// The instant the bus was driven at (the benchmarks keep using it: the
    /// bus never reads the clock, and no timer is due).
    pub now: Instant,
}

/// Makes a bus with one subscriber per entry of `channels` (each with
/// `options`) and drives it through startup and LISTEN against a
/// [`SimServer`] until every subscriber is ready.
pub fn listening_bus(
    channels: &[String],
    options: &SubscribeOptions,
) -> Result<ListeningBus, SetupError> {
    let now = Instant::now();
    let config = Config::parse("postgres://bench@sim/bench?sslmode=disable")
        .expect("a valid connection string");
    let mut bus = Bus::new(config, now);
    let subscribers = channels
        .iter()
        .map(|channel| {
            bus.subscribe(channel, options.clone())
                .expect("valid benchmark channel names")
        })
        .collect::<Vec<_>>();

    let mut server = SimServer::new(SimConfig::default());
    let mut conn: Option<ConnId> = None;
    let mut buf = Vec::new();
    loop {
        let mut progress = false;
        while let Some(action) = bus.poll_action() {
            progress = true;
            match action {
                Action::Connect(_) => {
                    conn = Some(server.accept(now).map_err(SetupError::Refused)?);
                    bus.handle_connected(now);
                }
                other => return Err(SetupError::UnsupportedAction(Box::new(other))),
            }
        }
        buf.clear();
        if bus.poll_transmit(&mut buf) {
            progress = true;
            let conn = conn.ok_or(SetupError::NoConnection)?;
            server.handle_client_bytes(conn, now, &buf);
        }
        if let Some(conn) = conn {
            buf.clear();
            if server.poll_server_bytes(conn, now, &mut buf) > 0 {
                progress = true;
                bus.handle_input(now, &buf);
            }
        }
        while bus.poll_event().is_some() {
            progress = true;
        }
        if !progress {
            break;
        }
    }

    let pending = subscribers
        .iter()
        .filter(|&&id| bus.subscriber_status(id) != SubscriberStatus::Ready)
        .count();
    if pending > 0 {
        return Err(SetupError::NotReady { pending });
    }
    Ok(ListeningBus {
        bus,
        subscribers,
        now,
    })
}
