//! [`SimMemoryBackend`]: ordered maps in memory with a durable image that loses unsynced writes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use zcore_engine::limits::{check_key, check_scan_limit};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionStats, Direction,
    Durability, ScanPage, ScanRequest, StorageBackend, WriteBatch,
};

use super::faults::{Access, RuntimeFaults};
use super::{DeadFlag, DiskFaults};

/// The kind name the simulated memory backend reports.
pub const SIM_MEMORY_KIND: BackendKind = BackendKind::Other("sim-memory");
const KIND: BackendKind = SIM_MEMORY_KIND;

type Collection = BTreeMap<Vec<u8>, Vec<u8>>;
type Collections = BTreeMap<CollectionName, Collection>;

/// One change applied to the volatile image and not yet durable.
#[derive(Debug, Clone)]
enum Change {
    Create(CollectionName),
    Drop(CollectionName),
    Batch(Vec<BatchOp>),
}

fn apply_change(state: &mut Collections, change: Change) {
    match change {
        Change::Create(name) => {
            state.entry(name).or_default();
        }
        Change::Drop(name) => {
            state.remove(&name);
        }
        Change::Batch(ops) => {
            for op in ops {
                match op {
                    BatchOp::Put {
                        collection,
                        key,
                        value,
                    } => {
                        if let Some(map) = state.get_mut(&collection) {
                            map.insert(key, value);
                        }
                    }
                    BatchOp::Delete { collection, key } => {
                        if let Some(map) = state.get_mut(&collection) {
                            map.remove(&key);
                        }
                    }
                }
            }
        }
    }
}

fn bytes_of(state: &Collections) -> u64 {
    state
        .values()
        .flat_map(|c| c.iter())
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum()
}

/// The memory "disk" of one node: what the running process sees (`volatile`, the page cache)
/// and what survives a power loss (`durable`). Held by the harness through a
/// [`SimDisk`](super::SimDisk), outside every host future.
#[derive(Debug, Default)]
pub(crate) struct MemoryImage {
    volatile: Collections,
    volatile_bytes: u64,
    durable: Collections,
    /// Changes in `volatile` that `durable` does not have yet, oldest first.
    pending: Vec<Change>,
}

impl MemoryImage {
    fn flush(&mut self) {
        for change in self.pending.drain(..) {
            apply_change(&mut self.durable, change);
        }
    }

    /// Power loss: the process memory and the page cache are gone; what was durable is what is
    /// left.
    pub(crate) fn power_loss(&mut self) {
        self.pending.clear();
        self.volatile = self.durable.clone();
        self.volatile_bytes = bytes_of(&self.volatile);
    }

    pub(crate) fn durable_bytes(&self) -> u64 {
        bytes_of(&self.durable)
    }

    pub(crate) fn pending_changes(&self) -> usize {
        self.pending.len()
    }
}

/// The memory backend of the simulator. See the [module docs](super).
///
/// Every call runs inline on the calling task (no threads, no blocking pool). Writes land in
/// the volatile image; a [`Durability::Synced`] batch, [`sync`](StorageBackend::sync) and
/// [`close`](StorageBackend::close) make everything written so far durable. A crash
/// ([`SimDisk::power_loss`](super::SimDisk::power_loss)) replaces the volatile image by the
/// durable one; a process restart keeps it.
///
/// Faults: the fixed [`DiskFaults`] (early sync, EIO on writes and syncs, capacity), and the
/// disk's run-time [`DiskControl`](super::DiskControl): EIO on reads, writes, syncs and
/// collection create/drop, and a full disk (capacity = the volatile image's bytes when it was
/// switched on, plus the slack). A write refused by a fault applies nothing; a failed sync
/// leaves what was written in the volatile image only (as a failed `fsync` leaves the page
/// cache).
pub struct SimMemoryBackend {
    image: Arc<Mutex<MemoryImage>>,
    runtime: RuntimeFaults,
    faults: DiskFaults,
    lying_sync: bool,
    dead: DeadFlag,
    closed: AtomicBool,
}

impl std::fmt::Debug for SimMemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMemoryBackend")
            .field("lying_sync", &self.lying_sync)
            .field("dead", &self.dead.is_dead())
            .finish_non_exhaustive()
    }
}

