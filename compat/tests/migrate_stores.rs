//! Migration between zcore stores: latest snapshot across every pair of backends, `--history`
//! (every retained version, time travel on the target), sequences carried over, resumption,
//! idempotence, and the refusals that keep a target from mixing data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_compat::migrate::{
    self, MigrateError, MigrateOptions, Mode, NoProgress, RunKind, Source, Target,
};
use zcore_engine::{
    CollectionName, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend, Version,
};

type Rows = Vec<(Vec<u8>, Vec<u8>)>;
type State = BTreeMap<String, Rows>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(kind: &str, dir: &Path, name: &str) -> Arc<dyn StorageBackend> {
    match kind {
        "fjall" => Arc::new(
            FjallBackend::open(
                dir.join(name),
                &FjallOptions {
                    worker_threads: Some(1),
                    cache_size_bytes: 8 << 20,
                    ..FjallOptions::default()
                },
            )
            .unwrap(),
        ),
        "redb" => Arc::new(
            RedbBackend::open(
                dir.join(format!("{name}.redb")),
                &RedbOptions {
                    cache_size_bytes: 8 << 20,
                },
            )
            .unwrap(),
        ),
        _ => Arc::new(MemoryBackend::new()),
    }
}

fn options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    }
}

fn col(name: &str) -> CollectionName {
    CollectionName::new(name).unwrap()
}

fn key(i: u64) -> Vec<u8> {
    // 0x00 and 0xFF bytes, and keys that are prefixes of others.
    match i % 4 {
        0 => i.to_be_bytes().to_vec(),
        1 => vec![0, (i % 7) as u8],
        2 => vec![0xFF; (i % 5 + 1) as usize],
        _ => format!("k{}", i % 13).into_bytes(),
    }
}

/// Fills a source: three collections (one empty), overwrites and deletes over several
/// commits, and a sequence. Returns the state after every commit.
async fn fill(engine: &Engine, commits: u64) -> Vec<(Version, State)> {
    for c in ["alpha", "beta", "empty"] {
        engine.create_collection(&col(c)).await.unwrap();
    }
    for _ in 0..5 {
        engine.next_seq(b"orders").await.unwrap();
    }
    let mut states = Vec::new();
    for n in 0..commits {
        let mut tx = engine.begin_write();
        for i in 0..40 {
            let k = key(n * 31 + i);
            if (n + i) % 9 == 0 {
                tx.delete(&col("alpha"), k).unwrap();
            } else {
                tx.put(&col("alpha"), k, format!("v{n}.{i}").into_bytes())
                    .unwrap();
            }
        }
        tx.put(&col("beta"), key(n), vec![n as u8; (n % 300) as usize])
            .unwrap();
        let info = tx.commit().await.unwrap();
        states.push((info.version, state_at(engine, info.version).await));
    }
    states
}

async fn state_at(engine: &Engine, version: Version) -> State {
    let read = engine.begin_read_at(version).unwrap();
    let mut out = State::new();
    for c in engine.collections() {
        out.insert(c.to_string(), read.scan_prefix(&c, b"").await.unwrap());
    }
    out
}

async fn dump(backend: &Arc<dyn StorageBackend>) -> Vec<(String, Rows)> {
    let mut out = Vec::new();
    for c in backend.list_collections().await.unwrap() {
        let mut rows = Vec::new();
        let mut request = Some(ScanRequest::forward(KeyRange::all(), 1000));
        while let Some(req) = request.take() {
            let page = backend.scan(&c, &req).await.unwrap();
            request = req.next_page(&page);
            rows.extend(page.entries);
        }
        out.push((c.to_string(), rows));
    }
    out
}

fn store(backend: &Arc<dyn StorageBackend>, label: &str) -> Source {
    Source::Store {
        backend: Arc::clone(backend),
        label: label.to_owned(),
    }
}

fn target(backend: &Arc<dyn StorageBackend>, label: &str) -> Target {
    Target {
        backend: Arc::clone(backend),
        label: label.to_owned(),
    }
}

fn small_batches() -> MigrateOptions {
    MigrateOptions {
        batch_rows: 23,
        ..MigrateOptions::default()
    }
}

