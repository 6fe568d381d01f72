//! [`ClusterNode`]: one replica — Raft, the engine, the RPC server — and the replicated store
//! API on top.
//!
//! - **Writes** run as ordinary engine transactions on this node ([`ClusterNode::begin_write`]
//!   first waits for a linearizable read point), and [`ClusterNode::commit`] sends them
//!   through the log: proposed here when this node leads, else forwarded to the leader. The
//!   state machine validates each transaction deterministically on every replica and commits
//!   it at version = its log index. Every commit carries a request id from a client session;
//!   retries after timeouts or leader changes reuse it, so a transaction is applied at most
//!   once.
//! - **Reads** are linearizable by default (ReadIndex through `ensure_linearizable()` on the
//!   leader; a follower asks the leader for the read index and waits until it applied it);
//!   [`ReadConsistency::Stale`] reads this node's applied state without asking anyone. A
//!   leader that openraft 0.9 resumed after a restart (its committed vote was for itself, so
//!   it leads again without an election or a new blank entry) only knows a commit index
//!   restored lazily, which can be older than entries committed and acknowledged before the
//!   restart; its read index is therefore at least its last log index at start (see
//!   `Shared::read_index`).
//! - **Membership**: initialize, add learner, promote, remove — on the leader, forwarded by
//!   followers.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{ChangeMembers, ServerState, Vote};
use rand::RngCore;
use tokio::sync::{OwnedRwLockReadGuard, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use zcore_engine::mvcc::replica::ReplicatedTxn;
use zcore_engine::mvcc::replica::ReplicatedWrite;
use zcore_engine::{
    CollectionName, EngineOptions, Isolation, ReadTransaction, StorageBackend, TxnError, Version,
    WriteOptions, WriteTransaction,
};

use crate::config::{ConfigError, NodeConfig};
use crate::error::StoreError;
use crate::log_store::LogStore;
use crate::network::NetworkFactory;
use crate::rpc::{self, CallError, ClientReply, ClientRequest, WireError};
use crate::runtime::RaftRng;
use crate::server;
use crate::snapshot::SnapshotStorage;
use crate::state_machine::{SESSION_EXPIRY_ENTRIES, StateMachineStore};
use crate::status::ClusterStatus;
use crate::transport::{Timeouts, Transport};
use crate::types::{Command, Node, NodeId, Outcome, Raft, Request, RequestId, Response};

/// Errors of the replicated store API.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The transaction conflicted with a later commit; nothing was written. Retry it.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// The request was refused (unknown collection, read version too old, invalid input);
    /// nothing was written.
    #[error("refused: {0}")]
    Rejected(String),
    /// This node is not the leader and the request cannot be forwarded (admin calls made
    /// directly on a follower return this with the leader's address).
    #[error("{0}")]
    NotLeader(WireError),
    /// An invalid request (unknown node id, wrong membership change, already initialized).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No definitive answer within the request timeout: the request may or may not have been
    /// applied (it is applied at most once).
    #[error(
        "no definitive answer within {timeout:?} (the request may or may not have been applied): {last}"
    )]
    OutcomeUnknown {
        /// The request timeout.
        timeout: Duration,
        /// The last error seen.
        last: String,
    },
    /// No leader, or the leader could not be reached, within the request timeout; nothing
    /// was applied.
    #[error("unavailable within {timeout:?}: {last}")]
    Unavailable {
        /// The request timeout.
        timeout: Duration,
        /// The last error seen.
        last: String,
    },
    /// A local engine error (reads, transaction building).
    #[error(transparent)]
    Txn(#[from] TxnError),
    /// Opening or running the stores failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Raft stopped or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// Binding the listen address or another I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A remote call failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Sees every write acknowledged before the read began (ReadIndex through the leader).
    #[default]
    Linearizable,
    /// This node's applied state, possibly behind the leader; no network round trip.
    Stale,
}

/// What the RPC server and the API share.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) addr: String,
    pub(crate) raft: Raft,
    pub(crate) sm: StateMachineStore,
    pub(crate) log: LogStore,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) timeouts: Timeouts,
    /// Client sessions of this node, reused one request at a time.
    sessions: Mutex<Vec<Session>>,
    /// Idle connections to other nodes for forwarded client requests.
    pool: rpc::ConnPool,
    /// The leader's proposal batcher.
    batcher: mpsc::Sender<Proposal>,
    /// The vote and the last log index this node found on disk at start (see
    /// [`read_index`](Self::read_index)).
    at_start: (Option<Vote<NodeId>>, u64),
    /// The RPC server's connection tasks.
    pub(crate) connections: server::Connections,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Session {
    client: u64,
    next: u64,
    /// Applied index when the session was opened.
    opened: u64,
    /// Log index of the last response (at first: `opened`).
    last_index: u64,
}

