//! The openraft type configuration and the application data carried by the log.

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
        SnapshotData = tokio::fs::File,
        AsyncRuntime = RaftRuntime,
);

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
