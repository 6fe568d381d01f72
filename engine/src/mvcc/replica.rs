//! Raft mode: the hooks a replicated state machine (`zcore-cluster`) needs from the engine.
//!
//! In Raft mode nothing commits locally. A transaction runs on the leader as usual (reads at a
//! snapshot, writes buffered), then [`WriteTransaction::into_replicated`] turns it into a
//! [`ReplicatedTxn`] — read version, isolation, what it read, what it writes — which travels
//! through the Raft log. Every replica applies committed log entries in log order:
//!
//! 1. [`Engine::validate_replicated`] checks the transaction against the versions stored on the
//!    replica. The check is *deterministic*: it looks only at stored data that every replica
//!    holds identically (all versions newer than `next_version - REPLICA_VALIDATION_WINDOW`,
//!    which garbage collection never removes while [`EngineOptions::retain_versions`] is at
//!    least [`REPLICA_VALIDATION_WINDOW`]), so all replicas reach the same verdict. The leader
//!    runs the same check before proposing, to fail fast.
//! 2. [`Engine::apply_replicated`] writes the transaction at `version` = the entry's log
//!    index — every replica writes identical keys — together with the caller's own records
//!    (applied log id, client table) in one atomic backend batch, and publishes the version.
//! 3. Entries without data (blank, membership) publish their index through
//!    [`Engine::advance_replicated`], so versions stay equal to log indexes.
//! 4. After a snapshot was installed underneath the engine, [`Engine::reset_replicated`]
//!    rebuilds the oracle's window (published version, GC floor).
//!
//! The applied version is also written as the engine's version limit, so an engine opened on a
//! replica's store (offline tools, restart) resumes at the applied version.
//!
//! [`EngineOptions::retain_versions`]: crate::mvcc::EngineOptions::retain_versions

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::backend::{
    BackendError, CollectionName, Durability, KeyPreview, KeyRange, ScanRequest, WriteBatch,
};
use crate::mvcc::engine::{Engine, Isolation};
use crate::mvcc::error::TxnError;
use crate::mvcc::keys::{EncodedKey, Version, VersionedKey, backend_range, split_versioned};
use crate::mvcc::meta::{self, GC_FLOOR, VERSION_LIMIT};
use crate::mvcc::txn::WriteTransaction;

/// How far (in versions) a replicated transaction's read version may lag behind the version
/// it commits at. Older transactions fail validation with [`TxnError::VersionNotRetained`]
/// (retry them). Replicas must keep at least this many versions
/// ([`EngineOptions::retain_versions`](crate::mvcc::EngineOptions::retain_versions)).
pub const REPLICA_VALIDATION_WINDOW: u64 = 16_384;

/// One read of a replicated transaction (serializable isolation only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicatedRead {
    /// A point read of `key`.
    Point {
        /// The collection.
        collection: CollectionName,
        /// The user key.
        key: Vec<u8>,
    },
    /// A scanned range of user keys.
    Range {
        /// The collection.
        collection: CollectionName,
        /// Lower bound.
        start: Bound<Vec<u8>>,
        /// Upper bound.
        end: Bound<Vec<u8>>,
    },
}

/// One buffered write: `Some(value)` or `None` (delete).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedWrite {
    /// The collection.
    pub collection: CollectionName,
    /// The user key.
    pub key: Vec<u8>,
    /// The new value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// A transaction as it travels through the Raft log: everything a replica needs to validate
/// and apply it deterministically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedTxn {
    /// The snapshot version the transaction read at.
    pub read_version: Version,
    /// Its isolation level.
    pub isolation: Isolation,
    /// What it read (empty under snapshot isolation).
    pub reads: Vec<ReplicatedRead>,
    /// What it writes, ascending by (collection, key), one entry per key.
    pub writes: Vec<ReplicatedWrite>,
}

impl ReplicatedTxn {
    /// Whether the transaction writes anything.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty()
    }
}