/// One replica of a zcore-storage cluster. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterNode {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// A client request waiting for the leader's batcher, and where its answer goes.
type Proposal = (Request, oneshot::Sender<Result<Response, WireError>>);

/// Most requests in one batch entry.
const MAX_BATCH: usize = 1024;
/// Batches stop growing past this many bytes of keys and values.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Batch entries proposed and not yet applied at once. openraft appends (and syncs) every
/// proposed entry on its own, one after the other; requests that arrive while this many
/// entries are in flight wait and go together into the next one.
const MAX_IN_FLIGHT: usize = 2;

fn request_bytes(request: &Request) -> usize {
    match &request.command {
        Command::Txn(txn) => txn
            .writes
            .iter()
            .map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len) + 16)
            .sum(),
        _ => 64,
    }
}

/// The leader's proposal batcher (group commit for the Raft log).
///
/// openraft 0.9 handles every `client_write` as its own log entry and appends each entry
/// with its own durable write inside its core loop, so concurrent commits proposed one by
/// one are bounded by one synced log write each on the leader. The batcher instead puts the
/// transactions that arrive while [`MAX_IN_FLIGHT`] entries are in flight into one
/// [`Command::Batch`] entry: one log append, one replication round, one state-machine write
/// for all of them, each with its own request id and outcome.
async fn run_batcher(raft: Raft, mut rx: mpsc::Receiver<Proposal>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let mut bytes = request_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += request_bytes(&p.0);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            propose_batch(&raft, batch).await;
        });
    }
}

