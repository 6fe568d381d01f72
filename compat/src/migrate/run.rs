//! A run: plan the collections, copy them in checkpointed batches, merge engine metadata,
//! verify.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use zcore_engine::mvcc::keys::{EncodedKey, VersionedKey};
use zcore_engine::mvcc::value::{self, Stored};
use zcore_engine::mvcc::{MAX_USER_KEY_LEN, MAX_USER_VALUE_LEN, META_COLLECTION};
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, Isolation, KeyRange, ReadTransaction,
    ScanRequest, StorageBackend, Version, WriteBatch, WriteOptions,
};

use super::checkpoint::{self, Checkpoint, CollectionProgress, RUN_KEY, RunRecord};
use super::error::MigrateError;
use super::progress::{Phase, Progress};
use super::redb_file::{RedbFile, RedbTable};
use super::report::{CollectionReport, Report, RunKind, Side, SkippedTable};
use super::{MigrateOptions, Mode, PlannedCollection, Source, SourceKind, Target};

/// Prefix of the engine's sequence lease records in `__meta` (`zcore_engine::mvcc::meta`).
/// Snapshot runs carry these over; the `migrate` tests check that sequences continue.
const SEQUENCE_PREFIX: &[u8] = b"seq.";
/// Entries per backend scan call when reading whole collections.
const SCAN_PAGE: usize = 1024;
/// Batches the reader may run ahead of the writer.
const CHANNEL_BATCHES: usize = 2;

fn engine_options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    }
}

/// Where a planned collection's rows come from.
#[derive(Clone, Debug)]
enum ItemRead {
    Collection(CollectionName),
    Redb(RedbTable),
}

#[derive(Clone, Debug)]
struct Item {
    planned: PlannedCollection,
    target: CollectionName,
    read: ItemRead,
    source_rows: Option<u64>,
}

/// The opened source.
#[derive(Clone, Debug)]
enum Opened {
    Store {
        engine: Engine,
        backend: Arc<dyn StorageBackend>,
    },
    Redb {
        path: PathBuf,
        cache_bytes: usize,
    },
}

#[derive(Debug)]
struct Plan {
    mode: Mode,
    source_label: String,
    source_version: Option<Version>,
    fingerprint: [u8; 32],
    items: Vec<Item>,
    skipped: Vec<SkippedTable>,
    opened: Opened,
}

impl Plan {
    fn record(&self) -> RunRecord {
        RunRecord {
            source: self.source_label.clone(),
            mode: self.mode,
            source_version: self.source_version,
            fingerprint: self.fingerprint,
            collections: self.items.iter().map(|i| i.planned.clone()).collect(),
            finished: false,
        }
    }
}

async fn plan(
    source: &Source,
    options: &MigrateOptions,
    exact_counts: bool,
) -> Result<Plan, MigrateError> {
    match source {
        Source::Store { backend, label } => plan_store(backend, label, options, exact_counts).await,
        Source::RedbFile { path } => {
            if options.history {
                return Err(MigrateError::InvalidEndpoint {
                    spec: source.label(),
                    reason: "--history needs a zcore store as the source (a redb file has no \
                             versions)"
                        .to_owned(),
                });
            }
            let path = path.clone();
            let cache = options.redb_cache_bytes;
            let tables =
                tokio::task::spawn_blocking(move || RedbFile::open(&path, cache)?.inventory())
                    .await
                    .map_err(|e| MigrateError::Worker(e.to_string()))??;
            plan_redb(source, tables, options)
        }
    }
}

async fn plan_store(
    backend: &Arc<dyn StorageBackend>,
    label: &str,
    options: &MigrateOptions,
    exact_counts: bool,
) -> Result<Plan, MigrateError> {
    let engine = Engine::open(Arc::clone(backend), engine_options())
        .await
        .map_err(MigrateError::engine(format!("open source {label}")))?;
    let version = engine.latest_version();
    let mode = if options.history {
        Mode::History
    } else {
        Mode::Snapshot
    };
    let stats = backend
        .stats()
        .await
        .map_err(MigrateError::backend("source statistics"))?;
    let mut fingerprint = blake3::Hasher::new();
    fingerprint.update(&version.to_le_bytes());
    let mut items = Vec::new();
    for c in engine.collections() {
        fingerprint.update(c.as_str().as_bytes());
        fingerprint.update(&[0]);
        let mut rows = stats
            .collections
            .iter()
            .find(|s| s.name == c)
            .map(|s| s.keys);
        if exact_counts {
            rows = Some(match mode {
                Mode::History => {
                    engine
                        .version_counts(&c)
                        .await
                        .map_err(MigrateError::engine(format!("count versions of {c}")))?
                        .versions
                }
                _ => {
                    let read = engine
                        .begin_read_at(version)
                        .map_err(MigrateError::engine("read the source"))?;
                    count_rows(&read, &c).await?
                }
            });
        }
        items.push(Item {
            planned: PlannedCollection {
                collection: c.to_string(),
                source_name: c.to_string(),
                kind: SourceKind::Collection,
                key_type: None,
                value_type: None,
                legacy_key_tuples: false,
                legacy_value_tuples: false,
            },
            target: c.clone(),
            read: ItemRead::Collection(c),
            source_rows: rows,
        });
    }
    Ok(Plan {
        mode,
        source_label: label.to_owned(),
        source_version: Some(version),
        fingerprint: *fingerprint.finalize().as_bytes(),
        items,
        skipped: Vec::new(),
        opened: Opened::Store {
            engine,
            backend: Arc::clone(backend),
        },
    })
}

