//! openraft's storage conformance suite against our log store and state machine, on every
//! backend. `Suite::test_all` makes its own tokio runtimes: plain `#[test]` functions only.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_cluster::{
    LogStore, MemorySnapshots, NodeId, SnapshotStorage, StateMachineStore, TypeConfig,
};
use zcore_engine::{EngineOptions, StorageBackend};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    /// The memory backend with snapshots kept in memory too (as in the simulator).
    MemorySnapshots,
    Redb,
    Fjall,
}

struct Builder(Kind);

fn err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageError::IO {
        source: openraft::StorageIOError::write(openraft::AnyError::error(e.to_string())),
    }
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().map_err(err)?;
        let backend: Arc<dyn StorageBackend> = match self.0 {
            Kind::Memory | Kind::MemorySnapshots => Arc::new(MemoryBackend::new()),
            Kind::Redb => Arc::new(
                RedbBackend::open(dir.path().join("store.redb"), &RedbOptions::default())
                    .map_err(err)?,
            ),
            Kind::Fjall => Arc::new(
                FjallBackend::open(dir.path().join("store.fjall"), &FjallOptions::default())
                    .map_err(err)?,
            ),
        };
        let log = LogStore::open(Arc::clone(&backend)).await.map_err(err)?;
        let options = EngineOptions {
            gc_interval: None,
            ..EngineOptions::default()
        };
        let snapshots: SnapshotStorage = match self.0 {
            Kind::MemorySnapshots => MemorySnapshots::new().into(),
            _ => dir.path().join("snapshots").into(),
        };
        let sm = StateMachineStore::open(backend, snapshots, options)
            .await
            .map_err(err)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_suite_memory() {
    if let Err(e) = Suite::test_all(Builder(Kind::Memory)) {
        panic!("openraft suite failed on memory: {e}");
    }
}

#[test]
fn openraft_suite_memory_snapshots() {
    if let Err(e) = Suite::test_all(Builder(Kind::MemorySnapshots)) {
        panic!("openraft suite failed on memory with in-memory snapshots: {e}");
    }
}

#[test]
fn openraft_suite_redb() {
    if let Err(e) = Suite::test_all(Builder(Kind::Redb)) {
        panic!("openraft suite failed on redb: {e}");
    }
}

#[test]
fn openraft_suite_fjall() {
    if let Err(e) = Suite::test_all(Builder(Kind::Fjall)) {
        panic!("openraft suite failed on fjall: {e}");
    }
}
