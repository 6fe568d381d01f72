//! Logical dump and load: every live key of some or all user collections at one snapshot
//! version, in a streaming, backend-neutral file, and loading such a file into any store.
//!
//! # Formats
//!
//! Both forms hold the same records — a header, rows grouped by collection (header order) in
//! strictly ascending key order, and an end record with the row counts — so a file cut short
//! at a record boundary is detected too.
//!
//! **JSON lines** (`jsonl`): one JSON object per line, `\n`-terminated. Keys and values are
//! lower-case **hex** (chosen over base64 for consistency with the rest of zcore: `--hex`, the
//! backup manifests, `zstore scan --json`; and because it is greppable; it doubles the size,
//! so use the binary form for bulk data).
//!
//! ```text
//! {"zcore_dump":1,"encoding":"hex","source_backend":"fjall","version":42,"collections":["a","b"]}
//! {"collection":"a","key":"6b31","value":"7631"}
//! …
//! {"end":{"rows":1234,"per_collection":[1000,234]}}
//! ```
//!
//! **Binary** (`binary`): a sequence of frames with the layout of the backup frame
//! ([`crate::backup::frame`]) under its own magic:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "ZCDP"
//! 4       2     format version, u16 LE (1)
//! 6       1     kind: 1 header, 2 rows, 3 end
//! 7       1     flags (0)
//! 8       4     payload length, u32 LE (≤ one maximal row; never preallocated)
//! 12      4     crc32c over bytes 0..12 ‖ payload, u32 LE
//! 16      len   payload (postcard): DumpHeader | {collection index u32, [(key, value)]} | DumpEnd
//! ```
//!
//! Rows frames are cut at ~1 MiB, so reading needs memory for one frame, not the file.
//!
//! # Snapshot
//!
//! [`dump`] reads through one [`ReadTransaction`](crate::ReadTransaction) (the latest version
//! or `at_version`, as far as it is retained), in pages, so the dump is one consistent version
//! and GC cannot remove it while the dump runs.
//!
//! # Load semantics
//!
//! [`load`] first checks the target: a collection of the dump that exists and holds data is
//! refused ([`DumpError::NotEmpty`]) unless `overwrite` is set, in which case it is dropped
//! and recreated (not transactional; concurrent readers see it empty). Nothing is ever merged.
//! Rows are then written in batches; **each batch is one transaction**. A malformed or
//! truncated record stops the load before the batch it belongs to is committed; the batches
//! committed before stay, and the error ([`DumpError::PartiallyLoaded`]) says how many rows
//! they held. To apply nothing from a bad file, run [`check`] over it first (`zstore load`
//! does so for files; stdin cannot be read twice).

mod error;
mod format;

use std::io::{BufRead, Write};

use serde::Serialize;

pub use error::{DumpError, Location};
pub use format::{
    DUMP_FORMAT_VERSION, DumpEnd, DumpFormat, DumpHeader, DumpReader, DumpWriter, MAGIC,
    MAX_FRAME_PAYLOAD, MAX_JSON_LINE, Row, encode_frame,
};

use crate::backend::{CollectionName, KeyRange, ScanRequest};
use crate::mvcc::{Engine, Isolation, Version, WriteOptions};
use crate::{Durability, TxnError};

/// What to dump.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// Encoding.
    pub format: DumpFormat,
    /// Collections to dump, in this order; `None`: every user collection, in name order.
    pub collections: Option<Vec<CollectionName>>,
    /// Snapshot version; `None`: the latest.
    pub at_version: Option<Version>,
    /// Entries per scan page (memory bound of the reading side).
    pub page_size: usize,
}

impl Default for DumpOptions {
    fn default() -> Self {
        Self {
            format: DumpFormat::Jsonl,
            collections: None,
            at_version: None,
            page_size: 1024,
        }
    }
}

/// What a dump wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DumpReport {
    /// Encoding.
    pub format: DumpFormat,
    /// The snapshot version.
    pub version: Version,
    /// The source backend.
    pub source_backend: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Rows per collection.
    pub collections: Vec<(String, u64)>,
}

