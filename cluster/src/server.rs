//! The RPC server: accepts connections, reads one framed request at a time under an idle
//! timeout, answers it, and closes the connection on any error.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::frame::{self, Kind};
use crate::node::Shared;
use crate::rpc::{RaftRpcError, RpcRequest, RpcResponse};
use crate::transport::{Connection, Listener};

/// Accepts connections until the task is aborted (which also aborts every connection task).
pub(crate) async fn serve(mut listener: Box<dyn Listener>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((conn, peer)) => {
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    if let Err(e) = serve_connection(conn, &shared).await {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    mut conn: Box<dyn Connection>,
    shared: &Shared,
) -> Result<(), frame::FrameError> {
    loop {
        let read = frame::read_frame::<_, RpcRequest>(&mut conn, Kind::Request);
        let request = match tokio::time::timeout(shared.timeouts.idle, read).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Some(request))) => request,
        };
        let response = dispatch(shared, request).await;
        // Simulator fault point: a slow response (the caller's deadline may pass first).
        #[cfg(feature = "sim-faults")]
        if let Some(delay) = crate::runtime::sim_faults::buggify_delay("server.respond") {
            tokio::time::sleep(delay).await;
        }
        let bytes = frame::encode(Kind::Response, &response)?;
        conn.write_all(&bytes).await?;
        conn.flush().await?;
    }
}

async fn dispatch(shared: &Shared, request: RpcRequest) -> RpcResponse {
    let raft = &shared.raft;
    match request {
        RpcRequest::AppendEntries(rpc) => RpcResponse::AppendEntries(
            raft.append_entries(rpc)
                .await
                .map_err(|e| RaftRpcError::Fatal(e.to_string())),
        ),
        RpcRequest::Vote(rpc) => RpcResponse::Vote(
            raft.vote(rpc)
                .await
                .map_err(|e| RaftRpcError::Fatal(e.to_string())),
        ),
        RpcRequest::InstallSnapshot(rpc) => RpcResponse::InstallSnapshot(
            raft.install_snapshot(rpc)
                .await
                .map_err(RaftRpcError::from_install),
        ),
        RpcRequest::Client(request) => RpcResponse::Client(shared.handle(request).await),
    }
}
