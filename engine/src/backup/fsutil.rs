//! File handling: safe reads of named files inside a backup directory, new files that never
//! follow or overwrite anything, directory syncs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::{BackupError, Check};
use super::format::is_safe_file_name;

/// Reads `dir/name` whole. `name` must be a safe single component; the file must be a regular
/// file (a symbolic link is refused, also if swapped in between the check and the open), at
/// most `max` bytes, and exactly `expected` bytes when given. Never allocates more than the
/// file's actual size.
pub(crate) fn read_named(
    dir: &Path,
    name: &str,
    max: u64,
    expected: Option<u64>,
) -> Result<(PathBuf, Vec<u8>), BackupError> {
    let path = dir.join(name);
    if !is_safe_file_name(name) && name != super::format::MANIFEST_FILE {
        return Err(BackupError::invalid(
            &path,
            Check::FileName,
            format!("{name:?} is not a plain file name inside the backup directory"),
        ));
    }
    let before = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::invalid(
                &path,
                Check::FilePresent,
                "the file is missing",
            ));
        }
        Err(e) => return Err(BackupError::io(&path, Check::Read, e)),
    };
    check_regular(&path, &before)?;
    let len = before.len();
    if len > max {
        return Err(BackupError::invalid(
            &path,
            Check::FileSize,
            format!("{len} bytes is more than the {max} bytes allowed"),
        ));
    }
    if let Some(expected) = expected
        && expected != len
    {
        return Err(BackupError::invalid(
            &path,
            Check::FileSize,
            format!("the manifest records {expected} bytes, the file has {len}"),
        ));
    }
    let file = File::open(&path).map_err(|e| BackupError::io(&path, Check::Read, e))?;
    let opened = file
        .metadata()
        .map_err(|e| BackupError::io(&path, Check::Read, e))?;
    if !same_file(&before, &opened) || !opened.is_file() {
        return Err(BackupError::invalid(
            &path,
            Check::FileType,
            "the file was replaced while it was opened",
        ));
    }
    let cap = usize::try_from(len).map_err(|_| {
        BackupError::invalid(&path, Check::FileSize, "file too large for this platform")
    })?;
    let mut bytes = Vec::with_capacity(cap);
    file.take(len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| BackupError::io(&path, Check::Read, e))?;
    if bytes.len() as u64 != len {
        return Err(BackupError::invalid(
            &path,
            Check::FileSize,
            format!(
                "the file changed while it was read ({len} bytes expected, {} read)",
                bytes.len()
            ),
        ));
    }
    Ok((path, bytes))
}

fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), BackupError> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(BackupError::invalid(
            path,
            Check::FileType,
            "symbolic links are refused in a backup directory",
        ));
    }
    if !ft.is_file() {
        return Err(BackupError::invalid(
            path,
            Check::FileType,
            "not a regular file (directory, device, FIFO or socket)",
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len()
}

/// Creates `path` (which must not exist: never follows or overwrites anything), writes
/// `bytes` and syncs it. Files are created `0600` on Unix.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| BackupError::io(path, Check::Write, e))?;
    file.write_all(bytes)
        .map_err(|e| BackupError::io(path, Check::Write, e))?;
    // fdatasync: the data and the size, which is all a new file needs.
    file.sync_data()
        .map_err(|e| BackupError::io(path, Check::Sync, e))?;
    Ok(())
}

/// Makes a directory's entries durable (no-op where directories cannot be opened).
pub(crate) fn sync_dir(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(|e| BackupError::io(path, Check::Sync, e))?;
    }
    #[cfg(not(unix))]
    {
        let _ = path;
    }
    Ok(())
}

/// Prepares an empty backup directory: creates it (`0700` on Unix) or accepts an existing
/// empty one.
pub(crate) fn prepare_dir(path: &Path) -> Result<(), BackupError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(BackupError::refused(
                    path,
                    Check::Directory,
                    "exists and is not a directory",
                ));
            }
            let mut entries = std::fs::read_dir(path)
                .map_err(|e| BackupError::io(path, Check::ListDirectory, e))?;
            if entries.next().is_some() {
                return Err(BackupError::refused(
                    path,
                    Check::Directory,
                    "the backup directory is not empty (a backup is written into a new or empty directory)",
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder
                .create(path)
                .map_err(|e| BackupError::io(path, Check::Directory, e))?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) => Err(BackupError::io(path, Check::Directory, e)),
    }
}

/// Whether `path` is a real directory (not a symbolic link).
pub(crate) fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}
