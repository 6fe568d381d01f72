//! Creating a backup from a live engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::chain::{self, Loaded};
use super::codec;
use super::error::{BackupError, Check};
use super::format::{
    BackupId, BackupKind, ByteString, ChunkRef, CollectionSummary, Compression, Digest, Entry,
    MANIFEST_FILE, MANIFEST_TMP_FILE, Manifest, ParentLink, SequenceRecord, StateHasher,
    chunk_file_name, encode_entry,
};
use super::frame::FORMAT_VERSION;
use super::fsutil;
use super::{BackupMetadata, BackupOptions, Phase, Progress, joined, run_blocking};
use crate::backend::{CollectionName, KeyRange, ScanRequest, StorageBackend};
use crate::mvcc::keys::split_versioned;
use crate::mvcc::meta::{META_COLLECTION, SEQ_PREFIX};
use crate::mvcc::value::{self, Stored};
use crate::mvcc::{Engine, ReadTransaction, TxnError, Version};

/// Bytes a scan page aims at (its entry count adapts to the entry sizes seen).
const PAGE_TARGET_BYTES: usize = 1 << 20;
const MIN_PAGE: usize = 16;
const MAX_PAGE: usize = 8192;
/// Sealed chunks waiting for the writer thread.
const PIPELINE_DEPTH: usize = 2;

impl Engine {
    /// Writes a consistent backup of the latest committed version into `dir` (created if
    /// needed; must be empty), while other transactions keep committing. See the
    /// [`backup`](crate::backup) module for what is copied and the guarantees.
    ///
    /// # Errors
    ///
    /// [`BackupError`] naming the file or directory and the failed check: the directory is
    /// not empty, the parent backup is damaged or its base is no longer retained, the source
    /// state at the base differs from the parent's, source reads or file writes failed. On
    /// error the files written so far are removed.
    pub async fn create_backup(
        &self,
        dir: impl AsRef<Path>,
        options: &BackupOptions,
    ) -> Result<BackupMetadata, BackupError> {
        let dir = dir.as_ref();
        let parent = match &options.incremental_from {
            Some(p) => {
                let p = p.clone();
                let chain = run_blocking(&p.clone(), move || chain::load_chain(&p)).await?;
                chain.into_iter().last()
            }
            None => None,
        };
        let existed = dir.exists();
        fsutil::prepare_dir(dir)?;
        let result = build(self, dir, options, parent.as_ref()).await;
        if result.is_err() {
            remove_partial(dir, existed);
        }
        result
    }
}

