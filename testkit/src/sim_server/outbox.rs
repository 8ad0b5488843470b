//! The bytes a backend has written and the client has not read yet, each
//! held until the virtual time it may be delivered.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A FIFO of byte chunks with release times.
///
/// Release times never decrease, so a shorter delay set later cannot
/// overtake bytes written earlier: the stream keeps its order as TCP would.
#[derive(Debug)]
pub(crate) struct Outbox {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    delay: Duration,
    /// Set while the connection is black-holed: writes go to `sink` and are
    /// thrown away.
    discarding: bool,
    sink: Vec<u8>,
}

impl Outbox {
    pub(crate) fn new(delay: Duration) -> Self {
        Self {
            chunks: VecDeque::new(),
            delay,
            discarding: false,
            sink: Vec::new(),
        }
    }

    pub(crate) fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    /// Throws away everything written from now on, and what is still held.
    pub(crate) fn discard(&mut self) {
        self.discarding = true;
        self.chunks.clear();
    }

    pub(crate) fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// The buffer to append messages written at `now` to.
    pub(crate) fn writer(&mut self, now: Instant) -> &mut Vec<u8> {
        if self.discarding {
            self.sink.clear();
            return &mut self.sink;
        }
        let mut release = now + self.delay;
        let same_release = match self.chunks.back() {
            Some(&(last, _)) => {
                release = release.max(last);
                last == release
            }
            None => false,
        };
        if !same_release {
            self.chunks.push_back((release, Vec::new()));
        }
        match self.chunks.back_mut() {
            Some((_, chunk)) => chunk,
            None => &mut self.sink,
        }
    }

    /// Moves every byte released at or before `now` into `buf`.
    pub(crate) fn poll(&mut self, now: Instant, buf: &mut Vec<u8>) -> usize {
        let mut moved = 0;
        while let Some((release, _)) = self.chunks.front()
            && *release <= now
        {
            if let Some((_, chunk)) = self.chunks.pop_front() {
                moved += chunk.len();
                buf.extend_from_slice(&chunk);
            }
        }
        moved
    }

    /// When the next held bytes become readable.
    pub(crate) fn next_release(&self) -> Option<Instant> {
        self.chunks
            .iter()
            .find(|(_, chunk)| !chunk.is_empty())
            .map(|&(release, _)| release)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.iter().all(|(_, chunk)| chunk.is_empty())
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
    }
}
