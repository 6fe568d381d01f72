//! Adapter vs raw engine, side by side in one criterion group per workload and backend.
//!
//! For every backend (fjall, redb, memory) the same workload runs through our adapter
//! (`Arc<dyn StorageBackend>`) and directly on the raw engine, on two data sets built by the
//! same code with the same options (fjall and redb: loaded with the raw engine in a fresh
//! tempdir, settled, closed, then one copy reopened raw and the other through the adapter).
//!
//! | group | raw engine | adapter |
//! |---|---|---|
//! | `get_<backend>` | fjall `db.snapshot().get(&ks, k)`; redb read txn + `open_table` + `get` per call; `RwLock<BTreeMap>` read lock + `get` | `backend.get(&c, k)` |
//! | `scan_<backend>` | 100 entries from a random start, forward (fjall via a fresh `Snapshot`, redb via a fresh read txn) | one `scan` with limit 100 |
//! | `batch_<backend>` | 1,000 random puts: fjall `OwnedWriteBatch` + `PersistMode::Buffer`; redb write txn + `Durability::None`; `BTreeMap` inserts under the write lock | `WriteBatch` of 1,000 puts, `Durability::Buffered` |
//!
//! **How the adapter is driven.** A tokio current-thread runtime; routine `adapter` calls
//! `Runtime::block_on` once per operation (per get, per scan, per batch) — what a synchronous
//! embedder pays. Routine `adapter_in_rt` (get only) runs the whole timed loop inside one
//! `block_on`, i.e. the cost seen by async code already running on the runtime; the difference
//! between the two is the `block_on` entry cost.
//!
//! **Equal work on both sides.** Both sides use the same pre-generated key sequence, starting
//! at the same position. A get folds the value into `len + first byte` and a scan sums key and
//! value lengths on both sides; the adapter's owned `Vec`s (its API returns owned data) are
//! created and dropped inside the timed region, the raw engines' zero-copy guards/slices too.
//! A batch routine builds its batch from the same pre-generated keys/values on both sides
//! (the adapter needs owned `Vec`s, the raw engines copy from slices). Batch keys are random
//! picks from the preloaded key space, so the data set keeps its size.
//!
//! Sizes: 100,000 preloaded keys (16 B) with 100-byte incompressible values; fjall and redb
//! caches pinned at 256 MiB on both sides. `ZCORE_BENCH_QUICK=1` gives a smoke run,
//! `cargo test --benches` runs every routine once on 2,000 keys, `ZCORE_BENCH_BACKENDS=fjall,redb`
//! restricts the backends and `ZCORE_BENCH_ADAPTER_FIRST=1` measures the adapter first.
//! `cargo run -p zcore-benches --release --bin ratios` prints the ratio table afterwards.

#![allow(
    clippy::expect_used,
    reason = "benchmark harness: an engine error aborts the run with its message"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use fjall::{CompressionType, KeyspaceCreateOptions, PersistMode, Readable};
use tokio::runtime::Runtime;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_benches::config::{BATCH_LEN, BenchConfig, CACHE_BYTES, COLLECTION, Mode, SCAN_LEN};
use zcore_benches::data::{self, Key, Value};
use zcore_engine::{CollectionName, Durability, KeyRange, ScanRequest, StorageBackend, WriteBatch};

/// What a get returns to `black_box` on both sides: touches the value's length and first byte.
#[inline]
fn fold_value(v: &[u8]) -> usize {
    v.len() + v.first().map_or(0, |b| usize::from(*b))
}

/// The raw-engine side of the three workloads. Used through generics only, so the raw side
/// pays no dynamic dispatch.
trait RawEngine {
    /// Point read: [`fold_value`] of the value, 0 if absent.
    fn get(&self, key: &[u8]) -> usize;
    /// Forward scan of `n` entries from `start`: sum of key and value lengths.
    fn scan(&self, start: &[u8], n: usize) -> usize;
    /// One atomic batch of puts, not synced.
    fn write_batch(&self, items: &[(Key, Value)]);
    /// Waits for background work (flushes, compactions) to finish.
    fn quiesce(&self, _timeout: Duration) {}
}

// ------------------------------------------------------------------------------------ fjall

fn fjall_builder(path: &Path) -> fjall::DatabaseBuilder<fjall::Database> {
    // The same engine options the adapter sets for FjallOptions { cache 256 MiB, Lz4 }.
    fjall::Database::builder(path)
        .cache_size(CACHE_BYTES)
        .journal_compression(CompressionType::Lz4)
}

