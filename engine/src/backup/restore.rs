//! Restoring a backup chain into an empty backend, at its head or at an earlier version.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::chain::{self, Loaded};
use super::codec::{self, ChunkExpect, Entries};
use super::error::{BackupError, Check};
use super::format::Digest;
use super::fsutil;
use super::{Phase, Progress, VerifyReport, joined, run_blocking};
use crate::backend::{
    BackendError, CollectionName, Durability, KeyRange, ScanRequest, StorageBackend, WriteBatch,
};
use crate::crypto::ValueCodec;
use crate::mvcc::Version;
use crate::mvcc::keys::EncodedKey;
use crate::mvcc::meta::{self, GC_FLOOR, META_COLLECTION, SEQ_PREFIX, VERSION_LIMIT};

/// Record in `__meta` present while a restore is writing; a target holding it is refused.
const RESTORE_MARKER: &[u8] = b"backup.restore_incomplete";
/// Decoded batches waiting for the target.
const PIPELINE_DEPTH: usize = 2;

/// Options of [`restore_with`].
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Restore the state at this version (default: the chain's head). Must lie between the
    /// chain's base and head (see [`VerifyReport::restorable_from`]).
    pub as_of: Option<Version>,
    /// Progress reports.
    pub progress: Progress,
    /// Most bytes of decoded write batches kept in memory between the verify pass and the
    /// write pass (default [`DEFAULT_RESTORE_MEMORY`]). Up to this size the write pass needs
    /// no second read of the chunks; above it, it reads, re-checks (BLAKE3) and decodes them
    /// again, one chunk at a time. `0` uses the default.
    pub memory_budget: usize,
    /// The keyring: required for an encrypted backup (checked against the key id and check
    /// value its manifest records before any chunk is read). With a keyring the target becomes
    /// an encrypted store: its values are sealed with the newest key (a plain backup can be
    /// restored encrypted this way).
    pub encryption: Option<crate::crypto::EncryptionOptions>,
}

/// Default [`RestoreOptions::memory_budget`]: 128 MiB.
pub const DEFAULT_RESTORE_MEMORY: usize = 128 << 20;

/// Builds the write batches during the verify pass while they fit the memory budget.
struct BatchCache {
    codec: ValueCodec,
    used_len: usize,
    wanted: BTreeSet<String>,
    as_of: Version,
    budget: usize,
    bytes: usize,
    overflow: bool,
    current: Option<(CollectionName, Decoded)>,
    done: Vec<Decoded>,
}

impl chain::EntrySink for BatchCache {
    fn start_chunk(&mut self, backup: usize, collection: &str) -> bool {
        if self.overflow || backup >= self.used_len || !self.wanted.contains(collection) {
            return false;
        }
        let Ok(name) = CollectionName::new(collection) else {
            return false;
        };
        self.current = Some((
            name,
            Decoded {
                batch: WriteBatch::new(),
                entries: 0,
                file_bytes: 0,
            },
        ));
        true
    }

    fn entry(&mut self, e: &super::format::Entry<'_>) {
        if self.overflow || e.version > self.as_of {
            return;
        }
        let Some((collection, d)) = self.current.as_mut() else {
            return;
        };
        let key = EncodedKey::encode(e.key).into_versioned(e.version);
        let Ok(stored) = self
            .codec
            .encode(collection.as_str(), key.as_bytes(), e.value)
        else {
            // Sealing failed (no randomness): the write pass encodes again and reports it.
            self.overflow = true;
            self.current = None;
            self.done = Vec::new();
            return;
        };
        self.bytes += key.as_bytes().len() + stored.len() + 64;
        d.batch.put(collection, key.into_bytes(), stored);
        d.entries += 1;
        if self.bytes > self.budget {
            // Over budget: give the memory back; the write pass reads the chunks again.
            self.overflow = true;
            self.current = None;
            self.done = Vec::new();
        }
    }

