//! Errors of dump and load.

use std::fmt;

use crate::mvcc::TxnError;

/// Where in a dump file a problem is: line (JSON lines, 1-based) and byte offset of the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Line number (JSON lines only).
    pub line: Option<u64>,
    /// Byte offset of the start of the record (or of the end of what was read).
    pub offset: u64,
}

impl Location {
    pub(crate) fn start() -> Self {
        Self {
            line: None,
            offset: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line} (byte offset {})", self.offset),
            None => write!(f, "byte offset {}", self.offset),
        }
    }
}

/// A dump or load that failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The dump file does not follow the format.
    #[error("malformed dump at {location}: {detail}")]
    Malformed {
        /// Where.
        location: Location,
        /// What.
        detail: String,
    },
    /// The dump file ends too early.
    #[error("truncated dump at {location}: {detail}")]
    Truncated {
        /// Where.
        location: Location,
        /// What.
        detail: String,
    },
    /// A record too large to encode.
    #[error("cannot encode the dump: {detail}")]
    TooLarge {
        /// What.
        detail: String,
    },
    /// Reading or writing the dump.
    #[error("cannot {op}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The engine failed (reading the source, writing the target).
    #[error("{op}{}: {source}", .collection.as_ref().map(|c| format!(" (collection {c:?})")).unwrap_or_default())]
    Engine {
        /// The operation.
        op: &'static str,
        /// The collection, if one.
        collection: Option<String>,
        /// The error.
        #[source]
        source: Box<TxnError>,
    },
    /// A collection named for dumping does not exist.
    #[error("collection {0:?} does not exist")]
    CollectionNotFound(String),
    /// Load refused: a target collection already holds data and overwrite was not asked for.
    #[error(
        "collection {collection:?} in the target store is not empty; load refuses to merge (use --overwrite to replace its contents)"
    )]
    NotEmpty {
        /// The collection.
        collection: String,
    },
    /// A load that failed after committing some batches.
    #[error(
        "load stopped after committing {committed_rows} rows in {committed_batches} batches (each batch is one transaction; the failed batch wrote nothing): {source}"
    )]
    PartiallyLoaded {
        /// Rows committed before the failure.
        committed_rows: u64,
        /// Batches committed before the failure.
        committed_batches: u64,
        /// What failed.
        #[source]
        source: Box<DumpError>,
    },
}

impl DumpError {
    pub(crate) fn malformed(location: Location, detail: impl Into<String>) -> Self {
        Self::Malformed {
            location,
            detail: detail.into(),
        }
    }

    pub(crate) fn truncated(location: Location, detail: impl Into<String>) -> Self {
        Self::Truncated {
            location,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(op: &'static str, source: std::io::Error) -> Self {
        Self::Io { op, source }
    }

    pub(crate) fn engine(op: &'static str, collection: Option<&str>, source: TxnError) -> Self {
        Self::Engine {
            op,
            collection: collection.map(str::to_owned),
            source: Box::new(source),
        }
    }

    pub(crate) fn json_encode(e: serde_json::Error) -> Self {
        Self::TooLarge {
            detail: format!("JSON encoding failed: {e}"),
        }
    }

    pub(crate) fn postcard_encode(e: postcard::Error) -> Self {
        Self::TooLarge {
            detail: format!("postcard encoding failed: {e}"),
        }
    }

    /// Whether the dump file itself is at fault (malformed or truncated), possibly after a
    /// partial load.
    #[must_use]
    pub fn is_bad_input(&self) -> bool {
        match self {
            Self::Malformed { .. } | Self::Truncated { .. } => true,
            Self::PartiallyLoaded { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }
}
