//! `zcore-engine`: the storage contract and the generic transaction layer of zcore-storage.
//!
//! This crate names no concrete backend. It defines:
//!
//! - [`StorageBackend`]: the async, dyn-compatible contract every backend implements (a plain
//!   ordered byte map per named collection, with atomic multi-collection write batches and an
//!   explicit durability choice per batch). Each guarantee is a doc clause on the trait and has a
//!   case in the conformance suite ([`testing::conformance`], behind the `conformance` feature).
//! - The value types the contract speaks in: [`CollectionName`], [`KeyRange`], [`ScanRequest`],
//!   [`ScanPage`], [`WriteBatch`], [`Durability`], [`BackendStats`], and the one error enum
//!   [`BackendError`].
//! - The input limits ([`limits`]) that every backend enforces before it calls its engine.
//!
//! The MVCC transaction layer (versioned keys, oracle, isolation, savepoints, GC) is built on
//! this contract in later modules of this crate.

pub mod backend;
pub mod backup;
pub mod collections;
pub mod composite;
pub mod crypto;
pub mod dump;
#[doc(hidden)]
pub mod fuzz;
pub mod limits;
pub mod metrics;
pub mod mvcc;

#[cfg(feature = "conformance")]
pub mod testing;

pub use backend::{
    BackendError, BackendKind, BackendStats, BatchOp, CollectionName, CollectionNameError,
    CollectionStats, CompactionGc, Direction, Durability, GcPass, KeyProblem, KeyRange,
    NameProblem, ScanPage, ScanRequest, StorageBackend, WriteBatch,
};
// `backup::VerifyReport` stays under `backup::` (the store check has its own report type).
pub use backup::{BackupError, BackupMetadata, BackupOptions, RestoreOptions, RestoreReport};
pub use composite::{decode_key, encode_key, prefix_range};
pub use mvcc::{
    CommitInfo, Engine, EngineOptions, EngineStats, GcReport, Isolation, ReadTransaction, TxnError,
    Version, WriteOptions, WriteTransaction,
};
