//! One output line per event, as JSON or readable text.
//!
//! The JSON is written by hand: the objects are flat and few, and a JSON
//! library would be the only reason to pull in serde.

use std::fmt::Write as _;

use pgnotify_core::{EndReason, Event, Gap};
use pgnotify_tokio::ConnectionEvent;

use crate::args::Format;

/// Renders events into a buffer of whole lines.
#[derive(Debug)]
pub(crate) struct Lines {
    format: Format,
    buf: String,
}

impl Lines {
    pub(crate) fn new(format: Format) -> Self {
        Self {
            format,
            buf: String::new(),
        }
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

    /// Every channel is LISTENed: notifications sent from now on are printed.
    pub(crate) fn listening(&mut self, channels: &[String], generation: u64, pid: Option<i32>) {
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
                self.buf.push('}');
            }
            Format::Text => {
                let _ = write!(self.buf, "-- listening on {}", channels.join(", "));
                if let Some(pid) = pid {
                    let _ = write!(self.buf, " (backend pid {pid})");
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
                let _ = write!(self.buf, r#","pid":{}}}"#, n.process_id);
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
                self.buf.push('}');
            }
            (Format::Text, Event::Gap(gap)) => {
                let _ = write!(self.buf, "[{channel}] GAP: {gap}");
            }
            (Format::Json, other) => {
                self.buf.push_str(r#"{"type":"other","channel":"#);
                push_json_str(&mut self.buf, channel);
                self.buf.push_str(r#","detail":"#);
                push_json_str(&mut self.buf, &format!("{other:?}"));
                self.buf.push('}');
            }
            (Format::Text, other) => {
                let _ = write!(self.buf, "[{channel}] {other:?}");
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
                        r#"{{"type":"connected","generation":{generation}}}"#
                    );
                }
                ConnectionEvent::Disconnected { error } => {
                    self.buf.push_str(r#"{"type":"disconnected","error":"#);
                    push_json_str(&mut self.buf, &error.to_string());
                    self.buf.push('}');
                }
                ConnectionEvent::ConnectFailed { error } => {
                    self.buf.push_str(r#"{"type":"connect_failed","error":"#);
                    push_json_str(&mut self.buf, &error.to_string());
                    self.buf.push('}');
                }
                ConnectionEvent::Stopped { error } => {
                    self.buf.push_str(r#"{"type":"stopped","error":"#);
                    push_json_str(&mut self.buf, &error.to_string());
                    self.buf.push('}');
                }
                ConnectionEvent::Lagged { missed } => {
                    let _ = write!(self.buf, r#"{{"type":"events_lagged","missed":{missed}}}"#);
                }
                other => {
                    self.buf.push_str(r#"{"type":"connection","detail":"#);
                    push_json_str(&mut self.buf, &other.to_string());
                    self.buf.push('}');
                }
            },
            Format::Text => {
                let _ = write!(self.buf, "-- {event}");
            }
        }
        self.buf.push('\n');
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
                self.buf.push('}');
            }
            Format::Text => {
                let _ = write!(self.buf, "[{channel}] END: {reason}");
            }
        }
        self.buf.push('\n');
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

    #[test]
    fn gap_lines_name_their_kind_count_and_channel() {
        let mut lines = Lines::new(Format::Json);
        lines.event("x", &Event::Gap(Gap::Overflow { missed: 3 }));
        lines.event("x", &Event::Gap(Gap::Reconnected { generation: 2 }));
        lines.connection(&ConnectionEvent::Connected { generation: 2 });
        assert_eq!(
            std::str::from_utf8(lines.as_bytes()).unwrap(),
            concat!(
                r#"{"type":"gap","kind":"overflow","missed":3,"channel":"x"}"#,
                "\n",
                r#"{"type":"gap","kind":"reconnected","generation":2,"channel":"x"}"#,
                "\n",
                r#"{"type":"connected","generation":2}"#,
                "\n"
            )
        );
    }

    #[test]
    fn listening_line_lists_every_channel_escaped() {
        let mut lines = Lines::new(Format::Json);
        lines.listening(&["a".into(), "b\"c".into()], 1, Some(7));
        assert_eq!(
            std::str::from_utf8(lines.as_bytes()).unwrap(),
            "{\"type\":\"listening\",\"channels\":[\"a\",\"b\\\"c\"],\"generation\":1,\"backend_pid\":7}\n"
        );
    }
}
