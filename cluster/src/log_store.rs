//! The Raft log on any [`StorageBackend`].
//!
//! Two system collections: `__raft_log` holds one framed [`LogRecord`] per entry under its
//! big-endian index (so backend order is log order), `__raft_state` holds the vote, the last
//! purged log id and the committed log id.
//!
//! Durability: [`save_vote`](RaftLogStorage::save_vote) writes with [`Durability::Synced`]
//! and returns only after it is on stable storage; [`append`](RaftLogStorage::append) writes
//! the entries as one synced batch and calls openraft's callback only after that write
//! returned. Truncation is synced too; purging and the committed marker are buffered (losing
//! them only keeps log entries that are no longer needed, or re-applies committed ones).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, StorageError, Vote,
};
use zcore_engine::{
    CollectionName, Direction, Durability, KeyRange, ScanRequest, StorageBackend, WriteBatch,
};

use crate::error::StoreError;
use crate::frame::{self, Kind};
use crate::records::{LogIdRecord, LogRecord, VoteRecord};
use crate::types::{NodeId, TypeConfig};

/// Collection of log entries.
pub const LOG_COLLECTION: &str = "__raft_log";
/// Collection of the vote and log markers.
pub const LOG_STATE_COLLECTION: &str = "__raft_state";

const VOTE: &[u8] = b"vote";
const PURGED: &[u8] = b"purged";
const COMMITTED: &[u8] = b"committed";
/// Entries per backend batch when deleting ranges.
const DELETE_BATCH: usize = 1024;

type Entry = openraft::Entry<TypeConfig>;
type RaftResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn StorageBackend>,
    log: CollectionName,
    state: CollectionName,
}