/// Removes what a failed backup wrote (the directory was empty when it started).
fn remove_partial(dir: &Path, existed: bool) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == MANIFEST_TMP_FILE
                || name == MANIFEST_FILE
                || (name.starts_with("chunk-") && name.ends_with(".zbk"))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if !existed {
        let _ = std::fs::remove_dir(dir);
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn backup_id(
    created_ms: u64,
    base: Version,
    head: Version,
    source: &str,
    parent: Option<&Digest>,
    nonce: Option<&Path>,
) -> BackupId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new_derive_key("zcore-storage backup id v1");
    h.update(&created_ms.to_be_bytes());
    h.update(&base.to_be_bytes());
    h.update(&head.to_be_bytes());
    h.update(source.as_bytes());
    h.update(&[0]);
    if let Some(p) = parent {
        h.update(&p.0);
    }
    if let Some(dir) = nonce {
        // Not reproducible on purpose: two backups never share an id.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(&now.to_be_bytes());
        h.update(&std::process::id().to_be_bytes());
        h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        h.update(dir.as_os_str().as_encoded_bytes());
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    BackupId(id)
}

/// Unescapes an MVCC-encoded user key (`escape(k) ‖ 0x00 0x01`) into `out`.
fn unescape(encoded: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut i = 0;
    while let Some(&b) = encoded.get(i) {
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match encoded.get(i + 1) {
            Some(0xFF) => {
                out.push(0);
                i += 2;
            }
            Some(0x01) => return i + 2 == encoded.len() && !out.is_empty(),
            _ => return false,
        }
    }
    false
}

/// A chunk ready for the writer.
struct Job {
    seq: u32,
    collection: u32,
    name: String,
    raw: Vec<u8>,
    entries: u64,
}

#[derive(Clone)]
struct WriterCtx {
    dir: PathBuf,
    backup_id: BackupId,
    compression: Compression,
    /// Seals the chunks of an encrypted store's backup.
    keyring: Option<Arc<crate::crypto::Keyring>>,
}

fn write_chunk(ctx: &WriterCtx, job: &Job) -> Result<ChunkRef, BackupError> {
    let file = chunk_file_name(job.seq);
    let path = ctx.dir.join(&file);
    let (bytes, compression) = codec::seal_chunk(
        ctx.backup_id,
        job.seq,
        &job.name,
        ctx.compression,
        job.entries,
        &job.raw,
        ctx.keyring.as_deref(),
    )
    .map_err(|e| BackupError::invalid(&path, Check::Write, e))?;
    let crc32c = crc32c::crc32c(&bytes);
    let blake3 = Digest::of(&bytes);
    fsutil::write_new(&path, &bytes)?;
    Ok(ChunkRef {
        file,
        collection: job.collection,
        entries: job.entries,
        raw_bytes: job.raw.len() as u64,
        size: bytes.len() as u64,
        crc32c,
        blake3,
        compression,
    })
}

/// Compresses, hashes and writes chunks: on a blocking thread, overlapped with the scan.
enum Sink {
    Thread {
        tx: tokio::sync::mpsc::Sender<Job>,
        handle: tokio::task::JoinHandle<Result<Vec<ChunkRef>, BackupError>>,
    },
    Inline {
        ctx: WriterCtx,
        refs: Vec<ChunkRef>,
    },
}

impl Sink {
    fn new(ctx: WriterCtx) -> Self {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(PIPELINE_DEPTH);
                let handle = handle.spawn_blocking(move || {
                    let mut refs = Vec::new();
                    while let Some(job) = rx.blocking_recv() {
                        refs.push(write_chunk(&ctx, &job)?);
                    }
                    Ok(refs)
                });
                Self::Thread { tx, handle }
            }
            Err(_) => Self::Inline {
                ctx,
                refs: Vec::new(),
            },
        }
    }

    /// Hands a chunk over; `false` if the writer already failed (see [`Sink::finish`]).
    async fn send(&mut self, job: Job) -> Result<bool, BackupError> {
        match self {
            Self::Thread { tx, .. } => Ok(tx.send(job).await.is_ok()),
            Self::Inline { ctx, refs } => {
                refs.push(write_chunk(ctx, &job)?);
                Ok(true)
            }
        }
    }

    async fn finish(self, dir: &Path) -> Result<Vec<ChunkRef>, BackupError> {
        match self {
            Self::Thread { tx, handle } => {
                drop(tx);
                joined(dir, handle.await)?
            }
            Self::Inline { refs, .. } => Ok(refs),
        }
    }
}

/// Per-collection accumulation.
struct CollectionBuild {
    index: u32,
    name: CollectionName,
    entries: u64,
    tombstones: u64,
    bytes: u64,
    chunks: u32,
    head_state: StateHasher,
    base_state: StateHasher,
}

/// Builds chunks and hands them to the sink.
struct Chunker {
    raw: Vec<u8>,
    entries: u64,
    next_seq: u32,
    target: usize,
    /// The writer failed; its error comes out of [`Sink::finish`].
    broken: bool,
}

impl Chunker {
    fn push(&mut self, entry: &Entry<'_>) {
        encode_entry(&mut self.raw, entry.key, entry.version, entry.value);
        self.entries += 1;
    }

    async fn flush(
        &mut self,
        sink: &mut Sink,
        coll: &mut CollectionBuild,
        force: bool,
    ) -> Result<(), BackupError> {
        if self.entries == 0 || (!force && self.raw.len() < self.target) || self.broken {
            return Ok(());
        }
        let job = Job {
            seq: self.next_seq,
            collection: coll.index,
            name: coll.name.as_str().to_owned(),
            raw: std::mem::replace(&mut self.raw, Vec::with_capacity(self.target + (64 << 10))),
            entries: std::mem::take(&mut self.entries),
        };
        self.next_seq += 1;
        coll.chunks += 1;
        if !sink.send(job).await? {
            self.broken = true;
        }
        Ok(())
    }
}

