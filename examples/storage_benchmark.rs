//! The seed's storage benchmark: standard workloads through the transaction engine on every
//! backend, each next to the same workload on the raw engine in the same process, printed as
//! ops/s and ratio (ours / raw).
//!
//! `cargo run --release --example storage_benchmark` (set `ZCORE_BENCH_N` to scale; default
//! 20,000 operations per workload). For statistically careful numbers use the criterion benches
//! in `benches/`; this is the quick overview.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use fjall::{KeyspaceCreateOptions, PersistMode, Readable};
use redb::{ReadableDatabase, TableDefinition};
use zcore_storage::{
    CollectionName, Durability, Engine, EngineOptions, FjallBackend, FjallOptions, KeyRange,
    MemoryBackend, RedbBackend, RedbOptions, ScanRequest, StorageBackend, WriteOptions,
};

const CACHE: u64 = 256 << 20;
const TABLE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("bench");

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 16-byte key: index big-endian ‖ 8 hash bytes (order = index order).
fn key(i: u64) -> Vec<u8> {
    [i.to_be_bytes(), mix(i).to_be_bytes()].concat()
}

fn value(i: u64) -> Vec<u8> {
    (0..13u64)
        .flat_map(|j| mix(i * 31 + j).to_be_bytes())
        .take(100)
        .collect()
}

struct Row {
    workload: &'static str,
    backend: &'static str,
    ours: f64,
    raw: f64,
}

