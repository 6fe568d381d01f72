//! The state machine on its own: versions are log indexes, validation is deterministic,
//! retries are applied once, applied state and data survive a restart, a snapshot with data
//! installs on another replica, a snapshot build does not deadlock with a collection drop, and
//! a failed apply leaves nothing half-applied in use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::ops::Bound;
use tempfile::TempDir;
use zcore_backends::{MemoryBackend, RedbBackend, RedbOptions};
use zcore_cluster::{
    Command, MemorySnapshots, Outcome, Request, RequestId, SessionLimits, StateMachineStore,
    TypeConfig,
};

use zcore_engine::mvcc::replica::{ReplicatedRead, ReplicatedTxn, ReplicatedWrite};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, CollectionName, Durability, EngineOptions, Isolation,
    ScanPage, ScanRequest, StorageBackend, WriteBatch,
};

fn entry(index: u64, request: Request) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(request),
    }
}

fn kv() -> CollectionName {
    CollectionName::new("kv").unwrap()
}

fn write(read_version: u64, key: &str, value: &str) -> Command {
    Command::Txn(ReplicatedTxn {
        read_version,
        isolation: Isolation::Snapshot,
        reads: vec![],
        writes: vec![ReplicatedWrite {
            collection: kv(),
            key: key.as_bytes().to_vec(),
            value: Some(value.as_bytes().to_vec()),
        }],
    })
}

async fn open(dir: &std::path::Path) -> StateMachineStore {
    open_limited(dir, SessionLimits::default()).await
}

async fn open_limited(dir: &std::path::Path, limits: SessionLimits) -> StateMachineStore {
    let backend: Arc<dyn StorageBackend> =
        Arc::new(RedbBackend::open(dir.join("store.redb"), &RedbOptions::default()).unwrap());
    let options = EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    };
    StateMachineStore::open_with(backend, dir.join("snapshots"), options, limits)
        .await
        .unwrap()
}

fn blank(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Blank,
    }
}

fn req(client: u64, serial: u64, command: Command) -> Request {
    Request {
        id: Some(RequestId {
            client,
            serial,
            opened: 0,
        }),
        command,
    }
}

fn serializable(read_version: u64, reads: Vec<ReplicatedRead>, key: &str, value: &str) -> Command {
    Command::Txn(ReplicatedTxn {
        read_version,
        isolation: Isolation::Serializable,
        reads,
        writes: vec![ReplicatedWrite {
            collection: kv(),
            key: key.as_bytes().to_vec(),
            value: Some(value.as_bytes().to_vec()),
        }],
    })
}

fn point(key: &str) -> ReplicatedRead {
    ReplicatedRead::Point {
        collection: kv(),
        key: key.as_bytes().to_vec(),
    }
}

fn range(start: Bound<&str>, end: Bound<&str>) -> ReplicatedRead {
    let b = |b: Bound<&str>| b.map(|s| s.as_bytes().to_vec());
    ReplicatedRead::Range {
        collection: kv(),
        start: b(start),
        end: b(end),
    }
}

