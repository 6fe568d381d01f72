//! `zcore-cluster`: Raft replication of the zcore-storage transaction engine on openraft
//! 0.9.25.
//!
//! - [`log_store`]: the Raft log on any [`StorageBackend`](zcore_engine::StorageBackend);
//! - [`state_machine`]: the MVCC engine as the state machine (versions = log indexes);
//! - [`snapshot`]-files built from the engine and installed by redo;
//! - [`runtime`]: openraft's `AsyncRuntime` on tokio with an injectable RNG;
//! - [`transport`], [`rpc`], [`network`]: framed RPCs over a pluggable byte transport (tokio
//!   TCP in production), with a timeout on every connect, call and idle read;
//! - [`node`]: [`ClusterNode`], the replicated store API (writes through the leader,
//!   linearizable reads, membership, status); [`config`]: its TOML configuration;
//! - [`frame`] and [`records`]: the one framed persisted format and our mirrors of
//!   openraft's types.

pub mod config;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzz;
pub mod log_store;
pub mod network;
pub mod node;
pub mod records;
pub mod rpc;
pub mod runtime;
mod server;
mod snapshot;
pub mod state_machine;
pub mod status;
pub mod transport;
pub mod types;

pub use config::{ConfigError, NodeConfig};
pub use error::StoreError;
pub use log_store::LogStore;
pub use node::{
    ClusterError, ClusterNode, ClusterReadTransaction, ClusterWriteTransaction, ReadConsistency,
};
pub use snapshot::{MemorySnapshots, SnapshotStorage};
pub use state_machine::{SessionLimits, SnapshotBuilder, StateMachineStore};
pub use status::ClusterStatus;
pub use transport::{TcpTransport, Timeouts, Transport};
pub use types::{
    Command, NodeId, Outcome, Raft, Request, RequestId, Response, SnapshotData, TypeConfig,
};
