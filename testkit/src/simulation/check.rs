//! What a failed check reports, and the count of checks made.

use std::fmt;

/// A broken invariant: which one (1–10, as numbered in ARCHITECTURE.md), what was expected and
/// what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's number, 1–10, as in ARCHITECTURE.md's "Invariants".
    pub invariant: u8,
    /// "expected ..., got ...".
    pub message: String,
}

impl Violation {
    pub(crate) fn new(invariant: u8, message: impl Into<String>) -> Self {
        Self {
            invariant,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} ({}): {}",
            self.invariant,
            invariant_name(self.invariant),
            self.message
        )
    }
}

impl std::error::Error for Violation {}

/// The short name of invariant `n` (ARCHITECTURE.md's numbering).
pub fn invariant_name(n: u8) -> &'static str {
    match n {
        1 => "order",
        2 => "no silent loss",
        3 => "ready means listening",
        4 => "nothing after unsubscribe",
        5 => "convergence",
        6 => "bounded memory",
        7 => "reconnect",
        8 => "liveness",
        9 => "bad input",
        10 => "publish",
        _ => "harness",
    }
}

/// How many times each invariant was checked (index = invariant number).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckCounts(pub [u64; 11]);

impl CheckCounts {
    pub(crate) fn hit(&mut self, invariant: u8) {
        self.0[usize::from(invariant)] += 1;
    }

    pub(crate) fn add(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Every check made.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}
