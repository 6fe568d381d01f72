//! Snapshot files: a sequence of framed [`SnapshotPart`]s, written and read in bounded pieces.
//!
//! A snapshot holds every stored version (at or below the snapshot's version) of every user
//! collection, raw — backend key and checksummed backend value, exactly as the engine stored
//! them — plus the client sessions and the applied membership. Files are written under a
//! temporary name, fsynced, renamed and the directory fsynced, so a file with the final name
//! is always complete.
//!
//! Where they live is a [`SnapshotStorage`]: a directory (production) or, for the
//! deterministic simulator, [`MemorySnapshots`] (tokio's file API runs on the blocking thread
//! pool against the real disk, which a turmoil simulation cannot control). The format is the
//! same either way.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};

use crate::error::StoreError;
use crate::frame::{self, Kind};
use crate::records::{SnapshotMetaRecord, SnapshotPart};
use crate::types::SnapshotData;

/// Data bytes per [`SnapshotPart::Entries`] part.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// File name of a snapshot: its id with anything but `[A-Za-z0-9_-]` replaced.
pub(crate) fn file_name(snapshot_id: &str) -> String {
    let safe: String = snapshot_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("snapshot-{safe}.snap")
}

/// Where a node keeps its snapshots.
#[derive(Clone, Debug)]
pub enum SnapshotStorage {
    /// Files in this directory (production): bounded memory, fsynced and renamed into place.
    Files(PathBuf),
    /// In memory, for the deterministic simulator. The handle plays the snapshot directory:
    /// pass the same handle to every incarnation of a node and a finished snapshot survives
    /// restarts and power loss as a synced file would (snapshot bytes see no disk faults).
    Memory(MemorySnapshots),
}

impl From<PathBuf> for SnapshotStorage {
    fn from(dir: PathBuf) -> Self {
        Self::Files(dir)
    }
}

impl From<&Path> for SnapshotStorage {
    fn from(dir: &Path) -> Self {
        Self::Files(dir.to_path_buf())
    }
}

impl From<MemorySnapshots> for SnapshotStorage {
    fn from(memory: MemorySnapshots) -> Self {
        Self::Memory(memory)
    }
}

/// An in-memory snapshot directory shared by the clones of one handle, with counters of the
/// snapshots built and installed through it.
#[derive(Clone, Debug, Default)]
pub struct MemorySnapshots {
    inner: Arc<Mutex<MemoryDir>>,
}

#[derive(Debug, Default)]
struct MemoryDir {
    files: BTreeMap<String, Arc<Vec<u8>>>,
    built: u64,
    installed: u64,
}

impl MemorySnapshots {
    /// An empty directory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn dir(&self) -> MutexGuard<'_, MemoryDir> {
        // A panic while holding the lock leaves the map consistent (single inserts/removes).
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Snapshots built (finished) through this handle.
    #[must_use]
    pub fn built(&self) -> u64 {
        self.dir().built
    }

    /// Snapshots received from a leader and installed through this handle.
    #[must_use]
    pub fn installed(&self) -> u64 {
        self.dir().installed
    }

    /// Snapshots currently stored.
    #[must_use]
    pub fn stored(&self) -> usize {
        self.dir().files.len()
    }
}

impl SnapshotStorage {
    /// The path of snapshot `snapshot_id` (for error messages; `memory:` paths for memory).
    pub(crate) fn path(&self, snapshot_id: &str) -> PathBuf {
        match self {
            Self::Files(dir) => dir.join(file_name(snapshot_id)),
            Self::Memory(_) => PathBuf::from(format!("memory:{}", file_name(snapshot_id))),
        }
    }

