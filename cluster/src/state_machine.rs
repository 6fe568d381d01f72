//! The Raft state machine: the MVCC [`Engine`].
//!
//! - **Apply.** A committed entry carrying a transaction is validated deterministically
//!   ([`Engine::validate_replicated`]) and written at version = its log index
//!   ([`Engine::apply_replicated`]), in one atomic backend batch together with the applied log
//!   id, the membership and the client session record. Entries without data publish their
//!   index ([`Engine::advance_replicated`]). Applied state is therefore exactly as durable as
//!   the data it describes; after a crash, openraft re-applies from the persisted applied id.
//! - **Batches.** A [`Command::Batch`] entry (the leader's group commit, see
//!   [`crate::node`]) carries several client transactions. They are decided in order, each
//!   validated against the stored versions and against those accepted before it in the same
//!   entry (which commit "between" its read version and the entry's index), and all accepted
//!   ones are written at the entry's index in the entry's one backend write. The batch is part
//!   of the log entry, so every replica decides it identically.
//! - **Why apply writes are buffered (no sync per entry).** The log is the durable record: an
//!   entry is applied only after it was appended with a synced write, and the log and the
//!   state machine share one backend, whose contract (C9) loses buffered batches only as a
//!   suffix — a buffered batch never survives a crash that loses one written before it. So a
//!   crash leaves the applied record at some index `a` with exactly the data of entries `..=a`,
//!   every later entry still in the log (purging is issued after the snapshot that covers the
//!   purged entries was built from applied state, so it is later in the same order), and
//!   openraft re-applies `a+1..` on restart. Snapshot installs, snapshot records and the vote
//!   are synced.
//! - **Retries.** A request with a [`RequestId`](crate::types::RequestId) whose number the
//!   session already used is not applied again: the recorded response is returned.
//! - **Failures are final.** An apply or a snapshot install that fails on a storage error may
//!   have advanced the in-memory state (applied id, sessions) past what reached the backend.
//!   openraft stops its core on the error; the store is also marked failed, so that nothing
//!   else (a snapshot build already waiting for the state, a later call) uses the half-applied
//!   state: every later call fails until the store is reopened from the backend.
//! - **Snapshots** are files (see [`crate::snapshot`]; in the simulator, the same bytes in
//!   memory) built from the engine at the applied version while applies go on, with bounded
//!   memory, and installed by redo: the received file is kept, a durable `installing` marker
//!   names it, the user collections are replaced from it, and the last batch writes the new
//!   applied state and removes the marker. A crash during an install repeats it on the next
//!   open. Readers on this node are held off during an install by
//!   [`StateMachineStore::read_gate`]; a build holds that gate shared from its capture of the
//!   applied state to the end of its scan, so no install or collection drop runs in between.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use tokio::sync::{Mutex, RwLock};
use zcore_engine::backend::KeyPreview;
use zcore_engine::mvcc::replica::{
    REPLICA_VALIDATION_WINDOW, ReplicatedRead, ReplicatedTxn, ReplicatedWrite,
};
use zcore_engine::mvcc::{MAX_USER_KEY_LEN, MAX_USER_VALUE_LEN};
use zcore_engine::{
    BackendError, CollectionName, Durability, Engine, EngineOptions, Isolation, KeyRange,
    ScanRequest, StorageBackend, TxnError, WriteBatch,
};

use crate::error::StoreError;
use crate::frame::{self, Kind};
use crate::records::{
    AppliedRecord, ClientRecord, LogIdRecord, SnapshotMetaRecord, SnapshotPart,
    StoredMembershipRecord,
};
use crate::snapshot::{self, CHUNK_BYTES, SnapshotReader, SnapshotStorage, SnapshotWriter};
use crate::types::{Command, Node, NodeId, Outcome, Request, Response, SnapshotData, TypeConfig};

/// How client sessions (the request-id table that makes retries idempotent) expire. Every
/// replica of a cluster must use the same limits: expiry is part of the replicated state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session whose latest request was decided this many log entries ago is dropped.
    pub expire_after_entries: u64,
    /// Expiry runs at every log index that is a multiple of this (0: never).
    pub sweep_every: u64,
    /// At most this many sessions are kept (the least recently used go first).
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            expire_after_entries: SESSION_EXPIRY_ENTRIES,
            sweep_every: 1024,
            max_sessions: 65_536,
        }
    }
}

/// Default session expiry, in log entries (see [`SessionLimits`]). Client nodes retire a
/// pooled session after half of it (see `ClusterNode`), so a live session never expires.
pub const SESSION_EXPIRY_ENTRIES: u64 = 1 << 20;

/// The state machine's own system collection.
pub const SM_COLLECTION: &str = "__raft_sm";

