//! Backup and restore against the raw engine (fjall), same run, same data.
//!
//! | group | raw | ours |
//! |---|---|---|
//! | `backup_fjall` | a full scan of a raw fjall keyspace holding the same stored entries (versioned keys, checksummed values; every key and value touched) | `adapter`: `Engine::create_backup` (zstd) into a new directory; `adapter_nocompress`: the same without compression |
//! | `restore_fjall` | loading the same stored entries into an empty raw fjall database in batches of ~4 MiB, then `persist(SyncAll)` | `adapter`: `backup::restore` of the zstd backup into an empty `FjallBackend` (verify pass + write pass + synced metadata); `adapter_nocompress`: of the uncompressed backup |
//!
//! Data: `keys` (100,000 in a full run) 16-byte keys with ~110-byte JSON-like values (so the
//! compression ratio means something), one commit per 1,000 keys; both stores are compacted
//! before measuring. The raw side holds exactly the entries our engine stores, so the ratios
//! measure backup and restore, not the MVCC format (the `mvcc` bench measures that). The
//! compression ratio of
//! both backups is printed. Ratios: `cargo run -p zcore-benches --release --bin ratios` after
//! `cargo bench -p zcore-benches --bench backup` (raw time / our time; the goal is
//! ≥ 0.8 for both groups). `cargo test --benches` runs each routine once on 2,000 keys.

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
use fjall::{KeyspaceCreateOptions, PersistMode, Readable};
use tokio::runtime::Runtime;
use zcore_backends::{FjallBackend, FjallOptions};
use zcore_benches::config::{BenchConfig, CACHE_BYTES, Mode};
use zcore_benches::data;
use zcore_engine::backup::{self, BackupOptions};
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend,
    WriteOptions,
};

/// A JSON-like document for key `i` (compressible, ~110 bytes).
fn document(i: u64) -> Vec<u8> {
    let h = data::splitmix(i);
    format!(
        "{{\"id\":{i},\"name\":\"user{}\",\"email\":\"user{}@example.com\",\"status\":\"{}\",\"score\":{}}}",
        h % 100_000,
        h % 100_000,
        ["active", "inactive", "premium", "trial"][(h >> 20) as usize % 4],
        (h >> 32) % 1_000_000
    )
    .into_bytes()
}