async fn build(
    engine: &Engine,
    dir: &Path,
    options: &BackupOptions,
    parent: Option<&Loaded>,
) -> Result<BackupMetadata, BackupError> {
    let inner = &engine.inner;
    let backend: Arc<dyn StorageBackend> = Arc::clone(&inner.backend);
    let source = backend.kind().name().to_owned();
    let engine_err = |check, e: TxnError| BackupError::engine(dir, check, e);

    // Register the snapshots first: from here on GC keeps everything the backup reads.
    let (kind, base, _base_pin): (BackupKind, Version, Option<ReadTransaction>) = match parent {
        Some(p) => {
            let base = p.manifest.head_version;
            let pin = engine.begin_read_at(base).map_err(|e| match e {
                TxnError::VersionNotRetained { oldest_retained, .. } => BackupError::refused(
                    &p.dir,
                    Check::BaseRetained,
                    format!(
                        "the parent's head version {base} is no longer retained by the source (oldest readable version is {oldest_retained}); take a full backup, and keep EngineOptions::retain_versions above the number of commits between backups"
                    ),
                ),
                TxnError::VersionNotCommitted { latest, .. } => BackupError::refused(
                    &p.dir,
                    Check::ParentState,
                    format!(
                        "the parent's head version {base} is newer than the source's latest version {latest}: the parent was taken from another store"
                    ),
                ),
                other => engine_err(Check::SourceRead, other),
            })?;
            (BackupKind::Incremental, base, Some(pin))
        }
        None if options.include_history => {
            let mut attempts = 0;
            loop {
                let floor = inner.oracle.gc_floor();
                match engine.begin_read_at(floor) {
                    Ok(pin) => break (BackupKind::Full { history: true }, floor, Some(pin)),
                    // The floor moved between reading and pinning it: try again.
                    Err(TxnError::VersionNotRetained { .. }) if attempts < 100 => attempts += 1,
                    Err(e) => return Err(engine_err(Check::SourceRead, e)),
                }
            }
        }
        None => (BackupKind::Full { history: false }, 0, None),
    };
    let head_pin = match options.at_version {
        None => engine.begin_read(),
        Some(v) => engine.begin_read_at(v).map_err(|e| match e {
            TxnError::VersionNotRetained { oldest_retained, .. } => BackupError::refused(
                dir,
                Check::AsOfRange,
                format!(
                    "version {v} is no longer retained (oldest readable version is {oldest_retained})"
                ),
            ),
            TxnError::VersionNotCommitted { latest, .. } => BackupError::refused(
                dir,
                Check::AsOfRange,
                format!("version {v} has not been committed (latest is {latest})"),
            ),
            other => engine_err(Check::SourceRead, other),
        })?,
    };
    let head = head_pin.version();
    if kind == BackupKind::Incremental && head < base {
        return Err(BackupError::refused(
            dir,
            Check::AsOfRange,
            format!("version {head} is older than the parent backup's head {base}"),
        ));
    }
    let base = if kind == (BackupKind::Full { history: false }) {
        head
    } else {
        base
    };

    let created_at = options.created_at.unwrap_or_else(SystemTime::now);
    let created_at_ms = unix_ms(created_at);
    let backup_id = backup_id(
        created_at_ms,
        base,
        head,
        &source,
        parent.map(|p| &p.digest),
        options.created_at.is_none().then_some(dir),
    );
    let compression = if options.compress {
        Compression::Zstd
    } else {
        Compression::None
    };

    let collections = engine.collections();
    // Read after the head snapshot: every value handed out to a commit ≤ head is ≤ these.
    let sequences = read_sequences(&*backend, &inner.meta, dir).await?;
    let approx_total: u64 = match backend.stats().await {
        Ok(stats) => stats
            .collections
            .iter()
            .filter(|c| !c.name.is_system())
            .map(|c| c.keys)
            .sum(),
        Err(_) => 0,
    };

    let mut sink = Sink::new(WriterCtx {
        dir: dir.to_path_buf(),
        backup_id,
        compression,
        keyring: inner.codec.keyring().cloned(),
    });
    let target = options.chunk_bytes.clamp(4 << 10, 256 << 20);
    let mut chunker = Chunker {
        raw: Vec::with_capacity(target + (64 << 10)),
        entries: 0,
        next_seq: 0,
        target,
        broken: false,
    };
    let mut scanned = 0u64;
    let mut builds = Vec::with_capacity(collections.len());
    for (index, name) in collections.into_iter().enumerate() {
        let mut coll = CollectionBuild {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            name,
            entries: 0,
            tombstones: 0,
            bytes: 0,
            chunks: 0,
            head_state: StateHasher::default(),
            base_state: StateHasher::default(),
        };
        scan_collection(
            &*backend,
            &inner.codec,
            dir,
            kind,
            base,
            head,
            &mut coll,
            &mut chunker,
            &mut sink,
            &options.progress,
            &mut scanned,
            approx_total,
        )
        .await?;
        chunker.flush(&mut sink, &mut coll, true).await?;
        builds.push(coll);
        if chunker.broken {
            break;
        }
    }
    let chunks = sink.finish(dir).await?;
    drop(head_pin);

    if let Some(p) = parent {
        check_parent_state(dir, p, &builds)?;
    }

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        backup_id,
        created_at_ms,
        source_backend: source,
        kind,
        base_version: base,
        head_version: head,
        parent: parent.map(|p| ParentLink {
            digest: p.digest,
            backup_id: p.manifest.backup_id,
            head_version: p.manifest.head_version,
            dir_name: p
                .dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_owned))
                .filter(|n| super::format::is_safe_dir_name(n))
                .unwrap_or_default(),
        }),
        compression,
        collections: builds
            .iter()
            .map(|b| CollectionSummary {
                name: b.name.as_str().to_owned(),
                entries: b.entries,
                tombstones: b.tombstones,
                live_keys: b.head_state.live_keys,
                bytes: b.bytes,
                state_digest: b.head_state.finish(),
                chunks: b.chunks,
            })
            .collect(),
        sequences,
        chunks,
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let encryption = inner.codec.keyring().and_then(|ring| {
        let (key_id, _) = ring.sealing().ok()?;
        Some(super::format::BackupEncryption {
            key_id,
            check_value: Digest(ring.check_value(key_id)?),
        })
    });
    let (bytes, digest) =
        codec::seal_manifest_with(&manifest_path, &manifest, encryption.as_ref())?;
    let tmp = dir.join(MANIFEST_TMP_FILE);
    fsutil::write_new(&tmp, &bytes)?;
    std::fs::rename(&tmp, &manifest_path)
        .map_err(|e| BackupError::io(&manifest_path, Check::Rename, e))?;
    fsutil::sync_dir(dir)?;
    let mut meta = BackupMetadata::new(dir, manifest, digest);
    meta.encryption = encryption;
    Ok(meta)
}

