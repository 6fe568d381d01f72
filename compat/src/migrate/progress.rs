//! Progress callbacks of a run (the CLI draws them with indicatif).

/// Which part of a run is under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Copying rows.
    Copy,
    /// Reading source and target to compare them.
    Verify,
}

/// Receives progress of a run. Every method has an empty default.
pub trait Progress: Send + Sync {
    /// A phase starts; `rows` and `bytes` are the expected totals where known (for verification:
    /// the rows read on both sides together).
    fn start(&self, phase: Phase, rows: Option<u64>, bytes: Option<u64>) {
        let _ = (phase, rows, bytes);
    }

    /// `rows` more rows of `bytes` key and value bytes were handled in `collection`.
    fn advance(&self, collection: &str, rows: u64, bytes: u64) {
        let _ = (collection, rows, bytes);
    }

    /// The current phase ended.
    fn finish(&self, phase: Phase) {
        let _ = phase;
    }
}

/// Ignores progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
