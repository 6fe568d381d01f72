//! Store inspection and compaction for operators (`zstore inspect`, `zstore compact`).

use serde::Serialize;

use crate::backend::{BackendKind, CollectionName, KeyRange, ScanRequest};
use crate::mvcc::engine::{Engine, GcReport};
use crate::mvcc::error::TxnError;
use crate::mvcc::keys::Version;
use crate::mvcc::meta::{self, GC_FLOOR, META_COLLECTION, SEQ_PREFIX, VERSION_LIMIT};
use crate::mvcc::read::decode_entry;
use crate::mvcc::value::{self, Stored};

const PAGE: usize = 1024;

/// One user collection in an [`InspectReport`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct CollectionInspect {
    /// The collection.
    pub name: String,
    /// Keys with a value as of the report's version.
    pub live_keys: u64,
    /// Distinct user keys with any stored version.
    pub keys: u64,
    /// Stored versions, deletion markers included.
    pub versions: u64,
    /// Stored deletion markers.
    pub tombstones: u64,
    /// Bytes of stored keys and values (the engine's encoding, before the backend's own
    /// overhead or compression).
    pub stored_bytes: u64,
    /// Entries the backend counts (exact or approximate, see `backend_keys_exact`).
    pub backend_keys: u64,
    /// Whether `backend_keys` is exact.
    pub backend_keys_exact: bool,
    /// Bytes on disk for this collection where the backend reports them.
    pub disk_bytes: Option<u64>,
}

/// A system collection in an [`InspectReport`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct SystemCollectionInspect {
    /// The collection (`__meta`, `__raft_log`, …).
    pub name: String,
    /// Stored entries.
    pub entries: u64,
    /// Bytes of stored keys and values.
    pub stored_bytes: u64,
}

/// A sequence in an [`InspectReport`].
#[derive(Clone, Debug, Serialize)]
pub struct SequenceHead {
    /// The name (lossy UTF-8).
    pub name: String,
    /// The name in hex.
    pub name_hex: String,
    /// Values up to this one are leased (handed out, or skipped after a restart); the next
    /// value is at most this plus one while no new lease is taken.
    pub leased_through: u64,
}

/// What [`Engine::inspect`] found.
#[derive(Clone, Debug, Serialize)]
pub struct InspectReport {
    /// The engine underneath.
    pub backend: BackendKind,
    /// Whether the store survives a restart.
    pub persistent: bool,
    /// Version the counts are taken at (the latest when the inspection started).
    pub version: Version,
    /// Newest committed version.
    pub latest_version: Version,
    /// The GC watermark: the oldest version time-travel reads may use.
    pub oldest_readable_version: Version,
    /// The GC floor as persisted in the metadata.
    pub durable_gc_floor: Option<Version>,
    /// Versions up to this one may have been handed out (the oracle's durable lease).
    pub version_lease: Option<Version>,
    /// Retention: the last this-many versions stay readable without a snapshot.
    pub retain_versions: u64,
    /// Seconds between background GC passes (`None`: off).
    pub gc_interval_secs: Option<f64>,
    /// Whether the backend drops superseded versions in its own compactions (fjall).
    pub backend_collects_garbage: bool,
    /// Live transactions besides this inspection.
    pub active_transactions: usize,
    /// User collections, in name order.
    pub collections: Vec<CollectionInspect>,
    /// System collections, in name order.
    pub system_collections: Vec<SystemCollectionInspect>,
    /// Sequences, in name order.
    pub sequences: Vec<SequenceHead>,
    /// Bytes on disk (`None` in memory).
    pub disk_bytes: Option<u64>,
    /// Engine-specific figures (fjall journal and table counts, redb tree statistics, …).
    pub backend_details: Vec<(String, u64)>,
}

