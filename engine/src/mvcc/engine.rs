//! [`Engine`]: the transactional store on any [`StorageBackend`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::backend::{
    BackendError, BackendStats, CollectionName, CompactionGc, Durability, GcPass, KeyRange,
    ScanRequest, StorageBackend, WriteBatch,
};
use crate::mvcc::error::TxnError;
use crate::mvcc::keys::{Version, VersionedKey, split_versioned};
use crate::mvcc::meta::{self, GC_FLOOR, SEQ_PREFIX, VERSION_LIMIT};
use crate::mvcc::oracle::Oracle;
use crate::mvcc::read::decode_entry;
use crate::mvcc::txn::{ReadTransaction, WriteTransaction};
use crate::mvcc::value::Stored;

/// Isolation level of a write transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Serializable (default): the commit fails if anything the transaction read — keys and
    /// scanned ranges, so phantoms too — was changed by a transaction that committed after its
    /// snapshot.
    #[default]
    Serializable,
    /// Snapshot isolation: reads come from the snapshot and are not validated; the commit fails
    /// only if a transaction that committed after the snapshot wrote a key this one writes
    /// (first committer wins). Allows write skew.
    Snapshot,
}

/// Options of a write transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Isolation level.
    pub isolation: Isolation,
    /// Durability of the commit (default synced).
    pub durability: Durability,
}

/// Options of an [`Engine`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Point-in-time window: the last this-many committed versions stay readable by
    /// time-travel reads even when no snapshot holds them. 0 keeps only what live snapshots
    /// need.
    pub retain_versions: u64,
    /// How often the background garbage collector runs; `None` disables it (call
    /// [`Engine::collect_garbage`] yourself).
    pub gc_interval: Option<Duration>,
    /// How many sequence values one durable lease covers. Larger is cheaper; a crash skips at
    /// most this many values.
    pub sequence_block: u64,
    /// Negative control for tests: skip commit validation entirely, so the isolation tests can
    /// show they fail without it. Never set this in production.
    #[doc(hidden)]
    pub disable_conflict_detection: bool,
    /// Encryption at rest ([`crate::crypto`]): `None` for a plain store. Opening checks the
    /// keyring against the store before anything is written.
    pub encryption: Option<crate::crypto::EncryptionOptions>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            retain_versions: 0,
            gc_interval: Some(Duration::from_secs(10)),
            sequence_block: 1024,
            disable_conflict_detection: false,
            encryption: None,
        }
    }
}

/// A leased block of sequence values: `next..=limit` may be handed out.
#[derive(Debug)]
struct Lease {
    next: u64,
    limit: u64,
}

#[derive(Debug)]
pub(crate) struct EngineInner {
    pub(crate) backend: Arc<dyn StorageBackend>,
    pub(crate) oracle: Arc<Oracle>,
    pub(crate) meta: CollectionName,
    pub(crate) collections: RwLock<BTreeSet<CollectionName>>,
    pub(crate) options: EngineOptions,
    sequences: tokio::sync::Mutex<BTreeMap<Vec<u8>, Lease>>,
    pub(crate) gc_lock: tokio::sync::Mutex<()>,
    /// Plain or sealed values (encryption at rest).
    pub(crate) codec: crate::crypto::ValueCodec,
    /// The durable GC floor, shared with the backend's compaction GC.
    gc_watermark: Arc<AtomicU64>,
    /// Whether the backend collects garbage in its own compactions (fjall).
    compaction_gc: bool,
}

/// The transactional store. Cheap to clone; all clones share one engine.
///
/// # Guarantees
///
/// - **Snapshots.** A transaction reads one consistent version: every commit `≤` its version
///   and nothing newer. A commit becomes visible only after its whole backend batch landed (and,
///   for synced commits, after it is durable), and commits become visible in version order.
/// - **Atomicity.** A commit is one backend batch across all the collections it wrote.
/// - **Isolation.** Serializable by default; snapshot isolation per transaction
///   ([`WriteOptions`]). Read-only transactions never conflict.
/// - **Durability.** Per transaction; concurrent synced commits share one sync.
/// - **Versions survive restart**; a reader never sees a version disappear while it can read it
///   (GC keeps the newest version at or below the oldest live snapshot or retention window).
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
    gc_task: Option<Arc<GcTask>>,
}

