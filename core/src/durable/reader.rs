//! One durable subscriber's merge of the live stream and the table: every
//! message after its cursor, exactly once, in position order.
//!
//! The reader is sans-IO: its driver feeds it the live subscription's items
//! ([`handle_live`](DurableReader::handle_live),
//! [`handle_gap`](DurableReader::handle_gap)) and the pages it asked for
//! ([`poll_request`](DurableReader::poll_request),
//! [`handle_page`](DurableReader::handle_page)), and hands the application
//! what [`poll_event`](DurableReader::poll_event) gives.
//!
//! Positions are dense and given in commit order (see [`crate::durable`]),
//! and the server delivers NOTIFYs in commit order. So while the live stream
//! has no gap, the message after the cursor is always the next one to
//! arrive: a live note for `cursor + 1` that carries its payload is
//! delivered as it is, one for `cursor` or below is a duplicate of
//! something already delivered, and anything else (a later position, a note
//! without its payload, a gap item) means "read the table from the cursor".
//! A page read after the LISTEN was acknowledged holds everything committed
//! before it; everything committed after reaches the live stream. The two
//! overlap, never leave a hole, and the cursor drops the overlap.

use std::collections::VecDeque;
use std::fmt;

use super::page::{ForeignNote, LiveNote, Page};

/// Where a durable subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Since {
    /// After the last message committed when the subscription starts.
    Now,
    /// After this position: every message from `position + 1` on that is
    /// still retained. `After(0)` is every retained message.
    After(u64),
}

/// One durable message, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableMessage {
    /// Its place in the channel: 1, 2, 3, … in commit order, no hole. Store
    /// it as the cursor to resume after it ([`Since::After`]).
    pub position: u64,
    /// The payload, whole, however long.
    pub payload: String,
}

/// What a durable subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurableEvent {
    /// The next message.
    Message(DurableMessage),
    /// Messages after the cursor are no longer retained (pruned, or
    /// deleted by hand): exactly `missed` of them, up to and including
    /// position `through`. The next message is `through + 1`.
    Expired {
        /// How many messages are gone.
        missed: u64,
        /// The last position that is gone.
        through: u64,
    },
}

impl fmt::Display for DurableEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message(m) => write!(f, "message {}", m.position),
            Self::Expired { missed, through } => write!(
                f,
                "expired: {missed} messages no longer available (through position {through})"
            ),
        }
    }
}

/// A page the reader needs read: at most `limit` messages after `after`.
/// `limit` 0 asks for the channel's state alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Read messages after this position.
    pub after: u64,
    /// At most this many.
    pub limit: u32,
}

/// A durable subscription that cannot go on as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReaderError {
    /// The cursor is past the channel's last position: it was not given by
    /// this channel (or the schema was dropped and installed again), and
    /// following it would skip messages silently.
    CursorAhead {
        /// The cursor.
        cursor: u64,
        /// The channel's last position.
        last: u64,
    },
}

impl fmt::Display for ReaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CursorAhead { cursor, last } => write!(
                f,
                "cursor {cursor} is past the channel's last position {last}: it does not come \
                 from this channel (or the schema was installed anew)"
            ),
        }
    }
}

impl std::error::Error for ReaderError {}

/// What a reader has done, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderStats {
    /// Messages delivered from live notifications.
    pub live: u64,
    /// Messages delivered from pages.
    pub fetched: u64,
    /// Pages read.
    pub pages: u64,
    /// Live notifications at or below the cursor, dropped.
    pub duplicates: u64,
    /// Notifications that were not durable messages' ([`ForeignNote`]).
    pub foreign: u64,
    /// Gap items of the live stream (each read the table).
    pub gaps: u64,
}

/// The page size unless told otherwise.
pub const DEFAULT_PAGE_LIMIT: u32 = 1000;

/// One durable subscriber's state: its cursor and whether it must read the
/// table before it can trust the live stream again.
#[derive(Debug)]
pub struct DurableReader {
    /// The last position handed to `out`; `None` until the first page says
    /// where [`Since::Now`] is.
    cursor: Option<u64>,
    /// The table must be read from the cursor before live notes count.
    catching_up: bool,
    /// The highest position a live note named: a page that ends below it
    /// must be followed by another.
    seen: u64,
    page_limit: u32,
    out: VecDeque<DurableEvent>,
    stats: ReaderStats,
}

impl DurableReader {
    /// A reader starting at `since`; it first asks for a page.
    pub fn new(since: Since) -> Self {
        Self {
            cursor: match since {
                Since::Now => None,
                Since::After(position) => Some(position),
            },
            catching_up: true,
            seen: 0,
            page_limit: DEFAULT_PAGE_LIMIT,
            out: VecDeque::new(),
            stats: ReaderStats::default(),
        }
    }