impl WriteTransaction {
    /// Ends the transaction without committing and returns it as a [`ReplicatedTxn`], to be
    /// proposed through the Raft log (Raft mode; see [`crate::mvcc::replica`]).
    #[must_use]
    pub fn into_replicated(self) -> ReplicatedTxn {
        let parts = self.into_parts();
        let mut reads = Vec::new();
        if parts.options.isolation == Isolation::Serializable {
            for (collection, keys) in parts.reads.points {
                for key in keys {
                    reads.push(ReplicatedRead::Point {
                        collection: collection.clone(),
                        key,
                    });
                }
            }
            for (collection, ranges) in parts.reads.ranges {
                for range in ranges {
                    reads.push(ReplicatedRead::Range {
                        collection: collection.clone(),
                        start: range.start,
                        end: range.end,
                    });
                }
            }
        }
        let writes = parts
            .writes
            .into_iter()
            .flat_map(|(collection, map)| {
                map.into_iter().map(move |(key, value)| ReplicatedWrite {
                    collection: collection.clone(),
                    key,
                    value,
                })
            })
            .collect();
        ReplicatedTxn {
            read_version: parts.read_version,
            isolation: parts.options.isolation,
            reads,
            writes,
        }
    }
}

fn conflict(
    collection: &CollectionName,
    key: &[u8],
    read_version: Version,
    conflicting_version: Version,
) -> TxnError {
    TxnError::Conflict {
        collection: collection.clone(),
        key: KeyPreview::of(key),
        read_version,
        conflicting_version,
    }
}

fn backend_err(e: BackendError) -> TxnError {
    match e {
        BackendError::CollectionNotFound { collection } => {
            TxnError::CollectionNotFound { collection }
        }
        other => TxnError::Backend(other),
    }
}

