//! The `StorageBackend` conformance suite: one async case per contract clause (C1–C15 in
//! [`crate::StorageBackend`]), written once and expanded into one `#[test]` per backend by
//! [`backend_conformance_suite!`](crate::backend_conformance_suite).
//!
//! ```text
//! mod fjall {
//!     zcore_engine::backend_conformance_suite!(crate::FjallHarness::new());
//! }
//! ```
//!
//! The test names then read `fjall::c5_order_is_bytewise`, so a failure names the backend.
//! Cases panic (through `assert!`) on a contract violation and return `Err` when the backend
//! fails an operation the case expected to succeed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;

use crate::limits::{MAX_KEY_LEN, MAX_SCAN_LIMIT, MAX_VALUE_LEN};
use crate::{
    BackendError, CollectionName, Direction, Durability, KeyProblem, KeyRange, ScanRequest,
    StorageBackend, WriteBatch,
};

/// Opens the backend under test. Each test gets a fresh harness (its own directory); calling
/// [`Harness::open`] again after [`StorageBackend::close`] reopens the same location.
pub trait Harness: Send + Sync + 'static {
    /// Opens (or reopens) the store.
    ///
    /// # Errors
    ///
    /// Whatever opening the backend fails with.
    fn open(&self) -> Result<Arc<dyn StorageBackend>, BackendError>;
}

/// Result of a case.
pub type CaseResult = Result<(), BackendError>;

/// Runs one case on a fresh multi-threaded tokio runtime (two workers, so blocking-pool
/// hand-offs and concurrent tasks are real).
pub fn run<H, F, Fut>(harness: H, case: F)
where
    H: Harness,
    F: FnOnce(Arc<dyn Harness>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build tokio runtime");
    if let Err(e) = runtime.block_on(case(Arc::new(harness))) {
        panic!("backend operation failed: {e}");
    }
}

/// Expands every conformance case into a `#[test]` for the harness built by `$harness`.
#[macro_export]
macro_rules! backend_conformance_suite {
    ($harness:expr) => {
        $crate::backend_conformance_suite!(@cases $harness;
            c1_create_is_idempotent_and_list_is_sorted,
            c1_drop_removes_entries_and_recreate_is_empty,
            c2_collections_are_isolated,
            c3_unknown_collections_are_errors_and_change_nothing,
            c4_reads_see_acknowledged_writes,
            c5_order_is_bytewise,
            c5_bounds_of_every_kind,
            c5_empty_and_inverted_ranges,
            c5_seek_returns_the_first_entry_of_an_inclusive_range,
            c6_pages_resume_exactly,
            c6_a_page_never_shows_part_of_a_batch,
            c7_failed_batch_applies_nothing,
            c7_later_operation_in_a_batch_wins,
            c7_empty_batch_is_a_noop,
            c8_delete_semantics,
            c9_synced_batches_survive_reopen,
            c10_sync_then_reopen_keeps_buffered_batches,
            c11_collections_and_entries_survive_reopen,
            c12_close_rejects_later_calls,
            c13_key_limits,
            c13_value_and_scan_limits,
            c13_bad_input_leaves_store_openable,
            c14_stats_list_collections_with_counts,
            c15_concurrent_writers_and_readers,
            c17_compact_keeps_every_entry,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::conformance::run($harness, $crate::testing::conformance::$case);
            }
        )*
    };
}

fn col(name: &str) -> CollectionName {
    CollectionName::new(name).expect("valid test collection name")
}

async fn put(
    b: &dyn StorageBackend,
    c: &CollectionName,
    key: &[u8],
    value: &[u8],
    durability: Durability,
) -> CaseResult {
    let mut batch = WriteBatch::new();
    batch.put(c, key, value);
    b.write(batch, durability).await
}

async fn delete(b: &dyn StorageBackend, c: &CollectionName, key: &[u8]) -> CaseResult {
    let mut batch = WriteBatch::new();
    batch.delete(c, key);
    b.write(batch, Durability::Buffered).await
}