async fn count_rows(read: &ReadTransaction, c: &CollectionName) -> Result<u64, MigrateError> {
    let mut n = 0u64;
    let mut request = Some(ScanRequest::forward(KeyRange::all(), SCAN_PAGE));
    while let Some(req) = request.take() {
        let page = read
            .scan(c, &req)
            .await
            .map_err(MigrateError::engine(format!("count rows of {c}")))?;
        request = req.next_page(&page);
        n += page.entries.len() as u64;
    }
    Ok(n)
}

fn plan_redb(
    source: &Source,
    tables: Vec<RedbTable>,
    options: &MigrateOptions,
) -> Result<Plan, MigrateError> {
    let Source::RedbFile { path } = source else {
        return Err(MigrateError::Worker("plan_redb on a store".to_owned()));
    };
    if tables
        .iter()
        .any(|t| t.name == META_COLLECTION && t.key_name == "&[u8]" && t.value_name == "&[u8]")
    {
        return Err(MigrateError::InvalidEndpoint {
            spec: source.label(),
            reason: format!(
                "this is a zcore-storage redb store (it has a {META_COLLECTION} table); migrate it \
                 with --from redb:{}",
                path.display()
            ),
        });
    }
    for from in options.renames.keys() {
        if !tables.iter().any(|t| &t.name == from) {
            return Err(MigrateError::InvalidRename {
                spec: from.clone(),
                reason: "the redb file has no table of that name".to_owned(),
            });
        }
    }
    let mut fingerprint = blake3::Hasher::new();
    let mut items: Vec<Item> = Vec::new();
    let mut skipped = Vec::new();
    for t in tables {
        for part in [
            t.name.as_bytes(),
            t.key_name.as_bytes(),
            t.value_name.as_bytes(),
        ] {
            fingerprint.update(&(part.len() as u64).to_le_bytes());
            fingerprint.update(part);
        }
        fingerprint.update(&[u8::from(t.multimap)]);
        fingerprint.update(&t.rows.to_le_bytes());
        let (key, value) = match &t.columns {
            Ok(c) => c.clone(),
            Err(reason) if options.skip_unknown => {
                skipped.push(SkippedTable {
                    table: t.name.clone(),
                    kind: t.kind().to_owned(),
                    key_type: t.key_name.clone(),
                    value_type: t.value_name.clone(),
                    reason: reason.clone(),
                    rows: t.rows,
                });
                continue;
            }
            Err(reason) => {
                return Err(MigrateError::UnknownTypes {
                    table: t.name.clone(),
                    kind: t.kind(),
                    key_type: t.key_name.clone(),
                    value_type: t.value_name.clone(),
                    reason: reason.clone(),
                });
            }
        };
        let target = match options.renames.get(&t.name) {
            Some(to) => CollectionName::new(to).map_err(|e| MigrateError::InvalidRename {
                spec: format!("{}={to}", t.name),
                reason: e.to_string(),
            })?,
            None => {
                CollectionName::new(&t.name).map_err(|source| MigrateError::InvalidTableName {
                    table: t.name.clone(),
                    source,
                })?
            }
        };
        if let Some(other) = items.iter().find(|i| i.target == target) {
            return Err(MigrateError::DuplicateCollection {
                collection: target,
                first: other.planned.source_name.clone(),
                second: t.name.clone(),
            });
        }
        let legacy = |ty: &super::codec::RedbType| -> bool {
            fn any_legacy(ty: &super::codec::RedbType) -> bool {
                use super::codec::{RedbType, TupleFormat};
                match ty {
                    RedbType::Tuple { elements, format } => {
                        *format == TupleFormat::LegacyU32 || elements.iter().any(any_legacy)
                    }
                    _ => false,
                }
            }
            any_legacy(ty) && ty.has_variable_tuple()
        };
        items.push(Item {
            planned: PlannedCollection {
                collection: target.to_string(),
                source_name: t.name.clone(),
                kind: if t.multimap {
                    SourceKind::MultimapTable
                } else {
                    SourceKind::Table
                },
                key_type: Some(key.ty.to_string()),
                value_type: Some(value.ty.to_string()),
                legacy_key_tuples: legacy(&key.ty),
                legacy_value_tuples: legacy(&value.ty),
            },
            target,
            source_rows: Some(t.rows),
            read: ItemRead::Redb(t),
        });
    }
    items.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(Plan {
        mode: Mode::RedbImport,
        source_label: source.label(),
        source_version: None,
        fingerprint: *fingerprint.finalize().as_bytes(),
        items,
        skipped,
        opened: Opened::Redb {
            path: path.clone(),
            cache_bytes: options.redb_cache_bytes,
        },
    })
}

// ------------------------------------------------------------------------------ reading

/// Rows packed into one buffer: fewer, larger allocations, made and freed by the reader (the
/// writer copies each row into the batch it hands to the backend).
#[derive(Debug, Default)]
struct Packed {
    data: Vec<u8>,
    /// Per row: end of the key, end of the value (the key starts where the row before ended).
    ends: Vec<(usize, usize)>,
}