fn fjall_options() -> FjallOptions {
    FjallOptions {
        cache_size_bytes: CACHE_BYTES,
        ..FjallOptions::default()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    raw_db: fjall::Database,
    raw_ks: fjall::Keyspace,
    engine: Engine,
    backup_zstd: PathBuf,
    backup_plain: PathBuf,
    stored: Vec<(Vec<u8>, Vec<u8>)>,
    batch_entries: usize,
}

fn fixture(rt: &Runtime, keys: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours =
        Arc::new(FjallBackend::open(dir.path().join("ours"), &fjall_options()).expect("open ours"));
    let backend: Arc<dyn StorageBackend> = ours.clone();
    let collection = CollectionName::new("bench").expect("name");
    let (engine, stored) = rt.block_on(async {
        let engine = Engine::open(
            Arc::clone(&backend),
            EngineOptions {
                gc_interval: None,
                ..EngineOptions::default()
            },
        )
        .await
        .expect("engine");
        engine
            .create_collection(&collection)
            .await
            .expect("collection");
        for chunk in data::preload_chunks(keys, 1_000) {
            let mut tx = engine.begin_write_with(WriteOptions {
                durability: Durability::Buffered,
                ..WriteOptions::default()
            });
            for (k, _) in &chunk {
                let v = document(u64::from_be_bytes(k[..8].try_into().expect("8 bytes")));
                tx.put(&collection, k.to_vec(), v).expect("put");
            }
            tx.commit().await.expect("commit");
        }
        // The stored entries (versioned keys, checksummed values): what the raw side holds.
        let mut stored = Vec::new();
        let mut request = Some(ScanRequest::forward(KeyRange::all(), 4096));
        while let Some(req) = request.take() {
            let page = backend.scan(&collection, &req).await.expect("scan");
            request = req.next_page(&page);
            stored.extend(page.entries);
        }
        (engine, stored)
    });
    // Both sides settled into tables, as after a flush.
    ours.major_compact().expect("compact ours");
    let raw_db = fjall::Database::builder(dir.path().join("raw"))
        .cache_size(CACHE_BYTES)
        .open()
        .expect("open fjall");
    let raw_ks = raw_db
        .keyspace("bench", KeyspaceCreateOptions::default)
        .expect("keyspace");
    for part in stored.chunks(1_000) {
        let mut b = raw_db.batch();
        for (k, v) in part {
            b.insert(&raw_ks, k.as_slice(), v.as_slice());
        }
        b.commit().expect("batch");
    }
    raw_ks.rotate_memtable_and_wait().expect("flush raw");
    let bytes: usize = stored.iter().map(|(k, v)| k.len() + v.len()).sum();
    let (backup_zstd, backup_plain) = rt.block_on(async {
        let zstd = dir.path().join("backup-zstd");
        let plain = dir.path().join("backup-plain");
        let mz = engine
            .create_backup(&zstd, &BackupOptions::default())
            .await
            .expect("backup");
        let mp = engine
            .create_backup(
                &plain,
                &BackupOptions {
                    compress: false,
                    ..BackupOptions::default()
                },
            )
            .await
            .expect("backup");
        println!(
            "backup of {keys} keys ({bytes} stored bytes): zstd {} bytes in {} chunks, compression {:.2}:1; uncompressed {} bytes ({:.2}:1)",
            mz.stored_bytes,
            mz.chunks.len(),
            mz.compression_ratio(),
            mp.stored_bytes,
            mp.compression_ratio()
        );
        (zstd, plain)
    });
    // The raw load uses batches as large as a backup chunk.
    let avg = bytes / stored.len().max(1);
    let batch_entries = (backup::DEFAULT_CHUNK_BYTES / avg.max(1)).max(1);
    Fixture {
        dir,
        raw_db,
        raw_ks,
        engine,
        stored,
        backup_zstd,
        backup_plain,
        batch_entries,
    }
}

static SCRATCH: AtomicU64 = AtomicU64::new(0);

fn scratch(root: &Path, what: &str) -> PathBuf {
    root.join(format!(
        "{what}-{}",
        SCRATCH.fetch_add(1, Ordering::Relaxed)
    ))
}

fn bench(c: &mut Criterion, cfg: &BenchConfig, rt: &Runtime) {
    let fx = fixture(rt, cfg.keys);
    let root = fx.dir.path().to_path_buf();

    let mut g = c.benchmark_group("backup_fjall");
    g.throughput(Throughput::Elements(cfg.keys));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(cfg.batch_sample_size);
    g.measurement_time(cfg.batch_measurement);
    g.bench_function("raw", |b| {
        b.iter(|| {
            let snapshot = fx.raw_db.snapshot();
            let mut sum = 0usize;
            for guard in snapshot.iter(&fx.raw_ks) {
                let (k, v) = guard.into_inner().expect("scan");
                sum += k.len() + v.len();
            }
            black_box(sum)
        });
    });
    for (name, compress) in [("adapter", true), ("adapter_nocompress", false)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = scratch(&root, "b");
                    let start = Instant::now();
                    let meta = rt
                        .block_on(fx.engine.create_backup(
                            &dir,
                            &BackupOptions {
                                compress,
                                ..BackupOptions::default()
                            },
                        ))
                        .expect("backup");
                    total += start.elapsed();
                    black_box(meta.entries);
                    std::fs::remove_dir_all(&dir).expect("remove");
                }
                total
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("restore_fjall");
    g.throughput(Throughput::Elements(cfg.keys));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(cfg.batch_sample_size);
    g.measurement_time(cfg.batch_measurement);
    let pairs = &fx.stored;
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = scratch(&root, "rawload");
                let db = fjall::Database::builder(&dir)
                    .cache_size(CACHE_BYTES)
                    .open()
                    .expect("open fjall");
                let ks = db
                    .keyspace("bench", KeyspaceCreateOptions::default)
                    .expect("keyspace");
                let start = Instant::now();
                for batch in pairs.chunks(fx.batch_entries) {
                    let mut b = db.batch();
                    for (k, v) in batch {
                        b.insert(&ks, k.as_slice(), v.as_slice());
                    }
                    b.commit().expect("batch");
                }
                db.persist(PersistMode::SyncAll).expect("persist");
                total += start.elapsed();
                drop(ks);
                drop(db);
                std::fs::remove_dir_all(&dir).expect("remove");
            }
            total
        });
    });
    for (name, source) in [
        ("adapter", &fx.backup_zstd),
        ("adapter_nocompress", &fx.backup_plain),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = scratch(&root, "restore");
                    let target: Arc<dyn StorageBackend> =
                        Arc::new(FjallBackend::open(&dir, &fjall_options()).expect("open"));
                    let start = Instant::now();
                    let report = rt
                        .block_on(backup::restore(source, Arc::clone(&target), None))
                        .expect("restore");
                    total += start.elapsed();
                    black_box(report.entries_written);
                    rt.block_on(target.close()).expect("close");
                    drop(target);
                    std::fs::remove_dir_all(&dir).expect("remove");
                }
                total
            });
        });
    }
    g.finish();
    rt.block_on(fx.engine.close()).expect("close");
}

fn main() {
    let cfg = BenchConfig::from_env();
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
        bench(&mut c, &cfg, &rt);
    }
    c.final_summary();
}
