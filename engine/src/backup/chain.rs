//! Loading backups and chains, and verifying every byte of them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::codec::{self, ChunkExpect, Entries, StreamCheck};
use super::error::{BackupError, Check};
use super::format::{
    BackupEncryption, Digest, MANIFEST_FILE, MAX_MANIFEST_FILE, Manifest, is_safe_dir_name,
};
use super::fsutil;
use super::{Phase, Progress, VerifiedBackup, VerifyReport};
use crate::crypto::Keyring;
use crate::mvcc::Version;
use std::sync::Arc;

/// Longest chain followed (a guard; a digest cycle is impossible in practice).
const MAX_CHAIN: usize = 100_000;
/// Most sibling directories searched for a parent whose hint does not match.
const MAX_SIBLINGS: usize = 10_000;

/// A backup whose manifest passed its checks.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub(crate) dir: PathBuf,
    pub(crate) manifest: Manifest,
    pub(crate) digest: Digest,
    /// How the backup was sealed, if it is encrypted.
    pub(crate) encryption: Option<BackupEncryption>,
    /// The keyring that opens its chunks (checked by [`attach_keyring`]).
    pub(crate) keyring: Option<Arc<Keyring>>,
}

impl Loaded {
    pub(crate) fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }
}

/// Reads and checks the manifest of the backup in `dir`.
pub(crate) fn load(dir: &Path) -> Result<Loaded, BackupError> {
    if !dir.is_dir() {
        return Err(BackupError::refused(
            dir,
            Check::Directory,
            "not a directory (a backup is a directory holding `manifest` and chunk files)",
        ));
    }
    let (path, bytes) = fsutil::read_named(dir, MANIFEST_FILE, MAX_MANIFEST_FILE, None)?;
    let (manifest, digest, encryption) = codec::open_manifest_full(&path, &bytes)?;
    Ok(Loaded {
        dir: dir.to_path_buf(),
        manifest,
        digest,
        encryption,
        keyring: None,
    })
}

/// Checks `keyring` against every encrypted backup of `chain` (key id present, check value
/// equal) before any chunk is read, and attaches it.
pub(crate) fn attach_keyring(
    chain: &mut [Loaded],
    keyring: Option<&Arc<Keyring>>,
) -> Result<(), BackupError> {
    for backup in chain.iter_mut() {
        let Some(enc) = backup.encryption else {
            backup.keyring = keyring.cloned();
            continue;
        };
        let path = backup.manifest_path();
        let Some(ring) = keyring else {
            return Err(BackupError::refused(
                &path,
                Check::EncryptionKey,
                format!(
                    "the backup is encrypted with key id {}; give the keyring it was made with",
                    enc.key_id
                ),
            ));
        };
        match ring.check_value(enc.key_id) {
            None => {
                return Err(BackupError::refused(
                    &path,
                    Check::EncryptionKey,
                    format!(
                        "the backup is encrypted with key id {}, which the keyring lacks (it has {:?})",
                        enc.key_id,
                        ring.ids()
                    ),
                ));
            }
            Some(check) if check != enc.check_value.0 => {
                return Err(BackupError::refused(
                    &path,
                    Check::EncryptionKey,
                    format!(
                        "wrong key: key id {} of the keyring is not the key the backup was encrypted with (check value differs)",
                        enc.key_id
                    ),
                ));
            }
            Some(_) => backup.keyring = Some(Arc::clone(ring)),
        }
    }
    Ok(())
}

/// Finds the parent of `child` next to it: the hinted sibling first, then any sibling whose
/// manifest digest matches.
fn find_parent(child: &Loaded) -> Result<Loaded, BackupError> {
    let path = child.manifest_path();
    let Some(link) = &child.manifest.parent else {
        return Err(BackupError::invalid(
            &path,
            Check::ParentLink,
            "no parent link",
        ));
    };
    let siblings = child
        .dir
        .canonicalize()
        .ok()
        .and_then(|d| d.parent().map(Path::to_path_buf));
    let matches = |candidate: &Path| -> Option<Loaded> {
        if !fsutil::is_real_dir(candidate) {
            return None;
        }
        load(candidate).ok().filter(|l| l.digest == link.digest)
    };
    if let Some(root) = &siblings {
        if is_safe_dir_name(&link.dir_name)
            && let Some(found) = matches(&root.join(&link.dir_name))
        {
            return Ok(found);
        }
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten().take(MAX_SIBLINGS) {
                let candidate = entry.path();
                if candidate.join(MANIFEST_FILE).is_file()
                    && let Some(found) = matches(&candidate)
                {
                    return Ok(found);
                }
            }
        }
    }
    Err(BackupError::invalid(
        &path,
        Check::ParentMissing,
        format!(
            "the parent backup (manifest digest {}, directory {:?}, head version {}) is not next to this backup",
            link.digest, link.dir_name, link.head_version
        ),
    ))
}

