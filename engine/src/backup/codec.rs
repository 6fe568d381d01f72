//! Sealing and opening manifests and chunks (pure functions on bytes), and the checks on the
//! entry stream of a collection.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use super::error::{BackupError, Check};
use super::format::{
    BackupEncryption, BackupId, BackupKind, ChunkPayload, ChunkRef, Compression, Digest, Entry,
    Manifest, SealedManifest, SealedManifestEncrypted, StateHasher, is_safe_dir_name,
    is_safe_file_name,
};
use super::frame::{self, FrameKind, HEADER_LEN};
use crate::backend::CollectionName;
use crate::crypto::Keyring;
use crate::mvcc::{MAX_USER_KEY_LEN, MAX_USER_VALUE_LEN, Version};

/// The zstd level chunks are written with (see the module docs for the measurements).
pub(crate) const ZSTD_LEVEL: i32 = 1;

/// Encodes and frames a manifest; returns the file bytes and the manifest digest.
pub(crate) fn seal_manifest(
    path: &Path,
    manifest: &Manifest,
) -> Result<(Vec<u8>, Digest), BackupError> {
    seal_manifest_with(path, manifest, None)
}

/// [`seal_manifest`] for an encrypted backup when `encryption` is given (frame flag
/// [`frame::FLAG_SEALED`]; the body and its digest are the same as for a plain backup).
pub(crate) fn seal_manifest_with(
    path: &Path,
    manifest: &Manifest,
    encryption: Option<&BackupEncryption>,
) -> Result<(Vec<u8>, Digest), BackupError> {
    let body = postcard::to_stdvec(manifest).map_err(|e| {
        BackupError::invalid(path, Check::ManifestDecode, format!("cannot encode: {e}"))
    })?;
    let digest = Digest::of(&body);
    let encode_err = |e: postcard::Error| {
        BackupError::invalid(path, Check::ManifestDecode, format!("cannot encode: {e}"))
    };
    let (flags, payload) = match encryption {
        None => (
            0,
            postcard::to_stdvec(&SealedManifest {
                body: &body,
                digest,
            })
            .map_err(encode_err)?,
        ),
        Some(e) => (
            frame::FLAG_SEALED,
            postcard::to_stdvec(&SealedManifestEncrypted {
                body: &body,
                digest,
                encryption: *e,
            })
            .map_err(encode_err)?,
        ),
    };
    let file = frame::encode_with_flags(FrameKind::Manifest, flags, &payload)
        .ok_or_else(|| BackupError::invalid(path, Check::FileSize, "manifest larger than 4 GiB"))?;
    Ok((file, digest))
}

/// Decodes `T` from all of `bytes` (trailing bytes are an error).
fn decode_all<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| e.to_string())?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(format!("{} trailing bytes after the record", rest.len()))
    }
}

/// Checks a manifest file's frame, digest and structure.
pub(crate) fn open_manifest(path: &Path, file: &[u8]) -> Result<(Manifest, Digest), BackupError> {
    open_manifest_full(path, file).map(|(m, d, _)| (m, d))
}

/// [`open_manifest`], also returning how an encrypted backup was sealed.
pub(crate) fn open_manifest_full(
    path: &Path,
    file: &[u8],
) -> Result<(Manifest, Digest, Option<BackupEncryption>), BackupError> {
    let (flags, payload) =
        frame::decode_with_flags(path, FrameKind::Manifest, file, frame::FLAG_SEALED)?;
    let decode_err = |e| BackupError::invalid(path, Check::ManifestDecode, e);
    let (sealed, encryption) = if flags & frame::FLAG_SEALED == 0 {
        (
            decode_all::<SealedManifest<'_>>(payload).map_err(decode_err)?,
            None,
        )
    } else {
        let s: SealedManifestEncrypted<'_> = decode_all(payload).map_err(decode_err)?;
        (
            SealedManifest {
                body: s.body,
                digest: s.digest,
            },
            Some(s.encryption),
        )
    };
    let computed = Digest::of(sealed.body);
    if computed != sealed.digest {
        return Err(BackupError::invalid(
            path,
            Check::ManifestDigest,
            format!("stored {}, computed {computed}", sealed.digest),
        ));
    }
    let manifest: Manifest = decode_all(sealed.body)
        .map_err(|e| BackupError::invalid(path, Check::ManifestDecode, e))?;
    validate_manifest(path, &manifest)?;
    Ok((manifest, computed, encryption))
}

