//! The fjall backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use fjall::compaction::filter::{CompactionFilter, Context, Factory, ItemAccessor, Verdict};
use fjall::config::CompressionPolicy;
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use zcore_engine::backend::catch_engine_panic;
use zcore_engine::limits::{check_key, check_scan_limit};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionStats,
    CompactionGc, Direction, Durability, GcPass, ScanPage, ScanRequest, StorageBackend, WriteBatch,
};

use super::{FjallCompression, FjallOptions};
use crate::group_sync::{GroupSync, run_blocking};

const KIND: BackendKind = BackendKind::Fjall;

/// The seal file inside the database directory (see [`mark_open`]).
pub const SEAL_FILE: &str = "zcore.seal";
const SEAL_MAGIC: &[u8; 4] = b"ZCSL";
const SEAL_FORMAT: u8 = 1;
/// Largest seal accepted (a manifest of some 100,000 files).
const SEAL_MAX: usize = 64 << 20;

/// One file of a cleanly closed store, as the seal records it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SealedFile {
    /// Path relative to the database directory, `/`-separated.
    path: String,
    len: u64,
    /// CRC32C of the content; `None` for tables (fjall checksums their blocks itself, and
    /// reading every table at open would cost a full read of the store).
    crc: Option<u32>,
}

/// What the seal says about the last shutdown.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seal {
    /// Closed cleanly with every memtable flushed; fjall's next sequence number then, and the
    /// files the directory held.
    Clean(u64, Vec<SealedFile>),
    /// Opened since a clean close (which had reached this sequence number, for diagnosis);
    /// a crash may have followed.
    Open(u64),
}

/// `magic ‖ format ‖ state (1 clean, 2 open) ‖ seqno (LE u64) ‖ file count (LE u32) ‖ per
/// file: path length (LE u16), path, length (LE u64), has-crc (u8), crc (LE u32) ‖ crc32c (LE)
/// of everything before it`.
fn encode_seal(seal: &Seal) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(SEAL_MAGIC);
    out.push(SEAL_FORMAT);
    let (state, seqno, files) = match seal {
        Seal::Clean(n, files) => (1, *n, files.as_slice()),
        Seal::Open(n) => (2, *n, &[][..]),
    };
    out.push(state);
    out.extend_from_slice(&seqno.to_le_bytes());
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for f in files {
        out.extend_from_slice(&(f.path.len() as u16).to_le_bytes());
        out.extend_from_slice(f.path.as_bytes());
        out.extend_from_slice(&f.len.to_le_bytes());
        out.push(u8::from(f.crc.is_some()));
        out.extend_from_slice(&f.crc.unwrap_or(0).to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A little-endian reader over the seal that never trusts a length.
struct SealReader<'a>(&'a [u8]);

impl SealReader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!("{SEAL_FILE} is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut le = [0u8; 8];
        le.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(le))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut le = [0u8; 4];
        le.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(le))
    }

    fn u16(&mut self) -> Result<u16, String> {
        let mut le = [0u8; 2];
        le.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(le))
    }
}