const APPLIED: &[u8] = b"applied";
const CURRENT_SNAPSHOT: &[u8] = b"snapshot";
const INSTALLING: &[u8] = b"installing";
const CLIENT_PREFIX: &[u8] = b"client/";
const SESSION_FLOOR: &[u8] = b"session_floor";

type Entry = openraft::Entry<TypeConfig>;
type RaftResult<T> = Result<T, StorageError<NodeId>>;

fn client_key(client: u64) -> Vec<u8> {
    let mut key = CLIENT_PREFIX.to_vec();
    key.extend_from_slice(&client.to_be_bytes());
    key
}

fn sm_err(e: impl Into<StoreError>, verb: ErrorVerb) -> StorageError<NodeId> {
    e.into().into_raft(ErrorSubject::StateMachine, verb)
}

#[derive(Debug)]
struct SmState {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    clients: BTreeMap<u64, ClientRecord>,
    /// Every expired session record had its latest request decided below this index.
    session_floor: u64,
    /// The newest snapshot file and its metadata.
    current: Option<SnapshotMetaRecord>,
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    sm: CollectionName,
    snapshots: SnapshotStorage,
    state: Mutex<SmState>,
    /// Readers hold it shared; installs and collection drops hold it exclusively.
    gate: Arc<RwLock<()>>,
    seq: AtomicU64,
    sessions: SessionLimits,
    /// Set when an apply or install failed on a storage error: the in-memory state may be
    /// ahead of the backend, so every later call fails (see the module docs).
    failed: OnceLock<String>,
}

/// The state machine store (clones share one state machine).
#[derive(Clone, Debug)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

/// Builds snapshots of a [`StateMachineStore`].
#[derive(Debug)]
pub struct SnapshotBuilder {
    sm: StateMachineStore,
}

impl StateMachineStore {
    /// Opens the state machine on `backend` (sharing it with the log store is expected),
    /// keeping snapshots in `snapshots` (a directory, or memory for the simulator). Finishes an
    /// interrupted snapshot install.
    ///
    /// `options.retain_versions` is raised to at least [`REPLICA_VALIDATION_WINDOW`] so that
    /// validation is deterministic on every replica.
    ///
    /// # Errors
    ///
    /// Backend and engine errors, damaged records, snapshot file errors.
    pub async fn open(
        backend: Arc<dyn StorageBackend>,
        snapshots: impl Into<SnapshotStorage>,
        options: EngineOptions,
    ) -> Result<Self, StoreError> {
        Self::open_with(backend, snapshots, options, SessionLimits::default()).await
    }

