//! The seed's error type.

use zcore_engine::{BackendError, TxnError};

/// Errors of the seed-compatible API. The four variants are the seed's, so an exhaustive
/// `match` written against the original crate still compiles; the typed cause of a
/// [`StorageError::General`] is available through [`GeneralError`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A value could not be encoded or decoded.
    #[error("serialization error: {0}")]
    Serialization(String),
    /// An I/O error outside the engine.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Everything else: engine, backend, conflicts, invalid input.
    #[error("{0}")]
    General(GeneralError),
    /// The store is closed or could not start.
    #[error("storage not initialized")]
    NotInitialized,
}

/// The cause of a [`StorageError::General`].
#[derive(Debug, thiserror::Error)]
pub enum GeneralError {
    /// From the transaction layer (conflicts, invalid keys, unknown collections, corruption …).
    #[error(transparent)]
    Txn(#[from] TxnError),
    /// From the backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl StorageError {
    /// Whether this is a transaction conflict (retry the transaction).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::General(GeneralError::Txn(e)) if e.is_conflict())
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self::General(GeneralError::Other(message.into()))
    }
}

impl From<TxnError> for StorageError {
    fn from(e: TxnError) -> Self {
        match e {
            TxnError::Backend(BackendError::Closed { .. }) => Self::NotInitialized,
            other => Self::General(GeneralError::Txn(other)),
        }
    }
}

impl From<BackendError> for StorageError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Closed { .. } => Self::NotInitialized,
            other => Self::General(GeneralError::Backend(other)),
        }
    }
}

impl From<zcore_engine::CollectionNameError> for StorageError {
    fn from(e: zcore_engine::CollectionNameError) -> Self {
        Self::General(GeneralError::Backend(BackendError::from(e)))
    }
}
