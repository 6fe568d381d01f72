//! The transaction-layer suite: every case runs on every backend through
//! [`mvcc_suite!`](crate::mvcc_suite), using the same [`Harness`] as the conformance suite.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::sync::Arc;

use super::conformance::{CaseResult, Harness};
use crate::mvcc::{Engine, EngineOptions, Isolation, TxnError, WriteOptions};
use crate::{CollectionName, Direction, Durability, KeyRange, ScanRequest};

/// Expands every transaction-layer case into a `#[test]` for the harness built by `$harness`.
#[macro_export]
macro_rules! mvcc_suite {
    ($harness:expr) => {
        $crate::mvcc_suite!(@cases $harness;
            read_your_own_writes_in_get_and_scans,
            snapshots_and_time_travel,
            lost_update_is_refused_under_both_levels,
            write_skew_allowed_by_si_refused_by_serializable,
            phantom_insert_into_scanned_range_is_refused,
            read_only_transactions_never_conflict,
            conflict_tracking_off_lets_anomalies_through,
            conflict_error_names_collection_key_and_versions,
            savepoints_nest_roll_back_and_release,
            multi_collection_commit_is_atomic,
            versions_and_data_survive_restart,
            sequences_are_unique_monotonic_and_durable,
            gc_never_removes_a_visible_version,
            bank_transfers_keep_the_total,
            bad_input_is_refused_with_typed_errors,
            update_heavy_workload_keeps_versions_bounded,
            background_gc_removes_superseded_versions,
            verify_is_clean_and_catches_damaged_versions,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::conformance::run($harness, $crate::testing::mvcc::$case);
            }
        )*
    };
}

type R<T> = Result<T, TxnError>;

fn col(name: &str) -> CollectionName {
    CollectionName::new(name).expect("valid test collection name")
}

fn options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    }
}

async fn engine(h: &Arc<dyn Harness>, options: EngineOptions) -> R<Engine> {
    Engine::open(h.open()?, options).await
}

async fn setup(h: &Arc<dyn Harness>, names: &[&str]) -> R<(Engine, Vec<CollectionName>)> {
    let e = engine(h, options()).await?;
    let mut cols = Vec::new();
    for n in names {
        let c = col(n);
        e.create_collection(&c).await?;
        cols.push(c);
    }
    Ok((e, cols))
}

async fn put_one(e: &Engine, c: &CollectionName, k: &[u8], v: &[u8]) -> R<u64> {
    let mut tx = e.begin_write();
    tx.put(c, k, v)?;
    Ok(tx.commit().await?.version)
}

fn wrap(r: R<()>) -> CaseResult {
    r.map_err(|e| match e {
        TxnError::Backend(b) => b,
        other => panic!("transaction error: {other}"),
    })
}

async fn scan_keys(
    tx: &mut crate::mvcc::WriteTransaction,
    c: &CollectionName,
    range: KeyRange,
    direction: Direction,
    limit: usize,
) -> R<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut request = Some(ScanRequest {
        range,
        direction,
        limit,
    });
    while let Some(req) = request.take() {
        let page = tx.scan(c, &req).await?;
        assert!(page.entries.len() <= limit);
        request = req.next_page(&page);
        out.extend(page.entries.into_iter().map(|(k, _)| k));
    }
    Ok(out)
}

