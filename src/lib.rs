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
//! The transactional API is [`Engine`]: snapshots, serializable and snapshot isolation,
//! savepoints, atomic multi-collection commits, sequences, GC and time travel, on any backend.
//! The seed-compatible synchronous `Store` API, Raft replication, backup and the simulator are
//! being built on the same contract (see `ARCHITECTURE.md`).

pub use zcore_backends::config;
pub use zcore_backends::{
    FjallBackend, FjallOptions, MemoryBackend, MemoryOptions, RedbBackend, RedbOptions,
};
pub use zcore_compat::{
    AccessGuard, GeneralError, MemoryStorage, MultiPartitionTransaction, Range, ReadOnlyTable,
    ReadTx, StorageError, Store, Table, WriteTx, next_seq,
};
pub use zcore_engine::backup;
pub use zcore_engine::collections::*;
pub use zcore_engine::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionNameError,
    CollectionStats, CommitInfo, Direction, Durability, Engine, EngineOptions, EngineStats,
    GcReport, Isolation, KeyProblem, KeyRange, NameProblem, ReadTransaction, ScanPage, ScanRequest,
    StorageBackend, TxnError, Version, WriteBatch, WriteOptions, WriteTransaction, composite_key,
    decode_key, encode_key, limits, mvcc, prefix_range,
};
pub use zcore_engine::{BackupMetadata, BackupOptions};

// The README's examples are compiled as doc tests, so they cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
