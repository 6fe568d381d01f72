//! Negative controls for the conformance suite: a backend with one planted bug must fail the
//! case that covers the clause it breaks. A suite that passes broken backends proves nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use async_trait::async_trait;
use zcore_backends::MemoryBackend;
use zcore_engine::testing::conformance::{self, Harness};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, CollectionName, Direction, Durability, ScanPage,
    ScanRequest, StorageBackend, WriteBatch,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// Reverse scans come back in forward order (C5).
    ReverseIsForward,
    /// An exclusive start bound is treated as inclusive (C5).
    ExclusiveStartIncluded,
    /// Pages never say where to resume (C6).
    NoResume,
    /// The last operation of every batch is lost (C7).
    DropsLastOp,
    /// Batches are applied one operation at a time (C7: a failing batch leaves a prefix).
    NotAtomic,
    /// `get` of an empty key answers `None` instead of refusing it (C13).
    AcceptsEmptyKeyOnGet,
    /// `close` leaves the backend usable (C12).
    CloseIsNoop,
}

struct Mutant {
    inner: MemoryBackend,
    bug: Bug,
}

#[async_trait]
impl StorageBackend for Mutant {
    fn kind(&self) -> BackendKind {
        BackendKind::Other("mutant")
    }
    fn is_persistent(&self) -> bool {
        false
    }
    async fn create_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        self.inner.create_collection(name).await
    }
    async fn open_collection(&self, name: &CollectionName) -> Result<(), BackendError> {
        self.inner.open_collection(name).await
    }
    async fn list_collections(&self) -> Result<Vec<CollectionName>, BackendError> {
        self.inner.list_collections().await
    }
    async fn drop_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        self.inner.drop_collection(name).await
    }
    async fn get(&self, c: &CollectionName, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        if self.bug == Bug::AcceptsEmptyKeyOnGet && key.is_empty() {
            return Ok(None);
        }
        self.inner.get(c, key).await
    }
    async fn scan(
        &self,
        c: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError> {
        let mut request = request.clone();
        let reversed = self.bug == Bug::ReverseIsForward && request.direction == Direction::Reverse;
        if reversed {
            request.direction = Direction::Forward;
        }
        if self.bug == Bug::ExclusiveStartIncluded
            && let std::ops::Bound::Excluded(k) = &request.range.start
        {
            request.range.start = std::ops::Bound::Included(k.clone());
        }
        let mut page = self.inner.scan(c, &request).await?;
        if self.bug == Bug::NoResume {
            page.resume = None;
        }
        Ok(page)
    }
    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError> {
        let mut ops = batch.into_ops();
        match self.bug {
            Bug::DropsLastOp => {
                ops.pop();
            }
            Bug::NotAtomic => {
                for op in ops {
                    let mut single = WriteBatch::new();
                    single.push(op);
                    self.inner.write(single, durability).await?;
                }
                return Ok(());
            }
            _ => {}
        }
        let mut batch = WriteBatch::new();
        ops.into_iter().for_each(|op| batch.push(op));
        self.inner.write(batch, durability).await
    }
    async fn sync(&self) -> Result<(), BackendError> {
        self.inner.sync().await
    }
    async fn stats(&self) -> Result<BackendStats, BackendError> {
        self.inner.stats().await
    }
    async fn close(&self) -> Result<(), BackendError> {
        if self.bug == Bug::CloseIsNoop {
            return Ok(());
        }
        self.inner.close().await
    }
}

struct MutantHarness(Bug);

impl Harness for MutantHarness {
    fn open(&self) -> Result<Arc<dyn StorageBackend>, BackendError> {
        Ok(Arc::new(Mutant {
            inner: MemoryBackend::new(),
            bug: self.0,
        }))
    }
}

/// Runs `case` against the mutant and reports whether the suite caught the bug.
fn caught<F, Fut>(bug: Bug, case: F) -> bool
where
    F: FnOnce(Arc<dyn Harness>) -> Fut,
    Fut: std::future::Future<Output = conformance::CaseResult>,
{
    catch_unwind(AssertUnwindSafe(|| {
        conformance::run(MutantHarness(bug), case)
    }))
    .is_err()
}

#[test]
fn the_suite_catches_every_planted_bug() {
    let results = [
        (
            Bug::ReverseIsForward,
            caught(Bug::ReverseIsForward, conformance::c5_order_is_bytewise),
        ),
        (
            Bug::ExclusiveStartIncluded,
            caught(
                Bug::ExclusiveStartIncluded,
                conformance::c5_bounds_of_every_kind,
            ),
        ),
        (
            Bug::NoResume,
            caught(Bug::NoResume, conformance::c6_pages_resume_exactly),
        ),
        (
            Bug::DropsLastOp,
            caught(
                Bug::DropsLastOp,
                conformance::c7_later_operation_in_a_batch_wins,
            ),
        ),
        (
            Bug::NotAtomic,
            caught(Bug::NotAtomic, conformance::c7_failed_batch_applies_nothing),
        ),
        (
            Bug::AcceptsEmptyKeyOnGet,
            caught(Bug::AcceptsEmptyKeyOnGet, conformance::c13_key_limits),
        ),
        (
            Bug::CloseIsNoop,
            caught(Bug::CloseIsNoop, conformance::c12_close_rejects_later_calls),
        ),
    ];
    let missed: Vec<Bug> = results
        .iter()
        .filter(|(_, c)| !c)
        .map(|(b, _)| *b)
        .collect();
    assert!(
        missed.is_empty(),
        "the conformance suite passed backends with these bugs: {missed:?}"
    );
}

#[test]
fn the_unmutated_wrapper_passes() {
    // Control for the control: the wrapper itself is not what fails. `CloseIsNoop` does not
    // touch ordering, so the ordering case must pass with it.
    assert!(!caught(Bug::CloseIsNoop, conformance::c5_order_is_bytewise));
}
