//! The simulation's own seeded generator (SplitMix64): every random choice of
//! a schedule comes from here, so a seed replays exactly.

use std::time::Duration;

use crate::sim_server::rng::Rng;

/// A small seedable generator; not for cryptography. The simulated
/// server's SplitMix64 underneath, with the schedule's own helpers on top.
#[derive(Debug, Clone)]
pub(crate) struct SimRng(Rng);

impl SimRng {
    pub(crate) fn new(seed: u64) -> Self {
        // Spread nearby seeds apart before the first draw.
        Self(Rng::new(seed ^ 0x5DEE_CE66_D1CE_4E5B))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (`0` when `n == 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index chosen with the given weights.
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }

    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.between(lo, hi))
    }
}