    /// Opens snapshot `snapshot_id` for reading from its start.
    pub(crate) async fn open(&self, snapshot_id: &str) -> Result<SnapshotData, StoreError> {
        let path = self.path(snapshot_id);
        match self {
            Self::Files(_) => tokio::fs::File::open(&path)
                .await
                .map(SnapshotData::File)
                .map_err(|e| StoreError::snapshot_io(&path, e)),
            Self::Memory(m) => match m.dir().files.get(&file_name(snapshot_id)) {
                Some(bytes) => Ok(SnapshotData::Memory(Cursor::new(bytes.as_ref().clone()))),
                None => Err(StoreError::snapshot_io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such snapshot"),
                )),
            },
        }
    }

    /// Removes snapshot `snapshot_id` (best effort: a failure is logged).
    pub(crate) async fn remove(&self, snapshot_id: &str) {
        match self {
            Self::Files(_) => {
                let path = self.path(snapshot_id);
                if let Err(e) = tokio::fs::remove_file(&path).await
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove an old snapshot");
                }
            }
            Self::Memory(m) => {
                m.dir().files.remove(&file_name(snapshot_id));
            }
        }
    }

    /// An empty, readable and writable buffer to receive a snapshot from a leader: an
    /// unlinked file for [`Files`](Self::Files), memory otherwise.
    pub(crate) async fn incoming(&self, seq: u64) -> Result<SnapshotData, StoreError> {
        match self {
            Self::Files(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| StoreError::snapshot_io(dir, e))?;
                let path = dir.join(format!("incoming-{seq}.tmp"));
                let file = tokio::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .await
                    .map_err(|e| StoreError::snapshot_io(&path, e))?;
                // The open handle keeps the data; the name is not needed.
                let _ = tokio::fs::remove_file(&path).await;
                Ok(SnapshotData::File(file))
            }
            Self::Memory(_) => Ok(SnapshotData::Memory(Cursor::new(Vec::new()))),
        }
    }

    /// Counts an installed snapshot (memory storage only).
    pub(crate) fn count_installed(&self) {
        if let Self::Memory(m) = self {
            m.dir().installed += 1;
        }
    }
}

/// Writes a snapshot file part by part.
pub(crate) struct SnapshotWriter {
    storage: SnapshotStorage,
    snapshot_id: String,
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<SnapshotData>,
}

impl SnapshotWriter {
    pub(crate) async fn create(
        storage: &SnapshotStorage,
        snapshot_id: &str,
    ) -> Result<Self, StoreError> {
        let path = storage.path(snapshot_id);
        let tmp = path.with_extension("snap.tmp");
        let data = match storage {
            SnapshotStorage::Files(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| StoreError::snapshot_io(dir, e))?;
                let file = tokio::fs::File::create(&tmp)
                    .await
                    .map_err(|e| StoreError::snapshot_io(&tmp, e))?;
                SnapshotData::File(file)
            }
            SnapshotStorage::Memory(_) => SnapshotData::Memory(Cursor::new(Vec::new())),
        };
        Ok(Self {
            storage: storage.clone(),
            snapshot_id: snapshot_id.to_owned(),
            tmp,
            path,
            out: BufWriter::new(data),
        })
    }

    pub(crate) async fn part(&mut self, part: &SnapshotPart) -> Result<(), StoreError> {
        frame::write_frame(&mut self.out, Kind::SnapshotPart, part)
            .await
            .map_err(|e| match e {
                frame::FrameError::Io(io) => StoreError::snapshot_io(&self.tmp, io),
                other => StoreError::record("snapshot part", other),
            })
    }

    /// Flushes, fsyncs, renames into place and fsyncs the directory (for memory storage: puts
    /// the finished bytes under the final name).
    pub(crate) async fn finish(mut self) -> Result<(), StoreError> {
        let io = |e| StoreError::snapshot_io(&self.tmp, e);
        self.out.flush().await.map_err(io)?;
        match self.out.into_inner() {
            SnapshotData::File(file) => {
                file.sync_all().await.map_err(io)?;
                drop(file);
                tokio::fs::rename(&self.tmp, &self.path)
                    .await
                    .map_err(|e| StoreError::snapshot_io(&self.path, e))?;
                sync_dir(&self.path).await;
            }
            SnapshotData::Memory(cursor) => {
                if let SnapshotStorage::Memory(m) = &self.storage {
                    let mut dir = m.dir();
                    dir.files
                        .insert(file_name(&self.snapshot_id), Arc::new(cursor.into_inner()));
                    dir.built += 1;
                }
            }
        }
        Ok(())
    }
}