/// Own writes (puts over committed keys, new keys, deletes of committed keys) show in `get` and
/// in paged scans in both directions.
pub async fn read_your_own_writes_in_get_and_scans(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["ryow"]).await?;
            let c = &cols[0];
            let mut tx = e.begin_write();
            for k in [b"b", b"d", b"f", b"h"] {
                tx.put(c, k.to_vec(), b"committed".to_vec())?;
            }
            tx.commit().await?;
            let mut tx = e.begin_write();
            tx.put(c, b"a".to_vec(), b"new".to_vec())?;
            tx.put(c, b"d".to_vec(), b"overwritten".to_vec())?;
            tx.delete(c, b"f".to_vec())?;
            tx.put(c, b"g".to_vec(), b"new".to_vec())?;
            tx.delete(c, b"zz".to_vec())?;
            assert_eq!(tx.get(c, b"d").await?, Some(b"overwritten".to_vec()));
            assert_eq!(tx.get(c, b"f").await?, None);
            assert_eq!(tx.get(c, b"a").await?, Some(b"new".to_vec()));
            assert_eq!(tx.get(c, b"b").await?, Some(b"committed".to_vec()));
            let expected: Vec<Vec<u8>> = [b"a", b"b", b"d", b"g", b"h"]
                .iter()
                .map(|k| k.to_vec())
                .collect();
            for limit in [1, 2, 3, 100] {
                assert_eq!(
                    scan_keys(&mut tx, c, KeyRange::all(), Direction::Forward, limit).await?,
                    expected
                );
                let mut rev = expected.clone();
                rev.reverse();
                assert_eq!(
                    scan_keys(&mut tx, c, KeyRange::all(), Direction::Reverse, limit).await?,
                    rev
                );
            }
            let mid = scan_keys(
                &mut tx,
                c,
                KeyRange::half_open(b"c".to_vec(), b"h".to_vec()),
                Direction::Forward,
                2,
            )
            .await?;
            assert_eq!(mid, vec![b"d".to_vec(), b"g".to_vec()]);
            // Another transaction sees none of it until commit.
            let other = e.begin_read();
            assert_eq!(other.get(c, b"a").await?, None);
            tx.commit().await?;
            assert_eq!(
                other.get(c, b"a").await?,
                None,
                "an older snapshot stays unchanged"
            );
            let after = e.begin_read();
            let page = after
                .scan(c, &ScanRequest::forward(KeyRange::all(), 100))
                .await?;
            let keys: Vec<Vec<u8>> = page.entries.into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, expected);
            e.close().await
        }
        .await,
    )
}

/// A snapshot keeps reading its version; time travel reads any retained version; future and
/// collected versions are refused.
pub async fn snapshots_and_time_travel(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["tt"]).await?;
            let c = &cols[0];
            let mut versions = Vec::new();
            for i in 0u8..5 {
                versions.push(put_one(&e, c, b"k", &[i]).await?);
            }
            assert!(
                versions.windows(2).all(|w| w[0] < w[1]),
                "versions increase"
            );
            assert_eq!(e.latest_version(), versions[4]);
            for (i, v) in versions.iter().enumerate() {
                let r = e.begin_read_at(*v)?;
                assert_eq!(r.get(c, b"k").await?, Some(vec![i as u8]));
            }
            let before_first = e.begin_read_at(versions[0] - 1)?;
            assert_eq!(before_first.get(c, b"k").await?, None);
            drop(before_first);
            assert!(matches!(
                e.begin_read_at(versions[4] + 1),
                Err(TxnError::VersionNotCommitted { .. })
            ));
            let held = e.begin_read();
            put_one(&e, c, b"k", b"later").await?;
            assert_eq!(held.get(c, b"k").await?, Some(vec![4]));
            drop(held);
            let report = e.collect_garbage().await?;
            assert!(
                report.versions_removed >= 4,
                "old versions collected: {report:?}"
            );
            assert!(matches!(
                e.begin_read_at(versions[0]),
                Err(TxnError::VersionNotRetained { .. })
            ));
            assert_eq!(e.begin_read().get(c, b"k").await?, Some(b"later".to_vec()));
            e.close().await
        }
        .await,
    )
}

/// Two read-modify-write transactions on one key: the second to commit fails, at both levels.
pub async fn lost_update_is_refused_under_both_levels(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["counter"]).await?;
            let c = &cols[0];
            put_one(&e, c, b"n", b"0").await?;
            for isolation in [Isolation::Serializable, Isolation::Snapshot] {
                let opts = WriteOptions {
                    isolation,
                    durability: Durability::Synced,
                };
                let mut t1 = e.begin_write_with(opts);
                let mut t2 = e.begin_write_with(opts);
                let v1 = t1.get(c, b"n").await?.unwrap();
                let v2 = t2.get(c, b"n").await?.unwrap();
                t1.put(c, b"n".to_vec(), [v1, b"+1".to_vec()].concat())?;
                t2.put(c, b"n".to_vec(), [v2, b"+1".to_vec()].concat())?;
                t1.commit().await?;
                let second = t2.commit().await;
                assert!(
                    matches!(second, Err(TxnError::Conflict { .. })),
                    "{isolation:?}: {second:?}"
                );
            }
            assert_eq!(e.begin_read().get(c, b"n").await?, Some(b"0+1+1".to_vec()));
            e.close().await
        }
        .await,
    )
}