/// Structural checks of a decoded manifest.
fn validate_manifest(path: &Path, m: &Manifest) -> Result<(), BackupError> {
    let fail = |detail: String| BackupError::invalid(path, Check::ManifestConsistency, detail);
    if m.format_version != frame::FORMAT_VERSION {
        return Err(BackupError::invalid(
            path,
            Check::FrameVersion,
            format!("manifest body says format {}", m.format_version),
        ));
    }
    if m.base_version > m.head_version {
        return Err(fail(format!(
            "base version {} is above head version {}",
            m.base_version, m.head_version
        )));
    }
    match (m.kind, &m.parent) {
        (BackupKind::Full { history: false }, None) if m.base_version != m.head_version => {
            return Err(fail(
                "a full backup without history must have base = head".to_owned(),
            ));
        }
        (BackupKind::Full { .. }, None) => {}
        (BackupKind::Full { .. }, Some(_)) => {
            return Err(fail("a full backup has no parent".to_owned()));
        }
        (BackupKind::Incremental, None) => {
            return Err(fail("an incremental backup needs a parent link".to_owned()));
        }
        (BackupKind::Incremental, Some(link)) => {
            if link.head_version != m.base_version {
                return Err(fail(format!(
                    "parent head {} differs from base {}",
                    link.head_version, m.base_version
                )));
            }
            if !link.dir_name.is_empty() && !is_safe_dir_name(&link.dir_name) {
                return Err(BackupError::invalid(
                    path,
                    Check::FileName,
                    format!(
                        "parent directory hint {:?} is not a plain name",
                        link.dir_name
                    ),
                ));
            }
        }
    }
    let mut previous: Option<&str> = None;
    let mut chunk_index = 0usize;
    for (i, c) in m.collections.iter().enumerate() {
        if CollectionName::new(&c.name).is_err() {
            return Err(fail(format!("{:?} is not a user collection name", c.name)));
        }
        if previous.is_some_and(|p| p >= c.name.as_str()) {
            return Err(fail(
                "collections are not in strictly ascending order".to_owned(),
            ));
        }
        previous = Some(&c.name);
        if c.tombstones > c.entries {
            return Err(fail(format!(
                "collection {}: more tombstones than entries",
                c.name
            )));
        }
        let end = chunk_index
            .checked_add(c.chunks as usize)
            .filter(|&e| e <= m.chunks.len())
            .ok_or_else(|| {
                fail(format!(
                    "collection {} counts more chunks than listed",
                    c.name
                ))
            })?;
        let mut entries = 0u64;
        for chunk in &m.chunks[chunk_index..end] {
            if chunk.collection as usize != i {
                return Err(fail(format!(
                    "chunk {} is listed under collection {} but says {}",
                    chunk.file, c.name, chunk.collection
                )));
            }
            entries = entries.saturating_add(chunk.entries);
        }
        if entries != c.entries {
            return Err(fail(format!(
                "collection {}: chunks hold {entries} entries, summary says {}",
                c.name, c.entries
            )));
        }
        chunk_index = end;
    }
    if chunk_index != m.chunks.len() {
        return Err(fail(format!(
            "{} chunks belong to no collection",
            m.chunks.len() - chunk_index
        )));
    }
    let mut names = BTreeSet::new();
    for chunk in &m.chunks {
        if !is_safe_file_name(&chunk.file) {
            return Err(BackupError::invalid(
                path,
                Check::FileName,
                format!(
                    "chunk file name {:?} is not a plain name inside the backup directory",
                    chunk.file
                ),
            ));
        }
        if !names.insert(chunk.file.as_str()) {
            return Err(BackupError::invalid(
                path,
                Check::FileName,
                format!("chunk file {:?} is listed twice", chunk.file),
            ));
        }
        if chunk.size < HEADER_LEN as u64 || chunk.size > u64::from(u32::MAX) + HEADER_LEN as u64 {
            return Err(fail(format!(
                "chunk {} has impossible size {}",
                chunk.file, chunk.size
            )));
        }
    }
    if m.sequences.windows(2).any(|w| w[0].name >= w[1].name) {
        return Err(fail(
            "sequences are not in strictly ascending order".to_owned(),
        ));
    }
    Ok(())
}

