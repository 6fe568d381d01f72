//! Errors of the transaction layer.

use crate::backend::{BackendError, CollectionName, KeyPreview};
use crate::mvcc::keys::Version;

/// Why a user key was refused by the transaction layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserKeyProblem {
    /// Empty keys are refused.
    Empty,
    /// Longer than [`crate::mvcc::MAX_USER_KEY_LEN`].
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl std::fmt::Display for UserKeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("the key is empty (keys must be at least 1 byte)"),
            Self::TooLong { len, max } => {
                write!(
                    f,
                    "the key is {len} bytes long; transactions accept at most {max}"
                )
            }
        }
    }
}

/// Everything that can go wrong in the transaction layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxnError {
    /// The backend failed or refused the operation.
    #[error(transparent)]
    Backend(#[from] BackendError),

    /// Optimistic validation failed: a transaction that committed after this one's snapshot
    /// wrote something this one read (serializable) or wrote (snapshot isolation). Retry.
    #[error(
        "transaction conflict in collection `{collection}` on key {key}: read at version {read_version}, but version {conflicting_version} committed a write to it since"
    )]
    Conflict {
        /// Collection of the conflicting key.
        collection: CollectionName,
        /// The conflicting key.
        key: KeyPreview,
        /// This transaction's snapshot version.
        read_version: Version,
        /// The commit that won.
        conflicting_version: Version,
    },

    /// The collection does not exist.
    #[error("collection `{collection}` does not exist")]
    CollectionNotFound {
        /// The collection.
        collection: CollectionName,
    },

    /// A user key broke the transaction layer's key limits.
    #[error("key refused in collection `{collection}`: {problem}")]
    InvalidKey {
        /// The collection.
        collection: CollectionName,
        /// What is wrong.
        problem: UserKeyProblem,
    },

    /// A value is larger than the transaction layer accepts.
    #[error(
        "value for key {key} in collection `{collection}` is {len} bytes; at most {max} are allowed"
    )]
    ValueTooLarge {
        /// The collection.
        collection: CollectionName,
        /// The key.
        key: KeyPreview,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A stored version failed its checksum or does not decode: never returned as data.
    #[error(
        "corrupted data in collection `{collection}` at key {key}, version {version}: {reason}"
    )]
    Corrupted {
        /// The collection.
        collection: CollectionName,
        /// The key (as much as could be decoded).
        key: KeyPreview,
        /// The version (0 if it could not be decoded).
        version: Version,
        /// What check failed.
        reason: String,
    },

    /// An encrypted value did not authenticate: the key under its id is not the one it was
    /// sealed with, or the value was altered or moved to another key, version or collection.
    #[error(
        "cannot decrypt the value in collection `{collection}` at key {key}, version {version} with key id {key_id}: authentication failed (wrong key, or the value was altered or moved)"
    )]
    Decrypt {
        /// The collection.
        collection: CollectionName,
        /// The key.
        key: KeyPreview,
        /// The version.
        version: Version,
        /// The key id the value names.
        key_id: crate::crypto::KeyId,
    },

    /// An encrypted value names a key id the keyring lacks (or the store was opened without a
    /// keyring).
    #[error(
        "the value in collection `{collection}` at key {key}, version {version} is encrypted with key id {key_id}, which the keyring lacks"
    )]
    UnknownKey {
        /// The collection.
        collection: CollectionName,
        /// The key.
        key: KeyPreview,
        /// The version.
        version: Version,
        /// The missing key id.
        key_id: crate::crypto::KeyId,
    },

    /// Encryption setup: missing, wrong or malformed keys, or a store in the wrong state.
    #[error(transparent)]
    Encryption(#[from] crate::crypto::EncryptionError),

    /// A time-travel read asked for a version that garbage collection may already have removed.
    #[error(
        "version {requested} is no longer retained (oldest readable version is {oldest_retained})"
    )]
    VersionNotRetained {
        /// The requested version.
        requested: Version,
        /// The oldest version that can still be read.
        oldest_retained: Version,
    },

    /// A time-travel read asked for a version that has not been committed yet.
    #[error("version {requested} has not been committed (latest is {latest})")]
    VersionNotCommitted {
        /// The requested version.
        requested: Version,
        /// The latest committed version.
        latest: Version,
    },

    /// No savepoint with this name is live in the transaction.
    #[error("no savepoint named {name:?} in this transaction")]
    SavepointNotFound {
        /// The name.
        name: String,
    },

    /// The commit was applied, but making it durable failed; it may or may not survive a crash.
    #[error("commit {version} was applied but could not be made durable: {source}")]
    DurabilityUnknown {
        /// The commit version.
        version: Version,
        /// The sync error.
        #[source]
        source: BackendError,
    },

    /// A sequence name is empty or too long.
    #[error("invalid sequence name {name:?}: {reason}")]
    InvalidSequenceName {
        /// The name (lossy).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },

    /// An operation that needs the store to itself (compaction) was refused because live
    /// transactions (snapshots, or write transactions with their savepoints) pin versions it
    /// would remove. Retry once they ended.
    #[error("{operation} refused: {reason}")]
    Blocked {
        /// The operation.
        operation: &'static str,
        /// What blocks it.
        reason: String,
    },

    /// The engine's background task or runtime failed.
    #[error("engine task failed: {0}")]
    Task(String),
}

impl TxnError {
    /// Whether retrying the whole transaction may succeed (a conflict).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}
