//! Decoding the server's messages from complete frames.
//!
//! Decoded by hand rather than with `postgres_protocol::message::backend`, so
//! that every failure is a typed [`ProtocolError`] and notifications can share
//! their frame's bytes.

use super::error::{ProtocolError, Report, ServerError};
use super::frame::Body;
use crate::{Notification, SharedStr};

/// The transaction state the server reports in ReadyForQuery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionStatus {
    /// Not in a transaction block.
    Idle,
    /// In a transaction block.
    InTransaction,
    /// In a failed transaction block (statements are refused until it ends).
    Failed,
}

/// An authentication request ('R').
#[derive(Debug)]
pub(crate) enum AuthRequest<'a> {
    Ok,
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { mechanisms: Vec<&'a str> },
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    Unsupported(&'static str),
}

/// One decoded server message.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    Authentication(AuthRequest<'a>),
    ParameterStatus {
        name: String,
        value: String,
    },
    BackendKeyData {
        process_id: i32,
        secret_key: i32,
    },
    ReadyForQuery(TransactionStatus),
    Error(ServerError),
    Notice(ServerError),
    Notification(Notification),
    RowDescription {
        columns: u16,
    },
    DataRow(DataRow<'a>),
    CommandComplete,
    EmptyQueryResponse,
    ParseComplete,
    BindComplete,
    /// A message the protocol defines that pgnotify never asks for (copy,
    /// describe, function call, protocol negotiation, ...).
    Unsolicited,
}

/// A DataRow, decoded lazily (only simple queries keep the values).
#[derive(Debug)]
pub(crate) struct DataRow<'a> {
    pub(crate) columns: u16,
    rest: &'a [u8],
}

impl DataRow<'_> {
    /// The values as text; `None` for SQL NULL.
    pub(crate) fn values(&self) -> Result<Vec<Option<String>>, ProtocolError> {
        let mut r = Reader::new(b'D', self.rest);
        let mut values = Vec::with_capacity(usize::from(self.columns).min(self.rest.len() / 4));
        for _ in 0..self.columns {
            let len = r.i32()?;
            if len < 0 {
                values.push(None);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| r.malformed("bad value length"))?;
            let bytes = r.take(len)?;
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ProtocolError::InvalidUtf8 { what: "row value" })?;
            values.push(Some(text.to_owned()));
        }
        r.finish()?;
        Ok(values)
    }
}

/// The channel name of the last notification, so that a burst on one
/// channel validates the name once, and shares one copy of it when it is
/// too long to be stored inline (a short one is copied, which is as cheap).
#[derive(Debug, Default)]
pub(crate) struct LastChannel(Option<SharedStr>);

impl LastChannel {
    /// The cached name, when it is `name`.
    fn get(&self, name: &[u8]) -> Option<SharedStr> {
        self.0
            .as_ref()
            .filter(|last| last.as_bytes() == name)
            .cloned()
    }
}

/// Decodes one frame; `channels` caches the last notification's channel.
pub(crate) fn decode<'a>(
    tag: u8,
    body: &'a Body<'_>,
    channels: &mut LastChannel,
) -> Result<Message<'a>, ProtocolError> {
    let mut r = Reader::new(tag, body.as_slice());
    let message = match tag {
        b'R' => Message::Authentication(auth_request(&mut r)?),
        b'S' => Message::ParameterStatus {
            name: r.cstr_utf8("parameter name")?.to_owned(),
            value: r.cstr_utf8("parameter value")?.to_owned(),
        },
        b'K' => Message::BackendKeyData {
            process_id: r.i32()?,
            secret_key: r.i32()?,
        },
        b'Z' => Message::ReadyForQuery(match r.u8()? {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            _ => return Err(r.malformed("unknown transaction status")),
        }),
        b'E' => Message::Error(server_error(&mut r)?),
        b'N' => Message::Notice(server_error(&mut r)?),
        b'A' => {
            // Decoded from the frame itself so that it can share its bytes.
            r.rest();
            Message::Notification(notification(body, channels)?)
        }
        b'T' => {
            let columns = r.u16()?;
            // The per-column descriptions are not needed; skip them.
            r.rest();
            Message::RowDescription { columns }
        }
        b'D' => Message::DataRow(DataRow {
            columns: r.u16()?,
            rest: r.rest(),
        }),
        b'C' => {
            r.cstr()?;
            Message::CommandComplete
        }
        b'I' => Message::EmptyQueryResponse,
        b'1' => Message::ParseComplete,
        b'2' => Message::BindComplete,
        b'3' | b'n' | b's' | b't' | b'G' | b'H' | b'W' | b'd' | b'c' | b'V' | b'v' => {
            r.rest();
            Message::Unsolicited
        }
        _ => return Err(ProtocolError::UnknownMessage { tag }),
    };
    r.finish()?;
    Ok(message)
}

