//! [`RedbBackend`]: redb 4.6, one `&[u8] → &[u8]` table per collection.
//!
//! - redb runs one write transaction at a time. A write first tries to start its transaction
//!   without blocking; if another is live it moves to the blocking pool and waits there, so an
//!   executor thread never parks on redb's writer lock.
//! - Every batch commits with `Durability::None` (atomic, visible, but kept in process memory).
//!   Synced batches then share one empty `Durability::Immediate` commit (group commit), which
//!   makes every earlier `None` commit durable as well.
//! - Collection creation and drop commit with `Durability::Immediate`.
//! - The set of collections is cached in memory: redb's `open_table` on a write transaction
//!   creates missing tables, so membership is checked against the cache under a lock that
//!   `drop_collection` takes exclusively.

mod backend;
mod options;

pub use backend::RedbBackend;
pub use options::RedbOptions;
