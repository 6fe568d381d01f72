//! `zcore-backends`: the engines behind zcore-storage's [`StorageBackend`] contract.
//!
//! | backend | engine | persistent | use it for |
//! |---|---|---|---|
//! | [`MemoryBackend`] | `BTreeMap` per collection | no | tests, the differential oracle |
//! | [`FjallBackend`] | fjall 3.1 LSM-tree, one keyspace per collection | yes | production (default) |
//! | [`RedbBackend`] | redb 4.6 B-tree, one table per collection | yes | parity with existing redb stores, migration |
//!
//! Every backend module has the same shape: `mod.rs` (what it is), `backend.rs` (the type and
//! its `StorageBackend` impl), `options.rs` (its serde options). Every backend validates input
//! with [`zcore_engine::limits`] before calling its engine.

pub mod config;
pub mod fjall;
#[doc(hidden)]
pub mod fuzz;
mod group_sync;
pub mod memory;
pub mod redb;
mod staging;

pub use config::{
    BackendConfig, BackendName, ConfigError, ConfigFile, ConfigLoader, ConfigOverrides,
    LoadedConfig, Setting, SettingSource, open_backend,
};
pub use fjall::{FjallBackend, FjallOptions};
pub use memory::{MemoryBackend, MemoryOptions};
pub use redb::{RedbBackend, RedbOptions};
pub use zcore_engine::StorageBackend;
