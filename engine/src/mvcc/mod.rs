//! The MVCC transaction layer: snapshots, serializable and snapshot isolation, savepoints,
//! atomic multi-collection commits, sequences and garbage collection, on any
//! [`StorageBackend`](crate::StorageBackend).
//!
//! Map of this module:
//! - [`keys`]: the one place that encodes user keys and versions into backend keys;
//! - [`value`]: the checksummed stored-value format;
//! - `oracle`: commit versions, publication, live snapshots;
//! - `conflict`: read/write sets and validation;
//! - `read`: reading committed data at a version;
//! - `txn`: [`ReadTransaction`] and [`WriteTransaction`];
//! - `engine`: [`Engine`] (open, collections, sequences, GC, stats);
//! - `meta`: records in the `__meta` system collection;
//! - [`replica`]: Raft-mode hooks (replicated transactions applied at log-index versions).

mod conflict;
mod engine;
mod error;
mod inspect;
pub mod keys;
pub(crate) mod meta;
mod oracle;
pub(crate) mod read;
pub mod replica;
mod txn;
pub mod value;
mod verify;

pub use engine::{
    Engine, EngineOptions, EngineStats, GcReport, Isolation, VersionCounts, WriteOptions,
};
pub use error::{TxnError, UserKeyProblem};
pub use inspect::{
    CollectionInspect, CompactReport, InspectReport, SequenceHead, SystemCollectionInspect,
};
pub use keys::{MAX_USER_KEY_LEN, Version};
pub use meta::META_COLLECTION;
pub use txn::{CommitInfo, MAX_USER_VALUE_LEN, ReadTransaction, WriteTransaction};
pub use verify::{CollectionCheck, Problem, VerifyReport};
