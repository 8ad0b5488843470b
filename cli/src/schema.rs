//! The JSON line format of `pgnotify listen`, defined once: every `"type"`,
//! its fields, the kinds of gap, and the fields every line ends with.
//!
//! `listen --help` is written from this table ([`help`]), and the tests
//! check every JSON line they see against it (`check`, with serde_json,
//! a dev-dependency). `output.rs` writes the lines by hand; its tests and
//! the ones in `tests/cli.rs` (which include this file by path) hold the
//! two together.
//!
//! `listen --durable` prints two more things: a `"message"` line per durable
//! message, whose `"position"` is its place in the channel (1, 2, 3, … in
//! commit order, no hole: the cursor to store and give back to `--since` to
//! resume after it), and a `"gap"` of kind `"expired"` for messages pruned
//! before they were read (`"missed"` of them, through position
//! `"through"`). Its `"listening"` line carries `"cursor"`, the position it
//! starts after.

use std::fmt::Write as _;

/// The version of the JSON line format, in every line's `"v"`: raised when a
/// field changes meaning or goes away (new types and fields do not raise it).
pub(crate) const JSON_VERSION: u32 = 1;

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A JSON string.
    Str,
    /// A JSON integer (never negative but for a pid, which PostgreSQL makes positive too).
    Int,
    /// A JSON array of strings.
    StrList,
}

/// One field of a line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// Its key.
    pub(crate) name: &'static str,
    /// What it holds.
    pub(crate) kind: Kind,
    /// Whether every line of its type has it.
    pub(crate) required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

/// One `"type"` of line (or, for a gap, one `"kind"`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineType {
    /// The value of `"type"` (or of a gap's `"kind"`).
    pub(crate) name: &'static str,
    /// What it means, for `--help`.
    pub(crate) about: &'static str,
    /// Its fields besides `"type"`, `"ts"` and `"v"` (and, for a gap kind,
    /// besides the gap's own fields).
    pub(crate) fields: &'static [Field],
}

/// The fields every line ends with: when it was printed (RFC 3339 UTC with
/// milliseconds) and the format's version.
#[cfg(test)]
pub(crate) const STAMP: [Field; 2] = [req("ts", Kind::Str), req("v", Kind::Int)];

/// The SQLSTATE of a server error, present when the error is one.
const CODE: Field = opt("code", Kind::Str);

/// Every `"type"`.
pub(crate) const TYPES: &[LineType] = &[
    LineType {
        name: "listening",
        about: "every channel is LISTENed",
        fields: &[
            req("channels", Kind::StrList),
            req("generation", Kind::Int),
            opt("backend_pid", Kind::Int),
            opt("cursor", Kind::Int),
        ],
    },
    LineType {
        name: "notification",
        about: "a notification (pid: the sender's backend)",
        fields: &[
            req("channel", Kind::Str),
            req("payload", Kind::Str),
            req("pid", Kind::Int),
        ],
    },
    LineType {
        name: "message",
        about: "a durable message (--durable; position: 1, 2, 3, ... per channel, resume with --since POSITION)",
        fields: &[
            req("channel", Kind::Str),
            req("position", Kind::Int),
            req("payload", Kind::Str),
        ],
    },
    LineType {
        name: "gap",
        about: "notifications may be missing here, resynchronise",
        fields: &[req("kind", Kind::Str), req("channel", Kind::Str)],
    },
    LineType {
        name: "connected",
        about: "a connection is up (generation 1, 2, ... per connection)",
        fields: &[req("generation", Kind::Int)],
    },
    LineType {
        name: "disconnected",
        about: "the connection was lost (a reconnect follows)",
        fields: &[req("error", Kind::Str), CODE],
    },
    LineType {
        name: "connect_failed",
        about: "one connection attempt failed (it is retried)",
        fields: &[req("error", Kind::Str), CODE],
    },
    LineType {
        name: "stopped",
        about: "the listener gave up (every subscription ends)",
        fields: &[req("error", Kind::Str), CODE],
    },
    LineType {
        name: "events_lagged",
        about: "this program fell behind the connection events",
        fields: &[req("missed", Kind::Int)],
    },
    LineType {
        name: "connection",
        about: "a connection event this version does not name",
        fields: &[req("detail", Kind::Str)],
    },
    LineType {
        name: "end",
        about: "a channel's subscription ended",
        fields: &[req("channel", Kind::Str), req("reason", Kind::Str)],
    },
    LineType {
        name: "other",
        about: "an item this version does not name",
        fields: &[req("channel", Kind::Str), req("detail", Kind::Str)],
    },
];