fn auth_request<'a>(r: &mut Reader<'a>) -> Result<AuthRequest<'a>, ProtocolError> {
    Ok(match r.i32()? {
        0 => AuthRequest::Ok,
        2 => AuthRequest::Unsupported("Kerberos V5"),
        3 => AuthRequest::Cleartext,
        5 => {
            let salt = <[u8; 4]>::try_from(r.take(4)?).map_err(|_| r.malformed("short salt"))?;
            AuthRequest::Md5 { salt }
        }
        6 => AuthRequest::Unsupported("SCM credentials"),
        7 | 8 => {
            r.rest();
            AuthRequest::Unsupported("GSSAPI")
        }
        9 => AuthRequest::Unsupported("SSPI"),
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = r.cstr_utf8("SASL mechanism name")?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            AuthRequest::Sasl { mechanisms }
        }
        11 => AuthRequest::SaslContinue(r.rest()),
        12 => AuthRequest::SaslFinal(r.rest()),
        _ => return Err(r.malformed("unknown authentication request")),
    })
}

/// Decodes the fields of an ErrorResponse or NoticeResponse.
///
/// Field text is converted lossily: before `client_encoding` takes effect the
/// server may write messages in its own locale's encoding, and the server's
/// explanation of a failed login matters more than its encoding.
fn server_error(r: &mut Reader<'_>) -> Result<ServerError, ProtocolError> {
    let mut e = Report::default();
    let mut localized_severity = None;
    loop {
        let field = r.u8()?;
        if field == 0 {
            break;
        }
        let value = String::from_utf8_lossy(r.cstr()?).into_owned();
        match field {
            b'V' => e.severity = value,
            b'S' => localized_severity = Some(value),
            b'C' => e.code = value,
            b'M' => e.message = value,
            b'D' => e.detail = Some(value),
            b'H' => e.hint = Some(value),
            b'P' => e.position = Some(value),
            b'W' => e.r#where = Some(value),
            _ => {}
        }
    }
    if e.severity.is_empty() {
        e.severity = localized_severity.unwrap_or_default();
    }
    if e.severity.is_empty() || e.code.is_empty() {
        return Err(r.malformed("error or notice without severity or SQLSTATE"));
    }
    Ok(ServerError::from_report(e))
}

/// Decodes a NotificationResponse. Text of at most
/// [`SharedStr::INLINE_CAPACITY`] bytes is copied into the notification
/// itself (no allocation; cloning it for a subscriber touches no shared
/// reference count). Longer text of a frame gathered across inputs into its
/// own allocation is shared as it is (no copy); longer text borrowed from
/// the input is copied into a `Bytes` of its own. A channel name equal to
/// the last notification's is not validated again, and a long one is not
/// copied again: the cached one is shared.
fn notification(
    body: &Body<'_>,
    channels: &mut LastChannel,
) -> Result<Notification, ProtocolError> {
    let mut r = Reader::new(b'A', body.as_slice());
    let process_id = r.i32()?;
    let channel = r.cstr()?;
    let payload = r.cstr()?;
    r.finish()?;
    let text = |part: &[u8], what| {
        let text = match body {
            // `part` was read from `bytes` itself, so `slice_ref` finds it
            // inside it.
            Body::Owned(bytes) if part.len() > SharedStr::INLINE_CAPACITY => {
                SharedStr::from_utf8(bytes.slice_ref(part))
            }
            _ => SharedStr::copy_from_utf8(part),
        };
        text.map_err(|_| ProtocolError::InvalidUtf8 { what })
    };
    let channel = match channels.get(channel) {
        Some(cached) => cached,
        None => {
            let name = text(channel, "notification channel")?;
            channels.0 = Some(name.clone());
            name
        }
    };
    Ok(Notification {
        channel,
        payload: text(payload, "notification payload")?,
        process_id,
    })
}

