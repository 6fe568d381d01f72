//! Group commit: concurrent synced commits share engine syncs (contract C10), on the real disk
//! backends. The counters come from the backend's stats.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use zcore_backends::{FjallBackend, FjallOptions, RedbBackend, RedbOptions};
use zcore_engine::{CollectionName, Engine, EngineOptions, StorageBackend};

fn counter(stats: &zcore_engine::BackendStats, name: &str) -> u64 {
    stats
        .details
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .expect("counter present")
}

async fn concurrent_synced_commits(backend: Arc<dyn StorageBackend>) -> (u64, u64) {
    let engine = Engine::open(
        backend,
        EngineOptions {
            gc_interval: None,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    let c = CollectionName::new("gc").unwrap();
    engine.create_collection(&c).await.unwrap();
    // The first commit also makes the oracle's version lease durable; keep it out of the count.
    let mut warm = engine.begin_write();
    warm.put(&c, b"warm-up".to_vec(), b"v".to_vec()).unwrap();
    warm.commit().await.unwrap();
    let before = engine.backend().stats().await.unwrap();
    let mut tasks = Vec::new();
    for t in 0u32..32 {
        let (e, c) = (engine.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0u32..8 {
                let mut tx = e.begin_write();
                tx.put(
                    &c,
                    [t.to_be_bytes(), i.to_be_bytes()].concat(),
                    b"v".to_vec(),
                )
                .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = engine.backend().stats().await.unwrap();
    let requests = counter(&after, "sync_requests") - counter(&before, "sync_requests");
    let syncs = counter(&after, "engine_syncs") - counter(&before, "engine_syncs");
    assert_eq!(
        engine
            .begin_read()
            .scan_prefix(&c, b"")
            .await
            .unwrap()
            .len(),
        257
    );
    engine.close().await.unwrap();
    (requests, syncs)
}

#[test]
fn concurrent_synced_commits_share_syncs() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backends: Vec<(&str, Arc<dyn StorageBackend>)> = vec![
        (
            "fjall",
            Arc::new(FjallBackend::open(dir.path().join("f"), &FjallOptions::default()).unwrap()),
        ),
        (
            "redb",
            Arc::new(
                RedbBackend::open(dir.path().join("r.redb"), &RedbOptions::default()).unwrap(),
            ),
        ),
    ];
    for (name, backend) in backends {
        let (requests, syncs) = rt.block_on(concurrent_synced_commits(backend));
        println!(
            "{name}: 256 synced commits from 32 tasks: {requests} durability requests, {syncs} engine syncs"
        );
        assert_eq!(requests, 256, "{name}");
        assert!(
            syncs < requests / 2,
            "{name}: {syncs} syncs for {requests} requests: no grouping"
        );
    }
}
