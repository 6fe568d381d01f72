//! Where a new store is built before it is renamed into place.
//!
//! fjall 3.1.13 leaves a store that no later open accepts when the process is killed while it
//! creates it (journal present, version marker missing). The fjall backend therefore builds a
//! new store under [`staging_path`], syncs it, and renames it to its real name; a kill leaves
//! only the staging name, which the next open removes and rebuilds.

use std::path::{Path, PathBuf};

/// `<path>.zcore-creating`, next to `path`.
pub(crate) fn staging_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".zcore-creating");
    path.with_file_name(name)
}