/// The Raft log store (and its reader: clones share one store).
#[derive(Clone, Debug)]
pub struct LogStore {
    inner: Arc<Inner>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn logs_err(e: impl Into<StoreError>, verb: ErrorVerb) -> StorageError<NodeId> {
    e.into().into_raft(ErrorSubject::Logs, verb)
}

impl LogStore {
    /// Opens (creating if needed) the log on `backend`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn open(backend: Arc<dyn StorageBackend>) -> Result<Self, StoreError> {
        let log =
            CollectionName::system(LOG_COLLECTION).map_err(zcore_engine::BackendError::from)?;
        let state = CollectionName::system(LOG_STATE_COLLECTION)
            .map_err(zcore_engine::BackendError::from)?;
        backend.create_collection(&log).await?;
        backend.create_collection(&state).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                log,
                state,
            }),
        })
    }

    /// The last committed log index this node persisted (openraft saves it lazily).
    ///
    /// # Errors
    ///
    /// Backend errors, a damaged record.
    pub async fn committed_index(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.read_log_id(COMMITTED).await?.map(|l| l.index))
    }

    /// The last log index purged (into a snapshot), as the store records it. A purge writes
    /// it with its first deletion, so an entry found missing at or below the purged index by
    /// an earlier read is explained by a purge; read after the entries, it covers every purge
    /// that could have hidden one of them (the simulator's log observer relies on this).
    ///
    /// # Errors
    ///
    /// Backend errors, a damaged record.
    pub async fn purged_index(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.read_log_id(PURGED).await?.map(|l| l.index))
    }

    async fn read_log_id(&self, key: &[u8]) -> Result<Option<LogId<NodeId>>, StoreError> {
        let Some(bytes) = self.inner.backend.get(&self.inner.state, key).await? else {
            return Ok(None);
        };
        let record: Option<LogIdRecord> = frame::decode(Kind::LogId, &bytes)
            .map_err(|e| StoreError::record(String::from_utf8_lossy(key), e))?;
        Ok(record.map(LogId::from))
    }

    fn log_id_value(id: Option<&LogId<NodeId>>) -> Result<Vec<u8>, StoreError> {
        let record = id.map(LogIdRecord::from);
        frame::encode(Kind::LogId, &record).map_err(|e| StoreError::record("log id", e))
    }

    async fn last_entry(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        let request = ScanRequest::reverse(KeyRange::all(), 1);
        let page = self.inner.backend.scan(&self.inner.log, &request).await?;
        match page.entries.into_iter().next() {
            None => Ok(None),
            Some((key, bytes)) => Ok(Some(decode_entry(&key, &bytes)?.log_id)),
        }
    }

    async fn entries(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StoreError> {
        let map = |b: Bound<u64>| match b {
            Bound::Included(i) => Bound::Included(index_key(i).to_vec()),
            Bound::Excluded(i) => Bound::Excluded(index_key(i).to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let range = KeyRange::new(map(start), map(end));
        let mut out = Vec::new();
        let mut request = Some(ScanRequest::forward(range, 1024));
        while let Some(req) = request.take() {
            let page = self.inner.backend.scan(&self.inner.log, &req).await?;
            request = req.next_page(&page);
            for (key, bytes) in page.entries {
                out.push(decode_entry(&key, &bytes)?);
            }
        }
        Ok(out)
    }

    /// Deletes every entry inside `range` in batches; `first` is written with the first batch.
    async fn delete_range(
        &self,
        range: KeyRange,
        mut first: WriteBatch,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut request = Some(ScanRequest {
            range,
            direction: Direction::Forward,
            limit: DELETE_BATCH,
        });
        while let Some(req) = request.take() {
            let page = self.inner.backend.scan(&self.inner.log, &req).await?;
            request = req.next_page(&page);
            let mut batch = std::mem::take(&mut first);
            for (key, _) in page.entries {
                batch.delete(&self.inner.log, key);
            }
            if !batch.is_empty() {
                self.inner.backend.write(batch, durability).await?;
            }
        }
        if !first.is_empty() {
            self.inner.backend.write(first, durability).await?;
        }
        Ok(())
    }
}

fn decode_entry(key: &[u8], bytes: &[u8]) -> Result<Entry, StoreError> {
    let record: LogRecord = frame::decode(Kind::LogEntry, bytes).map_err(|e| {
        let index = <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        StoreError::record(format!("log entry {index}"), e)
    })?;
    Ok(record.into())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> RaftResult<Vec<Entry>> {
        self.entries(range.start_bound().cloned(), range.end_bound().cloned())
            .await
            .map_err(|e| logs_err(e, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> RaftResult<LogState<TypeConfig>> {
        let purged = self
            .read_log_id(PURGED)
            .await
            .map_err(|e| logs_err(e, ErrorVerb::Read))?;
        let last = self
            .last_entry()
            .await
            .map_err(|e| logs_err(e, ErrorVerb::Read))?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> RaftResult<()> {
        let write = async {
            let bytes = frame::encode(Kind::Vote, &VoteRecord::from(vote))
                .map_err(|e| StoreError::record("vote", e))?;
            let mut batch = WriteBatch::new();
            batch.put(&self.inner.state, VOTE.to_vec(), bytes);
            // Synced: on stable storage before this returns.
            #[cfg_attr(not(feature = "sim-faults"), allow(unused_mut))]
            let mut durability = Durability::Synced;
            // Simulator negative control: the planted bug "vote not persisted".
            #[cfg(feature = "sim-faults")]
            if crate::runtime::sim_faults::lose_votes() {
                durability = Durability::Buffered;
            }
            self.inner.backend.write(batch, durability).await?;
            Ok::<_, StoreError>(())
        };
        write
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> RaftResult<Option<Vote<NodeId>>> {
        let read = async {
            let Some(bytes) = self.inner.backend.get(&self.inner.state, VOTE).await? else {
                return Ok(None);
            };
            let record: VoteRecord =
                frame::decode(Kind::Vote, &bytes).map_err(|e| StoreError::record("vote", e))?;
            Ok::<_, StoreError>(Some(record.into()))
        };
        read.await
            .map_err(|e| e.into_raft(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> RaftResult<()> {
        let write = async {
            let mut batch = WriteBatch::new();
            batch.put(
                &self.inner.state,
                COMMITTED.to_vec(),
                Self::log_id_value(committed.as_ref())?,
            );
            self.inner
                .backend
                .write(batch, Durability::Buffered)
                .await?;
            Ok::<_, StoreError>(())
        };
        write
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> RaftResult<Option<LogId<NodeId>>> {
        self.read_log_id(COMMITTED)
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> RaftResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::new();
        for entry in entries {
            let bytes = frame::encode(Kind::LogEntry, &LogRecord::from(&entry))
                .map_err(|e| logs_err(StoreError::record("log entry", e), ErrorVerb::Write))?;
            batch.put(
                &self.inner.log,
                index_key(entry.log_id.index).to_vec(),
                bytes,
            );
        }
        if batch.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // Simulator fault point: a slow disk before the append is acknowledged.
        #[cfg(feature = "sim-faults")]
        if let Some(delay) = crate::runtime::sim_faults::buggify_delay("log_store.append") {
            tokio::time::sleep(delay).await;
        }
        // One synced batch: readable when `write` returns, and durable, so the callback may
        // report the entries flushed.
        match self.inner.backend.write(batch, Durability::Synced).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(logs_err(e, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> RaftResult<()> {
        let range = KeyRange::new(
            Bound::Included(index_key(log_id.index).to_vec()),
            Bound::Unbounded,
        );
        self.delete_range(range, WriteBatch::new(), Durability::Synced)
            .await
            .map_err(|e| logs_err(e, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> RaftResult<()> {
        let purge = async {
            let mut first = WriteBatch::new();
            first.put(
                &self.inner.state,
                PURGED.to_vec(),
                Self::log_id_value(Some(&log_id))?,
            );
            let range = KeyRange::new(
                Bound::Unbounded,
                Bound::Included(index_key(log_id.index).to_vec()),
            );
            self.delete_range(range, first, Durability::Buffered).await
        };
        purge.await.map_err(|e| logs_err(e, ErrorVerb::Delete))
    }
}
