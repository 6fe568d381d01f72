//! [`Store`]: the seed's synchronous store on the async engine.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use zcore_backends::config::{BackendConfig, open_backend};
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend};
use zcore_engine::{
    BackupMetadata, BackupOptions, CollectionName, Engine, EngineOptions, KeyRange,
    ReadTransaction, ScanRequest, StorageBackend, TxnError, WriteOptions, WriteTransaction,
};

use crate::error::StorageError;

/// Runs engine work on the store's own runtime; shut down in the background on drop so that
/// dropping a store inside someone else's runtime never panics.
#[derive(Debug)]
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// Swapped only by `restore_from_backup`, which reopens the engine on the restored data.
    engine: std::sync::RwLock<Engine>,
    handle: tokio::runtime::Handle,
    // Dropped last (field order), after the engine was closed through it.
    _runtime: Runtime,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close cleanly (syncs the backend, releases file locks); errors have nowhere to go
        // from a destructor and the data of acknowledged commits is durable anyway.
        let engine = self
            .engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let _ = run_on(&self.handle, async move { engine.close().await });
    }
}

/// The seed's store: a transactional, collection-organised key-value store. Cheap to clone;
/// clones share one store, which is closed when the last clone is dropped.
///
/// Every method is synchronous and may be called from any thread, including from inside a
/// tokio runtime (multi-thread or current-thread, or `#[tokio::main]`): the engine runs on a
/// two-thread runtime owned by the store, and the caller waits on a channel.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

fn run_on<F, T>(handle: &tokio::runtime::Handle, future: F) -> Result<T, StorageError>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| StorageError::other("the store's engine task stopped unexpectedly"))
}

/// Key/value pairs in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn collection(name: &str) -> Result<CollectionName, StorageError> {
    Ok(CollectionName::new(name)?)
}

impl Store {
    /// Opens (creating if needed) a fjall store in directory `path`, as the seed did.
    ///
    /// # Errors
    ///
    /// The directory cannot be opened (locked by another store, not a fjall database, I/O).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        Self::open_with(move || {
            Ok(
                Arc::new(FjallBackend::open(&path, &FjallOptions::default())?)
                    as Arc<dyn StorageBackend>,
            )
        })
    }

    /// Opens the store a [`BackendConfig`] describes (fjall, redb or memory).
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_config(config: &BackendConfig) -> Result<Self, StorageError> {
        let config = config.clone();
        Self::open_with(move || Ok(open_backend(&config)?))
    }

    /// An in-memory store (nothing persists).
    ///
    /// # Errors
    ///
    /// Only if the store's runtime cannot start.
    pub fn memory() -> Result<Self, StorageError> {
        Self::open_with(|| Ok(Arc::new(MemoryBackend::new()) as Arc<dyn StorageBackend>))
    }

    /// Opens a store on a backend built by `make` (called on the store's runtime).
    ///
    /// # Errors
    ///
    /// Whatever `make` or opening the engine fails with.
    pub fn open_with<F>(make: F) -> Result<Self, StorageError>
    where
        F: FnOnce() -> Result<Arc<dyn StorageBackend>, StorageError> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("zcore-store")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let runtime = Runtime(Some(runtime));
        let engine = run_on(&handle, async move {
            let backend = make()?;
            Engine::open(backend, EngineOptions::default())
                .await
                .map_err(StorageError::from)
        })??;
        Ok(Self {
            inner: Arc::new(Inner {
                engine: std::sync::RwLock::new(engine),
                handle,
                _runtime: runtime,
            }),
        })
    }

    /// The async engine underneath, for code that wants the full transaction API.
    #[must_use]
    pub fn engine(&self) -> Engine {
        self.inner
            .engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs `future` on the store's runtime and waits for it.
    pub(crate) fn run<F, T>(&self, future: F) -> Result<T, StorageError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        run_on(&self.inner.handle, future)
    }

    /// Creates `name` if it does not exist yet (the seed's collections exist implicitly).
    pub(crate) fn ensure_collection(&self, name: &CollectionName) -> Result<(), StorageError> {
        if self.engine().collections().contains(name) {
            return Ok(());
        }
        let engine = self.engine();
        let name = name.clone();
        self.run(async move { engine.create_collection(&name).await })??;
        Ok(())
    }

    /// Starts a write transaction (serializable; committed durably).
    ///
    /// # Errors
    ///
    /// [`StorageError::NotInitialized`] never in practice; kept for the seed's signature.
    pub fn begin_write(&self) -> Result<WriteTx, StorageError> {
        Ok(WriteTx {
            store: self.clone(),
            tx: Mutex::new(Some(
                self.engine().begin_write_with(WriteOptions::default()),
            )),
            deferred: Mutex::new(None),
        })
    }

    /// Starts a read transaction on a consistent snapshot.
    ///
    /// # Errors
    ///
    /// Kept for the seed's signature.
    pub fn begin_read(&self) -> Result<ReadTx, StorageError> {
        Ok(ReadTx {
            tx: Arc::new(self.engine().begin_read()),
        })
    }

    /// Closes the store now (dropping the last clone does the same).
    ///
    /// # Errors
    ///
    /// Backend errors while syncing.
    pub fn close(&self) -> Result<(), StorageError> {
        let engine = self.engine();
        self.run(async move { engine.close().await })??;
        Ok(())
    }
}

