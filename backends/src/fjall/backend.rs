//! The fjall backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use fjall::compaction::filter::{CompactionFilter, Context, Factory, ItemAccessor, Verdict};
use fjall::config::CompressionPolicy;
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use zcore_engine::limits::{check_key, check_scan_limit};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionStats,
    CompactionGc, Direction, Durability, GcPass, ScanPage, ScanRequest, StorageBackend, WriteBatch,
};

use super::{FjallCompression, FjallOptions};
use crate::group_sync::{GroupSync, run_blocking};

const KIND: BackendKind = BackendKind::Fjall;

/// The engine's compaction GC, installed after open; compactions started before that keep
/// everything.
type GcSlot = Arc<RwLock<Option<Arc<dyn CompactionGc>>>>;

struct Open {
    db: Database,
    keyspaces: BTreeMap<CollectionName, Keyspace>,
}

/// fjall behind the [`StorageBackend`] contract. See the [module docs](super).
pub struct FjallBackend {
    path: PathBuf,
    compression: FjallCompression,
    /// `None` once closed.
    state: RwLock<Option<Open>>,
    group: GroupSync,
    gc: GcSlot,
}

impl std::fmt::Debug for FjallBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn engine_err(
    operation: &'static str,
    collection: Option<&CollectionName>,
    e: fjall::Error,
) -> BackendError {
    BackendError::engine(KIND, operation, collection, e)
}

fn closed() -> BackendError {
    BackendError::Closed { backend: KIND }
}

/// Where a new database is built before it is renamed into place.
fn staging_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".zcore-creating");
    path.with_file_name(name)
}

/// Creates an empty database next to `path` and renames it into place. fjall 3.1.13 killed in
/// the middle of creating a database leaves a directory that every later open refuses
/// (journal present, version marker missing); building it under another name means a crash
/// leaves only a staging directory, which the next attempt removes.
fn create_fresh(path: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let staging = staging_path(path);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    let db = Database::builder(&staging).worker_threads(1).open()?;
    db.persist(PersistMode::SyncAll)?;
    drop(db);
    std::fs::rename(&staging, path)?;
    if let Some(parent) = parent {
        // Make the rename itself durable.
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl FjallBackend {
    /// Opens the fjall database in directory `path`, creating it if needed.
    ///
    /// # Errors
    ///
    /// [`BackendError::Open`] if the options are invalid, the directory is locked by another
    /// open database, or fjall cannot recover it.
    pub fn open(path: impl AsRef<Path>, options: &FjallOptions) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| BackendError::Open {
            backend: KIND,
            path: path.clone(),
            source,
        };
        options.validate().map_err(|m| open_err(m.into()))?;
        if !path.exists() {
            create_fresh(&path).map_err(open_err)?;
        }
        let journal = match options.compression {
            FjallCompression::None => CompressionType::None,
            FjallCompression::Lz4 => CompressionType::Lz4,
        };
        let gc: GcSlot = Arc::default();
        let assigner_slot = Arc::clone(&gc);
        let mut builder = Database::builder(&path)
            .cache_size(options.cache_size_bytes)
            .journal_compression(journal)
            .with_compaction_filter_factories(Arc::new(move |keyspace: &str| {
                Some(Arc::new(GcFactory {
                    slot: Arc::clone(&assigner_slot),
                    collection: keyspace.to_owned(),
                }) as Arc<dyn Factory>)
            }));
        if let Some(n) = options.worker_threads {
            builder = builder.worker_threads(n);
        }
        let db = builder.open().map_err(|e| open_err(e.into()))?;
        let mut keyspaces = BTreeMap::new();
        for name in db.list_keyspace_names() {
            let name: &str = &name;
            let collection = CollectionName::from_stored(name).map_err(|e| open_err(e.into()))?;
            let keyspace = db
                .keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| open_err(e.into()))?;
            keyspaces.insert(collection, keyspace);
        }
        Ok(Self {
            path,
            compression: options.compression,
            state: RwLock::new(Some(Open { db, keyspaces })),
            group: GroupSync::default(),
            gc,
        })
    }

    /// The database directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Option<Open>>, BackendError> {
        let guard = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            return Err(closed());
        }
        Ok(guard)
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Option<Open>> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn create_options(&self) -> KeyspaceCreateOptions {
        let options = KeyspaceCreateOptions::default();
        match self.compression {
            FjallCompression::Lz4 => options,
            FjallCompression::None => {
                options.data_block_compression_policy(CompressionPolicy::disabled())
            }
        }
    }

    /// Compacts every keyspace fully (fjall major compaction); the installed compaction GC
    /// runs over all data. Blocks while it runs.
    ///
    /// # Errors
    ///
    /// [`BackendError::Closed`], engine errors.
    pub fn major_compact(&self) -> Result<(), BackendError> {
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        for (name, keyspace) in &open.keyspaces {
            // Flush the memtable first so the compaction sees every version.
            keyspace
                .rotate_memtable_and_wait()
                .map_err(|e| engine_err("flush", Some(name), e))?;
            keyspace
                .major_compact()
                .map_err(|e| engine_err("compact", Some(name), e))?;
        }
        Ok(())
    }

    fn db(&self) -> Result<Database, BackendError> {
        let guard = self.read()?;
        guard
            .as_ref()
            .map(|open| open.db.clone())
            .ok_or_else(closed)
    }
}

