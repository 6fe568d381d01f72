//! [`MemoryBackend`]: ordered maps in process memory.
//!
//! Written to be obviously correct rather than fast: one `BTreeMap` per collection behind one
//! lock, every batch applied under the write lock. It is the oracle for differential tests and
//! the default for unit tests. Nothing survives `close` or a restart.

mod backend;
mod options;

pub use backend::MemoryBackend;
pub use options::MemoryOptions;