impl Store {
    /// Backs the store up, online and consistent at one version, into directory `path` (zstd
    /// compressed when `compress`). See [`zcore_engine::backup`].
    ///
    /// # Errors
    ///
    /// The directory exists and is not empty, I/O errors, store errors.
    pub fn create_backup(
        &self,
        path: impl AsRef<Path>,
        compress: bool,
    ) -> Result<BackupMetadata, StorageError> {
        let engine = self.engine();
        let path = path.as_ref().to_path_buf();
        let options = BackupOptions {
            compress,
            ..BackupOptions::default()
        };
        self.run(async move { engine.create_backup(&path, &options).await })?
            .map_err(backup_error)
    }

    /// Reads a backup's metadata after checking its manifest (not its chunks; see
    /// [`zcore_engine::backup::verify`]).
    ///
    /// # Errors
    ///
    /// Missing or damaged manifest.
    pub fn get_backup_metadata(path: impl AsRef<Path>) -> Result<BackupMetadata, StorageError> {
        zcore_engine::backup::read_metadata(path).map_err(backup_error)
    }

    /// Restores a backup (chain) into this store, which must be empty — a freshly opened
    /// store. Every checksum of the chain is verified before the first byte is written, and the
    /// engine is reopened on the restored data afterwards.
    ///
    /// # Errors
    ///
    /// The store is not empty (nothing is changed), the backup is damaged (nothing is
    /// written), store errors.
    pub fn restore_from_backup(&self, path: impl AsRef<Path>) -> Result<(), StorageError> {
        let mut slot = self
            .inner
            .engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = slot.clone();
        let path = path.as_ref().to_path_buf();
        let restored = self.run(async move {
            let backend = Arc::clone(old.backend());
            zcore_engine::backup::restore(&path, Arc::clone(&backend), None)
                .await
                .map_err(backup_error)?;
            // The old engine's oracle predates the restored versions: replace it.
            Engine::open(backend, EngineOptions::default())
                .await
                .map_err(StorageError::from)
        })??;
        *slot = restored;
        Ok(())
    }
}

fn backup_error(e: zcore_engine::BackupError) -> StorageError {
    StorageError::other(e.to_string())
}

/// The seed's `next_seq`: per-name sequences starting at 1, never reused.
///
/// # Errors
///
/// An empty or over-long name; backend errors.
pub fn next_seq(store: &Store, name: &[u8]) -> Result<u64, StorageError> {
    let engine = store.engine();
    let name = name.to_vec();
    Ok(store.run(async move { engine.next_seq(&name).await })??)
}

/// A read-only transaction: every read sees one consistent snapshot.
#[derive(Debug)]
pub struct ReadTx {
    pub(crate) tx: Arc<ReadTransaction>,
}