fn decode_seal(bytes: &[u8]) -> Result<Seal, String> {
    if bytes.len() < 4 || bytes.len() > SEAL_MAX {
        return Err(format!(
            "{SEAL_FILE} has an impossible size ({} bytes)",
            bytes.len()
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(format!("{SEAL_FILE} fails its checksum"));
    }
    let mut r = SealReader(body);
    if r.take(4)? != SEAL_MAGIC || r.take(1)? != [SEAL_FORMAT] {
        return Err(format!("{SEAL_FILE} has an unknown header"));
    }
    let state = r.take(1)?[0];
    let seqno = r.u64()?;
    let count = r.u32()?;
    let mut files = Vec::new();
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        let path = String::from_utf8(r.take(len)?.to_vec())
            .map_err(|_| format!("{SEAL_FILE} holds a path that is not UTF-8"))?;
        let len = r.u64()?;
        let has_crc = r.take(1)?[0] == 1;
        let crc = r.u32()?;
        files.push(SealedFile {
            path,
            len,
            crc: has_crc.then_some(crc),
        });
    }
    if !r.0.is_empty() {
        return Err(format!("{SEAL_FILE} has trailing bytes"));
    }
    match state {
        1 => Ok(Seal::Clean(seqno, files)),
        2 if files.is_empty() => Ok(Seal::Open(seqno)),
        _ => Err(format!("{SEAL_FILE} has an unknown state {state}")),
    }
}

/// Every file of the database directory except the seal itself and fjall's lock file, with
/// its length and (tables excepted) its CRC32C, in path order.
fn seal_files(root: &Path) -> std::io::Result<Vec<SealedFile>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if relative.starts_with(SEAL_FILE) || relative == "lock" {
                continue;
            }
            let is_table = relative.contains("/tables/");
            let len = entry.metadata()?.len();
            let crc = if is_table {
                None
            } else {
                Some(crc32c::crc32c(&std::fs::read(&path)?))
            };
            out.push(SealedFile {
                path: relative,
                len,
                crc,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Reads the seal, if there is one.
fn read_seal(path: &Path) -> Result<Option<Seal>, String> {
    match std::fs::read(path.join(SEAL_FILE)) {
        Ok(bytes) => decode_seal(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {SEAL_FILE}: {e}")),
    }
}

/// Before fjall reads anything: a cleanly closed store must still hold exactly the files the
/// seal lists, with the same lengths and (journal, manifests, markers) the same checksums.
///
/// fjall trusts length fields in its manifests and journal before it checks anything (a
/// flipped byte there made it try to allocate 97 GB and abort the process), so these files
/// are checked before fjall sees them.
fn check_sealed_files(path: &Path, seal: &Seal) -> Result<(), String> {
    let Seal::Clean(_, sealed) = seal else {
        return Ok(());
    };
    let present = seal_files(path).map_err(|e| format!("cannot check the store's files: {e}"))?;
    for want in sealed {
        let Some(have) = present.iter().find(|f| f.path == want.path) else {
            return Err(format!(
                "{} is missing from a store that was closed cleanly (restore from a backup)",
                want.path
            ));
        };
        if have.len != want.len || (want.crc.is_some() && have.crc != want.crc) {
            return Err(format!(
                "{} changed after the store was closed cleanly ({} bytes, checksum {:?}; the \
                 seal recorded {} bytes, checksum {:?}): the file is damaged (restore from a \
                 backup; deleting {SEAL_FILE} skips this check)",
                want.path, have.len, have.crc, want.len, want.crc
            ));
        }
    }
    Ok(())
}

/// Before fjall touches the directory: marks a cleanly closed store open (durably), so that
/// whatever happens from now on is not mistaken for a clean close. fjall's recovery may
/// rewrite version files and journals; a process killed between that and a later marking
/// would leave a seal that no longer matches the files (the migration kill test hit exactly
/// this), so the marking comes first.
///
/// The checks of a clean close happen before fjall reads anything ([`check_sealed_files`]):
/// fjall recovers its journal up to the first damaged batch and silently drops the rest
/// (truncating the file), and it does not checksum a batch's header, so a flipped sequence
/// number replays an old batch over newer data; the seal's CRC of the journal catches both.
///
/// After a crash ([`Seal::Open`]) there is no check: fjall's recovery decides what survives,
/// and commits lost with a damaged journal tail (or replayed by a damaged batch header) stay
/// undetectable here. (Comparing sequence numbers is no help: GC compactions may drop the
/// entries that carried the highest ones, which also makes fjall replay journal batches it
/// had already applied, so "nothing replayed" is no invariant either.) Likewise, an open
/// that fails after the files were checked (a damaged table, say) leaves the seal open.
fn mark_open(path: &Path, seal: &Seal) -> Result<(), String> {
    match seal {
        Seal::Clean(seqno, _) => write_seal(path, &Seal::Open(*seqno))
            .map_err(|e| format!("cannot update {SEAL_FILE}: {e}")),
        // Not closed cleanly since it was last opened (a crash, or a first open).
        Seal::Open(_) => Ok(()),
    }
}

/// Writes the seal atomically (temporary file, fsync, rename, fsync of the directory).
fn write_seal(path: &Path, seal: &Seal) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.join(format!("{SEAL_FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode_seal(seal))?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path.join(SEAL_FILE))?;
    std::fs::File::open(path)?.sync_all()
}

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
    /// Held (shared) by every call that keeps a clone of the database or a keyspace beyond
    /// the state lock (a write waiting for its group sync, `sync`, `compact`), moved into the
    /// blocking work along with the clone so a cancelled caller cannot drop it early; `close`
    /// takes it exclusively, so the seal is written only once fjall has really shut down — a clone
    /// alive past `close` would keep fjall's workers running and change files after the seal
    /// listed them.
    in_flight: Arc<tokio::sync::RwLock<()>>,
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

/// Creates an empty database next to `path` and renames it into place. fjall 3.1.13 killed in
/// the middle of creating a database leaves a directory that every later open refuses
/// (journal present, version marker missing); building it under another name means a crash
/// leaves only a staging directory, which the next attempt removes.
fn create_fresh(path: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let staging = crate::staging::staging_path(path);
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
        let seal = read_seal(&path).map_err(|m| open_err(m.into()))?;
        if let Some(seal) = &seal {
            check_sealed_files(&path, seal).map_err(|m| open_err(m.into()))?;
            mark_open(&path, seal).map_err(|m| open_err(m.into()))?;
        }
        // fjall can panic on damaged files instead of returning an error.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = builder.open().map_err(|e| open_err(e.into()))?;
            let mut keyspaces = BTreeMap::new();
            for name in db.list_keyspace_names() {
                let name: &str = &name;
                let collection =
                    CollectionName::from_stored(name).map_err(|e| open_err(e.into()))?;
                let keyspace = db
                    .keyspace(name, KeyspaceCreateOptions::default)
                    .map_err(|e| open_err(e.into()))?;
                keyspaces.insert(collection, keyspace);
            }
            Ok::<_, BackendError>((db, keyspaces))
        }));
        let (db, keyspaces) = match opened {
            Ok(result) => result?,
            Err(_) => {
                return Err(open_err(
                    "fjall panicked while opening the store (its files are damaged)".into(),
                ));
            }
        };
        Ok(Self {
            path,
            compression: options.compression,
            state: RwLock::new(Some(Open { db, keyspaces })),
            in_flight: Arc::new(tokio::sync::RwLock::new(())),
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

    fn scan_inner(
        open: &Open,
        keyspace: &Keyspace,
        name: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError> {
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

    /// Applies `batch` as one fjall batch; returns the database and the write's sync ticket.
    fn apply(&self, batch: WriteBatch) -> Result<(Database, u64), BackendError> {
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        let mut fjall_batch = fjall::OwnedWriteBatch::with_capacity(open.db.clone(), batch.len())
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
        Ok((open.db.clone(), self.group.note_write()))
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
        catch_engine_panic(KIND, "get", Some(name), || {
            let value = open
                .db
                .snapshot()
                .get(keyspace, key)
                .map_err(|e| engine_err("get", Some(name), e))?;
            Ok(value.map(|v| v.to_vec()))
        })
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
        catch_engine_panic(KIND, "seek", Some(name), || {
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
        })
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
        catch_engine_panic(KIND, "scan", Some(name), || {
            Self::scan_inner(open, keyspace, name, request)
        })
    }

    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError> {
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let in_flight = Arc::clone(&self.in_flight).read_owned().await;
        let (db, ticket) = catch_engine_panic(KIND, "write batch", None, || self.apply(batch))?;
        if durability == Durability::Synced {
            self.group
                .sync_through(KIND, ticket, move || {
                    let _in_flight = in_flight;
                    catch_engine_panic(KIND, "sync", None, || {
                        db.persist(PersistMode::SyncAll)
                            .map_err(|e| engine_err("sync", None, e))
                    })
                })
                .await?;
        }
        Ok(())
    }
    async fn sync(&self) -> Result<(), BackendError> {
        let in_flight = Arc::clone(&self.in_flight).read_owned().await;
        let db = self.db()?;
        let ticket = self.group.last_written();
        // Ticket 0 (nothing written through us) still syncs once: the caller asked for it.
        self.group
            .sync_through(KIND, ticket.max(1), move || {
                let _in_flight = in_flight;
                catch_engine_panic(KIND, "sync", None, || {
                    db.persist(PersistMode::SyncAll)
                        .map_err(|e| engine_err("sync", None, e))
                })
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
        // Block loads served by the block cache vs read from disk, over every keyspace
        // (fjall's `metrics` feature; counted since open).
        let (hits, misses) = open.keyspaces.values().fold((0u64, 0u64), |(h, m), k| {
            let metrics = k.metrics();
            (
                h + metrics.block_load_cached_count() as u64,
                m + metrics.block_load_io_count() as u64,
            )
        });
        zcore_engine::metrics::backend_cache(KIND, hits, misses);
        details.push(("block_cache_hits".to_owned(), hits));
        details.push(("block_cache_misses".to_owned(), misses));
        details.extend(self.group.counters());
        Ok(BackendStats {
            backend: KIND,
            disk_bytes: Some(disk_bytes),
            collections,
            details,
        })
    }

    async fn compact(&self) -> Result<bool, BackendError> {
        let in_flight = Arc::clone(&self.in_flight).read_owned().await;
        let keyspaces: Vec<(CollectionName, Keyspace)> = {
            let guard = self.read()?;
            let open = guard.as_ref().ok_or_else(closed)?;
            open.keyspaces
                .iter()
                .map(|(name, keyspace)| (name.clone(), keyspace.clone()))
                .collect()
        };
        run_blocking(KIND, move || {
            let _in_flight = in_flight;
            catch_engine_panic(KIND, "compact", None, || {
                for (name, keyspace) in &keyspaces {
                    // Flush the memtable first so the compaction sees every version.
                    keyspace
                        .rotate_memtable_and_wait()
                        .map_err(|e| engine_err("flush", Some(name), e))?;
                    keyspace
                        .major_compact()
                        .map_err(|e| engine_err("compact", Some(name), e))?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn inspect_details(&self) -> Result<Vec<(String, u64)>, BackendError> {
        let guard = self.read()?;
        let open = guard.as_ref().ok_or_else(closed)?;
        catch_engine_panic(KIND, "inspect", None, || {
            let db = &open.db;
            let mut details = vec![
                (
                    "journal_disk_bytes".to_owned(),
                    db.journal_disk_space()
                        .map_err(|e| engine_err("measure the journal", None, e))?,
                ),
                (
                    "outstanding_flushes".to_owned(),
                    db.outstanding_flushes() as u64,
                ),
                (
                    "active_compactions".to_owned(),
                    db.active_compactions() as u64,
                ),
                (
                    "compactions_completed".to_owned(),
                    db.compactions_completed() as u64,
                ),
                ("seqno".to_owned(), db.seqno()),
            ];
            for (name, keyspace) in &open.keyspaces {
                details.push((format!("{name}.tables"), keyspace.table_count() as u64));
                details.push((
                    format!("{name}.l0_tables"),
                    keyspace.l0_table_count() as u64,
                ));
                details.push((
                    format!("{name}.sealed_memtables"),
                    keyspace.sealed_memtable_count() as u64,
                ));
            }
            Ok(details)
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
        // Every call still holding a clone of the database finishes first (see `in_flight`);
        // calls arriving later find the store closed.
        let _drained = self.in_flight.write().await;
        let open = self.write_lock().take().ok_or_else(closed)?;
        let path = self.path.clone();
        // Persisting and dropping (which joins fjall's worker threads and releases the
        // directory lock) both block.
        run_blocking(KIND, move || {
            catch_engine_panic(KIND, "close", None, || {
                // Flush every memtable into (block-checksummed) tables first: a closed store
                // then keeps nothing only in the journal, whose batch headers (sequence
                // numbers) fjall does not checksum and whose damaged tail it drops silently.
                let result = open
                    .keyspaces
                    .iter()
                    .try_for_each(|(name, keyspace)| {
                        keyspace
                            .rotate_memtable_and_wait()
                            .map_err(|e| engine_err("flush on close", Some(name), e))
                    })
                    .and_then(|()| {
                        open.db
                            .persist(PersistMode::SyncAll)
                            .map_err(|e| engine_err("sync on close", None, e))
                    });
                let seqno = open.db.seqno();
                drop(open);
                result?;
                // Only after the engine released the directory: every write up to `seqno`
                // is durable now.
                let files = seal_files(&path).map_err(|e| {
                    BackendError::engine(KIND, "list the files to seal on close", None, e)
                })?;
                write_seal(&path, &Seal::Clean(seqno, files))
                    .map_err(|e| BackendError::engine(KIND, "write the seal on close", None, e))
            })
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