/// Every `"kind"` of a `"gap"` line, with the fields it adds.
pub(crate) const GAP_KINDS: &[LineType] = &[
    LineType {
        name: "overflow",
        about: "the queue was full (missed: the exact count)",
        fields: &[req("missed", Kind::Int)],
    },
    LineType {
        name: "reconnected",
        about: "the connection was replaced",
        fields: &[req("generation", Kind::Int)],
    },
    LineType {
        name: "expired",
        about: "durable messages pruned before they were read, through position `through`",
        fields: &[req("missed", Kind::Int), req("through", Kind::Int)],
    },
    LineType {
        name: "other",
        about: "a kind this version does not name",
        fields: &[req("detail", Kind::Str)],
    },
];

/// The type named `name`.
#[cfg(test)]
pub(crate) fn line_type(name: &str) -> Option<&'static LineType> {
    TYPES.iter().find(|t| t.name == name)
}

/// The gap kind named `name`.
#[cfg(test)]
pub(crate) fn gap_kind(name: &str) -> Option<&'static LineType> {
    GAP_KINDS.iter().find(|k| k.name == name)
}

/// The fields of a line type for `--help`: `a, b, [c]` (optional ones in brackets).
fn field_list(fields: &[Field]) -> String {
    let names: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.required {
                f.name.to_owned()
            } else {
                format!("[{}]", f.name)
            }
        })
        .collect();
    names.join(", ")
}

/// The names of every field of `kind`, each once, in table order.
fn names_of_kind(kind: Kind) -> Vec<&'static str> {
    let mut names = Vec::new();
    for field in TYPES.iter().chain(GAP_KINDS).flat_map(|t| t.fields) {
        if field.kind == kind && !names.contains(&field.name) {
            names.push(field.name);
        }
    }
    names
}

