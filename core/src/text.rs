//! [`SharedStr`]: validated UTF-8 text that shares its bytes instead of copying them.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;
use std::str::Utf8Error;

use bytes::Bytes;

/// See [`SharedStr::INLINE_CAPACITY`].
const INLINE_CAPACITY: usize = 23;

/// A UTF-8 string that is cheap to clone: short text is stored inline,
/// longer text shares reference-counted [`Bytes`].
///
/// Channel names and payloads of notifications are `SharedStr`s. The bytes
/// are validated once, when the frame is parsed. Text of at most
/// [`INLINE_CAPACITY`](Self::INLINE_CAPACITY) bytes is copied into the value itself: building it
/// allocates nothing, and cloning or dropping it is a plain copy with no
/// atomic operation, so the many subscribers' tasks that clone the same
/// notification never contend on a shared reference count. Longer text
/// lives in `Bytes`: cloning it is one reference-count increment, and
/// fanning it out to many subscribers copies nothing.
///
/// ```
/// use pgnotify_core::SharedStr;
/// let s = SharedStr::from("orders");
/// let t = s.clone(); // short: a copy of 24 bytes, no allocation, no atomics
/// assert_eq!(&*t, "orders");
/// let long = SharedStr::from("x".repeat(100));
/// let shared = long.clone(); // long: the text is shared, not copied
/// assert_eq!(shared.as_bytes().as_ptr(), long.as_bytes().as_ptr());
/// ```
#[derive(Clone)]
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    /// Short validated UTF-8, see [`Inline`].
    Inline(Inline),
    /// Validated UTF-8 of any length.
    Shared(Bytes),
}

/// Up to [`INLINE_CAPACITY`] bytes of text, then their length in the last
/// byte.
///
/// Aligned to 8 so that a copy is three aligned word moves. A layout with a
/// separate `u8` length before a `[u8; 23]` puts the text at odd offsets,
/// and copying it then mixes byte and word moves that the CPU cannot
/// forward from store to load (a profile of `recv()` showed those stalls
/// as the hottest instructions of `EventBatch::pop_front`).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Inline([u8; INLINE_CAPACITY + 1]);

impl Inline {
    fn new(text: &[u8]) -> Option<Self> {
        if text.len() > INLINE_CAPACITY {
            return None;
        }
        let mut buf = [0; INLINE_CAPACITY + 1];
        let (start, len) = buf.split_at_mut(INLINE_CAPACITY);
        start.get_mut(..text.len())?.copy_from_slice(text);
        len[0] = text.len() as u8; // at most INLINE_CAPACITY, checked above
        Some(Self(buf))
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.0[INLINE_CAPACITY])
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        let len = self.len();
        // `len <= INLINE_CAPACITY` by construction; an empty slice
        // otherwise, rather than a panic.
        self.0.get(..len).unwrap_or_default()
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        Self::inline(b"").unwrap_or_else(|| Self::from_static(""))
    }
}

impl SharedStr {
    /// Text up to this many bytes is stored inline.
    ///
    /// 23 is what fits beside a one-byte length in the 32 bytes a `Bytes`
    /// takes anyway (the enum's tag lives in a niche of `Bytes`), so inline
    /// storage makes neither a `SharedStr` nor a `Notification` larger.
    pub const INLINE_CAPACITY: usize = INLINE_CAPACITY;

    /// `bytes` stored inline, if they fit (not validated here).
    fn inline(bytes: &[u8]) -> Option<Self> {
        Inline::new(bytes).map(|inline| Self(Repr::Inline(inline)))
    }

    /// Validates `bytes` as UTF-8 and keeps them: inline (copied) when they
    /// fit, otherwise shared without copying.
    ///
    /// Copying short text out of `bytes` drops this value's hold on the
    /// buffer behind them, so a short payload never keeps a large read
    /// buffer alive.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, Utf8Error> {
        validate(&bytes)?;
        Ok(Self::inline(&bytes).unwrap_or(Self(Repr::Shared(bytes))))
    }

    /// Validates `bytes` as UTF-8 and copies them: inline when they fit (no
    /// allocation), otherwise into one new `Bytes`.
    pub fn copy_from_utf8(bytes: &[u8]) -> Result<Self, Utf8Error> {
        validate(bytes)?;
        Ok(
            Self::inline(bytes)
                .unwrap_or_else(|| Self(Repr::Shared(Bytes::copy_from_slice(bytes)))),
        )
    }

    /// Wraps a static string; no allocation, and cloning touches no
    /// reference count.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Repr::Shared(Bytes::from_static(s.as_bytes())))
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Validating again on every access would cost a pass over the text
        // each time a subscriber reads it.
        // SAFETY: every constructor either validated the bytes as UTF-8
        // (`from_utf8`, `copy_from_utf8`) or took them from a `str`/`String`,
        // and they are never mutated afterwards (`Bytes` is immutable; the
        // inline buffer is private and only written by `inline`).
        unsafe { std::str::from_utf8_unchecked(self.as_bytes()) }
    }

    /// The text's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(inline) => inline.as_bytes(),
            Repr::Shared(bytes) => bytes,
        }
    }

    /// The text as `Bytes`: shared when it is stored that way, a copy (one
    /// allocation) when it is stored inline.
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Inline(_) => Bytes::copy_from_slice(self.as_bytes()),
            Repr::Shared(bytes) => bytes,
        }
    }

    /// Whether the text is stored inline (short: cloning copies it) rather
    /// than shared by reference count.
    #[inline]
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline(_))
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        // Read directly: consumers that only total payload sizes call this
        // once per notification.
        match &self.0 {
            Repr::Inline(inline) => inline.len(),
            Repr::Shared(bytes) => bytes.len(),
        }
    }

    /// Whether the text is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks that `bytes` are UTF-8. ASCII (most channel names and payloads)