#[test]
fn latest_snapshot_between_every_pair_of_backends() {
    let rt = rt();
    for (from, to) in [
        ("fjall", "redb"),
        ("redb", "fjall"),
        ("memory", "memory"),
        ("fjall", "fjall"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let src = open(from, dir.path(), "src");
            let engine = Engine::open(Arc::clone(&src), options()).await.unwrap();
            let states = fill(&engine, 12).await;
            let expected = states.last().unwrap().1.clone();
            drop(engine);
            let dst = open(to, dir.path(), "dst");
            let report = migrate::migrate(
                &store(&src, "src"),
                &target(&dst, "dst"),
                &small_batches(),
                &NoProgress,
            )
            .await
            .unwrap();
            assert!(
                report.ok && report.verified,
                "{from}->{to}: {}",
                report.to_text()
            );
            assert_eq!(report.mode, Mode::Snapshot);
            assert_eq!(report.collections.len(), 3);
            let t = Engine::open(Arc::clone(&dst), options()).await.unwrap();
            let got = state_at(&t, t.latest_version()).await;
            assert_eq!(got, expected, "{from}->{to}");
            // Migrated rows are ordinary versions: GC keeps them, later commits land above.
            t.collect_garbage().await.unwrap();
            assert_eq!(state_at(&t, t.latest_version()).await, expected);
            let mut tx = t.begin_write();
            tx.put(&col("beta"), key(0), b"after".to_vec()).unwrap();
            let info = tx.commit().await.unwrap();
            assert_eq!(
                t.begin_read().get(&col("beta"), &key(0)).await.unwrap(),
                Some(b"after".to_vec())
            );
            let before_write = t.begin_read_at(info.version - 1).unwrap();
            assert_eq!(
                before_write.get(&col("beta"), &key(0)).await.unwrap(),
                expected["beta"]
                    .iter()
                    .find(|(k, _)| *k == key(0))
                    .map(|(_, v)| v.clone())
            );
            drop(before_write);
            let mut tx = t.begin_write();
            match expected["beta"].iter().find(|(k, _)| *k == key(0)) {
                Some((_, v)) => tx.put(&col("beta"), key(0), v.clone()).unwrap(),
                None => tx.delete(&col("beta"), key(0)).unwrap(),
            }
            tx.commit().await.unwrap();
            // Sequences continue above every value the source handed out.
            assert!(t.next_seq(b"orders").await.unwrap() > 5);
            drop(t);
            // A rerun writes nothing.
            let before = dump(&dst).await;
            let again = migrate::migrate(
                &store(&src, "src"),
                &target(&dst, "dst"),
                &small_batches(),
                &NoProgress,
            )
            .await
            .unwrap();
            assert_eq!(again.run, RunKind::AlreadyComplete);
            assert!(again.ok);
            assert!(
                dump(&dst).await == before,
                "{from}->{to}: rerun changed the target"
            );
            src.close().await.unwrap();
            dst.close().await.unwrap();
        });
    }
}

#[test]
fn history_keeps_every_retained_version() {
    let rt = rt();
    for (from, to) in [("fjall", "redb"), ("redb", "fjall")] {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let src = open(from, dir.path(), "src");
            let engine = Engine::open(
                Arc::clone(&src),
                EngineOptions {
                    retain_versions: 6,
                    ..options()
                },
            )
            .await
            .unwrap();
            let states = fill(&engine, 15).await;
            let gc = engine.collect_garbage().await.unwrap();
            assert!(gc.versions_removed > 0);
            let floor = engine.stats().await.unwrap().oldest_readable_version;
            let source_latest = engine.latest_version();
            drop(engine);
            let dst = open(to, dir.path(), "dst");
            let opts = MigrateOptions {
                history: true,
                ..small_batches()
            };
            let report = migrate::migrate(
                &store(&src, "src"),
                &target(&dst, "dst"),
                &opts,
                &NoProgress,
            )
            .await
            .unwrap();
            assert!(report.ok, "{}", report.to_text());
            assert_eq!(report.mode, Mode::History);
            let t = Engine::open(Arc::clone(&dst), options()).await.unwrap();
            assert!(t.latest_version() >= source_latest);
            assert_eq!(t.stats().await.unwrap().oldest_readable_version, floor);
            let mut checked = 0;
            for (version, expected) in states.iter().filter(|(v, _)| *v >= floor) {
                assert_eq!(&state_at(&t, *version).await, expected, "version {version}");
                checked += 1;
            }
            assert!(checked >= 6);
            assert!(
                t.begin_read_at(floor - 1).is_err(),
                "below the floor stays unreadable"
            );
            // The target's next commit lands above every copied version and is visible.
            let mut tx = t.begin_write();
            tx.put(&col("alpha"), b"new".to_vec(), b"x".to_vec())
                .unwrap();
            let info = tx.commit().await.unwrap();
            assert!(info.version > source_latest);
            assert_eq!(
                t.begin_read().get(&col("alpha"), b"new").await.unwrap(),
                Some(b"x".to_vec())
            );
            assert!(t.next_seq(b"orders").await.unwrap() > 5);
            drop(t);
            src.close().await.unwrap();
            dst.close().await.unwrap();
        });
    }
}