/// A cursor over a message body that never panics.
struct Reader<'a> {
    tag: u8,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(tag: u8, buf: &'a [u8]) -> Self {
        Self { tag, buf, pos: 0 }
    }

    fn malformed(&self, what: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            tag: self.tag,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(self.malformed("length overflow"))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(self.malformed("body shorter than its fields"))?;
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        let [b] = <[u8; 1]>::try_from(self.take(1)?).map_err(|_| self.malformed("short"))?;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = <[u8; 2]>::try_from(self.take(2)?).map_err(|_| self.malformed("short"))?;
        Ok(u16::from_be_bytes(b))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = <[u8; 4]>::try_from(self.take(4)?).map_err(|_| self.malformed("short"))?;
        Ok(i32::from_be_bytes(b))
    }

    /// A NUL-terminated string, without its NUL.
    fn cstr(&mut self) -> Result<&'a [u8], ProtocolError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        // `CStr` finds the NUL a word at a time; a byte loop costs ~7
        // instructions per byte, most of the decoding of a long payload.
        let len = std::ffi::CStr::from_bytes_until_nul(rest)
            .map_err(|_| self.malformed("string without terminating NUL"))?
            .to_bytes()
            .len();
        let s = self.take(len)?;
        self.take(1)?;
        Ok(s)
    }

    fn cstr_utf8(&mut self, what: &'static str) -> Result<&'a str, ProtocolError> {
        std::str::from_utf8(self.cstr()?).map_err(|_| ProtocolError::InvalidUtf8 { what })
    }

    /// Everything not read yet.
    fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    /// Fails if bytes are left over.
    fn finish(&self) -> Result<(), ProtocolError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes after the last field"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn short_texts_are_decoded_inline() {
        let mut channels = LastChannel::default();
        let n = notification(&Body::Borrowed(b"\0\0\0\x07chan\0hello\0"), &mut channels);
        let n = n.unwrap();
        assert_eq!(
            (n.channel.as_str(), n.payload.as_str(), n.process_id),
            ("chan", "hello", 7)
        );
        assert!(n.channel.is_inline() && n.payload.is_inline());
        let frame = Bytes::from_static(b"\0\0\0\x07c\0p\0");
        let n = notification(&Body::Owned(frame), &mut channels).unwrap();
        assert!(n.channel.is_inline() && n.payload.is_inline());
    }

    #[test]
    fn borrowed_notifications_on_one_long_channel_share_the_channel_copy() {
        let mut channels = LastChannel::default();
        let first = notification(
            &Body::Borrowed(b"\0\0\0\x07a_channel_name_of_30_bytes____\0hello\0"),
            &mut channels,
        );
        let second = notification(
            &Body::Borrowed(b"\0\0\0\x08a_channel_name_of_30_bytes____\0world\0"),
            &mut channels,
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(
            (
                second.channel.as_str(),
                second.payload.as_str(),
                second.process_id
            ),
            ("a_channel_name_of_30_bytes____", "world", 8)
        );
        assert_eq!(
            first.channel.as_bytes().as_ptr(),
            second.channel.as_bytes().as_ptr(),
            "the second notification reuses the first one's channel name"
        );
    }

    #[test]
    fn borrowed_notification_on_another_channel_gets_its_own_name() {
        let mut channels = LastChannel::default();
        let first = notification(&Body::Borrowed(b"\0\0\0\x07chan\0a\0"), &mut channels);
        let other = notification(&Body::Borrowed(b"\0\0\0\x07other\0b\0"), &mut channels);
        assert_eq!(first.unwrap().channel.as_str(), "chan");
        assert_eq!(other.unwrap().channel.as_str(), "other");
    }

    #[test]
    fn borrowed_notification_with_invalid_utf8_channel_is_rejected() {
        let mut channels = LastChannel::default();
        assert!(matches!(
            notification(&Body::Borrowed(b"\0\0\0\x07\xff\0p\0"), &mut channels),
            Err(ProtocolError::InvalidUtf8 {
                what: "notification channel"
            })
        ));
    }

    #[test]
    fn owned_notification_shares_the_frame() {
        let frame = Bytes::from_static(b"\0\0\0\x07c\0a payload longer than 23 bytes\0");
        let n = notification(&Body::Owned(frame.clone()), &mut LastChannel::default()).unwrap();
        assert!(!n.payload.is_inline());
        assert_eq!(
            n.payload.as_bytes().as_ptr(),
            frame.as_ptr().wrapping_add(6)
        );
    }

    #[test]
    fn notification_without_terminator_is_malformed() {
        assert!(matches!(
            notification(
                &Body::Borrowed(b"\0\0\0\x07chan\0hello"),
                &mut LastChannel::default()
            ),
            Err(ProtocolError::Malformed { tag: b'A', .. })
        ));
    }

    #[test]
    fn data_row_with_short_value_is_malformed() {
        let row = DataRow {
            columns: 1,
            rest: &[0, 0, 0, 9, b'x'],
        };
        assert!(row.values().is_err());
    }
}
