//! Optional backend hook: let the engine's garbage collection ride on the backend's own
//! background compaction (fjall's compaction filters) instead of explicit sweeps.

/// Decides, during a backend's compaction, which stored keys are superseded versions that no
/// reader can see any more. Implemented by the MVCC engine; called by backends that support it.
pub trait CompactionGc: Send + Sync + 'static {
    /// Starts a pass over one ascending run of `collection`'s keys. `None`: keep everything
    /// (the collection is not versioned).
    fn start_pass(&self, collection: &str) -> Option<Box<dyn GcPass>>;
}

/// One compaction's ascending walk over a collection's keys.
pub trait GcPass: Send {
    /// Called for every key in ascending order; `true` drops it. Must be conservative: it sees
    /// only the keys of this compaction, not the whole collection.
    fn drop_key(&mut self, key: &[u8]) -> bool;
}
