//! [`BackupError`]: every failure names the file (or directory) and the check that failed.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::backend::BackendError;
use crate::mvcc::TxnError;

/// The check that failed. Stable names, printed in every [`BackupError`] and usable by tests
/// and tools to tell tampering from usage errors ([`Check::is_integrity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    // --- file system -------------------------------------------------------------------------
    /// The backup directory must be creatable and empty (create) or exist (read).
    Directory,
    /// A file named by a manifest must be a single safe name: no separators, no `..`, not
    /// absolute, ASCII `[A-Za-z0-9._-]`, distinct.
    FileName,
    /// A file the manifest names must exist.
    FilePresent,
    /// A file must be a regular file (not a symbolic link, device, FIFO or directory).
    FileType,
    /// Reading a file.
    Read,
    /// Writing a file.
    Write,
    /// Making a file or directory durable.
    Sync,
    /// Renaming the manifest into place.
    Rename,
    /// Listing a directory.
    ListDirectory,

    // --- frame -------------------------------------------------------------------------------
    /// The file's size must match the frame header and the manifest, within the format bounds.
    FileSize,
    /// The file must start with the frame magic `ZCBK`.
    FrameMagic,
    /// The frame's format version must be one this build reads.
    FrameVersion,
    /// The frame's kind must be the expected one (manifest or chunk).
    FrameKind,
    /// The frame's flags must be ones this build understands (none in format 1).
    FrameFlags,
    /// The frame's CRC32C over header and payload must match.
    FrameCrc,

    // --- manifest ----------------------------------------------------------------------------
    /// The BLAKE3 digest over the manifest body must match.
    ManifestDigest,
    /// The manifest payload must decode.
    ManifestDecode,
    /// The manifest's fields must be consistent with each other.
    ManifestConsistency,

    // --- chunks ------------------------------------------------------------------------------
    /// The CRC32C of the chunk file recorded in the manifest must match.
    ChunkCrc,
    /// The BLAKE3 digest of the chunk file recorded in the manifest must match.
    ChunkDigest,
    /// The chunk payload must decode.
    ChunkDecode,
    /// The chunk must belong to this backup, at this position, for this collection.
    ChunkIdentity,
    /// The chunk's compression must be known and its data must decompress to the stated size.
    Decompress,
    /// Every entry must decode.
    EntryDecode,
    /// Entries must be in strictly ascending (key, descending version) order across the chunks
    /// of a collection.
    EntryOrder,
    /// Every entry's version must lie inside the backup's version range.
    EntryVersion,
    /// Entry, tombstone, byte and live-key counts must match the manifest.
    EntryCount,
    /// The digest of the live state at the head version must match the manifest.
    StateDigest,

    // --- chains ------------------------------------------------------------------------------
    /// The parent of an incremental backup must be found (by its manifest digest).
    ParentMissing,
    /// The parent's digest, id and head version must match the child's link.
    ParentLink,
    /// The source's state at the parent's head must equal what the parent recorded.
    ParentState,

    // --- engine ------------------------------------------------------------------------------
    /// Reading the source engine.
    SourceRead,
    /// The incremental base must still be retained by the source's garbage collector.
    BaseRetained,
    /// The requested `as_of` version must lie inside the chain's restorable range.
    AsOfRange,
    /// The restore target must be empty.
    TargetEmpty,
    /// Writing the restore target.
    TargetWrite,

    // --- encryption --------------------------------------------------------------------------
    /// An encrypted backup needs the keyring, and it must hold the backup's key id with the
    /// recorded check value.
    EncryptionKey,
    /// A sealed chunk must authenticate (wrong key, or the chunk was altered).
    Decrypt,
}