impl Packed {
    fn with_capacity(rows: usize) -> Self {
        Self {
            data: Vec::with_capacity(64 << 10),
            ends: Vec::with_capacity(rows),
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.data.extend_from_slice(key);
        let key_end = self.data.len();
        self.data.extend_from_slice(value);
        self.ends.push((key_end, self.data.len()));
    }

    /// Adds a user row as the backend entry of `collection` at `version`: the engine's
    /// versioned key and checksummed value.
    fn push_mvcc(
        &mut self,
        collection: &CollectionName,
        key: &[u8],
        value: &[u8],
        version: Version,
    ) {
        let start = self.data.len();
        EncodedKey::encode(key).write_at(version, &mut self.data);
        let key_end = self.data.len();
        let stored = value::encode(collection.as_str(), &self.data[start..key_end], Some(value));
        self.data.extend_from_slice(&stored);
        self.ends.push((key_end, self.data.len()));
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, end)| {
            let row = (&self.data[start..key_end], &self.data[key_end..end]);
            start = end;
            row
        })
    }
}

/// A batch of rows of one collection, in source order.
#[derive(Debug)]
struct Chunk {
    index: usize,
    /// User rows, or backend entries when the reader encodes for the target.
    rows: Packed,
    /// Key and value bytes as read from the source (before encoding for the target).
    bytes: u64,
    /// The source position of the last row (`None`: no row).
    position: Option<Vec<u8>>,
    /// The collection is complete after this chunk.
    end: bool,
}

type ChunkResult = Result<Chunk, MigrateError>;

/// What to read of one collection.
#[derive(Clone, Debug)]
struct Work {
    index: usize,
    read: ItemRead,
    /// The target collection (values' checksums are bound to it).
    target: CollectionName,
    after: Option<Vec<u8>>,
    first_row: u64,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    rows: usize,
    bytes: usize,
}

/// Collects rows into chunks of bounded size.
struct Batcher {
    index: usize,
    limits: Limits,
    rows: Packed,
    bytes: u64,
    /// Source position of the last row.
    position: Vec<u8>,
}

impl Batcher {
    fn new(index: usize, limits: Limits) -> Self {
        Self {
            index,
            limits,
            rows: Packed::with_capacity(limits.rows.min(65_536)),
            bytes: 0,
            position: Vec::new(),
        }
    }

    /// Adds a row of `bytes` source bytes (written by `add`) whose source position is the
    /// concatenation of `position`; returns a full chunk.
    fn push(
        &mut self,
        add: impl FnOnce(&mut Packed),
        bytes: usize,
        position: &[&[u8]],
    ) -> Option<Chunk> {
        self.position.clear();
        for part in position {
            self.position.extend_from_slice(part);
        }
        self.bytes += bytes as u64;
        add(&mut self.rows);
        let full = self.rows.len() >= self.limits.rows || self.bytes >= self.limits.bytes as u64;
        full.then(|| self.take(false))
    }

    fn take(&mut self, end: bool) -> Chunk {
        let rows = std::mem::replace(
            &mut self.rows,
            Packed::with_capacity(self.limits.rows.min(65_536)),
        );
        let position = (!rows.is_empty()).then(|| self.position.clone());
        Chunk {
            index: self.index,
            rows,
            bytes: std::mem::take(&mut self.bytes),
            position,
            end,
        }
    }
}

