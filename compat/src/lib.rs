//! `zcore-compat`: the seed's synchronous API and a redb-shaped table API on the async
//! transaction engine, plus migration between stores.
//!
//! - [`Store`]: `Store::open(path)?`, `store.begin_write()?`, `tx.set(COL_USERS, k, v)`,
//!   `tx.commit(&store)?`, `store.begin_read()?`, `read_tx.get(&store, COL_USERS, k)?`,
//!   savepoints, [`MultiPartitionTransaction`], [`next_seq`]. Synchronous, and safe to call
//!   from plain threads, from inside a multi-threaded or current-thread tokio runtime, and from
//!   `#[tokio::main]`: each store runs the engine on a small runtime of its own and callers
//!   block on a channel, never on a runtime.
//! - [`Table`] / [`ReadOnlyTable`]: `open_table(&store, COL)` with redb's `insert`, `get`
//!   (a guard with `.value()`), `remove`, `range`, `iter`, `len`, `is_empty`.

mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod migrate;
mod multi;
mod store;
mod table;

pub use error::{GeneralError, StorageError};
pub use multi::MultiPartitionTransaction;
pub use store::{Entries, ReadTx, Store, WriteTx, next_seq};
pub use table::{AccessGuard, Range, ReadOnlyTable, Table};
pub use zcore_backends::MemoryBackend as MemoryStorage;