fn absent_if_missing<T: Default>(r: Result<T, TxnError>) -> Result<T, StorageError> {
    match r {
        // The seed's collections exist implicitly: reading one never written is empty.
        Err(TxnError::CollectionNotFound { .. }) => Ok(T::default()),
        other => Ok(other?),
    }
}

impl ReadTx {
    /// The value of `key` in `collection`.
    ///
    /// # Errors
    ///
    /// Invalid collection name or key, corruption, backend errors.
    pub fn get(
        &self,
        store: &Store,
        collection_name: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let c = collection(collection_name)?;
        let tx = Arc::clone(&self.tx);
        let key = key.to_vec();
        absent_if_missing(store.run(async move { tx.get(&c, &key).await })?)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    ///
    /// As [`ReadTx::get`].
    pub fn scan_prefix(
        &self,
        store: &Store,
        collection_name: &str,
        prefix: &[u8],
    ) -> Result<Entries, StorageError> {
        let c = collection(collection_name)?;
        let tx = Arc::clone(&self.tx);
        let prefix = prefix.to_vec();
        absent_if_missing(store.run(async move { tx.scan_prefix(&c, &prefix).await })?)
    }

    /// Every entry with `start <= key < end` (an empty `end` means no upper bound), in key
    /// order — the shape [`zcore_engine::prefix_range`] returns.
    ///
    /// # Errors
    ///
    /// As [`ReadTx::get`].
    pub fn scan_range(
        &self,
        store: &Store,
        collection_name: &str,
        start: &[u8],
        end: &[u8],
    ) -> Result<Entries, StorageError> {
        let c = collection(collection_name)?;
        let tx = Arc::clone(&self.tx);
        let range = if end.is_empty() {
            KeyRange::new(
                std::ops::Bound::Included(start.to_vec()),
                std::ops::Bound::Unbounded,
            )
        } else {
            KeyRange::half_open(start, end)
        };
        absent_if_missing(store.run(async move {
            let mut out = Vec::new();
            let mut request = Some(ScanRequest::forward(range, 1024));
            while let Some(req) = request.take() {
                let page = tx.scan(&c, &req).await?;
                request = req.next_page(&page);
                out.extend(page.entries);
            }
            Ok(out)
        })?)
    }

    /// The snapshot version this transaction reads.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.tx.version()
    }
}

/// A write transaction: reads see its own writes; `commit` applies everything atomically.
#[derive(Debug)]
pub struct WriteTx {
    store: Store,
    tx: Mutex<Option<WriteTransaction>>,
    /// The first error of a `set`/`delete` (which return nothing, as in the seed); `commit`
    /// reports it instead of committing.
    deferred: Mutex<Option<StorageError>>,
}

impl WriteTx {
    /// Runs `f` on the store's runtime with the engine transaction moved in and back.
    pub(crate) fn with_tx<F, Fut, T>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(WriteTransaction) -> Fut + Send + 'static,
        Fut: Future<Output = (WriteTransaction, Result<T, TxnError>)> + Send + 'static,
        T: Send + 'static,
    {
        let mut slot = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = slot.take().ok_or(StorageError::NotInitialized)?;
        let (tx, result) = self.store.run(async move { f(tx).await })?;
        *slot = Some(tx);
        Ok(result?)
    }

    /// A synchronous operation on the engine transaction (buffering, savepoints).
    pub(crate) fn with_tx_sync<T>(
        &self,
        f: impl FnOnce(&mut WriteTransaction) -> Result<T, TxnError>,
    ) -> Result<T, StorageError> {
        let mut slot = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = slot.as_mut().ok_or(StorageError::NotInitialized)?;
        Ok(f(tx)?)
    }

    fn defer(&self, result: Result<(), StorageError>) {
        if let Err(e) = result {
            let mut deferred = self
                .deferred
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if deferred.is_none() {
                *deferred = Some(e);
            }
        }
    }

    /// Sets `key` to `value` (creating the collection if needed). Errors surface at `commit`.
    pub fn set(&mut self, collection_name: &str, key: Vec<u8>, value: Vec<u8>) {
        let result = self.try_set(collection_name, key, value);
        self.defer(result);
    }

