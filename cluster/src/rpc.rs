//! RPC messages and the client side of the RPC layer: one framed request, one framed response
//! per round trip, every step under a timeout.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::frame::{self, FrameError, Kind};
use crate::status::ClusterStatus;
use crate::transport::{Connection, Timeouts, Transport};
use crate::types::{NodeId, Request, Response, TypeConfig};

/// A request from a node or a client to a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// Raft: replicate entries / heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft: request a vote.
    Vote(VoteRequest<NodeId>),
    /// Raft: one snapshot chunk.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Client and admin requests.
    Client(ClientRequest),
}

/// Client and admin requests. Those that need the leader are answered with
/// [`WireError::NotLeader`] elsewhere.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Propose a request through the log (leader only).
    Propose(Request),
    /// Confirm leadership with a quorum and return the index a linearizable read must wait
    /// for (leader only).
    ReadIndex,
    /// Initialize a new cluster with these voters.
    Initialize {
        /// Node id → address.
        members: BTreeMap<NodeId, String>,
    },
    /// Add a learner (leader only); waits until it caught up.
    AddLearner {
        /// Its id.
        id: NodeId,
        /// Its address.
        addr: String,
    },
    /// Make a learner a voter (leader only).
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove a node from the cluster (leader only).
    Remove {
        /// The node.
        id: NodeId,
    },
    /// This node's view of the cluster.
    Status,
    /// Write (`Some`) or delete (`None`) one key as its own transaction, through the leader
    /// (any node forwards it). Answered with [`ClientReply::Response`].
    Put {
        /// The collection.
        collection: String,
        /// The key.
        key: Vec<u8>,
        /// The value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
    /// Read one key on the node asked: linearizable (ReadIndex) unless `stale`. Answered
    /// with [`ClientReply::Value`].
    Get {
        /// The collection.
        collection: String,
        /// The key.
        key: Vec<u8>,
        /// Read this node's applied state without asking the leader.
        stale: bool,
    },
    /// Create a user collection on every replica (any node forwards it). Answered with
    /// [`ClientReply::Response`].
    CreateCollection {
        /// Its name.
        name: String,
    },
}

/// Mirror of the errors a Raft RPC can return remotely.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RaftRpcError {
    /// The remote node is shutting down or failed.
    Fatal(String),
    /// The snapshot chunk does not continue the snapshot being received.
    SnapshotMismatch {
        /// Expected snapshot id and offset.
        expect: (String, u64),
        /// Received snapshot id and offset.
        got: (String, u64),
    },
}

impl RaftRpcError {
    pub(crate) fn from_install(
        e: openraft::error::RaftError<NodeId, InstallSnapshotError>,
    ) -> Self {
        match e {
            openraft::error::RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)) => {
                Self::SnapshotMismatch {
                    expect: (m.expect.id, m.expect.offset),
                    got: (m.got.id, m.got.offset),
                }
            }
            other => Self::Fatal(other.to_string()),
        }
    }
}

/// Errors a client request can come back with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    /// This node is not the leader; `leader` is the one it knows of (id, address).
    #[error("not the leader{}", match .leader { Some((id, addr)) => format!("; the leader is node {id} at {addr}"), None => "; no leader is known".to_owned() })]
    NotLeader {
        /// The leader, if known.
        leader: Option<(NodeId, String)>,
    },
    /// The request is invalid (unknown node, bad membership change, ...).
    #[error("{0}")]
    Invalid(String),
    /// The node failed to serve the request.
    #[error("{0}")]
    Failed(String),
    /// A node the request names cannot be reached (nothing was changed).
    #[error("{0}")]
    PeerUnreachable(String),
    /// What the request reads does not exist (an unknown collection). Last, so earlier
    /// variants keep their wire tags.
    #[error("{0}")]
    NotFound(String),
}

/// Replies to client requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientReply {
    /// The state machine's response to a proposal.
    Response(Response),
    /// The read index for a linearizable read.
    ReadIndex(u64),
    /// Done (membership changes, initialize).
    Done,
    /// Status.
    Status(Box<ClusterStatus>),
    /// A value read by [`ClientRequest::Get`].
    Value {
        /// The version the read saw.
        version: u64,
        /// The value (`None`: no such key).
        value: Option<Vec<u8>>,
    },
}

/// A response.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    /// To [`RpcRequest::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftRpcError>),
    /// To [`RpcRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftRpcError>),
    /// To [`RpcRequest::InstallSnapshot`].
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftRpcError>),
    /// To [`RpcRequest::Client`].
    Client(Result<ClientReply, WireError>),
}

