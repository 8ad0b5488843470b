//! The FIFO of commands in flight, and matching each reply to its command.
//!
//! Every command ends with exactly one ReadyForQuery: a simple Query gets one,
//! and every publish carries its own Sync. So the head of the FIFO owns every
//! reply up to and including the next ReadyForQuery, and one failed command
//! never takes the next one down with it.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::backend::{Message, TransactionStatus};
use super::error::{ProtocolError, ServerError};
use super::frontend;
use super::{CommandId, Phase, QueryResult, WireEvent};

/// A command as the caller asked for it, before it is encoded.
#[derive(Debug)]
pub(crate) enum Request {
    Query(String),
    /// One or more calls of a statement with two text parameters (`pg_notify`
    /// unless told otherwise) in one transaction (one Sync).
    Publish(Calls),
}

/// The calls of one [`Request::Publish`].
#[derive(Debug)]
pub(crate) struct Calls {
    /// The statement, with `$1` and `$2` of type `text`.
    pub(crate) sql: std::borrow::Cow<'static, str>,
    /// Its parameters, one pair per call.
    pub(crate) items: Vec<(String, String)>,
    /// Keep what the calls return (one-column rows), rather than dropping it.
    pub(crate) keep_rows: bool,
}

#[derive(Debug)]
enum Kind {
    Query {
        rows: Vec<Vec<Option<String>>>,
        /// Columns of the current statement's rows, once its RowDescription came.
        columns: Option<u16>,
    },
    /// Parse/Bind/Execute of the unnamed statement per notification, then
    /// one Sync: one transaction, which one failure fails whole (the server
    /// skips the rest until the Sync), and which fails no other command.
    Publish {
        /// How many calls it carries.
        size: usize,
        /// ParseCompletes seen (one per call at most).
        parsed: usize,
        /// The calls' one-column rows, when kept.
        rows: Option<Vec<Vec<Option<String>>>>,
    },
    /// Refused before sending (it cannot be encoded); completes with its
    /// error when it reaches the head of the FIFO, to keep replies in order.
    Rejected,
}

#[derive(Debug)]
struct InFlight {
    id: CommandId,
    kind: Kind,
    error: Option<ServerError>,
}

/// Commands held until startup finishes, and commands sent but unanswered.
#[derive(Debug)]
pub(crate) struct Commands {
    next_id: u64,
    held: VecDeque<(CommandId, Request)>,
    in_flight: VecDeque<InFlight>,
}

impl Commands {
    pub(crate) fn new() -> Self {
        Self {
            next_id: 0,
            held: VecDeque::new(),
            in_flight: VecDeque::new(),
        }
    }

    /// How many commands have not completed yet (held or sent).
    pub(crate) fn len(&self) -> usize {
        self.held.len().saturating_add(self.in_flight.len())
    }

    /// A fresh command id.
    pub(crate) fn next_id(&mut self) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Keeps a command until [`release`](Self::release) (startup is not finished).
    pub(crate) fn hold(&mut self, id: CommandId, request: Request) {
        self.held.push_back((id, request));
    }

    /// Encodes every held command, in order.
    pub(crate) fn release(&mut self, out: &mut BytesMut, events: &mut VecDeque<WireEvent>) {
        while let Some((id, request)) = self.held.pop_front() {
            self.send(id, request, out, events);
        }
    }

    /// Encodes a command into `out` and puts it in flight.
    pub(crate) fn send(
        &mut self,
        id: CommandId,
        request: Request,
        out: &mut BytesMut,
        events: &mut VecDeque<WireEvent>,
    ) {
        let (kind, error) = match request {
            Request::Query(sql) => {
                if frontend::query(&sql, out) {
                    (
                        Kind::Query {
                            rows: Vec::new(),
                            columns: None,
                        },
                        None,
                    )
                } else {
                    (
                        Kind::Rejected,
                        Some(ServerError::new(
                            "ERROR",
                            "22021",
                            "the query text contains a NUL byte; pgnotify did not send it",
                        )),
                    )
                }
            }
            Request::Publish(calls) => self.encode_publish(&calls, out),
        };
        self.in_flight.push_back(InFlight { id, kind, error });
        self.complete_rejected(events);
    }