#[derive(Debug)]
struct GcTask(tokio::task::AbortHandle);

impl Drop for GcTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one garbage collection pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Versions below this were eligible (the newest version of each key at or below it is
    /// kept unless it is a deletion).
    pub watermark: Version,
    /// Stored versions examined.
    pub versions_scanned: u64,
    /// Superseded versions removed.
    pub versions_removed: u64,
    /// Deletion markers removed (with everything older).
    pub tombstones_removed: u64,
}

/// Engine statistics.
#[derive(Clone, Debug, Serialize)]
pub struct EngineStats {
    /// Newest committed, visible version.
    pub latest_version: Version,
    /// Oldest version time-travel reads may use.
    pub oldest_readable_version: Version,
    /// Read version of the oldest live transaction.
    pub oldest_active_version: Option<Version>,
    /// Live transactions (read and write).
    pub active_transactions: usize,
    /// Committed write sets kept for conflict checks.
    pub tracked_commits: usize,
    /// The backend's own statistics.
    pub backend: BackendStats,
}

/// Version counts of one collection, from a full scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VersionCounts {
    /// Keys whose newest version is a value.
    pub live_keys: u64,
    /// Stored versions, including deletion markers.
    pub versions: u64,
    /// Stored deletion markers.
    pub tombstones: u64,
}

impl Engine {
    /// Opens the engine on `backend`: creates the metadata collection if needed and restores
    /// the oracle from it.
    ///
    /// With [`EngineOptions::encryption`], or on a store that is encrypted, opening checks
    /// the keyring against the key check values the store recorded, before anything is
    /// written: an encrypted store without a key, with a wrong key, or missing a key id its
    /// values still use is refused; a new store is encrypted; a non-empty plain store is
    /// refused unless [`EncryptionOptions::encrypt_existing`](crate::crypto::EncryptionOptions)
    /// is set.
    ///
    /// # Errors
    ///
    /// Backend errors, or [`TxnError::Corrupted`] if a metadata record fails its checksum;
    /// [`TxnError::Encryption`] as above.
    pub async fn open(
        backend: Arc<dyn StorageBackend>,
        options: EngineOptions,
    ) -> Result<Self, TxnError> {
        let meta = CollectionName::system(meta::META_COLLECTION).map_err(BackendError::from)?;
        backend.create_collection(&meta).await?;
        // Every version ever handed out is at or below the leased limit, so resuming there
        // shows every commit; the versions in between are simply unused.
        let last = meta::read_u64(&*backend, &meta, VERSION_LIMIT)
            .await?
            .unwrap_or(0);
        let floor = meta::read_u64(&*backend, &meta, GC_FLOOR)
            .await?
            .unwrap_or(0);
        let collections: BTreeSet<CollectionName> = backend
            .list_collections()
            .await?
            .into_iter()
            .filter(|c| !c.is_system())
            .collect();
        let codec = crate::crypto::open_store(
            &*backend,
            options.encryption.as_ref(),
            last == 0 && collections.is_empty(),
        )
        .await?;
        let floor = floor.min(last);
        let gc_watermark = Arc::new(AtomicU64::new(floor));
        let compaction_gc = backend.set_compaction_gc(Arc::new(MvccCompactionGc {
            watermark: Arc::clone(&gc_watermark),
        }));
        let inner = Arc::new(EngineInner {
            backend,
            oracle: Arc::new(Oracle::new(last, floor)),
            meta,
            collections: RwLock::new(collections),
            options: options.clone(),
            sequences: tokio::sync::Mutex::new(BTreeMap::new()),
            gc_lock: tokio::sync::Mutex::new(()),
            codec,
            gc_watermark,
            compaction_gc,
        });
        let gc_task = match (options.gc_interval, tokio::runtime::Handle::try_current()) {
            (Some(interval), Ok(handle)) => {
                let weak = Arc::downgrade(&inner);
                let task = handle.spawn(gc_loop(weak, interval));
                Some(Arc::new(GcTask(task.abort_handle())))
            }
            _ => None,
        };
        Ok(Self { inner, gc_task })
    }