/// Why a round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Could not connect (refused, unreachable, or the connect timed out).
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No response in time; the request may or may not have been processed.
    #[error("no response from {addr} within {timeout:?}")]
    Timeout {
        /// The address.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection broke or a frame was bad; the request may or may not have been
    /// processed.
    #[error("connection to {addr} failed: {source}")]
    Connection {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: FrameError,
    },
    /// The peer answered with a response of another kind.
    #[error("unexpected response from {addr}")]
    Protocol {
        /// The address.
        addr: String,
    },
}

impl CallError {
    /// Whether the request certainly was not delivered.
    #[must_use]
    pub fn not_sent(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// Sends one request on `conn` and reads one response.
pub(crate) async fn round_trip(
    conn: &mut Box<dyn Connection>,
    request: &RpcRequest,
) -> Result<RpcResponse, FrameError> {
    let bytes = frame::encode(Kind::Request, request)?;
    conn.write_all(&bytes).await?;
    conn.flush().await?;
    match frame::read_frame(conn, Kind::Response).await? {
        Some(response) => Ok(response),
        None => Err(FrameError::Io(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        ))),
    }
}

/// Connects to `addr` within the connect timeout.
pub(crate) async fn connect(
    transport: &dyn Transport,
    addr: &str,
    timeout: Duration,
) -> Result<Box<dyn Connection>, CallError> {
    match tokio::time::timeout(timeout, transport.connect(addr)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(CallError::Unreachable {
            addr: addr.to_owned(),
            reason: e.to_string(),
        }),
        Err(_) => Err(CallError::Unreachable {
            addr: addr.to_owned(),
            reason: format!("connect timed out after {timeout:?}"),
        }),
    }
}

/// One client request on a fresh connection, under `timeouts`.
///
/// # Errors
///
/// [`CallError`].
pub async fn call_client(
    transport: &dyn Transport,
    addr: &str,
    request: ClientRequest,
    timeouts: &Timeouts,
    rpc_timeout: Duration,
) -> Result<Result<ClientReply, WireError>, CallError> {
    let mut conn = connect(transport, addr, timeouts.connect).await?;
    let request = RpcRequest::Client(request);
    match tokio::time::timeout(rpc_timeout, round_trip(&mut conn, &request)).await {
        Err(_) => Err(CallError::Timeout {
            addr: addr.to_owned(),
            timeout: rpc_timeout,
        }),
        Ok(Err(source)) => Err(CallError::Connection {
            addr: addr.to_owned(),
            source,
        }),
        Ok(Ok(RpcResponse::Client(reply))) => Ok(reply),
        Ok(Ok(_)) => Err(CallError::Protocol {
            addr: addr.to_owned(),
        }),
    }
}

/// Idle client connections per address, reused for forwarded client requests (proposals,
/// read-index calls) instead of a new connection per call.
#[derive(Default)]
pub struct ConnPool {
    idle: Mutex<BTreeMap<String, Vec<Box<dyn Connection>>>>,
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool").finish_non_exhaustive()
    }
}

/// Idle connections kept per address.
const POOL_PER_ADDR: usize = 16;

impl ConnPool {
    fn take(&self, addr: &str) -> Option<Box<dyn Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(addr)
            .and_then(Vec::pop)
    }

    fn put(&self, addr: &str, conn: Box<dyn Connection>) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let conns = idle.entry(addr.to_owned()).or_default();
        if conns.len() < POOL_PER_ADDR {
            conns.push(conn);
        }
    }

    /// Like [`call_client`], on a pooled connection when there is one. A pooled connection
    /// may have been closed by the server (idle timeout): a failure on it is retried once on
    /// a fresh connection, within the same timeout. Only for requests that are safe to
    /// repeat (proposals carry request ids; read-index calls have no effect).
    ///
    /// # Errors
    ///
    /// As [`call_client`].
    pub async fn call(
        &self,
        transport: &dyn Transport,
        addr: &str,
        request: ClientRequest,
        timeouts: &Timeouts,
        rpc_timeout: Duration,
    ) -> Result<Result<ClientReply, WireError>, CallError> {
        let deadline = tokio::time::Instant::now() + rpc_timeout;
        let request = RpcRequest::Client(request);
        let mut pooled = self.take(addr);
        loop {
            let fresh = pooled.is_none();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    connect(transport, addr, timeouts.connect.min(left)).await?
                }
            };
            match tokio::time::timeout_at(deadline, round_trip(&mut conn, &request)).await {
                Err(_) => {
                    return Err(CallError::Timeout {
                        addr: addr.to_owned(),
                        timeout: rpc_timeout,
                    });
                }
                Ok(Err(source)) => {
                    if fresh {
                        return Err(CallError::Connection {
                            addr: addr.to_owned(),
                            source,
                        });
                    }
                }
                Ok(Ok(RpcResponse::Client(reply))) => {
                    self.put(addr, conn);
                    return Ok(reply);
                }
                Ok(Ok(_)) => {
                    return Err(CallError::Protocol {
                        addr: addr.to_owned(),
                    });
                }
            }
        }
    }
}
