//! Backup, restore and point-in-time recovery on real fjall and redb files (and memory):
//! every backend pair, backups under concurrent writers, incremental chains against a model
//! of history, refusals, path safety and the golden fixtures of format 1.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod backup_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backup_common::{
    COLLECTIONS, Counting, KINDS, Rng, State, copy_dir, create_collections, is_empty, open,
    open_engine, options, retaining, runtime, state_at, workload,
};
use proptest::prelude::*;
use zcore_engine::backup::{
    self, BackupKind, BackupOptions, Check, Compression, Manifest, RestoreOptions,
};
use zcore_engine::{CollectionName, Durability, Engine, Version, WriteOptions};

fn fixed_clock() -> Option<SystemTime> {
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000))
}

/// Restores `dir` into a fresh `kind` backend under `root/name`, opens an engine on it.
async fn restore_into(
    kind: &str,
    root: &Path,
    name: &str,
    dir: &Path,
    as_of: Option<Version>,
) -> (Engine, backup::RestoreReport) {
    let place = root.join(name);
    std::fs::create_dir_all(&place).unwrap();
    let target = open(kind, &place);
    let report = backup::restore(dir, Arc::clone(&target), as_of)
        .await
        .unwrap();
    (open_engine(target).await, report)
}

#[test]
fn round_trip_every_backend_pair() {
    runtime().block_on(async {
        for src in KINDS {
            let tmp = tempfile::tempdir().unwrap();
            let engine = Engine::open(open(src, tmp.path()), retaining())
                .await
                .unwrap();
            create_collections(&engine).await;
            let mut rng = Rng(0x5eed ^ src.len() as u64);
            workload(&engine, &mut rng, 150, 200).await;
            let mid = engine.stats().await.unwrap().latest_version;
            workload(&engine, &mut rng, 150, 200).await;
            let s1 = engine.next_seq(b"orders").await.unwrap();
            let head = engine.stats().await.unwrap().latest_version;

            let full = tmp.path().join("full");
            let meta = engine
                .create_backup(&full, &BackupOptions::default())
                .await
                .unwrap();
            assert_eq!(meta.version, head);
            assert_eq!(meta.kind, BackupKind::Full { history: false });
            assert_eq!(meta.source_backend, src);
            assert_eq!(meta.collections.len(), COLLECTIONS.len());
            let hist = tmp.path().join("hist");
            let hmeta = engine
                .create_backup(
                    &hist,
                    &BackupOptions {
                        include_history: true,
                        compress: false,
                        chunk_bytes: 8 << 10,
                        ..BackupOptions::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(hmeta.kind, BackupKind::Full { history: true });
            assert_eq!(hmeta.base_version, 0, "nothing was collected yet");
            assert!(hmeta.chunks.len() > 2, "several chunks");
            assert!(
                hmeta
                    .chunks
                    .iter()
                    .all(|c| c.compression == Compression::None)
            );
            let expected_head = state_at(&engine, head).await;
            let expected_mid = state_at(&engine, mid).await;
            // A time-travel export: a full backup of the retained version `mid`.
            let past = tmp.path().join("past");
            let pmeta = engine
                .create_backup(
                    &past,
                    &BackupOptions {
                        at_version: Some(mid),
                        ..BackupOptions::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(pmeta.version, mid);
            let (restored, _) = restore_into("memory", tmp.path(), "past-r", &past, None).await;
            assert_eq!(
                state_at(&restored, mid).await,
                expected_mid,
                "export at {mid}"
            );
            restored.close().await.unwrap();
            let report = backup::verify(&hist).await.unwrap();
            assert_eq!((report.restorable_from, report.restorable_to), (0, head));

            for dst in KINDS {
                let (restored, report) =
                    restore_into(dst, tmp.path(), &format!("to-{dst}"), &full, None).await;
                assert_eq!(report.as_of, head);
                assert_eq!(
                    state_at(&restored, head).await,
                    expected_head,
                    "{src}->{dst}"
                );
                assert_eq!(restored.stats().await.unwrap().latest_version, head);
                assert!(
                    restored.begin_read_at(mid).is_err(),
                    "a backup without history restores only its head"
                );
                assert!(restored.next_seq(b"orders").await.unwrap() > s1);
                let mut tx = restored.begin_write();
                tx.put(&CollectionName::new("users").unwrap(), b"new", b"v")
                    .unwrap();
                assert!(tx.commit().await.unwrap().version > head);
                restored.close().await.unwrap();

                let (restored, _) =
                    restore_into(dst, tmp.path(), &format!("hist-{dst}"), &hist, None).await;
                assert_eq!(
                    state_at(&restored, head).await,
                    expected_head,
                    "{src}->{dst}"
                );
                assert_eq!(
                    state_at(&restored, mid).await,
                    expected_mid,
                    "time travel on the restored store ({src}->{dst})"
                );
                restored.close().await.unwrap();

                let (restored, report) =
                    restore_into(dst, tmp.path(), &format!("pitr-{dst}"), &hist, Some(mid)).await;
                assert_eq!(report.as_of, mid);
                assert_eq!(state_at(&restored, mid).await, expected_mid, "{src}->{dst}");
                assert_eq!(restored.stats().await.unwrap().latest_version, mid);
                restored.close().await.unwrap();
            }
            engine.close().await.unwrap();
        }
    });
}

/// One committed transaction of the concurrent writers: its version and writes.
type Log = Arc<Mutex<Vec<(Version, Writes)>>>;

#[test]
fn backup_under_concurrent_writers_restores_exactly_the_backup_version() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::open(open("fjall", tmp.path()), options())
            .await
            .unwrap();
        create_collections(&engine).await;
        let log: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..2u64 {
            let (engine, log, stop) = (engine.clone(), Arc::clone(&log), Arc::clone(&stop));
            writers.push(tokio::spawn(async move {
                let mut rng = Rng(0xC0FFEE + w);
                let cols = ["users", "orders"];
                let mut commits = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut tx = engine.begin_write_with(WriteOptions {
                        durability: Durability::Buffered,
                        ..WriteOptions::default()
                    });
                    let mut writes = Vec::new();
                    for _ in 0..1 + rng.below(8) {
                        let c = cols[rng.below(2) as usize];
                        let k = backup_common::key(&mut rng, 4000);
                        let v = (rng.below(6) != 0).then(|| backup_common::value(&mut rng));
                        let name = CollectionName::new(c).unwrap();
                        match &v {
                            Some(v) => tx.put(&name, k.clone(), v.clone()).unwrap(),
                            None => tx.delete(&name, k.clone()).unwrap(),
                        }
                        writes.push((c.to_owned(), k, v));
                    }
                    let info = tx.commit().await.unwrap();
                    log.lock().unwrap().push((info.version, writes));
                    commits += 1;
                    if commits.is_multiple_of(16) {
                        tokio::task::yield_now().await;
                    }
                }
                commits
            }));
        }
        while log.lock().unwrap().len() < 3000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = log.lock().unwrap().len();
        let dir = tmp.path().join("online");
        let meta = engine
            .create_backup(
                &dir,
                &BackupOptions {
                    chunk_bytes: 16 << 10,
                    ..BackupOptions::default()
                },
            )
            .await
            .unwrap();
        let during = log.lock().unwrap().len() - before;
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        let head = meta.version;
        let latest = engine.stats().await.unwrap().latest_version;
        assert!(latest > head, "writes continued after the backup's version");
        println!(
            "backup at version {head} while writers committed {during} transactions (latest {latest}); {} chunks",
            meta.chunks.len()
        );

        // The model: every logged commit at or below the backup version, in version order.
        let mut commits = log.lock().unwrap().clone();
        commits.sort_by_key(|(v, _)| *v);
        let mut model = State::new();
        for (_, writes) in commits.iter().filter(|(v, _)| *v <= head) {
            for (c, k, v) in writes {
                match v {
                    Some(v) => model.insert((c.clone(), k.clone()), v.clone()),
                    None => model.remove(&(c.clone(), k.clone())),
                };
            }
        }
        for dst in ["redb", "memory"] {
            let (restored, _) = restore_into(dst, tmp.path(), dst, &dir, None).await;
            let (_, state) = state_at(&restored, head).await;
            assert_eq!(state.len(), model.len(), "restored into {dst}");
            assert!(state == model, "restored into {dst}: state differs from the model");
            restored.close().await.unwrap();
        }
        engine.close().await.unwrap();
    });
}