impl Engine {
    /// Validates a replicated transaction against the stored versions, as if it committed at
    /// `next_version` (the log index it is applied at). Deterministic across replicas (see the
    /// [module docs](crate::mvcc::replica)).
    ///
    /// Serializable: fails if any key it read, or any key inside a range it scanned, has a
    /// version newer than its read version. Snapshot isolation: the same for the keys it
    /// writes. A read version more than [`REPLICA_VALIDATION_WINDOW`] behind `next_version`
    /// fails with [`TxnError::VersionNotRetained`].
    ///
    /// # Errors
    ///
    /// [`TxnError::Conflict`], [`TxnError::VersionNotRetained`],
    /// [`TxnError::CollectionNotFound`] (a collection it writes does not exist), backend
    /// errors.
    pub async fn validate_replicated(
        &self,
        txn: &ReplicatedTxn,
        next_version: Version,
    ) -> Result<(), TxnError> {
        for write in &txn.writes {
            self.inner.check_collection(&write.collection)?;
        }
        let oldest = next_version.saturating_sub(REPLICA_VALIDATION_WINDOW);
        if txn.read_version < oldest {
            return Err(TxnError::VersionNotRetained {
                requested: txn.read_version,
                oldest_retained: oldest,
            });
        }
        if self.inner.options.disable_conflict_detection {
            return Ok(());
        }
        match txn.isolation {
            Isolation::Serializable => {
                for read in &txn.reads {
                    match read {
                        ReplicatedRead::Point { collection, key } => {
                            self.check_point(collection, key, txn.read_version).await?;
                        }
                        ReplicatedRead::Range {
                            collection,
                            start,
                            end,
                        } => {
                            let range = KeyRange::new(start.clone(), end.clone());
                            self.check_range(collection, &range, txn.read_version)
                                .await?;
                        }
                    }
                }
            }
            Isolation::Snapshot => {
                for write in &txn.writes {
                    self.check_point(&write.collection, &write.key, txn.read_version)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The newest stored version of `key` must be at or below `read_version`.
    async fn check_point(
        &self,
        collection: &CollectionName,
        key: &[u8],
        read_version: Version,
    ) -> Result<(), TxnError> {
        if !self.inner.collections_read().contains(collection) {
            // A collection that does not exist holds no versions.
            return Ok(());
        }
        let encoded = EncodedKey::encode(key);
        let start = encoded.first_versioned();
        let end = encoded.last_versioned();
        let found = self
            .inner
            .backend
            .seek(collection, start.as_bytes(), end.as_bytes())
            .await
            .map_err(backend_err)?;
        if let Some((stored, _)) = found
            && let Some((_, version)) = split_versioned(&stored)
            && version > read_version
        {
            return Err(conflict(collection, key, read_version, version));
        }
        Ok(())
    }

    /// No stored version inside `range` may be newer than `read_version`.
    async fn check_range(
        &self,
        collection: &CollectionName,
        range: &KeyRange,
        read_version: Version,
    ) -> Result<(), TxnError> {
        if range.is_empty_by_bounds() || !self.inner.collections_read().contains(collection) {
            return Ok(());
        }
        let (start, end) = range.as_slices();
        let (bstart, bend) = backend_range(start, end);
        let mut request = Some(ScanRequest::forward(KeyRange::new(bstart, bend), 1024));
        while let Some(req) = request.take() {
            let page = self
                .inner
                .backend
                .scan(collection, &req)
                .await
                .map_err(backend_err)?;
            request = req.next_page(&page);
            for (stored, _) in page.entries {
                if let Some((_, version)) = split_versioned(&stored)
                    && version > read_version
                {
                    let user = VersionedKey::from_stored(stored)
                        .ok()
                        .and_then(|k| k.user_key().ok())
                        .unwrap_or_default();
                    return Err(conflict(collection, &user, read_version, version));
                }
            }
        }
        Ok(())
    }

    /// Writes a validated replicated transaction at `version` (its log index), together with
    /// `extra` (the caller's own records, e.g. the applied log id), as one atomic backend batch
    /// with the given durability, then publishes `version`. Does not validate: call
    /// [`Engine::validate_replicated`] first.
    ///
    /// # Errors
    ///
    /// [`TxnError::CollectionNotFound`] (nothing written), backend errors (nothing written).
    pub async fn apply_replicated(
        &self,
        version: Version,
        txn: &ReplicatedTxn,
        extra: WriteBatch,
        durability: Durability,
    ) -> Result<(), TxnError> {
        for write in &txn.writes {
            self.inner.check_collection(&write.collection)?;
        }
        let mut batch = WriteBatch::with_capacity(txn.writes.len() + extra.len() + 1);
        for write in &txn.writes {
            let versioned = EncodedKey::encode(&write.key).into_versioned(version);
            let stored = self.inner.codec.encode(
                write.collection.as_str(),
                versioned.as_bytes(),
                write.value.as_deref(),
            )?;
            batch.put(&write.collection, versioned.into_bytes(), stored);
        }
        self.finish_replicated(version, batch, extra, durability)
            .await
    }

    /// Publishes `version` for a log entry that carries no data (blank, membership, a
    /// transaction that failed validation), writing `extra` atomically with the new version
    /// limit.
    ///
    /// # Errors
    ///
    /// Backend errors (nothing written, nothing published).
    pub async fn advance_replicated(
        &self,
        version: Version,
        extra: WriteBatch,
        durability: Durability,
    ) -> Result<(), TxnError> {
        self.finish_replicated(version, WriteBatch::new(), extra, durability)
            .await
    }

    async fn finish_replicated(
        &self,
        version: Version,
        mut batch: WriteBatch,
        extra: WriteBatch,
        durability: Durability,
    ) -> Result<(), TxnError> {
        let inner = &self.inner;
        for op in extra.into_ops() {
            batch.push(op);
        }
        batch.put(
            &inner.meta,
            VERSION_LIMIT.to_vec(),
            meta::encode_u64(VERSION_LIMIT, version),
        );
        inner
            .backend
            .write(batch, durability)
            .await
            .map_err(backend_err)?;
        inner.oracle.publish_through(version);
        Ok(())
    }

    /// After a snapshot was installed into the backend underneath this engine: publishes
    /// `version` (the snapshot's last log index), raises the GC floor to `gc_floor` (versions
    /// below it may be missing from the snapshot), persists both, and reloads the collection
    /// list from the backend.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn reset_replicated(
        &self,
        version: Version,
        gc_floor: Version,
    ) -> Result<(), TxnError> {
        let inner = &self.inner;
        let floor = gc_floor.min(version);
        let mut batch = WriteBatch::new();
        batch.put(
            &inner.meta,
            VERSION_LIMIT.to_vec(),
            meta::encode_u64(VERSION_LIMIT, version),
        );
        batch.put(
            &inner.meta,
            GC_FLOOR.to_vec(),
            meta::encode_u64(GC_FLOOR, floor),
        );
        inner
            .backend
            .write(batch, Durability::Synced)
            .await
            .map_err(backend_err)?;
        let collections: std::collections::BTreeSet<CollectionName> = inner
            .backend
            .list_collections()
            .await?
            .into_iter()
            .filter(|c| !c.is_system())
            .collect();
        *inner
            .collections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = collections;
        inner.oracle.reset_to(version, floor);
        Ok(())
    }

    /// Versions below this may have been garbage collected (what a snapshot built now must
    /// declare as its floor).
    #[must_use]
    pub fn gc_floor(&self) -> Version {
        self.inner.oracle.gc_floor()
    }
}
