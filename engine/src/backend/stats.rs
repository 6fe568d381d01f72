//! Backend statistics.

use serde::Serialize;

use super::CollectionName;

/// Which engine a backend runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Ordered maps in process memory.
    Memory,
    /// The fjall LSM-tree.
    Fjall,
    /// The redb copy-on-write B-tree.
    Redb,
    /// Anything else (a test double, a simulator backend).
    Other(&'static str),
}

impl BackendKind {
    /// Lower-case name, as used in configuration.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Fjall => "fjall",
            Self::Redb => "redb",
            Self::Other(name) => name,
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A statistics snapshot. Figures marked approximate come from engine metadata and may lag or
/// over-count (an LSM counts overwritten and deleted keys until compaction).
#[derive(Clone, Debug, Serialize)]
pub struct BackendStats {
    /// The engine.
    pub backend: BackendKind,
    /// Bytes the store occupies on disk (approximate), `None` for in-memory stores.
    pub disk_bytes: Option<u64>,
    /// One entry per collection, in name order.
    pub collections: Vec<CollectionStats>,
    /// Engine-specific figures as name/value pairs (journal count, cache use, …).
    pub details: Vec<(String, u64)>,
}

/// Statistics of one collection.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionStats {
    /// The collection.
    pub name: CollectionName,
    /// Number of keys (exact where `keys_exact`, else an estimate).
    pub keys: u64,
    /// Whether `keys` is exact.
    pub keys_exact: bool,
    /// Bytes on disk for this collection where the engine reports it per collection.
    pub disk_bytes: Option<u64>,
}