/// What [`Engine::compact`] did.
#[derive(Clone, Debug, Serialize)]
pub struct CompactReport {
    /// The garbage collection sweep that ran first.
    pub gc: GcReport,
    /// Whether the backend ran a compaction of its own (fjall major compaction, redb
    /// `compact`); `false` for backends without one (memory).
    pub backend_compacted: bool,
    /// Bytes on disk before and after (`None` in memory).
    pub disk_bytes_before: Option<u64>,
    /// See `disk_bytes_before`.
    pub disk_bytes_after: Option<u64>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Engine {
    /// Collections with row, version and deletion-marker counts (full scans at one snapshot),
    /// sizes, the GC watermark and retention, sequence heads and the backend's own figures.
    ///
    /// # Errors
    ///
    /// Backend errors; [`TxnError::Corrupted`] for an entry that fails its checksum
    /// (`verify` lists them all).
    pub async fn inspect(&self) -> Result<InspectReport, TxnError> {
        let inner = &self.inner;
        let backend = &inner.backend;
        let snapshot = self.begin_read();
        let version = snapshot.version();
        let stats = backend.stats().await?;
        let mut details = stats.details.clone();
        details.extend(backend.inspect_details().await?);
        let mut collections = Vec::new();
        let mut system_collections = Vec::new();
        let mut names = backend.list_collections().await?;
        names.sort();
        for name in names {
            if name.is_system() {
                system_collections.push(self.inspect_system(&name).await?);
                continue;
            }
            let mut c = self.inspect_collection(&name, version).await?;
            if let Some(s) = stats.collections.iter().find(|s| s.name == name) {
                c.backend_keys = s.keys;
                c.backend_keys_exact = s.keys_exact;
                c.disk_bytes = s.disk_bytes;
            }
            collections.push(c);
        }
        let mut sequences = Vec::new();
        let mut request = Some(ScanRequest::forward(KeyRange::prefix(SEQ_PREFIX), PAGE));
        while let Some(req) = request.take() {
            let page = backend.scan(&inner.meta, &req).await?;
            request = req.next_page(&page);
            for (key, _) in page.entries {
                let Some(name) = key.strip_prefix(SEQ_PREFIX) else {
                    continue;
                };
                let leased_through = meta::read_u64(&**backend, &inner.meta, &key)
                    .await?
                    .unwrap_or(0);
                sequences.push(SequenceHead {
                    name: String::from_utf8_lossy(name).into_owned(),
                    name_hex: hex(name),
                    leased_through,
                });
            }
        }
        let report = InspectReport {
            backend: backend.kind(),
            persistent: backend.is_persistent(),
            version,
            latest_version: self.latest_version(),
            oldest_readable_version: inner.oracle.gc_floor(),
            durable_gc_floor: meta::read_u64(&**backend, &inner.meta, GC_FLOOR).await?,
            version_lease: meta::read_u64(&**backend, &inner.meta, VERSION_LIMIT).await?,
            retain_versions: inner.options.retain_versions,
            gc_interval_secs: inner.options.gc_interval.map(|d| d.as_secs_f64()),
            backend_collects_garbage: self.backend_collects_garbage(),
            active_transactions: inner.oracle.active_count().saturating_sub(1),
            collections,
            system_collections,
            sequences,
            disk_bytes: stats.disk_bytes,
            backend_details: details,
        };
        drop(snapshot);
        Ok(report)
    }

    async fn inspect_collection(
        &self,
        name: &CollectionName,
        version: Version,
    ) -> Result<CollectionInspect, TxnError> {
        let mut c = CollectionInspect {
            name: name.to_string(),
            ..CollectionInspect::default()
        };
        let mut current: Option<Vec<u8>> = None;
        let mut decided = false;
        let mut request = Some(ScanRequest::forward(KeyRange::all(), PAGE));
        while let Some(req) = request.take() {
            let page = self.inner.backend.scan(name, &req).await?;
            request = req.next_page(&page);
            for (key, stored) in page.entries {
                c.stored_bytes += (key.len() + stored.len()) as u64;
                let (vk, value) = decode_entry(&self.inner.codec, name, key, stored)?;
                c.versions += 1;
                if current.as_deref() != Some(vk.encoded_part()) {
                    current = Some(vk.encoded_part().to_vec());
                    decided = false;
                    c.keys += 1;
                }
                let tombstone = matches!(value, Stored::Tombstone);
                if tombstone {
                    c.tombstones += 1;
                }
                if !decided && vk.version() <= version {
                    decided = true;
                    if !tombstone {
                        c.live_keys += 1;
                    }
                }
            }
        }
        Ok(c)
    }

    async fn inspect_system(
        &self,
        name: &CollectionName,
    ) -> Result<SystemCollectionInspect, TxnError> {
        let mut c = SystemCollectionInspect {
            name: name.to_string(),
            ..SystemCollectionInspect::default()
        };
        let mut request = Some(ScanRequest::forward(KeyRange::all(), PAGE));
        while let Some(req) = request.take() {
            let page = self.inner.backend.scan(name, &req).await?;
            request = req.next_page(&page);
            for (key, stored) in page.entries {
                c.entries += 1;
                c.stored_bytes += (key.len() + stored.len()) as u64;
                if name.as_str() == META_COLLECTION {
                    // A damaged record is an error here as everywhere else.
                    value::decode(META_COLLECTION, &key, &stored).map_err(|e| {
                        TxnError::Corrupted {
                            collection: name.clone(),
                            key: crate::backend::KeyPreview::of(&key),
                            version: 0,
                            reason: e.to_string(),
                        }
                    })?;
                }
            }
        }
        Ok(c)
    }

    /// Removes every version no reader can see (a full GC sweep), then runs the backend's own
    /// compaction (fjall major compaction, redb `compact`). Refuses with
    /// [`TxnError::Blocked`] while any transaction is live: a snapshot (or a write transaction
    /// with its savepoints) pins versions the compaction would otherwise remove, and redb
    /// cannot compact under a live read.
    ///
    /// # Errors
    ///
    /// [`TxnError::Blocked`]; backend errors (including the backend's own refusal).
    pub async fn compact(&self) -> Result<CompactReport, TxnError> {
        self.refuse_if_pinned()?;
        let disk_bytes_before = self.inner.backend.stats().await?.disk_bytes;
        let gc = self.collect_garbage().await?;
        self.refuse_if_pinned()?;
        let backend_compacted = self.inner.backend.compact().await?;
        let disk_bytes_after = self.inner.backend.stats().await?.disk_bytes;
        Ok(CompactReport {
            gc,
            backend_compacted,
            disk_bytes_before,
            disk_bytes_after,
        })
    }

    fn refuse_if_pinned(&self) -> Result<(), TxnError> {
        let oracle = &self.inner.oracle;
        let live = oracle.active_count();
        if live == 0 {
            return Ok(());
        }
        let oldest = oracle
            .oldest_active()
            .map_or_else(String::new, |v| format!(", the oldest reads version {v}"));
        Err(TxnError::Blocked {
            operation: "compaction",
            reason: format!(
                "{live} transaction(s) are live{oldest}; their snapshots and savepoints pin \
                 versions compaction would remove (end them and retry)"
            ),
        })
    }
}
