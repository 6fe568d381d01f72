//! The `StorageBackend` contract.
//!
//! A backend is a plain ordered byte map per named collection. It knows nothing of MVCC
//! versions, transactions or Raft: those layers encode everything they need into keys and
//! values and rely only on the clauses below. Every clause is numbered; the conformance suite
//! ([`crate::testing::conformance`]) has at least one case per clause and runs on every backend.

mod batch;
mod collection;
mod error;
mod gc;
mod range;
mod stats;

use async_trait::async_trait;

pub use batch::{BatchOp, Durability, WriteBatch};
pub use collection::{CollectionName, CollectionNameError, NameProblem};
pub use error::{BackendError, EngineError, KeyPreview, KeyProblem, catch_engine_panic};
pub use gc::{CompactionGc, GcPass};
pub use range::{Direction, KeyRange, ScanPage, ScanRequest, prefix_successor};
pub use stats::{BackendKind, BackendStats, CollectionStats};

/// An ordered, durable byte map per named collection, with atomic multi-collection batches.
///
/// Held as `Arc<dyn StorageBackend>` so configuration picks the engine at run time.
///
/// # Contract
///
/// - **C1 Collections.** [`create_collection`](Self::create_collection) is idempotent and
///   reports whether it created the collection. [`list_collections`](Self::list_collections)
///   returns every collection (user and system) in ascending name order.
///   [`drop_collection`](Self::drop_collection) removes a collection with all its entries and
///   reports whether it existed; creating it again yields an empty collection.
/// - **C2 Isolation of collections.** Collections are independent key spaces: a key written to
///   one is invisible in every other, and dropping one leaves the others untouched.
/// - **C3 Unknown collections.** `open_collection`, `get`, `scan` and `write` on a collection that
///   does not exist fail with [`BackendError::CollectionNotFound`]; a batch naming one is
///   rejected whole and changes nothing.
/// - **C4 Read your writes.** Every call that starts after [`write`](Self::write) returned `Ok`
///   observes that batch, whatever its [`Durability`].
/// - **C5 Order.** Keys compare as unsigned byte strings (a key sorts before every longer key it
///   is a prefix of; `0x00` and `0xFF` are ordinary bytes). [`scan`](Self::scan) returns exactly
///   the entries inside the request's [`KeyRange`] — every bound kind, at either end — ascending
///   for [`Direction::Forward`] and descending for [`Direction::Reverse`]. A range that is empty
///   by its bounds yields no entries. [`seek`](Self::seek) returns exactly the first entry of
///   the inclusive range `start..=end` (none if `start > end`).
/// - **C6 Pages.** A scan returns at most `limit` entries. [`ScanPage::resume`] is set exactly
///   when the page is full; scanning it (same direction) continues right after the last
///   returned key, so the pages of an undisturbed store concatenate to the whole range with no
///   key missing or repeated. A single page never contains part of a batch.
/// - **C7 Atomic batches.** A [`WriteBatch`] spanning any number of collections is applied all
///   or nothing, in memory and across a crash. No reader observes part of it. Within a batch
///   the later operation on a key wins. An empty batch is a no-op.
/// - **C8 Deletes.** Deleting an absent key succeeds; a deleted key is absent from `get` and
///   from scans.
/// - **C9 Durability.** With [`Durability::Synced`], the batch and every batch acknowledged
///   before it are on stable storage when `write` returns `Ok`. A [`Durability::Buffered`]
///   batch may be lost by a crash until a later synced batch or [`sync`](Self::sync) returns,
///   but only whole, and only as a suffix: a batch never survives a crash that loses a batch
///   acknowledged before it was submitted.
/// - **C10 Sync.** [`sync`](Self::sync) makes every batch acknowledged before the call durable.
///   Concurrent synced writes and syncs may share one engine sync (group commit); the blocking
///   part runs off the async executor's worker threads.
/// - **C11 Persistence.** For a persistent backend ([`is_persistent`](Self::is_persistent)),
///   closing and reopening the same location shows every collection and every entry that was
///   acknowledged before [`close`](Self::close). An in-memory backend starts empty.
/// - **C12 Close.** `close` makes every acknowledged batch durable and releases the engine
///   (files, locks), so the location can be reopened in the same process. Every later call,
///   including another `close`, fails with [`BackendError::Closed`].
/// - **C13 Input limits.** Empty or oversized keys, oversized values and page limits outside
///   `1..=`[`MAX_SCAN_LIMIT`](crate::limits::MAX_SCAN_LIMIT) fail with a typed error before the
///   engine is called and change nothing. Collection names are valid by construction
///   ([`CollectionName`]).
/// - **C14 Stats.** [`stats`](Self::stats) lists every collection with a key count (exact or
///   flagged approximate) and reports disk use where the backend has a disk.
/// - **C15 Concurrency.** All methods may be called concurrently from any number of tasks and
///   threads.
/// - **C16 Compaction GC (optional).** A backend that accepts
///   [`set_compaction_gc`](Self::set_compaction_gc) drops, during its own background
///   compaction, exactly the keys the installed [`CompactionGc`] marks, and never any other.
/// - **C17 Compaction (optional).** [`compact`](Self::compact) runs the engine's own full
///   compaction (fjall: flush and major compaction of every keyspace; redb: `Database::compact`,
///   which returns free pages to the file system) and reports whether it ran one. Every entry
///   reads back unchanged afterwards (except those an installed [`CompactionGc`] drops, C16).
///   The default runs nothing and returns `false`. A backend may refuse while the engine cannot
///   compact (redb: a live read transaction or savepoint) with an error, changing nothing.
#[async_trait]
pub trait StorageBackend: Send + Sync + 'static {
    /// Which engine this is.
    fn kind(&self) -> BackendKind;

    /// Whether data survives close and reopen (C11).
    fn is_persistent(&self) -> bool;

    /// Creates `name` if it does not exist; returns whether it was created (C1).
    async fn create_collection(&self, name: &CollectionName) -> Result<bool, BackendError>;

    /// Succeeds if `name` exists, else [`BackendError::CollectionNotFound`] (C3).
    async fn open_collection(&self, name: &CollectionName) -> Result<(), BackendError>;

    /// Every collection, ascending by name (C1).
    async fn list_collections(&self) -> Result<Vec<CollectionName>, BackendError>;

    /// Removes `name` and all its entries; returns whether it existed (C1, C2).
    async fn drop_collection(&self, name: &CollectionName) -> Result<bool, BackendError>;

    /// The value stored under `key`, if any (C3, C4, C8, C13).
    async fn get(
        &self,
        collection: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError>;

    /// The first entry with `start <= key <= end`, if any (C5) — the MVCC layer's "newest
    /// version at or below a read version" in one call. Bounds are not keys: any bytes are
    /// accepted. The default runs a one-entry [`scan`](Self::scan); backends override it to
    /// skip the page bookkeeping.
    async fn seek(
        &self,
        collection: &CollectionName,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, BackendError> {
        let request = ScanRequest::forward(KeyRange::inclusive(start, end), 1);
        Ok(self
            .scan(collection, &request)
            .await?
            .entries
            .into_iter()
            .next())
    }

    /// One page of an ordered scan (C5, C6, C13).
    async fn scan(
        &self,
        collection: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError>;

    /// Applies `batch` atomically with the requested durability (C3, C7, C9, C13).
    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError>;

    /// Makes every acknowledged batch durable (C10).
    async fn sync(&self) -> Result<(), BackendError>;

    /// Statistics (C14).
    async fn stats(&self) -> Result<BackendStats, BackendError>;

    /// Syncs and releases the engine; later calls fail with [`BackendError::Closed`] (C12).
    async fn close(&self) -> Result<(), BackendError>;

    /// Runs the engine's own integrity check where it has one (redb: `check_integrity`):
    /// `Some(passed)`, or `None` when the backend has no such check.
    async fn check_integrity(&self) -> Result<Option<bool>, BackendError> {
        Ok(None)
    }

    /// Runs the engine's full compaction (C17); returns whether it ran one. Blocking work runs
    /// off the executor's worker threads.
    async fn compact(&self) -> Result<bool, BackendError> {
        Ok(false)
    }

    /// Engine-specific figures too costly for [`stats`](Self::stats) (redb: per-table B-tree
    /// statistics), for `zstore inspect`. The default has none.
    async fn inspect_details(&self) -> Result<Vec<(String, u64)>, BackendError> {
        Ok(Vec::new())
    }

    /// Installs a compaction-time garbage collector (C16); returns whether the backend uses it.
    /// The default declines, and the engine then sweeps explicitly.
    fn set_compaction_gc(&self, gc: std::sync::Arc<dyn CompactionGc>) -> bool {
        let _ = gc;
        false
    }
}

impl std::fmt::Debug for dyn StorageBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StorageBackend({})", self.kind())
    }
}
