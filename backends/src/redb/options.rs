//! Options of the redb backend.

use serde::{Deserialize, Serialize};

/// Options of [`super::RedbBackend`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedbOptions {
    /// Page cache size in bytes (redb's own default is 1 GiB).
    pub cache_size_bytes: u64,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            cache_size_bytes: 64 * 1024 * 1024,
        }
    }
}
