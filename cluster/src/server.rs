//! The RPC server: accepts connections, reads one framed request at a time under an idle
//! timeout, answers it, and closes the connection on any error.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::task::AbortHandle;

use crate::frame::{self, Kind};
use crate::node::Shared;
use crate::rpc::{RaftRpcError, RpcRequest, RpcResponse};
use crate::transport::{Connection, Listener};

/// The server's connection tasks, aborted by [`abort_all`](Self::abort_all) when the node
/// shuts down.
///
/// Not a `JoinSet`: a `JoinSet` aborts its tasks when it is dropped, and when tokio shuts a
/// current-thread runtime down after an unhandled task panic (`tokio_unstable`, as in the
/// simulator) it drops the server task from inside the scheduler; aborting a task there
/// panics ("RefCell already borrowed") in a destructor during cleanup, which aborts the
/// process instead of reporting the first panic. The runtime's shutdown ends these tasks
/// anyway.
#[derive(Debug, Default)]
pub(crate) struct Connections(Mutex<Vec<AbortHandle>>);

impl Connections {
    fn add(&self, handle: AbortHandle) {
        let mut handles = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// Aborts every connection task.
    pub(crate) fn abort_all(&self) {
        let handles = std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for handle in handles {
            handle.abort();
        }
    }
}

/// Accepts connections until the task is aborted; each connection runs in its own task,
/// registered in `shared.connections` (aborted by the node's shutdown).
pub(crate) async fn serve(mut listener: Box<dyn Listener>, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((conn, peer)) => {
                let task_shared = Arc::clone(&shared);
                let task = tokio::spawn(async move {
                    if let Err(e) = serve_connection(conn, &task_shared).await {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                });
                shared.connections.add(task.abort_handle());
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