impl Open {
    fn keyspace(&self, name: &CollectionName) -> Result<&Keyspace, BackendError> {
        self.keyspaces
            .get(name)
            .ok_or_else(|| BackendError::CollectionNotFound {
                collection: name.clone(),
            })
    }
}

#[async_trait]
impl StorageBackend for FjallBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn is_persistent(&self) -> bool {
        true
    }

    async fn create_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        let mut guard = self.write_lock();
        let open = guard.as_mut().ok_or_else(closed)?;
        if open.keyspaces.contains_key(name) {
            return Ok(false);
        }
        let keyspace = open
            .db
            .keyspace(name.as_str(), || self.create_options())
            .map_err(|e| engine_err("create collection", Some(name), e))?;
        open.keyspaces.insert(name.clone(), keyspace);
        Ok(true)
    }

    async fn open_collection(&self, name: &CollectionName) -> Result<(), BackendError> {
        let guard = self.read()?;
        guard
            .as_ref()
            .ok_or_else(closed)?
            .keyspace(name)
            .map(|_| ())
    }

    async fn list_collections(&self) -> Result<Vec<CollectionName>, BackendError> {
        let guard = self.read()?;
        Ok(guard
            .as_ref()
            .ok_or_else(closed)?
            .keyspaces
            .keys()
            .cloned()
            .collect())
    }

    async fn drop_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        let mut guard = self.write_lock();
        let open = guard.as_mut().ok_or_else(closed)?;
        let Some(keyspace) = open.keyspaces.remove(name) else {
            return Ok(false);
        };
        open.db
            .delete_keyspace(keyspace)
            .map_err(|e| engine_err("drop collection", Some(name), e))?;
        Ok(true)
    }

    async fn get(
        &self,
        name: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        check_key(name, key)?;
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        let keyspace = open.keyspace(name)?;
        let value = open
            .db
            .snapshot()
            .get(keyspace, key)
            .map_err(|e| engine_err("get", Some(name), e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn seek(
        &self,
        name: &CollectionName,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, BackendError> {
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        let keyspace = open.keyspace(name)?;
        if start > end {
            return Ok(None);
        }
        match open
            .db
            .snapshot()
            .range::<&[u8], _>(keyspace, start..=end)
            .next()
        {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item
                    .into_inner()
                    .map_err(|e| engine_err("seek", Some(name), e))?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    async fn scan(
        &self,
        name: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError> {
        check_scan_limit(request.limit)?;
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        let keyspace = open.keyspace(name)?;
        if request.range.is_empty_by_bounds() {
            return Ok(ScanPage::default());
        }
        let iter = open
            .db
            .snapshot()
            .range::<&[u8], _>(keyspace, request.range.as_slices());
        let mut entries = Vec::with_capacity(request.limit.min(1024));
        let mut push = |item: fjall::Guard| -> Result<(), BackendError> {
            let (k, v) = item
                .into_inner()
                .map_err(|e| engine_err("scan", Some(name), e))?;
            entries.push((k.to_vec(), v.to_vec()));
            Ok(())
        };
        match request.direction {
            Direction::Forward => iter.take(request.limit).try_for_each(&mut push)?,
            Direction::Reverse => iter.rev().take(request.limit).try_for_each(&mut push)?,
        }
        Ok(request.page(entries))
    }

    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError> {
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let (db, ticket) = {
            let guard = self.read()?;
            let open = guard.as_ref().ok_or_else(closed)?;
            let mut fjall_batch =
                fjall::OwnedWriteBatch::with_capacity(open.db.clone(), batch.len())
                    .durability(Some(PersistMode::Buffer));
            // Resolve every collection before the engine sees anything (C3).
            for op in batch.ops() {
                open.keyspace(op.collection())?;
            }
            for op in batch.into_ops() {
                match op {
                    BatchOp::Put {
                        collection,
                        key,
                        value,
                    } => fjall_batch.insert(open.keyspace(&collection)?, key, value),
                    BatchOp::Delete { collection, key } => {
                        fjall_batch.remove(open.keyspace(&collection)?, key);
                    }
                }
            }
            fjall_batch
                .commit()
                .map_err(|e| engine_err("write batch", None, e))?;
            (open.db.clone(), self.group.note_write())
        };
        if durability == Durability::Synced {
            self.group
                .sync_through(KIND, ticket, move || {
                    db.persist(PersistMode::SyncAll)
                        .map_err(|e| engine_err("sync", None, e))
                })
                .await?;
        }
        Ok(())
    }

    async fn sync(&self) -> Result<(), BackendError> {
        let db = self.db()?;
        let ticket = self.group.last_written();
        // Ticket 0 (nothing written through us) still syncs once: the caller asked for it.
        self.group
            .sync_through(KIND, ticket.max(1), move || {
                db.persist(PersistMode::SyncAll)
                    .map_err(|e| engine_err("sync", None, e))
            })
            .await
    }

    async fn stats(&self) -> Result<BackendStats, BackendError> {
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        let collections = open
            .keyspaces
            .iter()
            .map(|(name, keyspace)| CollectionStats {
                name: name.clone(),
                keys: keyspace.approximate_len() as u64,
                keys_exact: false,
                disk_bytes: Some(keyspace.disk_space()),
            })
            .collect();
        let disk_bytes = open
            .db
            .disk_space()
            .map_err(|e| engine_err("measure disk space", None, e))?;
        let mut details = vec![
            ("journal_count".to_owned(), open.db.journal_count() as u64),
            ("cache_capacity_bytes".to_owned(), open.db.cache_capacity()),
            (
                "table_count".to_owned(),
                open.keyspaces
                    .values()
                    .map(|k| k.table_count() as u64)
                    .sum(),
            ),
            ("write_buffer_bytes".to_owned(), open.db.write_buffer_size()),
        ];
        details.extend(self.group.counters());
        Ok(BackendStats {
            backend: KIND,
            disk_bytes: Some(disk_bytes),
            collections,
            details,
        })
    }

    fn set_compaction_gc(&self, gc: Arc<dyn CompactionGc>) -> bool {
        *self
            .gc
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(gc);
        true
    }

    async fn close(&self) -> Result<(), BackendError> {
        // No group sync may be in flight while the database goes away.
        let _leader = self.group.leader_lock().await;
        let open = self.write_lock().take().ok_or_else(closed)?;
        // Persisting and dropping (which joins fjall's worker threads and releases the
        // directory lock) both block.
        run_blocking(KIND, move || {
            let result = open
                .db
                .persist(PersistMode::SyncAll)
                .map_err(|e| engine_err("sync on close", None, e));
            drop(open);
            result
        })
        .await
    }
}

/// Gives each fjall compaction of one keyspace a fresh pass of the installed [`CompactionGc`].
struct GcFactory {
    slot: GcSlot,
    collection: String,
}

impl Factory for GcFactory {
    fn name(&self) -> &str {
        "zcore-mvcc-gc"
    }

    fn make_filter(&self, _ctx: &Context) -> Box<dyn CompactionFilter> {
        let gc = self
            .slot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Box::new(GcFilter {
            pass: gc.and_then(|gc| gc.start_pass(&self.collection)),
        })
    }
}

struct GcFilter {
    pass: Option<Box<dyn GcPass>>,
}

impl CompactionFilter for GcFilter {
    fn filter_item(
        &mut self,
        item: ItemAccessor<'_>,
        _ctx: &Context,
    ) -> fjall::compaction::filter::CompactionFilterResult {
        let drop = self
            .pass
            .as_mut()
            .is_some_and(|pass| pass.drop_key(item.key()));
        Ok(if drop { Verdict::Remove } else { Verdict::Keep })
    }
}