fn fault(operation: &'static str, collection: Option<&CollectionName>, what: &str) -> BackendError {
    BackendError::engine(
        KIND,
        operation,
        collection,
        std::io::Error::other(what.to_owned()),
    )
}

fn not_found(name: &CollectionName) -> BackendError {
    BackendError::CollectionNotFound {
        collection: name.clone(),
    }
}

impl SimMemoryBackend {
    pub(crate) fn new(
        image: Arc<Mutex<MemoryImage>>,
        runtime: RuntimeFaults,
        faults: DiskFaults,
        lying_sync: bool,
        dead: DeadFlag,
    ) -> Self {
        Self {
            image,
            runtime,
            faults,
            lying_sync,
            dead,
            closed: AtomicBool::new(false),
        }
    }

    /// Locks the image after checking that the node is alive and the backend open.
    fn live(&self, operation: &'static str) -> Result<MutexGuard<'_, MemoryImage>, BackendError> {
        if self.dead.is_dead() {
            return Err(fault(operation, None, "the simulated node is dead"));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(BackendError::Closed { backend: KIND });
        }
        Ok(self
            .image
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A run-time I/O error for `access` (the disk's [`DiskControl`](super::DiskControl)).
    fn runtime_io(
        &self,
        operation: &'static str,
        collection: Option<&CollectionName>,
        access: Access,
    ) -> Result<(), BackendError> {
        self.runtime
            .io_error(access)
            .map_err(|e| BackendError::engine(KIND, operation, collection, e))
    }

    /// Makes everything written so far durable, unless the sync lies or fails.
    fn sync_image(&self, image: &mut MemoryImage) -> Result<(), BackendError> {
        if self.runtime.rng.chance(self.faults.io_error_probability) {
            return Err(fault("sync", None, "injected I/O error (EIO) on sync"));
        }
        self.runtime_io("sync", None, Access::Sync)?;
        if !self.lying_sync {
            image.flush();
        }
        Ok(())
    }

    /// Records an applied change: pending, then maybe flushed early by the "OS".
    fn note_change(&self, image: &mut MemoryImage, change: Change) {
        image.pending.push(change);
        if self.runtime.rng.chance(self.faults.early_sync_probability) {
            image.flush();
        }
    }
}

fn collection<'a>(
    state: &'a Collections,
    name: &CollectionName,
) -> Result<&'a Collection, BackendError> {
    state.get(name).ok_or_else(|| not_found(name))
}

#[async_trait]
impl StorageBackend for SimMemoryBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn is_persistent(&self) -> bool {
        // Data lives on the node's simulated disk and survives close and reopen.
        true
    }

    async fn create_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        let mut image = self.live("create collection")?;
        if image.volatile.contains_key(name) {
            return Ok(false);
        }
        if self.runtime.rng.chance(self.faults.io_error_probability) {
            return Err(fault(
                "create collection",
                Some(name),
                "injected I/O error (EIO)",
            ));
        }
        self.runtime_io("create collection", Some(name), Access::Write)?;
        image.volatile.insert(name.clone(), Collection::new());
        self.note_change(&mut image, Change::Create(name.clone()));
        // Like redb, creating a collection is a durable commit.
        self.sync_image(&mut image)?;
        Ok(true)
    }

    async fn open_collection(&self, name: &CollectionName) -> Result<(), BackendError> {
        let image = self.live("open collection")?;
        collection(&image.volatile, name).map(|_| ())
    }

    async fn list_collections(&self) -> Result<Vec<CollectionName>, BackendError> {
        let image = self.live("list collections")?;
        Ok(image.volatile.keys().cloned().collect())
    }

