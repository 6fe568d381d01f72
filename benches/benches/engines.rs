//! Shared by the bench targets: the raw-engine side of each workload ([`RawEngine`], one
//! implementation per engine), the adapter side ([`Adapter`]), the data-set fixtures (fjall and
//! redb: loaded by the raw engine, settled, closed, then one copy reopened raw and one through
//! the adapter, with the same engine options) and the pre-generated inputs.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fjall::{CompressionType, KeyspaceCreateOptions, PersistMode, Readable};
use tokio::runtime::Runtime;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_benches::config::{BATCH_LEN, BenchConfig, CACHE_BYTES, COLLECTION, SCAN_LEN};
use zcore_benches::data::{self, Key, Value};
use zcore_engine::{CollectionName, Durability, KeyRange, ScanRequest, StorageBackend, WriteBatch};

/// What a get returns to `black_box` on both sides: touches the value's length and first byte.
#[inline]
pub fn fold_value(v: &[u8]) -> usize {
    v.len() + v.first().map_or(0, |b| usize::from(*b))
}

/// The raw-engine side of the three workloads. Used through generics only, so the raw side
/// pays no dynamic dispatch.
pub trait RawEngine {
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

pub fn fjall_builder(path: &Path) -> fjall::DatabaseBuilder<fjall::Database> {
    // The same engine options the adapter sets for FjallOptions { cache 256 MiB, Lz4 }.
    fjall::Database::builder(path)
        .cache_size(CACHE_BYTES)
        .journal_compression(CompressionType::Lz4)
}

pub fn fjall_options() -> FjallOptions {
    FjallOptions {
        cache_size_bytes: CACHE_BYTES,
        ..FjallOptions::default()
    }
}

/// Waits until fjall has no flush or compaction running for 0.5 s (or `timeout` passes).
pub fn fjall_quiesce(db: &fjall::Database, timeout: Duration) {
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
pub fn fjall_load(path: &Path, n: u64, timeout: Duration) {
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

pub struct RawFjall {
    pub db: fjall::Database,
    pub ks: fjall::Keyspace,
}

impl RawFjall {
    pub fn open(path: &Path) -> Self {
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

pub const REDB_TABLE: redb::TableDefinition<'static, &'static [u8], &'static [u8]> =
    redb::TableDefinition::new(COLLECTION);

pub fn redb_open(path: &Path) -> redb::Database {
    let mut builder = redb::Database::builder();
    builder.set_cache_size(usize::try_from(CACHE_BYTES).unwrap_or(usize::MAX));
    builder.create(path).expect("open redb")
}

pub fn redb_options() -> RedbOptions {
    RedbOptions {
        cache_size_bytes: CACHE_BYTES,
    }
}

/// Loads keys `0..n` into a fresh redb file at `path`, makes it durable and closes it.
pub fn redb_load(path: &Path, n: u64) {
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

pub struct RawRedb {
    pub db: redb::Database,
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

pub struct RawMemory(pub RwLock<BTreeMap<Vec<u8>, Vec<u8>>>);

impl RawMemory {
    pub fn load(n: u64) -> Self {
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

pub struct Adapter {
    pub backend: Arc<dyn StorageBackend>,
    pub collection: CollectionName,
}

impl Adapter {
    pub fn new(backend: Arc<dyn StorageBackend>) -> Self {
        Self {
            backend,
            collection: CollectionName::new(COLLECTION).expect("collection name"),
        }
    }

    /// Preloads keys `0..n` through the adapter (memory backend only: the persistent ones are
    /// loaded by the raw engine and reopened).
    pub fn load(&self, rt: &Runtime, n: u64) {
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

    pub async fn get(&self, key: &[u8]) -> usize {
        self.backend
            .get(&self.collection, key)
            .await
            .expect("adapter get")
            .map_or(0, |v| fold_value(&v))
    }

    pub async fn scan(&self, start: &[u8], n: usize) -> usize {
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

    pub async fn write_batch(&self, items: &[(Key, Value)]) {
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

/// The pre-generated inputs, identical for raw and adapter.
pub struct Inputs {
    pub get_keys: Vec<Key>,
    pub scan_starts: Vec<Key>,
    pub batches: Vec<Vec<(Key, Value)>>,
}

impl Inputs {
    pub fn new(cfg: &BenchConfig) -> Self {
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

pub fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("zcore-bench-{tag}-"))
        .tempdir()
        .expect("tempdir")
}

/// A raw engine and the adapter over an identical data set, plus the directories they live in.
pub struct Fixture<R> {
    /// The raw engine.
    pub raw: R,
    /// The adapter.
    pub adapter: Adapter,
    _dirs: Vec<tempfile::TempDir>,
}

/// fjall: two data sets loaded and settled by the same code, one reopened raw, one through
/// [`FjallBackend`], both with a 256 MiB cache and LZ4.
pub fn fjall_fixture(cfg: &BenchConfig) -> Fixture<RawFjall> {
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
    Fixture {
        raw,
        adapter,
        _dirs: vec![raw_dir, adapter_dir],
    }
}

/// redb: two files loaded by the same code, one reopened raw, one through [`RedbBackend`],
/// both with a 256 MiB cache.
pub fn redb_fixture(cfg: &BenchConfig) -> Fixture<RawRedb> {
    let t = Instant::now();
    let dir = tempdir("redb");
    let (raw_path, adapter_path) = (dir.path().join("raw.redb"), dir.path().join("adapter.redb"));
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
    Fixture {
        raw,
        adapter,
        _dirs: vec![dir],
    }
}

/// memory: a `RwLock<BTreeMap>` and a [`MemoryBackend`] loaded through the adapter.
pub fn memory_fixture(cfg: &BenchConfig, rt: &Runtime) -> Fixture<RawMemory> {
    let raw = RawMemory::load(cfg.keys);
    let adapter = Adapter::new(Arc::new(MemoryBackend::new()));
    adapter.load(rt, cfg.keys);
    Fixture {
        raw,
        adapter,
        _dirs: Vec::new(),
    }
}

/// Reads every key once on both sides (fills the block/page caches).
pub fn warm<R: RawEngine>(rt: &Runtime, cfg: &BenchConfig, backend: &str, fixture: &Fixture<R>) {
    let t = Instant::now();
    let mut sum = 0usize;
    for i in 0..cfg.keys {
        let k = data::key(i);
        sum = sum.wrapping_add(fixture.raw.get(&k));
        sum = sum.wrapping_add(rt.block_on(fixture.adapter.get(&k)));
    }
    black_box(sum);
    eprintln!(
        "[{backend}] warmed {} keys on both sides in {:.1} s",
        cfg.keys,
        t.elapsed().as_secs_f64()
    );
}

/// The current-thread runtime that drives the adapter.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}
