//! One output line per event, as JSON or readable text.
//!
//! The JSON is written by hand: the objects are flat and few, and a JSON
//! library would be the only reason to pull in serde. Every JSON line ends
//! with `"ts"` (when it was printed, RFC 3339 in UTC with milliseconds) and
//! `"v":1` (the version of this line format, [`JSON_VERSION`]). Every
//! type and field is listed in [`crate::schema`], which the tests check
//! these lines against.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use pgnotify_core::bus::BusError;
use pgnotify_core::durable::DurableEvent;
use pgnotify_core::protocol::{ConnectionError, ServerError};
use pgnotify_core::{EndReason, Event, Gap};
use pgnotify_tokio::ConnectionEvent;

use crate::args::Format;
use crate::schema::JSON_VERSION;

/// Renders events into a buffer of whole lines.
#[derive(Debug)]
pub(crate) struct Lines {
    format: Format,
    buf: String,
    clock: fn() -> SystemTime,
}

impl Lines {
    pub(crate) fn new(format: Format) -> Self {
        Self::with_clock(format, SystemTime::now)
    }

    /// Lines stamped with `clock` instead of the system's (for tests).
    pub(crate) fn with_clock(format: Format, clock: fn() -> SystemTime) -> Self {
        Self {
            format,
            buf: String::new(),
            clock,
        }
    }

