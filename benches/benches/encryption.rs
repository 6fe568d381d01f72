//! Cost of encryption at rest: the MVCC read/write workloads on a plain engine and on an
//! encrypted one (XChaCha20-Poly1305, random nonces), same backend kind, same data, same run
//! (16-byte keys, 100-byte incompressible values).
//!
//! | group | `plain` | `encrypted` |
//! |---|---|---|
//! | `encget_<b>` | `ReadTransaction::get` on a snapshot | same, every value opened (AEAD) |
//! | `encscan_<b>` | one 100-entry `scan` page | same, 100+ values opened |
//! | `encwrite_<b>` | one-key buffered write transaction | same, the value sealed |
//! | `encbatch_<b>` | one 1,000-put buffered transaction | same, 1,000 values sealed |
//!
//! and, without a backend, the codec per value (`encvalue`: `plain_encode` / `seal` /
//! `plain_decode` / `open` of one 100-byte value under the `mvcc` bench's versioned key).
//!
//! Backends: `fjall` (the production default) and `memory` (no I/O, so the crypto share is
//! the largest it can be). The cost is `encrypted / plain` of the median times:
//! `cargo bench -p zcore-benches --bench encryption`, then read
//! `target/criterion/enc*_<b>/{plain,encrypted}/new/estimates.json`.

#![allow(
    clippy::expect_used,
    reason = "benchmark harness: an engine error aborts the run"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tokio::runtime::Runtime;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend};
use zcore_benches::config::{BenchConfig, CACHE_BYTES, Mode};
use zcore_benches::data;
use zcore_engine::crypto::{EncryptionKey, EncryptionOptions, Keyring};
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend,
    WriteOptions,
};

fn buffered() -> WriteOptions {
    WriteOptions {
        durability: Durability::Buffered,
        ..WriteOptions::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
}

fn fixture(rt: &Runtime, backend: &str, keys: u64, encrypted: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours: Arc<dyn StorageBackend> = match backend {
        "fjall" => Arc::new(
            FjallBackend::open(
                dir.path().join("store"),
                &FjallOptions {
                    cache_size_bytes: CACHE_BYTES,
                    ..FjallOptions::default()
                },
            )
            .expect("open fjall"),
        ),
        _ => Arc::new(MemoryBackend::new()),
    };
    let encryption = encrypted
        .then(|| EncryptionOptions::new(Keyring::single(EncryptionKey::from_bytes([0x42; 32]))));
    let collection = CollectionName::new("bench").expect("name");
    let engine = rt.block_on(async {
        let engine = Engine::open(
            ours,
            EngineOptions {
                gc_interval: None,
                encryption,
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
    Fixture { _dir: dir, engine }
}

fn bench_backend(c: &mut Criterion, cfg: &BenchConfig, rt: &Runtime, backend: &'static str) {
    let plain = fixture(rt, backend, cfg.keys, false);
    let sealed = fixture(rt, backend, cfg.keys, true);
    let variants = [("plain", &plain), ("encrypted", &sealed)];
    let col = CollectionName::new("bench").expect("name");
    let gets = data::random_keys(cfg.keys, cfg.get_sequence, 7);
    let starts = data::random_scan_starts(cfg.keys, 100, cfg.scan_sequence, 11);

    let mut g = c.benchmark_group(format!("encget_{backend}"));
    g.throughput(Throughput::Elements(1));
    for (name, fx) in variants {
        let snapshot = fx.engine.begin_read();
        g.bench_function(name, |b| {
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
    }
    g.finish();

    let mut g = c.benchmark_group(format!("encscan_{backend}"));
    g.throughput(Throughput::Elements(100));
    for (name, fx) in variants {
        let snapshot = fx.engine.begin_read();
        g.bench_function(name, |b| {
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
    }
    g.finish();

    let value = data::value(1);
    let mut g = c.benchmark_group(format!("encwrite_{backend}"));
    g.throughput(Throughput::Elements(1));
    for (name, fx) in variants {
        g.bench_function(name, |b| {
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
    }
    g.finish();

    let batches: Vec<Vec<data::Key>> = (0..cfg.batch_pool.max(1))
        .map(|p| data::random_keys(cfg.keys, 1_000, 100 + p as u64))
        .collect();
    let mut g = c.benchmark_group(format!("encbatch_{backend}"));
    g.throughput(Throughput::Elements(1_000));
    g.sample_size(cfg.batch_sample_size)
        .measurement_time(cfg.batch_measurement);
    for (name, fx) in variants {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let mut tx = fx.engine.begin_write_with(buffered());
                        for k in &batches[i % batches.len()] {
                            tx.put(&col, k.to_vec(), value.to_vec()).expect("put");
                        }
                        tx.commit().await.expect("commit");
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
    for fx in [plain, sealed] {
        rt.block_on(fx.engine.close()).expect("close");
    }
}

/// The codec alone, per value: what the engine pays on top of the backend for one version.
fn bench_value_codec(c: &mut Criterion) {
    use zcore_engine::mvcc::keys::EncodedKey;
    use zcore_engine::mvcc::value;
    let ring = Keyring::single(EncryptionKey::from_bytes([0x42; 32]));
    let vk = EncodedKey::encode(&data::key(42)).at(1_000_000);
    let vk = vk.as_bytes().to_vec();
    let payload = data::value(42);
    let plain = value::encode("bench", &vk, Some(&payload));
    let sealed = value::seal(&ring, "bench", &vk, Some(&payload)).expect("seal");
    let mut g = c.benchmark_group("encvalue");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plain_encode", |b| {
        b.iter(|| {
            value::encode(
                black_box("bench"),
                black_box(&vk),
                Some(black_box(&payload)),
            )
        });
    });
    g.bench_function("seal", |b| {
        b.iter(|| {
            value::seal(
                black_box(&ring),
                black_box("bench"),
                black_box(&vk),
                Some(black_box(&payload)),
            )
            .expect("seal")
        });
    });
    g.bench_function("plain_decode", |b| {
        b.iter(|| {
            value::decode_owned(
                black_box("bench"),
                black_box(&vk),
                black_box(&plain).clone(),
            )
            .expect("decode")
        });
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            value::open_owned(
                black_box(&ring),
                false,
                black_box("bench"),
                black_box(&vk),
                black_box(&sealed).clone(),
            )
            .expect("open")
        });
    });
    g.finish();
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
    bench_value_codec(&mut c);
    for backend in ["fjall", "memory"] {
        if cfg.runs(backend) {
            bench_backend(&mut c, &cfg, &rt, backend);
        }
    }
    c.final_summary();
}
