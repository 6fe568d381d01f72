//! The redb backend.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableError, TableHandle,
    TransactionError, WriteTransaction,
};
use zcore_engine::backend::catch_engine_panic;
use zcore_engine::limits::{check_key, check_scan_limit};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionStats, Direction,
    Durability, ScanPage, ScanRequest, StorageBackend, WriteBatch,
};

use super::RedbOptions;
use crate::group_sync::{GroupSync, run_blocking};

const KIND: BackendKind = BackendKind::Redb;

type Bytes = &'static [u8];

fn table(name: &CollectionName) -> TableDefinition<'_, Bytes, Bytes> {
    TableDefinition::new(name.as_str())
}

struct Open {
    db: Database,
    collections: BTreeSet<CollectionName>,
}

/// The state shared with blocking-pool closures.
struct Shared {
    path: PathBuf,
    /// `None` once closed.
    state: RwLock<Option<Open>>,
}

/// redb behind the [`StorageBackend`] contract. See the [module docs](super).
pub struct RedbBackend {
    shared: Arc<Shared>,
    group: GroupSync,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn engine_err(
    operation: &'static str,
    collection: Option<&CollectionName>,
    e: impl Into<redb::Error>,
) -> BackendError {
    BackendError::engine(KIND, operation, collection, e.into())
}

fn closed() -> BackendError {
    BackendError::Closed { backend: KIND }
}

fn not_found(name: &CollectionName) -> BackendError {
    BackendError::CollectionNotFound {
        collection: name.clone(),
    }
}

impl Shared {
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

    /// Applies `batch` in one write transaction committed with `Durability::None`. With
    /// `wait == false` it gives the batch back instead of blocking on another writer.
    fn apply(&self, batch: WriteBatch, wait: bool) -> Result<Option<WriteBatch>, BackendError> {
        catch_engine_panic(KIND, "write batch", None, || self.apply_inner(batch, wait))
    }

    fn apply_inner(
        &self,
        batch: WriteBatch,
        wait: bool,
    ) -> Result<Option<WriteBatch>, BackendError> {
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        for op in batch.ops() {
            if !open.collections.contains(op.collection()) {
                return Err(not_found(op.collection()));
            }
        }
        let txn = if wait {
            open.db.begin_write()
        } else {
            match open.db.try_begin_write() {
                Err(TransactionError::WouldBlock) => return Ok(Some(batch)),
                other => other,
            }
        }
        .map_err(|e| engine_err("begin write transaction", None, e))?;
        let mut txn = txn;
        txn.set_durability(redb::Durability::None)
            .map_err(|e| BackendError::engine(KIND, "set durability", None, e))?;
        apply_ops(&txn, batch)?;
        txn.commit()
            .map_err(|e| engine_err("commit write batch", None, e))?;
        Ok(None)
    }