/// The "Output:" part of `listen --help`, written from [`TYPES`] and [`GAP_KINDS`].
pub(crate) fn help() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Output: one line per event. JSON lines by default, each ending with \"ts\" (when\n\
         it was printed, RFC 3339 UTC, e.g. 2026-11-29T23:07:28.123Z) and \"v\":{JSON_VERSION} (the line\n\
         format's version). Every \"type\", its fields ([optional]):"
    );
    for t in TYPES {
        let _ = writeln!(
            out,
            "  {:<15} {}: {}",
            t.name,
            t.about,
            field_list(t.fields)
        );
        if t.name == "gap" {
            for k in GAP_KINDS {
                let _ = writeln!(
                    out,
                    "                    {:<12} {}: {}",
                    k.name,
                    k.about,
                    field_list(k.fields)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "Fields are strings, but for {} (integers)\nand {} (lists of strings).",
        names_of_kind(Kind::Int).join(", "),
        names_of_kind(Kind::StrList).join(", ")
    );
    out.push_str(
        "\"code\" is the SQLSTATE (e.g. 57P01) when the error is one the server reported.\n\
         New types and fields may appear without raising \"v\"; skip what you do not know.",
    );
    out
}

/// Checks one JSON line against the schema: a flat object whose `"type"`
/// (and a gap's `"kind"`) is known, with every required field, no unknown
/// field, each of its kind, and the stamp last (`"ts"` then `"v":1`).
#[cfg(test)]
pub(crate) fn check(line: &str) -> Result<(), String> {
    use serde_json::Value;

    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:?}"))?;
    let Value::Object(object) = &value else {
        return Err(format!("not an object: {line:?}"));
    };
    let Some(Value::String(type_name)) = object.get("type") else {
        return Err(format!("no string \"type\": {line:?}"));
    };
    let line_type =
        line_type(type_name).ok_or_else(|| format!("unknown type {type_name:?}: {line:?}"))?;
    let mut fields: Vec<Field> = line_type.fields.to_vec();
    if line_type.name == "gap" {
        let Some(Value::String(kind)) = object.get("kind") else {
            return Err(format!("a gap without a string \"kind\": {line:?}"));
        };
        let kind = gap_kind(kind).ok_or_else(|| format!("unknown gap kind {kind:?}: {line:?}"))?;
        fields.extend_from_slice(kind.fields);
    }
    fields.extend_from_slice(&STAMP);
    for key in object.keys() {
        if key != "type" && !fields.iter().any(|f| f.name == key) {
            return Err(format!("field {key:?} is not in the schema: {line:?}"));
        }
    }
    for field in &fields {
        let ok = match (object.get(field.name), field.kind) {
            (None, _) => !field.required,
            (Some(Value::String(_)), Kind::Str) => true,
            (Some(Value::Number(n)), Kind::Int) => n.is_i64() || n.is_u64(),
            (Some(Value::Array(items)), Kind::StrList) => items.iter().all(Value::is_string),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "field {:?} missing or not {:?}: {line:?}",
                field.name, field.kind
            ));
        }
    }
    if object.get("v") != Some(&Value::from(JSON_VERSION)) {
        return Err(format!("\"v\" is not {JSON_VERSION}: {line:?}"));
    }
    if let Some(Value::String(code)) = object.get("code") {
        if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("\"code\" is not a SQLSTATE: {line:?}"));
        }
    }
    let Some(Value::String(ts)) = object.get("ts") else {
        return Err(format!("no \"ts\": {line:?}"));
    };
    check_rfc3339(ts).map_err(|e| format!("{e}: {line:?}"))?;
    if !line.ends_with(&format!(r#","ts":"{ts}","v":{JSON_VERSION}}}"#)) {
        return Err(format!("the line does not end with ts and v: {line:?}"));
    }
    Ok(())
}

/// Checks `2026-11-29T23:07:28.123Z`.
#[cfg(test)]
fn check_rfc3339(ts: &str) -> Result<(), String> {
    let well_formed = ts.len() == 24
        && ts.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            23 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "\"ts\" {ts:?} is not RFC 3339 UTC with milliseconds"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_every_type_kind_and_field() {
        let help = help();
        for t in TYPES.iter().chain(GAP_KINDS) {
            assert!(help.contains(&format!("  {} ", t.name)), "{}", t.name);
            for f in t.fields {
                assert!(help.contains(f.name), "{}.{}", t.name, f.name);
            }
        }
    }

    #[test]
    fn check_accepts_a_good_line_and_names_what_is_wrong_with_bad_ones() {
        let ts = r#""ts":"2026-11-29T23:07:28.123Z","v":1}"#;
        let good = format!(r#"{{"type":"disconnected","error":"x","code":"57P01",{ts}"#);
        assert_eq!(check(&good), Ok(()));
        for bad in [
            format!(r#"{{"type":"nope",{ts}"#),
            format!(r#"{{"type":"gap","kind":"overflow","channel":"x",{ts}"#),
            format!(r#"{{"type":"gap","kind":"weird","channel":"x",{ts}"#),
            format!(r#"{{"type":"connected","generation":"2",{ts}"#),
            format!(r#"{{"type":"connected","generation":2,"extra":1,{ts}"#),
            format!(r#"{{"type":"disconnected","error":"x","code":"57",{ts}"#),
            r#"{"type":"connected","generation":2,"v":1,"ts":"2026-11-29T23:07:28.123Z"}"#
                .to_owned(),
            r#"{"type":"connected","generation":2,"ts":"2026-11-29","v":1}"#.to_owned(),
            r#"{"type":"connected","generation":2,"ts":"2026-11-29T23:07:28.123Z","v":2}"#
                .to_owned(),
        ] {
            assert!(check(&bad).is_err(), "accepted {bad}");
        }
    }
}