async fn write_skew(e: &Engine, c: &CollectionName, isolation: Isolation) -> R<bool> {
    // Invariant: at least one doctor on call. Each transaction checks both, then takes one off.
    let mut setup = e.begin_write();
    setup.put(c, b"alice", b"on")?;
    setup.put(c, b"bob", b"on")?;
    setup.commit().await?;
    let opts = WriteOptions {
        isolation,
        durability: Durability::Buffered,
    };
    let mut t1 = e.begin_write_with(opts);
    let mut t2 = e.begin_write_with(opts);
    for t in [&mut t1, &mut t2] {
        assert_eq!(t.get(c, b"alice").await?, Some(b"on".to_vec()));
        assert_eq!(t.get(c, b"bob").await?, Some(b"on".to_vec()));
    }
    t1.put(c, b"alice", b"off")?;
    t2.put(c, b"bob", b"off")?;
    t1.commit().await?;
    match t2.commit().await {
        Ok(_) => Ok(true),
        Err(TxnError::Conflict { .. }) => Ok(false),
        Err(other) => Err(other),
    }
}

/// Write skew: snapshot isolation allows it (both commit), serializable refuses the second.
pub async fn write_skew_allowed_by_si_refused_by_serializable(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["oncall"]).await?;
            let c = &cols[0];
            assert!(
                write_skew(&e, c, Isolation::Snapshot).await?,
                "SI permits write skew"
            );
            let r = e.begin_read();
            assert_eq!(
                (r.get(c, b"alice").await?, r.get(c, b"bob").await?),
                (Some(b"off".to_vec()), Some(b"off".to_vec())),
                "the anomaly really happened under SI"
            );
            drop(r);
            assert!(
                !write_skew(&e, c, Isolation::Serializable).await?,
                "serializable refuses it"
            );
            e.close().await
        }
        .await,
    )
}

/// A scan that saw no key in a range, then a concurrent insert into that range: serializable
/// refuses the scanning transaction; snapshot isolation lets it through.
pub async fn phantom_insert_into_scanned_range_is_refused(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["orders", "summary"]).await?;
            let (orders, summary) = (&cols[0], &cols[1]);
            for (isolation, refused) in [
                (Isolation::Serializable, true),
                (Isolation::Snapshot, false),
            ] {
                let opts = WriteOptions {
                    isolation,
                    durability: Durability::Buffered,
                };
                let mut reporter = e.begin_write_with(opts);
                let prefix = format!("{isolation:?}/");
                let seen = reporter.scan_prefix(orders, prefix.as_bytes()).await?;
                let mut inserter = e.begin_write();
                inserter.put(orders, format!("{prefix}order-1").into_bytes(), b"10")?;
                inserter.commit().await?;
                reporter.put(
                    summary,
                    prefix.clone().into_bytes(),
                    format!("{} orders", seen.len()).into_bytes(),
                )?;
                let result = reporter.commit().await;
                assert_eq!(
                    matches!(result, Err(TxnError::Conflict { .. })),
                    refused,
                    "{isolation:?}: {result:?}"
                );
            }
            // A paged scan only claims the part it returned: an insert after the page's last key
            // does not conflict.
            let mut setup = e.begin_write();
            for k in [b"p/1", b"p/2", b"p/3"] {
                setup.put(orders, k.to_vec(), b"x")?;
            }
            setup.commit().await?;
            let mut reader = e.begin_write();
            let page = reader
                .scan(orders, &ScanRequest::forward(KeyRange::prefix(b"p/"), 2))
                .await?;
            assert_eq!(page.entries.len(), 2);
            put_one(&e, orders, b"p/4", b"late").await?;
            reader.put(summary, b"p".to_vec(), b"saw two")?;
            reader.commit().await?;
            e.close().await
        }
        .await,
    )
}

/// Read-only transactions commit regardless of concurrent writes.
pub async fn read_only_transactions_never_conflict(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["ro"]).await?;
            let c = &cols[0];
            put_one(&e, c, b"k", b"1").await?;
            let mut ro = e.begin_write();
            assert_eq!(ro.get(c, b"k").await?, Some(b"1".to_vec()));
            let _ = ro.scan_prefix(c, b"").await?;
            put_one(&e, c, b"k", b"2").await?;
            put_one(&e, c, b"other", b"x").await?;
            let info = ro.commit().await?;
            assert!(!info.wrote);
            e.close().await
        }
        .await,
    )
}

