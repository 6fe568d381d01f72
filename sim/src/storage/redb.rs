//! [`SimRedbBackend`]: redb 4.6 on turmoil's simulated filesystem.
//!
//! redb does its file I/O through its own `redb::StorageBackend` trait; [`SimFile`] implements
//! it over `turmoil::fs::shim::std::fs::File`, so every byte redb writes goes through turmoil's
//! pending-write model (lost on crash unless synced, torn by block size, EIO, ENOSPC). The
//! collection mapping follows `zcore_backends::redb` (one `&[u8] → &[u8]` table per
//! collection; buffered batches commit with `Durability::None`, a sync is an empty
//! `Durability::Immediate` commit; collection create/drop commit immediately), but every call
//! runs inline on the calling task: no blocking pool, no threads, no group-commit waiters.
//! redb allows one write transaction at a time; since no method awaits while it holds one, two
//! never overlap on the simulator's single thread.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableError, TableHandle,
    WriteTransaction,
};
use turmoil::fs::shim::std::fs as simfs;
use zcore_engine::limits::{check_key, check_scan_limit};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionStats, Direction,
    Durability, ScanPage, ScanRequest, StorageBackend, WriteBatch,
};

use super::faults::{Access, RuntimeFaults};
use super::{DeadFlag, SimStorageError};

/// The kind name the simulated redb backend reports.
pub const SIM_REDB_KIND: BackendKind = BackendKind::Other("sim-redb");
const KIND: BackendKind = SIM_REDB_KIND;

type Bytes = &'static [u8];

fn table(name: &CollectionName) -> TableDefinition<'_, Bytes, Bytes> {
    TableDefinition::new(name.as_str())
}

/// redb's file, on turmoil's disk, refusing all I/O once the node is dead, and failing I/O
/// while its disk's [`DiskControl`](super::DiskControl) says so: EIO on any read, write,
/// resize or sync (nothing is done), ENOSPC on a write into blocks of the file that were
/// never written (a sparse file: the extension by `set_len` allocates nothing) beyond what a
/// full disk allows (nothing is written). redb latches the first I/O error and fails
/// everything after it until the database is reopened.
#[derive(Debug)]
pub(crate) struct SimFile {
    file: simfs::File,
    dead: DeadFlag,
    lying_sync: bool,
    faults: RuntimeFaults,
}

impl SimFile {
    fn live(&self) -> io::Result<()> {
        if self.dead.is_dead() {
            Err(io::Error::other("the simulated node is dead (crashed)"))
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.live()?;
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.live()?;
        self.faults.io_error(Access::Read)?;
        self.file.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.live()?;
        self.faults.io_error(Access::Write)?;
        self.file.set_len(len)?;
        self.faults.note_truncate(len);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.live()?;
        self.faults.io_error(Access::Sync)?;
        if self.lying_sync {
            // Negative control: claim durability without making anything durable.
            return Ok(());
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.live()?;
        self.faults.io_error(Access::Write)?;
        let len = data.len() as u64;
        self.faults.check_file_write(offset, len)?;
        self.file.write_all_at(data, offset)?;
        self.faults.note_write(offset, len);
        Ok(())
    }
}

struct Open {
    db: Database,
    collections: BTreeSet<CollectionName>,
}

/// redb on the simulated disk. See the [module docs](self).
pub struct SimRedbBackend {
    path: PathBuf,
    /// `None` once closed.
    state: Mutex<Option<Open>>,
}

impl std::fmt::Debug for SimRedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRedbBackend")
            .field("path", &self.path)
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

/// Syncs every directory from the root down to `dir`, so that new entries in them survive a
/// crash (redb never syncs a directory; turmoil deletes unsynced entries on crash).
fn sync_dirs(dir: &Path) -> io::Result<()> {
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    for d in chain {
        if !d.as_os_str().is_empty() {
            simfs::sync_dir(d)?;
        }
    }
    Ok(())
}

impl SimRedbBackend {
    /// Opens (or creates) the redb file at `path` on the current host's simulated disk. Must run
    /// inside a turmoil host (or client) while it is being polled.
    ///
    /// # Errors
    ///
    /// [`SimStorageError::Dead`] if `dead` is set, [`SimStorageError::Io`] if the directory or
    /// file cannot be created, [`SimStorageError::Open`] if redb cannot open or repair it.
    pub fn open(
        path: &Path,
        cache_bytes: usize,
        lying_sync: bool,
        dead: DeadFlag,
    ) -> Result<Self, SimStorageError> {
        Self::open_with(path, cache_bytes, lying_sync, dead, RuntimeFaults::off())
    }

    /// [`open`](Self::open) with the file layer honouring a disk's run-time faults.
    pub(crate) fn open_with(
        path: &Path,
        cache_bytes: usize,
        lying_sync: bool,
        dead: DeadFlag,
        faults: RuntimeFaults,
    ) -> Result<Self, SimStorageError> {
        if dead.is_dead() {
            return Err(SimStorageError::Dead);
        }
        let io_err = |operation: &'static str, source: io::Error| SimStorageError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("/"));
        simfs::create_dir_all(dir).map_err(|e| io_err("create directory", e))?;
        let file = simfs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("open file", e))?;
        sync_dirs(dir).map_err(|e| io_err("sync directory", e))?;
        let backend = SimFile {
            file,
            dead,
            lying_sync,
            faults,
        };
        let open_err = |source: redb::Error| SimStorageError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create_with_backend(backend)
            .map_err(|e| open_err(e.into()))?;
        let mut collections = BTreeSet::new();
        {
            let txn = db.begin_read().map_err(|e| open_err(e.into()))?;
            let tables = txn.list_tables().map_err(|e| open_err(e.into()))?;
            for handle in tables {
                let name = CollectionName::from_stored(handle.name()).map_err(|e| {
                    SimStorageError::Backend(BackendError::InvalidCollectionName(e))
                })?;
                collections.insert(name);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(Some(Open { db, collections })),
        })
    }

    /// The database file on the simulated disk.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_open<T>(
        &self,
        f: impl FnOnce(&mut Open) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut guard = self.lock();
        let open = guard.as_mut().ok_or_else(closed)?;
        f(open)
    }
}