async fn get(sm: &StateMachineStore, key: &str) -> Option<String> {
    let r = sm.engine().begin_read();
    r.get(&kv(), key.as_bytes())
        .await
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

/// A batch entry (what the leader's proposal batcher proposes): requests decided in order,
/// each against the stored versions and the requests accepted before it in the same entry;
/// the committed ones written once, at the entry's index; per-request outcomes and dedupe.
#[tokio::test]
async fn batch_entries_decide_in_order_and_commit_at_the_entry_index() {
    let dir = TempDir::new().unwrap();
    let mut sm = open(dir.path()).await;
    let create = Request {
        id: None,
        command: Command::CreateCollection("kv".into()),
    };
    sm.apply([entry(1, create), entry(2, req(1, 1, write(1, "a", "a2")))])
        .await
        .unwrap();
    let batch = vec![
        // Commits at 3.
        req(10, 1, write(2, "b", "b3")),
        // Snapshot isolation, writes what the first one wrote: conflict.
        req(11, 1, write(2, "b", "other")),
        // Serializable, read `b` (written earlier in this entry): conflict.
        req(12, 1, serializable(2, vec![point("b")], "c", "c3")),
        // Serializable, scanned a range holding `b`: conflict.
        req(
            13,
            1,
            serializable(
                2,
                vec![range(Bound::Included("a"), Bound::Excluded("z"))],
                "c",
                "x",
            ),
        ),
        // A range that excludes `b`: no conflict; commits.
        req(
            14,
            1,
            serializable(
                2,
                vec![range(Bound::Excluded("b"), Bound::Unbounded)],
                "d",
                "d3",
            ),
        ),
        // A blind serializable write of `b` after the first: commits, and wins.
        req(15, 1, serializable(2, vec![], "b", "last")),
        // The first request again (a retry in the same entry): its first response.
        req(10, 1, write(2, "b", "b3")),
        // Only transactions go into a batch.
        req(16, 1, Command::CreateCollection("other".into())),
        // Conflicts with the stored `a`@2 (read at 1).
        req(17, 1, write(1, "a", "late")),
    ];
    let responses = sm
        .apply([entry(
            3,
            Request {
                id: None,
                command: Command::Batch(batch),
            },
        )])
        .await
        .unwrap();
    let Outcome::Batch(inner) = &responses[0].outcome else {
        panic!("not a batch outcome: {responses:?}");
    };
    let kinds: Vec<&str> = inner
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Committed { version } => {
                assert_eq!(*version, 3);
                "committed"
            }
            Outcome::Conflict { .. } => "conflict",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Stale => "stale",
            Outcome::Batch(_) => "batch",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "committed",
            "conflict",
            "conflict",
            "conflict",
            "committed",
            "committed",
            "committed",
            "rejected",
            "conflict"
        ]
    );
    assert_eq!(inner[6], inner[0], "the retry gets the first response");
    assert_eq!(sm.engine().latest_version(), 3);
    assert_eq!(get(&sm, "a").await.as_deref(), Some("a2"));
    assert_eq!(get(&sm, "b").await.as_deref(), Some("last"));
    assert_eq!(get(&sm, "c").await, None);
    assert_eq!(get(&sm, "d").await.as_deref(), Some("d3"));
    let counts = sm.engine().version_counts(&kv()).await.unwrap();
    assert_eq!(counts.versions, 3, "a@2, b@3 (once), d@3: {counts:?}");

    // Retries of batched requests, alone, get the batch's answers; a batch with an id of its
    // own is refused.
    let more = sm
        .apply([
            entry(4, req(10, 1, write(2, "b", "b3"))),
            entry(5, req(11, 1, write(2, "b", "other"))),
            entry(
                6,
                Request {
                    id: Some(RequestId {
                        client: 99,
                        serial: 1,
                        opened: 0,
                    }),
                    command: Command::Batch(vec![]),
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(more[0], inner[0]);
    assert_eq!(more[1], inner[1]);
    assert!(matches!(more[2].outcome, Outcome::Rejected { .. }));
    assert_eq!(get(&sm, "b").await.as_deref(), Some("last"));
}

/// Client sessions expire by age and by count, at fixed log indexes (so every replica drops
/// the same ones), and a late retry of an expired session is answered `Stale`, never applied
/// again; the expiry state survives a restart and travels in snapshots.
#[tokio::test]
async fn sessions_expire_deterministically_and_expired_retries_are_stale() {
    let dir = TempDir::new().unwrap();
    let limits = SessionLimits {
        expire_after_entries: 20,
        sweep_every: 5,
        max_sessions: 3,
    };
    let mut sm = open_limited(dir.path(), limits).await;
    let create = Request {
        id: None,
        command: Command::CreateCollection("kv".into()),
    };
    // Sessions 1..=4 decide their first request at 2..=5; the sweep at 5 keeps 3.
    let mut entries = vec![entry(1, create)];
    for client in 1..=4u64 {
        entries.push(entry(
            client + 1,
            req(client, 1, write(client, &format!("k{client}"), "v")),
        ));
    }
    let responses = sm.apply(entries).await.unwrap();
    assert!(
        responses
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Committed { .. }))
    );
    // Session 1 (the least recently used) was dropped at 5: its retry is stale, not applied.
    let r = sm
        .apply([entry(6, req(1, 1, write(1, "k1", "again")))])
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Stale, "{r:?}");
    assert_eq!(get(&sm, "k1").await.as_deref(), Some("v"));
    // Session 2 is still known: its retry gets the recorded answer.
    let r = sm
        .apply([entry(7, req(2, 1, write(2, "k2", "again")))])
        .await
        .unwrap();
    assert_eq!(r[0], responses[2]);
    // A session opened after the floor starts fine.
    let fresh = |client, serial, opened| Request {
        id: Some(RequestId {
            client,
            serial,
            opened,
        }),
        command: write(7, &format!("n{client}"), "v"),
    };
    let r = sm.apply([entry(8, fresh(50, 1, 7))]).await.unwrap();
    assert_eq!(r[0].outcome, Outcome::Committed { version: 8 });
    // Count again at 10: sessions 2, 3, 4, 50 → session 2 goes. Age: sessions 3 and 4 (last
    // decided at 4 and 5) expire at the sweep at 25 (4 + 20 <= 25, 5 + 20 <= 25).
    sm.apply((9..=24).map(blank)).await.unwrap();
    let r = sm
        .apply([entry(25, req(3, 1, write(3, "k3", "again")))])
        .await
        .unwrap();
    // Decided before the sweep of the same entry: still known.
    assert_eq!(r[0].index, 4);
    let r = sm
        .apply([entry(26, req(4, 1, write(4, "k4", "again")))])
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Stale, "expired at 25: {r:?}");
    // Restart: the floor and the remaining sessions survive.
    let engine = sm.engine().clone();
    engine.close().await.unwrap();
    drop((sm, engine));
    let mut sm = open_limited(dir.path(), limits).await;
    let r = sm
        .apply([entry(27, req(2, 1, write(2, "k2", "again")))])
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Stale, "dropped at 10: {r:?}");
    // A snapshot carries the floor: an old session unknown to the snapshot is stale there.
    let snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let other_dir = TempDir::new().unwrap();
    let mut other = open_limited(other_dir.path(), limits).await;
    let mut receiving = other.begin_receiving_snapshot().await.unwrap();
    *receiving = *snapshot.snapshot;
    other
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    let r = other
        .apply([entry(28, req(4, 1, write(4, "k4", "again")))])
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Stale);
    assert_eq!(get(&other, "k4").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn apply_dedupe_restart_and_snapshot_install() {
    let dir = TempDir::new().unwrap();
    let mut sm = open(dir.path()).await;
    let id = |serial| {
        Some(RequestId {
            client: 7,
            serial,
            opened: 0,
        })
    };
    let responses = sm
        .apply([
            entry(
                1,
                Request {
                    id: None,
                    command: Command::CreateCollection("kv".into()),
                },
            ),
            entry(
                2,
                Request {
                    id: id(1),
                    command: write(1, "a", "1"),
                },
            ),
            // A retry of the same request: answered with the first outcome, not applied.
            entry(
                3,
                Request {
                    id: id(1),
                    command: write(1, "a", "1"),
                },
            ),
            // Snapshot isolation, read at 1: conflicts with the write at 2.
            entry(
                4,
                Request {
                    id: id(2),
                    command: write(1, "a", "2"),
                },
            ),
            entry(
                5,
                Request {
                    id: id(1),
                    command: write(1, "a", "3"),
                },
            ),
            entry(
                6,
                Request {
                    id: None,
                    command: write(0, "", "empty key"),
                },
            ),
        ])
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = responses.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(outcomes[0], Outcome::Committed { version: 1 });
    assert_eq!(outcomes[1], Outcome::Committed { version: 2 });
    assert_eq!(
        responses[2], responses[1],
        "a retry gets the first response"
    );
    assert!(
        matches!(outcomes[3], Outcome::Conflict { .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[4], Outcome::Stale);
    assert!(matches!(outcomes[5], Outcome::Rejected { .. }));
    let engine = sm.engine().clone();
    assert_eq!(engine.latest_version(), 6);
    let counts = engine.version_counts(&kv()).await.unwrap();
    assert_eq!(counts.versions, 1, "applied exactly once");

    // Restart: applied state, data and sessions survive.
    let (applied, _) = sm.applied_state().await.unwrap();
    engine.close().await.unwrap();
    drop((sm, engine));
    let mut sm = open(dir.path()).await;
    assert_eq!(sm.applied_state().await.unwrap().0, applied);
    assert_eq!(sm.engine().latest_version(), 6);
    let r = sm.engine().begin_read();
    assert_eq!(r.get(&kv(), b"a").await.unwrap(), Some(b"1".to_vec()));
    drop(r);
    let again = sm
        .apply([entry(
            7,
            Request {
                id: id(2),
                command: write(1, "a", "2"),
            },
        )])
        .await
        .unwrap();
    assert_eq!(
        again[0], responses[3],
        "the session's latest response survived"
    );

    // Snapshot with data, installed on an empty replica.
    let snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let other_dir = TempDir::new().unwrap();
    let mut other = open(other_dir.path()).await;
    let mut receiving = other.begin_receiving_snapshot().await.unwrap();
    *receiving = *snapshot.snapshot;
    other
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    assert_eq!(
        other.applied_state().await.unwrap().0,
        sm.applied_state().await.unwrap().0
    );
    assert_eq!(other.engine().latest_version(), 7);
    let r = other.engine().begin_read();
    assert_eq!(r.get(&kv(), b"a").await.unwrap(), Some(b"1".to_vec()));
    let old = other.engine().begin_read_at(1).unwrap();
    assert_eq!(
        old.get(&kv(), b"a").await.unwrap(),
        None,
        "time travel works too"
    );
    // The installed sessions de-duplicate too.
    let again = other
        .apply([entry(
            8,
            Request {
                id: id(2),
                command: write(1, "a", "2"),
            },
        )])
        .await
        .unwrap();
    assert_eq!(
        again[0], responses[3],
        "the session's latest response survived"
    );
}

/// A backend whose scans of one collection wait while `paused` is set, announcing each
/// waiting scan on `entered`: holds a snapshot build in the middle of its scan.
struct Pausing {
    inner: MemoryBackend,
    target: CollectionName,
    paused: tokio::sync::watch::Sender<bool>,
    entered: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl StorageBackend for Pausing {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
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
    async fn get(
        &self,
        collection: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(collection, key).await
    }
    async fn scan(
        &self,
        collection: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError> {
        let mut paused = self.paused.subscribe();
        if *collection == self.target && *paused.borrow_and_update() {
            self.entered.notify_one();
            let _ = paused.wait_for(|p| !*p).await;
        }
        self.inner.scan(collection, request).await
    }
    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError> {
        self.inner.write(batch, durability).await
    }
    async fn sync(&self) -> Result<(), BackendError> {
        self.inner.sync().await
    }
    async fn stats(&self) -> Result<BackendStats, BackendError> {
        self.inner.stats().await
    }
    async fn close(&self) -> Result<(), BackendError> {
        self.inner.close().await
    }
}

async fn open_memory(
    backend: Arc<dyn StorageBackend>,
    snapshots: MemorySnapshots,
) -> StateMachineStore {
    let options = EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    };
    StateMachineStore::open(backend, snapshots, options)
        .await
        .unwrap()
}

/// A snapshot build holds the read gate while it scans; the apply of a collection drop holds
/// the state lock while it waits for that gate. The build must not then wait for the state
/// lock while still holding the gate (a deadlock: it once did), and its snapshot is the state
/// at the index it captured, before the drop. Snapshots kept in memory
/// ([`MemorySnapshots`], as in the simulator) are counted and install on another replica.
#[tokio::test]
async fn snapshot_build_and_a_concurrent_collection_drop_both_finish() {
    let (paused, _) = tokio::sync::watch::channel(false);
    let backend = Arc::new(Pausing {
        inner: MemoryBackend::new(),
        target: kv(),
        paused,
        entered: tokio::sync::Notify::new(),
    });
    let snapshots = MemorySnapshots::new();
    let mut sm = open_memory(
        Arc::clone(&backend) as Arc<dyn StorageBackend>,
        snapshots.clone(),
    )
    .await;
    let create = |index, name: &str| {
        entry(
            index,
            Request {
                id: None,
                command: Command::CreateCollection(name.to_owned()),
            },
        )
    };
    sm.apply([
        create(1, "kv"),
        entry(
            2,
            Request {
                id: None,
                command: write(1, "a", "1"),
            },
        ),
        create(3, "gone"),
    ])
    .await
    .unwrap();

    backend.paused.send_replace(true);
    let mut builder = sm.get_snapshot_builder().await;
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    tokio::time::timeout(Duration::from_secs(10), backend.entered.notified())
        .await
        .expect("the build reaches its scan of `kv`");
    let mut applier = sm.clone();
    let drop_gone = tokio::spawn(async move {
        applier
            .apply([entry(
                4,
                Request {
                    id: None,
                    command: Command::DropCollection("gone".to_owned()),
                },
            )])
            .await
    });
    // Let the drop take the state lock and queue for the gate (nothing else runs meanwhile).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !drop_gone.is_finished(),
        "the drop waits for the build's scan"
    );
    backend.paused.send_replace(false);

    let snapshot = tokio::time::timeout(Duration::from_secs(10), build)
        .await
        .expect("the build finished (no deadlock with the drop)")
        .unwrap()
        .unwrap();
    let responses = tokio::time::timeout(Duration::from_secs(10), drop_gone)
        .await
        .expect("the drop finished (no deadlock with the build)")
        .unwrap()
        .unwrap();
    assert_eq!(responses[0].outcome, Outcome::Committed { version: 4 });
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(3));
    let names = |sm: &StateMachineStore| {
        sm.engine()
            .collections()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&sm), ["kv"]);
    assert_eq!((snapshots.built(), snapshots.installed()), (1, 0));
    assert_eq!(snapshots.stored(), 1);

    // The snapshot is the state at index 3: `gone` still exists there.
    let other_snapshots = MemorySnapshots::new();
    let mut other = open_memory(Arc::new(MemoryBackend::new()), other_snapshots.clone()).await;
    let mut receiving = other.begin_receiving_snapshot().await.unwrap();
    *receiving = *snapshot.snapshot;
    other
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
    assert_eq!(
        other.applied_state().await.unwrap().0.map(|l| l.index),
        Some(3)
    );
    assert_eq!(names(&other), ["gone", "kv"]);
    assert_eq!(get(&other, "a").await.as_deref(), Some("1"));
    assert_eq!(other.engine().latest_version(), 3);
    assert_eq!(
        (other_snapshots.built(), other_snapshots.installed()),
        (0, 1)
    );
    let current = other.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
}

/// A backend whose writes fail while `fail` is set (a disk returning EIO).
#[derive(Debug)]
struct FailingWrites {
    inner: Arc<dyn StorageBackend>,
    fail: AtomicBool,
}

impl FailingWrites {
    fn check(&self) -> Result<(), zcore_engine::BackendError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(zcore_engine::BackendError::engine(
                self.inner.kind(),
                "write",
                None,
                std::io::Error::other("injected I/O error"),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl StorageBackend for FailingWrites {
    fn kind(&self) -> zcore_engine::BackendKind {
        self.inner.kind()
    }
    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }
    async fn create_collection(
        &self,
        name: &CollectionName,
    ) -> Result<bool, zcore_engine::BackendError> {
        self.check()?;
        self.inner.create_collection(name).await
    }
    async fn open_collection(
        &self,
        name: &CollectionName,
    ) -> Result<(), zcore_engine::BackendError> {
        self.inner.open_collection(name).await
    }
    async fn list_collections(&self) -> Result<Vec<CollectionName>, zcore_engine::BackendError> {
        self.inner.list_collections().await
    }
    async fn drop_collection(
        &self,
        name: &CollectionName,
    ) -> Result<bool, zcore_engine::BackendError> {
        self.check()?;
        self.inner.drop_collection(name).await
    }
    async fn get(
        &self,
        name: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, zcore_engine::BackendError> {
        self.inner.get(name, key).await
    }
    async fn seek(
        &self,
        name: &CollectionName,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, zcore_engine::BackendError> {
        self.inner.seek(name, start, end).await
    }
    async fn scan(
        &self,
        name: &CollectionName,
        request: &zcore_engine::ScanRequest,
    ) -> Result<zcore_engine::ScanPage, zcore_engine::BackendError> {
        self.inner.scan(name, request).await
    }
    async fn write(
        &self,
        batch: zcore_engine::WriteBatch,
        durability: zcore_engine::Durability,
    ) -> Result<(), zcore_engine::BackendError> {
        self.check()?;
        self.inner.write(batch, durability).await
    }
    async fn sync(&self) -> Result<(), zcore_engine::BackendError> {
        self.check()?;
        self.inner.sync().await
    }
    async fn stats(&self) -> Result<zcore_engine::BackendStats, zcore_engine::BackendError> {
        self.inner.stats().await
    }
    async fn close(&self) -> Result<(), zcore_engine::BackendError> {
        self.inner.close().await
    }
}

#[tokio::test]
async fn a_failed_apply_is_final_until_reopened() {
    let dir = TempDir::new().unwrap();
    let backend = Arc::new(FailingWrites {
        inner: Arc::new(zcore_backends::MemoryBackend::new()),
        fail: AtomicBool::new(false),
    });
    let open = || {
        let backend: Arc<dyn StorageBackend> = backend.clone();
        let options = EngineOptions {
            gc_interval: None,
            ..EngineOptions::default()
        };
        StateMachineStore::open(backend, dir.path().join("snapshots"), options)
    };
    let mut sm = open().await.unwrap();
    let create = Request {
        id: None,
        command: Command::CreateCollection("kv".into()),
    };
    let write_b = || Request {
        id: None,
        command: write(2, "b", "2"),
    };
    sm.apply([entry(1, create), entry(2, req(1, 1, write(1, "a", "1")))])
        .await
        .unwrap();
    // The disk fails the write of entry 3: the apply fails, and with it the store. Its
    // in-memory state went past the data (applied id 3, the session of client 2), so
    // neither openraft nor a snapshot build may see it any more.
    backend.fail.store(true, Ordering::Relaxed);
    let err = sm
        .apply([entry(3, req(2, 1, write(2, "b", "2")))])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected I/O error"), "{err}");
    backend.fail.store(false, Ordering::Relaxed);
    let applied = sm.applied_state().await.map(|(a, _)| a.map(|l| l.index));
    assert!(
        !matches!(applied, Ok(Some(3))),
        "the applied state claims entry 3, whose data was never written"
    );
    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .map(|s| s.meta.last_log_id.map(|l| l.index));
    assert!(
        !matches!(built, Ok(Some(3))),
        "a snapshot claims entry 3 without its data"
    );
    assert!(sm.has_failed());
    assert!(applied.is_err() && built.is_err());
    assert!(sm.apply([entry(3, write_b())]).await.is_err());
    assert_eq!(get(&sm, "b").await, None, "nothing of entry 3 is visible");
    drop(sm);

    // Reopened from the backend: applied through 2; entry 3 applies again and is kept.
    let mut sm = open().await.unwrap();
    assert!(!sm.has_failed());
    assert_eq!(
        sm.applied_state().await.unwrap().0.map(|l| l.index),
        Some(2)
    );
    let r = sm
        .apply([entry(3, req(2, 1, write(2, "b", "2")))])
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Committed { version: 3 });
    assert_eq!(get(&sm, "b").await.as_deref(), Some("2"));
    let snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(3));
}
