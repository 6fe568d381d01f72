//! Snapshot files: a sequence of framed [`SnapshotPart`]s, written and read in bounded pieces.
//!
//! A snapshot holds every stored version (at or below the snapshot's version) of every user
//! collection, raw — backend key and checksummed backend value, exactly as the engine stored
//! them — plus the client sessions and the applied membership. Files are written under a
//! temporary name, fsynced, renamed and the directory fsynced, so a file with the final name
//! is always complete.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};

use crate::error::StoreError;
use crate::frame::{self, Kind};
use crate::records::{SnapshotMetaRecord, SnapshotPart};

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

/// Writes a snapshot file part by part.
pub(crate) struct SnapshotWriter {
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<tokio::fs::File>,
}

impl SnapshotWriter {
    pub(crate) async fn create(dir: &Path, snapshot_id: &str) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| StoreError::snapshot_io(dir, e))?;
        let path = dir.join(file_name(snapshot_id));
        let tmp = path.with_extension("snap.tmp");
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| StoreError::snapshot_io(&tmp, e))?;
        Ok(Self {
            tmp,
            path,
            out: BufWriter::new(file),
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

    /// Flushes, fsyncs, renames into place and fsyncs the directory; returns the final path.
    pub(crate) async fn finish(mut self) -> Result<PathBuf, StoreError> {
        let io = |e| StoreError::snapshot_io(&self.tmp, e);
        self.out.flush().await.map_err(io)?;
        self.out.get_mut().sync_all().await.map_err(io)?;
        drop(self.out);
        tokio::fs::rename(&self.tmp, &self.path)
            .await
            .map_err(|e| StoreError::snapshot_io(&self.path, e))?;
        sync_dir(&self.path).await;
        Ok(self.path)
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
    input: BufReader<tokio::fs::File>,
}

impl SnapshotReader {
    pub(crate) async fn open(path: &Path) -> Result<Self, StoreError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| StoreError::snapshot_io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            input: BufReader::new(file),
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
pub(crate) async fn verify(path: &Path) -> Result<SnapshotMetaRecord, StoreError> {
    let mut reader = SnapshotReader::open(path).await?;
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

/// Copies everything from `src` (from its start) into a new snapshot file for `snapshot_id`.
pub(crate) async fn copy_into(
    dir: &Path,
    snapshot_id: &str,
    src: &mut tokio::fs::File,
) -> Result<PathBuf, StoreError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| StoreError::snapshot_io(dir, e))?;
    let path = dir.join(file_name(snapshot_id));
    let tmp = path.with_extension("snap.tmp");
    let io = |e| StoreError::snapshot_io(&tmp, e);
    src.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
    let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
    tokio::io::copy(src, &mut out).await.map_err(io)?;
    out.sync_all().await.map_err(io)?;
    drop(out);
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| StoreError::snapshot_io(&path, e))?;
    sync_dir(&path).await;
    Ok(path)
}
