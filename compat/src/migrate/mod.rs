//! Migration into a zcore store: between any two backends, or from a plain redb file written by
//! another program; verified, resumable and idempotent.
//!
//! ```text
//! zstore migrate --from fjall:./old --to redb:./new.redb          # latest snapshot
//! zstore migrate --from redb:./a.redb --to fjall:./b --history    # every retained version
//! zstore migrate --from redb-file:./app.redb --to fjall:./store   # import typed redb tables
//! ```
//!
//! # Modes
//!
//! - **[`Mode::Snapshot`]** (store → store, the default): every user collection of the source is
//!   read at one version `V` (recorded in the checkpoint, so a resumed run reads the same `V`).
//!   The target gets new versions; its latest state equals the source's at `V`. Sequence leases
//!   (`next_seq`) are carried over (never lowered), so no sequence value is handed out twice.
//! - **[`Mode::History`]** (store → store, `--history`): every stored version of every user
//!   collection, tombstones included, is copied verbatim: the engine's versioned keys
//!   (`escape(key) ‖ 0x00 0x01 ‖ !version`) and checksummed values go through the target
//!   *backend* in batches, bypassing the transaction layer (which would assign new versions).
//!   The values' checksums bind collection, key and version, so they stay valid and are checked
//!   on the way. The source's engine metadata (version lease, GC floor, sequence leases) is
//!   merged into the target's by maximum, so the target's oracle resumes above every copied
//!   version and time-travel reads at old versions give the source's answers. The target must
//!   hold no other data (different version histories cannot be mixed).
//! - **[`Mode::RedbImport`]** (`redb-file:`): every table of a plain redb file becomes a
//!   collection; keys and values of redb's built-in types are re-encoded so that byte order
//!   equals redb's order ([`codec`] has the table). Tables of user-defined types are an error
//!   naming the table and its stored type names, or are skipped and reported
//!   ([`MigrateOptions::skip_unknown`]). A multimap table becomes a collection whose keys are
//!   `key ‖ value` (the key encoded self-delimiting) with empty values, in redb's (key, value)
//!   order. Table names that are not valid collection names are refused unless renamed
//!   ([`MigrateOptions::renames`]).
//!
//! # How rows are written
//!
//! Snapshot and import runs start with one ordinary commit through the target's transaction
//! layer (it writes the run record); its version `A` is published by the oracle like any
//! commit. Every row of the run is then written as the engine's own backend entry at version
//! `A` (`escape(key) ‖ 0x00 0x01 ‖ !A` and the checksummed value), in atomic backend batches
//! that also carry the checkpoint. Readers see the rows at every version ≥ `A`, every later
//! commit lands above them, and GC keeps them (one version per key). This is what a commit of
//! the same rows would store, minus the transaction layer's per-transaction work (ordered
//! write buffer, write set for conflict checks, commit lock), which buys nothing for an
//! exclusive bulk load and costs most of the copy's time. The encoding (typed re-encoding,
//! MVCC key, checksum) runs on the reader side, in parallel with the backend writes.
//!
//! # Bounded memory
//!
//! A reader (a thread for redb files, a task for stores) produces batches of at most
//! [`MigrateOptions::batch_rows`] rows and about [`MigrateOptions::batch_bytes`] bytes (a single
//! larger row makes a batch of one) into a channel holding two batches; the writer commits them
//! in order. Memory is a few batches, whatever the size of the source.
//!
//! # Checkpoint, resume, idempotence
//!
//! See [`checkpoint`]: the target's `__migrate` collection records the run and, in the same
//! atomic batch as every batch of rows, the source position reached per collection. A run killed
//! at any moment resumes from there when rerun with the same arguments and ends with the same
//! content as an uninterrupted run; rerunning a finished migration writes nothing (it verifies
//! again). A run refuses a target that holds data it did not write, or a checkpoint of another
//! source, and stops if the source changed since the interrupted run (its fingerprint: tables,
//! types and lengths of a redb file; collections and version of a store).
//!
//! # Verification
//!
//! After every run (and alone with [`verify`]), each collection is read in full on both sides:
//! row count and an order-sensitive BLAKE3 digest of the rows in the order read (length-framed
//! key and value). The source side is read in the *source's* order (redb's order for a redb
//! file, after re-encoding), the target side in byte order, so equal digests also prove that the
//! encoding kept redb's order. Any mismatch makes [`Report::ok`] false (and `zstore` exit 1).

