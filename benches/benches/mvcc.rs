//! The MVCC transaction layer against the raw engines, same run, same data shape
//! (16-byte keys, 100-byte incompressible values, caches pinned at 256 MiB).
//!
//! | group | raw | adapter (our engine, awaited inside one runtime `block_on`) |
//! |---|---|---|
//! | `txnget_<b>` | fjall `snapshot().get`; redb read txn + get | `ReadTransaction::get` on a snapshot |
//! | `txnseek_fjall` | fjall `snapshot().range(k..).next()` (the MVCC read pattern, for reference) | same as `txnget` |
//! | `txnwrite_<b>` | one random insert (fjall `Keyspace::insert`; redb txn with `Durability::None`) | one-key write transaction, buffered |
//! | `txnbatch_<b>` | 1,000 inserts in one fjall `OwnedWriteBatch` / redb txn | one 1,000-put transaction, buffered |
//! | `txnscan_<b>` | 100 entries from a random start, copied out | one 100-entry `scan` page |
//! | `txndurable_<b>` | 32 × (insert + `persist(SyncAll)`) / 32 × `Immediate` txn | `adapter`: 32 synced commits one after another; `adapter_32`: 32 concurrent committers |
//!
//! Ratios: `cargo run -p zcore-benches --release --bin ratios` after `cargo bench -p
//! zcore-benches --bench mvcc`. The 32-committer speed-up over one committer is
//! `adapter / adapter_32` in the `txndurable` rows.

#![allow(
    clippy::expect_used,
    reason = "benchmark harness: an engine error aborts the run"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use fjall::{KeyspaceCreateOptions, PersistMode, Readable};
use redb::{ReadableDatabase, TableDefinition};
use tokio::runtime::Runtime;
use zcore_backends::{FjallBackend, FjallOptions, RedbBackend, RedbOptions};
use zcore_benches::config::{BenchConfig, CACHE_BYTES, Mode};
use zcore_benches::data;
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend,
    WriteOptions,
};

const TABLE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("bench");

enum Raw {
    Fjall(fjall::Database, fjall::Keyspace),
    Redb(redb::Database),
}

struct Fixture {
    _dir: tempfile::TempDir,
    raw: Raw,
    engine: Engine,
    collection: CollectionName,
}

fn buffered() -> WriteOptions {
    WriteOptions {
        durability: Durability::Buffered,
        ..WriteOptions::default()
    }
}

fn fixture(rt: &Runtime, backend: &str, keys: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, ours): (Raw, Arc<dyn StorageBackend>) = match backend {
        "fjall" => {
            let db = fjall::Database::builder(dir.path().join("raw"))
                .cache_size(CACHE_BYTES)
                .open()
                .expect("open fjall");
            let ks = db
                .keyspace("bench", KeyspaceCreateOptions::default)
                .expect("keyspace");
            let opts = FjallOptions {
                cache_size_bytes: CACHE_BYTES,
                ..FjallOptions::default()
            };
            (
                Raw::Fjall(db, ks),
                Arc::new(FjallBackend::open(dir.path().join("ours"), &opts).expect("open ours")),
            )
        }
        _ => {
            let db = redb::Database::builder()
                .set_cache_size(CACHE_BYTES as usize)
                .create(dir.path().join("raw.redb"))
                .expect("open redb");
            let opts = RedbOptions {
                cache_size_bytes: CACHE_BYTES,
            };
            (
                Raw::Redb(db),
                Arc::new(
                    RedbBackend::open(dir.path().join("ours.redb"), &opts).expect("open ours"),
                ),
            )
        }
    };
    let collection = CollectionName::new("bench").expect("name");
    let engine = rt.block_on(async {
        let engine = Engine::open(
            ours,
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
            let mut tx = engine.begin_write_with(buffered());
            for (k, v) in &chunk {
                tx.put(&collection, k.to_vec(), v.to_vec()).expect("put");
            }
            tx.commit().await.expect("commit");
        }
        engine
    });
    for chunk in data::preload_chunks(keys, 1_000) {
        raw_batch(
            &raw,
            chunk.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        );
    }
    if let Raw::Fjall(_, ks) = &raw {
        ks.rotate_memtable_and_wait().expect("flush raw");
    }
    Fixture {
        _dir: dir,
        raw,
        engine,
        collection,
    }
}