fn fjall_options() -> FjallOptions {
    FjallOptions {
        cache_size_bytes: CACHE_BYTES,
        ..FjallOptions::default()
    }
}

/// Waits until fjall has no flush or compaction running for 0.5 s (or `timeout` passes).
fn fjall_quiesce(db: &fjall::Database, timeout: Duration) {
    let start = Instant::now();
    let mut quiet = 0;
    while start.elapsed() < timeout {
        if db.outstanding_flushes() == 0 && db.active_compactions() == 0 {
            quiet += 1;
            if quiet >= 5 {
                return;
            }
        } else {
            quiet = 0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Loads keys `0..n` into a fresh fjall database at `path`, flushes, settles and closes it.
fn fjall_load(path: &Path, n: u64, timeout: Duration) {
    let db = fjall_builder(path).open().expect("open fjall");
    let ks = db
        .keyspace(COLLECTION, KeyspaceCreateOptions::default)
        .expect("create keyspace");
    for chunk in data::preload_chunks(n, BATCH_LEN as u64) {
        let mut batch = db.batch();
        for (k, v) in &chunk {
            batch.insert(&ks, &k[..], &v[..]);
        }
        batch.commit().expect("preload batch");
    }
    db.persist(PersistMode::SyncAll).expect("persist");
    ks.rotate_memtable_and_wait().expect("flush memtable");
    fjall_quiesce(&db, timeout);
}

struct RawFjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl RawFjall {
    fn open(path: &Path) -> Self {
        let db = fjall_builder(path).open().expect("reopen fjall");
        let ks = db
            .keyspace(COLLECTION, KeyspaceCreateOptions::default)
            .expect("open keyspace");
        Self { db, ks }
    }
}

impl RawEngine for RawFjall {
    #[inline]
    fn get(&self, key: &[u8]) -> usize {
        self.db
            .snapshot()
            .get(&self.ks, key)
            .expect("fjall get")
            .map_or(0, |v| fold_value(&v))
    }

    #[inline]
    fn scan(&self, start: &[u8], n: usize) -> usize {
        self.db
            .snapshot()
            .range::<&[u8], _>(&self.ks, start..)
            .take(n)
            .map(|g| {
                let (k, v) = g.into_inner().expect("fjall scan");
                k.len() + v.len()
            })
            .sum()
    }

    #[inline]
    fn write_batch(&self, items: &[(Key, Value)]) {
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), items.len())
            .durability(Some(PersistMode::Buffer));
        for (k, v) in items {
            batch.insert(&self.ks, &k[..], &v[..]);
        }
        batch.commit().expect("fjall batch");
    }

    fn quiesce(&self, timeout: Duration) {
        fjall_quiesce(&self.db, timeout);
    }
}

// ------------------------------------------------------------------------------------- redb

const REDB_TABLE: redb::TableDefinition<'static, &'static [u8], &'static [u8]> =
    redb::TableDefinition::new(COLLECTION);

fn redb_open(path: &Path) -> redb::Database {
    let mut builder = redb::Database::builder();
    builder.set_cache_size(usize::try_from(CACHE_BYTES).unwrap_or(usize::MAX));
    builder.create(path).expect("open redb")
}

fn redb_options() -> RedbOptions {
    RedbOptions {
        cache_size_bytes: CACHE_BYTES,
    }
}

/// Loads keys `0..n` into a fresh redb file at `path`, makes it durable and closes it.
fn redb_load(path: &Path, n: u64) {
    let db = redb_open(path);
    for chunk in data::preload_chunks(n, BATCH_LEN as u64) {
        let mut txn = db.begin_write().expect("begin write");
        txn.set_durability(redb::Durability::None)
            .expect("set durability");
        {
            let mut table = txn.open_table(REDB_TABLE).expect("open table");
            for (k, v) in &chunk {
                table.insert(&k[..], &v[..]).expect("preload insert");
            }
        }
        txn.commit().expect("preload commit");
    }
    // One Immediate commit makes the None commits durable.
    db.begin_write()
        .expect("begin write")
        .commit()
        .expect("durable commit");
    db.close().expect("close redb");
}

struct RawRedb {
    db: redb::Database,
}

impl RawEngine for RawRedb {
    #[inline]
    fn get(&self, key: &[u8]) -> usize {
        use redb::ReadableDatabase as _;
        let txn = self.db.begin_read().expect("begin read");
        let table = txn.open_table(REDB_TABLE).expect("open table");
        table
            .get(key)
            .expect("redb get")
            .map_or(0, |g| fold_value(g.value()))
    }

    #[inline]
    fn scan(&self, start: &[u8], n: usize) -> usize {
        use redb::ReadableDatabase as _;
        let txn = self.db.begin_read().expect("begin read");
        let table = txn.open_table(REDB_TABLE).expect("open table");
        table
            .range::<&[u8]>(start..)
            .expect("redb range")
            .take(n)
            .map(|item| {
                let (k, v) = item.expect("redb scan");
                k.value().len() + v.value().len()
            })
            .sum()
    }

    #[inline]
    fn write_batch(&self, items: &[(Key, Value)]) {
        let mut txn = self.db.begin_write().expect("begin write");
        txn.set_durability(redb::Durability::None)
            .expect("set durability");
        {
            let mut table = txn.open_table(REDB_TABLE).expect("open table");
            for (k, v) in items {
                table.insert(&k[..], &v[..]).expect("redb insert");
            }
        }
        txn.commit().expect("redb commit");
    }
}

// ----------------------------------------------------------------------------------- memory

struct RawMemory(RwLock<BTreeMap<Vec<u8>, Vec<u8>>>);

impl RawMemory {
    fn load(n: u64) -> Self {
        let mut map = BTreeMap::new();
        for chunk in data::preload_chunks(n, BATCH_LEN as u64) {
            for (k, v) in chunk {
                map.insert(k.to_vec(), v.to_vec());
            }
        }
        Self(RwLock::new(map))
    }
}

impl RawEngine for RawMemory {
    #[inline]
    fn get(&self, key: &[u8]) -> usize {
        let map = self.0.read().expect("lock");
        map.get(key).map_or(0, |v| fold_value(v))
    }

    #[inline]
    fn scan(&self, start: &[u8], n: usize) -> usize {
        let map = self.0.read().expect("lock");
        map.range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .take(n)
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    #[inline]
    fn write_batch(&self, items: &[(Key, Value)]) {
        let mut map = self.0.write().expect("lock");
        for (k, v) in items {
            map.insert(k.to_vec(), v.to_vec());
        }
    }
}

// ---------------------------------------------------------------------------------- adapter

struct Adapter {
    backend: Arc<dyn StorageBackend>,
    collection: CollectionName,
}

impl Adapter {
    fn new(backend: Arc<dyn StorageBackend>) -> Self {
        Self {
            backend,
            collection: CollectionName::new(COLLECTION).expect("collection name"),
        }
    }

    /// Preloads keys `0..n` through the adapter (memory backend only: the persistent ones are
    /// loaded by the raw engine and reopened).
    fn load(&self, rt: &Runtime, n: u64) {
        rt.block_on(self.backend.create_collection(&self.collection))
            .expect("create collection");
        for chunk in data::preload_chunks(n, BATCH_LEN as u64) {
            let mut batch = WriteBatch::with_capacity(chunk.len());
            for (k, v) in &chunk {
                batch.put(&self.collection, &k[..], &v[..]);
            }
            rt.block_on(self.backend.write(batch, Durability::Buffered))
                .expect("preload write");
        }
    }

    async fn get(&self, key: &[u8]) -> usize {
        self.backend
            .get(&self.collection, key)
            .await
            .expect("adapter get")
            .map_or(0, |v| fold_value(&v))
    }

    async fn scan(&self, start: &[u8], n: usize) -> usize {
        let request = ScanRequest::forward(
            KeyRange::new(Bound::Included(start.to_vec()), Bound::Unbounded),
            n,
        );
        let page = self
            .backend
            .scan(&self.collection, &request)
            .await
            .expect("adapter scan");
        page.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    async fn write_batch(&self, items: &[(Key, Value)]) {
        let mut batch = WriteBatch::with_capacity(items.len());
        for (k, v) in items {
            batch.put(&self.collection, &k[..], &v[..]);
        }
        self.backend
            .write(batch, Durability::Buffered)
            .await
            .expect("adapter write");
    }
}

// -------------------------------------------------------------------------------- workloads

/// The pre-generated inputs, identical for raw and adapter.
struct Inputs {
    get_keys: Vec<Key>,
    scan_starts: Vec<Key>,
    batches: Vec<Vec<(Key, Value)>>,
}

impl Inputs {
    fn new(cfg: &BenchConfig) -> Self {
        Self {
            get_keys: data::random_keys(cfg.keys, cfg.get_sequence, 0x6e7),
            scan_starts: data::random_scan_starts(
                cfg.keys,
                SCAN_LEN as u64,
                cfg.scan_sequence,
                0x5ca,
            ),
            batches: data::random_batches(cfg.keys, cfg.batch_pool, BATCH_LEN, 0xba7),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    Adapter,
    AdapterInRuntime,
}

fn variants(cfg: &BenchConfig, with_in_runtime: bool) -> Vec<Variant> {
    let mut v = if cfg.adapter_first {
        vec![Variant::Adapter, Variant::Raw]
    } else {
        vec![Variant::Raw, Variant::Adapter]
    };
    if with_in_runtime {
        v.push(Variant::AdapterInRuntime);
    }
    v
}

fn group<'a>(
    c: &'a mut Criterion,
    cfg: &BenchConfig,
    name: String,
    elements: u64,
    flat: bool,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(elements));
    g.warm_up_time(cfg.warm_up);
    g.nresamples(cfg.nresamples);
    if flat {
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(cfg.batch_sample_size)
            .measurement_time(cfg.batch_measurement);
    } else {
        g.sample_size(cfg.sample_size)
            .measurement_time(cfg.measurement);
    }
    g
}

/// A cyclic cursor over a power-of-two-long input list; each routine starts at 0.
struct Cursor {
    pos: usize,
    mask: usize,
}

impl Cursor {
    fn new(len: usize) -> Self {
        debug_assert!(len.is_power_of_two());
        Self {
            pos: 0,
            mask: len - 1,
        }
    }

    #[inline]
    fn next(&mut self) -> usize {
        let i = self.pos & self.mask;
        self.pos = self.pos.wrapping_add(1);
        i
    }
}

fn warm<R: RawEngine>(rt: &Runtime, cfg: &BenchConfig, raw: &R, adapter: &Adapter) {
    let mut sum = 0usize;
    for i in 0..cfg.keys {
        let k = data::key(i);
        sum = sum.wrapping_add(raw.get(&k));
        sum = sum.wrapping_add(rt.block_on(adapter.get(&k)));
    }
    black_box(sum);
}

fn bench_get<R: RawEngine>(
    c: &mut Criterion,
    cfg: &BenchConfig,
    rt: &Runtime,
    backend: &str,
    raw: &R,
    adapter: &Adapter,
    inputs: &Inputs,
) {
    let keys = &inputs.get_keys;
    let mut g = group(c, cfg, format!("get_{backend}"), 1, false);
    for variant in variants(cfg, true) {
        let mut cur = Cursor::new(keys.len());
        match variant {
            Variant::Raw => g.bench_function("raw", |b| b.iter(|| raw.get(&keys[cur.next()]))),
            Variant::Adapter => g.bench_function("adapter", |b| {
                b.iter(|| rt.block_on(adapter.get(&keys[cur.next()])))
            }),
            Variant::AdapterInRuntime => g.bench_function("adapter_in_rt", |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(adapter.get(&keys[cur.next()]).await);
                        }
                        start.elapsed()
                    })
                });
            }),
        };
    }
    g.finish();
}

