//! [`FjallBackend`]: the fjall 3.1 LSM-tree, one keyspace per collection.
//!
//! - Reads go through a fjall `Snapshot`, never a bare keyspace: bare reads run at
//!   `SeqNo::MAX` and can observe a batch that is still being applied item by item.
//! - Writes are one `OwnedWriteBatch` across keyspaces (one journal record, one seqno), handed
//!   to the OS at once (`PersistMode::Buffer`): a buffered batch survives a process crash.
//!   Synced batches then share one `persist(SyncAll)` through group commit, on the blocking pool.
//! - Keyspace create options (compression) apply only when a keyspace is first created; fjall
//!   ignores them on reopen.

mod backend;
mod options;

pub use backend::FjallBackend;
pub use options::{FjallCompression, FjallOptions};
