//! Every metric zcore-storage emits, in one place, through the [`metrics`] facade crate.
//!
//! The library never installs a recorder: the embedding application picks the exporter
//! (Prometheus, StatsD, …) with `metrics::set_global_recorder` or an exporter crate, and calls
//! [`describe`] once to register units and help texts. Without a recorder every call below is
//! a no-op that costs one atomic load. [`SnapshotRecorder`] is a small in-process recorder for
//! tools (`zstore stats`) and tests.
//!
//! Hot-path calls allocate nothing: names are `&'static str` constants, and the only label is
//! the collection of a conflict (conflicts are the slow path anyway).
//!
//! | name | kind | unit | labels | meaning |
//! |------|------|------|--------|---------|
//! | `zcore_commits_total` | counter | count | — | write transactions committed with writes |
//! | `zcore_commit_keys` | histogram | count | — | keys written per commit |
//! | `zcore_commit_bytes_written_total` | counter | bytes | — | backend bytes (versioned key + stored value) written by commits |
//! | `zcore_txn_conflicts_total` | counter | count | `collection` | commits refused by validation, by the collection of the first conflicting key |
//! | `zcore_txn_aborts_total` | counter | count | — | write transactions that ended without applying their writes: conflicts, failed commits, explicit rollbacks (a transaction merely dropped is not counted) |
//! | `zcore_gc_passes_total` | counter | count | — | garbage-collection sweeps completed |
//! | `zcore_gc_versions_scanned_total` | counter | count | — | stored versions examined by sweeps |
//! | `zcore_gc_versions_removed_total` | counter | count | — | superseded versions removed by sweeps |
//! | `zcore_gc_tombstones_removed_total` | counter | count | — | deletion markers removed by sweeps |
//! | `zcore_backend_sync_requests_total` | counter | count | — | durability requests to a disk backend (fjall, redb) |
//! | `zcore_backend_fsyncs_total` | counter | count | — | engine syncs actually run (group commit shares one among many requests) |
//! | `zcore_backend_fsync_seconds` | histogram | seconds | — | latency of one engine sync |
//! | `zcore_backend_group_commit_batch_size` | histogram | count | — | writes made durable by one engine sync |
//!
//! | `zcore_backend_cache_hits_total` | counter | count | `backend` | reads the backend's cache served: fjall block-cache hits (data, index and filter blocks), redb page-cache read hits; taken from the engine's own counters whenever `StorageBackend::stats` runs |
//! | `zcore_backend_cache_misses_total` | counter | count | `backend` | reads that went to disk: fjall blocks loaded by I/O, redb page-cache read misses |
//!
//! The cache figures are cumulative since the store was opened and are published (as absolute
//! values) when [`crate::StorageBackend::stats`] runs, not on every read, so the read path pays
//! only the engines' own counters (fjall's `metrics` feature, redb's `cache_metrics`). With
//! several stores of one backend kind in one process the last store whose stats were read
//! wins; per-store figures are in [`crate::BackendStats::details`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::BackendKind;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Write transactions committed with writes.
pub const COMMITS: &str = "zcore_commits_total";
/// Keys written per commit (histogram).
pub const COMMIT_KEYS: &str = "zcore_commit_keys";
/// Backend bytes (versioned key + stored value) written by commits.
pub const COMMIT_BYTES_WRITTEN: &str = "zcore_commit_bytes_written_total";
/// Commits refused by validation; label [`COLLECTION_LABEL`].
pub const CONFLICTS: &str = "zcore_txn_conflicts_total";
/// Write transactions that ended without applying their writes.
pub const ABORTS: &str = "zcore_txn_aborts_total";
/// Garbage-collection sweeps completed.
pub const GC_PASSES: &str = "zcore_gc_passes_total";
/// Stored versions examined by GC sweeps.
pub const GC_VERSIONS_SCANNED: &str = "zcore_gc_versions_scanned_total";
/// Superseded versions removed by GC sweeps.
pub const GC_VERSIONS_REMOVED: &str = "zcore_gc_versions_removed_total";
/// Deletion markers removed by GC sweeps.
pub const GC_TOMBSTONES_REMOVED: &str = "zcore_gc_tombstones_removed_total";
/// Durability requests to a disk backend.
pub const SYNC_REQUESTS: &str = "zcore_backend_sync_requests_total";
/// Engine syncs actually run.
pub const FSYNCS: &str = "zcore_backend_fsyncs_total";
/// Latency of one engine sync, seconds (histogram).
pub const FSYNC_SECONDS: &str = "zcore_backend_fsync_seconds";
/// Writes made durable by one engine sync (histogram).
pub const GROUP_COMMIT_BATCH: &str = "zcore_backend_group_commit_batch_size";
/// Reads the backend's cache served; label [`BACKEND_LABEL`].
pub const CACHE_HITS: &str = "zcore_backend_cache_hits_total";
/// Reads that missed the backend's cache; label [`BACKEND_LABEL`].
pub const CACHE_MISSES: &str = "zcore_backend_cache_misses_total";
/// The label of [`CONFLICTS`].
pub const COLLECTION_LABEL: &str = "collection";
/// The label of [`CACHE_HITS`] and [`CACHE_MISSES`]: `fjall` or `redb`.
pub const BACKEND_LABEL: &str = "backend";