/// One step of the PITR scenario.
#[derive(Clone, Debug)]
enum Step {
    /// Transactions with these seeds.
    Txns(u8, u64),
    /// A garbage collection pass (the engine retains enough history for the chain).
    Gc,
    /// A backup: the first is full (with history), later ones incremental.
    Backup { compress: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1..12u8, any::<u64>()).prop_map(|(n, s)| Step::Txns(n, s | 1)),
        1 => Just(Step::Gc),
        2 => any::<bool>().prop_map(|compress| Step::Backup { compress }),
    ]
}

/// The writes of one commit: (collection, key, value or deletion).
type Writes = Vec<(String, Vec<u8>, Option<Vec<u8>>)>;

/// The model keeps every committed version: state at `v` = all writes ≤ `v`.
#[derive(Default)]
struct History(BTreeMap<Version, Writes>);

impl History {
    fn state_at(&self, at: Version) -> State {
        let mut s = State::new();
        for (_, writes) in self.0.range(..=at) {
            for (c, k, v) in writes {
                match v {
                    Some(v) => s.insert((c.clone(), k.clone()), v.clone()),
                    None => s.remove(&(c.clone(), k.clone())),
                };
            }
        }
        s
    }
}

async fn pitr_case(
    src: &str,
    dst: &str,
    steps: &[Step],
    picks: &[(u16, u16)],
) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(open(src, tmp.path()), retaining())
        .await
        .unwrap();
    create_collections(&engine).await;
    let mut history = History::default();
    let mut backups: Vec<PathBuf> = Vec::new();
    let cols = ["users", "orders"];
    for step in steps
        .iter()
        .cloned()
        .chain([Step::Backup { compress: true }])
    {
        match step {
            Step::Txns(n, seed) => {
                let mut rng = Rng(seed);
                for _ in 0..n {
                    let mut tx = engine.begin_write();
                    let mut writes = Vec::new();
                    for _ in 0..1 + rng.below(3) {
                        let c = cols[rng.below(2) as usize];
                        let k = backup_common::key(&mut rng, 12);
                        let len = rng.below(6) as usize;
                        let v = (rng.below(4) != 0).then(|| rng.bytes(len));
                        let name = CollectionName::new(c).unwrap();
                        match &v {
                            Some(v) => tx.put(&name, k.clone(), v.clone()).unwrap(),
                            None => tx.delete(&name, k.clone()).unwrap(),
                        }
                        // A later write to the same key in one transaction wins.
                        writes.retain(|(wc, wk, _): &(String, Vec<u8>, _)| !(wc == c && *wk == k));
                        writes.push((c.to_owned(), k, v));
                    }
                    let info = tx.commit().await.unwrap();
                    history.0.insert(info.version, writes);
                }
            }
            Step::Gc => {
                engine.collect_garbage().await.unwrap();
            }
            Step::Backup { compress } => {
                let dir = tmp.path().join(format!("b{}", backups.len()));
                let meta = engine
                    .create_backup(
                        &dir,
                        &BackupOptions {
                            compress,
                            include_history: true,
                            incremental_from: backups.last().cloned(),
                            chunk_bytes: 4 << 10,
                            ..BackupOptions::default()
                        },
                    )
                    .await
                    .unwrap();
                prop_assert_eq!(meta.kind == BackupKind::Incremental, !backups.is_empty());
                backups.push(dir);
            }
        }
    }
    let head_dir = backups.last().unwrap();
    let report = backup::verify(head_dir).await.unwrap();
    prop_assert_eq!(report.backups.len(), backups.len());
    let (from, to) = (report.restorable_from, report.restorable_to);
    for (i, &(a, b)) in picks.iter().enumerate() {
        let span = to - from + 1;
        let as_of = from + u64::from(a) % span;
        let (restored, rep) =
            restore_into(dst, tmp.path(), &format!("r{i}"), head_dir, Some(as_of)).await;
        prop_assert_eq!(rep.as_of, as_of);
        let (_, state) = state_at(&restored, as_of).await;
        prop_assert_eq!(&state, &history.state_at(as_of), "as of {}", as_of);
        // Time travel inside the restored range.
        let back = from + u64::from(b) % (as_of - from + 1);
        let (_, state) = state_at(&restored, back).await;
        prop_assert_eq!(&state, &history.state_at(back), "time travel to {}", back);
        restored.close().await.unwrap();
    }
    engine.close().await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_chain_restores_any_version_like_the_model(
        src in 0..3usize,
        dst in 0..3usize,
        steps in prop::collection::vec(step(), 1..14),
        picks in prop::collection::vec((any::<u16>(), any::<u16>()), 1..4),
    ) {
        runtime().block_on(pitr_case(KINDS[src], KINDS[dst], &steps, &picks))?;
    }
}

