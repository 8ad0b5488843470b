//! Splitting the server's byte stream into frames, with a cap on their length.
//!
//! Every backend message is a tag byte, a big-endian `u32` length that counts
//! itself, and a body. The length is checked against the cap as soon as the
//! five header bytes are known and before anything is reserved for the body,
//! so a hostile length never turns into an allocation.
//!
//! Memory: a frame that lies wholly inside one input slice is handed out
//! borrowed from that slice (the decoder copies what it keeps, once). A frame
//! that straddles inputs is gathered in a buffer allocated for exactly that
//! frame, then handed out as owned [`Bytes`], so a notification decoded from it
//! can share those bytes without keeping anything else alive. No read buffer
//! is ever shared between frames, which is why no "copy small, slice large"
//! threshold is needed here.

use bytes::{Bytes, BytesMut};

use super::error::ProtocolError;

/// Length of a frame header: the tag and the length.
const HEADER_LEN: usize = 5;

/// One complete frame's body, borrowed from the input or owned.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    /// The frame lay wholly inside the input slice.
    Borrowed(&'a [u8]),
    /// The frame was gathered across inputs into its own allocation.
    Owned(Bytes),
}

impl Body<'_> {
    /// The body's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Borrowed(b) => b,
            Self::Owned(b) => b,
        }
    }
}

/// One complete frame.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub(crate) tag: u8,
    pub(crate) body: Body<'a>,
}

/// Reassembles frames from input of any chunking.
#[derive(Debug)]
pub(crate) struct FrameReader {
    max_len: usize,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    /// The body being gathered: its tag, its bytes so far, and its full length.
    partial: Option<(u8, BytesMut, usize)>,
}

impl FrameReader {
    pub(crate) fn new(max_len: usize) -> Self {
        Self {
            max_len,
            header: [0; HEADER_LEN],
            header_filled: 0,
            partial: None,
        }
    }

