//! Splits a protocol byte stream, fed in arbitrary chunks, into messages, so
//! the checks can count what each chunk carried.

/// Follows one direction of a PostgreSQL v3 stream.
///
/// Client streams start with untyped messages (SSLRequest, StartupMessage);
/// server streams may start with a one-byte answer to SSLRequest.
#[derive(Debug)]
pub(crate) struct FrameScanner {
    /// Untyped messages still expected at the start (client side).
    untyped: bool,
    /// A one-byte SSL answer still expected (server side).
    ssl_byte: bool,
    header: Vec<u8>,
    kind: u8,
    remaining: usize,
    /// Whether bodies of the current message are kept (for `keep` types).
    body: Vec<u8>,
    keep: u8,
}

/// The SSLRequest code in place of a protocol version.
const SSL_REQUEST: u32 = 80_877_103;

impl FrameScanner {
    /// A scanner for what the client writes; bodies of messages of type
    /// `keep` are handed to the callback.
    pub(crate) fn client(keep: u8) -> Self {
        Self::new(true, false, keep)
    }

    /// A scanner for what the server writes after an SSLRequest (if
    /// `ssl_byte`); bodies of type `keep` are handed over.
    pub(crate) fn server(ssl_byte: bool, keep: u8) -> Self {
        Self::new(false, ssl_byte, keep)
    }

    fn new(untyped: bool, ssl_byte: bool, keep: u8) -> Self {
        Self {
            untyped,
            ssl_byte,
            header: Vec::with_capacity(8),
            kind: 0,
            remaining: 0,
            body: Vec::new(),
            keep,
        }
    }

    /// Feeds a chunk; calls `on_message(type, body)` for each message that
    /// completes in it (body empty unless its type is the kept one).
    pub(crate) fn feed(&mut self, mut chunk: &[u8], mut on_message: impl FnMut(u8, &[u8])) {
        while !chunk.is_empty() {
            if self.ssl_byte {
                self.ssl_byte = false;
                chunk = &chunk[1..];
                continue;
            }
            if self.remaining == 0 {
                let header_len = if self.untyped { 8 } else { 5 };
                let take = (header_len - self.header.len()).min(chunk.len());
                self.header.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.header.len() < header_len {
                    return;
                }
                let (kind, len) = if self.untyped {
                    let len = u32::from_be_bytes([
                        self.header[0],
                        self.header[1],
                        self.header[2],
                        self.header[3],
                    ]) as usize;
                    let code = u32::from_be_bytes([
                        self.header[4],
                        self.header[5],
                        self.header[6],
                        self.header[7],
                    ]);
                    if code != SSL_REQUEST {
                        self.untyped = false;
                    }
                    (0u8, len.saturating_sub(8))
                } else {
                    let len = u32::from_be_bytes([
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ]) as usize;
                    (self.header[0], len.saturating_sub(4))
                };
                self.header.clear();
                self.kind = kind;
                self.body.clear();
                if len == 0 {
                    on_message(kind, &[]);
                    continue;
                }
                self.remaining = len;
                continue;
            }
            let take = self.remaining.min(chunk.len());
            if self.kind == self.keep && self.kind != 0 {
                self.body.extend_from_slice(&chunk[..take]);
            }
            chunk = &chunk[take..];
            self.remaining -= take;
            if self.remaining == 0 {
                on_message(self.kind, &self.body);
                self.body.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_across_chunks_are_counted_once_when_complete() {
        // 'N' answer, then A(len 6: 2 body bytes), then Z(len 5: 1 byte).
        let stream = [b'N', b'A', 0, 0, 0, 6, 1, 2, b'Z', 0, 0, 0, 5, b'I'];
        for cut in 0..stream.len() {
            let mut s = FrameScanner::server(true, b'A');
            let mut seen = Vec::new();
            s.feed(&stream[..cut], |k, b| seen.push((k, b.to_vec())));
            s.feed(&stream[cut..], |k, b| seen.push((k, b.to_vec())));
            assert_eq!(seen, [(b'A', vec![1, 2]), (b'Z', vec![])], "cut at {cut}");
        }
    }
}
