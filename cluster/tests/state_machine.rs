//! The state machine on its own: versions are log indexes, validation is deterministic,
//! retries are applied once, applied state and data survive a restart, and a snapshot with
//! data installs on another replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use tempfile::TempDir;
use zcore_backends::{RedbBackend, RedbOptions};
use zcore_cluster::{Command, Outcome, Request, RequestId, StateMachineStore, TypeConfig};
use zcore_engine::mvcc::replica::{ReplicatedTxn, ReplicatedWrite};
use zcore_engine::{CollectionName, EngineOptions, Isolation, StorageBackend};

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
    let backend: Arc<dyn StorageBackend> =
        Arc::new(RedbBackend::open(dir.join("store.redb"), &RedbOptions::default()).unwrap());
    let options = EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    };
    StateMachineStore::open(backend, dir.join("snapshots"), options)
        .await
        .unwrap()
}

#[tokio::test]
async fn apply_dedupe_restart_and_snapshot_install() {
    let dir = TempDir::new().unwrap();
    let mut sm = open(dir.path()).await;
    let id = |serial| Some(RequestId { client: 7, serial });
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