    /// The same reader with pages of at most `limit` messages (at least 1).
    #[must_use]
    pub fn with_page_limit(mut self, limit: u32) -> Self {
        self.page_limit = limit.max(1);
        self
    }

    /// The last position handed out (or about to be, by
    /// [`poll_event`](Self::poll_event)); `None` before the first page of a
    /// [`Since::Now`] reader.
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// What the reader has done so far.
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// Whether the table must be read before live items can be handled:
    /// while it is, a driver reads pages, not the live stream.
    pub fn is_catching_up(&self) -> bool {
        self.catching_up
    }

    /// The page to read next, if the reader needs one.
    pub fn poll_request(&self) -> Option<PageRequest> {
        if !self.catching_up {
            return None;
        }
        Some(match self.cursor {
            None => PageRequest { after: 0, limit: 0 },
            Some(after) => PageRequest {
                after,
                limit: self.page_limit,
            },
        })
    }

    /// The page read for [`poll_request`](Self::poll_request)'s `request`
    /// (a page read for an older request is harmless: rows at or below the
    /// cursor are skipped).
    pub fn handle_page(&mut self, request: PageRequest, page: Page) -> Result<(), ReaderError> {
        self.stats.pages += 1;
        let Some(mut cursor) = self.cursor else {
            self.cursor = Some(page.last_position);
            self.catching_up = self.seen > page.last_position;
            return Ok(());
        };
        if page.last_position < cursor {
            return Err(ReaderError::CursorAhead {
                cursor,
                last: page.last_position,
            });
        }
        if page.pruned_through > cursor {
            self.expire(cursor, page.pruned_through);
            cursor = page.pruned_through;
        }
        let mut complete = (page.rows.len() as u64) < u64::from(request.limit);
        for row in page.rows {
            if row.position <= cursor {
                continue;
            }
            let Some(payload) = row.payload else {
                // Too long to come in this page: it heads the next one.
                complete = false;
                break;
            };
            if row.position > cursor + 1 {
                // Deleted by hand: said, never skipped silently.
                self.expire(cursor, row.position - 1);
            }
            self.out.push_back(DurableEvent::Message(DurableMessage {
                position: row.position,
                payload,
            }));
            self.stats.fetched += 1;
            cursor = row.position;
        }
        if complete && cursor < page.last_position {
            // Everything committed was in the page, yet the channel went
            // further: the tail was deleted by hand.
            self.expire(cursor, page.last_position);
            cursor = page.last_position;
        }
        self.cursor = Some(cursor);
        self.catching_up = !complete || self.seen > cursor;
        Ok(())
    }

    fn expire(&mut self, cursor: u64, through: u64) {
        self.out.push_back(DurableEvent::Expired {
            missed: through - cursor,
            through,
        });
    }

    /// A notification's payload from the live subscription.
    ///
    /// A [`ForeignNote`] is counted and otherwise ignored: the channel
    /// carries something that is not a durable message.
    pub fn handle_live(&mut self, payload: &str) -> Result<(), ForeignNote> {
        let note = LiveNote::parse(payload).inspect_err(|_| self.stats.foreign += 1)?;
        self.seen = self.seen.max(note.position);
        let Some(cursor) = self.cursor.filter(|_| !self.catching_up) else {
            // The page being read, or the next, covers it (`seen`).
            return Ok(());
        };
        match note.payload {
            _ if note.position <= cursor => self.stats.duplicates += 1,
            Some(payload) if note.position == cursor + 1 => {
                self.out.push_back(DurableEvent::Message(DurableMessage {
                    position: note.position,
                    payload: payload.to_owned(),
                }));
                self.stats.live += 1;
                self.cursor = Some(note.position);
            }
            _ => self.catching_up = true,
        }
        Ok(())
    }

    /// A gap in the live stream (a reconnect, an overflow): what was
    /// missed is read from the table.
    pub fn handle_gap(&mut self) {
        self.stats.gaps += 1;
        self.catching_up = true;
    }

    /// The next item for the application.
    pub fn poll_event(&mut self) -> Option<DurableEvent> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::PageRow;

    fn page(last: u64, pruned: u64, rows: &[(u64, Option<&str>)]) -> Page {
        Page {
            last_position: last,
            pruned_through: pruned,
            rows: rows
                .iter()
                .map(|&(position, payload)| PageRow {
                    position,
                    payload: payload.map(str::to_owned),
                })
                .collect(),
        }
    }

    fn drain(reader: &mut DurableReader) -> Vec<DurableEvent> {
        std::iter::from_fn(|| reader.poll_event()).collect()
    }