/// The associated data of a sealed chunk's entry data: the chunk's identity and sizes.
fn chunk_aad(
    backup_id: BackupId,
    seq: u32,
    collection: &str,
    compression: Compression,
    entries: u64,
    raw_len: u64,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + collection.len());
    aad.extend_from_slice(b"zcore.backup-chunk.v1\0");
    aad.extend_from_slice(&backup_id.0);
    aad.extend_from_slice(&seq.to_be_bytes());
    aad.extend_from_slice(collection.as_bytes());
    aad.push(0);
    aad.push(match compression {
        Compression::None => 0,
        Compression::Zstd => 1,
    });
    aad.extend_from_slice(&entries.to_be_bytes());
    aad.extend_from_slice(&raw_len.to_be_bytes());
    aad
}

const SEALED_DATA_HEADER: usize = 4 + crate::crypto::NONCE_LEN;

/// Encodes, compresses (if asked and if it helps) and frames one chunk; with a keyring, seals
/// its entry data with the newest key (frame flag [`frame::FLAG_SEALED`]).
pub(crate) fn seal_chunk(
    backup_id: BackupId,
    seq: u32,
    collection: &str,
    compression: Compression,
    entries: u64,
    raw: &[u8],
    keyring: Option<&Keyring>,
) -> Result<(Vec<u8>, Compression), String> {
    let compressed;
    let (compression, data) = match compression {
        Compression::None => (Compression::None, raw),
        Compression::Zstd => {
            compressed = zstd::bulk::compress(raw, ZSTD_LEVEL).map_err(|e| e.to_string())?;
            if compressed.len() < raw.len() {
                (Compression::Zstd, compressed.as_slice())
            } else {
                (Compression::None, raw)
            }
        }
    };
    let raw_len = raw.len() as u64;
    let sealed;
    let (flags, data) = match keyring {
        None => (0, data),
        Some(ring) => {
            let (key_id, cipher) = ring.sealing().map_err(|e| e.to_string())?;
            let nonce = crate::crypto::random_nonce().map_err(|e| e.to_string())?;
            let mut buf =
                Vec::with_capacity(SEALED_DATA_HEADER + data.len() + crate::crypto::TAG_LEN);
            buf.extend_from_slice(&key_id.to_be_bytes());
            buf.extend_from_slice(&nonce);
            buf.extend_from_slice(data);
            let aad = chunk_aad(backup_id, seq, collection, compression, entries, raw_len);
            crate::crypto::seal_in_place(cipher, &nonce, &aad, &mut buf, SEALED_DATA_HEADER)
                .map_err(|e| e.to_string())?;
            sealed = buf;
            (frame::FLAG_SEALED, sealed.as_slice())
        }
    };
    let payload = ChunkPayload {
        backup_id,
        seq,
        collection,
        compression,
        entries,
        raw_len,
        data,
    };
    let mut file = vec![0u8; HEADER_LEN];
    file.reserve(data.len() + collection.len() + 64);
    postcard::to_io(&payload, &mut file).map_err(|e| e.to_string())?;
    frame::fill_header_with_flags(FrameKind::Chunk, flags, &mut file)
        .ok_or("chunk larger than 4 GiB")?;
    Ok((file, compression))
}

/// What a chunk must be, from the manifest.
#[derive(Debug)]
pub(crate) struct ChunkExpect<'a> {
    pub(crate) backup_id: BackupId,
    pub(crate) seq: u32,
    pub(crate) collection: &'a str,
    pub(crate) chunk: &'a ChunkRef,
    /// Opens sealed chunks (an encrypted backup).
    pub(crate) keyring: Option<&'a Keyring>,
}

