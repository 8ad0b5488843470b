//! What the server sends a durable reader: the live NOTIFY of one message,
//! and a page of messages read from the table. Both are parsed here, and
//! nothing in them is trusted: a malformed row is an error, never a panic.

use std::fmt;

/// A durable message's NOTIFY, as `commit_message` sends it: `position`
/// alone, or `position:payload` when the whole fits in a NOTIFY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveNote<'a> {
    /// The message's position in its channel.
    pub position: u64,
    /// The payload, if the NOTIFY carries it; `None` means fetch it.
    pub payload: Option<&'a str>,
}

/// A NOTIFY on a durable channel that `commit_message` did not send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignNote;

impl fmt::Display for ForeignNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a notification on a durable channel that is not a durable message's (`position` or `position:payload`)")
    }
}

impl std::error::Error for ForeignNote {}

impl<'a> LiveNote<'a> {
    /// Parses a notification's payload.
    ///
    /// ```
    /// use pgnotify_core::durable::LiveNote;
    /// let note = LiveNote::parse("17:hello:world").unwrap();
    /// assert_eq!((note.position, note.payload), (17, Some("hello:world")));
    /// assert_eq!(LiveNote::parse("18").unwrap().payload, None);
    /// assert!(LiveNote::parse("hello").is_err());
    /// ```
    pub fn parse(text: &'a str) -> Result<Self, ForeignNote> {
        let (digits, payload) = match text.split_once(':') {
            Some((digits, payload)) => (digits, Some(payload)),
            None => (text, None),
        };
        Ok(Self {
            position: parse_position(digits).ok_or(ForeignNote)?,
            payload,
        })
    }
}

/// A position as the server prints a positive `bigint`: digits only.
fn parse_position(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&p| p > 0)
}

/// One message of a [`Page`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRow {
    /// Its position in the channel.
    pub position: u64,
    /// Its payload; `None` when it was too long to come in this page (only
    /// ever for a row that is not the page's first).
    pub payload: Option<String>,
}

/// A page of one channel's messages, as [`DurableSchema::page_sql`] reads
/// it: the channel's state and the messages after a position, in order.
///
/// [`DurableSchema::page_sql`]: crate::durable::DurableSchema::page_sql
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The last position given out on the channel (0: none yet).
    pub last_position: u64,
    /// Every position up to this one was pruned (0: none).
    pub pruned_through: u64,
    /// The messages, by increasing position.
    pub rows: Vec<PageRow>,
}

/// Why a page could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPage {
    reason: String,
}

impl fmt::Display for BadPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unexpected durable page from the server: {}",
            self.reason
        )
    }
}

impl std::error::Error for BadPage {}

fn bad(reason: impl Into<String>) -> BadPage {
    BadPage {
        reason: reason.into(),
    }
}

impl Page {
    /// Reads the rows of a [`DurableSchema::page_sql`] query (five text
    /// columns each).
    ///
    /// [`DurableSchema::page_sql`]: crate::durable::DurableSchema::page_sql
    pub fn from_rows(rows: Vec<Vec<Option<String>>>) -> Result<Self, BadPage> {
        let mut page = Page::default();
        for (index, row) in rows.into_iter().enumerate() {
            let [last, pruned, position, size, payload]: [Option<String>; 5] = row
                .try_into()
                .map_err(|row: Vec<_>| bad(format!("a row of {} columns, not 5", row.len())))?;
            let count = |value: Option<String>, what: &str| {
                value
                    .as_deref()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| bad(format!("{what} is {value:?}")))
            };
            let last = count(last, "last_position")?;
            let pruned = count(pruned, "pruned_through")?;
            if index == 0 {
                (page.last_position, page.pruned_through) = (last, pruned);
            } else if (last, pruned) != (page.last_position, page.pruned_through) {
                return Err(bad("the channel's state differs between rows"));
            }
            let Some(position) = position else {
                // The channel's row with no message after the position.
                continue;
            };
            let position = parse_position(&position)
                .ok_or_else(|| bad(format!("position is {position:?}")))?;
            if page.rows.last().is_some_and(|r| r.position >= position) {
                return Err(bad("positions are not increasing"));
            }
            if position > page.last_position || position <= page.pruned_through {
                return Err(bad(format!(
                    "position {position} is outside the channel's {}..={}",
                    page.pruned_through + 1,
                    page.last_position
                )));
            }
            if payload.is_none() && (index == 0 || size.is_none()) {
                return Err(bad("the first message of a page came without its payload"));
            }
            page.rows.push(PageRow { position, payload });
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: [Option<&str>; 5]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[test]
    fn live_notes_parse_strictly() {
        assert_eq!(
            LiveNote::parse("5:"),
            Ok(LiveNote {
                position: 5,
                payload: Some("")
            })
        );
        for foreign in [
            "",
            ":x",
            "0",
            "-1",
            "+1",
            " 1",
            "1x:y",
            "99999999999999999999999",
        ] {
            assert_eq!(LiveNote::parse(foreign), Err(ForeignNote), "{foreign:?}");
        }
    }

    #[test]
    fn pages_read_the_state_and_rows_and_refuse_nonsense() {
        let page = Page::from_rows(vec![
            row([Some("9"), Some("2"), Some("3"), Some("1"), Some("a")]),
            row([Some("9"), Some("2"), Some("4"), Some("9000"), None]),
        ])
        .unwrap();
        assert_eq!((page.last_position, page.pruned_through), (9, 2));
        assert_eq!(page.rows[1].payload, None);
        let empty = Page::from_rows(vec![row([Some("9"), Some("2"), None, None, None])]).unwrap();
        assert!(empty.rows.is_empty());
        assert_eq!(Page::from_rows(vec![]).unwrap(), Page::default());
        for broken in [
            vec![row([Some("x"), Some("2"), None, None, None])],
            vec![row([Some("9"), Some("2"), Some("2"), Some("1"), Some("a")])],
            vec![row([
                Some("9"),
                Some("2"),
                Some("10"),
                Some("1"),
                Some("a"),
            ])],
            vec![row([Some("9"), Some("2"), Some("3"), Some("1"), None])],
            vec![
                row([Some("9"), Some("2"), Some("4"), Some("1"), Some("a")]),
                row([Some("9"), Some("2"), Some("3"), Some("1"), Some("a")]),
            ],
            vec![vec![Some("1".to_owned())]],
        ] {
            assert!(Page::from_rows(broken.clone()).is_err(), "{broken:?}");
        }
    }
}
