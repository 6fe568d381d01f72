//! Errors of the storage layer (log store, state machine, snapshots).

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use zcore_engine::{BackendError, TxnError};

use crate::frame::FrameError;
use crate::types::NodeId;

/// What went wrong underneath openraft's storage traits.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage backend failed.
    #[error("storage backend: {0}")]
    Backend(#[from] BackendError),
    /// The transaction engine failed.
    #[error("transaction engine: {0}")]
    Engine(#[from] TxnError),
    /// A persisted record or snapshot part is damaged or foreign.
    #[error("record {what}: {source}")]
    Record {
        /// Which record.
        what: String,
        /// Why it does not decode.
        #[source]
        source: FrameError,
    },
    /// Snapshot file I/O.
    #[error("snapshot file {path}: {source}")]
    SnapshotIo {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file is incomplete or inconsistent.
    #[error("snapshot is invalid: {0}")]
    InvalidSnapshot(String),
    /// An earlier apply or snapshot install failed on a storage error; the state machine
    /// must be reopened before it is used again.
    #[error("the state machine failed earlier and must be reopened: {0}")]
    Failed(String),
}

impl StoreError {
    pub(crate) fn record(what: impl Into<String>, source: FrameError) -> Self {
        Self::Record {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn snapshot_io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::SnapshotIo {
            path: path.display().to_string(),
            source,
        }
    }

    /// As openraft's error, naming what was being done.
    pub(crate) fn into_raft(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> StorageError<NodeId> {
        StorageError::IO {
            source: StorageIOError::new(subject, verb, AnyError::new(&self)),
        }
    }
}