/// Checks a chunk file's checksums, frame and identity, and returns its entry data,
/// decompressed. Allocation is bounded by the data actually present, never by a length field.
pub(crate) fn open_chunk<'a>(
    path: &Path,
    file: &'a [u8],
    expect: &ChunkExpect<'_>,
) -> Result<Cow<'a, [u8]>, BackupError> {
    let chunk = expect.chunk;
    if file.len() as u64 != chunk.size {
        return Err(BackupError::invalid(
            path,
            Check::FileSize,
            format!(
                "the manifest records {} bytes, the file has {}",
                chunk.size,
                file.len()
            ),
        ));
    }
    let crc = crc32c::crc32c(file);
    if crc != chunk.crc32c {
        return Err(BackupError::invalid(
            path,
            Check::ChunkCrc,
            format!(
                "manifest records {:#010x}, file has {crc:#010x}",
                chunk.crc32c
            ),
        ));
    }
    let digest = Digest::of(file);
    if digest != chunk.blake3 {
        return Err(BackupError::invalid(
            path,
            Check::ChunkDigest,
            format!("manifest records {}, file has {digest}", chunk.blake3),
        ));
    }
    open_chunk_unhashed(path, file, expect)
}

/// [`open_chunk`] without the file checksums (the caller compared the BLAKE3 digest already).
pub(crate) fn open_chunk_unhashed<'a>(
    path: &Path,
    file: &'a [u8],
    expect: &ChunkExpect<'_>,
) -> Result<Cow<'a, [u8]>, BackupError> {
    let chunk = expect.chunk;
    let (flags, payload) =
        frame::decode_with_flags(path, FrameKind::Chunk, file, frame::FLAG_SEALED)?;
    let p: ChunkPayload<'_> =
        decode_all(payload).map_err(|e| BackupError::invalid(path, Check::ChunkDecode, e))?;
    let identity = |detail: String| BackupError::invalid(path, Check::ChunkIdentity, detail);
    if p.backup_id != expect.backup_id {
        return Err(identity(format!(
            "the chunk belongs to backup {}, not to this backup {}",
            p.backup_id, expect.backup_id
        )));
    }
    if p.seq != expect.seq {
        return Err(identity(format!(
            "the chunk is number {} of its backup, the manifest lists it as number {}",
            p.seq, expect.seq
        )));
    }
    if p.collection != expect.collection {
        return Err(identity(format!(
            "the chunk holds collection {:?}, the manifest lists it under {:?}",
            p.collection, expect.collection
        )));
    }
    if p.compression != chunk.compression
        || p.entries != chunk.entries
        || p.raw_len != chunk.raw_bytes
    {
        return Err(identity(format!(
            "chunk header ({:?}, {} entries, {} bytes) differs from the manifest ({:?}, {} entries, {} bytes)",
            p.compression, p.entries, p.raw_len, chunk.compression, chunk.entries, chunk.raw_bytes
        )));
    }
    let raw_len = usize::try_from(p.raw_len)
        .map_err(|_| BackupError::invalid(path, Check::Decompress, "raw length too large"))?;
    if flags & frame::FLAG_SEALED != 0 {
        let opened = open_sealed_data(path, &p, expect.keyring)?;
        return match decompress(path, &p, raw_len, &opened)? {
            Cow::Borrowed(_) => Ok(Cow::Owned(opened.to_vec())),
            Cow::Owned(v) => Ok(Cow::Owned(v)),
        };
    }
    decompress(path, &p, raw_len, p.data)
}

/// Opens the sealed entry data of a chunk with the keyring.
fn open_sealed_data(
    path: &Path,
    p: &ChunkPayload<'_>,
    keyring: Option<&Keyring>,
) -> Result<zeroize::Zeroizing<Vec<u8>>, BackupError> {
    let Some(keyring) = keyring else {
        return Err(BackupError::refused(
            path,
            Check::EncryptionKey,
            "the backup is encrypted; give the keyring it was made with",
        ));
    };
    if p.data.len() < SEALED_DATA_HEADER + crate::crypto::TAG_LEN {
        return Err(BackupError::invalid(
            path,
            Check::Decrypt,
            format!("sealed data is only {} bytes", p.data.len()),
        ));
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&p.data[..4]);
    let key_id = u32::from_be_bytes(id);
    let mut nonce = [0u8; crate::crypto::NONCE_LEN];
    nonce.copy_from_slice(&p.data[4..SEALED_DATA_HEADER]);
    let cipher = keyring.cipher(key_id).ok_or_else(|| {
        BackupError::refused(
            path,
            Check::EncryptionKey,
            format!(
                "the chunk is sealed with key id {key_id}, which the keyring lacks (it has {:?})",
                keyring.ids()
            ),
        )
    })?;
    let aad = chunk_aad(
        p.backup_id,
        p.seq,
        p.collection,
        p.compression,
        p.entries,
        p.raw_len,
    );
    crate::crypto::open_to_vec(cipher, &nonce, &aad, &p.data[SEALED_DATA_HEADER..]).ok_or_else(
        || {
            BackupError::invalid(
                path,
                Check::Decrypt,
                format!(
                    "the chunk does not authenticate with key id {key_id} (wrong key, or the chunk was altered)"
                ),
            )
        },
    )
}