fn bench_scan<R: RawEngine>(
    c: &mut Criterion,
    cfg: &BenchConfig,
    rt: &Runtime,
    backend: &str,
    raw: &R,
    adapter: &Adapter,
    inputs: &Inputs,
) {
    let starts = &inputs.scan_starts;
    let mut g = group(c, cfg, format!("scan_{backend}"), SCAN_LEN as u64, false);
    for variant in variants(cfg, false) {
        let mut cur = Cursor::new(starts.len());
        match variant {
            Variant::Raw => g.bench_function("raw", |b| {
                b.iter(|| raw.scan(&starts[cur.next()], SCAN_LEN));
            }),
            Variant::Adapter | Variant::AdapterInRuntime => g.bench_function("adapter", |b| {
                b.iter(|| rt.block_on(adapter.scan(&starts[cur.next()], SCAN_LEN)));
            }),
        };
    }
    g.finish();
}

fn bench_batch<R: RawEngine>(
    c: &mut Criterion,
    cfg: &BenchConfig,
    rt: &Runtime,
    backend: &str,
    raw: &R,
    adapter: &Adapter,
    inputs: &Inputs,
) {
    let batches = &inputs.batches;
    let mut g = group(c, cfg, format!("batch_{backend}"), BATCH_LEN as u64, true);
    for variant in variants(cfg, false) {
        let mut cur = Cursor::new(batches.len());
        // Background work left by the previous routine must not run into this one. The raw
        // fjall database can be asked; the adapter does not expose its engine, so after an
        // adapter routine (only first with ZCORE_BENCH_ADAPTER_FIRST) we wait for fjall's
        // flush/compaction debt via a fixed pause.
        let mut settled = false;
        let mut settle = |first_was_adapter: bool| {
            if !settled {
                settled = true;
                raw.quiesce(cfg.settle_timeout);
                if first_was_adapter && cfg.mode == Mode::Full {
                    std::thread::sleep(Duration::from_secs(3));
                }
            }
        };
        match variant {
            Variant::Raw => g.bench_function("raw", |b| {
                settle(cfg.adapter_first);
                b.iter(|| raw.write_batch(&batches[cur.next()]));
            }),
            Variant::Adapter | Variant::AdapterInRuntime => g.bench_function("adapter", |b| {
                settle(false);
                b.iter(|| rt.block_on(adapter.write_batch(&batches[cur.next()])));
            }),
        };
    }
    g.finish();
}