#[test]
fn refusals_name_the_path_and_the_check() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::open(open("redb", tmp.path()), options())
            .await
            .unwrap();
        create_collections(&engine).await;
        workload(&engine, &mut Rng(7), 40, 50).await;
        let full = tmp.path().join("full");
        engine
            .create_backup(&full, &BackupOptions::default())
            .await
            .unwrap();

        // A backup goes into a new or empty directory.
        let err = engine
            .create_backup(&full, &BackupOptions::default())
            .await
            .unwrap_err();
        assert_eq!(
            (err.check(), err.path()),
            (Check::Directory, full.as_path())
        );

        // Restore refuses a non-empty target and leaves it untouched.
        let target = open("memory", tmp.path());
        let users = CollectionName::new("users").unwrap();
        target.create_collection(&users).await.unwrap();
        let err = backup::restore(&full, Arc::clone(&target), None)
            .await
            .unwrap_err();
        assert_eq!(err.check(), Check::TargetEmpty, "{err}");
        assert_eq!(target.list_collections().await.unwrap(), vec![users]);

        // As-of outside the backup.
        let head = backup::read_metadata(&full).unwrap().version;
        let err = backup::restore(&full, open("memory", tmp.path()), Some(head - 1))
            .await
            .unwrap_err();
        assert_eq!(err.check(), Check::AsOfRange, "{err}");

        // An incremental needs its base still retained.
        workload(&engine, &mut Rng(8), 20, 50).await;
        engine.collect_garbage().await.unwrap();
        let inc = tmp.path().join("inc");
        let err = engine
            .create_backup(
                &inc,
                &BackupOptions {
                    incremental_from: Some(full.clone()),
                    ..BackupOptions::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.check(), Check::BaseRetained, "{err}");
        assert!(!inc.exists(), "a failed backup leaves nothing behind");
        engine.close().await.unwrap();
    });
}

