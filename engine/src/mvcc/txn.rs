//! Read and write transactions.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::task::Poll;

use crate::backend::{
    CollectionName, Direction, Durability, KeyPreview, KeyRange, ScanPage, ScanRequest, WriteBatch,
};
use crate::limits::{MAX_SCAN_LIMIT, MAX_VALUE_LEN};
use crate::mvcc::conflict::{ReadSet, WriteSet};
use crate::mvcc::engine::{EngineInner, Isolation, WriteOptions};
use crate::mvcc::error::{TxnError, UserKeyProblem};
use crate::mvcc::keys::{EncodedKey, MAX_USER_KEY_LEN, Version};
use crate::mvcc::meta::{self, VERSION_LEASE, VERSION_LIMIT};
use crate::mvcc::oracle::{CommittedWrites, VersionTicket};
use crate::mvcc::read::{get_at, resume_after, scan_at};
use crate::mvcc::value::SEALED_OVERHEAD;

/// The largest value a transaction accepts.
pub const MAX_USER_VALUE_LEN: u64 = MAX_VALUE_LEN - SEALED_OVERHEAD as u64;

fn check_user_key(collection: &CollectionName, key: &[u8]) -> Result<(), TxnError> {
    let problem = if key.is_empty() {
        UserKeyProblem::Empty
    } else if key.len() > MAX_USER_KEY_LEN {
        UserKeyProblem::TooLong {
            len: key.len(),
            max: MAX_USER_KEY_LEN,
        }
    } else {
        return Ok(());
    };
    Err(TxnError::InvalidKey {
        collection: collection.clone(),
        problem,
    })
}

fn check_scan(request: &ScanRequest) -> Result<(), TxnError> {
    crate::limits::check_scan_limit(request.limit)?;
    Ok(())
}

/// Registration of a snapshot with the oracle; unregisters on drop.
#[derive(Debug)]
struct Snapshot {
    inner: Arc<EngineInner>,
    version: Version,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.inner.oracle.end(self.version);
    }
}

/// A read-only transaction: every read sees one committed version. Never conflicts. Holds
/// back garbage collection of that version while alive, so keep it short.
#[derive(Debug)]
pub struct ReadTransaction {
    snapshot: Snapshot,
}

impl ReadTransaction {
    pub(crate) fn new(inner: Arc<EngineInner>, version: Version) -> Self {
        Self {
            snapshot: Snapshot { inner, version },
        }
    }

    /// The version this transaction reads.
    #[must_use]
    pub fn version(&self) -> Version {
        self.snapshot.version
    }

