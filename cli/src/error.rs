//! Errors of the `zstore` binary and the exit codes they map to.

use std::fmt;
use std::process::ExitCode;

use zcore_backends::ConfigError;
use zcore_engine::{BackendError, CollectionNameError, TxnError};

/// What kind of failure ended the command; decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The store could not be opened, or an I/O or engine operation failed. Exit code 1.
    Runtime,
    /// Bad flags, bad configuration, or input the store refuses (invalid collection name,
    /// empty or oversized key or value, invalid hex, an `--at-version` outside the readable
    /// versions). Exit code 2, as for clap's usage errors.
    Usage,
    /// A missing key (`get`) or collection. Exit code 3.
    NotFound,
    /// stdout was closed by the reader (`zstore scan c | head`): stop quietly. Exit code 0.
    OutputClosed,
}

impl FailureKind {
    /// The process exit code.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::Runtime => ExitCode::from(1),
            Self::Usage => ExitCode::from(2),
            Self::NotFound => ExitCode::from(3),
            Self::OutputClosed => ExitCode::SUCCESS,
        }
    }
}

/// A failed command: its kind and the message printed to stderr.
#[derive(Debug)]
pub struct CliError {
    /// Decides the exit code.
    pub kind: FailureKind,
    /// Printed as `zstore: error: {message}` (or `zstore: not found: …`).
    pub message: String,
}

impl CliError {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Usage,
            message: message.into(),
        }
    }

    /// A not-found error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::NotFound,
            message: message.into(),
        }
    }

    /// A runtime error.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Runtime,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FailureKind::NotFound => write!(f, "zstore: not found: {}", self.message),
            _ => write!(f, "zstore: error: {}", self.message),
        }
    }
}

impl From<BackendError> for CliError {
    fn from(e: BackendError) -> Self {
        let kind = match &e {
            BackendError::CollectionNotFound { .. } => FailureKind::NotFound,
            e if e.is_invalid_input() => FailureKind::Usage,
            _ => FailureKind::Runtime,
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<TxnError> for CliError {
    fn from(e: TxnError) -> Self {
        match e {
            TxnError::Backend(e) => e.into(),
            TxnError::CollectionNotFound { .. } => Self::not_found(e.to_string()),
            TxnError::InvalidKey { .. } | TxnError::ValueTooLarge { .. } => {
                Self::usage(e.to_string())
            }
            TxnError::VersionNotCommitted { requested, latest } => Self::usage(format!(
                "--at-version {requested}: version {requested} has not been committed yet \
                 (the latest version is {latest})"
            )),
            TxnError::VersionNotRetained {
                requested,
                oldest_retained,
            } => Self::usage(format!(
                "--at-version {requested}: version {requested} is no longer retained; \
                 garbage collection removed what it needs (the oldest readable version is \
                 {oldest_retained})"
            )),
            // Conflict, Corrupted, DurabilityUnknown and anything newer: the engine's own
            // message says what happened.
            other => Self::runtime(other.to_string()),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        // toml's messages end with a newline; the caller adds its own.
        Self::usage(e.to_string().trim_end())
    }
}

impl From<CollectionNameError> for CliError {
    fn from(e: CollectionNameError) -> Self {
        Self::usage(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self {
                kind: FailureKind::OutputClosed,
                message: e.to_string(),
            }
        } else {
            Self::runtime(format!("cannot write output: {e}"))
        }
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        match e.io_error_kind() {
            Some(kind) => std::io::Error::from(kind).into(),
            None => Self::runtime(format!("cannot encode JSON output: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use zcore_engine::mvcc::UserKeyProblem;
    use zcore_engine::{CollectionName, KeyProblem};

    use super::*;

    fn collection() -> CollectionName {
        CollectionName::new("c").unwrap_or_else(|e| panic!("{e}"))
    }

    fn kind(e: TxnError) -> FailureKind {
        CliError::from(e).kind
    }

    #[test]
    fn txn_errors_map_to_the_documented_exit_codes() {
        let c = collection();
        let preview = zcore_engine::backend::KeyPreview::of(b"k");
        assert_eq!(
            kind(TxnError::CollectionNotFound {
                collection: c.clone()
            }),
            FailureKind::NotFound
        );
        assert_eq!(
            kind(TxnError::InvalidKey {
                collection: c.clone(),
                problem: UserKeyProblem::Empty,
            }),
            FailureKind::Usage
        );
        assert_eq!(
            kind(TxnError::ValueTooLarge {
                collection: c.clone(),
                key: preview.clone(),
                len: 10,
                max: 1,
            }),
            FailureKind::Usage
        );
        assert_eq!(
            kind(TxnError::VersionNotCommitted {
                requested: 9,
                latest: 3
            }),
            FailureKind::Usage
        );
        assert_eq!(
            kind(TxnError::VersionNotRetained {
                requested: 1,
                oldest_retained: 3
            }),
            FailureKind::Usage
        );
        let conflict = CliError::from(TxnError::Conflict {
            collection: c.clone(),
            key: preview.clone(),
            read_version: 1,
            conflicting_version: 2,
        });
        assert_eq!(conflict.kind, FailureKind::Runtime);
        assert!(
            conflict.message.contains("transaction conflict"),
            "{conflict}"
        );
        let corrupted = CliError::from(TxnError::Corrupted {
            collection: c.clone(),
            key: preview,
            version: 4,
            reason: "checksum mismatch".to_owned(),
        });
        assert_eq!(corrupted.kind, FailureKind::Runtime);
        assert!(
            corrupted.message.contains("checksum mismatch"),
            "{corrupted}"
        );
        // Backend errors keep their own mapping.
        assert_eq!(
            kind(TxnError::Backend(BackendError::CollectionNotFound {
                collection: c.clone()
            })),
            FailureKind::NotFound
        );
        assert_eq!(
            kind(TxnError::Backend(BackendError::InvalidKey {
                collection: c,
                problem: KeyProblem::Empty,
            })),
            FailureKind::Usage
        );
        assert_eq!(
            kind(TxnError::Task("boom".to_owned())),
            FailureKind::Runtime
        );
    }
}