/// is checked first: for short text, `str::from_utf8` costs several times
/// more per notification than `<[u8]>::is_ascii`.
fn validate(bytes: &[u8]) -> Result<(), Utf8Error> {
    if !bytes.is_ascii() {
        std::str::from_utf8(bytes)?;
    }
    Ok(())
}

// Equality and order are the text's, whichever way it is stored.
impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Deref for SharedStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        Self::inline(s.as_bytes()).unwrap_or_else(|| Self(Repr::Shared(Bytes::from(s))))
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> Self {
        Self::inline(s.as_bytes())
            .unwrap_or_else(|| Self(Repr::Shared(Bytes::copy_from_slice(s.as_bytes()))))
    }
}

// Hash as the `str` it derefs to, so a map keyed by `SharedStr` can be
// looked up with a `&str` (the `Borrow<str>` contract).
impl std::hash::Hash for SharedStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_invalid_utf8() {
        assert!(SharedStr::from_utf8(Bytes::from_static(&[0xff, 0xfe])).is_err());
        assert!(SharedStr::copy_from_utf8(&[0xff, 0xfe]).is_err());
        assert!(SharedStr::copy_from_utf8(&[0xff; 40]).is_err());
    }

    #[test]
    fn clone_of_long_text_shares_the_same_bytes() {
        let s = SharedStr::from_utf8(Bytes::from(vec![b'a'; 100])).unwrap();
        let t = s.clone();
        assert!(!s.is_inline());
        assert_eq!(s.as_bytes().as_ptr(), t.as_bytes().as_ptr());
    }

    #[test]
    fn text_up_to_the_inline_capacity_is_stored_inline() {
        let fits = "é".repeat(INLINE_CAPACITY / 2) + "x"; // 23 bytes
        assert_eq!(fits.len(), INLINE_CAPACITY);
        let too_long = "y".repeat(INLINE_CAPACITY + 1);
        for (text, inline) in [("", true), (fits.as_str(), true), (&too_long, false)] {
            let made = [
                SharedStr::from(text),
                SharedStr::from(text.to_owned()),
                SharedStr::copy_from_utf8(text.as_bytes()).unwrap(),
                SharedStr::from_utf8(Bytes::copy_from_slice(text.as_bytes())).unwrap(),
            ];
            for s in made {
                assert_eq!(
                    (s.is_inline(), s.as_str(), s.len()),
                    (inline, text, text.len()),
                    "stored inline: expected {inline} for {} bytes",
                    text.len()
                );
                assert_eq!(s.clone().into_bytes(), text.as_bytes());
            }
        }
        assert!(SharedStr::default().is_inline() && SharedStr::default().is_empty());
    }

    #[test]
    fn equality_order_and_hash_ignore_how_the_text_is_stored() {
        use std::hash::{BuildHasher, RandomState};
        let text = "a".repeat(INLINE_CAPACITY);
        let inline = SharedStr::from(text.as_str());
        let shared = SharedStr::from_static(text.clone().leak());
        assert!(inline.is_inline() && !shared.is_inline());
        assert_eq!(inline, shared);
        assert_eq!(inline.cmp(&shared), Ordering::Equal);
        let hasher = RandomState::new();
        assert_eq!(hasher.hash_one(&inline), hasher.hash_one(&shared));
        assert_eq!(hasher.hash_one(&inline), hasher.hash_one(text.as_str()));
        let (short, long) = (SharedStr::from("ab"), SharedStr::from("b".repeat(30)));
        assert_eq!(short.cmp(&long), Ordering::Less);
    }

    #[test]
    fn inline_storage_makes_shared_str_no_larger_than_bytes() {
        assert_eq!(
            std::mem::size_of::<SharedStr>(),
            std::mem::size_of::<Bytes>(),
            "the enum's tag should fit in a niche of Bytes"
        );
    }
}
