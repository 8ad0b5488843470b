//! NotificationResponse frames built in memory, as the server would send
//! them, and the parsing a hand-written multiplexer does on them.
//!
//! A NotificationResponse is the tag `'A'`, a big-endian `u32` length that
//! counts itself, the sender's process id (`i32`), then the channel and the
//! payload, each a NUL-terminated string.

/// The process id the crafted notifications carry: another session's, so
/// the bus never mistakes one for its own ping.
pub const SENDER_PID: i32 = 424_242;

/// Appends one NotificationResponse frame for `channel` and `payload`.
pub fn push_notification(out: &mut Vec<u8>, process_id: i32, channel: &str, payload: &str) {
    let len = 4 + 4 + channel.len() + 1 + payload.len() + 1;
    let len = u32::try_from(len).expect("a notification frame fits in a u32 length");
    out.push(b'A');
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&process_id.to_be_bytes());
    out.extend_from_slice(channel.as_bytes());
    out.push(0);
    out.extend_from_slice(payload.as_bytes());
    out.push(0);
}

/// A payload of exactly `len` ASCII bytes that looks like a JSON document.
pub fn payload(len: usize) -> String {
    const PATTERN: &[u8] = b"{\"id\":12345,\"state\":\"queued\",\"attempt\":1}";
    (0..len)
        .map(|i| char::from(PATTERN[i % PATTERN.len()]))
        .collect()
}

/// One notification as a hand-written multiplexer sees it: the channel and
/// payload copied into fresh `String`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedNotification {
    /// The sender's process id.
    pub process_id: i32,
    /// The channel name.
    pub channel: String,
    /// The payload.
    pub payload: String,
}

/// Splits `input` into complete frames and parses each NotificationResponse
/// into an [`OwnedNotification`], the way a multiplexer built on a plain
/// frame reader does: one `String` for the channel and one for the payload.
///
/// Frames of other types are skipped. Returns `None` at the first malformed
/// or truncated frame (the crafted input never has one).
pub fn parse_owned(mut input: &[u8], mut each: impl FnMut(OwnedNotification)) -> Option<()> {
    while !input.is_empty() {
        let (&tag, rest) = input.split_first()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let body_len = usize::try_from(u32::from_be_bytes(*len))
            .ok()?
            .checked_sub(4)?;
        let (body, rest) = rest.split_at_checked(body_len)?;
        input = rest;
        if tag != b'A' {
            continue;
        }
        let (pid, body) = body.split_first_chunk::<4>()?;
        let (channel, body) = split_cstr(body)?;
        let (payload, _) = split_cstr(body)?;
        each(OwnedNotification {
            process_id: i32::from_be_bytes(*pid),
            channel: String::from_utf8(channel.to_vec()).ok()?,
            payload: String::from_utf8(payload.to_vec()).ok()?,
        });
    }
    Some(())
}

/// Splits a NUL-terminated string off the front of `bytes`.
fn split_cstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..nul], &bytes[nul + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crafted_frame_parses_back_to_its_parts() {
        let mut wire = Vec::new();
        push_notification(&mut wire, 7, "jobs", "hello");
        push_notification(&mut wire, 8, "other", "");
        let mut seen = Vec::new();
        assert_eq!(parse_owned(&wire, |n| seen.push(n)), Some(()));
        assert_eq!(
            seen,
            [
                OwnedNotification {
                    process_id: 7,
                    channel: "jobs".into(),
                    payload: "hello".into()
                },
                OwnedNotification {
                    process_id: 8,
                    channel: "other".into(),
                    payload: String::new()
                },
            ]
        );
    }

    #[test]
    fn truncated_frame_is_refused() {
        let mut wire = Vec::new();
        push_notification(&mut wire, 7, "jobs", "hello");
        wire.pop();
        assert_eq!(parse_owned(&wire, |_| {}), None);
    }

    #[test]
    fn payload_has_the_requested_length() {
        assert_eq!(payload(16).len(), 16);
        assert_eq!(payload(1000).len(), 1000);
    }
}