pub mod checkpoint;
pub mod codec;
mod endpoint;
mod error;
mod progress;
mod redb_file;
mod report;
mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zcore_engine::StorageBackend;

pub use endpoint::Endpoint;
pub use error::MigrateError;
pub use progress::{NoProgress, Phase, Progress};
pub use report::{CollectionReport, Report, RunKind, Side, SkippedTable};
pub use run::{dry_run, migrate, verify};

/// What a run copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Store → store, the latest state at one source version.
    Snapshot,
    /// Store → store, every retained version verbatim.
    History,
    /// Plain redb file → store.
    RedbImport,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Snapshot => "snapshot",
            Self::History => "history",
            Self::RedbImport => "redb import",
        })
    }
}

/// Where a migration reads from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A zcore store (its user collections, in the engine's format).
    Store {
        /// The backend.
        backend: Arc<dyn StorageBackend>,
        /// How it is named in reports and the checkpoint (`fjall:/abs/path`).
        label: String,
    },
    /// A plain redb file written by another program.
    RedbFile {
        /// The file.
        path: PathBuf,
    },
}

impl Source {
    /// The name used in reports and the checkpoint.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Store { label, .. } => label.clone(),
            Self::RedbFile { path } => format!(
                "redb-file:{}",
                std::fs::canonicalize(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
            ),
        }
    }
}

/// Where a migration writes to: a zcore store.
#[derive(Clone, Debug)]
pub struct Target {
    /// The backend.
    pub backend: Arc<dyn StorageBackend>,
    /// How it is named in reports (`redb:/abs/path`).
    pub label: String,
}

/// Options of [`migrate`], [`verify`] and [`dry_run`].
#[derive(Clone, Debug)]
pub struct MigrateOptions {
    /// Copy every retained version (store sources only); see [`Mode::History`].
    pub history: bool,
    /// Skip redb tables of unknown (user-defined) types instead of failing; they are listed in
    /// [`Report::skipped`].
    pub skip_unknown: bool,
    /// redb table name → collection name, for tables whose names are not valid collection
    /// names (or to choose another name).
    pub renames: BTreeMap<String, String>,
    /// Most rows per batch (one atomic backend batch each, with its checkpoint).
    pub batch_rows: usize,
    /// About the most key and value bytes per batch.
    pub batch_bytes: usize,
    /// Every this many batches is committed synced, the others buffered; the run ends with a
    /// synced write. A crash loses at most the batches since the last synced one (whole, never
    /// in part), which a rerun copies again.
    pub sync_every: u64,
    /// Verify after copying.
    pub verify: bool,
    /// redb's page cache for reading a redb file, in bytes.
    pub redb_cache_bytes: usize,
    /// Test hook: end the run with [`MigrateError::Stopped`] right after this many batches
    /// were committed, like a crash at that point.
    #[doc(hidden)]
    pub stop_after_batches: Option<u64>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            history: false,
            skip_unknown: false,
            renames: BTreeMap::new(),
            batch_rows: 4096,
            batch_bytes: 4 << 20,
            sync_every: 64,
            verify: true,
            redb_cache_bytes: 64 << 20,
            stop_after_batches: None,
        }
    }
}

/// What kind of source collection a planned collection comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A user collection of a zcore store.
    Collection,
    /// A redb table.
    Table,
    /// A redb multimap table (`key ‖ value` keys, empty values).
    MultimapTable,
}

/// One collection a run copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCollection {
    /// The target collection.
    pub collection: String,
    /// The source collection or redb table.
    pub source_name: String,
    /// What the source is.
    pub kind: SourceKind,
    /// The redb key type (as parsed; `None` for store collections).
    pub key_type: Option<String>,
    /// The redb value type.
    pub value_type: Option<String>,
    /// Whether the key's tuples use redb 2's `u32` length layout.
    pub legacy_key_tuples: bool,
    /// Whether the value's tuples use redb 2's `u32` length layout.
    pub legacy_value_tuples: bool,
}