/// Scans the whole request, page after page, checking C6's page shape on the way.
async fn scan_all(
    b: &dyn StorageBackend,
    c: &CollectionName,
    first: ScanRequest,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, BackendError> {
    let mut out = Vec::new();
    let mut request = Some(first);
    let mut pages = 0usize;
    while let Some(req) = request {
        let page = b.scan(c, &req).await?;
        assert!(page.entries.len() <= req.limit, "page exceeds its limit");
        assert_eq!(
            page.resume.is_some(),
            page.entries.len() == req.limit,
            "resume must be set exactly when the page is full"
        );
        request = req.next_page(&page);
        out.extend(page.entries);
        pages += 1;
        assert!(pages < 1_000_000, "scan does not terminate");
    }
    Ok(out)
}

fn keys_of(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

/// C1: create is idempotent, list is sorted and complete.
pub async fn c1_create_is_idempotent_and_list_is_sorted(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    assert!(
        b.list_collections().await?.is_empty(),
        "a new store has no collections"
    );
    let names = ["zeta", "alpha", "m.id-dle", "_under", "Beta", "2fa_codes"];
    for n in names {
        assert!(
            b.create_collection(&col(n)).await?,
            "first create of {n} reports created"
        );
    }
    for n in names {
        assert!(
            !b.create_collection(&col(n)).await?,
            "second create of {n} reports existing"
        );
    }
    let system = CollectionName::system("__meta").expect("valid system name");
    assert!(b.create_collection(&system).await?);
    let mut expected: Vec<CollectionName> = names.iter().map(|n| col(n)).collect();
    expected.push(system);
    expected.sort();
    assert_eq!(b.list_collections().await?, expected);
    for n in names {
        b.open_collection(&col(n)).await?;
    }
    b.close().await
}

/// C1: drop removes a collection with its entries; re-creating it yields an empty one.
pub async fn c1_drop_removes_entries_and_recreate_is_empty(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("doomed");
    b.create_collection(&c).await?;
    put(&*b, &c, b"k", b"v", Durability::Synced).await?;
    assert!(
        b.drop_collection(&c).await?,
        "drop of an existing collection reports true"
    );
    assert!(!b.drop_collection(&c).await?, "second drop reports false");
    assert!(b.list_collections().await?.is_empty());
    assert!(matches!(
        b.get(&c, b"k").await,
        Err(BackendError::CollectionNotFound { .. })
    ));
    assert!(b.create_collection(&c).await?);
    assert_eq!(
        b.get(&c, b"k").await?,
        None,
        "re-created collection is empty"
    );
    assert!(
        scan_all(&*b, &c, ScanRequest::forward(KeyRange::all(), 10))
            .await?
            .is_empty()
    );
    b.close().await
}

/// C2: the same key in two collections is two entries; dropping one leaves the other.
pub async fn c2_collections_are_isolated(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let (x, y) = (col("x"), col("y"));
    b.create_collection(&x).await?;
    b.create_collection(&y).await?;
    let mut batch = WriteBatch::new();
    batch.put(&x, b"k", b"in x");
    batch.put(&y, b"k", b"in y");
    batch.put(&x, b"only-x", b"1");
    b.write(batch, Durability::Synced).await?;
    assert_eq!(b.get(&x, b"k").await?, Some(b"in x".to_vec()));
    assert_eq!(b.get(&y, b"k").await?, Some(b"in y".to_vec()));
    assert_eq!(b.get(&y, b"only-x").await?, None);
    let all_y = scan_all(&*b, &y, ScanRequest::forward(KeyRange::all(), 10)).await?;
    assert_eq!(all_y, vec![(b"k".to_vec(), b"in y".to_vec())]);
    delete(&*b, &x, b"k").await?;
    assert_eq!(
        b.get(&y, b"k").await?,
        Some(b"in y".to_vec()),
        "delete in x leaves y"
    );
    b.drop_collection(&x).await?;
    assert_eq!(
        b.get(&y, b"k").await?,
        Some(b"in y".to_vec()),
        "drop of x leaves y"
    );
    b.close().await
}

/// C3: operations on a missing collection fail with `CollectionNotFound`; a batch naming one
/// changes nothing, also in the collections it names that do exist.
pub async fn c3_unknown_collections_are_errors_and_change_nothing(
    h: Arc<dyn Harness>,
) -> CaseResult {
    let b = h.open()?;
    let (real, ghost) = (col("real"), col("ghost"));
    b.create_collection(&real).await?;
    let is_not_found = |r: &Result<_, BackendError>, expect: &CollectionName| matches!(r, Err(BackendError::CollectionNotFound { collection }) if collection == expect);
    assert!(is_not_found(&b.open_collection(&ghost).await, &ghost));
    assert!(is_not_found(&b.get(&ghost, b"k").await.map(|_| ()), &ghost));
    assert!(is_not_found(
        &b.scan(&ghost, &ScanRequest::forward(KeyRange::all(), 1))
            .await
            .map(|_| ()),
        &ghost
    ));
    let mut batch = WriteBatch::new();
    batch.put(&real, b"a", b"1");
    batch.put(&ghost, b"b", b"2");
    batch.put(&real, b"c", b"3");
    assert!(is_not_found(
        &b.write(batch, Durability::Synced).await,
        &ghost
    ));
    assert_eq!(
        b.get(&real, b"a").await?,
        None,
        "rejected batch applied nothing"
    );
    assert_eq!(
        b.get(&real, b"c").await?,
        None,
        "rejected batch applied nothing"
    );
    assert_eq!(
        b.list_collections().await?,
        vec![real],
        "no collection was created"
    );
    b.close().await
}

/// C4: a call that starts after `write` returned sees the batch, for both durabilities.
pub async fn c4_reads_see_acknowledged_writes(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("c");
    b.create_collection(&c).await?;
    for (i, durability) in [Durability::Buffered, Durability::Synced]
        .into_iter()
        .enumerate()
    {
        for round in 0..20u8 {
            let key = [i as u8 + 1, round];
            put(&*b, &c, &key, &[round], durability).await?;
            assert_eq!(b.get(&c, &key).await?, Some(vec![round]));
            let page = b
                .scan(&c, &ScanRequest::forward(KeyRange::inclusive(key, key), 5))
                .await?;
            assert_eq!(page.entries, vec![(key.to_vec(), vec![round])]);
        }
    }
    b.close().await
}

/// Keys that break naive orderings: prefixes of each other, 0x00 and 0xFF everywhere.
fn tricky_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x00, 0xFF],
        vec![0x00, 0x00, 0x01],
        vec![0x01],
        b"a".to_vec(),
        b"a\x00".to_vec(),
        b"a\x00\x00".to_vec(),
        b"a\xff".to_vec(),
        b"ab".to_vec(),
        b"abc".to_vec(),
        b"abd".to_vec(),
        b"b".to_vec(),
        vec![0x7F],
        vec![0x80],
        vec![0xFE, 0xFF],
        vec![0xFF],
        vec![0xFF, 0x00],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF, 0xFF],
    ];
    keys.sort();
    keys
}