/// Writes a dump of `engine` to `out` (see the module docs). `progress` is called with the
/// number of rows written so far after every page.
///
/// # Errors
///
/// [`DumpError::CollectionNotFound`], engine errors (a version not retained or not committed,
/// corrupted data), I/O errors.
pub async fn dump<W: Write>(
    engine: &Engine,
    out: W,
    options: &DumpOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<(DumpReport, W), DumpError> {
    let existing = engine.collections();
    let collections = match &options.collections {
        None => existing,
        Some(names) => {
            for name in names {
                if !existing.contains(name) {
                    return Err(DumpError::CollectionNotFound(name.as_str().to_owned()));
                }
            }
            names.clone()
        }
    };
    let snapshot = match options.at_version {
        None => engine.begin_read(),
        Some(v) => engine
            .begin_read_at(v)
            .map_err(|e| DumpError::engine("open the snapshot", None, e))?,
    };
    let header = DumpHeader {
        zcore_dump: DUMP_FORMAT_VERSION,
        encoding: match options.format {
            DumpFormat::Jsonl => "hex".to_owned(),
            DumpFormat::Binary => "binary".to_owned(),
        },
        source_backend: engine.backend().kind().name().to_owned(),
        version: snapshot.version(),
        collections: collections.iter().map(|c| c.as_str().to_owned()).collect(),
    };
    let mut writer = DumpWriter::new(out, options.format, &header)?;
    let mut rows = 0u64;
    for (index, collection) in collections.iter().enumerate() {
        let mut request = Some(ScanRequest::forward(
            KeyRange::all(),
            options.page_size.clamp(1, crate::limits::MAX_SCAN_LIMIT),
        ));
        while let Some(req) = request.take() {
            let page = snapshot
                .scan(collection, &req)
                .await
                .map_err(|e| DumpError::engine("read", Some(collection.as_str()), e))?;
            request = req.next_page(&page);
            for (key, value) in &page.entries {
                writer.row(index, collection.as_str(), key, value)?;
            }
            rows += page.entries.len() as u64;
            progress(rows);
        }
    }
    let (end, bytes, out) = writer.finish()?;
    let report = DumpReport {
        format: options.format,
        version: header.version,
        source_backend: header.source_backend,
        rows,
        bytes,
        collections: header
            .collections
            .into_iter()
            .zip(end.per_collection)
            .collect(),
    };
    Ok((report, out))
}

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Replace the contents of target collections that hold data (drop and recreate them);
    /// without it such a collection is refused.
    pub overwrite: bool,
    /// Rows per batch (one transaction each).
    pub batch_rows: usize,
    /// A batch is also committed once its keys and values reach this many bytes.
    pub batch_bytes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            overwrite: false,
            batch_rows: 1000,
            batch_bytes: 4 << 20,
        }
    }
}

/// What a load (or a check) read and wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// Encoding of the file.
    pub format: DumpFormat,
    /// The backend the dump came from.
    pub source_backend: String,
    /// The version it was taken at.
    pub source_version: Version,
    /// Rows read (and, for a load, committed).
    pub rows: u64,
    /// Transactions committed (0 for a check).
    pub batches: u64,
    /// Rows per collection.
    pub collections: Vec<(String, u64)>,
    /// Collections replaced because of `overwrite`.
    pub replaced: Vec<String>,
}

fn report_of<R: BufRead>(reader: &DumpReader<R>, rows: u64, batches: u64) -> LoadReport {
    let header = reader.header();
    LoadReport {
        format: reader.format(),
        source_backend: header.source_backend.clone(),
        source_version: header.version,
        rows,
        batches,
        collections: header
            .collections
            .iter()
            .cloned()
            .zip(
                reader
                    .end()
                    .map(|e| e.per_collection.clone())
                    .unwrap_or_default(),
            )
            .collect(),
        replaced: Vec::new(),
    }
}