    /// One empty `Immediate` commit: makes every earlier `None` commit durable.
    fn sync_blocking(&self) -> Result<(), BackendError> {
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        immediate_commit(&open.db)
    }
}

fn immediate_commit(db: &Database) -> Result<(), BackendError> {
    catch_engine_panic(KIND, "sync", None, || immediate_commit_inner(db))
}

fn immediate_commit_inner(db: &Database) -> Result<(), BackendError> {
    let txn = db
        .begin_write()
        .map_err(|e| engine_err("begin write transaction", None, e))?;
    // Immediate is redb's default durability.
    txn.commit().map_err(|e| engine_err("sync", None, e))
}

fn apply_ops(txn: &WriteTransaction, batch: WriteBatch) -> Result<(), BackendError> {
    // Open each table once; a batch usually touches few collections.
    let mut tables: Vec<(CollectionName, redb::Table<'_, Bytes, Bytes>)> = Vec::new();
    for op in batch.into_ops() {
        let position = match tables.iter().position(|(n, _)| n == op.collection()) {
            Some(i) => i,
            None => {
                let name = op.collection().clone();
                let t = txn
                    .open_table(table(&name))
                    .map_err(|e| engine_err("open table", Some(&name), e))?;
                tables.push((name, t));
                tables.len() - 1
            }
        };
        let (name, t) = &mut tables[position];
        match op {
            BatchOp::Put { key, value, .. } => {
                t.insert(key.as_slice(), value.as_slice())
                    .map_err(|e| engine_err("put", Some(name), e))?;
            }
            BatchOp::Delete { key, .. } => {
                t.remove(key.as_slice())
                    .map_err(|e| engine_err("delete", Some(name), e))?;
            }
        }
    }
    Ok(())
}

impl RedbBackend {
    /// Opens the redb file at `path`, creating it (and its parent directories) if needed.
    ///
    /// # Errors
    ///
    /// [`BackendError::Open`] if the file is not a redb database, is locked by another open
    /// database, or cannot be created.
    pub fn open(path: impl AsRef<Path>, options: &RedbOptions) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| BackendError::Open {
            backend: KIND,
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_err(e.into()))?;
        }
        let cache = usize::try_from(options.cache_size_bytes).unwrap_or(usize::MAX);
        // redb panics on some damaged files instead of returning an error.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = Database::builder()
                .set_cache_size(cache)
                .create(&path)
                .map_err(|e| open_err(e.into()))?;
            let mut collections = BTreeSet::new();
            {
                let txn = db.begin_read().map_err(|e| open_err(e.into()))?;
                let tables = txn.list_tables().map_err(|e| open_err(e.into()))?;
                for handle in tables {
                    let name = CollectionName::from_stored(handle.name())
                        .map_err(|e| open_err(e.into()))?;
                    collections.insert(name);
                }
            }
            Ok::<_, BackendError>((db, collections))
        }));
        let (db, collections) = match opened {
            Ok(result) => result?,
            Err(_) => {
                return Err(open_err(
                    "redb panicked while opening the file (the file is damaged)".into(),
                ));
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                state: RwLock::new(Some(Open { db, collections })),
            }),
            group: GroupSync::default(),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn sync_through(&self, ticket: u64) -> Result<(), BackendError> {
        let shared = Arc::clone(&self.shared);
        self.group
            .sync_through(KIND, ticket, move || shared.sync_blocking())
            .await
    }
}

fn read_table<T>(
    open: &Open,
    name: &CollectionName,
    operation: &'static str,
    f: impl FnOnce(redb::ReadOnlyTable<Bytes, Bytes>) -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    if !open.collections.contains(name) {
        return Err(not_found(name));
    }
    catch_engine_panic(KIND, operation, Some(name), || {
        let txn = open
            .db
            .begin_read()
            .map_err(|e| engine_err(operation, Some(name), e))?;
        match txn.open_table(table(name)) {
            Ok(t) => f(t),
            Err(TableError::TableDoesNotExist(_)) => Err(not_found(name)),
            Err(e) => Err(engine_err(operation, Some(name), e)),
        }
    })
}

