//! fjall collects MVCC garbage in its own compactions (contract clause C16): after the engine
//! advances the GC watermark, a compaction drops superseded versions — and never one a live
//! snapshot can read.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use zcore_backends::{FjallBackend, FjallOptions};
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, StorageBackend, WriteOptions,
};

const KEYS: u32 = 200;
const ROUNDS: u32 = 10;

fn value(key: u32, round: u32) -> Vec<u8> {
    format!("{key}@{round}").into_bytes()
}

#[test]
fn compaction_drops_superseded_versions_and_keeps_visible_ones() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let fjall = Arc::new(
            FjallBackend::open(
                dir.path().join("db"),
                &FjallOptions {
                    worker_threads: Some(1),
                    ..FjallOptions::default()
                },
            )
            .unwrap(),
        );
        let backend: Arc<dyn StorageBackend> = fjall.clone();
        let engine = Engine::open(
            backend,
            EngineOptions {
                gc_interval: None,
                ..EngineOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(
            engine.backend_collects_garbage(),
            "fjall takes the compaction GC"
        );
        let c = CollectionName::new("hot").unwrap();
        engine.create_collection(&c).await.unwrap();
        let mut held = None;
        for round in 0..ROUNDS {
            let mut tx = engine.begin_write_with(WriteOptions {
                durability: Durability::Buffered,
                ..WriteOptions::default()
            });
            for k in 0..KEYS {
                if round == ROUNDS - 1 && k % 10 == 0 {
                    tx.delete(&c, k.to_be_bytes().to_vec()).unwrap();
                } else {
                    tx.put(&c, k.to_be_bytes().to_vec(), value(k, round))
                        .unwrap();
                }
            }
            tx.commit().await.unwrap();
            if round == 4 {
                held = Some(engine.begin_read());
            }
        }
        let before = engine.version_counts(&c).await.unwrap();
        assert_eq!(before.versions, u64::from(KEYS * ROUNDS));

        // The snapshot at round 4 holds the watermark: rounds 0..=3 may go, 4..=9 must stay.
        let held = held.unwrap();
        let watermark = engine.advance_gc_watermark().await.unwrap();
        assert_eq!(watermark, held.version());
        fjall.major_compact().unwrap();
        let middle = engine.version_counts(&c).await.unwrap();
        assert_eq!(
            middle.versions,
            u64::from(KEYS * (ROUNDS - 4)),
            "{before:?} -> {middle:?}"
        );
        for k in 0..KEYS {
            assert_eq!(
                held.get(&c, &k.to_be_bytes()).await.unwrap(),
                Some(value(k, 4)),
                "snapshot key {k}"
            );
        }
        drop(held);

        // Nothing holds old versions now: one version per key remains (deletion markers stay;
        // the explicit sweep removes those).
        engine.advance_gc_watermark().await.unwrap();
        fjall.major_compact().unwrap();
        let after = engine.version_counts(&c).await.unwrap();
        assert_eq!(after.versions, u64::from(KEYS), "{after:?}");
        assert_eq!(after.tombstones, u64::from(KEYS / 10));
        let r = engine.begin_read();
        for k in 0..KEYS {
            let want = (k % 10 != 0).then(|| value(k, ROUNDS - 1));
            assert_eq!(r.get(&c, &k.to_be_bytes()).await.unwrap(), want, "key {k}");
        }
        drop(r);
        let swept = engine.collect_garbage().await.unwrap();
        assert_eq!(swept.tombstones_removed, u64::from(KEYS / 10));
        assert_eq!(
            engine.version_counts(&c).await.unwrap().versions,
            u64::from(KEYS - KEYS / 10)
        );
        engine.close().await.unwrap();
    });
}
