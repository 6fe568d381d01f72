//! The engine's metrics (`zcore_engine::metrics`) move when commits, conflicts, rollbacks, GC
//! sweeps and syncs happen: checked with the in-process `SnapshotRecorder` installed as the
//! thread's local recorder, on the memory backend and (for fsyncs) on fjall and redb.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_engine::metrics::{self as m, SnapshotRecorder};
use zcore_engine::{CollectionName, Engine, EngineOptions, StorageBackend, TxnError};

fn with_recorder<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) -> SnapshotRecorder {
    let recorder = SnapshotRecorder::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || rt.block_on(f()));
    recorder
}

async fn open(backend: Arc<dyn StorageBackend>) -> (Engine, CollectionName) {
    let engine = Engine::open(
        backend,
        EngineOptions {
            gc_interval: None,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    let c = CollectionName::new("accounts").unwrap();
    engine.create_collection(&c).await.unwrap();
    (engine, c)
}

#[test]
fn commit_conflict_rollback_and_gc_move_their_counters_on_memory() {
    let recorder = with_recorder(|| async {
        let (engine, c) = open(Arc::new(MemoryBackend::new())).await;
        // Three commits: 2 keys, 1 key, 1 key (overwrites "a").
        let mut tx = engine.begin_write();
        tx.put(&c, b"a".to_vec(), b"1".to_vec()).unwrap();
        tx.put(&c, b"b".to_vec(), b"2".to_vec()).unwrap();
        tx.commit().await.unwrap();
        for v in [b"3", b"4"] {
            let mut tx = engine.begin_write();
            tx.put(&c, b"a".to_vec(), v.to_vec()).unwrap();
            tx.commit().await.unwrap();
        }
        // A serializable conflict: both read "b", both write it; the second commit fails.
        let mut t1 = engine.begin_write();
        let mut t2 = engine.begin_write();
        t1.get(&c, b"b").await.unwrap();
        t2.get(&c, b"b").await.unwrap();
        t1.put(&c, b"b".to_vec(), b"x".to_vec()).unwrap();
        t2.put(&c, b"b".to_vec(), b"y".to_vec()).unwrap();
        t1.commit().await.unwrap();
        let err = t2.commit().await.unwrap_err();
        assert!(matches!(err, TxnError::Conflict { .. }), "{err}");
        // An explicit rollback with writes is an abort; one without writes is not.
        let mut tx = engine.begin_write();
        tx.put(&c, b"z".to_vec(), b"z".to_vec()).unwrap();
        tx.rollback();
        engine.begin_write().rollback();
        // GC: "a" has 3 versions, "b" 2; the sweep keeps the newest of each.
        let report = engine.collect_garbage().await.unwrap();
        assert_eq!(report.versions_removed, 3);
        engine.close().await.unwrap();
    });
    assert_eq!(recorder.counter(m::COMMITS, &[]), 4);
    assert_eq!(recorder.histogram_count(m::COMMIT_KEYS, &[]), 4);
    assert!(recorder.counter(m::COMMIT_BYTES_WRITTEN, &[]) > 0);
    assert_eq!(
        recorder.counter(m::CONFLICTS, &[(m::COLLECTION_LABEL, "accounts")]),
        1
    );
    assert_eq!(recorder.counter(m::ABORTS, &[]), 2, "conflict + rollback");
    assert_eq!(recorder.counter(m::GC_PASSES, &[]), 1);
    assert_eq!(recorder.counter(m::GC_VERSIONS_SCANNED, &[]), 5);
    assert_eq!(recorder.counter(m::GC_VERSIONS_REMOVED, &[]), 3);
    // The memory backend has no sync to count.
    assert_eq!(recorder.counter(m::FSYNCS, &[]), 0);
}

fn synced_commits_count_fsyncs(backend: impl FnOnce() -> Arc<dyn StorageBackend>) {
    let recorder = with_recorder(|| async {
        let (engine, c) = open(backend()).await;
        for i in 0u32..5 {
            let mut tx = engine.begin_write();
            tx.put(&c, i.to_be_bytes().to_vec(), b"v".to_vec()).unwrap();
            tx.commit().await.unwrap();
        }
        engine.close().await.unwrap();
    });
    let fsyncs = recorder.counter(m::FSYNCS, &[]);
    let requests = recorder.counter(m::SYNC_REQUESTS, &[]);
    // Five synced commits (plus the version lease) each ask for durability; sequential
    // commits cannot share a sync.
    assert!(requests >= 5, "requests {requests}");
    assert!(fsyncs >= 5 && fsyncs <= requests, "fsyncs {fsyncs}");
    assert_eq!(recorder.histogram_count(m::FSYNC_SECONDS, &[]), fsyncs);
    assert_eq!(recorder.histogram_count(m::GROUP_COMMIT_BATCH, &[]), fsyncs);
    assert_eq!(recorder.counter(m::COMMITS, &[]), 5);
}

#[test]
fn fjall_syncs_are_counted_and_timed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    synced_commits_count_fsyncs(|| {
        Arc::new(FjallBackend::open(&path, &FjallOptions::default()).unwrap())
    });
}

#[test]
fn redb_syncs_are_counted_and_timed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    synced_commits_count_fsyncs(|| {
        Arc::new(RedbBackend::open(&path, &RedbOptions::default()).unwrap())
    });
}
