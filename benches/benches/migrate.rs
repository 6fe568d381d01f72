//! Migration of a plain redb file into fjall against a naive copy loop, same run, same data.
//!
//! | group | raw | ours |
//! |---|---|---|
//! | `migrate_fjall` | create a keyspace in an empty raw fjall database, open the redb file read-only, iterate its `u64 → &[u8]` table, write each row (key big-endian, so the order is right) in batches of 4,096, then `persist(SyncAll)` | `adapter`: `zcore_compat::migrate::migrate` from `redb-file:` into an empty `FjallBackend`, verification off (plan, typed re-encoding, MVCC encoding and checksums, one atomic batch of 4,096 rows plus checkpoint at a time, collections, metadata, a synced end); `adapter_verify`: the same with verification on (source and target read again in full and digested) |
//!
//! Data: `keys` rows (100,000 in a full run) of `u64` keys and 100-byte incompressible values,
//! in one redb table. Every iteration writes into a fresh directory; opening the empty
//! database (raw fjall; for ours a `FjallBackend` with the engine opened once, i.e. an empty
//! zcore store) and deleting it afterwards are not timed. After the criterion group, paired rounds
//! (naive, ours, ours + verify in turn, so that load drifting on a shared machine hits all three
//! alike) print rows/s, MB/s and the ratio naive time / our time (the goal: ≥ 0.8);
//! `cargo run -p zcore-benches --release --bin ratios` shows criterion's ratios too.
//! `cargo test --benches` runs each routine once on 2,000 rows; `ZCORE_BENCH_MIGRATE_ROWS=N`
//! sets another size, `ZCORE_BENCH_MIGRATE_ROUNDS=N` the paired rounds (0: none).

#![allow(
    clippy::expect_used,
    reason = "benchmark harness: an engine error aborts the run"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use fjall::{KeyspaceCreateOptions, PersistMode};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio::runtime::Runtime;
use zcore_backends::{FjallBackend, FjallOptions};
use zcore_benches::config::{BenchConfig, CACHE_BYTES, Mode};
use zcore_benches::data;
use zcore_benches::report::fmt_rate;
use zcore_compat::migrate::{self, MigrateOptions, NoProgress, Source, Target};
use zcore_engine::{Engine, EngineOptions, StorageBackend};

const TABLE: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("events");
const BATCH_ROWS: usize = 4_096;
const GROUP: &str = "migrate_fjall";

fn scratch(root: &Path, prefix: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    root.join(format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed)))
}

fn write_source(path: &Path, rows: u64) -> u64 {
    let db = redb::Database::create(path).expect("create redb");
    let tx = db.begin_write().expect("write txn");
    let mut bytes = 0;
    {
        let mut t = tx.open_table(TABLE).expect("table");
        for i in 0..rows {
            let v = data::value(i);
            t.insert(data::splitmix(i), v.as_slice()).expect("insert");
            bytes += 8 + v.len() as u64;
        }
    }
    tx.commit().expect("commit");
    bytes
}

/// The naive copy loop: read redb, write fjall batches.
fn naive_copy(source: &Path, db: &fjall::Database, ks: &fjall::Keyspace) -> u64 {
    let redb = redb::Builder::new()
        .set_cache_size(64 << 20)
        .open_read_only(source)
        .expect("open redb");
    let tx = redb.begin_read().expect("read txn");
    let table = tx.open_table(TABLE).expect("table");
    let mut rows = 0u64;
    let mut batch = db.batch();
    let mut in_batch = 0;
    for entry in table.iter().expect("iter") {
        let (k, v) = entry.expect("row");
        batch.insert(ks, k.value().to_be_bytes(), v.value());
        in_batch += 1;
        rows += 1;
        if in_batch == BATCH_ROWS {
            batch.commit().expect("commit");
            batch = db.batch();
            in_batch = 0;
        }
    }
    batch.commit().expect("commit");
    db.persist(PersistMode::SyncAll).expect("persist");
    rows
}

/// One naive copy into a fresh directory; times the copy (keyspace creation included, as our
/// side creates its collections inside the timed region too).
fn raw_once(root: &Path, source: &Path, rows: u64) -> Duration {
    let dir = scratch(root, "raw");
    let db = fjall::Database::builder(&dir)
        .cache_size(CACHE_BYTES)
        .open()
        .expect("open fjall");
    let start = Instant::now();
    let ks = db
        .keyspace("events", KeyspaceCreateOptions::default)
        .expect("keyspace");
    let copied = naive_copy(source, &db, &ks);
    let took = start.elapsed();
    assert_eq!(copied, rows);
    drop(ks);
    drop(db);
    std::fs::remove_dir_all(&dir).expect("remove");
    took
}

