//! Atomic write batches and durability.

use serde::{Deserialize, Serialize};

use super::{BackendError, CollectionName};
use crate::limits::{check_key, check_value};

/// How durable a write batch must be before [`crate::StorageBackend::write`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Visible at once and atomic, but not yet forced to stable storage: a crash may lose it
    /// (always whole, never in part) until a later [`Durability::Synced`] batch or
    /// [`crate::StorageBackend::sync`] returns. Whether it survives a *process* crash (as opposed
    /// to power loss) depends on the backend: fjall hands it to the OS at once; redb and memory
    /// keep it in process memory.
    Buffered,
    /// On stable storage when `write` returns `Ok`, together with every batch acknowledged
    /// before it. Concurrent synced batches may share one sync (group commit).
    #[default]
    Synced,
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value` in `collection`.
    Put {
        /// Target collection.
        collection: CollectionName,
        /// Key (1..=65,535 bytes).
        key: Vec<u8>,
        /// Value (0..=3 GiB).
        value: Vec<u8>,
    },
    /// Remove `key` from `collection`; removing an absent key is not an error.
    Delete {
        /// Target collection.
        collection: CollectionName,
        /// Key (1..=65,535 bytes).
        key: Vec<u8>,
    },
}

impl BatchOp {
    /// The collection the operation writes to.
    #[must_use]
    pub fn collection(&self) -> &CollectionName {
        match self {
            Self::Put { collection, .. } | Self::Delete { collection, .. } => collection,
        }
    }

    /// The key the operation writes.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Put { key, .. } | Self::Delete { key, .. } => key,
        }
    }
}

/// An ordered list of puts and deletes, possibly spanning many collections, that a backend
/// applies all or nothing. When one batch writes the same key twice, the later operation wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` operations.
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            ops: Vec::with_capacity(n),
        }
    }

    /// Appends a put.
    pub fn put(
        &mut self,
        collection: &CollectionName,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) {
        self.ops.push(BatchOp::Put {
            collection: collection.clone(),
            key: key.into(),
            value: value.into(),
        });
    }

    /// Appends a delete.
    pub fn delete(&mut self, collection: &CollectionName, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete {
            collection: collection.clone(),
            key: key.into(),
        });
    }

    /// Appends an operation.
    pub fn push(&mut self, op: BatchOp) {
        self.ops.push(op);
    }

    /// Number of operations.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in order.
    #[must_use]
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Consumes the batch, yielding its operations in order.
    #[must_use]
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }

    /// Total bytes of keys and values, a cheap size estimate.
    #[must_use]
    pub fn payload_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { key, value, .. } => (key.len() + value.len()) as u64,
                BatchOp::Delete { key, .. } => key.len() as u64,
            })
            .sum()
    }

    /// Checks every key and value against the backend limits. Backends call this before
    /// touching their engine, so a bad operation anywhere rejects the whole batch untouched.
    ///
    /// # Errors
    ///
    /// The first [`BackendError::InvalidKey`] or [`BackendError::ValueTooLarge`].
    pub fn validate(&self) -> Result<(), BackendError> {
        for op in &self.ops {
            match op {
                BatchOp::Put {
                    collection,
                    key,
                    value,
                } => {
                    check_key(collection, key)?;
                    check_value(collection, key, value)?;
                }
                BatchOp::Delete { collection, key } => check_key(collection, key)?,
            }
        }
        Ok(())
    }
}
