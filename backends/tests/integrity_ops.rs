//! `Engine::verify`, `Engine::inspect` and `Engine::compact` on every backend: counts match a
//! known workload, damage is located (collection, key, version), compaction removes garbage,
//! keeps data and refuses while a snapshot or a savepoint pins versions.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use tempfile::TempDir;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_engine::mvcc::keys::EncodedKey;
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, StorageBackend, TxnError, WriteBatch,
};

fn backends() -> Vec<(&'static str, Arc<dyn StorageBackend>, Option<TempDir>)> {
    let f = tempfile::tempdir().unwrap();
    let r = tempfile::tempdir().unwrap();
    vec![
        ("memory", Arc::new(MemoryBackend::new()), None),
        (
            "fjall",
            Arc::new(FjallBackend::open(f.path().join("s"), &FjallOptions::default()).unwrap()),
            Some(f),
        ),
        (
            "redb",
            Arc::new(RedbBackend::open(r.path().join("s.redb"), &RedbOptions::default()).unwrap()),
            Some(r),
        ),
    ]
}

fn options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    }
}

/// 10 keys written twice, 3 of them deleted, one sequence: 23 versions, 7 live keys.
async fn workload(engine: &Engine) -> CollectionName {
    let c = CollectionName::new("items").unwrap();
    engine.create_collection(&c).await.unwrap();
    for round in 0u8..2 {
        let mut tx = engine.begin_write();
        for i in 0u8..10 {
            tx.put(&c, vec![b'k', i], vec![round, i]).unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut tx = engine.begin_write();
    for i in 0u8..3 {
        tx.delete(&c, vec![b'k', i]).unwrap();
    }
    tx.commit().await.unwrap();
    engine.next_seq(b"orders").await.unwrap();
    c
}

#[tokio::test]
async fn inspect_and_verify_count_the_workload() {
    for (name, backend, _dir) in backends() {
        let engine = Engine::open(backend, options()).await.unwrap();
        let c = workload(&engine).await;
        let report = engine.inspect().await.unwrap();
        let items = &report.collections[0];
        assert_eq!(items.name, "items", "{name}");
        assert_eq!(
            (
                items.live_keys,
                items.keys,
                items.versions,
                items.tombstones
            ),
            (7, 10, 23, 3),
            "{name}: {items:?}"
        );
        assert!(items.stored_bytes > 0);
        assert_eq!(report.latest_version, 3, "{name}");
        assert_eq!(report.sequences.len(), 1, "{name}");
        assert_eq!(report.sequences[0].name, "orders");
        assert!(report.sequences[0].leased_through >= 1);
        assert_eq!(report.persistent, name != "memory");
        assert!(
            report.system_collections.iter().any(|s| s.name == "__meta"),
            "{name}"
        );

        let check = engine.verify(10).await.unwrap();
        assert!(check.is_clean(), "{name}: {check:?}");
        let items = check
            .collections
            .iter()
            .find(|x| x.name == "items")
            .unwrap();
        assert_eq!(
            (items.entries, items.keys, items.tombstones, items.live_keys),
            (23, 10, 3, 7),
            "{name}"
        );
        assert_eq!(check.sequences, 1, "{name}");
        assert_eq!(check.backend_check.is_some(), name == "redb", "{name}");

        // Damage: a flipped value byte, a value moved onto another version, a version above
        // the lease, a sequence record of the wrong shape.
        let key3 = EncodedKey::encode(b"k\x03");
        let good = engine
            .backend()
            .get(&c, key3.at(1).as_bytes())
            .await
            .unwrap()
            .unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        let mut batch = WriteBatch::new();
        batch.put(&c, key3.at(1).into_bytes(), flipped);
        batch.put(
            &c,
            EncodedKey::encode(b"k\x04").at(1).into_bytes(),
            good.clone(),
        );
        batch.put(&c, EncodedKey::encode(b"zz").at(1 << 40).into_bytes(), good);
        let meta = CollectionName::system("__meta").unwrap();
        batch.put(&meta, b"seq.broken".to_vec(), b"junk".to_vec());
        engine
            .backend()
            .write(batch, Durability::Synced)
            .await
            .unwrap();
        let check = engine.verify(10).await.unwrap();
        assert!(!check.is_clean());
        // The moved-up copy fails twice: version above the lease, and its checksum.
        assert_eq!(check.problems_total, 5, "{name}: {:#?}", check.problems);
        let located = check
            .problems
            .iter()
            .find(|p| p.key == "6b03" && p.version == Some(1))
            .unwrap_or_else(|| panic!("{name}: the flipped version is not located: {check:?}"));
        assert_eq!(located.collection, "items");
        assert!(!located.key_is_stored);
        assert!(located.what.contains("checksum"), "{located:?}");
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.version == Some(1 << 40) && p.what.contains("above")),
            "{name}"
        );
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.collection == "__meta" && p.key == hex(b"seq.broken")),
            "{name}"
        );
        // Reads refuse the damaged versions instead of returning them.
        let r = engine.begin_read_at(1).unwrap();
        assert!(matches!(
            r.get(&c, b"k\x03").await,
            Err(TxnError::Corrupted { .. })
        ));
        assert!(matches!(
            r.get(&c, b"k\x04").await,
            Err(TxnError::Corrupted { .. })
        ));
        drop(r);
        // A list capped at 1 still counts everything.
        let capped = engine.verify(1).await.unwrap();
        assert_eq!((capped.problems.len(), capped.problems_total), (1, 5));
        engine.close().await.unwrap();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn compact_removes_garbage_keeps_data_and_refuses_while_pinned() {
    for (name, backend, _dir) in backends() {
        let engine = Engine::open(backend, options()).await.unwrap();
        let c = workload(&engine).await;

        // A live snapshot pins versions: refused, nothing removed.
        let snapshot = engine.begin_read();
        let refused = engine.compact().await.unwrap_err();
        assert!(
            matches!(refused, TxnError::Blocked { .. }),
            "{name}: {refused}"
        );
        assert!(
            refused.to_string().contains("compaction refused"),
            "{refused}"
        );
        drop(snapshot);
        // So does a write transaction holding a savepoint.
        let mut writer = engine.begin_write();
        writer.create_savepoint("sp");
        writer.put(&c, b"pending".to_vec(), b"x".to_vec()).unwrap();
        assert!(matches!(
            engine.compact().await,
            Err(TxnError::Blocked { .. })
        ));
        writer.rollback();
        assert_eq!(
            engine.inspect().await.unwrap().collections[0].versions,
            23,
            "{name}: a refused compaction removed versions"
        );

        let report = engine.compact().await.unwrap();
        assert_eq!(report.backend_compacted, name != "memory", "{name}");
        // Live keys lose their first-round version (7); deleted keys lose their deletion
        // marker (3) and both versions under it (6).
        assert_eq!(report.gc.versions_removed, 13, "{name}: {report:?}");
        assert_eq!(report.gc.tombstones_removed, 3, "{name}: {report:?}");
        let after = engine.inspect().await.unwrap();
        let items = &after.collections[0];
        assert_eq!(
            (
                items.live_keys,
                items.keys,
                items.versions,
                items.tombstones
            ),
            (7, 7, 7, 0),
            "{name}"
        );
        let r = engine.begin_read();
        for i in 3u8..10 {
            assert_eq!(
                r.get(&c, &[b'k', i]).await.unwrap(),
                Some(vec![1, i]),
                "{name}"
            );
        }
        drop(r);
        assert!(engine.verify(5).await.unwrap().is_clean(), "{name}");
        engine.close().await.unwrap();
    }
}