/// Starts reading `work` in order into a channel. With `encode_at`, user rows are turned into
/// backend entries at that version (copying); without, they stay user rows (verifying).
/// History reads always yield the backend entries verbatim.
fn spawn_reader(
    opened: &Opened,
    mode: Mode,
    read_version: Option<Version>,
    work: Vec<Work>,
    limits: Limits,
    encode_at: Option<Version>,
) -> Result<mpsc::Receiver<ChunkResult>, MigrateError> {
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    match opened {
        Opened::Redb { path, cache_bytes } => {
            let (path, cache) = (path.clone(), *cache_bytes);
            tokio::task::spawn_blocking(move || {
                if let Err(e) = read_redb(&path, cache, work, limits, encode_at, &tx) {
                    let _ = tx.blocking_send(Err(e));
                }
            });
        }
        Opened::Store { engine, backend } => {
            let source = match mode {
                Mode::History => StoreRead::Raw(Arc::clone(backend)),
                _ => {
                    let version = read_version.unwrap_or_else(|| engine.latest_version());
                    let read = engine.begin_read_at(version).map_err(MigrateError::engine(
                        "read the source at its recorded version",
                    ))?;
                    StoreRead::Snapshot(Arc::new(read))
                }
            };
            tokio::spawn(async move {
                if let Err(e) = read_store(source, work, limits, encode_at, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            });
        }
    }
    Ok(rx)
}

enum StoreRead {
    Snapshot(Arc<ReadTransaction>),
    Raw(Arc<dyn StorageBackend>),
}

async fn read_store(
    source: StoreRead,
    work: Vec<Work>,
    limits: Limits,
    encode_at: Option<Version>,
    tx: &mpsc::Sender<ChunkResult>,
) -> Result<(), MigrateError> {
    for w in work {
        let ItemRead::Collection(c) = &w.read else {
            continue;
        };
        let mut batcher = Batcher::new(w.index, limits);
        let start = w.after.map_or(Bound::Unbounded, Bound::Excluded);
        let page = limits.rows.clamp(1, 4096);
        let mut request = Some(ScanRequest::forward(
            KeyRange::new(start, Bound::Unbounded),
            page,
        ));
        let mut row = w.first_row;
        while let Some(req) = request.take() {
            let (entries, raw) = match &source {
                StoreRead::Snapshot(read) => {
                    let page = read
                        .scan(c, &req)
                        .await
                        .map_err(MigrateError::engine(format!("read source collection {c}")))?;
                    request = req.next_page(&page);
                    (page.entries, false)
                }
                StoreRead::Raw(backend) => {
                    let page = backend
                        .scan(c, &req)
                        .await
                        .map_err(MigrateError::backend(format!("read source collection {c}")))?;
                    request = req.next_page(&page);
                    for (k, v) in &page.entries {
                        check_stored(c, row, k, v)?;
                        row += 1;
                    }
                    (page.entries, true)
                }
            };
            for (k, v) in entries {
                let bytes = k.len() + v.len();
                let full = match encode_at {
                    Some(version) if !raw => batcher.push(
                        |rows| rows.push_mvcc(&w.target, &k, &v, version),
                        bytes,
                        &[&k],
                    ),
                    _ => batcher.push(|rows| rows.push(&k, &v), bytes, &[&k]),
                };
                if let Some(chunk) = full
                    && tx.send(Ok(chunk)).await.is_err()
                {
                    return Ok(());
                }
            }
        }
        if tx.send(Ok(batcher.take(true))).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Verifies a stored version's key shape and checksum (history copies bypass the engine's
/// reads, so this is where corruption in the source is caught).
fn check_stored(
    c: &CollectionName,
    row: u64,
    key: &[u8],
    value: &[u8],
) -> Result<(), MigrateError> {
    let bad = |reason: String| MigrateError::BadData {
        table: c.to_string(),
        row,
        part: "stored version",
        type_name: "zcore MVCC entry".to_owned(),
        reason,
    };
    let vk = VersionedKey::from_stored(key.to_vec()).map_err(|e| bad(e.to_string()))?;
    value::decode(c.as_str(), vk.as_bytes(), value).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

fn read_redb(
    path: &std::path::Path,
    cache: usize,
    work: Vec<Work>,
    limits: Limits,
    encode_at: Option<Version>,
    tx: &mpsc::Sender<ChunkResult>,
) -> Result<(), MigrateError> {
    let file = RedbFile::open(path, cache)?;
    for w in work {
        let ItemRead::Redb(table) = &w.read else {
            continue;
        };
        let Ok((key_col, value_col)) = &table.columns else {
            continue;
        };
        let (kt, vt) = (&key_col.ty, &value_col.ty);
        let mut batcher = Batcher::new(w.index, limits);
        let mut row = w.first_row;
        let mut closed = false;
        let bad = |row: u64, part: &'static str, ty: &super::codec::RedbType, e: String| {
            MigrateError::BadData {
                table: table.name.clone(),
                row,
                part,
                type_name: ty.to_string(),
                reason: e,
            }
        };
        // Scratch buffers for the typed encodings, reused for every row.
        let (mut key, mut value) = (Vec::new(), Vec::new());
        file.scan(table, w.after.as_deref(), |k, v| {
            key.clear();
            value.clear();
            if table.multimap {
                kt.encode(k, false, &mut key)
                    .map_err(|e| bad(row, "key", kt, e.0))?;
                vt.encode(v, true, &mut key)
                    .map_err(|e| bad(row, "value", vt, e.0))?;
            } else {
                kt.encode(k, true, &mut key)
                    .map_err(|e| bad(row, "key", kt, e.0))?;
                vt.encode(v, true, &mut value)
                    .map_err(|e| bad(row, "value", vt, e.0))?;
            }
            let unstorable = |problem: String| MigrateError::UnstorableKey {
                table: table.name.clone(),
                row,
                type_name: kt.to_string(),
                problem,
            };
            if key.is_empty() {
                return Err(unstorable(
                    "is empty once encoded, and the engine stores no empty keys".to_owned(),
                ));
            }
            if key.len() > MAX_USER_KEY_LEN {
                return Err(unstorable(format!(
                    "encodes to {} bytes, over the engine's limit of {MAX_USER_KEY_LEN}",
                    key.len()
                )));
            }
            if value.len() as u64 > MAX_USER_VALUE_LEN {
                return Err(bad(
                    row,
                    "value",
                    vt,
                    format!("{} bytes, over the engine's limit", value.len()),
                ));
            }
            row += 1;
            let bytes = k.len() + v.len();
            let add = |rows: &mut Packed| match encode_at {
                Some(version) => rows.push_mvcc(&w.target, &key, &value, version),
                None => rows.push(&key, &value),
            };
            let full = if table.multimap {
                let len = (k.len() as u32).to_le_bytes();
                batcher.push(add, bytes, &[&len, k, v])
            } else {
                batcher.push(add, bytes, &[k])
            };
            if let Some(chunk) = full
                && tx.blocking_send(Ok(chunk)).is_err()
            {
                closed = true;
                return Ok(false);
            }
            Ok(true)
        })?;
        if closed || tx.blocking_send(Ok(batcher.take(true))).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------ writing

/// Writes the target: every batch is one atomic backend batch holding the batch's rows as
/// the engine's versioned entries plus the checkpoint records (see the module docs of
/// [`super`] for why rows bypass the transaction layer).
struct Writer {
    backend: Arc<dyn StorageBackend>,
    /// The target's engine (snapshot and redb import; `None` for history copies, which must
    /// not run an oracle on the target while they copy versions into it).
    engine: Option<Engine>,
    /// The version checkpoint records (and, in snapshot and import runs, rows) are written at.
    version: Version,
}

impl Writer {
    async fn create_collection(&self, c: &CollectionName) -> Result<(), MigrateError> {
        match &self.engine {
            Some(e) => e
                .create_collection(c)
                .await
                .map(|_| ())
                .map_err(MigrateError::engine(format!(
                    "create target collection {c}"
                ))),
            None => {
                self.backend
                    .create_collection(c)
                    .await
                    .map(|_| ())
                    .map_err(MigrateError::backend(format!(
                        "create target collection {c}"
                    )))
            }
        }
    }

    /// A commit through the transaction layer that writes the run record and fixes the
    /// version of this run's rows: it is published by the oracle like any commit, so rows
    /// written at it are visible at the latest version and below every later commit.
    async fn anchor(&mut self, record: &RunRecord) -> Result<(), MigrateError> {
        let Some(engine) = &self.engine else {
            return Ok(());
        };
        let migrate = checkpoint::collection()?;
        let mut txn = engine.begin_write_with(WriteOptions {
            isolation: Isolation::Snapshot,
            durability: Durability::Buffered,
        });
        txn.put(&migrate, RUN_KEY.to_vec(), record.encode()?)
            .map_err(MigrateError::engine("write the migration record"))?;
        self.version = txn
            .commit()
            .await
            .map_err(MigrateError::engine("write the migration record"))?
            .version;
        Ok(())
    }

    /// Writes backend entries `rows` into `c` and the checkpoint records, atomically.
    async fn commit(
        &self,
        c: Option<&CollectionName>,
        rows: &Packed,
        records: &[(&[u8], Vec<u8>)],
        durability: Durability,
    ) -> Result<(), MigrateError> {
        let context = || match c {
            Some(c) => format!("write a batch to target collection {c}"),
            None => "write the migration record".to_owned(),
        };
        let migrate = checkpoint::collection()?;
        let mut batch = WriteBatch::with_capacity(rows.len() + records.len());
        if let Some(c) = c {
            for (k, v) in rows.iter() {
                batch.put(c, k.to_vec(), v.to_vec());
            }
        }
        for (k, v) in records {
            checkpoint::put_raw(&mut batch, &migrate, k, v, self.version);
        }
        self.backend
            .write(batch, durability)
            .await
            .map_err(MigrateError::backend(context()))
    }

    /// Whether `c` holds any entry.
    async fn is_empty(&self, c: &CollectionName) -> Result<bool, MigrateError> {
        let b = &self.backend;
        if !b
            .list_collections()
            .await
            .map_err(MigrateError::backend("list target collections"))?
            .contains(c)
        {
            return Ok(true);
        }
        let page = b
            .scan(c, &ScanRequest::forward(KeyRange::all(), 1))
            .await
            .map_err(MigrateError::backend(format!("read target collection {c}")))?;
        Ok(page.entries.is_empty())
    }
}

/// Copies the source's `__meta` records selected by `select` into the target's, keeping the
/// larger value of each (all of them are u64 high-water marks: version lease, GC floor,
/// sequence leases). Writes nothing when the target is already at or above the source.
async fn merge_meta(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    select: impl Fn(&[u8]) -> bool,
) -> Result<(), MigrateError> {
    let meta =
        CollectionName::system(META_COLLECTION).map_err(|e| MigrateError::Worker(e.to_string()))?;
    target
        .create_collection(&meta)
        .await
        .map_err(MigrateError::backend(
            "create the target's metadata collection",
        ))?;
    let decode = |key: &[u8], stored: &[u8], side: &str| -> Result<u64, MigrateError> {
        let fail = |reason: String| MigrateError::BadData {
            table: META_COLLECTION.to_owned(),
            row: 0,
            part: "value",
            type_name: format!("u64 record {:?} ({side})", String::from_utf8_lossy(key)),
            reason,
        };
        match value::decode(META_COLLECTION, key, stored).map_err(|e| fail(e.to_string()))? {
            Stored::Put(b) => b
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| fail(format!("{} bytes, expected 8", b.len()))),
            Stored::Tombstone => Err(fail("a deletion marker".to_owned())),
        }
    };
    let mut batch = WriteBatch::new();
    let mut request = Some(ScanRequest::forward(KeyRange::all(), SCAN_PAGE));
    while let Some(req) = request.take() {
        let page = source
            .scan(&meta, &req)
            .await
            .map_err(MigrateError::backend("read the source's metadata"))?;
        request = req.next_page(&page);
        for (k, stored) in page.entries {
            if !select(&k) {
                continue;
            }
            let from = decode(&k, &stored, "source")?;
            let current = match target
                .get(&meta, &k)
                .await
                .map_err(MigrateError::backend("read the target's metadata"))?
            {
                Some(t) => Some(decode(&k, &t, "target")?),
                None => None,
            };
            if current.is_none_or(|t| t < from) {
                let encoded = value::encode(META_COLLECTION, &k, Some(&from.to_be_bytes()));
                batch.put(&meta, k, encoded);
            }
        }
    }
    if !batch.is_empty() {
        target
            .write(batch, Durability::Synced)
            .await
            .map_err(MigrateError::backend("merge metadata into the target"))?;
    }
    Ok(())
}

/// Deletes superseded versions of checkpoint records (engine-written runs make one per batch).
async fn prune_checkpoint(backend: &dyn StorageBackend) -> Result<(), MigrateError> {
    let cp = Checkpoint::read(backend).await?;
    if cp.stale.is_empty() {
        return Ok(());
    }
    let col = checkpoint::collection()?;
    for chunk in cp.stale.chunks(4096) {
        let mut batch = WriteBatch::new();
        for k in chunk {
            batch.delete(&col, k.clone());
        }
        backend
            .write(batch, Durability::Buffered)
            .await
            .map_err(MigrateError::backend("prune the migration checkpoint"))?;
    }
    backend
        .sync()
        .await
        .map_err(MigrateError::backend("sync the target"))
}

// ------------------------------------------------------------------------------ runs

/// Copies `source` into `target` (or resumes an interrupted copy), then verifies unless
/// [`MigrateOptions::verify`] is off. Neither store is closed.
///
/// # Errors
///
/// [`MigrateError`]; a verification mismatch is not an error but [`Report::ok`] `false`.
pub async fn migrate(
    source: &Source,
    target: &Target,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> Result<Report, MigrateError> {
    let started = Instant::now();
    if let Source::Store { backend, label } = source
        && Arc::ptr_eq(backend, &target.backend)
    {
        return Err(MigrateError::SameStore {
            path: PathBuf::from(label),
        });
    }
    let plan = plan(source, options, false).await?;
    let cp = Checkpoint::read(&*target.backend).await?;
    let mut record = plan.record();
    let resumed = match &cp.run {
        Some(rec) => {
            check_same_migration(rec, &record, &target.label)?;
            record.finished = rec.finished;
            true
        }
        None => false,
    };
    let engine = target_engine(plan.mode, &target.backend, &target.label).await?;
    let mut writer = Writer {
        backend: Arc::clone(&target.backend),
        engine,
        version: checkpoint::RAW_RECORD_VERSION,
    };
    if !resumed {
        preflight(&plan, &writer, &target.label).await?;
    }
    let migrate_col = checkpoint::collection()?;
    writer.create_collection(&migrate_col).await?;
    if !record.finished {
        // Snapshot and import runs: a real commit fixes this run's version. History runs:
        // the record goes in at the fixed record version.
        writer.anchor(&record).await?;
        if writer.engine.is_none() && !resumed {
            writer
                .commit(
                    None,
                    &Packed::default(),
                    &[(RUN_KEY, record.encode()?)],
                    Durability::Buffered,
                )
                .await?;
        }
    }

    let mut copied: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let mut batches = 0;
    let run = if record.finished {
        RunKind::AlreadyComplete
    } else {
        batches = copy(
            &target.label,
            &plan,
            &cp,
            &writer,
            options,
            progress,
            &mut copied,
        )
        .await?;
        // Metadata after the rows: a rerun redoes it, and it never lowers anything.
        if let Opened::Store { backend, .. } = &plan.opened {
            match plan.mode {
                Mode::History => merge_meta(&**backend, &*target.backend, |_| true).await?,
                _ => {
                    merge_meta(&**backend, &*target.backend, |k| {
                        k.starts_with(SEQUENCE_PREFIX)
                    })
                    .await?;
                }
            }
        }
        record.finished = true;
        writer
            .commit(
                None,
                &Packed::default(),
                &[(RUN_KEY, record.encode()?)],
                Durability::Synced,
            )
            .await?;
        prune_checkpoint(&*target.backend).await?;
        RunKind::Migrate
    };

    let sides = if options.verify {
        Some(verify_sides(&plan, &target.backend, writer.engine.as_ref(), progress).await?)
    } else {
        None
    };
    Ok(report(
        &plan,
        run,
        Some(target.label.clone()),
        resumed,
        batches,
        &copied,
        sides,
        started,
    ))
}

fn check_same_migration(
    recorded: &RunRecord,
    requested: &RunRecord,
    target: &str,
) -> Result<(), MigrateError> {
    if recorded.source != requested.source || recorded.mode != requested.mode {
        return Err(MigrateError::DifferentMigration {
            target: target.to_owned(),
            recorded: format!("{} ({} mode)", recorded.source, recorded.mode),
            requested: format!("{} ({} mode)", requested.source, requested.mode),
        });
    }
    if recorded.fingerprint != requested.fingerprint {
        let detail = if recorded.collections != requested.collections {
            "its collections or table types differ".to_owned()
        } else if recorded.source_version != requested.source_version {
            format!(
                "its version moved from {:?} to {:?}",
                recorded.source_version, requested.source_version
            )
        } else {
            "its tables' lengths differ".to_owned()
        };
        return Err(MigrateError::SourceChanged {
            source_label: requested.source.clone(),
            detail,
        });
    }
    Ok(())
}

/// A first run refuses a target that holds data in the collections it will write (any user
/// data at all, for history copies).
async fn preflight(plan: &Plan, writer: &Writer, target: &str) -> Result<(), MigrateError> {
    let existing = writer
        .backend
        .list_collections()
        .await
        .map_err(MigrateError::backend("list target collections"))?;
    for c in existing.iter().filter(|c| !c.is_system()) {
        let planned = plan.items.iter().any(|i| &i.target == c);
        if (planned || plan.mode == Mode::History) && !writer.is_empty(c).await? {
            return Err(MigrateError::TargetNotEmpty {
                target: target.to_owned(),
                collection: c.clone(),
            });
        }
    }
    Ok(())
}

async fn copy(
    target_label: &str,
    plan: &Plan,
    cp: &Checkpoint,
    writer: &Writer,
    options: &MigrateOptions,
    progress: &dyn Progress,
    copied: &mut BTreeMap<usize, (u64, u64)>,
) -> Result<u64, MigrateError> {
    let mut state: BTreeMap<usize, CollectionProgress> = BTreeMap::new();
    let mut work = Vec::new();
    let mut remaining_rows = 0u64;
    for (index, item) in plan.items.iter().enumerate() {
        let p = cp.progress_of(&item.target);
        if p.done {
            continue;
        }
        writer.create_collection(&item.target).await?;
        if p.position.is_none() && !writer.is_empty(&item.target).await? {
            return Err(MigrateError::TargetNotEmpty {
                target: target_label.to_owned(),
                collection: item.target.clone(),
            });
        }
        remaining_rows += item.source_rows.unwrap_or(0).saturating_sub(p.rows);
        work.push(Work {
            index,
            read: item.read.clone(),
            target: item.target.clone(),
            after: p.position.clone(),
            first_row: p.rows,
        });
        state.insert(index, p);
    }
    let limits = Limits {
        rows: options.batch_rows.max(1),
        bytes: options.batch_bytes.max(1),
    };
    progress.start(Phase::Copy, Some(remaining_rows), None);
    let encode_at = (plan.mode != Mode::History).then_some(writer.version);
    let mut rx = spawn_reader(
        &plan.opened,
        plan.mode,
        plan.source_version,
        work,
        limits,
        encode_at,
    )?;
    let mut batches = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        let item = &plan.items[chunk.index];
        let p = state.entry(chunk.index).or_default();
        let n = chunk.rows.len() as u64;
        p.rows += n;
        p.bytes += chunk.bytes;
        if chunk.position.is_some() {
            p.position = chunk.position;
        }
        p.done = chunk.end;
        batches += 1;
        // The run ends with a synced write, which makes every batch before it durable.
        let durability = if batches.is_multiple_of(options.sync_every.max(1)) {
            Durability::Synced
        } else {
            Durability::Buffered
        };
        let key = checkpoint::progress_key(&item.target);
        writer
            .commit(
                Some(&item.target),
                &chunk.rows,
                &[(&key, p.encode()?)],
                durability,
            )
            .await?;
        let c = copied.entry(chunk.index).or_default();
        c.0 += n;
        c.1 += chunk.bytes;
        progress.advance(&item.planned.collection, n, chunk.bytes);
        if options.stop_after_batches == Some(batches) {
            return Err(MigrateError::Stopped { batches });
        }
    }
    progress.finish(Phase::Copy);
    if let Some((index, _)) = state.iter().find(|(_, p)| !p.done) {
        return Err(MigrateError::Worker(format!(
            "the reader stopped before the end of {}",
            plan.items[*index].target
        )));
    }
    Ok(batches)
}

// ------------------------------------------------------------------------------ verifying

/// Row count and BLAKE3 of length-framed rows, in the order added.
struct Digest {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
    rows: u64,
}

impl Digest {
    fn new() -> Self {
        Self {
            hasher: blake3::Hasher::new(),
            buf: Vec::with_capacity(1 << 16),
            rows: 0,
        }
    }

    fn add(&mut self, k: &[u8], v: &[u8]) {
        self.buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(k);
        self.buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(v);
        self.rows += 1;
        if self.buf.len() >= 1 << 16 {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
    }

    fn finish(mut self) -> Side {
        self.hasher.update(&self.buf);
        self.hasher.update(&self.rows.to_le_bytes());
        Side {
            rows: self.rows,
            digest: self.hasher.finalize().to_hex().to_string(),
        }
    }
}

/// Reads every planned collection on both sides (concurrently) and digests it.
async fn verify_sides(
    plan: &Plan,
    target: &Arc<dyn StorageBackend>,
    target_engine: Option<&Engine>,
    progress: &dyn Progress,
) -> Result<Vec<(Side, Side)>, MigrateError> {
    let total: u64 = plan.items.iter().filter_map(|i| i.source_rows).sum();
    progress.start(Phase::Verify, Some(total.saturating_mul(2)), None);
    let work: Vec<Work> = plan
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| Work {
            index,
            read: item.read.clone(),
            target: item.target.clone(),
            after: None,
            first_row: 0,
        })
        .collect();
    let limits = Limits {
        rows: 4096,
        bytes: 4 << 20,
    };
    let mut rx = spawn_reader(
        &plan.opened,
        plan.mode,
        plan.source_version,
        work,
        limits,
        None,
    )?;
    let source_side = async {
        let mut digests: Vec<Digest> = plan.items.iter().map(|_| Digest::new()).collect();
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            let name = &plan.items[chunk.index].planned.collection;
            let d = &mut digests[chunk.index];
            for (k, v) in chunk.rows.iter() {
                d.add(k, v);
            }
            progress.advance(name, chunk.rows.len() as u64, chunk.bytes);
        }
        Ok::<_, MigrateError>(digests.into_iter().map(Digest::finish).collect::<Vec<_>>())
    };
    let target_side = async {
        let read = target_engine.map(Engine::begin_read);
        let mut sides = Vec::with_capacity(plan.items.len());
        for item in &plan.items {
            let c = &item.target;
            let mut d = Digest::new();
            let mut request = Some(ScanRequest::forward(KeyRange::all(), SCAN_PAGE));
            while let Some(req) = request.take() {
                let page = match &read {
                    Some(read) => match read.scan(c, &req).await {
                        Ok(page) => page,
                        Err(zcore_engine::TxnError::CollectionNotFound { .. }) => break,
                        Err(e) => {
                            return Err(MigrateError::engine(format!(
                                "read target collection {c}"
                            ))(e));
                        }
                    },
                    None => match target.scan(c, &req).await {
                        Ok(page) => page,
                        Err(zcore_engine::BackendError::CollectionNotFound { .. }) => break,
                        Err(e) => {
                            return Err(MigrateError::backend(format!(
                                "read target collection {c}"
                            ))(e));
                        }
                    },
                };
                request = req.next_page(&page);
                let mut bytes = 0u64;
                for (k, v) in &page.entries {
                    d.add(k, v);
                    bytes += (k.len() + v.len()) as u64;
                }
                progress.advance(&item.planned.collection, page.entries.len() as u64, bytes);
            }
            sides.push(d.finish());
        }
        Ok(sides)
    };
    let (source_sides, target_sides) = tokio::try_join!(source_side, target_side)?;
    progress.finish(Phase::Verify);
    Ok(source_sides.into_iter().zip(target_sides).collect())
}

#[allow(clippy::too_many_arguments)]
fn report(
    plan: &Plan,
    run: RunKind,
    target: Option<String>,
    resumed: bool,
    batches: u64,
    copied: &BTreeMap<usize, (u64, u64)>,
    sides: Option<Vec<(Side, Side)>>,
    started: Instant,
) -> Report {
    let verified = sides.is_some();
    let mut sides = sides.map(Vec::into_iter);
    let collections: Vec<CollectionReport> = plan
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let (source, target) = match sides.as_mut().and_then(Iterator::next) {
                Some((s, t)) => (Some(s), Some(t)),
                None => (None, None),
            };
            let matches = match (&source, &target) {
                (Some(s), Some(t)) => Some(s == t),
                _ => None,
            };
            let (copied_rows, copied_bytes) = copied.get(&index).copied().unwrap_or_default();
            CollectionReport {
                collection: item.planned.collection.clone(),
                source_name: item.planned.source_name.clone(),
                kind: item.planned.kind,
                key_type: item.planned.key_type.clone(),
                value_type: item.planned.value_type.clone(),
                source_rows: item.source_rows,
                copied_rows,
                copied_bytes,
                source,
                target,
                matches,
            }
        })
        .collect();
    let ok = collections.iter().all(|c| c.matches != Some(false));
    Report {
        run,
        source: plan.source_label.clone(),
        target,
        mode: plan.mode,
        source_version: plan.source_version.filter(|_| plan.mode == Mode::Snapshot),
        resumed,
        batches,
        collections,
        skipped: plan.skipped.clone(),
        verified,
        ok,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Re-checks a migration an earlier run wrote into `target`: reads both sides in full and
/// compares row counts and digests. Uses the renames recorded by that run. Writes nothing.
///
/// # Errors
///
/// [`MigrateError::NothingToVerify`], [`MigrateError::DifferentMigration`], read errors.
pub async fn verify(
    source: &Source,
    target: &Target,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> Result<Report, MigrateError> {
    let started = Instant::now();
    let cp = Checkpoint::read(&*target.backend).await?;
    let Some(rec) = cp.run else {
        return Err(MigrateError::NothingToVerify {
            target: target.label.clone(),
        });
    };
    let mut options = options.clone();
    options.history = rec.mode == Mode::History;
    options.skip_unknown = true;
    options.renames = rec
        .collections
        .iter()
        .filter(|c| c.kind != SourceKind::Collection)
        .map(|c| (c.source_name.clone(), c.collection.clone()))
        .collect();
    let mut plan = plan(source, &options, false).await?;
    if plan.source_label != rec.source || plan.mode != rec.mode {
        return Err(MigrateError::DifferentMigration {
            target: target.label.clone(),
            recorded: format!("{} ({} mode)", rec.source, rec.mode),
            requested: format!("{} ({} mode)", plan.source_label, plan.mode),
        });
    }
    plan.source_version = rec.source_version.or(plan.source_version);
    plan.items.retain(|i| {
        rec.collections
            .iter()
            .any(|c| c.collection == i.planned.collection)
    });
    if let Some(missing) = rec.collections.iter().find(|c| {
        !plan
            .items
            .iter()
            .any(|i| i.planned.collection == c.collection)
    }) {
        return Err(MigrateError::SourceChanged {
            source_label: plan.source_label.clone(),
            detail: format!("{:?} is no longer in the source", missing.source_name),
        });
    }
    plan.skipped.clear();
    let engine = target_engine(plan.mode, &target.backend, &target.label).await?;
    let sides = verify_sides(&plan, &target.backend, engine.as_ref(), progress).await?;
    Ok(report(
        &plan,
        RunKind::VerifyOnly,
        Some(target.label.clone()),
        false,
        0,
        &BTreeMap::new(),
        Some(sides),
        started,
    ))
}

/// Lists what [`migrate`] would copy (collections, redb types, exact row counts, skipped
/// tables) without opening a target.
///
/// # Errors
///
/// As planning in [`migrate`]: unreadable source, unknown types without
/// [`MigrateOptions::skip_unknown`], invalid table names.
pub async fn dry_run(source: &Source, options: &MigrateOptions) -> Result<Report, MigrateError> {
    let started = Instant::now();
    let plan = plan(source, options, true).await?;
    Ok(report(
        &plan,
        RunKind::DryRun,
        None,
        false,
        0,
        &BTreeMap::new(),
        None,
        started,
    ))
}

/// The engine on the target; none in history mode, which writes stored versions through the
/// backend directly.
async fn target_engine(
    mode: Mode,
    backend: &Arc<dyn StorageBackend>,
    label: &str,
) -> Result<Option<Engine>, MigrateError> {
    match mode {
        Mode::History => Ok(None),
        _ => Engine::open(Arc::clone(backend), engine_options())
            .await
            .map(Some)
            .map_err(MigrateError::engine(format!("open target {label}"))),
    }
}
