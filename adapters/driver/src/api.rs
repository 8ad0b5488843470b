//! What an application names: the handles, their options, events and errors.
//!
//! Each runtime crate (`pgnotify-tokio`, `pgnotify-smol`,
//! `pgnotify-async-std`) re-exports this module whole, next to its own
//! runtime type and its `Listener` and `ListenerBuilder` aliases, so the
//! list is written once and every runtime offers the same names. The crate
//! root re-exports it too; the seam for runtimes ([`Runtime`](crate::Runtime),
//! [`Transport`](crate::Transport), ...) and the generic
//! [`Listener`](crate::Listener) are only at the root.

pub use crate::callback::CallbackSubscription;
pub use crate::durable::{DEFAULT_QUERY_TIMEOUT, Durable, DurableError, DurableSubscription};
pub use crate::event_stream::ConnectionEvents;
pub use crate::events::{ConnectionEvent, EVENT_CAPACITY};
#[cfg(feature = "json")]
pub use crate::json::{DecodeError, JsonEvent, JsonSubscription, NotifyJsonError};
pub use crate::listener::{DEFAULT_FIRST_CONNECT_ROUNDS, ListenerError};
pub use crate::load::load_config;
/// The names of the metrics a listener publishes with the `metrics` feature.
pub use crate::metrics;
pub use crate::multi::{ChannelEvent, MultiSubscription};
pub use crate::subscription::{SubscribeError, Subscription};
pub use crate::tracker::{DEFAULT_BOUNCE_AFTER, RecoveryTracker, TrackerStats};

pub use pgnotify_core::bus::{
    BusError, EventBatch, EventRef, NEAR_LIMIT_PAYLOAD_LEN, NotifyError, Stats,
};
pub use pgnotify_core::config::{
    ConfigBuilder, DEFAULT_APPLICATION_NAME, ENV_VARIABLES, SslMode, SslRootCert, TransactionPooler,
};
pub use pgnotify_core::durable::{
    DEFAULT_MAX_PAYLOAD, DEFAULT_PAGE_LIMIT, DEFAULT_SCHEMA, DurableEvent, DurableMessage,
    DurableSchema, ReaderStats, SchemaNameError, Since,
};
pub use pgnotify_core::{
    ChannelError, Config, ConfigError, DEFAULT_CAPACITY, DEFAULT_STALL_LIMIT, EndReason, Event,
    Gap, MAX_CHANNEL_LEN, MAX_PAYLOAD_LEN, Notification, OverflowPolicy, PayloadError, SharedStr,
    SubscribeOptions, notify_statement,
};
