//! openraft's network on the RPC layer: one cached connection per peer, a deadline on every
//! call, at most one reconnect per call.

use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotSegmentId;
use openraft::error::SnapshotMismatch;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::rpc::{self, CallError, RaftRpcError, RpcRequest, RpcResponse};
use crate::transport::{Connection, Timeouts, Transport};
use crate::types::{Node, NodeId, TypeConfig};

/// Creates [`PeerClient`]s.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    transport: Arc<dyn Transport>,
    timeouts: Timeouts,
}

impl NetworkFactory {
    /// A factory over `transport`.
    #[must_use]
    pub fn new(transport: Arc<dyn Transport>, timeouts: Timeouts) -> Self {
        Self {
            transport,
            timeouts,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            transport: Arc::clone(&self.transport),
            timeouts: self.timeouts,
            conn: None,
        }
    }
}

/// The RPC client openraft uses for one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    transport: Arc<dyn Transport>,
    timeouts: Timeouts,
    /// Dropped after any error or timeout, so a late response never desynchronizes framing.
    conn: Option<Box<dyn Connection>>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("target", &self.target)
            .field("addr", &self.addr)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call(&mut self, request: RpcRequest, ttl: Duration) -> Result<RpcResponse, CallError> {
        let ttl = ttl.min(self.timeouts.rpc);
        let deadline = tokio::time::Instant::now() + ttl;
        // Simulator fault point: the cached connection breaks before the call.
        #[cfg(feature = "sim-faults")]
        if crate::runtime::sim_faults::buggify("network.drop_connection") {
            self.conn = None;
        }
        // A cached connection may have died since its last use: then reconnect once.
        for _ in 0..2 {
            let fresh = self.conn.is_none();
            let mut conn = match self.conn.take() {
                Some(conn) => conn,
                None => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    rpc::connect(
                        &*self.transport,
                        &self.addr,
                        self.timeouts.connect.min(left),
                    )
                    .await?
                }
            };
            match tokio::time::timeout_at(deadline, rpc::round_trip(&mut conn, &request)).await {
                Ok(Ok(response)) => {
                    self.conn = Some(conn);
                    return Ok(response);
                }
                Ok(Err(source)) => {
                    if fresh {
                        return Err(CallError::Connection {
                            addr: self.addr.clone(),
                            source,
                        });
                    }
                }
                Err(_) => {
                    return Err(CallError::Timeout {
                        addr: self.addr.clone(),
                        timeout: ttl,
                    });
                }
            }
        }
        Err(CallError::Unreachable {
            addr: self.addr.clone(),
            reason: "connection lost twice".to_owned(),
        })
    }

    fn map_call<E: std::error::Error>(&self, e: CallError) -> RpcErr<E> {
        match e {
            CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            other => RPCError::Network(NetworkError::new(&other)),
        }
    }

    fn fatal<E: std::error::Error>(&self, message: String) -> RpcErr<E> {
        RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
            "node {} failed: {message}",
            self.target
        ))))
    }

    fn protocol<E: std::error::Error>(&self) -> RpcErr<E> {
        self.map_call(CallError::Protocol {
            addr: self.addr.clone(),
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self
            .call(RpcRequest::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(RpcResponse::AppendEntries(Ok(r))) => Ok(r),
            Ok(RpcResponse::AppendEntries(Err(e))) => Err(self.fatal(format!("{e:?}"))),
            Ok(_) => Err(self.protocol()),
            Err(e) => Err(self.map_call(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self
            .call(RpcRequest::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(RpcResponse::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(RpcResponse::InstallSnapshot(Err(RaftRpcError::SnapshotMismatch {
                expect,
                got,
            }))) => {
                let mismatch = SnapshotMismatch {
                    expect: SnapshotSegmentId {
                        id: expect.0,
                        offset: expect.1,
                    },
                    got: SnapshotSegmentId {
                        id: got.0,
                        offset: got.1,
                    },
                };
                Err(RPCError::RemoteError(RemoteError::new(
                    self.target,
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)),
                )))
            }
            Ok(RpcResponse::InstallSnapshot(Err(RaftRpcError::Fatal(m)))) => Err(self.fatal(m)),
            Ok(_) => Err(self.protocol()),
            Err(e) => Err(self.map_call(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(RpcRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RpcResponse::Vote(Ok(r))) => Ok(r),
            Ok(RpcResponse::Vote(Err(e))) => Err(self.fatal(format!("{e:?}"))),
            Ok(_) => Err(self.protocol()),
            Err(e) => Err(self.map_call(e)),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Bounded reconnect rate to an unreachable peer.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