/// Every metric: (name, kind, unit, description). The table in the module docs, as data.
pub const ALL: &[(&str, Kind, Unit, &str)] = &[
    (
        COMMITS,
        Kind::Counter,
        Unit::Count,
        "write transactions committed with writes",
    ),
    (
        COMMIT_KEYS,
        Kind::Histogram,
        Unit::Count,
        "keys written per commit",
    ),
    (
        COMMIT_BYTES_WRITTEN,
        Kind::Counter,
        Unit::Bytes,
        "backend bytes (versioned key + stored value) written by commits",
    ),
    (
        CONFLICTS,
        Kind::Counter,
        Unit::Count,
        "commits refused by validation, labelled by collection",
    ),
    (
        ABORTS,
        Kind::Counter,
        Unit::Count,
        "write transactions ended without applying their writes (conflicts, failed commits, rollbacks)",
    ),
    (
        GC_PASSES,
        Kind::Counter,
        Unit::Count,
        "garbage-collection sweeps completed",
    ),
    (
        GC_VERSIONS_SCANNED,
        Kind::Counter,
        Unit::Count,
        "stored versions examined by GC sweeps",
    ),
    (
        GC_VERSIONS_REMOVED,
        Kind::Counter,
        Unit::Count,
        "superseded versions removed by GC sweeps",
    ),
    (
        GC_TOMBSTONES_REMOVED,
        Kind::Counter,
        Unit::Count,
        "deletion markers removed by GC sweeps",
    ),
    (
        SYNC_REQUESTS,
        Kind::Counter,
        Unit::Count,
        "durability requests to a disk backend",
    ),
    (
        FSYNCS,
        Kind::Counter,
        Unit::Count,
        "engine syncs run (shared by group commit)",
    ),
    (
        FSYNC_SECONDS,
        Kind::Histogram,
        Unit::Seconds,
        "latency of one engine sync",
    ),
    (
        GROUP_COMMIT_BATCH,
        Kind::Histogram,
        Unit::Count,
        "writes made durable by one engine sync",
    ),
    (
        CACHE_HITS,
        Kind::Counter,
        Unit::Count,
        "reads served by the backend's cache (fjall blocks, redb pages), since the store was opened",
    ),
    (
        CACHE_MISSES,
        Kind::Counter,
        Unit::Count,
        "reads that missed the backend's cache, since the store was opened",
    ),
];

/// What kind of metric a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram (distribution of recorded values).
    Histogram,
}

/// Registers unit and description of every metric with the installed recorder. Call once after
/// installing a recorder.
pub fn describe() {
    for &(name, kind, unit, help) in ALL {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, unit, help),
            Kind::Gauge => metrics::describe_gauge!(name, unit, help),
            Kind::Histogram => metrics::describe_histogram!(name, unit, help),
        }
    }
}

// Recording helpers: one call each at the instrumented sites, so those stay one-liners.

