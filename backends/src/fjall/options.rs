//! Options of the fjall backend.

use serde::{Deserialize, Serialize};

/// Block and journal compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FjallCompression {
    /// No compression.
    None,
    /// LZ4 (fjall's default).
    #[default]
    Lz4,
}

/// Options of [`super::FjallBackend`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FjallOptions {
    /// Block cache size in bytes (fjall's own default is 32 MiB).
    pub cache_size_bytes: u64,
    /// Compression of data blocks and of the journal. Applies to keyspaces created from now on.
    pub compression: FjallCompression,
    /// Background flush/compaction threads (1..=64); `None` keeps fjall's default
    /// (min(cores, 4)).
    pub worker_threads: Option<usize>,
}

impl Default for FjallOptions {
    fn default() -> Self {
        Self {
            cache_size_bytes: 64 * 1024 * 1024,
            compression: FjallCompression::Lz4,
            worker_threads: None,
        }
    }
}

/// Most worker threads the options accept.
pub const MAX_WORKER_THREADS: usize = 64;

impl FjallOptions {
    /// Checks the options (fjall panics on a zero thread count; we refuse it instead).
    ///
    /// # Errors
    ///
    /// A message naming the bad option.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(n) = self.worker_threads
            && !(1..=MAX_WORKER_THREADS).contains(&n)
        {
            return Err(format!(
                "fjall.worker_threads = {n} is out of range 1..={MAX_WORKER_THREADS}"
            ));
        }
        Ok(())
    }
}