fn run_backend<R: RawEngine>(
    c: &mut Criterion,
    cfg: &BenchConfig,
    rt: &Runtime,
    backend: &str,
    raw: &R,
    adapter: &Adapter,
    inputs: &Inputs,
) {
    let t = Instant::now();
    warm(rt, cfg, raw, adapter);
    eprintln!(
        "[{backend}] warmed {} keys on both sides in {:.1} s",
        cfg.keys,
        t.elapsed().as_secs_f64()
    );
    bench_get(c, cfg, rt, backend, raw, adapter, inputs);
    bench_scan(c, cfg, rt, backend, raw, adapter, inputs);
    bench_batch(c, cfg, rt, backend, raw, adapter, inputs);
    rt.block_on(adapter.backend.close()).expect("close adapter");
}

fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("zcore-bench-{tag}-"))
        .tempdir()
        .expect("tempdir")
}

fn main() {
    let cfg = BenchConfig::from_env();
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let inputs = Inputs::new(&cfg);
    eprintln!(
        "zcore-benches backend_adapter: mode {:?}, {} keys × ({} B key, {} B value), caches {} MiB, \
         adapter driven by a current-thread tokio runtime (block_on per op; get also in-runtime)",
        cfg.mode,
        cfg.keys,
        data::KEY_LEN,
        data::VALUE_LEN,
        CACHE_BYTES >> 20
    );

    if cfg.runs("fjall") {
        let t = Instant::now();
        let (raw_dir, adapter_dir) = (tempdir("fjall-raw"), tempdir("fjall-adapter"));
        fjall_load(raw_dir.path(), cfg.keys, cfg.settle_timeout);
        fjall_load(adapter_dir.path(), cfg.keys, cfg.settle_timeout);
        let raw = RawFjall::open(raw_dir.path());
        let adapter = Adapter::new(Arc::new(
            FjallBackend::open(adapter_dir.path(), &fjall_options()).expect("open fjall adapter"),
        ));
        eprintln!(
            "[fjall] loaded both data sets in {:.1} s; raw keyspace: {} tables ({} in L0)",
            t.elapsed().as_secs_f64(),
            raw.ks.table_count(),
            raw.ks.l0_table_count()
        );
        run_backend(&mut c, &cfg, &rt, "fjall", &raw, &adapter, &inputs);
    }

    if cfg.runs("redb") {
        let t = Instant::now();
        let dir = tempdir("redb");
        let (raw_path, adapter_path) =
            (dir.path().join("raw.redb"), dir.path().join("adapter.redb"));
        redb_load(&raw_path, cfg.keys);
        redb_load(&adapter_path, cfg.keys);
        let raw = RawRedb {
            db: redb_open(&raw_path),
        };
        let adapter = Adapter::new(Arc::new(
            RedbBackend::open(&adapter_path, &redb_options()).expect("open redb adapter"),
        ));
        eprintln!(
            "[redb] loaded both data sets in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        run_backend(&mut c, &cfg, &rt, "redb", &raw, &adapter, &inputs);
    }

    if cfg.runs("memory") {
        let raw = RawMemory::load(cfg.keys);
        let adapter = Adapter::new(Arc::new(MemoryBackend::new()));
        adapter.load(&rt, cfg.keys);
        run_backend(&mut c, &cfg, &rt, "memory", &raw, &adapter, &inputs);
    }

    c.final_summary();
}
