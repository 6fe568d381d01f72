//! `zcore-storage`: a pluggable storage engine — one contract, three engines, chosen by config.
//!
//! This facade is what an embedding application depends on. Today it exposes the storage
//! contract and the backends:
//!
//! ```
//! use zcore_storage::{CollectionName, Durability, MemoryBackend, StorageBackend, WriteBatch};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), zcore_storage::BackendError> {
//! let store = MemoryBackend::new();
//! let users = CollectionName::new("users")?;
//! store.create_collection(&users).await?;
//! let mut batch = WriteBatch::new();
//! batch.put(&users, b"user1".to_vec(), b"user_data".to_vec());
//! store.write(batch, Durability::Synced).await?;
//! assert_eq!(store.get(&users, b"user1").await?, Some(b"user_data".to_vec()));
//! # Ok(())
//! # }
//! ```
//!
//! The MVCC transaction layer, the seed-compatible synchronous `Store` API, Raft replication,
//! backup and the simulator are built on this contract in the workspace's other crates (see
//! `ARCHITECTURE.md`).

pub use zcore_backends::{
    FjallBackend, FjallOptions, MemoryBackend, MemoryOptions, RedbBackend, RedbOptions,
};
pub use zcore_engine::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionNameError,
    CollectionStats, Direction, Durability, KeyProblem, KeyRange, NameProblem, ScanPage,
    ScanRequest, StorageBackend, WriteBatch, limits,
};