/// A commit of `keys` keys that wrote `bytes` backend bytes.
#[inline]
pub fn commit(keys: usize, bytes: u64) {
    metrics::counter!(COMMITS).increment(1);
    metrics::histogram!(COMMIT_KEYS).record(keys as f64);
    metrics::counter!(COMMIT_BYTES_WRITTEN).increment(bytes);
}

/// A commit refused by validation on a key of `collection` (also counts an abort).
pub fn conflict(collection: &str) {
    metrics::counter!(CONFLICTS, COLLECTION_LABEL => collection.to_owned()).increment(1);
    abort();
}

/// A write transaction that ended without applying its writes.
#[inline]
pub fn abort() {
    metrics::counter!(ABORTS).increment(1);
}

/// A completed GC sweep.
pub fn gc(scanned: u64, removed: u64, tombstones: u64) {
    metrics::counter!(GC_PASSES).increment(1);
    metrics::counter!(GC_VERSIONS_SCANNED).increment(scanned);
    metrics::counter!(GC_VERSIONS_REMOVED).increment(removed);
    metrics::counter!(GC_TOMBSTONES_REMOVED).increment(tombstones);
}

/// A durability request to a disk backend.
#[inline]
pub fn sync_request() {
    metrics::counter!(SYNC_REQUESTS).increment(1);
}

/// One engine sync that took `elapsed` and made `writes` writes durable.
#[inline]
pub fn fsync(elapsed: Duration, writes: u64) {
    metrics::counter!(FSYNCS).increment(1);
    metrics::histogram!(FSYNC_SECONDS).record(elapsed.as_secs_f64());
    metrics::histogram!(GROUP_COMMIT_BATCH).record(writes as f64);
}

/// The backend's cumulative cache hits and misses since its store was opened (published when
/// its stats are read).
pub fn backend_cache(backend: BackendKind, hits: u64, misses: u64) {
    metrics::counter!(CACHE_HITS, BACKEND_LABEL => backend.name()).absolute(hits);
    metrics::counter!(CACHE_MISSES, BACKEND_LABEL => backend.name()).absolute(misses);
}

/// The value of one metric in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Value {
    /// A counter.
    Counter {
        /// Its value.
        value: u64,
    },
    /// A gauge.
    Gauge {
        /// Its value.
        value: f64,
    },
    /// A histogram summary.
    Histogram {
        /// Values recorded.
        count: u64,
        /// Their sum.
        sum: f64,
        /// Smallest (0 if none).
        min: f64,
        /// Largest (0 if none).
        max: f64,
    },
}

/// One metric in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Its name.
    pub name: String,
    /// Its labels, in the order given.
    pub labels: Vec<(String, String)>,
    /// Unit, if described.
    pub unit: Option<&'static str>,
    /// Its value.
    #[serde(flatten)]
    pub value: Value,
}

/// Every metric a [`SnapshotRecorder`] saw, in (name, labels) order.
pub type Snapshot = Vec<Sample>;

#[derive(Debug, Default)]
struct HistogramState {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Default)]
struct HistogramCell(Mutex<HistogramState>);

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        let mut h = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if h.count == 0 {
            h.min = value;
            h.max = value;
        } else {
            h.min = h.min.min(value);
            h.max = h.max.max(value);
        }
        h.count += 1;
        h.sum += value;
    }
}

#[derive(Debug)]
enum Cell {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<AtomicU64>),
    Histogram(Arc<HistogramCell>),
}

/// A small in-process recorder that keeps every counter, gauge and histogram summary in memory
/// and hands out a [`Snapshot`]. For tools and tests; install it with
/// `metrics::set_global_recorder` or `metrics::with_local_recorder`.
#[derive(Debug, Default)]
pub struct SnapshotRecorder {
    cells: Mutex<BTreeMap<Key, Cell>>,
    units: Mutex<BTreeMap<String, Unit>>,
}

