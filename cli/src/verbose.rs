//! `-v`: the library's `tracing` events on stderr, one line each.
//!
//! A subscriber of a few lines rather than `tracing-subscriber`, which would
//! be the only reason to build its dependencies: pgnotify logs plain events
//! (no spans worth showing), so a line is the time, the level, the target and
//! the fields.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::output::push_rfc3339;

/// Installs the stderr subscriber: `-v` info, `-vv` debug, `-vvv` trace;
/// nothing without `-v`.
pub(crate) fn install(verbosity: u8) {
    let max = match verbosity {
        0 => return,
        1 => Level::INFO,
        2 => Level::DEBUG,
        _ => Level::TRACE,
    };
    let _ = tracing::subscriber::set_global_default(Stderr {
        max,
        next_span: AtomicU64::new(1),
    });
}

/// Writes pgnotify's events up to `max` to stderr.
struct Stderr {
    max: Level,
    next_span: AtomicU64,
}

impl Subscriber for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max && metadata.target().starts_with("pgnotify")
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut line = String::new();
        push_rfc3339(&mut line, SystemTime::now());
        let _ = write!(line, " {:>5} {}:", metadata.level(), metadata.target());
        event.record(&mut Fields(&mut line));
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Appends an event's fields: the message as it is, the others as `name=value`.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
