//! `--from` / `--to` arguments: `fjall:<dir>`, `redb:<file>`, `memory:`, `redb-file:<file>`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use zcore_backends::{BackendConfig, BackendName, FjallOptions, MemoryOptions, RedbOptions};
use zcore_engine::StorageBackend;

use super::error::MigrateError;
use super::{Source, Target};

/// A parsed `--from` / `--to` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A zcore store: `fjall:<dir>`, `redb:<file>` or `memory:` (empty on every open: for
    /// tests).
    Store {
        /// Which backend.
        backend: BackendName,
        /// Its location (`None` for memory).
        path: Option<PathBuf>,
    },
    /// A plain redb file written by another program: `redb-file:<file>` (source only).
    RedbFile(PathBuf),
}

impl FromStr for Endpoint {
    type Err = MigrateError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| MigrateError::InvalidEndpoint {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let Some((kind, path)) = spec.split_once(':') else {
            return Err(fail(
                "expected <backend>:<path> with backend fjall, redb, memory or redb-file",
            ));
        };
        let path = (!path.is_empty()).then(|| PathBuf::from(path));
        match kind {
            "redb-file" => path
                .map(Self::RedbFile)
                .ok_or_else(|| fail("redb-file needs a path")),
            "memory" => Ok(Self::Store {
                backend: BackendName::Memory,
                path: None,
            }),
            _ => {
                let backend: BackendName = kind.parse().map_err(|_| {
                    fail("unknown backend; expected fjall, redb, memory or redb-file")
                })?;
                let path = path.ok_or_else(|| fail("a path is required"))?;
                Ok(Self::Store {
                    backend,
                    path: Some(path),
                })
            }
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Endpoint {
    /// How the endpoint is named in reports and the checkpoint.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Store { backend, path } => match path {
                Some(p) => format!("{backend}:{}", canonical(p).display()),
                None => format!("{backend}:"),
            },
            Self::RedbFile(p) => format!("redb-file:{}", canonical(p).display()),
        }
    }

    /// The location on disk, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Store { path, .. } => path.as_deref(),
            Self::RedbFile(p) => Some(p),
        }
    }

    fn open_store(
        &self,
        backend: BackendName,
        path: Option<&Path>,
    ) -> Result<Arc<dyn StorageBackend>, MigrateError> {
        let config = match (backend, path) {
            (BackendName::Fjall, Some(path)) => BackendConfig::Fjall {
                path: path.to_path_buf(),
                fjall: FjallOptions::default(),
            },
            (BackendName::Redb, Some(path)) => BackendConfig::Redb {
                path: path.to_path_buf(),
                redb: RedbOptions::default(),
            },
            _ => BackendConfig::Memory {
                memory: MemoryOptions::default(),
            },
        };
        zcore_backends::open_backend(&config).map_err(|source| MigrateError::Open {
            endpoint: self.label(),
            source,
        })
    }

    /// Opens the endpoint as a source. A store must exist (opening a missing one would create
    /// it empty).
    ///
    /// # Errors
    ///
    /// [`MigrateError::SourceMissing`], [`MigrateError::Open`].
    pub fn open_source(&self) -> Result<Source, MigrateError> {
        match self {
            Self::RedbFile(path) => {
                if !path.is_file() {
                    return Err(MigrateError::SourceMissing { path: path.clone() });
                }
                Ok(Source::RedbFile { path: path.clone() })
            }
            Self::Store { backend, path } => {
                if let Some(p) = path
                    && !p.exists()
                {
                    return Err(MigrateError::SourceMissing { path: p.clone() });
                }
                Ok(Source::Store {
                    backend: self.open_store(*backend, path.as_deref())?,
                    label: self.label(),
                })
            }
        }
    }

    /// Opens the endpoint as a target, creating the store if it does not exist.
    ///
    /// A new store is created next to its final location and renamed into place once it is
    /// complete (then the directory is synced), so a process killed during creation never
    /// leaves a half-created store behind: fjall 3.1.13 refuses to open a directory whose
    /// creation was interrupted (its journal file exists, its version marker does not) with
    /// `AlreadyExists`, forever.
    ///
    /// # Errors
    ///
    /// [`MigrateError::InvalidEndpoint`] for `redb-file:`, [`MigrateError::Open`],
    /// [`MigrateError::Io`].
    pub async fn open_target(&self) -> Result<Target, MigrateError> {
        let (backend, path) = match self {
            Self::RedbFile(_) => {
                return Err(MigrateError::InvalidEndpoint {
                    spec: self.label(),
                    reason: "redb-file: is a source only; write to redb:<file> (a zcore store)"
                        .into(),
                });
            }
            Self::Store { backend, path } => (*backend, path.as_deref()),
        };
        if let Some(path) = path
            && !path.exists()
        {
            self.create(backend, path).await?;
        }
        Ok(Target {
            backend: self.open_store(backend, path)?,
            label: self.label(),
        })
    }

    async fn create(&self, backend: BackendName, path: &Path) -> Result<(), MigrateError> {
        let io = |context: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| MigrateError::Io {
                context,
                path,
                source,
            }
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io("create directory", &parent))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".to_owned());
        let scratch = parent.join(format!(".{name}.zcore-creating"));
        // Only this function creates it, and it never holds data: a leftover is an earlier
        // creation that was interrupted.
        if scratch.is_dir() {
            std::fs::remove_dir_all(&scratch).map_err(io("remove", &scratch))?;
        } else if scratch.exists() {
            std::fs::remove_file(&scratch).map_err(io("remove", &scratch))?;
        }
        let store = self.open_store(backend, Some(&scratch))?;
        store.close().await.map_err(|source| MigrateError::Open {
            endpoint: self.label(),
            source,
        })?;
        drop(store);
        std::fs::rename(&scratch, path).map_err(io("rename into place", path))?;
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io("sync directory", &parent))
    }

    /// Whether `self` and `other` name the same location.
    #[must_use]
    pub fn same_location(&self, other: &Self) -> bool {
        match (self.path(), other.path()) {
            (Some(a), Some(b)) => canonical(a) == canonical(b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            "fjall:/a/b".parse::<Endpoint>().unwrap(),
            Endpoint::Store {
                backend: BackendName::Fjall,
                path: Some("/a/b".into())
            }
        );
        assert_eq!(
            "redb-file:x.redb".parse::<Endpoint>().unwrap(),
            Endpoint::RedbFile("x.redb".into())
        );
        assert!(matches!(
            "memory:".parse::<Endpoint>().unwrap(),
            Endpoint::Store {
                backend: BackendName::Memory,
                path: None
            }
        ));
        for bad in ["fjall", "fjall:", "rocks:/x", "redb-file:"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