    /// As [`open`](Self::open), with explicit session limits (the same on every replica).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn open_with(
        backend: Arc<dyn StorageBackend>,
        snapshots: impl Into<SnapshotStorage>,
        mut options: EngineOptions,
        sessions: SessionLimits,
    ) -> Result<Self, StoreError> {
        options.retain_versions = options.retain_versions.max(REPLICA_VALIDATION_WINDOW);
        let sm = CollectionName::system(SM_COLLECTION).map_err(BackendError::from)?;
        backend.create_collection(&sm).await?;
        let engine = Engine::open(backend, options).await?;
        let snapshots = snapshots.into();
        let this = Self {
            inner: Arc::new(Inner {
                engine,
                sm,
                snapshots,
                state: Mutex::new(SmState {
                    applied: None,
                    membership: StoredMembership::default(),
                    clients: BTreeMap::new(),
                    session_floor: 0,
                    current: None,
                }),
                gate: Arc::new(RwLock::new(())),
                seq: AtomicU64::new(0),
                sessions,
                failed: OnceLock::new(),
            }),
        };
        this.load().await?;
        Ok(this)
    }

    /// `Err` once an apply or install failed (the store must be reopened).
    fn usable(&self) -> Result<(), StoreError> {
        match self.inner.failed.get() {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Marks the store failed after `e` (the first failure is kept).
    fn fail(&self, e: &StoreError) {
        let _ = self.inner.failed.set(e.to_string());
    }

    /// Whether an apply or snapshot install failed on a storage error: the in-memory state
    /// may be ahead of the backend, and every later call fails until the store is reopened.
    #[must_use]
    pub fn has_failed(&self) -> bool {
        self.inner.failed.get().is_some()
    }

    /// The engine (for reads; writes go through the log).
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Shared by readers; held exclusively while a snapshot is installed or a collection
    /// dropped, so no reader sees a half-replaced store.
    #[must_use]
    pub fn read_gate(&self) -> &Arc<RwLock<()>> {
        &self.inner.gate
    }

    /// Where snapshots live.
    #[must_use]
    pub fn snapshots(&self) -> &SnapshotStorage {
        &self.inner.snapshots
    }

    async fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        kind: Kind,
    ) -> Result<Option<T>, StoreError> {
        let backend = self.inner.engine.backend();
        let Some(bytes) = backend.get(&self.inner.sm, key).await? else {
            return Ok(None);
        };
        frame::decode(kind, &bytes)
            .map(Some)
            .map_err(|e| StoreError::record(String::from_utf8_lossy(key), e))
    }

    async fn load(&self) -> Result<(), StoreError> {
        if let Some(marker) = self
            .get_record::<SnapshotMetaRecord>(INSTALLING, Kind::SnapshotMeta)
            .await?
        {
            tracing::warn!(snapshot = %marker.snapshot_id, "finishing an interrupted snapshot install");
            self.install_file(&marker).await?;
        }
        let mut state = self.inner.state.lock().await;
        if let Some(applied) = self
            .get_record::<AppliedRecord>(APPLIED, Kind::Applied)
            .await?
        {
            state.applied = applied.last_applied.map(LogId::from);
            state.membership = applied.membership.into();
        }
        state.current = self
            .get_record::<SnapshotMetaRecord>(CURRENT_SNAPSHOT, Kind::SnapshotMeta)
            .await?;
        state.session_floor = self
            .get_record::<u64>(SESSION_FLOOR, Kind::SessionFloor)
            .await?
            .unwrap_or(0);
        state.clients.clear();
        let backend = self.inner.engine.backend();
        let mut request = Some(ScanRequest::forward(KeyRange::prefix(CLIENT_PREFIX), 1024));
        while let Some(req) = request.take() {
            let page = backend.scan(&self.inner.sm, &req).await?;
            request = req.next_page(&page);
            for (key, bytes) in page.entries {
                let record: ClientRecord = frame::decode(Kind::Client, &bytes)
                    .map_err(|e| StoreError::record(String::from_utf8_lossy(&key), e))?;
                state.clients.insert(record.client, record);
            }
        }
        Ok(())
    }

    fn applied_value(state: &SmState) -> Result<Vec<u8>, StoreError> {
        let record = AppliedRecord {
            last_applied: state.applied.as_ref().map(LogIdRecord::from),
            membership: StoredMembershipRecord::from(&state.membership),
        };
        frame::encode(Kind::Applied, &record).map_err(|e| StoreError::record("applied", e))
    }

    /// Applies one entry; returns its response. Deterministic outcomes (conflicts, refusals)
    /// are responses; only storage failures are errors.
    ///
    /// One backend write per entry (buffered, see the module docs), whatever the entry
    /// carries: the committed transactions of a [`Command::Batch`] are merged into one write
    /// at the entry's index, together with the session records and the applied state.
    async fn apply_one(&self, state: &mut SmState, entry: Entry) -> Result<Response, StoreError> {
        let engine = &self.inner.engine;
        let index = entry.log_id.index;
        state.applied = Some(entry.log_id);
        let mut extra = WriteBatch::new();
        let mut pending = Pending::default();
        let mut touched = BTreeSet::new();
        let response = match entry.payload {
            EntryPayload::Blank => Response {
                index,
                outcome: Outcome::Committed { version: index },
            },
            EntryPayload::Membership(m) => {
                state.membership = StoredMembership::new(Some(entry.log_id), m);
                Response {
                    index,
                    outcome: Outcome::Committed { version: index },
                }
            }
            EntryPayload::Normal(Request {
                id,
                command: Command::Batch(requests),
            }) => {
                if id.is_some() {
                    Response {
                        index,
                        outcome: Outcome::Rejected {
                            message: "a batch carries no request id (its requests do)".to_owned(),
                        },
                    }
                } else {
                    let mut responses = Vec::with_capacity(requests.len());
                    for request in requests {
                        if let Some(id) = request.id {
                            touched.insert(id.client);
                        }
                        let response = if matches!(request.command, Command::Txn(_)) {
                            self.decide(state, index, request, &mut pending).await?
                        } else {
                            Self::refuse(state, index, request, "a batch holds transactions only")
                        };
                        responses.push(response);
                    }
                    Response {
                        index,
                        outcome: Outcome::Batch(responses),
                    }
                }
            }
            EntryPayload::Normal(request) => {
                if let Some(id) = request.id {
                    touched.insert(id.client);
                }
                self.decide(state, index, request, &mut pending).await?
            }
        };
        // Session records land in the same batch as the entry's data, so a retry after a
        // crash sees exactly what was applied.
        for client in touched {
            if let Some(record) = state.clients.get(&client) {
                let bytes = frame::encode(Kind::Client, record)
                    .map_err(|e| StoreError::record("client", e))?;
                extra.put(&self.inner.sm, client_key(record.client), bytes);
            }
        }
        let floor = state.session_floor;
        for client in self.expire_sessions(state, index) {
            extra.delete(&self.inner.sm, client_key(client));
        }
        if state.session_floor != floor {
            let bytes = frame::encode(Kind::SessionFloor, &state.session_floor)
                .map_err(|e| StoreError::record("session floor", e))?;
            extra.put(&self.inner.sm, SESSION_FLOOR.to_vec(), bytes);
        }
        extra.put(
            &self.inner.sm,
            APPLIED.to_vec(),
            Self::applied_value(state)?,
        );
        match pending.into_txn() {
            Some(txn) => {
                engine
                    .apply_replicated(index, &txn, extra, Durability::Buffered)
                    .await?;
            }
            None => {
                engine
                    .advance_replicated(index, extra, Durability::Buffered)
                    .await?;
            }
        }
        Ok(response)
    }

    /// Session expiry, deterministic on every replica: at every `sweep_every`-th log index,
    /// sessions whose latest request was decided `expire_after_entries` or more entries ago
    /// are dropped, then the oldest ones beyond `max_sessions`. Returns the dropped clients
    /// (the caller deletes their records in the entry's batch).
    ///
    /// The session floor rises above the latest request of every dropped session, so a late
    /// retry of an expired session (even of its first request) is answered
    /// [`Outcome::Stale`] instead of being applied a second time: its session was opened
    /// below the floor and has no record.
    fn expire_sessions(&self, state: &mut SmState, index: u64) -> Vec<u64> {
        let limits = &self.inner.sessions;
        if limits.sweep_every == 0 || !index.is_multiple_of(limits.sweep_every) {
            return Vec::new();
        }
        let mut gone: Vec<u64> = state
            .clients
            .values()
            .filter(|r| r.response.index.saturating_add(limits.expire_after_entries) <= index)
            .map(|r| r.client)
            .collect();
        for client in &gone {
            if let Some(r) = state.clients.remove(client) {
                state.session_floor = state.session_floor.max(r.response.index + 1);
            }
        }
        if state.clients.len() > limits.max_sessions {
            let mut by_age: Vec<(u64, u64)> = state
                .clients
                .values()
                .map(|r| (r.response.index, r.client))
                .collect();
            by_age.sort_unstable();
            let excess = state.clients.len() - limits.max_sessions;
            for &(last, client) in by_age.iter().take(excess) {
                state.clients.remove(&client);
                state.session_floor = state.session_floor.max(last + 1);
                gone.push(client);
            }
        }
        gone
    }

    /// Records `message` as a refusal of `request` (with its session, if any).
    fn refuse(state: &mut SmState, index: u64, request: Request, message: &str) -> Response {
        let response = Response {
            index,
            outcome: Outcome::Rejected {
                message: message.to_owned(),
            },
        };
        if let Some(id) = request.id {
            let seen = state.clients.get(&id.client);
            if let Some(seen) = seen
                && id.serial <= seen.serial
            {
                return if id.serial == seen.serial {
                    seen.response.clone()
                } else {
                    Response {
                        index,
                        outcome: Outcome::Stale,
                    }
                };
            }
            if seen.is_none() && (id.serial > 1 || id.opened < state.session_floor) {
                return Response {
                    index,
                    outcome: Outcome::Stale,
                };
            }
            state.clients.insert(
                id.client,
                ClientRecord {
                    client: id.client,
                    serial: id.serial,
                    response: response.clone(),
                },
            );
        }
        response
    }

    /// Decides a request at `index`: returns its response; a transaction that commits is
    /// added to `pending` (written by the caller at `index`). Records the client session (in
    /// memory; the caller persists it with the entry).
    ///
    /// A transaction is validated against the stored versions ([`Engine::validate_replicated`])
    /// and against the transactions already accepted into `pending` (same entry, same
    /// version, decided earlier: they count as commits after its read version).
    async fn decide(
        &self,
        state: &mut SmState,
        index: u64,
        request: Request,
        pending: &mut Pending,
    ) -> Result<Response, StoreError> {
        if let Some(id) = request.id {
            match state.clients.get(&id.client) {
                Some(seen) if id.serial == seen.serial => return Ok(seen.response.clone()),
                Some(seen) if id.serial < seen.serial => {
                    return Ok(Response {
                        index,
                        outcome: Outcome::Stale,
                    });
                }
                // Serials of a session start at 1 and every applied request leaves a
                // record: a later serial without one belongs to an expired session, whose
                // earlier requests' outcomes are gone. Refusing it never applies a retry
                // twice.
                None if id.serial > 1 || id.opened < state.session_floor => {
                    return Ok(Response {
                        index,
                        outcome: Outcome::Stale,
                    });
                }
                _ => {}
            }
        }
        let engine = &self.inner.engine;
        let committed = Outcome::Committed { version: index };
        let outcome = match request.command {
            Command::Txn(txn) => match check_limits(&txn) {
                Err(message) => Outcome::Rejected { message },
                Ok(()) => match engine.validate_replicated(&txn, index).await {
                    Ok(()) => match pending.conflict(&txn, index) {
                        Some(e) => deterministic_failure(e)?,
                        None => {
                            pending.add(txn);
                            committed
                        }
                    },
                    Err(e) => deterministic_failure(e)?,
                },
            },
            Command::CreateCollection(name) => match CollectionName::new(&name) {
                Err(e) => Outcome::Rejected {
                    message: e.to_string(),
                },
                Ok(name) => {
                    // Idempotent, so re-applying after a crash is harmless.
                    engine.create_collection(&name).await?;
                    committed
                }
            },
            Command::DropCollection(name) => match CollectionName::new(&name) {
                Err(e) => Outcome::Rejected {
                    message: e.to_string(),
                },
                Ok(name) => {
                    let _exclusive = self.inner.gate.write().await;
                    engine.drop_collection(&name).await?;
                    committed
                }
            },
            Command::Batch(_) => Outcome::Rejected {
                message: "batches do not nest".to_owned(),
            },
        };
        let response = Response { index, outcome };
        if let Some(id) = request.id {
            state.clients.insert(
                id.client,
                ClientRecord {
                    client: id.client,
                    serial: id.serial,
                    response: response.clone(),
                },
            );
        }
        Ok(response)
    }

    /// Replaces the whole store with the stored snapshot `meta` names (already verified), then
    /// writes the new applied state, the current-snapshot record, and removes the install
    /// marker.
    async fn install_file(&self, meta: &SnapshotMetaRecord) -> Result<(), StoreError> {
        let engine = &self.inner.engine;
        let backend = Arc::clone(engine.backend());
        let _exclusive = self.inner.gate.write().await;
        for collection in engine.collections() {
            engine.drop_collection(&collection).await?;
        }
        // Old client sessions go; the snapshot's replace them.
        let mut request = Some(ScanRequest::forward(KeyRange::prefix(CLIENT_PREFIX), 1024));
        while let Some(req) = request.take() {
            let page = backend.scan(&self.inner.sm, &req).await?;
            request = req.next_page(&page);
            let mut batch = WriteBatch::new();
            for (key, _) in page.entries {
                batch.delete(&self.inner.sm, key);
            }
            backend.write(batch, Durability::Buffered).await?;
        }
        let mut reader = SnapshotReader::open(&self.inner.snapshots, &meta.snapshot_id).await?;
        let _ = reader.header().await?;
        let mut current: Option<CollectionName> = None;
        let mut clients = BTreeMap::new();
        let mut gc_floor = 0;
        let mut session_floor = 0;
        while let Some(part) = reader.next().await? {
            match part {
                SnapshotPart::Header { .. } => {
                    return Err(StoreError::InvalidSnapshot("a second header".to_owned()));
                }
                SnapshotPart::Collection(name) => {
                    let name = CollectionName::new(&name)
                        .map_err(|e| StoreError::InvalidSnapshot(e.to_string()))?;
                    engine.create_collection(&name).await?;
                    current = Some(name);
                }
                SnapshotPart::Entries(entries) => {
                    let Some(collection) = &current else {
                        return Err(StoreError::InvalidSnapshot(
                            "entries before any collection".to_owned(),
                        ));
                    };
                    let mut batch = WriteBatch::with_capacity(entries.len());
                    for (key, value) in entries {
                        batch.put(collection, key, value);
                    }
                    backend.write(batch, Durability::Buffered).await?;
                }
                SnapshotPart::Clients(records) => {
                    let mut batch = WriteBatch::new();
                    for record in records {
                        let bytes = frame::encode(Kind::Client, &record)
                            .map_err(|e| StoreError::record("client", e))?;
                        batch.put(&self.inner.sm, client_key(record.client), bytes);
                        clients.insert(record.client, record);
                    }
                    backend.write(batch, Durability::Buffered).await?;
                }
                SnapshotPart::SessionFloor(f) => session_floor = f,
                SnapshotPart::End { gc_floor: f, .. } => gc_floor = f,
            }
        }
        let applied: Option<LogId<NodeId>> = meta.last_log_id.map(LogId::from);
        let version = applied.as_ref().map_or(0, |l| l.index);
        let mut state = self.inner.state.lock().await;
        state.applied = applied;
        state.membership = meta.membership.clone().into();
        state.clients = clients;
        state.session_floor = session_floor;
        let previous = state.current.replace(meta.clone());
        let mut last = WriteBatch::new();
        last.put(
            &self.inner.sm,
            SESSION_FLOOR.to_vec(),
            frame::encode(Kind::SessionFloor, &session_floor)
                .map_err(|e| StoreError::record("session floor", e))?,
        );
        last.put(
            &self.inner.sm,
            APPLIED.to_vec(),
            Self::applied_value(&state)?,
        );
        last.put(
            &self.inner.sm,
            CURRENT_SNAPSHOT.to_vec(),
            frame::encode(Kind::SnapshotMeta, meta)
                .map_err(|e| StoreError::record("snapshot meta", e))?,
        );
        last.delete(&self.inner.sm, INSTALLING.to_vec());
        backend.write(last, Durability::Synced).await?;
        engine.reset_replicated(version, gc_floor).await?;
        drop(state);
        if let Some(previous) = previous
            && previous.snapshot_id != meta.snapshot_id
        {
            self.remove_snapshot_file(&previous.snapshot_id).await;
        }
        Ok(())
    }

    async fn remove_snapshot_file(&self, snapshot_id: &str) {
        self.inner.snapshots.remove(snapshot_id).await;
    }

    async fn open_snapshot(
        &self,
        meta: &SnapshotMetaRecord,
    ) -> Result<Snapshot<TypeConfig>, StoreError> {
        let data = self.inner.snapshots.open(&meta.snapshot_id).await?;
        Ok(Snapshot {
            meta: meta.clone().into(),
            snapshot: Box::new(data),
        })
    }

    async fn build(&self) -> Result<Snapshot<TypeConfig>, StoreError> {
        let engine = &self.inner.engine;
        // Capture a consistent point under the state lock: applies wait only for this.
        let (meta, clients, collections, hold, shared) = loop {
            let state = self.inner.state.lock().await;
            // A failed apply may have left the state ahead of the data.
            self.usable()?;
            // The gate, shared from the capture to the end of the scan, keeps installs and
            // collection drops out: the scan reads exactly the captured collections, at the
            // captured version, in the store the capture saw. Only tried under the state lock:
            // waiting for it there would deadlock with the apply of a collection drop, which
            // holds the state lock while it waits for the gate exclusively.
            let Ok(shared) = self.inner.gate.try_read() else {
                drop(state);
                // An install (or a drop) holds the gate: capture again once it is done.
                drop(self.inner.gate.read().await);
                continue;
            };
            let version = state.applied.as_ref().map_or(0, |l| l.index);
            let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match &state.applied {
                Some(l) => format!(
                    "{}-{}-{}-{}",
                    l.leader_id.term, l.leader_id.node_id, l.index, seq
                ),
                None => format!("none-{seq}"),
            };
            let meta = SnapshotMetaRecord {
                last_log_id: state.applied.as_ref().map(LogIdRecord::from),
                membership: StoredMembershipRecord::from(&state.membership),
                snapshot_id,
            };
            // Holding a reader at `version - window` keeps garbage collection from removing
            // any version a replica that installs this snapshot could need to validate.
            let hold_at = version
                .saturating_sub(REPLICA_VALIDATION_WINDOW)
                .max(engine.gc_floor());
            let hold = engine.begin_read_at(hold_at)?;
            let clients: Vec<ClientRecord> = state.clients.values().cloned().collect();
            let floor = state.session_floor;
            break (
                meta,
                (clients, floor),
                engine.collections(),
                (hold, version),
                shared,
            );
        };
        let (_hold, version) = hold;
        let backend = engine.backend();
        let mut writer = SnapshotWriter::create(&self.inner.snapshots, &meta.snapshot_id).await?;
        writer
            .part(&SnapshotPart::Header { meta: meta.clone() })
            .await?;
        let mut total = 0u64;
        for collection in collections {
            writer
                .part(&SnapshotPart::Collection(collection.as_str().to_owned()))
                .await?;
            let mut chunk = Vec::new();
            let mut bytes = 0usize;
            let mut request = Some(ScanRequest::forward(KeyRange::all(), 1024));
            while let Some(req) = request.take() {
                let page = match backend.scan(&collection, &req).await {
                    Ok(page) => page,
                    // No drop or install since the capture (the gate): a real failure.
                    Err(e) => return Err(e.into()),
                };
                request = req.next_page(&page);
                for (key, value) in page.entries {
                    let Some((_, v)) = zcore_engine::mvcc::keys::split_versioned(&key) else {
                        continue;
                    };
                    if v > version {
                        continue;
                    }
                    bytes += key.len() + value.len();
                    chunk.push((key, value));
                    if bytes >= CHUNK_BYTES {
                        total += chunk.len() as u64;
                        writer
                            .part(&SnapshotPart::Entries(std::mem::take(&mut chunk)))
                            .await?;
                        bytes = 0;
                    }
                }
            }
            if !chunk.is_empty() {
                total += chunk.len() as u64;
                writer.part(&SnapshotPart::Entries(chunk)).await?;
            }
        }
        let (clients, session_floor) = clients;
        writer.part(&SnapshotPart::Clients(clients)).await?;
        writer
            .part(&SnapshotPart::SessionFloor(session_floor))
            .await?;
        // Read after the scan: the floor is raised before garbage collection deletes anything,
        // so versions at or above it were all seen.
        let gc_floor = engine.gc_floor();
        writer
            .part(&SnapshotPart::End {
                entries: total,
                gc_floor,
            })
            .await?;
        writer.finish().await?;
        // Released before the state lock is taken again (the deadlock above).
        drop(shared);
        let record = frame::encode(Kind::SnapshotMeta, &meta)
            .map_err(|e| StoreError::record("snapshot meta", e))?;
        // Under the state lock: whether this snapshot becomes the current one, and its data
        // opened before anyone can remove it (only a replaced current snapshot is removed, by
        // the build or install that replaced it, after that replacement under this lock).
        let (snapshot, stale) = {
            let mut state = self.inner.state.lock().await;
            // Not newer only if a snapshot from a leader was installed after the scan (it is
            // past the applied index captured): that one stays current, this one is dropped.
            let newer = match (&state.current, &meta.last_log_id) {
                (Some(cur), Some(new)) => cur.last_log_id.is_none_or(|c| c.index <= new.index),
                (Some(cur), None) => cur.last_log_id.is_none(),
                (None, _) => true,
            };
            if newer {
                let mut batch = WriteBatch::new();
                batch.put(&self.inner.sm, CURRENT_SNAPSHOT.to_vec(), record);
                backend.write(batch, Durability::Synced).await?;
                let previous = state.current.replace(meta.clone());
                let snapshot = self.open_snapshot(&meta).await?;
                (
                    snapshot,
                    previous.filter(|p| p.snapshot_id != meta.snapshot_id),
                )
            } else {
                let snapshot = self.open_snapshot(&meta).await?;
                (snapshot, Some(meta.clone()))
            }
        };
        // The open data stays readable (an open file, or a copy of the bytes in memory).
        if let Some(stale) = stale {
            self.remove_snapshot_file(&stale.snapshot_id).await;
        }
        Ok(snapshot)
    }
}

