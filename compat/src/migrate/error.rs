//! [`MigrateError`]: everything a migration run can fail with, with the table, collection or
//! path it concerns.

use std::path::PathBuf;

use zcore_engine::{BackendError, CollectionName, CollectionNameError, TxnError};

/// A failed migration, verification or dry run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A `--from` / `--to` argument that is not `<backend>:<path>` or `redb-file:<path>`.
    #[error("invalid endpoint {spec:?}: {reason}")]
    InvalidEndpoint {
        /// The argument.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--rename` argument that is not `TABLE=COLLECTION`, or names an invalid collection.
    #[error("invalid rename {spec:?}: {reason}")]
    InvalidRename {
        /// The argument.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Source and target are the same store.
    #[error("source and target are the same store ({path})")]
    SameStore {
        /// The location both name.
        path: PathBuf,
    },
    /// The source does not exist (opening it would create an empty store).
    #[error("source {path} does not exist")]
    SourceMissing {
        /// The missing location.
        path: PathBuf,
    },
    /// A redb file written in a file format redb 4 cannot read.
    #[error(
        "redb file {path} uses file format v{version}, which redb 4 cannot read; open it once with \
         redb 2.6 and call `Database::upgrade()` (it converts the file to format v3 in place; \
         keep a copy), then migrate the upgraded file"
    )]
    RedbFormatTooOld {
        /// The file.
        path: PathBuf,
        /// Its format version.
        version: u8,
    },
    /// An error from redb while reading a plain redb file.
    #[error("redb file {path}: {operation}: {source}")]
    Redb {
        /// The file.
        path: PathBuf,
        /// What was being done (names the table where there is one).
        operation: String,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A table whose key or value type is user-defined or otherwise not a redb built-in type.
    #[error(
        "redb {kind} {table:?} has key type {key_type:?} and value type {value_type:?}: \
         {reason}; only redb's built-in types can be migrated (pass --skip-unknown to skip \
         such tables)"
    )]
    UnknownTypes {
        /// The table.
        table: String,
        /// `table` or `multimap table`.
        kind: &'static str,
        /// The stored key type name.
        key_type: String,
        /// The stored value type name.
        value_type: String,
        /// Why it is not supported.
        reason: String,
    },
    /// A redb table name that is not a valid collection name.
    #[error(
        "redb table {table:?} cannot become a collection: {source}; map it to a valid name with \
         --rename '{table}=NEW_NAME'"
    )]
    InvalidTableName {
        /// The table.
        table: String,
        /// Why the name is refused.
        #[source]
        source: CollectionNameError,
    },
    /// Two source tables would land in the same collection.
    #[error("tables {first:?} and {second:?} both map to collection {collection}")]
    DuplicateCollection {
        /// The collection.
        collection: CollectionName,
        /// One table.
        first: String,
        /// The other.
        second: String,
    },
    /// A stored key or value that does not decode as the table's type.
    #[error("table {table:?}, row {row}: the {part} does not decode as {type_name}: {reason}")]
    BadData {
        /// The table.
        table: String,
        /// 0-based row number in the table's order.
        row: u64,
        /// `key` or `value`.
        part: &'static str,
        /// The stored type.
        type_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A key that cannot be stored: empty after encoding (the engine refuses empty keys) or too
    /// long.
    #[error("table {table:?}, row {row}: key of type {type_name} {problem}")]
    UnstorableKey {
        /// The table.
        table: String,
        /// 0-based row number in the table's order.
        row: u64,
        /// The stored key type.
        type_name: String,
        /// What is wrong.
        problem: String,
    },
    /// The target already holds data this migration did not write.
    #[error(
        "target {target}: collection {collection} already holds data that this migration did not \
         write; migrate into an empty target"
    )]
    TargetNotEmpty {
        /// The target.
        target: String,
        /// The non-empty collection.
        collection: CollectionName,
    },
    /// The target records a migration from another source or in another mode.
    #[error(
        "target {target} holds a migration of {recorded}, not of {requested}; use a new target \
         (or delete this one) to migrate something else"
    )]
    DifferentMigration {
        /// The target.
        target: String,
        /// The recorded source and mode.
        recorded: String,
        /// The requested source and mode.
        requested: String,
    },
    /// The source is not what the interrupted run started copying.
    #[error(
        "source {source_label} changed since the interrupted run started ({detail}); a resumed copy \
         would mix two states. Migrate into a new target"
    )]
    SourceChanged {
        /// The source.
        source_label: String,
        /// What differs.
        detail: String,
    },
    /// `--verify-only` on a target no migration wrote.
    #[error("target {target} records no migration to verify")]
    NothingToVerify {
        /// The target.
        target: String,
    },
    /// A damaged or unreadable checkpoint record.
    #[error("migration checkpoint {key:?} in the target is damaged: {reason}")]
    Checkpoint {
        /// The record's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A transaction-layer error.
    #[error("{context}: {source}")]
    Engine {
        /// What was being done, naming the collection.
        context: String,
        /// The engine's error.
        #[source]
        source: TxnError,
    },
    /// A backend error.
    #[error("{context}: {source}")]
    Backend {
        /// What was being done, naming the collection.
        context: String,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// Opening a store named by an endpoint failed.
    #[error("cannot open {endpoint}: {source}")]
    Open {
        /// The endpoint.
        endpoint: String,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// A file-system error.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The run stopped at a test hook (`MigrateOptions::stop_after_batches`).
    #[error("stopped after {batches} batches, as requested")]
    Stopped {
        /// Batches committed in this run.
        batches: u64,
    },
    /// A worker thread or task failed.
    #[error("migration worker failed: {0}")]
    Worker(String),
}

impl MigrateError {
    pub(crate) fn engine(context: impl Into<String>) -> impl FnOnce(TxnError) -> Self {
        let context = context.into();
        move |source| Self::Engine { context, source }
    }

    pub(crate) fn backend(context: impl Into<String>) -> impl FnOnce(BackendError) -> Self {
        let context = context.into();
        move |source| Self::Backend { context, source }
    }

    pub(crate) fn redb<E: Into<redb::Error>>(
        path: &std::path::Path,
        operation: impl Into<String>,
    ) -> impl FnOnce(E) -> Self {
        let path = path.to_path_buf();
        let operation = operation.into();
        move |source| Self::Redb {
            path,
            operation,
            source: Box::new(source.into()),
        }
    }
}