impl SnapshotRecorder {
    /// An empty recorder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn cell<T>(
        &self,
        key: &Key,
        make: impl FnOnce() -> Cell,
        pick: impl Fn(&Cell) -> Option<T>,
    ) -> Option<T> {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = cells.get(key) {
            return pick(found);
        }
        let cell = make();
        let handle = pick(&cell);
        cells.insert(key.clone(), cell);
        handle
    }

    /// Every metric recorded so far.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let units = self.units.lock().unwrap_or_else(PoisonError::into_inner);
        let cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        cells
            .iter()
            .map(|(key, cell)| Sample {
                name: key.name().to_owned(),
                labels: key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect(),
                unit: units.get(key.name()).map(Unit::as_str),
                value: match cell {
                    Cell::Counter(c) => Value::Counter {
                        value: c.load(Ordering::Relaxed),
                    },
                    Cell::Gauge(g) => Value::Gauge {
                        value: f64::from_bits(g.load(Ordering::Relaxed)),
                    },
                    Cell::Histogram(h) => {
                        let h = h.0.lock().unwrap_or_else(PoisonError::into_inner);
                        Value::Histogram {
                            count: h.count,
                            sum: h.sum,
                            min: h.min,
                            max: h.max,
                        }
                    }
                },
            })
            .collect()
    }

    /// The value of counter `name` with exactly `labels` (0 if never incremented).
    #[must_use]
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.find(name, labels).map_or(0, |v| {
            if let Value::Counter { value } = v {
                value
            } else {
                0
            }
        })
    }

    /// Count of values recorded by histogram `name` with exactly `labels`.
    #[must_use]
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.find(name, labels).map_or(0, |v| {
            if let Value::Histogram { count, .. } = v {
                count
            } else {
                0
            }
        })
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<Value> {
        self.snapshot()
            .into_iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && s.labels
                        .iter()
                        .zip(labels)
                        .all(|((k, v), (lk, lv))| k == lk && v == lv)
            })
            .map(|s| s.value)
    }
}

impl Recorder for SnapshotRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _description: SharedString) {
        self.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _description: SharedString) {
        self.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _description: SharedString) {
        self.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        self.cell(
            key,
            || Cell::Counter(Arc::default()),
            |c| match c {
                Cell::Counter(a) => Some(Counter::from_arc(Arc::clone(a))),
                _ => None,
            },
        )
        .unwrap_or_else(Counter::noop)
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        self.cell(
            key,
            || Cell::Gauge(Arc::default()),
            |c| match c {
                Cell::Gauge(a) => Some(Gauge::from_arc(Arc::clone(a))),
                _ => None,
            },
        )
        .unwrap_or_else(Gauge::noop)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        self.cell(
            key,
            || Cell::Histogram(Arc::default()),
            |c| match c {
                Cell::Histogram(a) => Some(Histogram::from_arc(Arc::clone(a))),
                _ => None,
            },
        )
        .unwrap_or_else(Histogram::noop)
    }
}

impl SnapshotRecorder {
    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            self.units
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.as_str().to_owned(), unit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_counts_and_summarizes() {
        let recorder = SnapshotRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            describe();
            commit(3, 100);
            commit(1, 20);
            conflict("users");
            fsync(Duration::from_millis(2), 4);
        });
        assert_eq!(recorder.counter(COMMITS, &[]), 2);
        assert_eq!(recorder.counter(COMMIT_BYTES_WRITTEN, &[]), 120);
        assert_eq!(recorder.counter(CONFLICTS, &[("collection", "users")]), 1);
        assert_eq!(recorder.counter(CONFLICTS, &[]), 0);
        assert_eq!(recorder.counter(ABORTS, &[]), 1);
        assert_eq!(recorder.histogram_count(COMMIT_KEYS, &[]), 2);
        let snap = recorder.snapshot();
        let keys = snap.iter().find(|s| s.name == COMMIT_KEYS);
        assert_eq!(
            keys.map(|s| &s.value),
            Some(&Value::Histogram {
                count: 2,
                sum: 4.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(keys.and_then(|s| s.unit), Some("count"));
        let names: std::collections::BTreeSet<&str> = ALL.iter().map(|m| m.0).collect();
        assert_eq!(names.len(), ALL.len(), "metric names are unique");
        assert!(snap.iter().all(|s| names.contains(s.name.as_str())));
    }
}