#[test]
fn stopped_runs_resume_in_both_modes() {
    let rt = rt();
    for history in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let src = open("fjall", dir.path(), "src");
            let engine = Engine::open(Arc::clone(&src), options()).await.unwrap();
            fill(&engine, 10).await;
            drop(engine);
            let reference = open("memory", dir.path(), "");
            let opts = MigrateOptions {
                history,
                batch_rows: 7,
                ..MigrateOptions::default()
            };
            migrate::migrate(
                &store(&src, "src"),
                &target(&reference, "ref"),
                &opts,
                &NoProgress,
            )
            .await
            .unwrap();
            let dst = open("redb", dir.path(), "dst");
            let mut runs = 0;
            loop {
                runs += 1;
                let stopping = MigrateOptions {
                    stop_after_batches: Some(3),
                    ..opts.clone()
                };
                match migrate::migrate(
                    &store(&src, "src"),
                    &target(&dst, "dst"),
                    &stopping,
                    &NoProgress,
                )
                .await
                {
                    Err(MigrateError::Stopped { .. }) => continue,
                    Ok(r) => {
                        assert!(r.ok && r.resumed, "{}", r.to_text());
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(runs > 3);
            let user = |d: Vec<(String, Rows)>| -> Vec<(String, Rows)> {
                d.into_iter()
                    .filter(|(c, _)| !c.starts_with("__"))
                    .collect()
            };
            if history {
                // Verbatim copies: identical backend entries.
                assert!(user(dump(&dst).await) == user(dump(&reference).await));
            } else {
                let a = Engine::open(Arc::clone(&dst), options()).await.unwrap();
                let b = Engine::open(Arc::clone(&reference), options())
                    .await
                    .unwrap();
                assert_eq!(
                    state_at(&a, a.latest_version()).await,
                    state_at(&b, b.latest_version()).await
                );
            }
            dst.close().await.unwrap();
            src.close().await.unwrap();
        });
    }
}

#[test]
fn targets_are_never_mixed() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let a = open("memory", dir.path(), "");
        let engine = Engine::open(Arc::clone(&a), options()).await.unwrap();
        fill(&engine, 3).await;
        drop(engine);
        let b = open("memory", dir.path(), "");
        let engine = Engine::open(Arc::clone(&b), options()).await.unwrap();
        engine.create_collection(&col("other")).await.unwrap();
        let mut tx = engine.begin_write();
        tx.put(&col("other"), b"k".to_vec(), b"v".to_vec()).unwrap();
        tx.commit().await.unwrap();
        drop(engine);

        // A target holding data in a collection the run would write is refused.
        let busy = open("memory", dir.path(), "");
        let engine = Engine::open(Arc::clone(&busy), options()).await.unwrap();
        engine.create_collection(&col("beta")).await.unwrap();
        let mut tx = engine.begin_write();
        tx.put(&col("beta"), b"k".to_vec(), b"v".to_vec()).unwrap();
        tx.commit().await.unwrap();
        drop(engine);
        let err = migrate::migrate(
            &store(&a, "a"),
            &target(&busy, "busy"),
            &small_batches(),
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, MigrateError::TargetNotEmpty { .. }), "{err}");
        // History copies need a target without user data at all.
        let err = migrate::migrate(
            &store(&b, "b"),
            &target(&busy, "busy"),
            &MigrateOptions {
                history: true,
                ..small_batches()
            },
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, MigrateError::TargetNotEmpty { .. }), "{err}");

        // A target written from one source refuses another.
        let t = open("memory", dir.path(), "");
        migrate::migrate(
            &store(&a, "a"),
            &target(&t, "t"),
            &small_batches(),
            &NoProgress,
        )
        .await
        .unwrap();
        let err = migrate::migrate(
            &store(&b, "b"),
            &target(&t, "t"),
            &small_batches(),
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, MigrateError::DifferentMigration { .. }),
            "{err}"
        );
        // Same store on both sides.
        let err = migrate::migrate(
            &store(&a, "a"),
            &target(&a, "a"),
            &small_batches(),
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, MigrateError::SameStore { .. }), "{err}");
    });
}

#[test]
fn a_source_changed_under_an_interrupted_run_fails_verification() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let src = open("memory", dir.path(), "");
        let engine = Engine::open(Arc::clone(&src), options()).await.unwrap();
        fill(&engine, 6).await;
        let dst = open("memory", dir.path(), "");
        let stopping = MigrateOptions {
            stop_after_batches: Some(2),
            ..small_batches()
        };
        let err = migrate::migrate(
            &store(&src, "src"),
            &target(&dst, "dst"),
            &stopping,
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, MigrateError::Stopped { .. }));
        // Rows already copied change in the source (within its current version lease, so the
        // fingerprint cannot see it); verification must.
        let mut tx = engine.begin_write();
        let first = engine
            .begin_read()
            .scan_prefix(&col("alpha"), b"")
            .await
            .unwrap()[0]
            .0
            .clone();
        tx.put(&col("alpha"), first, b"changed".to_vec()).unwrap();
        tx.commit().await.unwrap();
        let report = migrate::migrate(
            &store(&src, "src"),
            &target(&dst, "dst"),
            &small_batches(),
            &NoProgress,
        )
        .await;
        match report {
            Ok(r) => assert!(!r.ok, "{}", r.to_text()),
            Err(e) => assert!(matches!(e, MigrateError::SourceChanged { .. }), "{e}"),
        }
    });
}