    fn encode_publish(&mut self, calls: &Calls, out: &mut BytesMut) -> (Kind, Option<ServerError>) {
        let pairs = calls.items.iter().map(|(c, p)| (c.as_str(), p.as_str()));
        if frontend::publish(&calls.sql, pairs, out) {
            let kind = Kind::Publish {
                size: calls.items.len(),
                parsed: 0,
                rows: calls.keep_rows.then(Vec::new),
            };
            return (kind, None);
        }
        let error = ServerError::new(
            "ERROR",
            "54000",
            "the notification is too large to encode; pgnotify did not send it",
        );
        (Kind::Rejected, Some(error))
    }

    /// Completes rejected commands that reached the head of the FIFO.
    fn complete_rejected(&mut self, events: &mut VecDeque<WireEvent>) {
        while let Some(head) = self.in_flight.front() {
            if !matches!(head.kind, Kind::Rejected) {
                break;
            }
            if let Some(done) = self.in_flight.pop_front() {
                let error = done
                    .error
                    .unwrap_or_else(|| ServerError::new("ERROR", "XX000", "command rejected"));
                events.push_back(WireEvent::CommandComplete {
                    id: done.id,
                    result: Err(error),
                });
            }
        }
    }

    /// Applies one reply to the command at the head of the FIFO. Returns the
    /// transaction status when the reply was the command's ReadyForQuery.
    pub(crate) fn on_reply(
        &mut self,
        tag: u8,
        message: Message<'_>,
        events: &mut VecDeque<WireEvent>,
    ) -> Result<Option<TransactionStatus>, ProtocolError> {
        let unexpected = ProtocolError::Unexpected {
            tag,
            phase: Phase::Ready,
        };
        let Some(head) = self.in_flight.front_mut() else {
            return Err(unexpected);
        };
        match (&mut head.kind, message) {
            (_, Message::Error(e)) => {
                head.error.get_or_insert(e);
            }
            (Kind::Query { columns, .. }, Message::RowDescription { columns: n }) => {
                *columns = Some(n);
            }
            (Kind::Query { rows, columns }, Message::DataRow(row)) => {
                if *columns != Some(row.columns) {
                    return Err(ProtocolError::Malformed {
                        tag,
                        what: "row without a matching row description",
                    });
                }
                rows.push(row.values()?);
            }
            (
                Kind::Query { columns, .. },
                Message::CommandComplete | Message::EmptyQueryResponse,
            ) => {
                *columns = None;
            }
            (Kind::Publish { size, parsed, .. }, Message::ParseComplete) if *parsed < *size => {
                *parsed = parsed.saturating_add(1);
            }
            (Kind::Publish { .. }, Message::BindComplete | Message::CommandComplete) => {}
            (Kind::Publish { rows, .. }, Message::DataRow(row)) if row.columns == 1 => {
                if let Some(rows) = rows {
                    rows.push(row.values()?);
                }
            }
            (_, Message::ReadyForQuery(status)) => {
                self.finish_head(events);
                return Ok(Some(status));
            }
            _ => return Err(unexpected),
        }
        Ok(None)
    }

    /// Pops the head (its ReadyForQuery arrived) and reports its result.
    fn finish_head(&mut self, events: &mut VecDeque<WireEvent>) {
        let Some(done) = self.in_flight.pop_front() else {
            return;
        };
        let result = match (done.kind, done.error) {
            (Kind::Query { rows, .. }, None) => Ok(QueryResult { rows }),
            (Kind::Publish { rows, .. }, None) => Ok(QueryResult {
                rows: rows.unwrap_or_default(),
            }),
            (_, Some(error)) => Err(error),
            (Kind::Rejected, None) => Err(ServerError::new("ERROR", "XX000", "command rejected")),
        };
        events.push_back(WireEvent::CommandComplete {
            id: done.id,
            result,
        });
        self.complete_rejected(events);
    }
}