/// Negative control: with validation switched off, the lost-update and write-skew checks above
/// would fail (both transactions commit). This proves those tests can fail.
pub async fn conflict_tracking_off_lets_anomalies_through(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let e = engine(
                &h,
                EngineOptions {
                    disable_conflict_detection: true,
                    ..options()
                },
            )
            .await?;
            let c = col("broken");
            e.create_collection(&c).await?;
            put_one(&e, &c, b"n", b"0").await?;
            let mut t1 = e.begin_write();
            let mut t2 = e.begin_write();
            t1.get(&c, b"n").await?;
            t2.get(&c, b"n").await?;
            t1.put(&c, b"n", b"t1")?;
            t2.put(&c, b"n", b"t2")?;
            t1.commit().await?;
            assert!(
                t2.commit().await.is_ok(),
                "without validation the lost update goes through"
            );
            assert!(
                write_skew(&e, &c, Isolation::Serializable).await?,
                "and so does write skew"
            );
            e.close().await
        }
        .await,
    )
}

/// The conflict error names the collection, the key, the read version and the winner.
pub async fn conflict_error_names_collection_key_and_versions(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["accounts"]).await?;
            let c = &cols[0];
            put_one(&e, c, b"acct-7", b"100").await?;
            let mut loser = e.begin_write();
            let read_version = loser.read_version();
            loser.get(c, b"acct-7").await?;
            let winner = put_one(&e, c, b"acct-7", b"50").await?;
            loser.put(c, b"acct-7", b"0")?;
            match loser.commit().await {
                Err(TxnError::Conflict {
                    collection,
                    key,
                    read_version: rv,
                    conflicting_version,
                }) => {
                    assert_eq!(&collection, c);
                    assert_eq!(rv, read_version);
                    assert_eq!(conflicting_version, winner);
                    assert!(key.to_string().contains(&hex(b"acct-7")), "{key}");
                    let message = TxnError::Conflict {
                        collection,
                        key,
                        read_version: rv,
                        conflicting_version,
                    }
                    .to_string();
                    assert!(
                        message.contains("accounts") && message.contains(&winner.to_string()),
                        "{message}"
                    );
                }
                other => panic!("expected a conflict, got {other:?}"),
            }
            e.close().await
        }
        .await,
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Savepoints: nested, rollback-to discards later savepoints and keeps its own, release keeps
/// writes, all across collections and visible to the transaction's own reads.
pub async fn savepoints_nest_roll_back_and_release(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["users", "sessions"]).await?;
            let (users, sessions) = (&cols[0], &cols[1]);
            put_one(&e, users, b"u0", b"committed").await?;
            let mut tx = e.begin_write();
            tx.put(users, b"u1", b"one")?;
            tx.create_savepoint("a");
            tx.put(users, b"u2", b"two")?;
            tx.put(sessions, b"s1", b"session")?;
            tx.delete(users, b"u0")?;
            tx.create_savepoint("b");
            tx.put(users, b"u1", b"one-changed")?;
            tx.put(users, b"u3", b"three")?;
            assert_eq!(tx.savepoints(), vec!["a", "b"]);
            assert_eq!(tx.get(users, b"u0").await?, None);
            tx.rollback_to_savepoint("b")?;
            assert_eq!(tx.get(users, b"u1").await?, Some(b"one".to_vec()));
            assert_eq!(tx.get(users, b"u3").await?, None);
            assert_eq!(
                tx.savepoints(),
                vec!["a", "b"],
                "rollback-to keeps the savepoint"
            );
            tx.rollback_to_savepoint("a")?;
            assert_eq!(tx.savepoints(), vec!["a"], "later savepoints are discarded");
            assert!(matches!(
                tx.rollback_to_savepoint("b"),
                Err(TxnError::SavepointNotFound { .. })
            ));
            assert_eq!(
                tx.get(users, b"u0").await?,
                Some(b"committed".to_vec()),
                "delete undone"
            );
            assert_eq!(
                tx.get(sessions, b"s1").await?,
                None,
                "undone across collections"
            );
            let keys = scan_keys(&mut tx, users, KeyRange::all(), Direction::Forward, 10).await?;
            assert_eq!(keys, vec![b"u0".to_vec(), b"u1".to_vec()]);
            tx.put(sessions, b"s2", b"kept")?;
            tx.create_savepoint("c");
            tx.put(sessions, b"s3", b"kept too")?;
            tx.release_savepoint("c")?;
            assert!(matches!(
                tx.rollback_to_savepoint("c"),
                Err(TxnError::SavepointNotFound { .. })
            ));
            tx.rollback_to_savepoint("a")?;
            assert_eq!(
                tx.get(sessions, b"s3").await?,
                None,
                "release keeps writes until an outer rollback"
            );
            tx.put(sessions, b"s4", b"final")?;
            tx.commit().await?;
            let r = e.begin_read();
            assert_eq!(r.get(users, b"u0").await?, Some(b"committed".to_vec()));
            assert_eq!(r.get(users, b"u1").await?, Some(b"one".to_vec()));
            assert_eq!(r.get(users, b"u2").await?, None);
            assert_eq!(r.get(sessions, b"s4").await?, Some(b"final".to_vec()));
            assert_eq!(r.get(sessions, b"s2").await?, None);
            e.close().await
        }
        .await,
    )
}