async fn load_tricky(b: &dyn StorageBackend, c: &CollectionName) -> CaseResult {
    // Insert in a scrambled order so the store, not the insertion order, sorts them.
    let keys = tricky_keys();
    let mut batch = WriteBatch::new();
    for i in (0..keys.len())
        .rev()
        .step_by(2)
        .chain((0..keys.len()).step_by(2))
    {
        batch.put(c, keys[i].clone(), format!("v{i}").into_bytes());
    }
    b.write(batch, Durability::Synced).await
}

/// C5: unsigned bytewise order, forward and reverse.
pub async fn c5_order_is_bytewise(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("order");
    b.create_collection(&c).await?;
    load_tricky(&*b, &c).await?;
    let expected = tricky_keys();
    let forward = scan_all(&*b, &c, ScanRequest::forward(KeyRange::all(), 1000)).await?;
    assert_eq!(keys_of(&forward), expected);
    let reverse = scan_all(&*b, &c, ScanRequest::reverse(KeyRange::all(), 1000)).await?;
    let mut expected_rev = expected.clone();
    expected_rev.reverse();
    assert_eq!(keys_of(&reverse), expected_rev);
    for (i, k) in expected.iter().enumerate() {
        let value = b.get(&c, k).await?.expect("every loaded key is readable");
        let original = tricky_keys()
            .iter()
            .position(|x| x == k)
            .expect("known key");
        assert_eq!(value, format!("v{original}").into_bytes(), "key #{i}");
    }
    let prefix = scan_all(&*b, &c, ScanRequest::forward(KeyRange::prefix(b"a"), 3)).await?;
    assert_eq!(
        keys_of(&prefix),
        vec![
            b"a".to_vec(),
            b"a\x00".to_vec(),
            b"a\x00\x00".to_vec(),
            b"ab".to_vec(),
            b"abc".to_vec(),
            b"abd".to_vec(),
            b"a\xff".to_vec(),
        ]
    );
    let ff = scan_all(&*b, &c, ScanRequest::reverse(KeyRange::prefix(&[0xFF]), 2)).await?;
    assert_eq!(
        keys_of(&ff),
        vec![
            vec![0xFF, 0xFF, 0xFF],
            vec![0xFF, 0xFF],
            vec![0xFF, 0x00],
            vec![0xFF]
        ]
    );
    b.close().await
}