fn immediate_commit(db: &Database) -> Result<(), BackendError> {
    let txn = db
        .begin_write()
        .map_err(|e| engine_err("begin write transaction", None, e))?;
    txn.commit().map_err(|e| engine_err("sync", None, e))
}

fn apply_ops(txn: &WriteTransaction, batch: WriteBatch) -> Result<(), BackendError> {
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

fn read_table<T>(
    open: &Open,
    name: &CollectionName,
    operation: &'static str,
    f: impl FnOnce(redb::ReadOnlyTable<Bytes, Bytes>) -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    if !open.collections.contains(name) {
        return Err(not_found(name));
    }
    let txn = open
        .db
        .begin_read()
        .map_err(|e| engine_err(operation, Some(name), e))?;
    match txn.open_table(table(name)) {
        Ok(t) => f(t),
        Err(TableError::TableDoesNotExist(_)) => Err(not_found(name)),
        Err(e) => Err(engine_err(operation, Some(name), e)),
    }
}

#[async_trait]
impl StorageBackend for SimRedbBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn is_persistent(&self) -> bool {
        true
    }

    async fn create_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        self.with_open(|open| {
            if open.collections.contains(name) {
                return Ok(false);
            }
            let txn = open
                .db
                .begin_write()
                .map_err(|e| engine_err("begin write transaction", Some(name), e))?;
            txn.open_table(table(name))
                .map_err(|e| engine_err("create collection", Some(name), e))?;
            txn.commit()
                .map_err(|e| engine_err("create collection", Some(name), e))?;
            open.collections.insert(name.clone());
            Ok(true)
        })
    }

    async fn open_collection(&self, name: &CollectionName) -> Result<(), BackendError> {
        self.with_open(|open| {
            if open.collections.contains(name) {
                Ok(())
            } else {
                Err(not_found(name))
            }
        })
    }

    async fn list_collections(&self) -> Result<Vec<CollectionName>, BackendError> {
        self.with_open(|open| Ok(open.collections.iter().cloned().collect()))
    }

    async fn drop_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        self.with_open(|open| {
            if !open.collections.contains(name) {
                return Ok(false);
            }
            let txn = open
                .db
                .begin_write()
                .map_err(|e| engine_err("begin write transaction", Some(name), e))?;
            txn.delete_table(table(name))
                .map_err(|e| engine_err("drop collection", Some(name), e))?;
            txn.commit()
                .map_err(|e| engine_err("drop collection", Some(name), e))?;
            open.collections.remove(name);
            Ok(true)
        })
    }

    async fn get(
        &self,
        name: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        check_key(name, key)?;
        self.with_open(|open| {
            read_table(open, name, "get", |t| {
                let value = t.get(key).map_err(|e| engine_err("get", Some(name), e))?;
                Ok(value.map(|v| v.value().to_vec()))
            })
        })
    }

    async fn seek(
        &self,
        name: &CollectionName,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, BackendError> {
        self.with_open(|open| {
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
        })
    }

    async fn scan(
        &self,
        name: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError> {
        check_scan_limit(request.limit)?;
        self.with_open(|open| {
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
                    Direction::Reverse => {
                        range.rev().take(request.limit).try_for_each(&mut push)?;
                    }
                }
                Ok(request.page(entries))
            })
        })
    }

    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError> {
        batch.validate()?;
        self.with_open(|open| {
            for op in batch.ops() {
                if !open.collections.contains(op.collection()) {
                    return Err(not_found(op.collection()));
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
            let mut txn = open
                .db
                .begin_write()
                .map_err(|e| engine_err("begin write transaction", None, e))?;
            let redb_durability = match durability {
                Durability::Buffered => redb::Durability::None,
                // An immediate commit makes this batch and every earlier `None` commit durable.
                Durability::Synced => redb::Durability::Immediate,
            };
            txn.set_durability(redb_durability)
                .map_err(|e| BackendError::engine(KIND, "set durability", None, e))?;
            apply_ops(&txn, batch)?;
            txn.commit()
                .map_err(|e| engine_err("commit write batch", None, e))
        })
    }

    async fn sync(&self) -> Result<(), BackendError> {
        self.with_open(|open| immediate_commit(&open.db))
    }

    async fn check_integrity(&self) -> Result<Option<bool>, BackendError> {
        self.with_open(|open| {
            open.db
                .check_integrity()
                .map(Some)
                .map_err(|e| engine_err("check integrity", None, e))
        })
    }

    async fn stats(&self) -> Result<BackendStats, BackendError> {
        let (collections, cache_used) = self.with_open(|open| {
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
            Ok((collections, open.db.cache_stats().used_bytes() as u64))
        })?;
        let disk_bytes = simfs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| BackendError::engine(KIND, "measure file size", None, e))?;
        Ok(BackendStats {
            backend: KIND,
            disk_bytes: Some(disk_bytes),
            collections,
            details: vec![("cache_used_bytes".to_owned(), cache_used)],
        })
    }

    async fn close(&self) -> Result<(), BackendError> {
        let open = self.lock().take().ok_or_else(closed)?;
        immediate_commit(&open.db)?;
        open.db.close().map_err(|e| engine_err("close", None, e))
    }
}