/// A commit spanning collections is all or nothing for concurrent readers; a failed commit
/// writes nothing anywhere.
pub async fn multi_collection_commit_is_atomic(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["a", "b", "c"]).await?;
            let writer = {
                let e = e.clone();
                let cols = cols.clone();
                tokio::spawn(async move {
                    for round in 1u32..=60 {
                        let mut tx = e.begin_write_with(WriteOptions {
                            durability: Durability::Buffered,
                            ..WriteOptions::default()
                        });
                        for c in &cols {
                            tx.put(c, b"round", round.to_be_bytes())?;
                        }
                        tx.commit().await?;
                    }
                    Ok::<(), TxnError>(())
                })
            };
            loop {
                let r = e.begin_read();
                let mut seen = Vec::new();
                for c in &cols {
                    seen.push(r.get(c, b"round").await?);
                }
                assert!(
                    seen.windows(2).all(|w| w[0] == w[1]),
                    "torn commit observed: {seen:?}"
                );
                if writer.is_finished() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            writer.await.expect("writer")?;
            // A conflicting commit across all three collections leaves no trace.
            let mut loser = e.begin_write();
            loser.get(&cols[0], b"round").await?;
            put_one(&e, &cols[0], b"round", b"winner").await?;
            for c in &cols {
                loser.put(c, b"loser", b"x")?;
            }
            assert!(loser.commit().await.is_err());
            let r = e.begin_read();
            for c in &cols {
                assert_eq!(r.get(c, b"loser").await?, None);
            }
            e.close().await
        }
        .await,
    )
}

/// Versions survive restart: the reopened engine reads the same data at the same version and
/// continues numbering above it.
pub async fn versions_and_data_survive_restart(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["persist"]).await?;
            let c = &cols[0];
            let mut last = 0;
            for i in 0u8..10 {
                last = put_one(&e, c, &[b'k', i], &[i]).await?;
            }
            let mut tx = e.begin_write_with(WriteOptions {
                durability: Durability::Buffered,
                ..WriteOptions::default()
            });
            tx.put(c, b"buffered", b"closed cleanly")?;
            last = tx.commit().await?.version.max(last);
            e.close().await?;
            let e = engine(&h, options()).await?;
            if !e.backend().is_persistent() {
                assert_eq!(e.latest_version(), 0, "a memory store restarts empty");
                return e.close().await;
            }
            // The oracle resumes at its durable version lease: at or above every commit.
            assert!(
                e.latest_version() >= last,
                "{} < {last}",
                e.latest_version()
            );
            assert_eq!(e.collections(), vec![c.clone()]);
            let r = e.begin_read();
            assert_eq!(r.get(c, b"k\x05").await?, Some(vec![5]));
            assert_eq!(
                r.get(c, b"buffered").await?,
                Some(b"closed cleanly".to_vec())
            );
            drop(r);
            let resumed = e.latest_version();
            let next = put_one(&e, c, b"after", b"restart").await?;
            assert!(next > resumed && resumed >= last);
            assert_eq!(e.begin_read_at(resumed)?.get(c, b"after").await?, None);
            assert_eq!(
                e.begin_read_at(next)?.get(c, b"after").await?,
                Some(b"restart".to_vec())
            );
            // k9 was written at `last - 1`, so one version earlier it did not exist yet.
            assert_eq!(
                e.begin_read_at(last - 1)?.get(c, b"k\x09").await?,
                Some(vec![9])
            );
            assert_eq!(
                e.begin_read_at(last - 2)?.get(c, b"k\x09").await?,
                None,
                "time travel after restart"
            );
            e.close().await
        }
        .await,
    )
}