fn raw_batch<'a>(raw: &Raw, items: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    match raw {
        Raw::Fjall(db, ks) => {
            let mut b = db.batch();
            for (k, v) in items {
                b.insert(ks, k, v);
            }
            b.commit().expect("batch");
        }
        Raw::Redb(db) => {
            let mut tx = db.begin_write().expect("txn");
            tx.set_durability(redb::Durability::None)
                .expect("durability");
            {
                let mut t = tx.open_table(TABLE).expect("table");
                for (k, v) in items {
                    t.insert(k, v).expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
    }
}

fn bench_backend(c: &mut Criterion, cfg: &BenchConfig, rt: &Runtime, backend: &'static str) {
    let fx = fixture(rt, backend, cfg.keys);
    let gets = data::random_keys(cfg.keys, cfg.get_sequence, 7);
    let starts = data::random_scan_starts(cfg.keys, 100, cfg.scan_sequence, 11);
    let col = fx.collection.clone();

    let mut g = c.benchmark_group(format!("txnget_{backend}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw", |b| {
        let mut i = 0;
        b.iter(|| {
            let k = &gets[i % gets.len()];
            i += 1;
            let v = match &fx.raw {
                Raw::Fjall(db, ks) => db.snapshot().get(ks, k).expect("get").map(|v| v.len()),
                Raw::Redb(db) => {
                    let tx = db.begin_read().expect("read");
                    let t = tx.open_table(TABLE).expect("table");
                    t.get(k.as_slice()).expect("get").map(|v| v.value().len())
                }
            };
            black_box(v)
        });
    });
    let snapshot = fx.engine.begin_read();
    g.bench_function("adapter", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let v = snapshot
                        .get(&col, &gets[i % gets.len()])
                        .await
                        .expect("get");
                    black_box(v.map(|v| v.len()));
                }
                start.elapsed()
            })
        });
    });
    g.finish();

    if let Raw::Fjall(db, ks) = &fx.raw {
        let mut g = c.benchmark_group("txnseek_fjall");
        g.throughput(Throughput::Elements(1));
        g.bench_function("raw", |b| {
            let mut i = 0;
            b.iter(|| {
                let k = &gets[i % gets.len()];
                i += 1;
                let v = db
                    .snapshot()
                    .range::<&[u8], _>(ks, k.as_slice()..)
                    .next()
                    .map(|g| g.into_inner().expect("item").1.len());
                black_box(v)
            });
        });
        g.bench_function("adapter", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        black_box(
                            snapshot
                                .get(&col, &gets[i % gets.len()])
                                .await
                                .expect("get"),
                        );
                    }
                    start.elapsed()
                })
            });
        });
        g.finish();
    }

    let mut g = c.benchmark_group(format!("txnscan_{backend}"));
    g.throughput(Throughput::Elements(100));
    g.bench_function("raw", |b| {
        let mut i = 0;
        b.iter(|| {
            let s = &starts[i % starts.len()];
            i += 1;
            let rows: Vec<(Vec<u8>, Vec<u8>)> = match &fx.raw {
                Raw::Fjall(db, ks) => db
                    .snapshot()
                    .range::<&[u8], _>(ks, s.as_slice()..)
                    .take(100)
                    .map(|g| {
                        let (k, v) = g.into_inner().expect("item");
                        (k.to_vec(), v.to_vec())
                    })
                    .collect(),
                Raw::Redb(db) => {
                    let tx = db.begin_read().expect("read");
                    let t = tx.open_table(TABLE).expect("table");
                    t.range::<&[u8]>(s.as_slice()..)
                        .expect("range")
                        .take(100)
                        .map(|r| {
                            let (k, v) = r.expect("item");
                            (k.value().to_vec(), v.value().to_vec())
                        })
                        .collect()
                }
            };
            black_box(rows.len())
        });
    });
    g.bench_function("adapter", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let s = &starts[i % starts.len()];
                    let req = ScanRequest::forward(
                        KeyRange::new(
                            std::ops::Bound::Included(s.to_vec()),
                            std::ops::Bound::Unbounded,
                        ),
                        100,
                    );
                    black_box(snapshot.scan(&col, &req).await.expect("scan").entries.len());
                }
                start.elapsed()
            })
        });
    });
    g.finish();
    drop(snapshot);

    let value = data::value(1);
    let mut g = c.benchmark_group(format!("txnwrite_{backend}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw", |b| {
        let mut i = 0;
        b.iter(|| {
            let k = &gets[i % gets.len()];
            i += 1;
            match &fx.raw {
                Raw::Fjall(_, ks) => ks.insert(k.as_slice(), value.as_slice()).expect("insert"),
                Raw::Redb(_) => {
                    raw_batch(&fx.raw, std::iter::once((k.as_slice(), value.as_slice())))
                }
            }
        });
    });
    g.bench_function("adapter", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let mut tx = fx.engine.begin_write_with(buffered());
                    tx.put(&col, gets[i % gets.len()].to_vec(), value.to_vec())
                        .expect("put");
                    tx.commit().await.expect("commit");
                }
                start.elapsed()
            })
        });
    });
    g.finish();

    let batches: Vec<Vec<(data::Key, data::Value)>> = (0..cfg.batch_pool.max(1))
        .map(|p| {
            data::random_keys(cfg.keys, 1_000, 100 + p as u64)
                .into_iter()
                .map(|k| (k, value))
                .collect()
        })
        .collect();
    let mut g = c.benchmark_group(format!("txnbatch_{backend}"));
    g.throughput(Throughput::Elements(1_000));
    g.sample_size(cfg.batch_sample_size)
        .measurement_time(cfg.batch_measurement);
    g.bench_function("raw", |b| {
        let mut i = 0;
        b.iter(|| {
            let batch = &batches[i % batches.len()];
            i += 1;
            raw_batch(
                &fx.raw,
                batch.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            );
        });
    });
    g.bench_function("adapter", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let mut tx = fx.engine.begin_write_with(buffered());
                    for (k, v) in &batches[i % batches.len()] {
                        tx.put(&col, k.to_vec(), v.to_vec()).expect("put");
                    }
                    tx.commit().await.expect("commit");
                }
                start.elapsed()
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group(format!("txndurable_{backend}"));
    g.throughput(Throughput::Elements(32));
    g.sample_size(10).measurement_time(cfg.batch_measurement);
    g.bench_function("raw", |b| {
        let mut n = 0u64;
        b.iter(|| {
            for _ in 0..32 {
                n += 1;
                let k = data::key(n % cfg.keys);
                match &fx.raw {
                    Raw::Fjall(db, ks) => {
                        ks.insert(k.as_slice(), value.as_slice()).expect("insert");
                        db.persist(PersistMode::SyncAll).expect("sync");
                    }
                    Raw::Redb(db) => {
                        let tx = db.begin_write().expect("txn");
                        tx.open_table(TABLE)
                            .expect("table")
                            .insert(k.as_slice(), value.as_slice())
                            .expect("insert");
                        tx.commit().expect("commit");
                    }
                }
            }
        });
    });
    g.bench_function("adapter", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    for j in 0..32u64 {
                        let mut tx = fx.engine.begin_write();
                        tx.put(
                            &col,
                            data::key((i * 32 + j) % cfg.keys).to_vec(),
                            value.to_vec(),
                        )
                        .expect("put");
                        tx.commit().await.expect("commit");
                    }
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("adapter_32", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let mut tasks = Vec::with_capacity(32);
                    for j in 0..32u64 {
                        let (engine, col, value) = (fx.engine.clone(), col.clone(), value.to_vec());
                        tasks.push(tokio::spawn(async move {
                            let mut tx = engine.begin_write();
                            tx.put(&col, data::key((i * 32 + j) % 1_000_000).to_vec(), value)
                                .expect("put");
                            tx.commit().await.expect("commit");
                        }));
                    }
                    for t in tasks {
                        t.await.expect("task");
                    }
                }
                start.elapsed()
            })
        });
    });
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
    for backend in ["fjall", "redb"] {
        if cfg.runs(backend) {
            bench_backend(&mut c, &cfg, &rt, backend);
        }
    }
    c.final_summary();
}