/// One migration into a fresh `FjallBackend`; times `migrate` (plan, copy, metadata, and
/// verification when asked).
fn ours_once(rt: &Runtime, root: &Path, source: &Path, verify: bool) -> Duration {
    let dir = scratch(root, "ours");
    let backend: Arc<dyn StorageBackend> = Arc::new(
        FjallBackend::open(
            &dir,
            &FjallOptions {
                cache_size_bytes: CACHE_BYTES,
                ..FjallOptions::default()
            },
        )
        .expect("open"),
    );
    // An empty zcore store, as the raw side gets an opened empty fjall database: the engine's
    // metadata collection exists before the clock starts.
    drop(
        rt.block_on(Engine::open(Arc::clone(&backend), EngineOptions::default()))
            .expect("engine"),
    );
    let target = Target {
        backend: Arc::clone(&backend),
        label: "bench".to_owned(),
    };
    let options = MigrateOptions {
        verify,
        batch_rows: std::env::var("ZCORE_BENCH_MIGRATE_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(BATCH_ROWS),
        ..MigrateOptions::default()
    };
    let start = Instant::now();
    let report = rt
        .block_on(migrate::migrate(
            &Source::RedbFile {
                path: source.to_path_buf(),
            },
            &target,
            &options,
            &NoProgress,
        ))
        .expect("migrate");
    let took = start.elapsed();
    assert!(report.ok);
    black_box(report.copied_rows());
    rt.block_on(backend.close()).expect("close");
    drop(target);
    drop(backend);
    std::fs::remove_dir_all(&dir).expect("remove");
    took
}

fn bench(c: &mut Criterion, cfg: &BenchConfig, rt: &Runtime, root: &Path, source: &Path) {
    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Elements(cfg.keys));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(cfg.batch_sample_size);
    g.measurement_time(cfg.batch_measurement);
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| raw_once(root, source, cfg.keys)).sum());
    });
    for (name, verify) in [("adapter", false), ("adapter_verify", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| ours_once(rt, root, source, verify))
                    .sum()
            });
        });
    }
    g.finish();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Paired rounds (raw, ours, ours + verify, in turn), so that load drifting on a shared
/// machine hits all three alike; prints rows/s, MB/s and the ratios of the medians.
fn paired_summary(rt: &Runtime, root: &Path, source: &Path, rows: u64, bytes: u64, rounds: usize) {
    let (mut raw, mut ours, mut verified) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(raw_once(root, source, rows).as_secs_f64());
        ours.push(ours_once(rt, root, source, false).as_secs_f64());
        verified.push(ours_once(rt, root, source, true).as_secs_f64());
    }
    let per_round: Vec<f64> = raw.iter().zip(&ours).map(|(r, o)| r / o).collect();
    let (raw, ours, verified) = (median(raw), median(ours), median(verified));
    println!(
        "migrate redb-file -> fjall: {rows} rows, {:.1} MB of keys and values, {rounds} paired rounds (medians):",
        bytes as f64 / 1e6
    );
    for (name, secs) in [
        ("naive copy loop", raw),
        ("migrate", ours),
        ("migrate + verify", verified),
    ] {
        println!(
            "  {name:<17} {:>9.1} ms  {:>8} rows  {:>6.1} MB/s  ratio naive/ours {:.3}",
            secs * 1e3,
            fmt_rate(rows as f64 / secs),
            bytes as f64 / 1e6 / secs,
            raw / secs
        );
    }
    println!(
        "  per-round ratio naive/migrate: median {:.3} (goal >= 0.8)",
        median(per_round)
    );
}

fn main() {
    let mut cfg = BenchConfig::from_env();
    // Another data set size, e.g. to see the fixed cost of a run.
    if let Some(rows) = std::env::var("ZCORE_BENCH_MIGRATE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.keys = rows;
    }
    let mut c = Criterion::default()
        .warm_up_time(cfg.warm_up)
        .measurement_time(cfg.measurement)
        .sample_size(cfg.sample_size)
        .nresamples(cfg.nresamples)
        .configure_from_args();
    if cfg.mode == Mode::Test {
        c = c.measurement_time(Duration::from_millis(10));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if cfg.runs("fjall") {
        let root = tempfile::tempdir().expect("tempdir");
        let source = root.path().join("source.redb");
        let bytes = write_source(&source, cfg.keys);
        bench(&mut c, &cfg, &rt, root.path(), &source);
        c.final_summary();
        let rounds = match cfg.mode {
            Mode::Full => 15,
            Mode::Quick => 3,
            Mode::Test => 0,
        };
        let rounds = std::env::var("ZCORE_BENCH_MIGRATE_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(rounds);
        if rounds > 0 {
            paired_summary(&rt, root.path(), &source, cfg.keys, bytes, rounds);
        }
    }
}