/// Sequences: per name, start at 1, unique and increasing under concurrency, never reused after
/// a restart.
pub async fn sequences_are_unique_monotonic_and_durable(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let e = engine(
                &h,
                EngineOptions {
                    sequence_block: 16,
                    ..options()
                },
            )
            .await?;
            assert_eq!(e.next_seq(b"users").await?, 1);
            assert_eq!(e.next_seq(b"users").await?, 2);
            assert_eq!(e.next_seq(b"posts").await?, 1);
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let e = e.clone();
                tasks.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    for _ in 0..50 {
                        got.push(e.next_seq(b"users").await?);
                    }
                    Ok::<Vec<u64>, TxnError>(got)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                let got = t.await.expect("task")?;
                assert!(got.windows(2).all(|w| w[0] < w[1]), "increasing per caller");
                all.extend(got);
            }
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), 400, "unique");
            assert_eq!(*all.first().unwrap(), 3);
            assert_eq!(*all.last().unwrap(), 402);
            assert!(matches!(
                e.next_seq(b"").await,
                Err(TxnError::InvalidSequenceName { .. })
            ));
            e.close().await?;
            let e = engine(
                &h,
                EngineOptions {
                    sequence_block: 16,
                    ..options()
                },
            )
            .await?;
            let after = e.next_seq(b"users").await?;
            if e.backend().is_persistent() {
                assert!(after > 402, "never reused after restart: {after}");
            } else {
                assert_eq!(after, 1);
            }
            e.close().await
        }
        .await,
    )
}

/// GC under concurrent snapshots: every value a live snapshot could read stays readable, and
/// superseded versions do go away once no snapshot needs them.
pub async fn gc_never_removes_a_visible_version(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["gc"]).await?;
            let c = &cols[0];
            let mut history: BTreeMap<u64, BTreeMap<Vec<u8>, Option<Vec<u8>>>> = BTreeMap::new();
            let mut state: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            let mut snapshots = Vec::new();
            for round in 0u32..40 {
                let mut tx = e.begin_write();
                for k in 0u8..6 {
                    let key = vec![b'k', k];
                    if (round + u32::from(k)) % 5 == 0 {
                        tx.delete(c, key.clone())?;
                        state.insert(key, None);
                    } else if (round * 7 + u32::from(k)) % 3 != 0 {
                        let value = format!("{round}-{k}").into_bytes();
                        tx.put(c, key.clone(), value.clone())?;
                        state.insert(key, Some(value));
                    }
                }
                let v = tx.commit().await?.version;
                history.insert(v, state.clone());
                if round % 9 == 0 {
                    snapshots.push(e.begin_read());
                }
                if round % 4 == 0 {
                    e.collect_garbage().await?;
                }
                for s in &snapshots {
                    let expected = &history[&s.version()];
                    for k in 0u8..6 {
                        let key = vec![b'k', k];
                        let want = expected.get(&key).cloned().flatten();
                        assert_eq!(
                            s.get(c, &key).await?,
                            want,
                            "snapshot {} key {k}",
                            s.version()
                        );
                    }
                }
            }
            let before = e.version_counts(c).await?;
            snapshots.clear();
            let report = e.collect_garbage().await?;
            let after = e.version_counts(c).await?;
            assert!(
                after.versions < before.versions,
                "{before:?} -> {after:?} ({report:?})"
            );
            assert!(
                after.versions <= 6,
                "at most one version per key remains: {after:?}"
            );
            let live = state.values().filter(|v| v.is_some()).count() as u64;
            assert_eq!(after.live_keys, live);
            let r = e.begin_read();
            for (k, v) in &state {
                assert_eq!(&r.get(c, k).await?, v);
            }
            e.close().await
        }
        .await,
    )
}