/// The source's live state at the base must be the parent's state at its head.
fn check_parent_state(
    dir: &Path,
    parent: &Loaded,
    builds: &[CollectionBuild],
) -> Result<(), BackupError> {
    let recorded: BTreeMap<&str, (u64, Digest)> = parent
        .manifest
        .collections
        .iter()
        .map(|c| (c.name.as_str(), (c.live_keys, c.state_digest)))
        .collect();
    let empty = StateHasher::default().finish();
    for b in builds {
        let now = (b.base_state.live_keys, b.base_state.finish());
        let then = recorded.get(b.name.as_str()).copied().unwrap_or((0, empty));
        if now != then {
            return Err(BackupError::refused(
                dir,
                Check::ParentState,
                format!(
                    "collection {} at version {} has {} live keys (state digest {}), but the parent backup {} recorded {} (digest {}): the collection was dropped and re-created since, or the parent comes from another store; take a full backup",
                    b.name,
                    parent.manifest.head_version,
                    now.0,
                    now.1,
                    parent.dir.display(),
                    then.0,
                    then.1
                ),
            ));
        }
    }
    Ok(())
}

async fn read_sequences(
    backend: &dyn StorageBackend,
    meta: &CollectionName,
    dir: &Path,
) -> Result<Vec<SequenceRecord>, BackupError> {
    let mut out = Vec::new();
    let mut request = Some(ScanRequest::forward(KeyRange::prefix(SEQ_PREFIX), 1024));
    while let Some(req) = request.take() {
        let page = backend
            .scan(meta, &req)
            .await
            .map_err(|e| BackupError::backend(dir, Check::SourceRead, e))?;
        request = req.next_page(&page);
        for (key, stored) in page.entries {
            let corrupt = |reason: String| {
                BackupError::engine(
                    dir,
                    Check::SourceRead,
                    TxnError::Corrupted {
                        collection: meta.clone(),
                        key: crate::backend::KeyPreview::of(&key),
                        version: 0,
                        reason,
                    },
                )
            };
            let limit = match value::decode(META_COLLECTION, &key, &stored) {
                Ok(Stored::Put(bytes)) => <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt(format!("expected 8 bytes, found {}", bytes.len())))?,
                Ok(Stored::Tombstone) => return Err(corrupt("unexpected tombstone".to_owned())),
                Err(e) => return Err(corrupt(e.to_string())),
            };
            let name = key.get(SEQ_PREFIX.len()..).unwrap_or_default().to_vec();
            out.push(SequenceRecord {
                name: ByteString(name),
                limit,
            });
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn scan_collection(
    backend: &dyn StorageBackend,
    codec: &crate::crypto::ValueCodec,
    dir: &Path,
    kind: BackupKind,
    base: Version,
    head: Version,
    coll: &mut CollectionBuild,
    chunker: &mut Chunker,
    sink: &mut Sink,
    progress: &Progress,
    scanned: &mut u64,
    approx_total: u64,
) -> Result<(), BackupError> {
    let collection = coll.name.clone();
    let corrupt = |key: &[u8], version: Version, reason: String| {
        BackupError::engine(
            dir,
            Check::SourceRead,
            TxnError::Corrupted {
                collection: collection.clone(),
                key: crate::backend::KeyPreview::of(key),
                version,
                reason,
            },
        )
    };
    let mut current: Vec<u8> = Vec::new();
    let mut user_key: Vec<u8> = Vec::new();
    let mut has_current = false;
    let mut seen_head = false;
    let mut seen_base = false;
    let mut page_limit = 256usize;
    let mut request = Some(ScanRequest::forward(KeyRange::all(), page_limit));
    while let Some(mut req) = request.take() {
        req.limit = page_limit;
        let page = backend
            .scan(&coll.name, &req)
            .await
            .map_err(|e| BackupError::backend(dir, Check::SourceRead, e))?;
        request = req.next_page(&page);
        let mut page_bytes = 0usize;
        let page_len = page.entries.len();
        for (key, stored) in page.entries {
            page_bytes += key.len() + stored.len();
            let Some((encoded, version)) = split_versioned(&key) else {
                return Err(corrupt(&key, 0, "stored key is not a versioned key".into()));
            };
            if version > head {
                continue;
            }
            if !has_current || encoded != current.as_slice() {
                current.clear();
                current.extend_from_slice(encoded);
                has_current = true;
                seen_head = false;
                seen_base = false;
                if !unescape(encoded, &mut user_key) {
                    return Err(corrupt(
                        &key,
                        version,
                        "stored key is not a valid MVCC key".into(),
                    ));
                }
            }
            let first_at_or_below_head = !seen_head;
            seen_head = true;
            let first_at_or_below_base = version <= base && !seen_base;
            if version <= base {
                seen_base = true;
            }
            let needed = match kind {
                BackupKind::Full { history: false } => first_at_or_below_head,
                BackupKind::Full { history: true } | BackupKind::Incremental => {
                    first_at_or_below_head || version > base || first_at_or_below_base
                }
            };
            if !needed {
                continue;
            }
            let value = codec
                .decode_owned(coll.name.as_str(), &key, stored)
                .map_err(|e| {
                    BackupError::engine(
                        dir,
                        Check::SourceRead,
                        crate::crypto::value_error(e, &collection, &user_key, version),
                    )
                })?;
            let value = match &value {
                Stored::Put(v) => Some(v.as_slice()),
                Stored::Tombstone => None,
            };
            if first_at_or_below_head && let Some(v) = value {
                coll.head_state.add(&user_key, version, v);
            }
            if first_at_or_below_base
                && kind == BackupKind::Incremental
                && let Some(v) = value
            {
                coll.base_state.add(&user_key, version, v);
            }
            let include = match kind {
                BackupKind::Full { history: false } => value.is_some(),
                BackupKind::Full { history: true } => {
                    version > base || (first_at_or_below_base && value.is_some())
                }
                BackupKind::Incremental => version > base,
            };
            if !include {
                continue;
            }
            let entry = Entry {
                key: &user_key,
                version,
                value,
            };
            chunker.push(&entry);
            coll.entries += 1;
            if value.is_none() {
                coll.tombstones += 1;
            }
            coll.bytes += (user_key.len() + value.map_or(0, <[u8]>::len)) as u64;
            if chunker.raw.len() >= chunker.target {
                chunker.flush(sink, coll, false).await?;
                if chunker.broken {
                    return Ok(());
                }
            }
        }
        *scanned += page_len as u64;
        progress.report(Phase::Scan, *scanned, approx_total.max(*scanned));
        if let Some(avg) = page_bytes.checked_div(page_len) {
            page_limit = (PAGE_TARGET_BYTES / avg.max(1)).clamp(MIN_PAGE, MAX_PAGE);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::keys::EncodedKey;

    #[test]
    fn unescape_inverts_the_key_encoding() {
        let mut out = Vec::new();
        for k in [&b"a"[..], b"\x00", b"\x00\xff\x01", b"ab\x00c"] {
            let enc = EncodedKey::encode(k);
            assert!(unescape(enc.as_bytes(), &mut out));
            assert_eq!(out, k);
        }
        assert!(!unescape(b"a\x00\x02", &mut out));
        assert!(!unescape(b"a", &mut out));
        assert!(!unescape(b"\x00\x01", &mut out));
        assert!(!unescape(b"a\x00\x01b", &mut out));
    }
}