impl Check {
    /// Stable lower-case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::FileName => "file name",
            Self::FilePresent => "file present",
            Self::FileType => "file type",
            Self::Read => "read",
            Self::Write => "write",
            Self::Sync => "sync",
            Self::Rename => "rename",
            Self::ListDirectory => "list directory",
            Self::FileSize => "file size",
            Self::FrameMagic => "frame magic",
            Self::FrameVersion => "frame format version",
            Self::FrameKind => "frame kind",
            Self::FrameFlags => "frame flags",
            Self::FrameCrc => "frame crc32c",
            Self::ManifestDigest => "manifest blake3 digest",
            Self::ManifestDecode => "manifest decode",
            Self::ManifestConsistency => "manifest consistency",
            Self::ChunkCrc => "chunk crc32c",
            Self::ChunkDigest => "chunk blake3 digest",
            Self::ChunkDecode => "chunk decode",
            Self::ChunkIdentity => "chunk identity",
            Self::Decompress => "decompression",
            Self::EntryDecode => "entry decode",
            Self::EntryOrder => "entry order",
            Self::EntryVersion => "entry version range",
            Self::EntryCount => "entry counts",
            Self::StateDigest => "state digest",
            Self::ParentMissing => "parent present",
            Self::ParentLink => "parent link",
            Self::ParentState => "parent state",
            Self::SourceRead => "source read",
            Self::BaseRetained => "incremental base retained",
            Self::AsOfRange => "as-of version in range",
            Self::TargetEmpty => "target empty",
            Self::TargetWrite => "target write",
            Self::EncryptionKey => "encryption key",
            Self::Decrypt => "chunk decryption",
        }
    }

    /// Whether this check guards the integrity of backup files (a failure means damaged or
    /// tampered data) rather than usage or I/O.
    #[must_use]
    pub fn is_integrity(self) -> bool {
        matches!(
            self,
            Self::FileName
                | Self::FilePresent
                | Self::FileType
                | Self::FileSize
                | Self::FrameMagic
                | Self::FrameVersion
                | Self::FrameKind
                | Self::FrameFlags
                | Self::FrameCrc
                | Self::ManifestDigest
                | Self::ManifestDecode
                | Self::ManifestConsistency
                | Self::ChunkCrc
                | Self::ChunkDigest
                | Self::ChunkDecode
                | Self::ChunkIdentity
                | Self::Decompress
                | Self::Decrypt
                | Self::EntryDecode
                | Self::EntryOrder
                | Self::EntryVersion
                | Self::EntryCount
                | Self::StateDigest
                | Self::ParentMissing
                | Self::ParentLink
        )
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in backup, verify and restore. Every variant carries the path
/// of the file or directory concerned and the [`Check`] that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file system operation failed.
    #[error("{}: {check} failed: {source}", path.display())]
    Io {
        /// File or directory.
        path: PathBuf,
        /// What was being done.
        check: Check,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Backup content failed an integrity or format check (damaged or tampered files, an
    /// unsupported format, a broken chain).
    #[error("{}: {check} check failed: {detail}", path.display())]
    Invalid {
        /// The file that failed.
        path: PathBuf,
        /// The check.
        check: Check,
        /// What was found.
        detail: String,
    },

    /// The request was refused (non-empty target or directory, version out of range, base no
    /// longer retained).
    #[error("{}: {check} check failed: {detail}", path.display())]
    Refused {
        /// The backup directory concerned.
        path: PathBuf,
        /// The check.
        check: Check,
        /// Why.
        detail: String,
    },

    /// The transaction layer failed while reading the source.
    #[error("{}: {check} failed: {source}", path.display())]
    Engine {
        /// The backup directory being written or read.
        path: PathBuf,
        /// The check.
        check: Check,
        /// The engine error.
        #[source]
        source: TxnError,
    },

    /// A backend call failed (reading the source or writing the restore target).
    #[error("{}: {check} failed: {source}", path.display())]
    Backend {
        /// The backup directory being written or read.
        path: PathBuf,
        /// The check.
        check: Check,
        /// The backend error.
        #[source]
        source: BackendError,
    },
}

impl BackupError {
    /// The file or directory concerned.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Invalid { path, .. }
            | Self::Refused { path, .. }
            | Self::Engine { path, .. }
            | Self::Backend { path, .. } => path,
        }
    }

    /// The check that failed.
    #[must_use]
    pub fn check(&self) -> Check {
        match self {
            Self::Io { check, .. }
            | Self::Invalid { check, .. }
            | Self::Refused { check, .. }
            | Self::Engine { check, .. }
            | Self::Backend { check, .. } => *check,
        }
    }

    /// Whether the backup files are damaged, tampered with or not a valid backup.
    #[must_use]
    pub fn is_integrity(&self) -> bool {
        matches!(self, Self::Invalid { .. })
    }

    pub(crate) fn invalid(path: &Path, check: Check, detail: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            check,
            detail: detail.into(),
        }
    }

    pub(crate) fn refused(path: &Path, check: Check, detail: impl Into<String>) -> Self {
        Self::Refused {
            path: path.to_path_buf(),
            check,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(path: &Path, check: Check, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            check,
            source,
        }
    }

    pub(crate) fn engine(path: &Path, check: Check, source: TxnError) -> Self {
        Self::Engine {
            path: path.to_path_buf(),
            check,
            source,
        }
    }

    pub(crate) fn backend(path: &Path, check: Check, source: BackendError) -> Self {
        Self::Backend {
            path: path.to_path_buf(),
            check,
            source,
        }
    }
}