/// The transactions of one entry accepted so far: their writes, merged in order (a later
/// write to a key replaces an earlier one, as if they committed one after the other).
#[derive(Debug, Default)]
struct Pending {
    writes: BTreeMap<(CollectionName, Vec<u8>), Option<Vec<u8>>>,
    read_version: u64,
}

impl Pending {
    /// The conflict `txn` has with an accepted transaction of the same entry, if any. Those
    /// commit at `index`, after any read version, so touching what they write conflicts as a
    /// stored version would: a key it read (serializable, point or inside a scanned range) or
    /// a key it writes (snapshot isolation).
    fn conflict(&self, txn: &ReplicatedTxn, index: u64) -> Option<TxnError> {
        if self.writes.is_empty() {
            return None;
        }
        let hit = |collection: &CollectionName, key: &[u8]| TxnError::Conflict {
            collection: collection.clone(),
            key: KeyPreview::of(key),
            read_version: txn.read_version,
            conflicting_version: index,
        };
        match txn.isolation {
            Isolation::Serializable => {
                for read in &txn.reads {
                    match read {
                        ReplicatedRead::Point { collection, key } => {
                            if self.writes.contains_key(&(collection.clone(), key.clone())) {
                                return Some(hit(collection, key));
                            }
                        }
                        ReplicatedRead::Range {
                            collection,
                            start,
                            end,
                        } => {
                            let from = match start {
                                Bound::Included(k) | Bound::Excluded(k) => k.clone(),
                                Bound::Unbounded => Vec::new(),
                            };
                            let found = self
                                .writes
                                .range((collection.clone(), from)..)
                                .map(|((c, k), _)| (c, k))
                                .take_while(|(c, _)| *c == collection)
                                .filter(|(_, k)| !matches!(start, Bound::Excluded(s) if *k == s))
                                .take_while(|(_, k)| match end {
                                    Bound::Included(e) => *k <= e,
                                    Bound::Excluded(e) => *k < e,
                                    Bound::Unbounded => true,
                                })
                                .map(|(_, k)| k)
                                .next();
                            if let Some(key) = found {
                                return Some(hit(collection, key));
                            }
                        }
                    }
                }
            }
            Isolation::Snapshot => {
                for w in &txn.writes {
                    if self
                        .writes
                        .contains_key(&(w.collection.clone(), w.key.clone()))
                    {
                        return Some(hit(&w.collection, &w.key));
                    }
                }
            }
        }
        None
    }