/// Best effort: fsync the directory holding `path` so a rename survives power loss.
pub(crate) async fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = tokio::fs::File::open(dir).await
    {
        let _ = d.sync_all().await;
    }
}

/// Reads a snapshot file part by part.
pub(crate) struct SnapshotReader {
    path: PathBuf,
    input: BufReader<SnapshotData>,
}

impl SnapshotReader {
    pub(crate) async fn open(
        storage: &SnapshotStorage,
        snapshot_id: &str,
    ) -> Result<Self, StoreError> {
        let data = storage.open(snapshot_id).await?;
        Ok(Self {
            path: storage.path(snapshot_id),
            input: BufReader::new(data),
        })
    }

    /// The next part; `None` at the end of the file.
    pub(crate) async fn next(&mut self) -> Result<Option<SnapshotPart>, StoreError> {
        frame::read_frame(&mut self.input, Kind::SnapshotPart)
            .await
            .map_err(|e| match e {
                frame::FrameError::Io(io) => StoreError::snapshot_io(&self.path, io),
                other => StoreError::record(format!("snapshot {}", self.path.display()), other),
            })
    }

    /// Reads the header part.
    pub(crate) async fn header(&mut self) -> Result<SnapshotMetaRecord, StoreError> {
        match self.next().await? {
            Some(SnapshotPart::Header { meta }) => Ok(meta),
            _ => Err(StoreError::InvalidSnapshot(format!(
                "{} does not start with a header",
                self.path.display()
            ))),
        }
    }
}

/// Reads a whole snapshot file once, checking every frame and the final count, without
/// keeping it in memory. Returns its header.
pub(crate) async fn verify(
    storage: &SnapshotStorage,
    snapshot_id: &str,
) -> Result<SnapshotMetaRecord, StoreError> {
    let mut reader = SnapshotReader::open(storage, snapshot_id).await?;
    let meta = reader.header().await?;
    let mut entries = 0u64;
    let mut in_collection = false;
    loop {
        match reader.next().await? {
            Some(SnapshotPart::Header { .. }) => {
                return Err(StoreError::InvalidSnapshot("a second header".to_owned()));
            }
            Some(SnapshotPart::Collection(_)) => in_collection = true,
            Some(SnapshotPart::Entries(e)) => {
                if !in_collection {
                    return Err(StoreError::InvalidSnapshot(
                        "entries before any collection".to_owned(),
                    ));
                }
                entries += e.len() as u64;
            }
            Some(SnapshotPart::Clients(_) | SnapshotPart::SessionFloor(_)) => {}
            Some(SnapshotPart::End { entries: n, .. }) => {
                if n != entries {
                    return Err(StoreError::InvalidSnapshot(format!(
                        "declares {n} entries, holds {entries}"
                    )));
                }
                return match reader.next().await? {
                    None => Ok(meta),
                    Some(_) => Err(StoreError::InvalidSnapshot(
                        "parts after the end marker".to_owned(),
                    )),
                };
            }
            None => {
                return Err(StoreError::InvalidSnapshot(
                    "file ends before the end marker".to_owned(),
                ));
            }
        }
    }
}

/// Copies everything from `src` (from its start) into a new snapshot for `snapshot_id`.
pub(crate) async fn copy_into(
    storage: &SnapshotStorage,
    snapshot_id: &str,
    src: &mut SnapshotData,
) -> Result<(), StoreError> {
    let path = storage.path(snapshot_id);
    let tmp = path.with_extension("snap.tmp");
    let io = |e| StoreError::snapshot_io(&tmp, e);
    src.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
    match storage {
        SnapshotStorage::Files(dir) => {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::snapshot_io(dir, e))?;
            let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
            tokio::io::copy(src, &mut out).await.map_err(io)?;
            out.sync_all().await.map_err(io)?;
            drop(out);
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| StoreError::snapshot_io(&path, e))?;
            sync_dir(&path).await;
        }
        SnapshotStorage::Memory(m) => {
            let mut bytes = Vec::new();
            tokio::io::copy(src, &mut bytes).await.map_err(io)?;
            m.dir()
                .files
                .insert(file_name(snapshot_id), Arc::new(bytes));
        }
    }
    Ok(())
}