#[test]
fn incremental_detects_a_recreated_collection_and_a_foreign_parent() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::open(open("fjall", tmp.path()), retaining())
            .await
            .unwrap();
        create_collections(&engine).await;
        workload(&engine, &mut Rng(9), 30, 50).await;
        let full = tmp.path().join("full");
        engine
            .create_backup(&full, &BackupOptions::default())
            .await
            .unwrap();
        // Drop and re-create a collection: its old data must not come back from the parent.
        let users = CollectionName::new("users").unwrap();
        engine.drop_collection(&users).await.unwrap();
        engine.create_collection(&users).await.unwrap();
        workload(&engine, &mut Rng(10), 5, 50).await;
        let err = engine
            .create_backup(
                tmp.path().join("inc"),
                &BackupOptions {
                    incremental_from: Some(full.clone()),
                    ..BackupOptions::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.check(), Check::ParentState, "{err}");

        // A parent from another store with the same version numbers.
        let other = Engine::open(open("memory", tmp.path()), retaining())
            .await
            .unwrap();
        create_collections(&other).await;
        workload(&other, &mut Rng(11), 60, 50).await;
        let err = other
            .create_backup(
                tmp.path().join("inc2"),
                &BackupOptions {
                    incremental_from: Some(full.clone()),
                    ..BackupOptions::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.check(), Check::ParentState, "{err}");
        engine.close().await.unwrap();
    });
}