/// Checks the stored size and decompresses a chunk's entry data.
fn decompress<'a>(
    path: &Path,
    p: &ChunkPayload<'_>,
    raw_len: usize,
    data: &'a [u8],
) -> Result<Cow<'a, [u8]>, BackupError> {
    match p.compression {
        Compression::None => {
            if data.len() != raw_len {
                return Err(BackupError::invalid(
                    path,
                    Check::Decompress,
                    format!("{} bytes stored, {raw_len} announced", data.len()),
                ));
            }
            Ok(Cow::Borrowed(data))
        }
        Compression::Zstd => {
            // Grow with the data actually produced; the announced length only caps it.
            let mut out = Vec::with_capacity(raw_len.min(data.len().saturating_mul(8)));
            let decoder = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| BackupError::invalid(path, Check::Decompress, format!("zstd: {e}")))?;
            decoder
                .take(p.raw_len.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| BackupError::invalid(path, Check::Decompress, format!("zstd: {e}")))?;
            if out.len() != raw_len {
                return Err(BackupError::invalid(
                    path,
                    Check::Decompress,
                    format!("decompressed to {} bytes, {raw_len} announced", out.len()),
                ));
            }
            Ok(Cow::Owned(out))
        }
    }
}

/// Iterates the `count` entry records of a chunk's data; trailing bytes are an error.
pub(crate) struct Entries<'a, 'p> {
    path: &'p Path,
    rest: &'a [u8],
    remaining: u64,
}

impl<'a, 'p> Entries<'a, 'p> {
    pub(crate) fn new(path: &'p Path, data: &'a [u8], count: u64) -> Self {
        Self {
            path,
            rest: data,
            remaining: count,
        }
    }
}

impl<'a> Iterator for Entries<'a, '_> {
    type Item = Result<Entry<'a>, BackupError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            if self.rest.is_empty() {
                return None;
            }
            let n = self.rest.len();
            self.rest = &[];
            return Some(Err(BackupError::invalid(
                self.path,
                Check::EntryDecode,
                format!("{n} bytes after the last entry"),
            )));
        }
        self.remaining -= 1;
        match postcard::take_from_bytes::<Entry<'a>>(self.rest) {
            Ok((entry, rest)) => {
                self.rest = rest;
                Some(Ok(entry))
            }
            Err(e) => {
                self.remaining = 0;
                self.rest = &[];
                Some(Err(BackupError::invalid(
                    self.path,
                    Check::EntryDecode,
                    format!("entry does not decode: {e}"),
                )))
            }
        }
    }
}

/// Checks the entry stream of one collection of one backup, chunk after chunk: order,
/// version range, sizes, counts and (for full backups) the live state digest.
#[derive(Debug)]
pub(crate) struct StreamCheck {
    kind: BackupKind,
    base: Version,
    head: Version,
    prev_key: Vec<u8>,
    prev_version: Version,
    has_prev: bool,
    /// Whether the current key already had a version ≤ base.
    seen_at_or_below_base: bool,
    pub(crate) entries: u64,
    pub(crate) tombstones: u64,
    pub(crate) bytes: u64,
    state: StateHasher,
}

impl StreamCheck {
    pub(crate) fn new(kind: BackupKind, base: Version, head: Version) -> Self {
        Self {
            kind,
            base,
            head,
            prev_key: Vec::new(),
            prev_version: 0,
            has_prev: false,
            seen_at_or_below_base: false,
            entries: 0,
            tombstones: 0,
            bytes: 0,
            state: StateHasher::default(),
        }
    }