#[async_trait]
impl StorageBackend for RedbBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn is_persistent(&self) -> bool {
        true
    }

    async fn create_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        let name = name.clone();
        let shared = Arc::clone(&self.shared);
        run_blocking(KIND, move || {
            catch_engine_panic(KIND, "create collection", None, || {
                let mut guard = shared.write_lock();
                let open = guard.as_mut().ok_or_else(closed)?;
                if open.collections.contains(&name) {
                    return Ok(false);
                }
                let txn = open
                    .db
                    .begin_write()
                    .map_err(|e| engine_err("begin write transaction", Some(&name), e))?;
                txn.open_table(table(&name))
                    .map_err(|e| engine_err("create collection", Some(&name), e))?;
                txn.commit()
                    .map_err(|e| engine_err("create collection", Some(&name), e))?;
                open.collections.insert(name);
                Ok(true)
            })
        })
        .await
    }

    async fn open_collection(&self, name: &CollectionName) -> Result<(), BackendError> {
        let guard = self.shared.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        if open.collections.contains(name) {
            Ok(())
        } else {
            Err(not_found(name))
        }
    }

    async fn list_collections(&self) -> Result<Vec<CollectionName>, BackendError> {
        let guard = self.shared.read()?;
        Ok(guard
            .as_ref()
            .ok_or_else(closed)?
            .collections
            .iter()
            .cloned()
            .collect())
    }

    async fn drop_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        let name = name.clone();
        let shared = Arc::clone(&self.shared);
        run_blocking(KIND, move || {
            catch_engine_panic(KIND, "drop collection", None, || {
                let mut guard = shared.write_lock();
                let open = guard.as_mut().ok_or_else(closed)?;
                if !open.collections.contains(&name) {
                    return Ok(false);
                }
                let txn = open
                    .db
                    .begin_write()
                    .map_err(|e| engine_err("begin write transaction", Some(&name), e))?;
                txn.delete_table(table(&name))
                    .map_err(|e| engine_err("drop collection", Some(&name), e))?;
                txn.commit()
                    .map_err(|e| engine_err("drop collection", Some(&name), e))?;
                open.collections.remove(&name);
                Ok(true)
            })
        })
        .await
    }

    async fn get(
        &self,
        name: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        check_key(name, key)?;
        let guard = self.shared.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        read_table(open, name, "get", |t| {
            let value = t.get(key).map_err(|e| engine_err("get", Some(name), e))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    async fn seek(
        &self,
        name: &CollectionName,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, BackendError> {
        let guard = self.shared.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        read_table(open, name, "seek", |t| {
            if start > end {
                return Ok(None);
            }
            let mut range = t
                .range::<&[u8]>(start..=end)
                .map_err(|e| engine_err("seek", Some(name), e))?;
            match range.next() {
                None => Ok(None),
                Some(item) => {
                    let (k, v) = item.map_err(|e| engine_err("seek", Some(name), e))?;
                    Ok(Some((k.value().to_vec(), v.value().to_vec())))
                }
            }
        })
    }

    async fn scan(
        &self,
        name: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError> {
        check_scan_limit(request.limit)?;
        let guard = self.shared.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        read_table(open, name, "scan", |t| {
            if request.range.is_empty_by_bounds() {
                return Ok(ScanPage::default());
            }
            let range = t
                .range::<&[u8]>(request.range.as_slices())
                .map_err(|e| engine_err("scan", Some(name), e))?;
            let mut entries = Vec::with_capacity(request.limit.min(1024));
            let mut push = |item: Result<
                (redb::AccessGuard<'_, Bytes>, redb::AccessGuard<'_, Bytes>),
                redb::StorageError,
            >|
             -> Result<(), BackendError> {
                let (k, v) = item.map_err(|e| engine_err("scan", Some(name), e))?;
                entries.push((k.value().to_vec(), v.value().to_vec()));
                Ok(())
            };
            match request.direction {
                Direction::Forward => range.take(request.limit).try_for_each(&mut push)?,
                Direction::Reverse => range.rev().take(request.limit).try_for_each(&mut push)?,
            }
            Ok(request.page(entries))
        })
    }

    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError> {
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(batch) = self.shared.apply(batch, false)? {
            // Another writer is live: wait for it on the blocking pool, not here.
            let shared = Arc::clone(&self.shared);
            run_blocking(KIND, move || shared.apply(batch, true).map(|_| ())).await?;
        }
        let ticket = self.group.note_write();
        if durability == Durability::Synced {
            self.sync_through(ticket).await?;
        }
        Ok(())
    }

    async fn sync(&self) -> Result<(), BackendError> {
        drop(self.shared.read()?);
        self.sync_through(self.group.last_written().max(1)).await
    }

    async fn check_integrity(&self) -> Result<Option<bool>, BackendError> {
        let shared = Arc::clone(&self.shared);
        run_blocking(KIND, move || {
            let mut guard = shared.write_lock();
            let open = guard.as_mut().ok_or_else(closed)?;
            catch_engine_panic(KIND, "check integrity", None, || {
                open.db
                    .check_integrity()
                    .map(Some)
                    .map_err(|e| engine_err("check integrity", None, e))
            })
        })
        .await
    }

    async fn compact(&self) -> Result<bool, BackendError> {
        let _leader = self.group.leader_lock().await;
        let shared = Arc::clone(&self.shared);
        run_blocking(KIND, move || {
            let mut guard = shared.write_lock();
            let open = guard.as_mut().ok_or_else(closed)?;
            catch_engine_panic(KIND, "compact", None, || {
                // Earlier `Durability::None` commits must be durable before redb compacts.
                immediate_commit(&open.db)?;
                open.db
                    .compact()
                    .map_err(|e| engine_err("compact", None, e))
            })
        })
        .await
    }

    async fn inspect_details(&self) -> Result<Vec<(String, u64)>, BackendError> {
        let shared = Arc::clone(&self.shared);
        run_blocking(KIND, move || {
            let guard = shared.read()?;
            let open = guard.as_ref().ok_or_else(closed)?;
            catch_engine_panic(KIND, "inspect", None, || {
                let mut details = Vec::new();
                // Database-wide figures need a write transaction (aborted, nothing written).
                let txn = open
                    .db
                    .begin_write()
                    .map_err(|e| engine_err("begin write transaction", None, e))?;
                let db = txn.stats().map_err(|e| engine_err("stats", None, e))?;
                details.extend([
                    ("tree_height".to_owned(), u64::from(db.tree_height())),
                    ("allocated_pages".to_owned(), db.allocated_pages()),
                    ("leaf_pages".to_owned(), db.leaf_pages()),
                    ("branch_pages".to_owned(), db.branch_pages()),
                    ("stored_bytes".to_owned(), db.stored_bytes()),
                    ("metadata_bytes".to_owned(), db.metadata_bytes()),
                    ("fragmented_bytes".to_owned(), db.fragmented_bytes()),
                    ("page_size".to_owned(), db.page_size() as u64),
                ]);
                txn.abort().map_err(|e| engine_err("abort", None, e))?;
                for name in &open.collections {
                    let t = read_table(open, name, "table stats", |t| {
                        t.stats()
                            .map_err(|e| engine_err("table stats", Some(name), e))
                    })?;
                    details.extend([
                        (format!("{name}.tree_height"), u64::from(t.tree_height())),
                        (format!("{name}.leaf_pages"), t.leaf_pages()),
                        (format!("{name}.branch_pages"), t.branch_pages()),
                        (format!("{name}.stored_bytes"), t.stored_bytes()),
                        (format!("{name}.fragmented_bytes"), t.fragmented_bytes()),
                    ]);
                }
                Ok(details)
            })
        })
        .await
    }

    async fn stats(&self) -> Result<BackendStats, BackendError> {
        let guard = self.shared.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        let mut collections = Vec::with_capacity(open.collections.len());
        for name in &open.collections {
            let keys = read_table(open, name, "count keys", |t| {
                t.len().map_err(|e| engine_err("count keys", Some(name), e))
            })?;
            collections.push(CollectionStats {
                name: name.clone(),
                keys,
                keys_exact: true,
                disk_bytes: None,
            });
        }
        let disk_bytes = std::fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .map_err(|e| BackendError::engine(KIND, "measure file size", None, e))?;
        let cache = open.db.cache_stats();
        zcore_engine::metrics::backend_cache(KIND, cache.read_hits(), cache.read_misses());
        let mut details = vec![
            ("cache_used_bytes".to_owned(), cache.used_bytes() as u64),
            ("cache_read_hits".to_owned(), cache.read_hits()),
            ("cache_read_misses".to_owned(), cache.read_misses()),
            ("cache_evictions".to_owned(), cache.evictions()),
        ];
        details.extend(self.group.counters());
        Ok(BackendStats {
            backend: KIND,
            disk_bytes: Some(disk_bytes),
            collections,
            details,
        })
    }

    async fn close(&self) -> Result<(), BackendError> {
        let _leader = self.group.leader_lock().await;
        let open = self.shared.write_lock().take().ok_or_else(closed)?;
        run_blocking(KIND, move || {
            immediate_commit(&open.db)?;
            catch_engine_panic(KIND, "close", None, || {
                open.db.close().map_err(|e| engine_err("close", None, e))
            })
        })
        .await
    }
}