/// Rewrites a backup's manifest through `edit`, resealing it (a consistent forger).
fn reseal(dir: &Path, edit: impl FnOnce(&mut Manifest)) {
    let path = dir.join("manifest");
    let (mut manifest, _) = backup::decode_manifest(&path, &std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    let (bytes, _) = backup::encode_manifest(&manifest).unwrap();
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn file_names_never_leave_the_backup_directory() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::open(open("memory", tmp.path()), options())
            .await
            .unwrap();
        create_collections(&engine).await;
        workload(&engine, &mut Rng(12), 40, 50).await;
        let pristine = tmp.path().join("pristine");
        engine
            .create_backup(&pristine, &BackupOptions::default())
            .await
            .unwrap();
        std::fs::write(tmp.path().join("outside"), b"secret").unwrap();
        for (case, name) in [
            "../outside",
            "/etc/passwd",
            "..",
            ".",
            "a/b",
            "a\\b",
            "C:x",
            ".hidden",
            "manifest",
            "",
        ]
        .into_iter()
        .enumerate()
        {
            let dir = tmp.path().join(format!("case{case}"));
            copy_dir(&pristine, &dir);
            reseal(&dir, |m| m.chunks[0].file = name.to_owned());
            let err = backup::verify(&dir).await.unwrap_err();
            assert_eq!(err.check(), Check::FileName, "{name:?}: {err}");
            let target = Counting::new(open("memory", tmp.path()));
            let err = backup::restore(&dir, target.clone(), None)
                .await
                .unwrap_err();
            assert_eq!(err.check(), Check::FileName);
            assert_eq!(target.mutations(), 0);
        }
        // Duplicate names.
        let dir = tmp.path().join("dup");
        copy_dir(&pristine, &dir);
        reseal(&dir, |m| {
            let c = m.chunks[0].clone();
            let ci = c.collection as usize;
            m.collections[ci].chunks += 1;
            m.collections[ci].entries += c.entries;
            m.chunks.insert(1, c);
        });
        assert_eq!(
            backup::verify(&dir).await.unwrap_err().check(),
            Check::FileName
        );
        // Symbolic links, to a file outside or to a valid chunk copy, are refused.
        #[cfg(unix)]
        {
            let dir = tmp.path().join("link");
            copy_dir(&pristine, &dir);
            let first = backup::read_metadata(&dir).unwrap().chunks[0].file.clone();
            let outside = tmp.path().join("chunk-copy");
            std::fs::rename(dir.join(&first), &outside).unwrap();
            std::os::unix::fs::symlink(&outside, dir.join(&first)).unwrap();
            let err = backup::verify(&dir).await.unwrap_err();
            assert_eq!(err.check(), Check::FileType, "{err}");
            // A symlinked manifest too.
            let dir2 = tmp.path().join("link2");
            copy_dir(&pristine, &dir2);
            std::fs::rename(dir2.join("manifest"), tmp.path().join("m")).unwrap();
            std::os::unix::fs::symlink(tmp.path().join("m"), dir2.join("manifest")).unwrap();
            let err = backup::read_metadata(&dir2).unwrap_err();
            assert_eq!(err.check(), Check::FileType, "{err}");
        }
        engine.close().await.unwrap();
    });
}