/// Concurrent serializable transfers with retries: the total never changes and no balance goes
/// negative.
pub async fn bank_transfers_keep_the_total(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["bank"]).await?;
            let c = &cols[0];
            const ACCOUNTS: u64 = 6;
            let mut init = e.begin_write();
            for a in 0..ACCOUNTS {
                init.put(c, a.to_be_bytes(), 100u64.to_be_bytes())?;
            }
            init.commit().await?;
            let mut tasks = Vec::new();
            for t in 0..6u64 {
                let e = e.clone();
                let c = c.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut committed, mut conflicts) = (0u32, 0u32);
                    for i in 0..25u64 {
                        let from = (t + i) % ACCOUNTS;
                        let to = (t * 3 + i * 5 + 1) % ACCOUNTS;
                        if from == to {
                            continue;
                        }
                        loop {
                            let mut tx = e.begin_write_with(WriteOptions {
                                durability: Durability::Buffered,
                                ..WriteOptions::default()
                            });
                            let read = |v: Option<Vec<u8>>| {
                                u64::from_be_bytes(v.unwrap().try_into().unwrap())
                            };
                            let a = read(tx.get(&c, &from.to_be_bytes()).await?);
                            let b = read(tx.get(&c, &to.to_be_bytes()).await?);
                            let amount = (i * 7 + t) % 40;
                            if amount > a {
                                break;
                            }
                            tx.put(&c, from.to_be_bytes(), (a - amount).to_be_bytes())?;
                            tx.put(&c, to.to_be_bytes(), (b + amount).to_be_bytes())?;
                            match tx.commit().await {
                                Ok(_) => {
                                    committed += 1;
                                    break;
                                }
                                Err(TxnError::Conflict { .. }) => {
                                    conflicts += 1;
                                    tokio::task::yield_now().await;
                                }
                                Err(other) => return Err(other),
                            }
                        }
                    }
                    Ok::<(u32, u32), TxnError>((committed, conflicts))
                }));
            }
            let mut committed = 0;
            for t in tasks {
                committed += t.await.expect("task")?.0;
            }
            assert!(committed > 0);
            let r = e.begin_read();
            let all = r.scan_prefix(c, b"").await?;
            let balances: Vec<u64> = all
                .iter()
                .map(|(_, v)| u64::from_be_bytes(v.clone().try_into().unwrap()))
                .collect();
            assert_eq!(balances.len() as u64, ACCOUNTS);
            assert_eq!(
                balances.iter().sum::<u64>(),
                ACCOUNTS * 100,
                "money created or destroyed"
            );
            e.close().await
        }
        .await,
    )
}

/// Bad input: empty and over-long keys, unknown collections, bad page limits — typed errors,
/// nothing written.
pub async fn bad_input_is_refused_with_typed_errors(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["input"]).await?;
            let c = &cols[0];
            let ghost = col("ghost");
            let mut tx = e.begin_write();
            assert!(matches!(
                tx.put(c, b"".to_vec(), b"v".to_vec()),
                Err(TxnError::InvalidKey { .. })
            ));
            let long = vec![0u8; crate::mvcc::MAX_USER_KEY_LEN + 1];
            assert!(matches!(
                tx.put(c, long.clone(), b"v".to_vec()),
                Err(TxnError::InvalidKey { .. })
            ));
            let longest = vec![0u8; crate::mvcc::MAX_USER_KEY_LEN];
            tx.put(c, longest.clone(), b"fits".to_vec())?;
            assert!(matches!(
                tx.put(&ghost, b"k".to_vec(), b"v".to_vec()),
                Err(TxnError::CollectionNotFound { .. })
            ));
            assert!(matches!(
                tx.get(&ghost, b"k").await,
                Err(TxnError::CollectionNotFound { .. })
            ));
            assert!(matches!(
                tx.delete(c, b"".to_vec()),
                Err(TxnError::InvalidKey { .. })
            ));
            assert!(matches!(
                tx.get(c, b"").await,
                Err(TxnError::InvalidKey { .. })
            ));
            assert!(matches!(
                tx.scan(c, &ScanRequest::forward(KeyRange::all(), 0)).await,
                Err(TxnError::Backend(
                    crate::BackendError::InvalidScanLimit { .. }
                ))
            ));
            tx.commit().await?;
            assert_eq!(
                e.begin_read().get(c, &longest).await?,
                Some(b"fits".to_vec())
            );
            assert!(matches!(
                e.begin_read().get(&ghost, b"k").await,
                Err(TxnError::CollectionNotFound { .. })
            ));
            e.close().await
        }
        .await,
    )
}

