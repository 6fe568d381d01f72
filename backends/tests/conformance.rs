//! The engine's `StorageBackend` conformance suite on every backend: each case becomes one
//! test per backend (`memory::…`, `fjall::…`, `redb::…`), on real files for fjall and redb.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use tempfile::TempDir;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_engine::testing::conformance::Harness;
use zcore_engine::{BackendError, StorageBackend};

struct MemoryHarness;

impl Harness for MemoryHarness {
    fn open(&self) -> Result<Arc<dyn StorageBackend>, BackendError> {
        Ok(Arc::new(MemoryBackend::new()))
    }
}

struct FjallHarness(TempDir);

impl FjallHarness {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("create temp dir"))
    }
}

impl Harness for FjallHarness {
    fn open(&self) -> Result<Arc<dyn StorageBackend>, BackendError> {
        let options = FjallOptions {
            cache_size_bytes: 8 * 1024 * 1024,
            worker_threads: Some(1),
            ..FjallOptions::default()
        };
        Ok(Arc::new(FjallBackend::open(
            self.0.path().join("store.fjall"),
            &options,
        )?))
    }
}

struct RedbHarness(TempDir);

impl RedbHarness {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("create temp dir"))
    }
}

impl Harness for RedbHarness {
    fn open(&self) -> Result<Arc<dyn StorageBackend>, BackendError> {
        let options = RedbOptions {
            cache_size_bytes: 8 * 1024 * 1024,
        };
        Ok(Arc::new(RedbBackend::open(
            self.0.path().join("store.redb"),
            &options,
        )?))
    }
}

mod memory {
    zcore_engine::backend_conformance_suite!(super::MemoryHarness);
}

mod fjall {
    zcore_engine::backend_conformance_suite!(super::FjallHarness::new());
}

mod redb {
    zcore_engine::backend_conformance_suite!(super::RedbHarness::new());
}

mod memory_mvcc {
    zcore_engine::mvcc_suite!(super::MemoryHarness);
}

mod fjall_mvcc {
    zcore_engine::mvcc_suite!(super::FjallHarness::new());
}

mod redb_mvcc {
    zcore_engine::mvcc_suite!(super::RedbHarness::new());
}