/// C5: every combination of bound kinds, on present and absent boundary keys, both directions,
/// against a filter of the sorted key list.
pub async fn c5_bounds_of_every_kind(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("bounds");
    b.create_collection(&c).await?;
    load_tricky(&*b, &c).await?;
    let keys = tricky_keys();
    let probes: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00, 0x00],
        b"a".to_vec(),
        b"a\x00".to_vec(),
        b"aa".to_vec(),
        b"abc".to_vec(),
        vec![0xFF],
        vec![0xFF, 0xFF, 0xFF, 0xFF],
    ];
    let bounds = |k: &Vec<u8>| {
        [
            Bound::Included(k.clone()),
            Bound::Excluded(k.clone()),
            Bound::Unbounded,
        ]
    };
    let mut checked = 0usize;
    for lo in &probes {
        for hi in &probes {
            for start in bounds(lo) {
                for end in bounds(hi) {
                    let range = KeyRange::new(start.clone(), end.clone());
                    let expected: Vec<Vec<u8>> =
                        keys.iter().filter(|k| range.contains(k)).cloned().collect();
                    for limit in [1, 4, 100] {
                        let fwd =
                            scan_all(&*b, &c, ScanRequest::forward(range.clone(), limit)).await?;
                        assert_eq!(keys_of(&fwd), expected, "forward {range:?} limit {limit}");
                        let rev =
                            scan_all(&*b, &c, ScanRequest::reverse(range.clone(), limit)).await?;
                        let mut expected_rev = expected.clone();
                        expected_rev.reverse();
                        assert_eq!(
                            keys_of(&rev),
                            expected_rev,
                            "reverse {range:?} limit {limit}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, probes.len() * probes.len() * 9 * 3);
    b.close().await
}

/// C5: ranges that are empty by their bounds (inverted, or equal with an exclusive side)
/// return nothing and are not errors.
pub async fn c5_empty_and_inverted_ranges(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("empty");
    b.create_collection(&c).await?;
    load_tricky(&*b, &c).await?;
    let empty = [
        KeyRange::half_open(b"b".to_vec(), b"a".to_vec()),
        KeyRange::half_open(b"a".to_vec(), b"a".to_vec()),
        KeyRange::new(
            Bound::Excluded(b"a".to_vec()),
            Bound::Included(b"a".to_vec()),
        ),
        KeyRange::new(
            Bound::Excluded(b"a".to_vec()),
            Bound::Excluded(b"a".to_vec()),
        ),
        KeyRange::inclusive(vec![0xFF, 0xFF], vec![0x00]),
    ];
    for range in empty {
        for direction in [Direction::Forward, Direction::Reverse] {
            let request = ScanRequest {
                range: range.clone(),
                direction,
                limit: 10,
            };
            let page = b.scan(&c, &request).await?;
            assert!(
                page.entries.is_empty(),
                "{range:?} {direction:?} must be empty"
            );
            assert!(page.resume.is_none());
        }
    }
    let single = b
        .scan(
            &c,
            &ScanRequest::forward(KeyRange::inclusive(b"a".to_vec(), b"a".to_vec()), 10),
        )
        .await?;
    assert_eq!(keys_of(&single.entries), vec![b"a".to_vec()]);
    b.close().await
}

/// C5: `seek(start, end)` is the first entry of `start..=end`, for present and absent bounds,
/// inverted ranges and unknown collections alike.
pub async fn c5_seek_returns_the_first_entry_of_an_inclusive_range(
    h: Arc<dyn Harness>,
) -> CaseResult {
    let b = h.open()?;
    let c = col("seek");
    b.create_collection(&c).await?;
    load_tricky(&*b, &c).await?;
    let keys = tricky_keys();
    let mut probes = keys.clone();
    probes.extend([
        vec![],
        b"aa".to_vec(),
        vec![0xFF, 0xFF, 0xFF, 0xFF],
        vec![0x00, 0x00, 0x00],
    ]);
    for start in &probes {
        for end in &probes {
            let expected = keys.iter().find(|k| start <= *k && *k <= end).cloned();
            let got = b.seek(&c, start, end).await?;
            assert_eq!(
                got.as_ref().map(|(k, _)| k.clone()),
                expected,
                "seek {start:?}..={end:?}"
            );
            if let Some((k, v)) = got {
                assert_eq!(
                    b.get(&c, &k).await?,
                    Some(v),
                    "seek returns the stored value"
                );
            }
        }
    }
    assert!(matches!(
        b.seek(&col("ghost"), b"a", b"b").await,
        Err(BackendError::CollectionNotFound { .. })
    ));
    b.close().await
}

/// C6: pages of every size concatenate to the full range, with no key missing or repeated.
pub async fn c6_pages_resume_exactly(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("pages");
    b.create_collection(&c).await?;
    let mut batch = WriteBatch::new();
    for i in 0u16..100 {
        batch.put(&c, i.to_be_bytes().to_vec(), vec![i as u8]);
    }
    b.write(batch, Durability::Synced).await?;
    let all: Vec<Vec<u8>> = (0u16..100).map(|i| i.to_be_bytes().to_vec()).collect();
    let ranges = [
        (KeyRange::all(), 0usize, 100usize),
        (
            KeyRange::half_open(10u16.to_be_bytes(), 90u16.to_be_bytes()),
            10,
            90,
        ),
        (
            KeyRange::new(
                Bound::Excluded(10u16.to_be_bytes().to_vec()),
                Bound::Included(90u16.to_be_bytes().to_vec()),
            ),
            11,
            91,
        ),
    ];
    for (range, from, to) in ranges {
        let expected = &all[from..to];
        for limit in [1, 2, 3, 7, 10, 79, 80, 81, 100, 101] {
            let fwd = scan_all(&*b, &c, ScanRequest::forward(range.clone(), limit)).await?;
            assert_eq!(keys_of(&fwd), expected, "forward {range:?} limit {limit}");
            let rev = scan_all(&*b, &c, ScanRequest::reverse(range.clone(), limit)).await?;
            let mut expected_rev = expected.to_vec();
            expected_rev.reverse();
            assert_eq!(
                keys_of(&rev),
                expected_rev,
                "reverse {range:?} limit {limit}"
            );
        }
    }
    // A full page reports where to resume even if nothing follows; the next page is empty.
    let exact = ScanRequest::forward(KeyRange::all(), 100);
    let page = b.scan(&c, &exact).await?;
    assert_eq!(page.entries.len(), 100);
    let next = exact.next_page(&page).expect("full page resumes");
    let rest = b.scan(&c, &next).await?;
    assert!(rest.entries.is_empty() && rest.resume.is_none());
    b.close().await
}

/// C6 + C7: while a writer rewrites a group of keys in one batch per round, every page a
/// concurrent reader gets shows the group from one single round.
pub async fn c6_a_page_never_shows_part_of_a_batch(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("atomic");
    b.create_collection(&c).await?;
    const KEYS: u8 = 16;
    const ROUNDS: u32 = 200;
    let write_round = |round: u32| {
        let mut batch = WriteBatch::new();
        for k in 0..KEYS {
            batch.put(&c, vec![k + 1], round.to_be_bytes().to_vec());
        }
        batch
    };
    b.write(write_round(0), Durability::Buffered).await?;
    let writer = {
        let b = Arc::clone(&b);
        let batches: Vec<WriteBatch> = (1..=ROUNDS).map(write_round).collect();
        tokio::spawn(async move {
            for batch in batches {
                b.write(batch, Durability::Buffered).await?;
                tokio::task::yield_now().await;
            }
            Ok::<(), BackendError>(())
        })
    };
    let mut observed_rounds = std::collections::BTreeSet::new();
    loop {
        for direction in [Direction::Forward, Direction::Reverse] {
            let request = ScanRequest {
                range: KeyRange::all(),
                direction,
                limit: usize::from(KEYS),
            };
            let page = b.scan(&c, &request).await?;
            assert_eq!(page.entries.len(), usize::from(KEYS));
            let first = &page.entries[0].1;
            assert!(
                page.entries.iter().all(|(_, v)| v == first),
                "a page mixed two batches: {:?}",
                page.entries
            );
            observed_rounds.insert(first.clone());
        }
        if writer.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer task")?;
    let last = b
        .scan(&c, &ScanRequest::forward(KeyRange::all(), 100))
        .await?;
    assert!(
        last.entries
            .iter()
            .all(|(_, v)| v == &ROUNDS.to_be_bytes().to_vec())
    );
    assert!(!observed_rounds.is_empty());
    b.close().await
}

/// C7 + C13: a batch with one bad operation anywhere is rejected whole, across collections.
pub async fn c7_failed_batch_applies_nothing(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let (x, y) = (col("x"), col("y"));
    b.create_collection(&x).await?;
    b.create_collection(&y).await?;
    put(&*b, &x, b"keep", b"old", Durability::Synced).await?;
    let mut batch = WriteBatch::new();
    batch.put(&x, b"keep", b"new");
    batch.put(&y, b"fresh", b"1");
    batch.delete(&x, b"keep");
    batch.put(&y, b"", b"empty key is invalid");
    let err = b.write(batch, Durability::Synced).await;
    assert!(matches!(
        err,
        Err(BackendError::InvalidKey {
            problem: KeyProblem::Empty,
            ..
        })
    ));
    assert_eq!(b.get(&x, b"keep").await?, Some(b"old".to_vec()));
    assert_eq!(b.get(&y, b"fresh").await?, None);
    b.close().await
}

/// C7: when a batch writes one key several times, the last operation wins.
pub async fn c7_later_operation_in_a_batch_wins(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("lww");
    b.create_collection(&c).await?;
    let mut batch = WriteBatch::new();
    batch.put(&c, b"k", b"1");
    batch.put(&c, b"k", b"2");
    batch.delete(&c, b"k");
    batch.put(&c, b"k", b"3");
    batch.put(&c, b"gone", b"x");
    batch.delete(&c, b"gone");
    b.write(batch, Durability::Synced).await?;
    assert_eq!(b.get(&c, b"k").await?, Some(b"3".to_vec()));
    assert_eq!(b.get(&c, b"gone").await?, None);
    let all = scan_all(&*b, &c, ScanRequest::forward(KeyRange::all(), 10)).await?;
    assert_eq!(all, vec![(b"k".to_vec(), b"3".to_vec())]);
    b.close().await
}

/// C7: an empty batch succeeds and changes nothing.
pub async fn c7_empty_batch_is_a_noop(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("c");
    b.create_collection(&c).await?;
    b.write(WriteBatch::new(), Durability::Synced).await?;
    b.write(WriteBatch::new(), Durability::Buffered).await?;
    assert!(
        b.scan(&c, &ScanRequest::forward(KeyRange::all(), 1))
            .await?
            .entries
            .is_empty()
    );
    b.close().await
}

/// C8: deleting an absent key succeeds; deleted keys vanish from get and scans.
pub async fn c8_delete_semantics(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("del");
    b.create_collection(&c).await?;
    delete(&*b, &c, b"never-written").await?;
    for k in [b"a", b"b", b"c"] {
        put(&*b, &c, k, b"v", Durability::Buffered).await?;
    }
    delete(&*b, &c, b"b").await?;
    delete(&*b, &c, b"b").await?;
    assert_eq!(b.get(&c, b"b").await?, None);
    let all = scan_all(&*b, &c, ScanRequest::forward(KeyRange::all(), 1)).await?;
    assert_eq!(keys_of(&all), vec![b"a".to_vec(), b"c".to_vec()]);
    let rev = scan_all(&*b, &c, ScanRequest::reverse(KeyRange::all(), 1)).await?;
    assert_eq!(keys_of(&rev), vec![b"c".to_vec(), b"a".to_vec()]);
    put(&*b, &c, b"b", b"again", Durability::Buffered).await?;
    assert_eq!(
        b.get(&c, b"b").await?,
        Some(b"again".to_vec()),
        "a deleted key can return"
    );
    b.close().await
}

/// Reopens after close and checks what a persistent backend must keep; an in-memory backend
/// must come back empty (C11).
async fn reopen_and_check(
    h: &Arc<dyn Harness>,
    c: &CollectionName,
    expected: &[(Vec<u8>, Vec<u8>)],
) -> CaseResult {
    let b = h.open()?;
    if b.is_persistent() {
        assert_eq!(b.list_collections().await?, vec![c.clone()]);
        let all = scan_all(&*b, c, ScanRequest::forward(KeyRange::all(), 7)).await?;
        assert_eq!(all, expected);
    } else {
        assert!(
            b.list_collections().await?.is_empty(),
            "memory stores start empty"
        );
    }
    b.close().await
}

/// C9 + C11: synced batches are there after close and reopen.
pub async fn c9_synced_batches_survive_reopen(h: Arc<dyn Harness>) -> CaseResult {
    let c = col("durable");
    let mut expected = Vec::new();
    {
        let b = h.open()?;
        b.create_collection(&c).await?;
        for i in 0u8..30 {
            put(&*b, &c, &[i], &[i, i], Durability::Synced).await?;
            expected.push((vec![i], vec![i, i]));
        }
        b.close().await?;
    }
    reopen_and_check(&h, &c, &expected).await
}

/// C10 + C12: buffered batches made durable by `sync` (and by `close`) survive reopen.
pub async fn c10_sync_then_reopen_keeps_buffered_batches(h: Arc<dyn Harness>) -> CaseResult {
    let c = col("buffered");
    let mut expected = Vec::new();
    {
        let b = h.open()?;
        b.create_collection(&c).await?;
        for i in 0u8..10 {
            put(&*b, &c, &[i], b"before sync", Durability::Buffered).await?;
            expected.push((vec![i], b"before sync".to_vec()));
        }
        b.sync().await?;
        for i in 10u8..20 {
            put(&*b, &c, &[i], b"before close", Durability::Buffered).await?;
            expected.push((vec![i], b"before close".to_vec()));
        }
        b.close().await?;
    }
    reopen_and_check(&h, &c, &expected).await
}

/// C11: collections (also empty ones and system ones) and entries survive reopen, twice.
pub async fn c11_collections_and_entries_survive_reopen(h: Arc<dyn Harness>) -> CaseResult {
    let names = [
        col("a"),
        col("b-empty"),
        CollectionName::system("__sys").expect("valid"),
    ];
    {
        let b = h.open()?;
        for n in &names {
            b.create_collection(n).await?;
        }
        let mut batch = WriteBatch::new();
        batch.put(&names[0], b"k", b"v");
        batch.put(&names[2], b"s", b"system value");
        b.write(batch, Durability::Synced).await?;
        b.drop_collection(&names[1]).await?;
        b.create_collection(&names[1]).await?;
        b.close().await?;
    }
    for _ in 0..2 {
        let b = h.open()?;
        if b.is_persistent() {
            let mut expected = names.to_vec();
            expected.sort();
            assert_eq!(b.list_collections().await?, expected);
            assert_eq!(b.get(&names[0], b"k").await?, Some(b"v".to_vec()));
            assert_eq!(
                b.get(&names[2], b"s").await?,
                Some(b"system value".to_vec())
            );
            assert!(
                b.scan(&names[1], &ScanRequest::forward(KeyRange::all(), 1))
                    .await?
                    .entries
                    .is_empty()
            );
        } else {
            assert!(b.list_collections().await?.is_empty());
        }
        b.close().await?;
    }
    Ok(())
}

/// C12: after close every call fails with `Closed`; the location can be reopened at once.
pub async fn c12_close_rejects_later_calls(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("c");
    b.create_collection(&c).await?;
    put(&*b, &c, b"k", b"v", Durability::Buffered).await?;
    b.close().await?;
    let closed = |r: Result<(), BackendError>| matches!(r, Err(BackendError::Closed { .. }));
    assert!(closed(b.create_collection(&c).await.map(|_| ())));
    assert!(closed(b.open_collection(&c).await));
    assert!(closed(b.list_collections().await.map(|_| ())));
    assert!(closed(b.drop_collection(&c).await.map(|_| ())));
    assert!(closed(b.get(&c, b"k").await.map(|_| ())));
    assert!(closed(
        b.scan(&c, &ScanRequest::forward(KeyRange::all(), 1))
            .await
            .map(|_| ())
    ));
    assert!(closed(put(&*b, &c, b"k", b"v", Durability::Synced).await));
    assert!(closed(b.sync().await));
    assert!(closed(b.stats().await.map(|_| ())));
    assert!(closed(b.close().await));
    // The engine was released: the same location opens again while `b` is still alive.
    let again = h.open()?;
    if again.is_persistent() {
        assert_eq!(again.get(&c, b"k").await?, Some(b"v".to_vec()));
    }
    again.close().await
}

/// C13: empty and oversized keys are refused on every path; the longest legal key works.
pub async fn c13_key_limits(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("limits");
    b.create_collection(&c).await?;
    let too_long = vec![7u8; MAX_KEY_LEN + 1];
    let longest = vec![7u8; MAX_KEY_LEN];
    let is_empty = |r: Result<(), BackendError>| {
        matches!(
            r,
            Err(BackendError::InvalidKey {
                problem: KeyProblem::Empty,
                ..
            })
        )
    };
    let is_long = |r: Result<(), BackendError>| {
        matches!(r, Err(BackendError::InvalidKey { problem: KeyProblem::TooLong { len, max }, .. })
            if len == MAX_KEY_LEN + 1 && max == MAX_KEY_LEN)
    };
    assert!(is_empty(b.get(&c, b"").await.map(|_| ())));
    assert!(is_empty(put(&*b, &c, b"", b"v", Durability::Synced).await));
    assert!(is_empty(
        put(&*b, &c, b"", b"v", Durability::Buffered).await
    ));
    assert!(is_empty(delete(&*b, &c, b"").await));
    assert!(is_long(b.get(&c, &too_long).await.map(|_| ())));
    assert!(is_long(
        put(&*b, &c, &too_long, b"v", Durability::Synced).await
    ));
    assert!(is_long(delete(&*b, &c, &too_long).await));
    put(&*b, &c, &longest, b"longest", Durability::Synced).await?;
    assert_eq!(b.get(&c, &longest).await?, Some(b"longest".to_vec()));
    let page = b
        .scan(&c, &ScanRequest::forward(KeyRange::all(), 10))
        .await?;
    assert_eq!(page.entries, vec![(longest.clone(), b"longest".to_vec())]);
    // Scan bounds are not keys: an empty start bound is a legal way to say "from the start".
    let from_empty = KeyRange::new(Bound::Included(Vec::new()), Bound::Unbounded);
    assert_eq!(
        b.scan(&c, &ScanRequest::forward(from_empty, 10))
            .await?
            .entries
            .len(),
        1
    );
    b.close().await
}

/// C13: oversized values and out-of-range page limits are refused before the engine.
pub async fn c13_value_and_scan_limits(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("limits");
    b.create_collection(&c).await?;
    // A zeroed allocation is mapped lazily, so this 3 GiB + 1 value costs no real memory.
    let huge = vec![0u8; usize::try_from(MAX_VALUE_LEN + 1).expect("64-bit target")];
    let mut batch = WriteBatch::new();
    batch.put(&c, b"ok", b"fine");
    batch.put(&c, b"huge", huge);
    let r = b.write(batch, Durability::Synced).await;
    assert!(
        matches!(r, Err(BackendError::ValueTooLarge { len, max, .. }) if len == MAX_VALUE_LEN + 1 && max == MAX_VALUE_LEN)
    );
    assert_eq!(b.get(&c, b"ok").await?, None, "the whole batch was refused");
    for limit in [0, MAX_SCAN_LIMIT + 1] {
        let r = b
            .scan(&c, &ScanRequest::forward(KeyRange::all(), limit))
            .await;
        assert!(
            matches!(r, Err(BackendError::InvalidScanLimit { .. })),
            "limit {limit}"
        );
    }
    put(&*b, &c, b"empty-value", b"", Durability::Synced).await?;
    assert_eq!(
        b.get(&c, b"empty-value").await?,
        Some(Vec::new()),
        "empty values are legal"
    );
    b.close().await
}

/// C13: after every kind of refused input the store still opens with its data intact
/// (fjall 3.1.13 bricks itself on an empty key if one ever reaches it).
pub async fn c13_bad_input_leaves_store_openable(h: Arc<dyn Harness>) -> CaseResult {
    let c = col("survivor");
    {
        let b = h.open()?;
        b.create_collection(&c).await?;
        put(&*b, &c, b"k", b"v", Durability::Synced).await?;
        assert!(put(&*b, &c, b"", b"v", Durability::Synced).await.is_err());
        assert!(delete(&*b, &c, b"").await.is_err());
        assert!(b.get(&c, b"").await.is_err());
        let mut batch = WriteBatch::new();
        batch.put(&c, b"x", b"1");
        batch.delete(&c, b"");
        assert!(b.write(batch, Durability::Buffered).await.is_err());
        b.close().await?;
    }
    for _ in 0..2 {
        let b = h.open()?;
        if b.is_persistent() {
            assert_eq!(b.get(&c, b"k").await?, Some(b"v".to_vec()));
            assert_eq!(b.get(&c, b"x").await?, None);
        }
        b.close().await?;
    }
    Ok(())
}

/// C14: stats list every collection with its key count.
pub async fn c14_stats_list_collections_with_counts(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let (x, y) = (col("x"), col("y"));
    b.create_collection(&x).await?;
    b.create_collection(&y).await?;
    let mut batch = WriteBatch::new();
    for i in 0u8..25 {
        batch.put(&x, vec![i + 1], b"v");
    }
    b.write(batch, Durability::Synced).await?;
    let stats = b.stats().await?;
    assert_eq!(stats.backend, b.kind());
    let names: Vec<_> = stats.collections.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, vec![x, y]);
    let (sx, sy) = (&stats.collections[0], &stats.collections[1]);
    if sx.keys_exact {
        assert_eq!(sx.keys, 25);
    } else {
        assert!(
            sx.keys >= 25,
            "an approximate count does not under-count fresh inserts"
        );
    }
    assert_eq!(sy.keys, 0);
    assert_eq!(stats.disk_bytes.is_some(), b.is_persistent());
    b.close().await
}

/// C15 + C10: many tasks write synced and buffered batches and read concurrently; every
/// acknowledged write is visible afterwards and reads never fail.
pub async fn c15_concurrent_writers_and_readers(h: Arc<dyn Harness>) -> CaseResult {
    let b = h.open()?;
    let c = col("concurrent");
    b.create_collection(&c).await?;
    const TASKS: u8 = 8;
    const BATCHES: u8 = 25;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let b = Arc::clone(&b);
        let c = c.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..BATCHES {
                let mut batch = WriteBatch::new();
                batch.put(&c, vec![t, i, 0], vec![t]);
                batch.put(&c, vec![t, i, 1], vec![i]);
                let durability = if i % 2 == 0 {
                    Durability::Synced
                } else {
                    Durability::Buffered
                };
                b.write(batch, durability).await?;
                assert_eq!(b.get(&c, &[t, i, 1]).await?, Some(vec![i]));
                let page = b
                    .scan(&c, &ScanRequest::forward(KeyRange::prefix(&[t]), 1000))
                    .await?;
                assert_eq!(
                    page.entries.len(),
                    usize::from(i + 1) * 2,
                    "task {t} sees its own writes"
                );
            }
            Ok::<(), BackendError>(())
        }));
    }
    handles.push(tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.sync().await }
    }));
    for handle in handles {
        handle.await.expect("task panicked")?;
    }
    let all = scan_all(&*b, &c, ScanRequest::forward(KeyRange::all(), 64)).await?;
    assert_eq!(all.len(), usize::from(TASKS) * usize::from(BATCHES) * 2);
    b.close().await
}