/// Under an update-heavy workload with regular GC the number of stored versions stays bounded
/// by what the GC interval lets accumulate, not by the number of updates.
pub async fn update_heavy_workload_keeps_versions_bounded(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["hot"]).await?;
            let c = &cols[0];
            const KEYS: u32 = 50;
            const GC_EVERY: u32 = 10;
            let mut peak = 0;
            for round in 0u32..100 {
                let mut tx = e.begin_write_with(WriteOptions {
                    durability: Durability::Buffered,
                    ..WriteOptions::default()
                });
                for k in 0..KEYS {
                    tx.put(c, k.to_be_bytes(), round.to_be_bytes())?;
                }
                tx.commit().await?;
                if round % GC_EVERY == GC_EVERY - 1 {
                    e.collect_garbage().await?;
                    let counts = e.version_counts(c).await?;
                    assert_eq!(
                        counts.versions,
                        u64::from(KEYS),
                        "one version per key right after GC"
                    );
                }
                peak = peak.max(e.version_counts(c).await?.versions);
            }
            assert!(
                peak <= u64::from(KEYS * GC_EVERY),
                "peak {peak} versions for 5000 updates"
            );
            e.close().await
        }
        .await,
    )
}

/// The background collector runs on its own (polled with a deadline, not a fixed sleep).
pub async fn background_gc_removes_superseded_versions(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let opts = EngineOptions {
                gc_interval: Some(std::time::Duration::from_millis(5)),
                ..EngineOptions::default()
            };
            let e = engine(&h, opts).await?;
            let c = col("background");
            e.create_collection(&c).await?;
            for round in 0u32..20 {
                put_one(&e, &c, b"k", &round.to_be_bytes()).await?;
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                if e.version_counts(&c).await?.versions == 1 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "background GC never collected"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(
                e.begin_read().get(&c, b"k").await?,
                Some(19u32.to_be_bytes().to_vec())
            );
            e.close().await
        }
        .await,
    )
}

/// `verify` passes a healthy store, and a damaged stored version (flipped value byte, a value
/// moved to another key, a malformed key) is reported by `verify` and refused by reads.
pub async fn verify_is_clean_and_catches_damaged_versions(h: Arc<dyn Harness>) -> CaseResult {
    wrap(
        async {
            let (e, cols) = setup(&h, &["audit"]).await?;
            let c = &cols[0];
            for i in 0u8..20 {
                put_one(&e, c, &[b'k', i], &[i; 10]).await?;
            }
            let clean = e.verify(10).await?;
            assert!(clean.is_clean(), "{clean:?}");
            assert_eq!(
                clean
                    .collections
                    .iter()
                    .find(|x| x.name == "audit")
                    .map(|x| x.entries),
                Some(20)
            );
            // Damage: flip a byte of one stored value; copy another key's value onto a key;
            // store a key that is not a versioned key.
            let page = e
                .backend()
                .scan(c, &ScanRequest::forward(KeyRange::all(), 3))
                .await?;
            let (k0, v0) = page.entries[0].clone();
            let (k1, _) = page.entries[1].clone();
            let mut flipped = v0.clone();
            *flipped.last_mut().unwrap() ^= 0x40;
            let mut batch = crate::WriteBatch::new();
            batch.put(c, k0.clone(), flipped);
            batch.put(c, k1.clone(), v0.clone());
            batch.put(c, b"not-a-versioned-key".to_vec(), b"junk".to_vec());
            e.backend().write(batch, Durability::Synced).await?;
            let report = e.verify(10).await?;
            assert_eq!(report.problems_total, 3, "{report:?}");
            assert!(!report.is_clean());
            let r = e.begin_read();
            for key in [&k0, &k1] {
                let user = crate::mvcc::keys::VersionedKey::from_stored(key.clone())
                    .unwrap()
                    .user_key()
                    .unwrap();
                assert!(
                    matches!(r.get(c, &user).await, Err(TxnError::Corrupted { .. })),
                    "damaged value returned as data"
                );
            }
            e.close().await
        }
        .await,
    )
}