#[test]
fn restore_reports_progress_and_metadata_has_the_seed_fields() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::open(open("memory", tmp.path()), options())
            .await
            .unwrap();
        create_collections(&engine).await;
        workload(&engine, &mut Rng(13), 100, 300).await;
        let dir = tmp.path().join("b");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let meta = engine
            .create_backup(
                &dir,
                &BackupOptions {
                    chunk_bytes: 4 << 10,
                    created_at: fixed_clock(),
                    progress: backup::Progress::new(move |phase, done, total| {
                        sink.lock().unwrap().push((phase, done, total));
                    }),
                    ..BackupOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(meta.timestamp, 1_750_000_000);
        let read = backup::read_metadata(&dir).unwrap();
        assert_eq!(read.digest, meta.digest);
        assert_eq!(read.version, meta.version);
        assert_eq!(read.collections, meta.collections);
        assert!(
            seen.lock()
                .unwrap()
                .iter()
                .any(|(p, _, _)| *p == backup::Phase::Scan)
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let target = open("memory", tmp.path());
        backup::restore_with(
            &dir,
            target,
            &RestoreOptions {
                progress: backup::Progress::new(move |phase, done, total| {
                    sink.lock().unwrap().push((phase, done, total));
                }),
                ..RestoreOptions::default()
            },
        )
        .await
        .unwrap();
        let last_restore = *seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(p, _, _)| *p == backup::Phase::Restore)
            .unwrap();
        assert_eq!(last_restore.1, last_restore.2, "progress reaches its total");
        // Over the memory budget, the write pass reads and checks the chunks again.
        let target = open("memory", tmp.path());
        backup::restore_with(
            &dir,
            Arc::clone(&target),
            &RestoreOptions {
                memory_budget: 1,
                ..RestoreOptions::default()
            },
        )
        .await
        .unwrap();
        let restored = open_engine(target).await;
        assert_eq!(
            state_at(&restored, meta.version).await,
            state_at(&engine, meta.version).await
        );
        engine.close().await.unwrap();
    });
}

// --- golden fixtures ----------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backup_v1")
}

