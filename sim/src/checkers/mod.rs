//! Checkers, one file per property. Each returns a structured report: a [`Verdict`] plus the
//! violations, with the keys, operations and history events involved.
//!
//! - [`linearizable`]: per-key register linearizability (Wing–Gong–Lowe search, bounded).
//! - [`isolation`]: transactional isolation of list-append / rw-register histories (Elle-style,
//!   through the `adya` crate).
//! - [`bank`]: the bank invariant (every full read sums to the initial total, no overdraft).
//! - [`raft_safety`]: Raft safety over per-step node observations (incremental).
//! - [`durability`]: every acknowledged write is visible in the state read after recovery.
//! - [`convergence`]: after the liveness phase, one leader and identical state on every node.
//!
//! A checker never panics on any input; malformed input is an error ([`CheckError`]), and a
//! search that runs out of budget is [`Verdict::Unknown`], never [`Verdict::Valid`].

pub mod bank;
pub mod convergence;
pub mod durability;
pub mod isolation;
pub mod linearizable;
pub mod raft_safety;

use crate::history::HistoryError;

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// The property holds for this input.
    Valid,
    /// At least one violation was found (see the report's violations).
    Invalid,
    /// The checker could not decide (search budget exhausted, or nothing to check against).
    Unknown,
}

impl Verdict {
    /// Combines two verdicts: any `Invalid` wins, then any `Unknown`.
    pub fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Invalid, _) | (_, Verdict::Invalid) => Verdict::Invalid,
            (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
            _ => Verdict::Valid,
        }
    }
}

/// Input a checker cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The history is structurally malformed.
    #[error("malformed history: {0}")]
    History(#[from] HistoryError),
    /// A transaction mixes list-append and rw-register micro-ops (Elle checks one workload).
    #[error(
        "history mixes list-append and rw-register micro-ops (event {index}); check them separately"
    )]
    MixedWorkload { index: u64 },
    /// Two writes of the same value to one key: rw-register and list-append inference needs
    /// unique values per key (the bank workload is checked by `bank`, not `isolation`).
    #[error("value {value} written twice to key {key} (events {first} and {second})")]
    DuplicateWrite {
        key: u64,
        value: u64,
        first: u64,
        second: u64,
    },
    /// A configuration that makes the check meaningless.
    #[error("bad checker configuration: {0}")]
    Config(String),
}
