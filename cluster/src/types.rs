//! The openraft type configuration and the application data carried by the log.

use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use zcore_engine::Version;
use zcore_engine::mvcc::replica::ReplicatedTxn;

use crate::runtime::RaftRuntime;

/// A node's id in the cluster.
pub type NodeId = u64;

/// A node's network address as openraft stores it in the membership.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The openraft type configuration of zcore-cluster.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = RaftRuntime,
);

/// The bytes of one snapshot as openraft moves them: a file (production, bounded memory) or an
/// in-memory buffer (the simulator, see [`crate::SnapshotStorage::Memory`]). Reads, writes and
/// seeks are delegated to the variant.
#[derive(Debug)]
pub enum SnapshotData {
    /// A snapshot file (or an unlinked file receiving one).
    File(tokio::fs::File),
    /// A snapshot held in memory.
    Memory(std::io::Cursor<Vec<u8>>),
}

impl tokio::io::AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::File(f) => Pin::new(f).poll_read(cx, buf),
            Self::Memory(c) => Pin::new(c).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::File(f) => Pin::new(f).poll_write(cx, buf),
            Self::Memory(c) => Pin::new(c).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::File(f) => Pin::new(f).poll_flush(cx),
            Self::Memory(c) => Pin::new(c).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::File(f) => Pin::new(f).poll_shutdown(cx),
            Self::Memory(c) => Pin::new(c).poll_shutdown(cx),
        }
    }
}

impl tokio::io::AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        match self.get_mut() {
            Self::File(f) => Pin::new(f).start_seek(position),
            Self::Memory(c) => Pin::new(c).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        match self.get_mut() {
            Self::File(f) => Pin::new(f).poll_complete(cx),
            Self::Memory(c) => Pin::new(c).poll_complete(cx),
        }
    }
}

/// The Raft handle of a zcore-cluster node.
pub type Raft = openraft::Raft<TypeConfig>;

/// Identifies a retried request: a client session and the session's request number. A
/// session issues one request at a time; a retry reuses the number, so the state machine
/// applies it once and answers the retry with the first outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestId {
    /// The client session (random per session).
    pub client: u64,
    /// The session's request number, starting at 1.
    pub serial: u64,
    /// The applied log index on the proposing node when the session was opened. A request
    /// without a session record from a session opened below the state machine's session
    /// floor belongs to an expired session and is answered [`Outcome::Stale`].
    pub opened: u64,
}

/// What a log entry asks the state machine to do.
///
/// Decoding refuses batches nested deeper than [`MAX_COMMAND_DEPTH`] (a crafted log entry or
/// RPC of deeply nested batches would otherwise overflow the decoder's stack).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Command {
    /// Validate and commit a transaction at the entry's log index.
    Txn(ReplicatedTxn),
    /// Create a user collection (idempotent).
    CreateCollection(String),
    /// Drop a user collection with all its versions.
    DropCollection(String),
    /// Several client requests (transactions) proposed as one log entry by the leader's
    /// proposal batcher: decided in order, each with its own request id and outcome; the
    /// committed ones are written together at the entry's log index (see
    /// [`crate::state_machine`]).
    Batch(Vec<Request>),
}

/// How deeply commands may nest when decoded: a request, a batch of requests, and one more
/// level of headroom (the proposal batcher nests at most once).
pub const MAX_COMMAND_DEPTH: u32 = 4;

thread_local! {
    static COMMAND_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The derived decoder of [`Command`], wrapped below with a depth limit.
        #[derive(Deserialize)]
        #[serde(remote = "Command")]
        enum CommandDef {
            Txn(ReplicatedTxn),
            CreateCollection(String),
            DropCollection(String),
            Batch(Vec<Request>),
        }
        struct Level;
        impl Drop for Level {
            fn drop(&mut self) {
                COMMAND_DEPTH.with(|c| c.set(c.get().saturating_sub(1)));
            }
        }
        let depth = COMMAND_DEPTH.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        let _level = Level;
        if depth > MAX_COMMAND_DEPTH {
            return Err(serde::de::Error::custom(format!(
                "commands nested more than {MAX_COMMAND_DEPTH} deep"
            )));
        }
        CommandDef::deserialize(d)
    }
}

/// Application data of a normal log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// For de-duplication of retries; `None` for requests that need none.
    pub id: Option<RequestId>,
    /// What to do.
    pub command: Command,
}

/// What applying a request did. Every replica computes the same outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Committed at the entry's log index (the commit version).
    Committed {
        /// The commit version (= log index).
        version: Version,
    },
    /// Validation failed: a later commit changed what the transaction read (or wrote, under
    /// snapshot isolation). Nothing was written; retry the transaction.
    Conflict {
        /// The conflict, as the engine described it.
        message: String,
    },
    /// Refused for another reason (unknown collection, read version too old, bad name).
    /// Nothing was written.
    Rejected {
        /// Why.
        message: String,
    },
    /// A retry of a request older than the session's latest, or of a session whose record has
    /// expired: its outcome is no longer known.
    Stale,
    /// The outcomes of a [`Command::Batch`], one per request, in order.
    Batch(Vec<Response>),
}

/// The state machine's answer to one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The log index of the entry that decided the outcome (for a retry: the first one).
    pub index: u64,
    /// What happened.
    pub outcome: Outcome,
}