    fn message(position: u64, payload: &str) -> DurableEvent {
        DurableEvent::Message(DurableMessage {
            position,
            payload: payload.to_owned(),
        })
    }

    #[test]
    fn now_starts_at_the_channels_last_position_and_then_follows_live_notes() {
        let mut reader = DurableReader::new(Since::Now);
        let request = reader.poll_request().unwrap();
        assert_eq!(request, PageRequest { after: 0, limit: 0 });
        reader.handle_page(request, page(7, 0, &[])).unwrap();
        assert_eq!(reader.poll_request(), None);
        reader.handle_live("7:old").unwrap();
        reader.handle_live("8:a").unwrap();
        reader.handle_live("8:a").unwrap();
        assert_eq!(drain(&mut reader), [message(8, "a")]);
        assert_eq!(reader.stats().duplicates, 2);
    }

    #[test]
    fn a_hole_a_reference_or_a_gap_reads_the_table_from_the_cursor() {
        let mut reader = DurableReader::new(Since::After(3)).with_page_limit(2);
        let first = reader.poll_request().unwrap();
        assert_eq!(first, PageRequest { after: 3, limit: 2 });
        reader
            .handle_page(first, page(5, 0, &[(4, Some("d")), (5, Some("e"))]))
            .unwrap();
        // A full page: there may be more.
        let next = reader.poll_request().unwrap();
        assert_eq!(next.after, 5);
        reader.handle_page(next, page(5, 0, &[])).unwrap();
        assert_eq!(reader.poll_request(), None);
        reader.handle_live("7:g").unwrap(); // 6 is missing
        assert_eq!(reader.poll_request().map(|r| r.after), Some(5));
        reader.handle_live("8:h").unwrap(); // while catching up: remembered
        let request = reader.poll_request().unwrap();
        reader
            .handle_page(request, page(7, 0, &[(6, Some("f")), (7, Some("g"))]))
            .unwrap();
        // The page ended below the 8 seen live: read again.
        let request = reader.poll_request().unwrap();
        assert_eq!(request.after, 7);
        reader
            .handle_page(request, page(8, 0, &[(8, Some("h"))]))
            .unwrap();
        assert_eq!(reader.poll_request(), None);
        reader.handle_live("9").unwrap(); // a reference: fetch it
        assert!(reader.is_catching_up());
        let request = reader.poll_request().unwrap();
        reader
            .handle_page(request, page(9, 0, &[(9, Some("long"))]))
            .unwrap();
        reader.handle_gap();
        let request = reader.poll_request().unwrap();
        reader.handle_page(request, page(9, 0, &[])).unwrap();
        let positions: Vec<u64> = drain(&mut reader)
            .into_iter()
            .map(|e| match e {
                DurableEvent::Message(m) => m.position,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(positions, [4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn a_long_payload_left_out_of_a_page_heads_the_next() {
        let mut reader = DurableReader::new(Since::After(0));
        let request = reader.poll_request().unwrap();
        reader
            .handle_page(
                request,
                page(3, 0, &[(1, Some("a")), (2, None), (3, Some("c"))]),
            )
            .unwrap();
        let request = reader.poll_request().unwrap();
        assert_eq!(request.after, 1);
        reader
            .handle_page(request, page(3, 0, &[(2, Some("big")), (3, Some("c"))]))
            .unwrap();
        assert_eq!(
            drain(&mut reader),
            [message(1, "a"), message(2, "big"), message(3, "c")]
        );
    }

    #[test]
    fn pruned_and_deleted_messages_are_said_never_skipped() {
        let mut reader = DurableReader::new(Since::After(2));
        let request = reader.poll_request().unwrap();
        reader
            .handle_page(request, page(10, 5, &[(6, Some("f")), (8, Some("h"))]))
            .unwrap();
        assert_eq!(
            drain(&mut reader),
            [
                DurableEvent::Expired {
                    missed: 3,
                    through: 5
                },
                message(6, "f"),
                DurableEvent::Expired {
                    missed: 1,
                    through: 7
                },
                message(8, "h"),
                DurableEvent::Expired {
                    missed: 2,
                    through: 10
                },
            ]
        );
        assert_eq!(reader.cursor(), Some(10));
    }

    #[test]
    fn a_cursor_past_the_channel_is_refused_and_foreign_notes_counted() {
        let mut reader = DurableReader::new(Since::After(50));
        let request = reader.poll_request().unwrap();
        assert_eq!(
            reader.handle_page(request, page(10, 0, &[])),
            Err(ReaderError::CursorAhead {
                cursor: 50,
                last: 10
            })
        );
        assert!(reader.handle_live("not durable").is_err());
        assert_eq!(reader.stats().foreign, 1);
    }
}