/// C17: `compact` (where the backend has one) leaves every entry as it was, before and after a
/// reopen, and the store stays writable.
pub async fn c17_compact_keeps_every_entry(h: Arc<dyn Harness>) -> CaseResult {
    let c = col("compacted");
    let before = {
        let b = h.open()?;
        b.create_collection(&c).await?;
        let mut batch = WriteBatch::new();
        for i in 0u16..300 {
            batch.put(&c, i.to_be_bytes(), vec![i as u8; 100]);
        }
        b.write(batch, Durability::Buffered).await?;
        let mut batch = WriteBatch::new();
        for i in (0u16..300).step_by(3) {
            batch.delete(&c, i.to_be_bytes());
        }
        b.write(batch, Durability::Synced).await?;
        let before = scan_all(&*b, &c, ScanRequest::forward(KeyRange::all(), 64)).await?;
        assert_eq!(before.len(), 200);
        let ran = b.compact().await?;
        let after = scan_all(&*b, &c, ScanRequest::forward(KeyRange::all(), 64)).await?;
        assert!(
            before == after,
            "compaction (ran: {ran}) changed the entries"
        );
        put(&*b, &c, b"after", b"v", Durability::Synced).await?;
        assert_eq!(b.get(&c, b"after").await?, Some(b"v".to_vec()));
        b.close().await?;
        before
    };
    let b = h.open()?;
    if b.is_persistent() {
        let mut after = scan_all(&*b, &c, ScanRequest::forward(KeyRange::all(), 64)).await?;
        after.retain(|(k, _)| k != b"after");
        assert!(
            before == after,
            "entries changed across compaction and reopen"
        );
    }
    b.close().await
}