/// The deterministic store and backups the fixtures hold: `full` (history, uncompressed),
/// `incr` (incremental on `full`, uncompressed), `full_zstd` (compressed; decoded only, since
/// zstd's output may change between zstd releases).
async fn make_fixture_backups(root: &Path) -> Engine {
    let engine = Engine::open(open("memory", root), retaining())
        .await
        .unwrap();
    create_collections(&engine).await;
    let users = CollectionName::new("users").unwrap();
    let orders = CollectionName::new("orders").unwrap();
    for i in 0..6u8 {
        let mut tx = engine.begin_write();
        tx.put(&users, vec![b'u', i], format!("user {i}")).unwrap();
        tx.put(&orders, vec![0x00, i, 0xFF], vec![i; usize::from(i)])
            .unwrap();
        tx.commit().await.unwrap();
    }
    let mut tx = engine.begin_write();
    tx.delete(&users, vec![b'u', 2]).unwrap();
    tx.commit().await.unwrap();
    engine.next_seq(b"ids").await.unwrap();
    let fixed = BackupOptions {
        compress: false,
        include_history: true,
        chunk_bytes: 4 << 10,
        created_at: fixed_clock(),
        ..BackupOptions::default()
    };
    engine
        .create_backup(root.join("full"), &fixed)
        .await
        .unwrap();
    let mut tx = engine.begin_write();
    tx.put(&users, b"u\x02".to_vec(), b"back".to_vec()).unwrap();
    tx.delete(&orders, vec![0x00, 1, 0xFF]).unwrap();
    tx.commit().await.unwrap();
    engine
        .create_backup(
            root.join("incr"),
            &BackupOptions {
                incremental_from: Some(root.join("full")),
                ..fixed.clone()
            },
        )
        .await
        .unwrap();
    engine
        .create_backup(
            root.join("full_zstd"),
            &BackupOptions {
                compress: true,
                ..fixed
            },
        )
        .await
        .unwrap();
    engine
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn golden_fixtures_of_format_1_decode_and_still_match_the_writer() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = make_fixture_backups(tmp.path()).await;
        if std::env::var_os("ZCORE_BLESS").is_some() {
            for name in ["full", "incr", "full_zstd"] {
                let to = fixtures().join(name);
                let _ = std::fs::remove_dir_all(&to);
                copy_dir(&tmp.path().join(name), &to);
            }
        }
        // The writer still produces the committed bytes (format drift is caught here).
        for name in ["full", "incr"] {
            assert!(
                files(&tmp.path().join(name)) == files(&fixtures().join(name)),
                "backup `{name}` no longer matches tests/fixtures/backup_v1/{name}: the format changed (bump the format version and add new fixtures; ZCORE_BLESS=1 rewrites them)"
            );
        }
        // The committed bytes decode, verify and restore to the known state.
        let full = backup::read_metadata(fixtures().join("full")).unwrap();
        assert_eq!(full.format_version, 1);
        assert_eq!(full.timestamp, 1_750_000_000);
        assert_eq!(full.source_backend, "memory");
        assert_eq!((full.base_version, full.head_version), (0, 7));
        assert_eq!(full.kind, BackupKind::Full { history: true });
        assert_eq!(full.sequences.len(), 1);
        assert_eq!(full.sequences[0].name.0, b"ids");
        let names: Vec<&str> = full.collections.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["empty", "orders", "users"]);
        let users = &full.collections[2];
        assert_eq!((users.entries, users.tombstones, users.live_keys), (7, 1, 5));
        let incr = backup::read_metadata(fixtures().join("incr")).unwrap();
        assert_eq!(incr.kind, BackupKind::Incremental);
        assert_eq!(incr.parent.as_ref().unwrap().digest, full.digest);
        assert_eq!(incr.parent.as_ref().unwrap().dir_name, "full");
        let report = backup::verify(fixtures().join("incr")).await.unwrap();
        assert_eq!((report.restorable_from, report.restorable_to), (0, 8));
        let zstd = backup::read_metadata(fixtures().join("full_zstd")).unwrap();
        assert!(zstd.chunks.iter().any(|c| c.compression == Compression::Zstd));
        backup::verify(fixtures().join("full_zstd")).await.unwrap();
        for (dir, as_of) in [("incr", 8), ("incr", 5), ("full_zstd", 8), ("full", 3)] {
            let (restored, _) = restore_into(
                "memory",
                tmp.path(),
                &format!("r-{dir}-{as_of}"),
                &fixtures().join(dir),
                Some(as_of),
            )
            .await;
            assert_eq!(
                state_at(&restored, as_of).await,
                state_at(&engine, as_of).await,
                "{dir} as of {as_of}"
            );
        }
    });
}

#[test]
fn verify_reports_unreferenced_files_without_failing() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::open(open("memory", tmp.path()), options())
            .await
            .unwrap();
        create_collections(&engine).await;
        workload(&engine, &mut Rng(14), 10, 20).await;
        let dir = tmp.path().join("b");
        engine
            .create_backup(&dir, &BackupOptions::default())
            .await
            .unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
        let report = backup::verify(&dir).await.unwrap();
        assert_eq!(report.unreferenced_files, vec![dir.join("notes.txt")]);
        let target = open("memory", tmp.path());
        backup::restore(&dir, Arc::clone(&target), None)
            .await
            .unwrap();
        assert!(!is_empty(&*target).await);
        engine.close().await.unwrap();
    });
}