    /// The value of `key`, if present at this version.
    ///
    /// # Errors
    ///
    /// Invalid key, unknown collection, backend errors, [`TxnError::Corrupted`].
    pub async fn get(
        &self,
        collection: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, TxnError> {
        check_user_key(collection, key)?;
        let inner = &self.snapshot.inner;
        get_at(
            &*inner.backend,
            &inner.codec,
            collection,
            key,
            self.snapshot.version,
        )
        .await
    }

    /// One page of an ordered scan at this version.
    ///
    /// # Errors
    ///
    /// Bad page limit, unknown collection, backend errors, [`TxnError::Corrupted`].
    pub async fn scan(
        &self,
        collection: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, TxnError> {
        check_scan(request)?;
        let inner = &self.snapshot.inner;
        let (entries, more) = scan_at(
            &*inner.backend,
            &inner.codec,
            collection,
            &request.range,
            request.direction,
            request.limit,
            self.snapshot.version,
        )
        .await?;
        Ok(page_from(request, entries, more))
    }

    /// Every entry whose key starts with `prefix`, in key order (all pages).
    ///
    /// # Errors
    ///
    /// As [`ReadTransaction::scan`].
    pub async fn scan_prefix(
        &self,
        collection: &CollectionName,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TxnError> {
        let mut out = Vec::new();
        let mut request = Some(ScanRequest::forward(KeyRange::prefix(prefix), 1024));
        while let Some(req) = request.take() {
            let page = self.scan(collection, &req).await?;
            request = req.next_page(&page);
            out.extend(page.entries);
        }
        Ok(out)
    }
}

fn page_from(request: &ScanRequest, entries: Vec<(Vec<u8>, Vec<u8>)>, more: bool) -> ScanPage {
    let resume = if more {
        entries
            .last()
            .map(|(last, _)| resume_after(&request.range, request.direction, last))
    } else {
        None
    };
    ScanPage { entries, resume }
}

/// A change recorded for undo: the buffered entry a key had before (`None`: none).
#[derive(Debug)]
struct Undo {
    collection: CollectionName,
    key: Vec<u8>,
    previous: Option<Option<Vec<u8>>>,
}

/// Buffered writes: per collection, key → `Some(value)` or `None` (delete).
type Buffer = BTreeMap<CollectionName, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// What [`WriteTransaction::into_parts`] hands to the replication hook.
#[derive(Debug)]
pub(crate) struct TxnParts {
    pub(crate) read_version: Version,
    pub(crate) options: WriteOptions,
    pub(crate) reads: ReadSet,
    pub(crate) writes: BTreeMap<CollectionName, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

/// Information about a successful commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit version (for a read-only transaction: its read version).
    pub version: Version,
    /// Whether anything was written.
    pub wrote: bool,
}

/// A read-write transaction with optimistic concurrency control.
///
/// Reads see the snapshot plus the transaction's own writes (in `get` and in scans, both
/// directions). Writes are buffered until [`commit`](Self::commit), which validates, assigns a
/// version, and applies everything as one atomic backend batch. Dropping the transaction
/// without committing rolls it back.
#[derive(Debug)]
pub struct WriteTransaction {
    snapshot: Snapshot,
    options: WriteOptions,
    buffer: Buffer,
    reads: ReadSet,
    undo: Vec<Undo>,
    savepoints: Vec<(String, usize)>,
}

impl WriteTransaction {
    pub(crate) fn new(inner: Arc<EngineInner>, version: Version, options: WriteOptions) -> Self {
        Self {
            snapshot: Snapshot { inner, version },
            options,
            buffer: Buffer::new(),
            reads: ReadSet::default(),
            undo: Vec::new(),
            savepoints: Vec::new(),
        }
    }

    /// The snapshot version reads come from.
    #[must_use]
    pub fn read_version(&self) -> Version {
        self.snapshot.version
    }

    /// The options this transaction runs with.
    #[must_use]
    pub fn options(&self) -> WriteOptions {
        self.options
    }

    fn inner(&self) -> &Arc<EngineInner> {
        &self.snapshot.inner
    }

    fn tracks_reads(&self) -> bool {
        self.options.isolation == Isolation::Serializable
    }

    /// Reads `key` (own writes first, then the snapshot) and, under serializable isolation,
    /// records the read for validation.
    ///
    /// # Errors
    ///
    /// Invalid key, unknown collection, backend errors, [`TxnError::Corrupted`].
    pub async fn get(
        &mut self,
        collection: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, TxnError> {
        let value = self.get_untracked(collection, key).await?;
        if self.tracks_reads() {
            self.reads.add_point(collection, key);
        }
        Ok(value)
    }

    /// Reads `key` without recording it: a later change to it by another transaction does not
    /// fail this one. Use for reads that do not influence what this transaction writes.
    ///
    /// # Errors
    ///
    /// As [`WriteTransaction::get`].
    pub async fn get_untracked(
        &self,
        collection: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, TxnError> {
        check_user_key(collection, key)?;
        if let Some(buffered) = self.buffer.get(collection).and_then(|m| m.get(key)) {
            return Ok(buffered.clone());
        }
        let inner = self.inner();
        get_at(
            &*inner.backend,
            &inner.codec,
            collection,
            key,
            self.snapshot.version,
        )
        .await
    }

    /// Buffers `key = value`.
    ///
    /// # Errors
    ///
    /// Invalid key, value too large, unknown collection.
    pub fn put(
        &mut self,
        collection: &CollectionName,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), TxnError> {
        let key = key.into();
        let value = value.into();
        check_user_key(collection, &key)?;
        if value.len() as u64 > MAX_USER_VALUE_LEN {
            return Err(TxnError::ValueTooLarge {
                collection: collection.clone(),
                key: KeyPreview::of(&key),
                len: value.len() as u64,
                max: MAX_USER_VALUE_LEN,
            });
        }
        self.inner().check_collection(collection)?;
        self.buffer_write(collection, key, Some(value));
        Ok(())
    }

    /// Buffers the deletion of `key` (deleting an absent key is not an error).
    ///
    /// # Errors
    ///
    /// Invalid key, unknown collection.
    pub fn delete(
        &mut self,
        collection: &CollectionName,
        key: impl Into<Vec<u8>>,
    ) -> Result<(), TxnError> {
        let key = key.into();
        check_user_key(collection, &key)?;
        self.inner().check_collection(collection)?;
        self.buffer_write(collection, key, None);
        Ok(())
    }

    fn buffer_write(&mut self, collection: &CollectionName, key: Vec<u8>, value: Option<Vec<u8>>) {
        let map = match self.buffer.get_mut(collection) {
            Some(map) => map,
            None => self.buffer.entry(collection.clone()).or_default(),
        };
        if self.savepoints.is_empty() {
            map.insert(key, value);
        } else {
            let previous = map.insert(key.clone(), value);
            self.undo.push(Undo {
                collection: collection.clone(),
                key,
                previous,
            });
        }
    }

    /// One page of an ordered scan over the snapshot merged with this transaction's writes.
    /// Under serializable isolation the part of the range the page covered is recorded, so a
    /// concurrent insert into it (a phantom) fails this transaction's commit.
    ///
    /// # Errors
    ///
    /// Bad page limit, unknown collection, backend errors, [`TxnError::Corrupted`].
    pub async fn scan(
        &mut self,
        collection: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, TxnError> {
        let page = self.scan_untracked(collection, request).await?;
        if self.tracks_reads() {
            let range = &request.range;
            let (start, end) = match (&page.resume, page.entries.last(), request.direction) {
                (Some(_), Some((last, _)), Direction::Forward) => {
                    (range.start.clone(), Bound::Included(last.clone()))
                }
                (Some(_), Some((last, _)), Direction::Reverse) => {
                    (Bound::Included(last.clone()), range.end.clone())
                }
                _ => (range.start.clone(), range.end.clone()),
            };
            self.reads.add_range(collection, start, end);
        }
        Ok(page)
    }

    /// [`WriteTransaction::scan`] without recording the range.
    ///
    /// # Errors
    ///
    /// As [`WriteTransaction::scan`].
    pub async fn scan_untracked(
        &self,
        collection: &CollectionName,
        request: &ScanRequest,
    ) -> Result<ScanPage, TxnError> {
        check_scan(request)?;
        let limit = request.limit;
        let direction = request.direction;
        let buffered = self.buffer.get(collection);
        let inner = self.inner();
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut cursor = request.range.clone();
        loop {
            let want = (limit - out.len()).min(MAX_SCAN_LIMIT);
            let (committed, more) = scan_at(
                &*inner.backend,
                &inner.codec,
                collection,
                &cursor,
                direction,
                want,
                self.snapshot.version,
            )
            .await?;
            // The committed page covers the cursor range up to its last key (if cut) or
            // entirely; merge the buffer over exactly that part.
            let covered = match (more, committed.last()) {
                (true, Some((last, _))) => match direction {
                    Direction::Forward => {
                        KeyRange::new(cursor.start.clone(), Bound::Included(last.clone()))
                    }
                    Direction::Reverse => {
                        KeyRange::new(Bound::Included(last.clone()), cursor.end.clone())
                    }
                },
                _ => cursor.clone(),
            };
            let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = committed.into_iter().collect();
            if let Some(buffered) = buffered
                && !covered.is_empty_by_bounds()
            {
                for (k, v) in buffered.range::<[u8], _>(covered.as_slices()) {
                    match v {
                        Some(v) => merged.insert(k.clone(), v.clone()),
                        None => merged.remove(k),
                    };
                }
            }
            let ordered: Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)>> = match direction {
                Direction::Forward => Box::new(merged.into_iter()),
                Direction::Reverse => Box::new(merged.into_iter().rev()),
            };
            for entry in ordered {
                out.push(entry);
                if out.len() == limit {
                    let last = out.last().map(|(k, _)| k.as_slice()).unwrap_or_default();
                    let resume = resume_after(&request.range, direction, last);
                    return Ok(ScanPage {
                        entries: out,
                        resume: Some(resume),
                    });
                }
            }
            if !more {
                return Ok(ScanPage {
                    entries: out,
                    resume: None,
                });
            }
            let Some(last_covered) = (match direction {
                Direction::Forward => match &covered.end {
                    Bound::Included(k) => Some(k.clone()),
                    _ => None,
                },
                Direction::Reverse => match &covered.start {
                    Bound::Included(k) => Some(k.clone()),
                    _ => None,
                },
            }) else {
                return Ok(ScanPage {
                    entries: out,
                    resume: None,
                });
            };
            cursor = resume_after(&cursor, direction, &last_covered);
        }
    }

    /// Every entry whose key starts with `prefix` (snapshot merged with own writes), tracked.
    ///
    /// # Errors
    ///
    /// As [`WriteTransaction::scan`].
    pub async fn scan_prefix(
        &mut self,
        collection: &CollectionName,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TxnError> {
        let mut out = Vec::new();
        let mut request = Some(ScanRequest::forward(KeyRange::prefix(prefix), 1024));
        while let Some(req) = request.take() {
            let page = self.scan(collection, &req).await?;
            request = req.next_page(&page);
            out.extend(page.entries);
        }
        Ok(out)
    }

    /// Starts a savepoint called `name` (names may repeat; the newest wins). Savepoints nest.
    pub fn create_savepoint(&mut self, name: impl Into<String>) {
        self.savepoints.push((name.into(), self.undo.len()));
    }

    fn savepoint_index(&self, name: &str) -> Result<usize, TxnError> {
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| TxnError::SavepointNotFound {
                name: name.to_owned(),
            })
    }

    /// Undoes every write made since savepoint `name` was created, in every collection, and
    /// discards the savepoints created after it. `name` itself stays, so it can be rolled back
    /// to again. Reads stay recorded (they happened).
    ///
    /// # Errors
    ///
    /// [`TxnError::SavepointNotFound`].
    pub fn rollback_to_savepoint(&mut self, name: &str) -> Result<(), TxnError> {
        let index = self.savepoint_index(name)?;
        let mark = self.savepoints[index].1;
        while self.undo.len() > mark {
            let Some(undo) = self.undo.pop() else { break };
            let Some(map) = self.buffer.get_mut(&undo.collection) else {
                continue;
            };
            match undo.previous {
                Some(previous) => {
                    map.insert(undo.key, previous);
                }
                None => {
                    map.remove(&undo.key);
                }
            }
        }
        self.savepoints.truncate(index + 1);
        Ok(())
    }

    /// Forgets savepoint `name` and every savepoint created after it, keeping their writes.
    ///
    /// # Errors
    ///
    /// [`TxnError::SavepointNotFound`].
    pub fn release_savepoint(&mut self, name: &str) -> Result<(), TxnError> {
        let index = self.savepoint_index(name)?;
        self.savepoints.truncate(index);
        if self.savepoints.is_empty() {
            self.undo.clear();
        }
        Ok(())
    }

    /// Names of the live savepoints, oldest first.
    #[must_use]
    pub fn savepoints(&self) -> Vec<&str> {
        self.savepoints.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Whether the transaction has buffered writes.
    #[must_use]
    pub fn has_writes(&self) -> bool {
        self.buffer.values().any(|m| !m.is_empty())
    }

    /// Discards everything.
    pub fn rollback(self) {
        if self.has_writes() {
            crate::metrics::abort();
        }
    }

    /// Consumes the transaction without committing: its options, read version, read set and
    /// buffered writes, for [`crate::mvcc::replica`] (Raft mode commits through the log).
    pub(crate) fn into_parts(self) -> TxnParts {
        let version = self.snapshot.version;
        TxnParts {
            read_version: version,
            options: self.options,
            reads: self.reads,
            writes: self.buffer,
        }
    }

    /// Validates, assigns a commit version and applies every buffered write as one atomic
    /// backend batch; returns once the commit is visible (and durable, for synced commits).
    ///
    /// Once validation passed the commit runs to completion even if this future is dropped.
    ///
    /// # Errors
    ///
    /// [`TxnError::Conflict`] (nothing was written; retry the transaction), backend errors
    /// (nothing was written), [`TxnError::DurabilityUnknown`] (applied, sync failed).
    pub async fn commit(mut self) -> Result<CommitInfo, TxnError> {
        if !self.has_writes() {
            return Ok(CommitInfo {
                version: self.snapshot.version,
                wrote: false,
            });
        }
        let inner = Arc::clone(self.inner());
        let read_version = self.snapshot.version;
        // Split the buffer once: user keys move into the write set (for validation), encoded
        // keys and values wait for the version.
        let mut writes = WriteSet::default();
        let mut pending = Vec::with_capacity(self.buffer.values().map(BTreeMap::len).sum());
        for (collection, map) in std::mem::take(&mut self.buffer) {
            let mut keys = std::collections::BTreeSet::new();
            for (key, value) in map {
                pending.push((collection.clone(), EncodedKey::encode(&key), value));
                keys.insert(key);
            }
            if !keys.is_empty() {
                writes.keys.insert(collection, keys);
            }
        }
        let mut state = Arc::clone(&inner.oracle.commit).lock_owned().await;
        inner.oracle.prune(&mut state);
        let validate = !inner.options.disable_conflict_detection;
        for committed in state.recent.iter().rev().filter(|_| validate) {
            if committed.version <= read_version {
                break;
            }
            let hit = match self.options.isolation {
                Isolation::Serializable => self.reads.first_overlap(&committed.writes),
                Isolation::Snapshot => writes.first_overlap(&committed.writes),
            };
            if let Some((collection, key)) = hit {
                crate::metrics::conflict(collection.as_str());
                return Err(TxnError::Conflict {
                    collection: collection.clone(),
                    key: KeyPreview::of(key),
                    read_version,
                    conflicting_version: committed.version,
                });
            }
        }
        let version = state.last_assigned + 1;
        if version > state.leased_until {
            // Make the next block of versions durable before using any of it, so a restart
            // resumes above every version that may be on disk.
            let limit = state.leased_until.saturating_add(VERSION_LEASE);
            let mut lease = WriteBatch::new();
            lease.put(
                &inner.meta,
                VERSION_LIMIT.to_vec(),
                meta::encode_u64(VERSION_LIMIT, limit),
            );
            (inner.backend.write(lease, Durability::Synced).await)
                .inspect_err(|_| crate::metrics::abort())?;
            state.leased_until = limit;
        }
        state.last_assigned = version;
        state.recent.push_back(CommittedWrites {
            version,
            writes: Arc::new(writes),
        });
        let ticket = VersionTicket::new(Arc::clone(&inner.oracle), version);

        let mut batch = WriteBatch::with_capacity(pending.len());
        let (keys, mut bytes) = (pending.len(), 0u64);
        for (collection, encoded, value) in pending {
            let versioned = encoded.into_versioned(version);
            let stored =
                inner
                    .codec
                    .encode(collection.as_str(), versioned.as_bytes(), value.as_deref())?;
            bytes += (versioned.as_bytes().len() + stored.len()) as u64;
            batch.put(&collection, versioned.into_bytes(), stored);
        }

        let synced = self.options.durability == Durability::Synced;
        let apply = async move {
            let written = inner.backend.write(batch, Durability::Buffered).await;
            // The next commit may validate and write now: its batch lands after this one.
            drop(state);
            if let Err(e) = written {
                crate::metrics::abort();
                ticket.resolve();
                return Err(match e {
                    crate::BackendError::CollectionNotFound { collection } => {
                        TxnError::CollectionNotFound { collection }
                    }
                    other => TxnError::Backend(other),
                });
            }
            crate::metrics::commit(keys, bytes);
            let durable = if synced {
                inner.backend.sync().await
            } else {
                Ok(())
            };
            ticket.resolve();
            inner.oracle.wait_published(version).await;
            durable.map_err(|source| TxnError::DurabilityUnknown { version, source })?;
            Ok(CommitInfo {
                version,
                wrote: true,
            })
        };
        run_to_completion(apply).await
    }
}

/// Polls `work` once in place (the common case finishes here without a task switch); if it
/// is not done, moves it to a task so it completes even if the caller is dropped.
async fn run_to_completion<F, T>(work: F) -> Result<T, TxnError>
where
    F: Future<Output = Result<T, TxnError>> + Send + 'static,
    T: Send + 'static,
{
    let mut work = Box::pin(work);
    let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(result) => result,
        Poll::Pending => match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn(work)
                .await
                .map_err(|e| TxnError::Task(format!("commit task failed: {e}")))?,
            Err(_) => work.await,
        },
    }
}