    /// Checks the next entry.
    pub(crate) fn push(&mut self, path: &Path, e: &Entry<'_>) -> Result<(), BackupError> {
        let fail = |check, detail: String| BackupError::invalid(path, check, detail);
        if e.key.is_empty() || e.key.len() > MAX_USER_KEY_LEN {
            return Err(fail(
                Check::EntryDecode,
                format!(
                    "key of {} bytes is outside 1..={MAX_USER_KEY_LEN}",
                    e.key.len()
                ),
            ));
        }
        if let Some(v) = e.value
            && v.len() as u64 > MAX_USER_VALUE_LEN
        {
            return Err(fail(
                Check::EntryDecode,
                format!("value of {} bytes", v.len()),
            ));
        }
        let new_key = !self.has_prev || e.key != self.prev_key.as_slice();
        if self.has_prev {
            let ordered = match e.key.cmp(&self.prev_key) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => e.version < self.prev_version,
                std::cmp::Ordering::Less => false,
            };
            if !ordered {
                return Err(fail(
                    Check::EntryOrder,
                    format!(
                        "entry (key of {} bytes, version {}) does not sort after the previous one (version {})",
                        e.key.len(),
                        e.version,
                        self.prev_version
                    ),
                ));
            }
        }
        if new_key {
            self.seen_at_or_below_base = false;
        }
        let version_ok = match self.kind {
            BackupKind::Full { history: false } => {
                new_key && e.version <= self.head && e.value.is_some()
            }
            BackupKind::Full { history: true } => {
                e.version <= self.head && !(e.version <= self.base && self.seen_at_or_below_base)
            }
            BackupKind::Incremental => e.version > self.base && e.version <= self.head,
        };
        if !version_ok {
            return Err(fail(
                Check::EntryVersion,
                format!(
                    "version {} ({}) does not belong in a {:?} backup of versions {}..={}",
                    e.version,
                    if e.value.is_some() {
                        "value"
                    } else {
                        "tombstone"
                    },
                    self.kind,
                    self.base,
                    self.head
                ),
            ));
        }
        if e.version <= self.base {
            self.seen_at_or_below_base = true;
        }
        if new_key && let Some(v) = e.value {
            self.state.add(e.key, e.version, v);
        }
        self.entries += 1;
        if e.value.is_none() {
            self.tombstones += 1;
        }
        self.bytes += (e.key.len() + e.value.map_or(0, <[u8]>::len)) as u64;
        self.prev_key.clear();
        self.prev_key.extend_from_slice(e.key);
        self.prev_version = e.version;
        self.has_prev = true;
        Ok(())
    }

    /// Compares the totals with the manifest's summary of the collection.
    pub(crate) fn finish(
        &self,
        path: &Path,
        summary: &super::format::CollectionSummary,
    ) -> Result<(), BackupError> {
        let fail = |check, detail: String| BackupError::invalid(path, check, detail);
        if (self.entries, self.tombstones, self.bytes)
            != (summary.entries, summary.tombstones, summary.bytes)
        {
            return Err(fail(
                Check::EntryCount,
                format!(
                    "collection {}: found {} entries, {} tombstones, {} bytes; the manifest says {}, {}, {}",
                    summary.name,
                    self.entries,
                    self.tombstones,
                    self.bytes,
                    summary.entries,
                    summary.tombstones,
                    summary.bytes
                ),
            ));
        }
        if matches!(self.kind, BackupKind::Full { .. }) {
            if self.state.live_keys != summary.live_keys {
                return Err(fail(
                    Check::EntryCount,
                    format!(
                        "collection {}: {} live keys at the head, the manifest says {}",
                        summary.name, self.state.live_keys, summary.live_keys
                    ),
                ));
            }
            let digest = self.state.finish();
            if digest != summary.state_digest {
                return Err(fail(
                    Check::StateDigest,
                    format!(
                        "collection {}: state digest {digest}, the manifest says {}",
                        summary.name, summary.state_digest
                    ),
                ));
            }
        }
        Ok(())
    }
}