    /// The backend underneath.
    #[must_use]
    pub fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.inner.backend
    }

    /// The newest committed, visible version.
    #[must_use]
    pub fn latest_version(&self) -> Version {
        self.inner.oracle.published()
    }

    /// Creates a user collection (idempotent); returns whether it was created.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn create_collection(&self, name: &CollectionName) -> Result<bool, TxnError> {
        let created = self.inner.backend.create_collection(name).await?;
        self.inner.collections_mut().insert(name.clone());
        Ok(created)
    }

    /// Drops a user collection with all its versions; returns whether it existed. Not
    /// transactional: snapshots that could still read the collection see it vanish.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn drop_collection(&self, name: &CollectionName) -> Result<bool, TxnError> {
        self.inner.collections_mut().remove(name);
        Ok(self.inner.backend.drop_collection(name).await?)
    }

    /// User collections, ascending.
    #[must_use]
    pub fn collections(&self) -> Vec<CollectionName> {
        self.inner.collections_read().iter().cloned().collect()
    }

    /// A read-only transaction at the latest version.
    #[must_use]
    pub fn begin_read(&self) -> ReadTransaction {
        let version = self.inner.oracle.begin_latest();
        ReadTransaction::new(Arc::clone(&self.inner), version)
    }

    /// A read-only transaction at an older committed version (time travel).
    ///
    /// # Errors
    ///
    /// [`TxnError::VersionNotRetained`] below the GC floor, [`TxnError::VersionNotCommitted`]
    /// above the latest version.
    pub fn begin_read_at(&self, version: Version) -> Result<ReadTransaction, TxnError> {
        match self.inner.oracle.begin_at(version) {
            Ok(()) => Ok(ReadTransaction::new(Arc::clone(&self.inner), version)),
            Err((_, latest)) if version > latest => Err(TxnError::VersionNotCommitted {
                requested: version,
                latest,
            }),
            Err((floor, _)) => Err(TxnError::VersionNotRetained {
                requested: version,
                oldest_retained: floor,
            }),
        }
    }

    /// A write transaction: serializable, synced commit.
    #[must_use]
    pub fn begin_write(&self) -> WriteTransaction {
        self.begin_write_with(WriteOptions::default())
    }

    /// A write transaction with explicit options.
    #[must_use]
    pub fn begin_write_with(&self, options: WriteOptions) -> WriteTransaction {
        let version = self.inner.oracle.begin_latest();
        WriteTransaction::new(Arc::clone(&self.inner), version, options)
    }

    /// The next value of sequence `name`: starts at 1, strictly increasing, unique under
    /// concurrency and across restarts (a crash may skip up to
    /// [`EngineOptions::sequence_block`] values, never repeat one).
    ///
    /// # Errors
    ///
    /// [`TxnError::InvalidSequenceName`] for an empty or over-long name; backend errors when a
    /// new lease cannot be made durable.
    pub async fn next_seq(&self, name: &[u8]) -> Result<u64, TxnError> {
        if name.is_empty() || name.len() > 1024 {
            return Err(TxnError::InvalidSequenceName {
                name: String::from_utf8_lossy(name).into_owned(),
                reason: "names are 1..=1024 bytes",
            });
        }
        let inner = &self.inner;
        let mut sequences = inner.sequences.lock().await;
        if !sequences.contains_key(name) {
            let stored = meta::read_u64(&*inner.backend, &inner.meta, &seq_key(name))
                .await?
                .unwrap_or(0);
            sequences.insert(
                name.to_vec(),
                Lease {
                    next: stored + 1,
                    limit: stored,
                },
            );
        }
        let Some(lease) = sequences.get_mut(name) else {
            return Err(TxnError::Task("sequence lease vanished".to_owned()));
        };
        if lease.next > lease.limit {
            let limit = lease
                .limit
                .saturating_add(inner.options.sequence_block.max(1));
            let key = seq_key(name);
            let mut batch = WriteBatch::new();
            batch.put(&inner.meta, key.clone(), meta::encode_u64(&key, limit));
            inner.backend.write(batch, Durability::Synced).await?;
            lease.limit = limit;
        }
        let value = lease.next;
        lease.next += 1;
        Ok(value)
    }

    /// Removes versions no reader can see any more. See [`GcReport`].
    ///
    /// # Errors
    ///
    /// Backend errors; [`TxnError::Corrupted`] for undecodable entries (nothing is deleted on
    /// their account).
    pub async fn collect_garbage(&self) -> Result<GcReport, TxnError> {
        self.inner.collect_garbage().await
    }

    /// Advances the GC watermark (and makes it durable) without sweeping: backends that collect
    /// garbage in their own compactions (fjall) then drop superseded versions as they compact.
    /// Returns the watermark.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn advance_gc_watermark(&self) -> Result<Version, TxnError> {
        let _one_at_a_time = self.inner.gc_lock.lock().await;
        self.inner.advance_watermark().await
    }

    /// Whether the backend drops superseded versions in its own compactions.
    #[must_use]
    pub fn backend_collects_garbage(&self) -> bool {
        self.inner.compaction_gc
    }

    /// Statistics.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn stats(&self) -> Result<EngineStats, TxnError> {
        let oracle = &self.inner.oracle;
        let tracked_commits = oracle.commit.lock().await.recent.len();
        Ok(EngineStats {
            latest_version: oracle.published(),
            oldest_readable_version: oracle.gc_floor(),
            oldest_active_version: oracle.oldest_active(),
            active_transactions: oracle.active_count(),
            tracked_commits,
            backend: self.inner.backend.stats().await?,
        })
    }

    /// Counts keys, versions and deletion markers of a collection (a full scan).
    ///
    /// # Errors
    ///
    /// Backend errors, [`TxnError::Corrupted`].
    pub async fn version_counts(
        &self,
        collection: &CollectionName,
    ) -> Result<VersionCounts, TxnError> {
        let mut counts = VersionCounts::default();
        let mut current: Option<Vec<u8>> = None;
        let mut request = Some(ScanRequest::forward(KeyRange::all(), 1024));
        while let Some(req) = request.take() {
            let page = self.inner.backend.scan(collection, &req).await?;
            request = req.next_page(&page);
            for (key, stored) in page.entries {
                let (vk, value) = decode_entry(&self.inner.codec, collection, key, stored)?;
                counts.versions += 1;
                let newest = current.as_deref() != Some(vk.encoded_part());
                if matches!(value, Stored::Tombstone) {
                    counts.tombstones += 1;
                } else if newest {
                    counts.live_keys += 1;
                }
                if newest {
                    current = Some(vk.encoded_part().to_vec());
                }
            }
        }
        Ok(counts)
    }

    /// Stops the background GC and closes the backend (which makes every acknowledged commit
    /// durable).
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn close(&self) -> Result<(), TxnError> {
        if let Some(task) = &self.gc_task {
            task.0.abort();
        }
        let _gc = self.inner.gc_lock.lock().await;
        {
            // A clean shutdown hands back the unused rest of the version lease, so the next
            // open resumes right after the last commit (only a crash skips versions). Holding
            // the commit lock keeps new commits out.
            let mut state = self.inner.oracle.commit.lock().await;
            // In Raft mode versions are published without passing through `last_assigned`.
            let last = state.last_assigned.max(self.inner.oracle.published());
            if state.leased_until > last {
                let mut batch = WriteBatch::new();
                batch.put(
                    &self.inner.meta,
                    VERSION_LIMIT.to_vec(),
                    meta::encode_u64(VERSION_LIMIT, last),
                );
                match self.inner.backend.write(batch, Durability::Synced).await {
                    // Already closed: the caller gets the `Closed` error from below.
                    Ok(()) | Err(BackendError::Closed { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                state.leased_until = last;
            }
        }
        Ok(self.inner.backend.close().await?)
    }
}

pub(crate) fn seq_key(name: &[u8]) -> Vec<u8> {
    let mut key = SEQ_PREFIX.to_vec();
    key.extend_from_slice(name);
    key
}

/// Backends with compaction GC still get a full sweep every this many passes: compactions
/// never see versions still in memory, and they keep deletion markers.
const SWEEP_EVERY: u64 = 10;

async fn gc_loop(engine: Weak<EngineInner>, interval: Duration) {
    let mut passes = 0u64;
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        passes += 1;
        let pass = if inner.compaction_gc && !passes.is_multiple_of(SWEEP_EVERY) {
            // The backend's compactions do the removing; only the watermark moves.
            let _one_at_a_time = inner.gc_lock.lock().await;
            inner.advance_watermark().await.map(|_| ())
        } else {
            inner.collect_garbage().await.map(|_| ())
        };
        if let Err(e) = pass {
            if matches!(e, TxnError::Backend(BackendError::Closed { .. })) {
                return;
            }
            tracing::warn!(error = %e, "background garbage collection failed");
        }
    }
}

impl EngineInner {
    pub(crate) fn collections_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeSet<CollectionName>> {
        self.collections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn collections_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<CollectionName>> {
        self.collections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn check_collection(&self, name: &CollectionName) -> Result<(), TxnError> {
        if self.collections_read().contains(name) {
            Ok(())
        } else {
            Err(TxnError::CollectionNotFound {
                collection: name.clone(),
            })
        }
    }

    /// Raises the GC floor, makes it durable, then publishes it to the compaction GC. Caller
    /// holds `gc_lock`.
    async fn advance_watermark(&self) -> Result<Version, TxnError> {
        let watermark = self.oracle.advance_gc_floor(self.options.retain_versions);
        // Persist the floor before deleting anything, so that after a restart no time-travel
        // read starts below versions that may be gone.
        let mut batch = WriteBatch::new();
        batch.put(
            &self.meta,
            GC_FLOOR.to_vec(),
            meta::encode_u64(GC_FLOOR, watermark),
        );
        self.backend.write(batch, Durability::Synced).await?;
        self.gc_watermark.fetch_max(watermark, Ordering::AcqRel);
        Ok(watermark)
    }

    async fn collect_garbage(&self) -> Result<GcReport, TxnError> {
        let _one_at_a_time = self.gc_lock.lock().await;
        let watermark = self.advance_watermark().await?;
        let mut report = GcReport {
            watermark,
            ..GcReport::default()
        };
        let collections: Vec<CollectionName> = self.collections_read().iter().cloned().collect();
        for collection in collections {
            match self.sweep(&collection, watermark, &mut report).await {
                Ok(()) | Err(TxnError::CollectionNotFound { .. }) => {}
                Err(TxnError::Backend(BackendError::CollectionNotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        crate::metrics::gc(
            report.versions_scanned,
            report.versions_removed,
            report.tombstones_removed,
        );
        Ok(report)
    }

    /// Per key, newest first: keep every version above the watermark and the newest one at or
    /// below it (unless that is a deletion marker); delete the rest.
    async fn sweep(
        &self,
        collection: &CollectionName,
        watermark: Version,
        report: &mut GcReport,
    ) -> Result<(), TxnError> {
        const FLUSH_AT: usize = 1024;
        let mut current: Option<Vec<u8>> = None;
        let mut kept_at_or_below = false;
        let mut deletes = WriteBatch::new();
        let mut request = Some(ScanRequest::forward(KeyRange::all(), 1024));
        while let Some(req) = request.take() {
            let page = self.backend.scan(collection, &req).await?;
            request = req.next_page(&page);
            for (key, stored) in page.entries {
                let (vk, value): (VersionedKey, Stored) =
                    decode_entry(&self.codec, collection, key, stored)?;
                report.versions_scanned += 1;
                if current.as_deref() != Some(vk.encoded_part()) {
                    current = Some(vk.encoded_part().to_vec());
                    kept_at_or_below = false;
                }
                if vk.version() > watermark {
                    continue;
                }
                if kept_at_or_below {
                    deletes.delete(collection, vk.into_bytes());
                    report.versions_removed += 1;
                } else {
                    // The newest version at or below the watermark: what readers at the
                    // watermark see. A deletion marker there hides everything older, so it
                    // and everything older can go.
                    kept_at_or_below = true;
                    if matches!(value, Stored::Tombstone) {
                        deletes.delete(collection, vk.into_bytes());
                        report.tombstones_removed += 1;
                    }
                }
                if deletes.len() >= FLUSH_AT {
                    let full = std::mem::take(&mut deletes);
                    self.backend.write(full, Durability::Buffered).await?;
                }
            }
        }
        if !deletes.is_empty() {
            self.backend.write(deletes, Durability::Buffered).await?;
        }
        Ok(())
    }
}

/// The engine's [`CompactionGc`]: per key, drops every version at or below the durable GC
/// floor that is older than a version at or below the floor seen earlier in the same
/// compaction. Deletion markers are kept (dropping one could uncover an older version that
/// this compaction does not see); explicit sweeps remove them.
#[derive(Debug)]
struct MvccCompactionGc {
    watermark: Arc<AtomicU64>,
}

impl CompactionGc for MvccCompactionGc {
    fn start_pass(&self, collection: &str) -> Option<Box<dyn GcPass>> {
        if collection.starts_with(crate::limits::SYSTEM_COLLECTION_PREFIX) {
            return None;
        }
        Some(Box::new(MvccGcPass {
            watermark: self.watermark.load(Ordering::Acquire),
            current: Vec::new(),
            kept_at_or_below: false,
        }))
    }
}

#[derive(Debug)]
struct MvccGcPass {
    watermark: Version,
    current: Vec<u8>,
    kept_at_or_below: bool,
}

impl GcPass for MvccGcPass {
    fn drop_key(&mut self, key: &[u8]) -> bool {
        let Some((encoded, version)) = split_versioned(key) else {
            return false;
        };
        if self.current != encoded {
            self.current.clear();
            self.current.extend_from_slice(encoded);
            self.kept_at_or_below = false;
        }
        if version > self.watermark {
            return false;
        }
        if self.kept_at_or_below {
            true
        } else {
            self.kept_at_or_below = true;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::keys::EncodedKey;

    #[test]
    fn compaction_pass_keeps_the_newest_version_at_or_below_the_watermark() {
        let gc = MvccCompactionGc {
            watermark: Arc::new(AtomicU64::new(10)),
        };
        assert!(
            gc.start_pass("__meta").is_none(),
            "system collections are not versioned"
        );
        let Some(mut pass) = gc.start_pass("users") else {
            panic!("user collections get a pass");
        };
        let a = EncodedKey::encode(b"a");
        let b = EncodedKey::encode(b"b");
        // Ascending stored order: newest version of a key first.
        let decisions: Vec<bool> = [a.at(12), a.at(10), a.at(7), a.at(3), b.at(9), b.at(2)]
            .iter()
            .map(|k| pass.drop_key(k.as_bytes()))
            .collect();
        assert_eq!(decisions, [false, false, true, true, false, true]);
        assert!(!pass.drop_key(b"short"), "unparseable keys are kept");
    }
}