    /// Whether no partial frame is buffered.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.header_filled == 0 && self.partial.is_none()
    }

    /// How many bytes are held for an incomplete frame: the header bytes
    /// so far, or the capacity reserved for the body being gathered.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn buffered_len(&self) -> usize {
        let body = self
            .partial
            .as_ref()
            .map_or(0, |(_, body, _)| body.capacity());
        self.header_filled.saturating_add(body)
    }

    /// Takes the next complete frame from `input` (advancing it), or buffers
    /// what is there and returns `None` once `input` is exhausted.
    pub(crate) fn next<'a>(
        &mut self,
        input: &mut &'a [u8],
    ) -> Result<Option<Frame<'a>>, ProtocolError> {
        if let Some((tag, mut body, body_len)) = self.partial.take() {
            let missing = body_len.saturating_sub(body.len());
            let (now, rest) = input.split_at(missing.min(input.len()));
            body.extend_from_slice(now);
            *input = rest;
            if body.len() < body_len {
                self.partial = Some((tag, body, body_len));
                return Ok(None);
            }
            return Ok(Some(Frame {
                tag,
                body: Body::Owned(body.freeze()),
            }));
        }

        if self.header_filled == 0 && input.len() >= HEADER_LEN {
            let (header, rest) = input.split_at(HEADER_LEN);
            let (tag, body_len) = self.check_header(header)?;
            if let Some((body, rest)) = rest.split_at_checked(body_len) {
                *input = rest;
                return Ok(Some(Frame {
                    tag,
                    body: Body::Borrowed(body),
                }));
            }
            *input = rest;
            return Ok(self.start_partial(tag, body_len, input));
        }

        // The header itself straddles inputs.
        let wanted = HEADER_LEN.saturating_sub(self.header_filled);
        let (now, rest) = input.split_at(wanted.min(input.len()));
        *input = rest;
        if let Some(dst) = self
            .header
            .get_mut(self.header_filled..self.header_filled.saturating_add(now.len()))
        {
            dst.copy_from_slice(now);
        }
        self.header_filled = self.header_filled.saturating_add(now.len());
        if self.header_filled < HEADER_LEN {
            return Ok(None);
        }
        self.header_filled = 0;
        let header = self.header;
        let (tag, body_len) = self.check_header(&header)?;
        Ok(self.start_partial(tag, body_len, input))
    }

    /// Validates a header and gives the tag and the body length.
    fn check_header(&self, header: &[u8]) -> Result<(u8, usize), ProtocolError> {
        let [tag, a, b, c, d] =
            <[u8; HEADER_LEN]>::try_from(header).map_err(|_| ProtocolError::Malformed {
                tag: 0,
                what: "short header",
            })?;
        // The protocol's lengths are signed 32-bit integers: report a
        // negative one as the value sent, not as a huge unsigned one.
        let signed = i32::from_be_bytes([a, b, c, d]);
        let Ok(len @ 4..) = u32::try_from(signed) else {
            return Err(ProtocolError::BadLength { tag, len: signed });
        };
        let too_large = ProtocolError::FrameTooLarge {
            tag,
            len,
            max: self.max_len,
        };
        let len_usize = usize::try_from(len).map_err(|_| too_large.clone())?;
        if len_usize > self.max_len {
            return Err(too_large);
        }
        Ok((tag, len_usize.saturating_sub(4)))
    }

    /// Starts gathering a body of `body_len` bytes (already within the cap)
    /// with what `input` holds; returns the frame if it is already complete.
    fn start_partial<'a>(
        &mut self,
        tag: u8,
        body_len: usize,
        input: &mut &'a [u8],
    ) -> Option<Frame<'a>> {
        if let Some((body, rest)) = input.split_at_checked(body_len) {
            *input = rest;
            return Some(Frame {
                tag,
                body: Body::Borrowed(body),
            });
        }
        let mut body = BytesMut::with_capacity(body_len);
        body.extend_from_slice(input);
        *input = &[];
        self.partial = Some((tag, body, body_len));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(reader: &mut FrameReader, mut input: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(f) = reader.next(&mut input).unwrap() {
            out.push((f.tag, f.body.as_slice().to_vec()));
        }
        assert!(input.is_empty());
        out
    }

    #[test]
    fn frame_split_at_every_byte_reassembles() {
        let wire = [b'Z', 0, 0, 0, 5, b'I', b'1', 0, 0, 0, 4];
        for cut in 0..=wire.len() {
            let mut r = FrameReader::new(100);
            let (a, b) = wire.split_at(cut);
            let mut got = frames(&mut r, a);
            got.extend(frames(&mut r, b));
            assert_eq!(
                got,
                vec![(b'Z', vec![b'I']), (b'1', vec![])],
                "cut at {cut}"
            );
            assert!(r.is_idle());
        }
    }

    #[test]
    fn length_above_cap_is_rejected_before_reserving() {
        let mut r = FrameReader::new(100);
        let mut input: &[u8] = &[b'D', 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(
            r.next(&mut input).unwrap_err(),
            ProtocolError::FrameTooLarge {
                tag: b'D',
                len: 0x7fff_ffff,
                max: 100
            }
        );
    }

    #[test]
    fn length_below_four_is_rejected() {
        let mut r = FrameReader::new(100);
        let mut input: &[u8] = &[b'D', 0, 0, 0, 3];
        assert_eq!(
            r.next(&mut input).unwrap_err(),
            ProtocolError::BadLength { tag: b'D', len: 3 }
        );
    }

    #[test]
    fn straddling_body_is_owned_and_exactly_sized() {
        let mut r = FrameReader::new(100);
        let mut a: &[u8] = &[b'A', 0, 0, 0, 8, 1, 2];
        assert!(r.next(&mut a).unwrap().is_none());
        let mut b: &[u8] = &[3, 4, b'Z'];
        let f = r.next(&mut b).unwrap().unwrap();
        assert!(matches!(f.body, Body::Owned(ref o) if o.as_ref() == [1, 2, 3, 4]));
        assert_eq!(b, [b'Z']);
    }
}
