//! The one error type of the backend layer.

use std::fmt;
use std::path::PathBuf;

use super::{BackendKind, CollectionName, CollectionNameError};

/// Boxed engine error, kept as the `source` of [`BackendError::Engine`].
pub type EngineError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// Empty keys are refused (fjall bricks its database on one).
    Empty,
    /// The key is longer than [`crate::limits::MAX_KEY_LEN`].
    TooLong {
        /// Length of the refused key.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the key is empty (keys must be at least 1 byte)"),
            Self::TooLong { len, max } => {
                write!(f, "the key is {len} bytes long; at most {max} are allowed")
            }
        }
    }
}

/// A short, printable preview of a key for error messages: up to 32 bytes in hex plus the
/// total length.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPreview {
    head: Vec<u8>,
    len: usize,
}

impl KeyPreview {
    const HEAD: usize = 32;

    /// Preview of `key`.
    #[must_use]
    pub fn of(key: &[u8]) -> Self {
        Self {
            head: key[..key.len().min(Self::HEAD)].to_vec(),
            len: key.len(),
        }
    }
}

impl fmt::Display for KeyPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in &self.head {
            write!(f, "{b:02x}")?;
        }
        if self.len > self.head.len() {
            write!(f, "… ({} bytes)", self.len)?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Everything that can go wrong in a [`crate::StorageBackend`] call.
///
/// Input errors (`InvalidCollectionName`, `InvalidKey`, `ValueTooLarge`, `InvalidScanLimit`,
/// `CollectionNotFound`) are raised before the engine is touched and change nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A collection name broke the naming rules.
    #[error(transparent)]
    InvalidCollectionName(#[from] CollectionNameError),

    /// The collection does not exist.
    #[error("collection `{collection}` does not exist")]
    CollectionNotFound {
        /// The missing collection.
        collection: CollectionName,
    },

    /// A key broke the key limits.
    #[error("key refused in collection `{collection}`: {problem}")]
    InvalidKey {
        /// Collection the key was meant for.
        collection: CollectionName,
        /// What is wrong with it.
        problem: KeyProblem,
    },

    /// A value is larger than [`crate::limits::MAX_VALUE_LEN`].
    #[error(
        "value for key {key} in collection `{collection}` is {len} bytes; at most {max} are allowed"
    )]
    ValueTooLarge {
        /// Collection the value was meant for.
        collection: CollectionName,
        /// Its key.
        key: KeyPreview,
        /// Length of the refused value.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A scan asked for 0 entries or more than [`crate::limits::MAX_SCAN_LIMIT`].
    #[error("scan page limit {limit} is out of range 1..={max}")]
    InvalidScanLimit {
        /// The refused limit.
        limit: usize,
        /// The largest allowed limit.
        max: usize,
    },

    /// The backend was closed; every call after [`crate::StorageBackend::close`] fails so.
    #[error("the {backend} backend is closed")]
    Closed {
        /// The backend.
        backend: BackendKind,
    },

    /// The store could not be opened or created.
    #[error("cannot open {backend} store at {}: {source}", path.display())]
    Open {
        /// The backend.
        backend: BackendKind,
        /// Where the store lives.
        path: PathBuf,
        /// The engine's error.
        #[source]
        source: EngineError,
    },

    /// The engine failed an operation (I/O error, corruption it detected, poisoned state …).
    #[error("{backend} failed to {operation}{}: {source}", on_collection(.collection.as_ref()))]
    Engine {
        /// The backend.
        backend: BackendKind,
        /// What was being done ("get", "scan", "write batch", "sync", …).
        operation: &'static str,
        /// The collection involved, when there is one.
        collection: Option<CollectionName>,
        /// The engine's error.
        #[source]
        source: EngineError,
    },

    /// The engine panicked on the store's data (caught at the adapter boundary, so the caller
    /// gets this error instead of a panic). Engines panic on damaged files they do not expect;
    /// treat the store as corrupted (`zstore verify`, restore from a backup).
    #[error("{backend} store looks corrupted: the engine panicked during {operation}{}: {detail}", on_collection(.collection.as_ref()))]
    Corrupted {
        /// The backend.
        backend: BackendKind,
        /// What was being done.
        operation: &'static str,
        /// The collection involved, when there is one.
        collection: Option<CollectionName>,
        /// The panic message.
        detail: String,
    },
}

/// Runs `work`, turning a panic inside the engine into [`BackendError::Corrupted`]. Adapters
/// wrap every engine call that reads stored bytes with it.
///
/// # Errors
///
/// Whatever `work` returns, or [`BackendError::Corrupted`] if it panicked.
pub fn catch_engine_panic<T>(
    backend: BackendKind,
    operation: &'static str,
    collection: Option<&CollectionName>,
    work: impl FnOnce() -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        Err(BackendError::Corrupted {
            backend,
            operation,
            collection: collection.cloned(),
            detail,
        })
    })
}

fn on_collection(collection: Option<&CollectionName>) -> String {
    collection.map_or_else(String::new, |c| format!(" in collection `{c}`"))
}

impl BackendError {
    /// Shorthand for [`BackendError::Engine`].
    pub fn engine(
        backend: BackendKind,
        operation: &'static str,
        collection: Option<&CollectionName>,
        source: impl Into<EngineError>,
    ) -> Self {
        Self::Engine {
            backend,
            operation,
            collection: collection.cloned(),
            source: source.into(),
        }
    }

    /// Whether the error was caused by the caller's input (nothing was changed, retrying the
    /// same call fails the same way).
    #[must_use]
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidCollectionName(_)
                | Self::CollectionNotFound { .. }
                | Self::InvalidKey { .. }
                | Self::ValueTooLarge { .. }
                | Self::InvalidScanLimit { .. }
        )
    }
}