/// Loads the chain ending at `head_dir`, root (a full backup) first, checking every link.
pub(crate) fn load_chain(head_dir: &Path) -> Result<Vec<Loaded>, BackupError> {
    let mut chain = vec![load(head_dir)?];
    let mut seen = BTreeSet::new();
    while let Some(child) = chain.last() {
        seen.insert(child.digest);
        let Some(link) = child.manifest.parent.clone() else {
            break;
        };
        if chain.len() >= MAX_CHAIN {
            return Err(BackupError::invalid(
                &child.manifest_path(),
                Check::ParentLink,
                format!("chain longer than {MAX_CHAIN} backups"),
            ));
        }
        let parent = find_parent(child)?;
        let path = child.manifest_path();
        if parent.manifest.backup_id != link.backup_id
            || parent.manifest.head_version != link.head_version
            || parent.manifest.head_version != child.manifest.base_version
        {
            return Err(BackupError::invalid(
                &path,
                Check::ParentLink,
                format!(
                    "parent {} (id {}, head {}) does not match the link (id {}, head {}, base {})",
                    parent.dir.display(),
                    parent.manifest.backup_id,
                    parent.manifest.head_version,
                    link.backup_id,
                    link.head_version,
                    child.manifest.base_version
                ),
            ));
        }
        if seen.contains(&parent.digest) {
            return Err(BackupError::invalid(
                &path,
                Check::ParentLink,
                "the chain loops",
            ));
        }
        chain.push(parent);
    }
    chain.reverse();
    Ok(chain)
}

/// Reads every chunk of `backup` and checks it completely.
/// Receives the entries of verified chunks (restore builds its write batches from them while
/// it verifies, so the write pass needs no second read when they fit its memory budget).
pub(crate) trait EntrySink {
    /// Before a chunk: whether its entries are wanted.
    fn start_chunk(&mut self, backup: usize, collection: &str) -> bool;
    /// One entry of a wanted chunk (already checked).
    fn entry(&mut self, entry: &super::format::Entry<'_>);
    /// After a wanted chunk.
    fn end_chunk(&mut self, file_bytes: u64);
}

pub(crate) fn verify_backup<'s>(
    index: usize,
    backup: &Loaded,
    progress: &Progress,
    done: &mut u64,
    total: u64,
    mut sink: Option<&mut (dyn EntrySink + 's)>,
) -> Result<VerifiedBackup, BackupError> {
    let m = &backup.manifest;
    let mut chunk_index = 0usize;
    let mut entries = 0u64;
    let mut file_bytes = 0u64;
    for summary in &m.collections {
        let mut check = StreamCheck::new(m.kind, m.base_version, m.head_version);
        let first = chunk_index;
        let end = first + summary.chunks as usize;
        for (seq, chunk) in m.chunks.iter().enumerate().take(end).skip(first) {
            let (path, bytes) = fsutil::read_named(
                &backup.dir,
                &chunk.file,
                u64::from(u32::MAX) + 64,
                Some(chunk.size),
            )?;
            let expect = ChunkExpect {
                backup_id: m.backup_id,
                seq: u32::try_from(seq).unwrap_or(u32::MAX),
                collection: &summary.name,
                chunk,
                keyring: backup.keyring.as_deref(),
            };
            let data = codec::open_chunk(&path, &bytes, &expect)?;
            let wants = sink
                .as_deref_mut()
                .is_some_and(|s| s.start_chunk(index, &summary.name));
            let mut wanted = if wants { sink.as_deref_mut() } else { None };
            for entry in Entries::new(&path, &data, chunk.entries) {
                let entry = entry?;
                check.push(&path, &entry)?;
                if let Some(s) = wanted.as_deref_mut() {
                    s.entry(&entry);
                }
            }
            if let Some(s) = wanted {
                s.end_chunk(chunk.size);
            }
            file_bytes += chunk.size;
            *done += chunk.size;
            progress.report(Phase::Verify, *done, total);
        }
        chunk_index = end;
        check.finish(&backup.manifest_path(), summary)?;
        entries += check.entries;
    }
    Ok(VerifiedBackup {
        dir: backup.dir.clone(),
        digest: backup.digest,
        backup_id: m.backup_id,
        kind: m.kind,
        base_version: m.base_version,
        head_version: m.head_version,
        chunks: m.chunks.len() as u64,
        entries,
        file_bytes,
    })
}

/// Files in a backup directory that its manifest does not name (reported, not an error).
pub(crate) fn unreferenced(backup: &Loaded) -> Vec<PathBuf> {
    let named: BTreeSet<&str> = backup
        .manifest
        .chunks
        .iter()
        .map(|c| c.file.as_str())
        .chain(std::iter::once(MANIFEST_FILE))
        .collect();
    let Ok(entries) = std::fs::read_dir(&backup.dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_none_or(|name| !named.contains(name))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The versions a chain can restore to.
pub(crate) fn restorable(chain: &[Loaded]) -> (Version, Version) {
    let from = chain.first().map_or(0, |r| r.manifest.base_version);
    let to = chain.last().map_or(0, |h| h.manifest.head_version);
    (from, to)
}

/// Verifies a whole chain (every chunk of every backup).
pub(crate) fn verify_chain<'s>(
    chain: &[Loaded],
    progress: &Progress,
    mut sink: Option<&mut (dyn EntrySink + 's)>,
) -> Result<VerifyReport, BackupError> {
    let total: u64 = chain
        .iter()
        .flat_map(|b| b.manifest.chunks.iter())
        .map(|c| c.size)
        .sum();
    let mut done = 0;
    progress.report(Phase::Verify, 0, total);
    let mut backups = Vec::with_capacity(chain.len());
    for (index, backup) in chain.iter().enumerate() {
        backups.push(verify_backup(
            index,
            backup,
            progress,
            &mut done,
            total,
            sink.as_deref_mut(),
        )?);
    }
    let (restorable_from, restorable_to) = restorable(chain);
    Ok(VerifyReport {
        chunks_checked: backups.iter().map(|b| b.chunks).sum(),
        entries_checked: backups.iter().map(|b| b.entries).sum(),
        bytes_checked: done,
        unreferenced_files: chain.iter().flat_map(unreferenced).collect(),
        restorable_from,
        restorable_to,
        backups,
    })
}