    fn add(&mut self, txn: ReplicatedTxn) {
        self.read_version = self.read_version.max(txn.read_version);
        for w in txn.writes {
            self.writes.insert((w.collection, w.key), w.value);
        }
    }

    /// One transaction writing everything accepted (ascending by collection and key, one
    /// write per key), or `None` if nothing was.
    fn into_txn(self) -> Option<ReplicatedTxn> {
        if self.writes.is_empty() {
            return None;
        }
        Some(ReplicatedTxn {
            read_version: self.read_version,
            isolation: Isolation::Snapshot,
            reads: Vec::new(),
            writes: self
                .writes
                .into_iter()
                .map(|((collection, key), value)| ReplicatedWrite {
                    collection,
                    key,
                    value,
                })
                .collect(),
        })
    }
}

/// Keys and values a replica would refuse to store: refused deterministically instead.
fn check_limits(txn: &ReplicatedTxn) -> Result<(), String> {
    for w in &txn.writes {
        if w.key.is_empty() || w.key.len() > MAX_USER_KEY_LEN {
            return Err(format!(
                "key of {} bytes in collection `{}`: keys are 1..={MAX_USER_KEY_LEN} bytes",
                w.key.len(),
                w.collection
            ));
        }
        if let Some(v) = &w.value
            && v.len() as u64 > MAX_USER_VALUE_LEN
        {
            return Err(format!(
                "value of {} bytes in collection `{}` exceeds {MAX_USER_VALUE_LEN}",
                v.len(),
                w.collection
            ));
        }
    }
    Ok(())
}

