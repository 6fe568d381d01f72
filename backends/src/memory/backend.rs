//! The memory backend.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use zcore_engine::limits::{check_key, check_scan_limit};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionStats, Direction,
    Durability, ScanPage, ScanRequest, StorageBackend, WriteBatch,
};

type Collection = BTreeMap<Vec<u8>, Vec<u8>>;
type Collections = BTreeMap<CollectionName, Collection>;

const KIND: BackendKind = BackendKind::Memory;

/// Ordered maps in memory. See the [module docs](super).
#[derive(Debug, Default)]
pub struct MemoryBackend {
    /// `None` once closed.
    state: RwLock<Option<Collections>>,
}

impl MemoryBackend {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: RwLock::new(Some(Collections::new())),
        }
    }

    // A panic while holding the lock cannot leave a map half-updated (every batch is checked
    // before the first mutation), so a poisoned lock is safe to keep using.
    fn read(&self) -> Result<RwLockReadGuard<'_, Option<Collections>>, BackendError> {
        let guard = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            return Err(BackendError::Closed { backend: KIND });
        }
        Ok(guard)
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Option<Collections>> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn open_state(guard: &Option<Collections>) -> Result<&Collections, BackendError> {
    guard.as_ref().ok_or(BackendError::Closed { backend: KIND })
}

fn collection<'a>(
    state: &'a Collections,
    name: &CollectionName,
) -> Result<&'a Collection, BackendError> {
    state
        .get(name)
        .ok_or_else(|| BackendError::CollectionNotFound {
            collection: name.clone(),
        })
}

#[async_trait]
impl StorageBackend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn is_persistent(&self) -> bool {
        false
    }

    async fn create_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        let mut guard = self.write_lock();
        let state = guard
            .as_mut()
            .ok_or(BackendError::Closed { backend: KIND })?;
        if state.contains_key(name) {
            return Ok(false);
        }
        state.insert(name.clone(), Collection::new());
        Ok(true)
    }

    async fn open_collection(&self, name: &CollectionName) -> Result<(), BackendError> {
        let guard = self.read()?;
        collection(open_state(&guard)?, name).map(|_| ())
    }

    async fn list_collections(&self) -> Result<Vec<CollectionName>, BackendError> {
        let guard = self.read()?;
        Ok(open_state(&guard)?.keys().cloned().collect())
    }

    async fn drop_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        let mut guard = self.write_lock();
        let state = guard
            .as_mut()
            .ok_or(BackendError::Closed { backend: KIND })?;
        Ok(state.remove(name).is_some())
    }

    async fn get(
        &self,
        name: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        check_key(name, key)?;
        let guard = self.read()?;
        Ok(collection(open_state(&guard)?, name)?.get(key).cloned())
    }

    async fn seek(
        &self,
        name: &CollectionName,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, BackendError> {
        let guard = self.read()?;
        let map = collection(open_state(&guard)?, name)?;
        if start > end {
            return Ok(None);
        }
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
        let guard = self.read()?;
        let map = collection(open_state(&guard)?, name)?;
        // BTreeMap::range panics on inverted bounds; the contract says they are just empty.
        if request.range.is_empty_by_bounds() {
            return Ok(ScanPage::default());
        }
        let range = map.range::<[u8], _>(request.range.as_slices());
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        let entries = match request.direction {
            Direction::Forward => range.take(request.limit).map(clone).collect(),
            Direction::Reverse => range.rev().take(request.limit).map(clone).collect(),
        };
        Ok(request.page(entries))
    }

    async fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<(), BackendError> {
        batch.validate()?;
        let mut guard = self.write_lock();
        let state = guard
            .as_mut()
            .ok_or(BackendError::Closed { backend: KIND })?;
        // Check every collection before the first mutation: all or nothing (C3, C7).
        for op in batch.ops() {
            collection(state, op.collection())?;
        }
        for op in batch.into_ops() {
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
        Ok(())
    }

    async fn sync(&self) -> Result<(), BackendError> {
        self.read().map(|_| ())
    }

    async fn stats(&self) -> Result<BackendStats, BackendError> {
        let guard = self.read()?;
        let collections = open_state(&guard)?
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
            disk_bytes: None,
            collections,
            details: Vec::new(),
        })
    }

    async fn close(&self) -> Result<(), BackendError> {
        let mut guard = self.write_lock();
        if guard.take().is_none() {
            return Err(BackendError::Closed { backend: KIND });
        }
        Ok(())
    }
}