/// Reads a whole dump and checks it (format, checksums, order, limits, end counts) without
/// writing anything. `progress` gets the rows read so far.
///
/// # Errors
///
/// [`DumpError::Malformed`] / [`DumpError::Truncated`] with the location; I/O errors.
pub fn check<R: BufRead>(
    mut reader: DumpReader<R>,
    progress: &mut dyn FnMut(u64),
) -> Result<LoadReport, DumpError> {
    let mut rows = 0u64;
    while reader.next_row()?.is_some() {
        rows += 1;
        if rows.is_multiple_of(4096) {
            progress(rows);
        }
    }
    progress(rows);
    Ok(report_of(&reader, rows, 0))
}

/// Loads a dump into `engine` (see the module docs for the semantics). `progress` gets the
/// rows committed so far after every batch.
///
/// # Errors
///
/// [`DumpError::NotEmpty`] before anything is written; malformed or truncated input and
/// engine errors, wrapped in [`DumpError::PartiallyLoaded`] once a batch was committed.
pub async fn load<R: BufRead>(
    engine: &Engine,
    mut reader: DumpReader<R>,
    options: &LoadOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<LoadReport, DumpError> {
    let names: Vec<CollectionName> = reader
        .header()
        .collections
        .iter()
        .map(|n| {
            CollectionName::new(n).map_err(|e| {
                DumpError::malformed(reader.location(), format!("collection {n:?}: {e}"))
            })
        })
        .collect::<Result<_, _>>()?;
    // Decide about every target collection before writing anything.
    let existing = engine.collections();
    let mut to_replace = Vec::new();
    {
        let read = engine.begin_read();
        for name in names.iter().filter(|n| existing.contains(n)) {
            let page = read
                .scan(name, &ScanRequest::forward(KeyRange::all(), 1))
                .await
                .map_err(|e| DumpError::engine("check the target", Some(name.as_str()), e))?;
            if !page.entries.is_empty() {
                if !options.overwrite {
                    return Err(DumpError::NotEmpty {
                        collection: name.as_str().to_owned(),
                    });
                }
                to_replace.push(name.clone());
            }
        }
    }
    for name in &to_replace {
        engine
            .drop_collection(name)
            .await
            .map_err(|e| DumpError::engine("drop for overwrite", Some(name.as_str()), e))?;
    }
    for name in &names {
        engine
            .create_collection(name)
            .await
            .map_err(|e| DumpError::engine("create", Some(name.as_str()), e))?;
    }
    let write_options = WriteOptions {
        isolation: Isolation::Snapshot,
        durability: Durability::Synced,
    };
    let (mut rows, mut batches) = (0u64, 0u64);
    let partial = |e: DumpError, rows: u64, batches: u64| {
        if batches == 0 {
            e
        } else {
            DumpError::PartiallyLoaded {
                committed_rows: rows,
                committed_batches: batches,
                source: Box::new(e),
            }
        }
    };
    loop {
        let mut txn = engine.begin_write_with(write_options);
        let (mut in_batch, mut bytes) = (0u64, 0usize);
        let mut finished = false;
        while in_batch < options.batch_rows.max(1) as u64 && bytes < options.batch_bytes {
            let row = match reader.next_row() {
                Ok(Some(row)) => row,
                Ok(None) => {
                    finished = true;
                    break;
                }
                Err(e) => return Err(partial(e, rows, batches)),
            };
            bytes += row.key.len() + row.value.len();
            let name = &names[row.collection];
            txn.put(name, row.key, row.value).map_err(|e| {
                partial(
                    DumpError::engine("write", Some(name.as_str()), e),
                    rows,
                    batches,
                )
            })?;
            in_batch += 1;
        }
        if in_batch > 0 {
            txn.commit().await.map_err(|e: TxnError| {
                partial(DumpError::engine("commit a batch", None, e), rows, batches)
            })?;
            rows += in_batch;
            batches += 1;
            progress(rows);
        }
        if finished {
            break;
        }
    }
    let mut report = report_of(&reader, rows, batches);
    report.replaced = to_replace.iter().map(|c| c.as_str().to_owned()).collect();
    Ok(report)
}