    /// Ends a JSON object: its timestamp, the format version, the brace.
    fn close_json(&mut self) {
        self.buf.push_str(r#","ts":""#);
        push_rfc3339(&mut self.buf, (self.clock)());
        let _ = write!(self.buf, r#"","v":{JSON_VERSION}}}"#);
    }

    /// The lines rendered so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.as_bytes()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// Every channel is LISTENed: notifications sent from now on are printed
    /// (for a durable subscription, every message after `cursor`).
    pub(crate) fn listening(
        &mut self,
        channels: &[String],
        generation: u64,
        pid: Option<i32>,
        cursor: Option<u64>,
    ) {
        match self.format {
            Format::Json => {
                self.buf.push_str(r#"{"type":"listening","channels":["#);
                for (i, channel) in channels.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(',');
                    }
                    push_json_str(&mut self.buf, channel);
                }
                let _ = write!(self.buf, r#"],"generation":{generation}"#);
                if let Some(pid) = pid {
                    let _ = write!(self.buf, r#","backend_pid":{pid}"#);
                }
                if let Some(cursor) = cursor {
                    let _ = write!(self.buf, r#","cursor":{cursor}"#);
                }
                self.close_json();
            }
            Format::Text => {
                let _ = write!(self.buf, "-- listening on {}", channels.join(", "));
                if let Some(pid) = pid {
                    let _ = write!(self.buf, " (backend pid {pid})");
                }
                if let Some(cursor) = cursor {
                    let _ = write!(self.buf, ", durable messages after position {cursor}");
                }
            }
        }
        self.buf.push('\n');
    }

    /// One item of the subscription on `channel`.
    pub(crate) fn event(&mut self, channel: &str, event: &Event) {
        match (self.format, event) {
            (Format::Json, Event::Notification(n)) => {
                self.buf.push_str(r#"{"type":"notification","channel":"#);
                push_json_str(&mut self.buf, &n.channel);
                self.buf.push_str(r#","payload":"#);
                push_json_str(&mut self.buf, &n.payload);
                let _ = write!(self.buf, r#","pid":{}"#, n.process_id);
                self.close_json();
            }
            (Format::Text, Event::Notification(n)) => {
                let _ = write!(self.buf, "[{}] ", n.channel);
                push_text(&mut self.buf, &n.payload);
                let _ = write!(self.buf, "  (pid {})", n.process_id);
            }
            (Format::Json, Event::Gap(gap)) => {
                match gap {
                    Gap::Overflow { missed } => {
                        let _ = write!(
                            self.buf,
                            r#"{{"type":"gap","kind":"overflow","missed":{missed}"#
                        );
                    }
                    Gap::Reconnected { generation } => {
                        let _ = write!(
                            self.buf,
                            r#"{{"type":"gap","kind":"reconnected","generation":{generation}"#
                        );
                    }
                    other => {
                        self.buf
                            .push_str(r#"{"type":"gap","kind":"other","detail":"#);
                        push_json_str(&mut self.buf, &other.to_string());
                    }
                }
                self.buf.push_str(r#","channel":"#);
                push_json_str(&mut self.buf, channel);
                self.close_json();
            }
            (Format::Text, Event::Gap(gap)) => {
                let _ = write!(self.buf, "[{channel}] GAP: {gap}");
            }
            (Format::Json, other) => {
                self.buf.push_str(r#"{"type":"other","channel":"#);
                push_json_str(&mut self.buf, channel);
                self.buf.push_str(r#","detail":"#);
                push_json_str(&mut self.buf, &format!("{other:?}"));
                self.close_json();
            }
            (Format::Text, other) => {
                let _ = write!(self.buf, "[{channel}] {other:?}");
            }
        }
        self.buf.push('\n');
    }

    /// One item of the durable subscription on `channel`: a message with its
    /// position, or an `expired` gap.
    pub(crate) fn durable(&mut self, channel: &str, event: &DurableEvent) {
        match (self.format, event) {
            (Format::Json, DurableEvent::Message(m)) => {
                self.buf.push_str(r#"{"type":"message","channel":"#);
                push_json_str(&mut self.buf, channel);
                let _ = write!(self.buf, r#","position":{},"payload":"#, m.position);
                push_json_str(&mut self.buf, &m.payload);
                self.close_json();
            }
            (Format::Text, DurableEvent::Message(m)) => {
                let _ = write!(self.buf, "[{channel}] ");
                push_text(&mut self.buf, &m.payload);
                let _ = write!(self.buf, "  (position {})", m.position);
            }
            (Format::Json, DurableEvent::Expired { missed, through }) => {
                let _ = write!(
                    self.buf,
                    r#"{{"type":"gap","kind":"expired","missed":{missed},"through":{through},"channel":"#
                );
                push_json_str(&mut self.buf, channel);
                self.close_json();
            }
            (Format::Json, other) => {
                self.buf.push_str(r#"{"type":"other","channel":"#);
                push_json_str(&mut self.buf, channel);
                self.buf.push_str(r#","detail":"#);
                push_json_str(&mut self.buf, &other.to_string());
                self.close_json();
            }
            (Format::Text, other) => {
                let _ = write!(self.buf, "[{channel}] GAP: {other}");
            }
        }
        self.buf.push('\n');
    }

    /// A change of the connection.
    pub(crate) fn connection(&mut self, event: &ConnectionEvent) {
        match self.format {
            Format::Json => match event {
                ConnectionEvent::Connected { generation } => {
                    let _ = write!(
                        self.buf,
                        r#"{{"type":"connected","generation":{generation}"#
                    );
                    self.close_json();
                }
                ConnectionEvent::Disconnected { error } => self.error_line("disconnected", error),
                ConnectionEvent::ConnectFailed { error } => {
                    self.error_line("connect_failed", error);
                }
                ConnectionEvent::Stopped { error } => self.error_line("stopped", error),
                ConnectionEvent::Lagged { missed } => {
                    let _ = write!(self.buf, r#"{{"type":"events_lagged","missed":{missed}"#);
                    self.close_json();
                }
                other => {
                    self.buf.push_str(r#"{"type":"connection","detail":"#);
                    push_json_str(&mut self.buf, &other.to_string());
                    self.close_json();
                }
            },
            Format::Text => {
                let _ = write!(self.buf, "-- {event}");
            }
        }
        self.buf.push('\n');
    }

    /// A JSON line of `type` with `"error"`, and `"code"` (the SQLSTATE)
    /// when the error is one the server reported.
    fn error_line(&mut self, r#type: &str, error: &BusError) {
        let _ = write!(self.buf, r#"{{"type":"{type}","error":"#);
        push_json_str(&mut self.buf, &error.to_string());
        if let Some(server) = server_error(error) {
            self.buf.push_str(r#","code":"#);
            push_json_str(&mut self.buf, server.code());
        }
        self.close_json();
    }

    /// The subscription on `channel` ended.
    pub(crate) fn end(&mut self, channel: &str, reason: Option<EndReason>) {
        let reason = reason.map_or_else(|| "ended".to_owned(), |r| r.to_string());
        match self.format {
            Format::Json => {
                self.buf.push_str(r#"{"type":"end","channel":"#);
                push_json_str(&mut self.buf, channel);
                self.buf.push_str(r#","reason":"#);
                push_json_str(&mut self.buf, &reason);
                self.close_json();
            }
            Format::Text => {
                let _ = write!(self.buf, "[{channel}] END: {reason}");
            }
        }
        self.buf.push('\n');
    }
}

/// The server's report in `error`, if the server reported it.
fn server_error(error: &BusError) -> Option<&ServerError> {
    match error {
        BusError::Connection(ConnectionError::Server(e)) | BusError::ListenRefused(e) => Some(e),
        _ => None,
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `time` as RFC 3339 in UTC with milliseconds,
/// `2026-11-29T23:07:28.123Z` (a time before 1970 prints as the epoch).
pub(crate) fn push_rfc3339(out: &mut String, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    );
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends `s` for a terminal: control characters (a newline would split
/// the line) are escaped, everything else is left as it is.
pub(crate) fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = String::new();
        push_json_str(&mut out, s);
        out
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(json(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json("line\nnext\ttab\r"), r#""line\nnext\ttab\r""#);
        assert_eq!(json("\u{1}\u{1f}\u{7f}"), r#""\u0001\u001f\u007f""#);
        assert_eq!(json("é ✓ 🐘"), "\"é ✓ 🐘\"");
    }

    #[test]
    fn text_payloads_stay_on_one_line() {
        let mut out = String::new();
        push_text(&mut out, "a\nb\tc ✓");
        assert_eq!(out, "a\\nb\\tc ✓");
    }

    /// 2026-11-29T23:07:28.123Z.
    fn fixed() -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(1_795_993_648_123)
    }

    fn rfc3339(time: SystemTime) -> String {
        let mut out = String::new();
        push_rfc3339(&mut out, time);
        out
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        use std::time::Duration;
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(fixed()), "2026-11-29T23:07:28.123Z");
        // A leap day, the day after it, and the end of a leap year.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_868_800)),
            "2000-03-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
            "2024-12-31T23:59:59.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn civil_dates_match_a_day_by_day_count_for_four_centuries() {
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > len[(m - 1) as usize] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn gap_lines_name_their_kind_count_and_channel() {
        let mut lines = Lines::with_clock(Format::Json, fixed);
        lines.event("x", &Event::Gap(Gap::Overflow { missed: 3 }));
        lines.event("x", &Event::Gap(Gap::Reconnected { generation: 2 }));
        lines.connection(&ConnectionEvent::Connected { generation: 2 });
        assert_eq!(
            std::str::from_utf8(lines.as_bytes()).unwrap(),
            concat!(
                r#"{"type":"gap","kind":"overflow","missed":3,"channel":"x","#,
                r#""ts":"2026-11-29T23:07:28.123Z","v":1}"#,
                "\n",
                r#"{"type":"gap","kind":"reconnected","generation":2,"channel":"x","#,
                r#""ts":"2026-11-29T23:07:28.123Z","v":1}"#,
                "\n",
                r#"{"type":"connected","generation":2,"ts":"2026-11-29T23:07:28.123Z","v":1}"#,
                "\n"
            )
        );
    }

    #[test]
    fn listening_line_lists_every_channel_escaped() {
        let mut lines = Lines::with_clock(Format::Json, fixed);
        lines.listening(&["a".into(), "b\"c".into()], 1, Some(7), None);
        assert_eq!(
            std::str::from_utf8(lines.as_bytes()).unwrap(),
            "{\"type\":\"listening\",\"channels\":[\"a\",\"b\\\"c\"],\"generation\":1,\"backend_pid\":7,\
             \"ts\":\"2026-11-29T23:07:28.123Z\",\"v\":1}\n"
        );
    }

    /// Every line this version can render, with a server error among the
    /// connection events, passes the schema; each type it can reach is reached.
    #[test]
    fn every_renderable_line_matches_the_schema() {
        use pgnotify_core::Notification;
        use pgnotify_core::bus::TransportError;

        let terminated = || {
            BusError::Connection(ConnectionError::Server(ServerError::new(
                "FATAL",
                "57P01",
                "terminating connection due to administrator command",
            )))
        };
        let mut lines = Lines::with_clock(Format::Json, fixed);
        lines.listening(&["a".into(), "b".into()], 1, Some(7), None);
        lines.listening(&["a".into()], 1, None, Some(41));
        lines.durable(
            "a",
            &DurableEvent::Message(pgnotify_core::durable::DurableMessage {
                position: 42,
                payload: "x\ty".into(),
            }),
        );
        lines.durable(
            "a",
            &DurableEvent::Expired {
                missed: 5,
                through: 7,
            },
        );
        lines.event(
            "a",
            &Event::Notification(Notification {
                channel: "a".into(),
                payload: "say \"hi\"\n".into(),
                process_id: 42,
            }),
        );
        lines.event("a", &Event::Gap(Gap::Overflow { missed: 3 }));
        lines.event("a", &Event::Gap(Gap::Reconnected { generation: 2 }));
        lines.connection(&ConnectionEvent::Connected { generation: 2 });
        lines.connection(&ConnectionEvent::Disconnected {
            error: terminated(),
        });
        lines.connection(&ConnectionEvent::ConnectFailed {
            error: BusError::Transport(TransportError::new(
                pgnotify_core::bus::TransportErrorKind::Connect,
                "connection refused",
            )),
        });
        lines.connection(&ConnectionEvent::ConnectFailed {
            error: BusError::ListenRefused(ServerError::new(
                "ERROR",
                "25006",
                "cannot execute LISTEN during recovery",
            )),
        });
        lines.connection(&ConnectionEvent::Stopped {
            error: terminated(),
        });
        lines.connection(&ConnectionEvent::Lagged { missed: 5 });
        lines.end("a", Some(EndReason::BusClosed));
        lines.end("a", None);
        let text = std::str::from_utf8(lines.as_bytes()).unwrap();
        let mut seen = Vec::new();
        for line in text.lines() {
            crate::schema::check(line).unwrap();
            let start = line.find(r#""type":""#).unwrap() + 8;
            let name = &line[start..start + line[start..].find('"').unwrap()];
            seen.push(name.to_owned());
        }
        for t in crate::schema::TYPES {
            // "connection" and "other" stand for variants this version does not know.
            assert!(
                seen.iter().any(|s| s == t.name) || ["connection", "other"].contains(&t.name),
                "{} never rendered",
                t.name
            );
        }
        assert!(text.contains(r#""type":"disconnected","error":"#));
        assert!(
            text.contains(r#"{"type":"message","channel":"a","position":42,"payload":"x\ty","#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"{"type":"gap","kind":"expired","missed":5,"through":7,"channel":"a","#
            ),
            "{text}"
        );
        assert!(text.contains(r#""cursor":41,"#), "{text}");
        assert_eq!(text.matches(r#","code":"57P01","#).count(), 2, "{text}");
        assert_eq!(text.matches(r#","code":"25006","#).count(), 1, "{text}");
        assert_eq!(
            text.matches(r#""code""#).count(),
            3,
            "refused has none: {text}"
        );
    }
}
