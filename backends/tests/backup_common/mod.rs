//! Helpers shared by the backup tests: backends on real files, state dumps, a target that
//! counts every write, deterministic workloads.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_engine::{
    BackendError, BackendKind, BackendStats, CollectionName, Durability, Engine, EngineOptions,
    KeyRange, ScanPage, ScanRequest, StorageBackend, Version, WriteBatch, WriteOptions,
};

pub const KINDS: [&str; 3] = ["memory", "fjall", "redb"];

/// Opens a backend of `kind` stored under `dir` (memory ignores it).
pub fn open(kind: &str, dir: &Path) -> Arc<dyn StorageBackend> {
    match kind {
        "memory" => Arc::new(MemoryBackend::new()),
        "fjall" => Arc::new(
            FjallBackend::open(
                dir.join("store.fjall"),
                &FjallOptions {
                    worker_threads: Some(1),
                    cache_size_bytes: 8 << 20,
                    ..FjallOptions::default()
                },
            )
            .unwrap(),
        ),
        "redb" => Arc::new(
            RedbBackend::open(
                dir.join("store.redb"),
                &RedbOptions {
                    cache_size_bytes: 8 << 20,
                },
            )
            .unwrap(),
        ),
        other => panic!("unknown backend {other}"),
    }
}

pub fn options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// (collection, key) → value.
pub type State = BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// Every user collection's visible entries at `version`, plus the collection names.
pub async fn state_at(engine: &Engine, version: Version) -> (Vec<String>, State) {
    let txn = engine.begin_read_at(version).unwrap();
    let mut state = State::new();
    let names: Vec<String> = engine
        .collections()
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    for c in engine.collections() {
        for (k, v) in txn.scan_prefix(&c, b"").await.unwrap() {
            state.insert((c.as_str().to_owned(), k), v);
        }
    }
    (names, state)
}

/// Whether a backend holds no user collection and no record at all.
pub async fn is_empty(backend: &dyn StorageBackend) -> bool {
    for c in backend.list_collections().await.unwrap() {
        if !c.is_system() {
            return false;
        }
        let page = backend
            .scan(&c, &ScanRequest::forward(KeyRange::all(), 1))
            .await
            .unwrap();
        if !page.entries.is_empty() {
            return false;
        }
    }
    true
}

/// A deterministic pseudo-random generator (xorshift).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A key with awkward bytes now and then (0x00, 0xFF, prefixes of each other).
pub fn key(rng: &mut Rng, space: u64) -> Vec<u8> {
    let n = rng.below(space);
    match n % 5 {
        0 => vec![0x00, n as u8],
        1 => vec![0xFF; 1 + (n as usize % 3)],
        2 => format!("k{n}").into_bytes(),
        3 => format!("k{n}\x00x").into_bytes(),
        _ => format!("user:{n:06}").into_bytes(),
    }
}

pub fn value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => Vec::new(),
        1 => rng.bytes(3000),
        _ => format!(
            "{{\"name\":\"user{}\",\"status\":\"{}\",\"n\":{}}}",
            rng.below(1000),
            ["active", "inactive", "premium"][rng.below(3) as usize],
            rng.below(100_000)
        )
        .into_bytes(),
    }
}

pub const COLLECTIONS: [&str; 3] = ["users", "orders", "empty"];

/// Creates the test collections.
pub async fn create_collections(engine: &Engine) {
    for c in COLLECTIONS {
        engine
            .create_collection(&CollectionName::new(c).unwrap())
            .await
            .unwrap();
    }
}

/// Runs `txns` random transactions (puts, overwrites, deletes) on `users` and `orders`.
pub async fn workload(engine: &Engine, rng: &mut Rng, txns: usize, space: u64) {
    let cols = [
        CollectionName::new("users").unwrap(),
        CollectionName::new("orders").unwrap(),
    ];
    for _ in 0..txns {
        let mut tx = engine.begin_write_with(WriteOptions {
            durability: Durability::Buffered,
            ..WriteOptions::default()
        });
        for _ in 0..1 + rng.below(4) {
            let c = &cols[rng.below(2) as usize];
            let k = key(rng, space);
            if rng.below(5) == 0 {
                tx.delete(c, k).unwrap();
            } else {
                tx.put(c, k, value(rng)).unwrap();
            }
        }
        tx.commit().await.unwrap();
    }
}

/// A backend that counts every mutating call before delegating (to prove a failed restore
/// wrote nothing).
#[derive(Debug)]
pub struct Counting {
    pub inner: Arc<dyn StorageBackend>,
    pub mutations: AtomicU64,
}

impl Counting {
    pub fn new(inner: Arc<dyn StorageBackend>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            mutations: AtomicU64::new(0),
        })
    }

    pub fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.mutations.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl StorageBackend for Counting {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }
    async fn create_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        self.count();
        self.inner.create_collection(name).await
    }
    async fn open_collection(&self, name: &CollectionName) -> Result<(), BackendError> {
        self.inner.open_collection(name).await
    }
    async fn list_collections(&self) -> Result<Vec<CollectionName>, BackendError> {
        self.inner.list_collections().await
    }
    async fn drop_collection(&self, name: &CollectionName) -> Result<bool, BackendError> {
        self.count();
        self.inner.drop_collection(name).await
    }
    async fn get(
        &self,
        collection: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(collection, key).await
    }
    async fn scan(
        &self,
        collection: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, BackendError> {
        self.inner.scan(collection, request).await
    }
    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), BackendError> {
        self.count();
        self.inner.write(batch, durability).await
    }
    async fn sync(&self) -> Result<(), BackendError> {
        self.inner.sync().await
    }
    async fn stats(&self) -> Result<BackendStats, BackendError> {
        self.inner.stats().await
    }
    async fn close(&self) -> Result<(), BackendError> {
        self.inner.close().await
    }
}

/// Copies a directory tree (regular files only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Engine options used by tests that make incremental backups (history kept).
pub fn retaining() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        retain_versions: 1_000_000,
        ..EngineOptions::default()
    }
}

/// Opens the engine on a restored target.
pub async fn open_engine(backend: Arc<dyn StorageBackend>) -> Engine {
    Engine::open(backend, options()).await.unwrap()
}