/// Validation failures every replica reaches alike become outcomes; anything else (I/O) is a
/// storage error that stops the node.
fn deterministic_failure(e: TxnError) -> Result<Outcome, StoreError> {
    match e {
        TxnError::Conflict { .. } => Ok(Outcome::Conflict {
            message: e.to_string(),
        }),
        TxnError::VersionNotRetained { .. }
        | TxnError::CollectionNotFound { .. }
        | TxnError::InvalidKey { .. }
        | TxnError::ValueTooLarge { .. } => Ok(Outcome::Rejected {
            message: e.to_string(),
        }),
        other => Err(StoreError::Engine(other)),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> RaftResult<Snapshot<TypeConfig>> {
        self.sm
            .build()
            .await
            .map_err(|e| sm_err(e, ErrorVerb::Write))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> RaftResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let state = self.inner.state.lock().await;
        self.usable().map_err(|e| sm_err(e, ErrorVerb::Read))?;
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> RaftResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.inner.state.lock().await;
        self.usable()
            .map_err(|e| e.into_raft(ErrorSubject::StateMachine, ErrorVerb::Write))?;
        let mut responses = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            match self.apply_one(&mut state, entry).await {
                Ok(response) => responses.push(response),
                Err(e) => {
                    // Marked while the state lock is still held: no one sees the state
                    // this apply left half-advanced.
                    self.fail(&e);
                    return Err(e.into_raft(ErrorSubject::Apply(log_id), ErrorVerb::Write));
                }
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { sm: self.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> RaftResult<Box<SnapshotData>> {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        self.inner
            .snapshots
            .incoming(seq)
            .await
            .map(Box::new)
            .map_err(|e| sm_err(e, ErrorVerb::Write))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        mut snapshot: Box<SnapshotData>,
    ) -> RaftResult<()> {
        let record = SnapshotMetaRecord::from(meta);
        let install = async {
            self.usable()?;
            let storage = &self.inner.snapshots;
            snapshot::copy_into(storage, &record.snapshot_id, &mut snapshot).await?;
            let header = snapshot::verify(storage, &record.snapshot_id).await?;
            if header.last_log_id != record.last_log_id || header.membership != record.membership {
                return Err(StoreError::InvalidSnapshot(format!(
                    "file header {:?} does not match the snapshot meta {:?}",
                    header.last_log_id, record.last_log_id
                )));
            }
            let mut marker = WriteBatch::new();
            marker.put(
                &self.inner.sm,
                INSTALLING.to_vec(),
                frame::encode(Kind::SnapshotMeta, &record)
                    .map_err(|e| StoreError::record("snapshot meta", e))?,
            );
            self.inner
                .engine
                .backend()
                .write(marker, Durability::Synced)
                .await?;
            self.install_file(&record).await?;
            storage.count_installed();
            Ok(())
        };
        install.await.map_err(|e| {
            if !matches!(e, StoreError::Failed(_)) {
                self.fail(&e);
            }
            e.into_raft(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            )
        })
    }

    async fn get_current_snapshot(&mut self) -> RaftResult<Option<Snapshot<TypeConfig>>> {
        self.usable().map_err(|e| sm_err(e, ErrorVerb::Read))?;
        let current = self.inner.state.lock().await.current.clone();
        match current {
            None => Ok(None),
            Some(meta) => self
                .open_snapshot(&meta)
                .await
                .map(Some)
                .map_err(|e| sm_err(e, ErrorVerb::Read)),
        }
    }
}
