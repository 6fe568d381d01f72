//! [`MultiPartitionTransaction`]: the seed's store-independent transaction builder.

use zcore_engine::TxnError;
use zcore_engine::mvcc::MAX_USER_KEY_LEN;
use zcore_engine::mvcc::UserKeyProblem;

use crate::error::StorageError;
use crate::store::{Store, collection};

#[derive(Clone, Debug)]
enum Op {
    Set(String, Vec<u8>, Vec<u8>),
    Delete(String, Vec<u8>),
}

/// Writes to many collections, buffered without a store, with savepoints; `commit(&store)`
/// applies them in one atomic, durable transaction. `get` reads the buffered writes first,
/// then the store's latest committed state.
#[derive(Clone, Debug, Default)]
pub struct MultiPartitionTransaction {
    ops: Vec<Op>,
    savepoints: Vec<(String, usize)>,
}

fn check(collection_name: &str, key: &[u8]) -> Result<(), StorageError> {
    let c = collection(collection_name)?;
    let problem = if key.is_empty() {
        UserKeyProblem::Empty
    } else if key.len() > MAX_USER_KEY_LEN {
        UserKeyProblem::TooLong {
            len: key.len(),
            max: MAX_USER_KEY_LEN,
        }
    } else {
        return Ok(());
    };
    Err(TxnError::InvalidKey {
        collection: c,
        problem,
    }
    .into())
}

impl MultiPartitionTransaction {
    /// An empty transaction.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Buffers `key = value` in `collection`.
    ///
    /// # Errors
    ///
    /// Invalid collection name or key.
    pub fn set(
        &mut self,
        collection_name: &str,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), StorageError> {
        check(collection_name, &key)?;
        self.ops
            .push(Op::Set(collection_name.to_owned(), key, value));
        Ok(())
    }

    /// Buffers the deletion of `key` in `collection`.
    ///
    /// # Errors
    ///
    /// Invalid collection name or key.
    pub fn delete(&mut self, collection_name: &str, key: Vec<u8>) -> Result<(), StorageError> {
        check(collection_name, &key)?;
        self.ops.push(Op::Delete(collection_name.to_owned(), key));
        Ok(())
    }

    /// The buffered value of `key` if this transaction wrote it, else the store's.
    ///
    /// # Errors
    ///
    /// Invalid name or key; store errors.
    pub fn get(
        &self,
        store: &Store,
        collection_name: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        check(collection_name, key)?;
        for op in self.ops.iter().rev() {
            match op {
                Op::Set(c, k, v) if c == collection_name && k == key => return Ok(Some(v.clone())),
                Op::Delete(c, k) if c == collection_name && k == key => return Ok(None),
                _ => {}
            }
        }
        store.begin_read()?.get(store, collection_name, key)
    }

    /// Starts a savepoint.
    ///
    /// # Errors
    ///
    /// Kept for the seed's signature.
    pub fn create_savepoint(&mut self, name: String) -> Result<(), StorageError> {
        self.savepoints.push((name, self.ops.len()));
        Ok(())
    }

    /// Drops every write since savepoint `name`, and the savepoints after it.
    ///
    /// # Errors
    ///
    /// Unknown savepoint.
    pub fn rollback_to_savepoint(&mut self, name: &str) -> Result<(), StorageError> {
        let index = self
            .savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| {
                StorageError::from(TxnError::SavepointNotFound {
                    name: name.to_owned(),
                })
            })?;
        self.ops.truncate(self.savepoints[index].1);
        self.savepoints.truncate(index + 1);
        Ok(())
    }

    /// Number of buffered operations.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is buffered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Applies every buffered write in one atomic, durable transaction.
    ///
    /// # Errors
    ///
    /// Store errors (nothing is committed then).
    pub fn commit(self, store: &Store) -> Result<(), StorageError> {
        let tx = store.begin_write()?;
        for op in self.ops {
            match op {
                Op::Set(c, k, v) => tx.try_set(&c, k, v)?,
                Op::Delete(c, k) => tx.try_delete(&c, k)?,
            }
        }
        tx.commit(store)
    }
}
