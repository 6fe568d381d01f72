//! Model-based property test of the transaction layer: random transactions (puts, deletes,
//! reads, paged scans in both directions, savepoints, rollbacks, garbage collection, restarts)
//! run on every backend and on a sequential model that also keeps every committed version, so
//! time-travel reads are checked against history.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_engine::{
    CollectionName, Direction, Durability, Engine, EngineOptions, KeyRange, ScanRequest,
    StorageBackend, TxnError, WriteOptions,
};

const COLS: [&str; 2] = ["left", "right"];

#[derive(Clone, Debug)]
enum Step {
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
    Get(usize, Vec<u8>),
    Scan(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, Direction, usize),
    Savepoint(u8),
    RollbackTo(u8),
    Release(u8),
}

#[derive(Clone, Debug)]
enum Action {
    Txn(Vec<Step>, bool),
    ReadAt(usize, usize, Vec<u8>),
    Gc,
    Restart,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xFF)],
        1..3,
    )
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
        Just(Bound::Unbounded)
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..2usize, key(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(c, k, v)| Step::Put(c, k, v)),
        2 => (0..2usize, key()).prop_map(|(c, k)| Step::Delete(c, k)),
        3 => (0..2usize, key()).prop_map(|(c, k)| Step::Get(c, k)),
        3 => (0..2usize, bound(), bound(), prop_oneof![Just(Direction::Forward), Just(Direction::Reverse)], 1..4usize)
            .prop_map(|(c, s, e, d, l)| Step::Scan(c, s, e, d, l)),
        1 => (0..3u8).prop_map(Step::Savepoint),
        1 => (0..3u8).prop_map(Step::RollbackTo),
        1 => (0..3u8).prop_map(Step::Release),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (prop::collection::vec(step(), 0..8), prop::bool::weighted(0.8)).prop_map(|(s, c)| Action::Txn(s, c)),
        3 => (any::<usize>(), 0..2usize, key()).prop_map(|(v, c, k)| Action::ReadAt(v, c, k)),
        1 => Just(Action::Gc),
        1 => Just(Action::Restart),
    ]
}

type State = BTreeMap<(usize, Vec<u8>), Vec<u8>>;

/// The transaction's view in the model: committed state plus its own writes, with an undo
/// stack per savepoint, the way the engine promises.
struct ModelTxn {
    view: State,
    savepoints: Vec<(u8, State)>,
}

fn scan_model(view: &State, c: usize, range: &KeyRange, dir: Direction) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = view
        .iter()
        .filter(|((cc, k), _)| *cc == c && range.contains(k))
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect();
    if dir == Direction::Reverse {
        out.reverse();
    }
    out
}

fn col(i: usize) -> CollectionName {
    CollectionName::new(COLS[i]).unwrap()
}

