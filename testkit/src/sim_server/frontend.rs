//! Decoding of frontend (client-to-server) protocol messages.
//!
//! Framing problems (a bad length, a missing terminator, an unknown message
//! type) are [`Malformed`]: the backend answers FATAL 08P01 and closes, as
//! PostgreSQL does. Well-framed messages with bad text inside decode to
//! [`Message::Invalid`], an ordinary ERROR.

use super::error::{CHARACTER_NOT_IN_REPERTOIRE, SqlError};

/// The first packet of a connection, which has no type byte.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Startup {
    Ssl,
    Gss,
    Cancel {
        pid: i32,
        secret: i32,
    },
    Start {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
}

/// A typed message after startup.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    Password(Vec<u8>),
    Query(String),
    Parse {
        name: String,
        query: String,
        param_types: Vec<u32>,
    },
    Bind {
        portal: String,
        statement: String,
        formats: Vec<i16>,
        params: Vec<Option<Vec<u8>>>,
    },
    Describe {
        kind: u8,
        name: String,
    },
    Execute {
        portal: String,
    },
    Close {
        kind: u8,
        name: String,
    },
    Sync,
    Flush,
    Terminate,
    /// Framed correctly (as a message of type `tag`), but its content cannot
    /// be accepted.
    Invalid {
        tag: u8,
        error: SqlError,
    },
}

/// A framing error: the connection cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// PostgreSQL's own cap on a startup packet.
const MAX_STARTUP_LEN: usize = 10_000;

/// Takes the startup packet off the front of `input`, if it is complete.
pub(crate) fn take_startup(input: &mut Vec<u8>) -> Result<Option<Startup>, Malformed> {
    let Some(len) = peek_len(input, 0)? else {
        return Ok(None);
    };
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(Malformed("invalid length of startup packet".into()));
    }
    if input.len() < len {
        return Ok(None);
    }
    let packet: Vec<u8> = input.drain(..len).collect();
    let mut r = Reader(&packet[4..]);
    let code = r.u32()?;
    let startup = match code {
        SSL_REQUEST => Startup::Ssl,
        GSS_REQUEST => Startup::Gss,
        CANCEL_REQUEST => Startup::Cancel {
            pid: r.i32()?,
            secret: r.i32()?,
        },
        _ => {
            let (major, minor) = ((code >> 16) as u16, code as u16);
            let mut params = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((utf8(name)?, utf8(value)?));
            }
            Startup::Start {
                major,
                minor,
                params,
            }
        }
    };
    Ok(Some(startup))
}

/// Takes one typed message off the front of `input`, if it is complete.
pub(crate) fn take_message(
    input: &mut Vec<u8>,
    max_len: usize,
) -> Result<Option<Message>, Malformed> {
    let Some(&tag) = input.first() else {
        return Ok(None);
    };
    if !b"pQPBDECSHX".contains(&tag) {
        return Err(Malformed(format!("invalid frontend message type {tag}")));
    }
    let Some(len) = peek_len(input, 1)? else {
        return Ok(None);
    };
    if len < 4 || len > max_len {
        return Err(Malformed(format!("invalid message length {len}")));
    }
    if input.len() < 1 + len {
        return Ok(None);
    }
    let frame: Vec<u8> = input.drain(..1 + len).collect();
    let mut r = Reader(&frame[5..]);
    let message = decode(tag, &mut r)?;
    if !r.0.is_empty() {
        return Err(Malformed(format!(
            "message of type {tag} has trailing bytes"
        )));
    }
    Ok(Some(message))
}

fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Message, Malformed> {
    Ok(match tag {
        b'p' => Message::Password(r.cstr()?.to_vec()),
        b'Q' => text(tag, r.cstr()?, Message::Query),
        b'P' => {
            let name = r.cstr()?;
            let query = r.cstr()?;
            let count = r.count()?;
            let param_types = (0..count).map(|_| r.u32()).collect::<Result<_, _>>()?;
            match (std::str::from_utf8(name), std::str::from_utf8(query)) {
                (Ok(name), Ok(query)) => Message::Parse {
                    name: name.to_owned(),
                    query: query.to_owned(),
                    param_types,
                },
                _ => invalid_encoding(tag),
            }
        }
        b'B' => decode_bind(r)?,
        b'D' => {
            let kind = r.kind()?;
            text(tag, r.cstr()?, |name| Message::Describe { kind, name })
        }
        b'E' => {
            let portal = r.cstr()?;
            let _max_rows = r.i32()?;
            text(tag, portal, |portal| Message::Execute { portal })
        }
        b'C' => {
            let kind = r.kind()?;
            text(tag, r.cstr()?, |name| Message::Close { kind, name })
        }
        b'S' => Message::Sync,
        b'H' => Message::Flush,
        _ => Message::Terminate,
    })
}

fn decode_bind(r: &mut Reader<'_>) -> Result<Message, Malformed> {
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let format_count = r.count()?;
    let formats = (0..format_count)
        .map(|_| r.i16())
        .collect::<Result<Vec<_>, _>>()?;
    let param_count = r.count()?;
    let mut params = Vec::with_capacity(param_count.min(r.0.len() / 4));
    for _ in 0..param_count {
        let len = r.i32()?;
        params.push(if len < 0 {
            None
        } else {
            Some(r.bytes(len as usize)?.to_vec())
        });
    }
    let result_count = r.count()?;
    for _ in 0..result_count {
        r.i16()?;
    }
    Ok(
        match (std::str::from_utf8(portal), std::str::from_utf8(statement)) {
            (Ok(portal), Ok(statement)) => Message::Bind {
                portal: portal.to_owned(),
                statement: statement.to_owned(),
                formats,
                params,
            },
            _ => invalid_encoding(b'B'),
        },
    )
}

fn text(tag: u8, bytes: &[u8], make: impl FnOnce(String) -> Message) -> Message {
    match std::str::from_utf8(bytes) {
        Ok(s) => make(s.to_owned()),
        Err(_) => invalid_encoding(tag),
    }
}

fn invalid_encoding(tag: u8) -> Message {
    Message::Invalid {
        tag,
        error: invalid_utf8(),
    }
}

pub(crate) fn invalid_utf8() -> SqlError {
    SqlError::error(
        CHARACTER_NOT_IN_REPERTOIRE,
        "invalid byte sequence for encoding \"UTF8\"",
    )
}

fn utf8(bytes: &[u8]) -> Result<String, Malformed> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Malformed("invalid byte sequence for encoding \"UTF8\" in startup packet".into())
    })
}

/// The length field at `at`, once four bytes of it are there.
fn peek_len(input: &[u8], at: usize) -> Result<Option<usize>, Malformed> {
    let Some(field) = input.get(at..at + 4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    usize::try_from(len)
        .map(Some)
        .map_err(|_| Malformed(format!("invalid message length {len}")))
}

/// A cursor over a message body whose every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("insufficient data left in message".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, Malformed> {
        self.u32().map(|v| v as i32)
    }

    fn i16(&mut self) -> Result<i16, Malformed> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A 16-bit element count, which must not be negative.
    fn count(&mut self) -> Result<usize, Malformed> {
        usize::try_from(self.i16()?).map_err(|_| Malformed("negative count in message".into()))
    }

    fn kind(&mut self) -> Result<u8, Malformed> {
        match self.bytes(1)?[0] {
            kind @ (b'S' | b'P') => Ok(kind),
            other => Err(Malformed(format!(
                "invalid DESCRIBE/CLOSE message subtype {other}"
            ))),
        }
    }

    fn cstr(&mut self) -> Result<&'a [u8], Malformed> {
        let Some(end) = self.0.iter().position(|&b| b == 0) else {
            return Err(Malformed("invalid string in message".into()));
        };
        let s = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(s)
    }
}