    fn end_chunk(&mut self, file_bytes: u64) {
        if let Some((_, mut d)) = self.current.take() {
            d.file_bytes = file_bytes;
            self.done.push(d);
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    /// The version restored.
    pub as_of: Version,
    /// The oldest version time-travel reads can use on the target (its GC floor).
    pub restorable_from: Version,
    /// Backups of the chain whose data was written (root first).
    pub backups_used: Vec<PathBuf>,
    /// User collections created.
    pub collections: usize,
    /// Stored versions written.
    pub entries_written: u64,
    /// Bytes of chunk files read for writing.
    pub bytes_read: u64,
    /// What was verified before writing.
    pub verified: VerifyReport,
}

/// Restores the backup chain ending at `head_dir` into the empty `target`, as of `as_of`
/// (default: the head). See the [module docs](super) for the guarantees. Open an
/// [`Engine`](crate::Engine) on the target afterwards.
///
/// # Errors
///
/// [`BackupError`] naming the file and the failed check. Integrity failures are found
/// before anything is written; the target is left as it was (empty).
pub async fn restore(
    head_dir: impl AsRef<Path>,
    target: Arc<dyn StorageBackend>,
    as_of: Option<Version>,
) -> Result<RestoreReport, BackupError> {
    restore_with(
        head_dir,
        target,
        &RestoreOptions {
            as_of,
            ..RestoreOptions::default()
        },
    )
    .await
}

/// Whether `target` holds the marker of a restore that did not finish (a crash while
/// writing): such a target must be wiped before it is used or restored into again.
///
/// # Errors
///
/// Backend errors.
pub async fn restore_incomplete(target: &dyn StorageBackend) -> Result<bool, BackendError> {
    let meta = CollectionName::system(META_COLLECTION)?;
    match target.get(&meta, RESTORE_MARKER).await {
        Ok(found) => Ok(found.is_some()),
        Err(BackendError::CollectionNotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`restore`] with options.
///
/// # Errors
///
/// As [`restore`].
pub async fn restore_with(
    head_dir: impl AsRef<Path>,
    target: Arc<dyn StorageBackend>,
    options: &RestoreOptions,
) -> Result<RestoreReport, BackupError> {
    let head_dir = head_dir.as_ref().to_path_buf();
    let mut chain = {
        let dir = head_dir.clone();
        run_blocking(&head_dir, move || chain::load_chain(&dir)).await?
    };
    let encryption = options.encryption.as_ref();
    chain::attach_keyring(&mut chain, encryption.map(|e| &e.keyring))?;
    let codec = encryption.map_or_else(ValueCodec::plain, ValueCodec::unregistered);
    let (from, to) = chain::restorable(&chain);
    let as_of = options.as_of.unwrap_or(to);
    if as_of < from || as_of > to {
        return Err(BackupError::refused(
            &head_dir,
            Check::AsOfRange,
            format!("version {as_of} is outside the chain's restorable range {from}..={to}"),
        ));
    }
    // The first backup whose head reaches `as_of` ends the part of the chain to write.
    let used_len = chain
        .iter()
        .position(|b| b.manifest.head_version >= as_of)
        .map_or(chain.len(), |i| i + 1);
    // Sequences: the highest lease seen anywhere in the chain (never reuse a value).
    let mut sequences: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for b in &chain {
        for s in &b.manifest.sequences {
            let e = sequences.entry(s.name.0.clone()).or_insert(0);
            *e = (*e).max(s.limit);
        }
    }
    let chain = Arc::new(chain);
    let Some(last) = chain.get(used_len.saturating_sub(1)) else {
        return Err(BackupError::invalid(
            &head_dir,
            Check::ManifestConsistency,
            "empty chain",
        ));
    };
    let collections: Vec<CollectionName> = last
        .manifest
        .collections
        .iter()
        .map(|c| {
            CollectionName::new(&c.name).map_err(|e| {
                BackupError::invalid(
                    &last.manifest_path(),
                    Check::ManifestConsistency,
                    e.to_string(),
                )
            })
        })
        .collect::<Result<_, _>>()?;

    check_empty(&*target, &head_dir).await?;

    // Pass 1: verify the whole chain named (also the part after `as_of`: a damaged chain is
    // refused as a whole).
    let cache = BatchCache {
        codec: codec.clone(),
        used_len,
        wanted: collections.iter().map(|c| c.as_str().to_owned()).collect(),
        as_of,
        budget: if options.memory_budget == 0 {
            DEFAULT_RESTORE_MEMORY
        } else {
            options.memory_budget
        },
        bytes: 0,
        overflow: false,
        current: None,
        done: Vec::new(),
    };
    let (verified, cache) = {
        let chain = Arc::clone(&chain);
        let progress = options.progress.clone();
        run_blocking(&head_dir, move || {
            let mut cache = cache;
            let report = chain::verify_chain(&chain, &progress, Some(&mut cache))?;
            Ok((report, cache))
        })
        .await?
    };
    let cached = (!cache.overflow).then_some(cache.done);
    check_empty(&*target, &head_dir).await?;

    // Pass 2: write.
    let written = write_all(
        &head_dir,
        &target,
        encryption,
        &codec,
        Arc::clone(&chain),
        used_len,
        cached,
        &collections,
        as_of,
        from,
        &sequences,
        &options.progress,
    )
    .await;
    match written {
        Ok((entries_written, bytes_read)) => Ok(RestoreReport {
            as_of,
            restorable_from: from,
            backups_used: chain.iter().take(used_len).map(|b| b.dir.clone()).collect(),
            collections: collections.len(),
            entries_written,
            bytes_read,
            verified,
        }),
        Err(e) => {
            if let Err(rollback) = roll_back(&*target, &collections).await {
                tracing::error!(error = %rollback, "could not roll back a failed restore; the target must be wiped");
            }
            Err(e)
        }
    }
}

async fn check_empty(target: &dyn StorageBackend, path: &Path) -> Result<(), BackupError> {
    let backend_err = |e| BackupError::backend(path, Check::TargetEmpty, e);
    for c in target.list_collections().await.map_err(backend_err)? {
        if !c.is_system() {
            return Err(BackupError::refused(
                path,
                Check::TargetEmpty,
                format!(
                    "the target store holds collection `{c}`; restore only into an empty store"
                ),
            ));
        }
        let page = target
            .scan(&c, &ScanRequest::forward(KeyRange::all(), 1))
            .await
            .map_err(backend_err)?;
        if !page.entries.is_empty() {
            let incomplete = c.as_str() == META_COLLECTION
                && restore_incomplete(target).await.map_err(backend_err)?;
            return Err(BackupError::refused(
                path,
                Check::TargetEmpty,
                if incomplete {
                    "an earlier restore into the target did not finish; wipe the target store first"
                        .to_owned()
                } else {
                    format!(
                        "the target store holds records in `{c}`; restore only into an empty store"
                    )
                },
            ));
        }
    }
    Ok(())
}

/// One decoded batch for the target.
struct Decoded {
    batch: WriteBatch,
    entries: u64,
    file_bytes: u64,
}

/// Reads, re-checks and decodes the chunks to write, in chain order; `send` gets each batch
/// and returns `false` to stop.
fn produce(
    used: &[Loaded],
    codec: &ValueCodec,
    wanted: &BTreeSet<String>,
    as_of: Version,
    mut send: impl FnMut(Decoded) -> bool,
) -> Result<(), BackupError> {
    for backup in used {
        let m = &backup.manifest;
        let mut first = 0usize;
        for summary in &m.collections {
            let end = first + summary.chunks as usize;
            let range = first..end;
            first = end;
            if !wanted.contains(&summary.name) {
                continue;
            }
            let collection = CollectionName::new(&summary.name).map_err(|e| {
                BackupError::invalid(
                    &backup.manifest_path(),
                    Check::ManifestConsistency,
                    e.to_string(),
                )
            })?;
            for seq in range {
                let Some(chunk) = m.chunks.get(seq) else {
                    break;
                };
                let (path, bytes) = fsutil::read_named(
                    &backup.dir,
                    &chunk.file,
                    u64::from(u32::MAX) + 64,
                    Some(chunk.size),
                )?;
                // Verified in pass 1; the digest proves these are still the same bytes.
                let digest = Digest::of(&bytes);
                if digest != chunk.blake3 {
                    return Err(BackupError::invalid(
                        &path,
                        Check::ChunkDigest,
                        format!("the file changed since it was verified (now {digest})"),
                    ));
                }
                let expect = ChunkExpect {
                    backup_id: m.backup_id,
                    seq: u32::try_from(seq).unwrap_or(u32::MAX),
                    collection: &summary.name,
                    chunk,
                    keyring: backup.keyring.as_deref(),
                };
                let data = codec::open_chunk_unhashed(&path, &bytes, &expect)?;
                let mut batch = WriteBatch::with_capacity(
                    usize::try_from(chunk.entries).unwrap_or(0).min(1 << 20),
                );
                let mut entries = 0u64;
                for entry in Entries::new(&path, &data, chunk.entries) {
                    let e = entry?;
                    if e.version > as_of {
                        continue;
                    }
                    let key = EncodedKey::encode(e.key).into_versioned(e.version);
                    let stored = codec
                        .encode(collection.as_str(), key.as_bytes(), e.value)
                        .map_err(|err| {
                            BackupError::invalid(&path, Check::TargetWrite, err.to_string())
                        })?;
                    batch.put(&collection, key.into_bytes(), stored);
                    entries += 1;
                }
                if !send(Decoded {
                    batch,
                    entries,
                    file_bytes: chunk.size,
                }) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn write_all(
    head_dir: &Path,
    target: &Arc<dyn StorageBackend>,
    encryption: Option<&crate::crypto::EncryptionOptions>,
    codec: &ValueCodec,
    chain: Arc<Vec<Loaded>>,
    used_len: usize,
    cached: Option<Vec<Decoded>>,
    collections: &[CollectionName],
    as_of: Version,
    floor: Version,
    sequences: &BTreeMap<Vec<u8>, u64>,
    progress: &Progress,
) -> Result<(u64, u64), BackupError> {
    let write_err = |e| BackupError::backend(head_dir, Check::TargetWrite, e);
    if encryption.is_some() {
        // Record the target's key (as a new encrypted store) before its first sealed value;
        // a target already encrypted with another key is refused here.
        crate::crypto::open_store(&**target, encryption, true)
            .await
            .map_err(|e| BackupError::engine(head_dir, Check::TargetWrite, e))?;
    }
    let meta_name = CollectionName::system(META_COLLECTION).map_err(|e| write_err(e.into()))?;
    target
        .create_collection(&meta_name)
        .await
        .map_err(write_err)?;
    let mut marker = WriteBatch::new();
    marker.put(
        &meta_name,
        RESTORE_MARKER.to_vec(),
        meta::encode_u64(RESTORE_MARKER, as_of),
    );
    target
        .write(marker, Durability::Synced)
        .await
        .map_err(write_err)?;
    for c in collections {
        target.create_collection(c).await.map_err(write_err)?;
    }

    let total: u64 = chain
        .iter()
        .take(used_len)
        .flat_map(|b| b.manifest.chunks.iter())
        .map(|c| c.size)
        .sum();
    let wanted: BTreeSet<String> = collections.iter().map(|c| c.as_str().to_owned()).collect();
    let mut entries = 0u64;
    let mut bytes = 0u64;
    progress.report(Phase::Restore, 0, total);
    let handle = tokio::runtime::Handle::try_current();
    match (cached, handle) {
        (Some(batches), _) => {
            for d in batches {
                target
                    .write(d.batch, Durability::Buffered)
                    .await
                    .map_err(write_err)?;
                entries += d.entries;
                bytes += d.file_bytes;
                progress.report(Phase::Restore, bytes, total);
            }
        }
        (None, Ok(handle)) => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Decoded>(PIPELINE_DEPTH);
            let codec = codec.clone();
            let producer = handle.spawn_blocking(move || {
                let used = chain.get(..used_len).unwrap_or_default();
                produce(used, &codec, &wanted, as_of, |d| {
                    tx.blocking_send(d).is_ok()
                })
            });
            let mut failed = None;
            while let Some(d) = rx.recv().await {
                if let Err(e) = target.write(d.batch, Durability::Buffered).await {
                    failed = Some(write_err(e));
                    break;
                }
                entries += d.entries;
                bytes += d.file_bytes;
                progress.report(Phase::Restore, bytes, total);
            }
            drop(rx);
            let produced = joined(head_dir, producer.await)?;
            if let Some(e) = failed {
                return Err(e);
            }
            produced?;
        }
        (None, Err(_)) => {
            let mut batches = Vec::new();
            produce(
                chain.get(..used_len).unwrap_or_default(),
                codec,
                &wanted,
                as_of,
                |d| {
                    batches.push(d);
                    true
                },
            )?;
            for d in batches {
                target
                    .write(d.batch, Durability::Buffered)
                    .await
                    .map_err(write_err)?;
                entries += d.entries;
                bytes += d.file_bytes;
                progress.report(Phase::Restore, bytes, total);
            }
        }
    }

    // Last, in one synced batch: the engine's metadata, and the marker goes. The sync also
    // makes every data batch above durable.
    let mut last = WriteBatch::new();
    last.put(
        &meta_name,
        VERSION_LIMIT.to_vec(),
        meta::encode_u64(VERSION_LIMIT, as_of),
    );
    last.put(
        &meta_name,
        GC_FLOOR.to_vec(),
        meta::encode_u64(GC_FLOOR, floor.min(as_of)),
    );
    for (name, limit) in sequences {
        let mut key = SEQ_PREFIX.to_vec();
        key.extend_from_slice(name);
        let stored = meta::encode_u64(&key, *limit);
        last.put(&meta_name, key, stored);
    }
    last.delete(&meta_name, RESTORE_MARKER.to_vec());
    target
        .write(last, Durability::Synced)
        .await
        .map_err(write_err)?;
    Ok((entries, bytes))
}

/// Returns a target that was empty before a failed restore to empty.
async fn roll_back(
    target: &dyn StorageBackend,
    collections: &[CollectionName],
) -> Result<(), BackendError> {
    for c in collections {
        target.drop_collection(c).await?;
    }
    let meta = CollectionName::system(META_COLLECTION)?;
    let mut request = Some(ScanRequest::forward(KeyRange::all(), 1024));
    let mut deletes = WriteBatch::new();
    while let Some(req) = request.take() {
        let page = match target.scan(&meta, &req).await {
            Ok(page) => page,
            Err(BackendError::CollectionNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        request = req.next_page(&page);
        for (key, _) in page.entries {
            deletes.delete(&meta, key);
        }
    }
    target.write(deletes, Durability::Synced).await
}