async fn run(
    open: &dyn Fn() -> Arc<dyn StorageBackend>,
    actions: &[Action],
) -> Result<(), TestCaseError> {
    let options = || EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    };
    let mut engine = Engine::open(open(), options()).await.unwrap();
    for i in 0..COLS.len() {
        engine.create_collection(&col(i)).await.unwrap();
    }
    let persistent = engine.backend().is_persistent();
    // version → committed state; the model's history.
    let mut history: Vec<(u64, State)> = vec![(engine.latest_version(), State::new())];
    let mut committed = State::new();
    let mut gc_floor = 0u64;
    for (n, action) in actions.iter().enumerate() {
        match action {
            Action::Txn(steps, commit) => {
                let durability = if n % 2 == 0 {
                    Durability::Synced
                } else {
                    Durability::Buffered
                };
                let mut tx = engine.begin_write_with(WriteOptions {
                    durability,
                    ..WriteOptions::default()
                });
                let mut m = ModelTxn {
                    view: committed.clone(),
                    savepoints: Vec::new(),
                };
                for s in steps {
                    match s {
                        Step::Put(c, k, v) => {
                            tx.put(&col(*c), k.clone(), v.clone()).unwrap();
                            m.view.insert((*c, k.clone()), v.clone());
                        }
                        Step::Delete(c, k) => {
                            tx.delete(&col(*c), k.clone()).unwrap();
                            m.view.remove(&(*c, k.clone()));
                        }
                        Step::Get(c, k) => {
                            let got = tx.get(&col(*c), k).await.unwrap();
                            prop_assert_eq!(
                                got,
                                m.view.get(&(*c, k.clone())).cloned(),
                                "get at action {}",
                                n
                            );
                        }
                        Step::Scan(c, s, e, d, limit) => {
                            let range = KeyRange::new(s.clone(), e.clone());
                            let mut req = Some(ScanRequest {
                                range: range.clone(),
                                direction: *d,
                                limit: *limit,
                            });
                            let mut got = Vec::new();
                            while let Some(r) = req.take() {
                                let page = tx.scan(&col(*c), &r).await.unwrap();
                                prop_assert!(page.entries.len() <= *limit);
                                req = r.next_page(&page);
                                got.extend(page.entries);
                            }
                            prop_assert_eq!(
                                got,
                                scan_model(&m.view, *c, &range, *d),
                                "scan at action {}",
                                n
                            );
                        }
                        Step::Savepoint(id) => {
                            tx.create_savepoint(format!("sp{id}"));
                            m.savepoints.push((*id, m.view.clone()));
                        }
                        Step::RollbackTo(id) => {
                            let name = format!("sp{id}");
                            match m.savepoints.iter().rposition(|(s, _)| s == id) {
                                Some(i) => {
                                    tx.rollback_to_savepoint(&name).unwrap();
                                    m.view = m.savepoints[i].1.clone();
                                    m.savepoints.truncate(i + 1);
                                }
                                None => {
                                    let missing = matches!(
                                        tx.rollback_to_savepoint(&name),
                                        Err(TxnError::SavepointNotFound { .. })
                                    );
                                    prop_assert!(missing, "rollback to unknown savepoint");
                                }
                            }
                        }
                        Step::Release(id) => {
                            let name = format!("sp{id}");
                            match m.savepoints.iter().rposition(|(s, _)| s == id) {
                                Some(i) => {
                                    tx.release_savepoint(&name).unwrap();
                                    m.savepoints.truncate(i);
                                }
                                None => {
                                    let missing = matches!(
                                        tx.release_savepoint(&name),
                                        Err(TxnError::SavepointNotFound { .. })
                                    );
                                    prop_assert!(missing, "release of unknown savepoint");
                                }
                            }
                        }
                    }
                }
                if *commit {
                    let info = tx.commit().await.unwrap();
                    if info.wrote {
                        committed = m.view;
                        history.push((info.version, committed.clone()));
                        prop_assert_eq!(engine.latest_version(), info.version);
                    }
                } else {
                    tx.rollback();
                }
            }
            Action::ReadAt(pick, c, k) => {
                let (version, state) = &history[pick % history.len()];
                match engine.begin_read_at(*version) {
                    Ok(r) => {
                        prop_assert!(*version >= gc_floor);
                        let got = r.get(&col(*c), k).await.unwrap();
                        prop_assert_eq!(
                            got,
                            state.get(&(*c, k.clone())).cloned(),
                            "time travel to {}",
                            version
                        );
                        let all = r
                            .scan(&col(*c), &ScanRequest::forward(KeyRange::all(), 1000))
                            .await
                            .unwrap();
                        prop_assert_eq!(
                            all.entries,
                            scan_model(state, *c, &KeyRange::all(), Direction::Forward)
                        );
                    }
                    Err(TxnError::VersionNotRetained { .. }) => prop_assert!(*version < gc_floor),
                    Err(e) => return Err(TestCaseError::fail(format!("read at {version}: {e}"))),
                }
            }
            Action::Gc => {
                gc_floor = engine.collect_garbage().await.unwrap().watermark;
            }
            Action::Restart => {
                if persistent {
                    engine.close().await.unwrap();
                    engine = Engine::open(open(), options()).await.unwrap();
                    // Resumes at the durable version lease; the versions in between show the
                    // last committed state.
                    let resumed = engine.latest_version();
                    prop_assert!(resumed >= history.last().unwrap().0);
                    history.push((resumed, committed.clone()));
                }
            }
        }
    }
    let r = engine.begin_read();
    for c in 0..COLS.len() {
        let all = r
            .scan(&col(c), &ScanRequest::reverse(KeyRange::all(), 1000))
            .await
            .unwrap();
        prop_assert_eq!(
            all.entries,
            scan_model(&committed, c, &KeyRange::all(), Direction::Reverse)
        );
    }
    drop(r);
    engine.close().await.unwrap();
    Ok(())
}

fn check(actions: &[Action]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fjall_path = dir.path().join("f");
    let redb_path = dir.path().join("r.redb");
    rt.block_on(async {
        run(&|| Arc::new(MemoryBackend::new()), actions).await?;
        run(
            &|| {
                Arc::new(
                    FjallBackend::open(
                        &fjall_path,
                        &FjallOptions {
                            worker_threads: Some(1),
                            cache_size_bytes: 4 << 20,
                            ..FjallOptions::default()
                        },
                    )
                    .unwrap(),
                )
            },
            actions,
        )
        .await?;
        run(
            &|| {
                Arc::new(
                    RedbBackend::open(
                        &redb_path,
                        &RedbOptions {
                            cache_size_bytes: 4 << 20,
                        },
                    )
                    .unwrap(),
                )
            },
            actions,
        )
        .await
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn transactions_match_the_sequential_model(actions in prop::collection::vec(action(), 1..25)) {
        check(&actions)?;
    }
}
