//! Options of the memory backend.

use serde::{Deserialize, Serialize};

/// Options of [`super::MemoryBackend`]. It has none yet; the table exists so that every backend
/// is configured the same way and unknown keys are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryOptions {}