    async fn drop_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        let mut image = self.live("drop collection")?;
        if !image.volatile.contains_key(name) {
            return Ok(false);
        }
        self.runtime_io("drop collection", Some(name), Access::Write)?;
        let Some(removed) = image.volatile.remove(name) else {
            return Ok(false);
        };
        let freed: u64 = removed
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        image.volatile_bytes = image.volatile_bytes.saturating_sub(freed);
        self.note_change(&mut image, Change::Drop(name.clone()));
        self.sync_image(&mut image)?;
        Ok(true)
    }

    async fn get(
        &self,
        name: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        check_key(name, key)?;
        let image = self.live("get")?;
        let map = collection(&image.volatile, name)?;
        self.runtime_io("get", Some(name), Access::Read)?;
        Ok(map.get(key).cloned())
    }

    async fn seek(
        &self,
        name: &CollectionName,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, BackendError> {
        let image = self.live("seek")?;
        let map = collection(&image.volatile, name)?;
        if start > end {
            return Ok(None);
        }
        self.runtime_io("seek", Some(name), Access::Read)?;
        Ok(map
            .range::<[u8], _>((Bound::Included(start), Bound::Included(end)))
            .next()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    async fn scan(
        &self,
        name: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError> {
        check_scan_limit(request.limit)?;
        let image = self.live("scan")?;
        let map = collection(&image.volatile, name)?;
        if request.range.is_empty_by_bounds() {
            return Ok(ScanPage::default());
        }
        self.runtime_io("scan", Some(name), Access::Read)?;
        let range = map.range::<[u8], _>(request.range.as_slices());
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        let entries = match request.direction {
            Direction::Forward => range.take(request.limit).map(clone).collect(),
            Direction::Reverse => range.rev().take(request.limit).map(clone).collect(),
        };
        Ok(request.page(entries))
    }

    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError> {
        batch.validate()?;
        let mut image = self.live("write batch")?;
        for op in batch.ops() {
            collection(&image.volatile, op.collection())?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        if self.runtime.rng.chance(self.faults.io_error_probability) {
            return Err(fault("write batch", None, "injected I/O error (EIO)"));
        }
        self.runtime_io("write batch", None, Access::Write)?;
        // Size after the batch, for the capacity check (later operations on a key win).
        let mut delta: i128 = 0;
        let mut seen: BTreeMap<(&CollectionName, &[u8]), Option<usize>> = BTreeMap::new();
        for op in batch.ops() {
            let slot = (op.collection(), op.key());
            let before = match seen.get(&slot) {
                Some(len) => *len,
                None => image
                    .volatile
                    .get(op.collection())
                    .and_then(|c| c.get(op.key()))
                    .map(|v| op.key().len() + v.len()),
            };
            let after = match op {
                BatchOp::Put { key, value, .. } => Some(key.len() + value.len()),
                BatchOp::Delete { .. } => None,
            };
            delta += after.unwrap_or(0) as i128 - before.unwrap_or(0) as i128;
            seen.insert(slot, after);
        }
        let new_bytes =
            u64::try_from((i128::from(image.volatile_bytes) + delta).max(0)).unwrap_or(u64::MAX);
        if let Some(capacity) = self.faults.capacity_bytes
            && delta > 0
            && new_bytes > capacity
        {
            return Err(fault(
                "write batch",
                None,
                &format!("no space left on device (ENOSPC): {new_bytes} > {capacity} bytes"),
            ));
        }
        if delta > 0 {
            self.runtime
                .check_space(image.volatile_bytes, new_bytes)
                .map_err(|e| BackendError::engine(KIND, "write batch", None, e))?;
        }
        drop(seen);
        let ops = batch.into_ops();
        let mut volatile = std::mem::take(&mut image.volatile);
        apply_change(&mut volatile, Change::Batch(ops.clone()));
        image.volatile = volatile;
        image.volatile_bytes = new_bytes;
        self.note_change(&mut image, Change::Batch(ops));
        if durability == Durability::Synced {
            self.sync_image(&mut image)?;
        }
        Ok(())
    }

    async fn sync(&self) -> Result<(), BackendError> {
        let mut image = self.live("sync")?;
        self.sync_image(&mut image)
    }

    async fn stats(&self) -> Result<BackendStats, BackendError> {
        let image = self.live("stats")?;
        let collections = image
            .volatile
            .iter()
            .map(|(name, map)| CollectionStats {
                name: name.clone(),
                keys: map.len() as u64,
                keys_exact: true,
                disk_bytes: None,
            })
            .collect();
        Ok(BackendStats {
            backend: KIND,
            disk_bytes: Some(image.durable_bytes()),
            collections,
            details: vec![("pending_changes".to_owned(), image.pending_changes() as u64)],
        })
    }

    async fn close(&self) -> Result<(), BackendError> {
        let mut image = self.live("close")?;
        self.closed.store(true, Ordering::Release);
        self.sync_image(&mut image)
    }
}