fn rate(n: u64, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

/// The raw engine behind one backend, driven directly.
enum Raw {
    Fjall(fjall::Database, fjall::Keyspace),
    Redb(redb::Database),
    Memory(RwLock<BTreeMap<Vec<u8>, Vec<u8>>>),
}

impl Raw {
    fn insert_one(&self, k: &[u8], v: &[u8]) {
        match self {
            Raw::Fjall(db, ks) => {
                let mut b = db.batch();
                b.insert(ks, k, v);
                b.commit().unwrap();
            }
            Raw::Redb(db) => {
                let mut tx = db.begin_write().unwrap();
                tx.set_durability(redb::Durability::None).unwrap();
                tx.open_table(TABLE).unwrap().insert(k, v).unwrap();
                tx.commit().unwrap();
            }
            Raw::Memory(m) => {
                m.write().unwrap().insert(k.to_vec(), v.to_vec());
            }
        }
    }

    fn insert_batch(&self, items: &[(Vec<u8>, Vec<u8>)]) {
        match self {
            Raw::Fjall(db, ks) => {
                let mut b = db.batch();
                for (k, v) in items {
                    b.insert(ks, k.as_slice(), v.as_slice());
                }
                b.commit().unwrap();
            }
            Raw::Redb(db) => {
                let mut tx = db.begin_write().unwrap();
                tx.set_durability(redb::Durability::None).unwrap();
                {
                    let mut t = tx.open_table(TABLE).unwrap();
                    for (k, v) in items {
                        t.insert(k.as_slice(), v.as_slice()).unwrap();
                    }
                }
                tx.commit().unwrap();
            }
            Raw::Memory(m) => {
                let mut m = m.write().unwrap();
                for (k, v) in items {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
    }

    fn durable_one(&self, k: &[u8], v: &[u8]) {
        match self {
            Raw::Fjall(db, ks) => {
                let mut b = db.batch();
                b.insert(ks, k, v);
                b.commit().unwrap();
                db.persist(PersistMode::SyncAll).unwrap();
            }
            Raw::Redb(db) => {
                let tx = db.begin_write().unwrap();
                tx.open_table(TABLE).unwrap().insert(k, v).unwrap();
                tx.commit().unwrap();
            }
            Raw::Memory(m) => {
                m.write().unwrap().insert(k.to_vec(), v.to_vec());
            }
        }
    }

    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        match self {
            Raw::Fjall(db, ks) => db.snapshot().get(ks, k).unwrap().map(|v| v.to_vec()),
            Raw::Redb(db) => {
                let tx = db.begin_read().unwrap();
                let t = tx.open_table(TABLE).unwrap();
                t.get(k).unwrap().map(|v| v.value().to_vec())
            }
            Raw::Memory(m) => m.read().unwrap().get(k).cloned(),
        }
    }

    /// Copies keys and values out, as our layer returns owned data.
    fn scan(&self, from: &[u8], n: usize) -> usize {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = match self {
            Raw::Fjall(db, ks) => db
                .snapshot()
                .range::<&[u8], _>(ks, from..)
                .take(n)
                .map(|g| {
                    let (k, v) = g.into_inner().unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect(),
            Raw::Redb(db) => {
                let tx = db.begin_read().unwrap();
                let t = tx.open_table(TABLE).unwrap();
                t.range::<&[u8]>(from..)
                    .unwrap()
                    .take(n)
                    .map(|r| {
                        let (k, v) = r.unwrap();
                        (k.value().to_vec(), v.value().to_vec())
                    })
                    .collect()
            }
            Raw::Memory(m) => m
                .read()
                .unwrap()
                .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
                .take(n)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        rows.len()
    }
}

async fn bench_backend(name: &'static str, n: u64, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let (backend, raw): (Arc<dyn StorageBackend>, Raw) = match name {
        "fjall" => {
            let opts = FjallOptions {
                cache_size_bytes: CACHE,
                ..FjallOptions::default()
            };
            let db = fjall::Database::builder(dir.path().join("raw"))
                .cache_size(CACHE)
                .open()
                .unwrap();
            let ks = db
                .keyspace("bench", KeyspaceCreateOptions::default)
                .unwrap();
            (
                Arc::new(FjallBackend::open(dir.path().join("ours"), &opts).unwrap()),
                Raw::Fjall(db, ks),
            )
        }
        "redb" => {
            let opts = RedbOptions {
                cache_size_bytes: CACHE,
            };
            let db = redb::Database::builder()
                .set_cache_size(CACHE as usize)
                .create(dir.path().join("raw.redb"))
                .unwrap();
            (
                Arc::new(RedbBackend::open(dir.path().join("ours.redb"), &opts).unwrap()),
                Raw::Redb(db),
            )
        }
        _ => (
            Arc::new(MemoryBackend::new()),
            Raw::Memory(RwLock::new(BTreeMap::new())),
        ),
    };
    let engine = Engine::open(
        backend,
        EngineOptions {
            gc_interval: None,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    let c = CollectionName::new("bench").unwrap();
    engine.create_collection(&c).await.unwrap();
    let buffered = WriteOptions {
        durability: Durability::Buffered,
        ..WriteOptions::default()
    };
    let order: Vec<u64> = (0..n).map(|i| mix(i) % n).collect();

    // Random single-key write transactions, no fsync.
    let start = Instant::now();
    for &i in &order {
        let mut tx = engine.begin_write_with(buffered);
        tx.put(&c, key(i), value(i)).unwrap();
        tx.commit().await.unwrap();
    }
    let ours = rate(n, start);
    let start = Instant::now();
    for &i in &order {
        raw.insert_one(&key(i), &value(i));
    }
    rows.push(Row {
        workload: "single-key write, buffered",
        backend: name,
        ours,
        raw: rate(n, start),
    });

    // 1,000-operation transactions.
    let batches: Vec<Vec<(Vec<u8>, Vec<u8>)>> = order
        .chunks(1000)
        .map(|ch| ch.iter().map(|&i| (key(i + n), value(i))).collect())
        .collect();
    let start = Instant::now();
    for b in &batches {
        let mut tx = engine.begin_write_with(buffered);
        for (k, v) in b {
            tx.put(&c, k.clone(), v.clone()).unwrap();
        }
        tx.commit().await.unwrap();
    }
    let ours = rate(n, start);
    let start = Instant::now();
    for b in &batches {
        raw.insert_batch(b);
    }
    rows.push(Row {
        workload: "1,000-op transaction",
        backend: name,
        ours,
        raw: rate(n, start),
    });

    // Snapshot point reads.
    let start = Instant::now();
    let r = engine.begin_read();
    for &i in &order {
        assert!(r.get(&c, &key(i)).await.unwrap().is_some());
    }
    drop(r);
    let ours = rate(n, start);
    let start = Instant::now();
    for &i in &order {
        assert!(raw.get(&key(i)).is_some());
    }
    rows.push(Row {
        workload: "snapshot point read",
        backend: name,
        ours,
        raw: rate(n, start),
    });

    // 100-key range scans (keys/s).
    let scans = (n / 100).max(10);
    let start = Instant::now();
    let r = engine.begin_read();
    for s in 0..scans {
        let req = ScanRequest::forward(
            KeyRange::new(
                std::ops::Bound::Included(key(mix(s) % n)),
                std::ops::Bound::Unbounded,
            ),
            100,
        );
        r.scan(&c, &req).await.unwrap();
    }
    drop(r);
    let ours = rate(scans * 100, start);
    let start = Instant::now();
    for s in 0..scans {
        raw.scan(&key(mix(s) % n), 100);
    }
    rows.push(Row {
        workload: "range scan, 100 keys",
        backend: name,
        ours,
        raw: rate(scans * 100, start),
    });

    if name != "memory" {
        // Durable commits: one committer, then 32 concurrent committers (group commit).
        let durable = (n / 20).max(200);
        let start = Instant::now();
        for i in 0..durable {
            let mut tx = engine.begin_write();
            tx.put(&c, key(i + 3 * n), value(i)).unwrap();
            tx.commit().await.unwrap();
        }
        let one = rate(durable, start);
        let start = Instant::now();
        for i in 0..durable {
            raw.durable_one(&key(i + 3 * n), &value(i));
        }
        rows.push(Row {
            workload: "durable commit, 1 committer",
            backend: name,
            ours: one,
            raw: rate(durable, start),
        });
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let (e, c) = (engine.clone(), c.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..durable / 32 {
                    let mut tx = e.begin_write();
                    tx.put(&c, key(4 * n + t * durable + i), value(i)).unwrap();
                    tx.commit().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let many = rate(durable / 32 * 32, start);
        rows.push(Row {
            workload: "durable commit, 32 committers (vs 1)",
            backend: name,
            ours: many,
            raw: one,
        });
    }
    engine.close().await.unwrap();
}

fn main() {
    let n: u64 = std::env::var("ZCORE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for backend in ["fjall", "redb", "memory"] {
        rt.block_on(bench_backend(backend, n, &mut rows));
    }
    println!(
        "{:<40} {:<7} {:>14} {:>14} {:>7}",
        "workload", "backend", "ours ops/s", "raw ops/s", "ratio"
    );
    for r in rows {
        println!(
            "{:<40} {:<7} {:>14.0} {:>14.0} {:>7.2}",
            r.workload,
            r.backend,
            r.ours,
            r.raw,
            r.ours / r.raw
        );
    }
    println!(
        "(ratio = ours / raw in the same process; the 32-committer row compares with our own 1-committer rate)"
    );
}