    /// [`WriteTx::set`] reporting errors at once.
    ///
    /// # Errors
    ///
    /// Invalid collection name, key or value.
    pub fn try_set(
        &self,
        collection_name: &str,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), StorageError> {
        let c = collection(collection_name)?;
        self.store.ensure_collection(&c)?;
        self.with_tx_sync(|tx| tx.put(&c, key, value))
    }

    /// Deletes `key`. Errors surface at `commit`.
    pub fn delete(&mut self, collection_name: &str, key: Vec<u8>) {
        let result = self.try_delete(collection_name, key);
        self.defer(result);
    }

    /// [`WriteTx::delete`] reporting errors at once.
    ///
    /// # Errors
    ///
    /// Invalid collection name or key.
    pub fn try_delete(&self, collection_name: &str, key: Vec<u8>) -> Result<(), StorageError> {
        let c = collection(collection_name)?;
        self.store.ensure_collection(&c)?;
        self.with_tx_sync(|tx| tx.delete(&c, key))
    }

    /// Reads `key`, seeing this transaction's own writes (tracked for conflict detection).
    ///
    /// # Errors
    ///
    /// Invalid name or key, corruption, backend errors.
    pub fn get(
        &self,
        store: &Store,
        collection_name: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let c = collection(collection_name)?;
        // Create it so the read is tracked even before anything was written there: a
        // concurrent first write must conflict with this read.
        store.ensure_collection(&c)?;
        let key = key.to_vec();
        let r = self.with_tx(move |mut tx| async move {
            let r = tx.get(&c, &key).await;
            (tx, r)
        });
        match r {
            Err(StorageError::General(crate::GeneralError::Txn(
                TxnError::CollectionNotFound { .. },
            ))) => Ok(None),
            other => other,
        }
    }

    /// Every entry whose key starts with `prefix`, own writes included.
    ///
    /// # Errors
    ///
    /// As [`WriteTx::get`].
    pub fn scan_prefix(
        &self,
        store: &Store,
        collection_name: &str,
        prefix: &[u8],
    ) -> Result<Entries, StorageError> {
        let c = collection(collection_name)?;
        store.ensure_collection(&c)?;
        let prefix = prefix.to_vec();
        let r = self.with_tx(move |mut tx| async move {
            let r = tx.scan_prefix(&c, &prefix).await;
            (tx, r)
        });
        match r {
            Err(StorageError::General(crate::GeneralError::Txn(
                TxnError::CollectionNotFound { .. },
            ))) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Creates a savepoint (names may repeat; the newest wins).
    ///
    /// # Errors
    ///
    /// Kept for the seed's signature.
    pub fn create_savepoint(&mut self, name: String) -> Result<(), StorageError> {
        self.with_tx_sync(|tx| {
            tx.create_savepoint(name);
            Ok(())
        })
    }

    /// Undoes everything since savepoint `name` (in every collection).
    ///
    /// # Errors
    ///
    /// Unknown savepoint.
    pub fn rollback_to_savepoint(&mut self, name: &str) -> Result<(), StorageError> {
        self.with_tx_sync(|tx| tx.rollback_to_savepoint(name))
    }

    /// Forgets savepoint `name` (and later ones), keeping their writes.
    ///
    /// # Errors
    ///
    /// Unknown savepoint.
    pub fn release_savepoint(&mut self, name: &str) -> Result<(), StorageError> {
        self.with_tx_sync(|tx| tx.release_savepoint(name))
    }

    /// Commits atomically and durably.
    ///
    /// # Errors
    ///
    /// The first deferred `set`/`delete` error (nothing is committed then), a conflict (retry),
    /// backend errors.
    pub fn commit(self, store: &Store) -> Result<(), StorageError> {
        let _ = store;
        if let Some(e) = self
            .deferred
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Err(e);
        }
        let tx = self
            .tx
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ok_or(StorageError::NotInitialized)?;
        self.store.run(async move { tx.commit().await })??;
        Ok(())
    }

    /// Discards the transaction.
    pub fn rollback(self) {}
}