async fn propose_batch(raft: &Raft, batch: Vec<Proposal>) {
    let (txns, others): (Vec<Proposal>, Vec<Proposal>) = batch
        .into_iter()
        .partition(|(r, _)| matches!(r.command, Command::Txn(_)));
    let mut groups: Vec<Vec<Proposal>> = others.into_iter().map(|p| vec![p]).collect();
    if !txns.is_empty() {
        groups.push(txns);
    }
    for group in groups {
        if group.len() == 1 {
            for (request, tx) in group {
                let result = raft
                    .client_write(request)
                    .await
                    .map(|r| r.data)
                    .map_err(write_error);
                let _ = tx.send(result);
            }
            continue;
        }
        let (requests, senders): (Vec<Request>, Vec<_>) = group.into_iter().unzip();
        let n = requests.len();
        let entry = Request {
            id: None,
            command: Command::Batch(requests),
        };
        match raft.client_write(entry).await {
            Ok(r) => match r.data.outcome {
                Outcome::Batch(responses) if responses.len() == n => {
                    for (tx, response) in senders.into_iter().zip(responses) {
                        let _ = tx.send(Ok(response));
                    }
                }
                other => {
                    let e = WireError::Failed(format!("unexpected outcome of a batch: {other:?}"));
                    for tx in senders {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            },
            Err(e) => {
                let e = write_error(e);
                for tx in senders {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A write transaction on a cluster node: the engine's [`WriteTransaction`] (reads see this
/// node's state at a linearizable point; writes are buffered), committed with
/// [`ClusterNode::commit`].
#[derive(Debug)]
pub struct ClusterWriteTransaction {
    txn: WriteTransaction,
    _gate: OwnedRwLockReadGuard<()>,
}

impl Deref for ClusterWriteTransaction {
    type Target = WriteTransaction;
    fn deref(&self) -> &WriteTransaction {
        &self.txn
    }
}

impl DerefMut for ClusterWriteTransaction {
    fn deref_mut(&mut self) -> &mut WriteTransaction {
        &mut self.txn
    }
}

/// A read transaction on a cluster node (holds off snapshot installs while alive).
#[derive(Debug)]
pub struct ClusterReadTransaction {
    txn: ReadTransaction,
    _gate: OwnedRwLockReadGuard<()>,
}

impl Deref for ClusterReadTransaction {
    type Target = ReadTransaction;
    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

fn leader_of(e: &openraft::error::ForwardToLeader<NodeId, Node>) -> WireError {
    WireError::NotLeader {
        leader: e
            .leader_id
            .zip(e.leader_node.as_ref().map(|n| n.addr.clone())),
    }
}

pub(crate) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> WireError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => leader_of(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            WireError::Invalid(c.to_string())
        }
        RaftError::Fatal(f) => WireError::Failed(f.to_string()),
    }
}

impl Shared {
    /// The leader this node knows of, with its address.
    pub(crate) fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    pub(crate) fn not_leader(&self) -> WireError {
        WireError::NotLeader {
            leader: self.leader().filter(|(id, _)| *id != self.id),
        }
    }

    pub(crate) async fn status(&self) -> ClusterStatus {
        let committed = self.log.committed_index().await.ok().flatten();
        let m = self.raft.metrics().borrow().clone();
        ClusterStatus::from_metrics(&m, committed)
    }

    /// Serves a client request on this node (the RPC server and the local API both use it).
    pub(crate) async fn handle(&self, request: ClientRequest) -> Result<ClientReply, WireError> {
        match request {
            ClientRequest::Propose(request) => {
                self.submit(request).await.map(ClientReply::Response)
            }
            ClientRequest::ReadIndex => self.read_index().await.map(ClientReply::ReadIndex),
            ClientRequest::Put {
                collection,
                key,
                value,
            } => {
                let collection = CollectionName::new(&collection)
                    .map_err(|e| WireError::Invalid(e.to_string()))?;
                // A blind write: serializable without reads never conflicts; the read
                // version only has to be recent.
                let txn = ReplicatedTxn {
                    read_version: self.sm.engine().latest_version(),
                    isolation: Isolation::Serializable,
                    reads: Vec::new(),
                    writes: vec![ReplicatedWrite {
                        collection,
                        key,
                        value,
                    }],
                };
                self.propose(Command::Txn(txn))
                    .await
                    .map(ClientReply::Response)
                    .map_err(wire_of)
            }
            ClientRequest::CreateCollection { name } => self
                .propose(Command::CreateCollection(name))
                .await
                .map(ClientReply::Response)
                .map_err(wire_of),
            ClientRequest::Get {
                collection,
                key,
                stale,
            } => {
                let collection = CollectionName::new(&collection)
                    .map_err(|e| WireError::Invalid(e.to_string()))?;
                if !stale {
                    self.read_barrier().await.map_err(wire_of)?;
                }
                let _gate = self.sm.read_gate().read().await;
                let read = self.sm.engine().begin_read();
                let value = read.get(&collection, &key).await.map_err(|e| match e {
                    TxnError::CollectionNotFound { .. } => WireError::NotFound(e.to_string()),
                    TxnError::InvalidKey { .. } => WireError::Invalid(e.to_string()),
                    other => WireError::Failed(other.to_string()),
                })?;
                Ok(ClientReply::Value {
                    version: read.version(),
                    value,
                })
            }
            ClientRequest::Initialize { members } => {
                if members.is_empty() {
                    return Err(WireError::Invalid("no members given".to_owned()));
                }
                let nodes: BTreeMap<NodeId, Node> = members
                    .into_iter()
                    .map(|(id, addr)| (id, Node { addr }))
                    .collect();
                match self.raft.initialize(nodes).await {
                    Ok(()) => Ok(ClientReply::Done),
                    Err(RaftError::APIError(e @ InitializeError::NotAllowed(_))) => Err(
                        WireError::Invalid(format!("the cluster is already initialized ({e})")),
                    ),
                    Err(RaftError::APIError(e)) => Err(WireError::Invalid(e.to_string())),
                    Err(e) => Err(WireError::Failed(e.to_string())),
                }
            }
            ClientRequest::AddLearner { id, addr } => {
                if id == 0 {
                    return Err(WireError::Invalid("node id 0 is not allowed".to_owned()));
                }
                if !self.is_leader() {
                    return Err(self.not_leader());
                }
                // Check the address first: an unreachable node, or another node than `id`
                // there (a wrong configuration), is refused before the membership changes.
                match rpc::call_client(
                    &*self.transport,
                    &addr,
                    ClientRequest::Status,
                    &self.timeouts,
                    self.timeouts.rpc,
                )
                .await
                {
                    Err(e) => {
                        return Err(WireError::PeerUnreachable(format!(
                            "cannot add node {id}: {e}"
                        )));
                    }
                    Ok(Ok(ClientReply::Status(s))) if s.id != id => {
                        return Err(WireError::Invalid(format!(
                            "the node at {addr} is node {}, not node {id}",
                            s.id
                        )));
                    }
                    Ok(Ok(ClientReply::Status(_))) => {}
                    Ok(other) => {
                        return Err(WireError::PeerUnreachable(format!(
                            "cannot add node {id}: {addr} did not answer a status request \
                             ({other:?})"
                        )));
                    }
                }
                let wait = self.timeouts.request;
                match tokio::time::timeout(
                    wait,
                    self.raft.add_learner(id, Node { addr: addr.clone() }, true),
                )
                .await
                {
                    Ok(result) => {
                        result.map_err(write_error)?;
                        Ok(ClientReply::Done)
                    }
                    // The membership change may be committed already; only the catch-up is
                    // missing (an unreachable or slow learner).
                    Err(_) => Err(WireError::Failed(format!(
                        "node {id} at {addr} did not catch up within {wait:?}; it may have been \
                         added as a learner (remove it with `remove {id}`)"
                    ))),
                }
            }
            ClientRequest::Promote { id } => {
                if !self.is_leader() {
                    return Err(self.not_leader());
                }
                let (voters, known) = self.members();
                if voters.contains(&id) {
                    return Ok(ClientReply::Done);
                }
                if !known.contains(&id) {
                    return Err(WireError::Invalid(format!(
                        "node {id} is not a learner of this cluster (add it with add-learner first)"
                    )));
                }
                let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(write_error)?;
                Ok(ClientReply::Done)
            }
            ClientRequest::Remove { id } => {
                if !self.is_leader() {
                    return Err(self.not_leader());
                }
                let (voters, known) = self.members();
                if !known.contains(&id) {
                    return Err(WireError::Invalid(format!(
                        "node {id} is not a member of this cluster"
                    )));
                }
                if voters.contains(&id) {
                    if voters.len() == 1 {
                        return Err(WireError::Invalid(format!(
                            "node {id} is the only voter; it cannot be removed"
                        )));
                    }
                    let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
                    self.raft
                        .change_membership(change, false)
                        .await
                        .map_err(write_error)?;
                }
                let (_, known) = self.members();
                if known.contains(&id) {
                    let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
                    self.raft
                        .change_membership(change, false)
                        .await
                        .map_err(write_error)?;
                }
                Ok(ClientReply::Done)
            }
            ClientRequest::Status => Ok(ClientReply::Status(Box::new(self.status().await))),
        }
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Proposes `request` through the batcher (on the leader only).
    async fn submit(&self, request: Request) -> Result<Response, WireError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let (tx, rx) = oneshot::channel();
        if self.batcher.send((request, tx)).await.is_err() {
            return Err(WireError::Failed("the node is stopping".to_owned()));
        }
        rx.await
            .unwrap_or_else(|_| Err(WireError::Failed("the node is stopping".to_owned())))
    }

    /// The leader's read index (ReadIndex: leadership confirmed by a quorum).
    ///
    /// openraft's read index is the higher of the commit index and the first entry of the
    /// leader's term. A leader that openraft resumed at start (same vote, no election, no new
    /// blank entry) restored its commit index lazily: entries up to its last log index at
    /// start may have been committed and acknowledged before the restart, above that commit
    /// index. While it leads with the vote it started with, the read index is therefore at
    /// least that last index (all of it is this leader's log, committed in its term by
    /// replication).
    async fn read_index(&self) -> Result<u64, WireError> {
        match self.raft.ensure_linearizable().await {
            Ok(read) => {
                let mut index = read.map_or(0, |l| l.index);
                let (vote, last) = &self.at_start;
                if let Some(vote) = vote
                    && vote.leader_id() == self.raft.metrics().borrow().vote.leader_id()
                {
                    index = index.max(*last);
                }
                Ok(index)
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(leader_of(&f)),
            Err(e) => Err(WireError::Failed(e.to_string())),
        }
    }

    /// A forwarded client request over a pooled connection.
    async fn forward(
        &self,
        addr: &str,
        request: ClientRequest,
        rpc_timeout: Duration,
    ) -> Result<Result<ClientReply, WireError>, CallError> {
        self.pool
            .call(&*self.transport, addr, request, &self.timeouts, rpc_timeout)
            .await
    }

    /// Waits until this node has applied everything committed before the call (ReadIndex).
    pub(crate) async fn read_barrier(&self) -> Result<(), ClusterError> {
        let timeout = self.timeouts.request;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last;
        loop {
            let result = match self.leader() {
                Some((id, _)) if id == self.id => {
                    self.read_index().await.map(ClientReply::ReadIndex)
                }
                Some((_, addr)) => self
                    .forward(
                        &addr,
                        ClientRequest::ReadIndex,
                        self.timeouts
                            .rpc
                            .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
                    )
                    .await
                    .unwrap_or_else(|e| Err(WireError::Failed(e.to_string()))),
                None => Err(WireError::NotLeader { leader: None }),
            };
            match result {
                Ok(ClientReply::ReadIndex(index)) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match self
                        .raft
                        .wait(Some(left))
                        .applied_index_at_least(Some(index), "read index")
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(e) => last = e.to_string(),
                    }
                }
                Ok(_) => last = "unexpected reply to a read-index request".to_owned(),
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ClusterError::Unavailable { timeout, last });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn take_session(&self) -> Session {
        let applied = self.sm.engine().latest_version();
        let mut pool = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(session) = pool.pop() {
            // Retire sessions long before the state machine could expire their record.
            if applied.saturating_sub(session.last_index) < SESSION_EXPIRY_ENTRIES / 2 {
                return session;
            }
        }
        Session {
            client: RaftRng.next_u64(),
            next: 1,
            opened: applied,
            last_index: applied,
        }
    }

    fn return_session(&self, session: Session) {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(session);
    }

    /// Proposes `command` with a fresh request id, retrying with the same id across leader
    /// changes and lost responses until a definitive answer or the request timeout.
    pub(crate) async fn propose(&self, command: Command) -> Result<Response, ClusterError> {
        let mut session = self.take_session();
        let request = Request {
            id: Some(RequestId {
                client: session.client,
                serial: session.next,
                opened: session.opened,
            }),
            command,
        };
        let timeout = self.timeouts.request;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut maybe_sent = false;
        let mut last;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = match self.leader() {
                Some((id, _)) if id == self.id => {
                    maybe_sent = true;
                    match tokio::time::timeout(left, self.submit(request.clone())).await {
                        Ok(r) => r.map(ClientReply::Response),
                        Err(_) => Err(WireError::Failed("timed out".to_owned())),
                    }
                }
                Some((_, addr)) => {
                    match self
                        .forward(
                            &addr,
                            ClientRequest::Propose(request.clone()),
                            left.min(self.timeouts.rpc),
                        )
                        .await
                    {
                        Ok(reply) => {
                            maybe_sent = true;
                            reply
                        }
                        Err(e) => {
                            maybe_sent |= !e.not_sent();
                            Err(WireError::Failed(e.to_string()))
                        }
                    }
                }
                None => Err(WireError::NotLeader { leader: None }),
            };
            match result {
                Ok(ClientReply::Response(response)) => {
                    session.next += 1;
                    session.last_index = response.index;
                    self.return_session(session);
                    return Ok(response);
                }
                Ok(_) => last = "unexpected reply to a proposal".to_owned(),
                // Not applied; the session is dropped so its serials stay gap-free.
                Err(WireError::Invalid(m)) => return Err(ClusterError::Invalid(m)),
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
                // The session's request may still be applied later: never reuse the session.
                return Err(if maybe_sent {
                    ClusterError::OutcomeUnknown { timeout, last }
                } else {
                    ClusterError::Unavailable { timeout, last }
                });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// (voters, every node) of the current membership.
    fn members(&self) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        (
            membership.voter_ids().collect(),
            membership.nodes().map(|(id, _)| *id).collect(),
        )
    }
}

/// Pause between retries while a leader is elected or a leader change settles.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl ClusterNode {
    /// Starts a node from its configuration: opens the backend it names, binds the listen
    /// address with the transport, starts Raft and the RPC server, and bootstraps a new
    /// cluster if the configuration asks for it and the node has never been initialized.
    ///
    /// # Errors
    ///
    /// Configuration, backend, store, bind and Raft errors.
    pub async fn start(
        config: NodeConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        if let Some(path) = config.backend_config().path()
            && let Some(parent) = path.parent()
        {
            std::fs::create_dir_all(parent).map_err(|source| ClusterError::Io {
                what: format!("creating {}", parent.display()),
                source,
            })?;
        }
        let backend = zcore_backends::open_backend(&config.backend_config())
            .map_err(|e| ClusterError::Store(StoreError::Backend(e)))?;
        Self::start_on(config, backend, transport).await
    }

    /// As [`start`](Self::start), on an already open backend.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_on(
        config: NodeConfig,
        backend: Arc<dyn StorageBackend>,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, ClusterError> {
        Self::start_on_with(config, backend, transport, EngineOptions::default()).await
    }

    /// As [`start_on`](Self::start_on), with explicit engine options for the state machine
    /// (the simulator uses it for its negative controls, e.g. conflict detection off).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_on_with(
        config: NodeConfig,
        backend: Arc<dyn StorageBackend>,
        transport: Arc<dyn Transport>,
        engine_options: EngineOptions,
    ) -> Result<Self, ClusterError> {
        let snapshots = SnapshotStorage::Files(config.snapshot_dir());
        Self::start_with_snapshots(config, backend, transport, engine_options, snapshots).await
    }

    /// As [`start_on_with`](Self::start_on_with), keeping snapshots in `snapshots` instead of
    /// the configuration's snapshot directory (the simulator keeps them in memory:
    /// [`SnapshotStorage::Memory`]).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with_snapshots(
        config: NodeConfig,
        backend: Arc<dyn StorageBackend>,
        transport: Arc<dyn Transport>,
        engine_options: EngineOptions,
        snapshots: SnapshotStorage,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let timeouts = config.timeouts.timeouts();
        // What the node reads back of its Raft state (vote, log, applied state) must be
        // durable before it acts on it: after a sync failed (an I/O error stopped the previous
        // process), the write can still sit in the page cache and be read back by a restarted
        // process, and a vote cast or a log entry acknowledged from there would be taken back
        // by a later power loss. Make the store durable first, or fail the start.
        backend.sync().await.map_err(StoreError::from)?;
        let log = LogStore::open(Arc::clone(&backend)).await?;
        let at_start = {
            let mut log = log.clone();
            let vote = log
                .read_vote()
                .await
                .map_err(|e| ClusterError::Raft(e.to_string()))?;
            let last = log
                .get_log_state()
                .await
                .map_err(|e| ClusterError::Raft(e.to_string()))?
                .last_log_id
                .map_or(0, |l| l.index);
            (vote, last)
        };
        let sm = StateMachineStore::open(backend, snapshots, engine_options).await?;
        let listener = transport
            .bind(&config.listen)
            .await
            .map_err(|source| ClusterError::Io {
                what: format!("binding {}", config.listen),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| ClusterError::Io {
            what: "reading the bound address".to_owned(),
            source,
        })?;
        let addr = config.advertise.clone().unwrap_or(bound);
        let network = NetworkFactory::new(Arc::clone(&transport), timeouts);
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network,
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let (batcher, proposals) = mpsc::channel(4 * MAX_BATCH);
        let shared = Arc::new(Shared {
            id: config.node_id,
            addr,
            raft,
            sm,
            log,
            transport,
            timeouts,
            sessions: Mutex::new(Vec::new()),
            pool: rpc::ConnPool::default(),
            batcher,
            at_start,
            connections: server::Connections::default(),
        });
        let batcher = tokio::spawn(run_batcher(shared.raft.clone(), proposals));
        let server = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        let node = Self {
            shared,
            tasks: Arc::new(Mutex::new(vec![server, batcher])),
        };
        let members = config.bootstrap_members()?;
        if !members.is_empty()
            && !node
                .shared
                .raft
                .is_initialized()
                .await
                .map_err(|e| ClusterError::Raft(e.to_string()))?
        {
            node.initialize(members).await?;
        }
        Ok(node)
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The address other nodes and clients reach this node at.
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// The openraft handle (metrics, triggers).
    #[must_use]
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// The engine underneath (read-only use: writes must go through [`commit`](Self::commit)).
    #[must_use]
    pub fn engine(&self) -> &zcore_engine::Engine {
        self.shared.sm.engine()
    }

    /// This node's view of the cluster.
    pub async fn status(&self) -> ClusterStatus {
        self.shared.status().await
    }

    /// Initializes a new cluster with `members` as voters (node id → address). Call on one
    /// node of a fresh cluster.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Invalid`] if already initialized or this node is not among `members`.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), ClusterError> {
        if !members.contains_key(&self.shared.id) {
            return Err(ClusterError::Invalid(format!(
                "the members do not include this node ({})",
                self.shared.id
            )));
        }
        self.admin(ClientRequest::Initialize { members }, false)
            .await
            .map(|_| ())
    }

    /// Adds a learner (forwarded to the leader): first checks that `addr` answers as node
    /// `id`, then changes the membership and waits until the learner's replication is within
    /// openraft's `replication_lag_threshold` of the log (or the request timeout).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if `addr` cannot be reached (membership unchanged),
    /// [`ClusterError::Invalid`] if another node than `id` answers there.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: impl Into<String>,
    ) -> Result<(), ClusterError> {
        self.admin(
            ClientRequest::AddLearner {
                id,
                addr: addr.into(),
            },
            true,
        )
        .await
        .map(|_| ())
    }

    /// Makes learner `id` a voter (forwarded to the leader).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Invalid`] for a node that is not a learner.
    pub async fn promote(&self, id: NodeId) -> Result<(), ClusterError> {
        self.admin(ClientRequest::Promote { id }, true)
            .await
            .map(|_| ())
    }

    /// Removes node `id` from the cluster (forwarded to the leader).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Invalid`] for an unknown node or the last voter.
    pub async fn remove(&self, id: NodeId) -> Result<(), ClusterError> {
        self.admin(ClientRequest::Remove { id }, true)
            .await
            .map(|_| ())
    }

    /// Runs an admin request here, or on the leader if `forward`.
    async fn admin(
        &self,
        request: ClientRequest,
        forward: bool,
    ) -> Result<ClientReply, ClusterError> {
        let timeout = self.shared.timeouts.request;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last;
        loop {
            let target = if forward { self.shared.leader() } else { None };
            let result = match target {
                Some((id, addr)) if id != self.shared.id => {
                    match rpc::call_client(
                        &*self.shared.transport,
                        &addr,
                        request.clone(),
                        &self.shared.timeouts,
                        deadline.saturating_duration_since(tokio::time::Instant::now()),
                    )
                    .await
                    {
                        Ok(reply) => reply,
                        Err(e) => Err(WireError::Failed(e.to_string())),
                    }
                }
                None if forward => Err(WireError::NotLeader { leader: None }),
                _ => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match tokio::time::timeout(left, self.shared.handle(request.clone())).await {
                        Ok(r) => r,
                        Err(_) => Err(WireError::Failed("timed out".to_owned())),
                    }
                }
            };
            match result {
                Ok(reply) => return Ok(reply),
                Err(WireError::Invalid(m)) => return Err(ClusterError::Invalid(m)),
                Err(WireError::PeerUnreachable(last)) => {
                    return Err(ClusterError::Unavailable { timeout, last });
                }
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ClusterError::Unavailable { timeout, last });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Waits until this node has applied everything committed before the call (ReadIndex).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] when no leader confirms within the request timeout.
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        self.shared.read_barrier().await
    }

    /// A read transaction.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] for a linearizable read without a reachable leader.
    pub async fn begin_read(
        &self,
        consistency: ReadConsistency,
    ) -> Result<ClusterReadTransaction, ClusterError> {
        if consistency == ReadConsistency::Linearizable {
            self.read_barrier().await?;
        }
        let gate = Arc::clone(self.shared.sm.read_gate()).read_owned().await;
        Ok(ClusterReadTransaction {
            txn: self.engine().begin_read(),
            _gate: gate,
        })
    }

    /// A write transaction (serializable) whose reads see every write acknowledged before.
    ///
    /// # Errors
    ///
    /// As [`read_barrier`](Self::read_barrier).
    pub async fn begin_write(&self) -> Result<ClusterWriteTransaction, ClusterError> {
        self.begin_write_with(WriteOptions::default()).await
    }

    /// A write transaction with explicit options. The durability option is ignored: a commit
    /// is durable once a quorum has the log entry.
    ///
    /// # Errors
    ///
    /// As [`read_barrier`](Self::read_barrier).
    pub async fn begin_write_with(
        &self,
        options: WriteOptions,
    ) -> Result<ClusterWriteTransaction, ClusterError> {
        self.begin_write_from(options, ReadConsistency::Linearizable)
            .await
    }

    /// A write transaction whose reads come from this node's state as fresh as `consistency`
    /// asks. With [`ReadConsistency::Stale`] no round trip is made first; the commit is still
    /// serializable (validation at apply time rejects it if what it read changed), only more
    /// likely to conflict. Blind writes lose nothing by it.
    ///
    /// # Errors
    ///
    /// As [`read_barrier`](Self::read_barrier) for linearizable transactions.
    pub async fn begin_write_from(
        &self,
        options: WriteOptions,
        consistency: ReadConsistency,
    ) -> Result<ClusterWriteTransaction, ClusterError> {
        if consistency == ReadConsistency::Linearizable {
            self.read_barrier().await?;
        }
        let gate = Arc::clone(self.shared.sm.read_gate()).read_owned().await;
        Ok(ClusterWriteTransaction {
            txn: self.engine().begin_write_with(options),
            _gate: gate,
        })
    }

    /// Commits a transaction through the log; returns its commit version (= log index).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Conflict`] (retry the transaction), [`ClusterError::Rejected`],
    /// [`ClusterError::OutcomeUnknown`], [`ClusterError::Unavailable`].
    pub async fn commit(&self, txn: ClusterWriteTransaction) -> Result<Version, ClusterError> {
        let ClusterWriteTransaction { txn, _gate } = txn;
        let replicated = txn.into_replicated();
        // Never wait for the log while holding the gate: an install or drop would wait for us.
        drop(_gate);
        if replicated.is_read_only() {
            return Ok(replicated.read_version);
        }
        self.commit_replicated(replicated).await
    }

    /// Commits an already extracted transaction (e.g. one built on another node).
    ///
    /// # Errors
    ///
    /// As [`commit`](Self::commit).
    pub async fn commit_replicated(&self, txn: ReplicatedTxn) -> Result<Version, ClusterError> {
        // Fail fast on a conflict this node can already see; the state machine decides.
        let next = self.engine().latest_version() + 1;
        if let Err(e) = self.engine().validate_replicated(&txn, next).await {
            return Err(match e {
                TxnError::Conflict { .. } => ClusterError::Conflict(e.to_string()),
                TxnError::CollectionNotFound { .. } | TxnError::VersionNotRetained { .. } => {
                    ClusterError::Rejected(e.to_string())
                }
                other => ClusterError::Txn(other),
            });
        }
        let response = self.propose(Command::Txn(txn)).await?;
        outcome(response)
    }

    /// Creates a user collection on every replica (idempotent); returns the log index.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Rejected`] for an invalid name; as [`commit`](Self::commit).
    pub async fn create_collection(&self, name: &str) -> Result<Version, ClusterError> {
        outcome(
            self.propose(Command::CreateCollection(name.to_owned()))
                .await?,
        )
    }

    /// Drops a user collection on every replica.
    ///
    /// # Errors
    ///
    /// As [`create_collection`](Self::create_collection).
    pub async fn drop_collection(&self, name: &str) -> Result<Version, ClusterError> {
        outcome(
            self.propose(Command::DropCollection(name.to_owned()))
                .await?,
        )
    }

    async fn propose(&self, command: Command) -> Result<Response, ClusterError> {
        self.shared.propose(command).await
    }

    /// Stops Raft and the RPC server and closes the engine (and its backend).
    ///
    /// # Errors
    ///
    /// Raft or backend errors while stopping.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        self.shared.connections.abort_all();
        self.shared
            .raft
            .shutdown()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        self.engine().close().await?;
        Ok(())
    }
}

/// A client-facing error as it travels back over the wire.
fn wire_of(e: ClusterError) -> WireError {
    match e {
        ClusterError::Invalid(m) | ClusterError::Rejected(m) => WireError::Invalid(m),
        other => WireError::Failed(other.to_string()),
    }
}

fn outcome(response: Response) -> Result<Version, ClusterError> {
    match response.outcome {
        Outcome::Committed { version } => Ok(version),
        Outcome::Conflict { message } => Err(ClusterError::Conflict(message)),
        Outcome::Rejected { message } => Err(ClusterError::Rejected(message)),
        Outcome::Batch(_) => Err(ClusterError::Raft(
            "a batch outcome for a single request".to_owned(),
        )),
        Outcome::Stale => Err(ClusterError::OutcomeUnknown {
            timeout: Duration::ZERO,
            last: "a newer request of the same session was applied first, or the session expired"
                .to_owned(),
        }),
    }
}
