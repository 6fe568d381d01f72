//! The migration checkpoint: records in the target's system collection `__migrate`.
//!
//! | key | record | written |
//! |---|---|---|
//! | `run` | [`RunRecord`]: source, mode, source version, fingerprint, the planned collections, `finished` | before the first batch, and once more when everything is copied |
//! | `col/<collection>` | [`CollectionProgress`]: rows and bytes copied, the source position of the last copied row, `done` | in the same atomic batch as every batch of rows of that collection |
//!
//! Because a collection's progress is written in the very batch that writes its rows, the
//! target never holds rows its checkpoint does not account for, nor the reverse: a run killed at
//! any moment resumes exactly after the last batch that landed.
//!
//! Entries use the MVCC key layout and are written at the run's version (the anchor commit's
//! version in snapshot and import runs, [`RAW_RECORD_VERSION`] in history runs), replacing the
//! entry of the same key and version in place; a resumed run writes at its own, newer anchor,
//! and superseded versions are pruned when the copy ends. Readers take the newest version of
//! each key.
//!
//! Record bytes: `b"ZMIG"` ‖ format (1) ‖ kind (1 run, 2 progress) ‖ postcard payload, inside the
//! engine's checksummed value format. Golden bytes of format 1 are tested below.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zcore_engine::mvcc::keys::{EncodedKey, VersionedKey};
use zcore_engine::mvcc::value::{self, Stored};
use zcore_engine::{CollectionName, KeyRange, ScanRequest, StorageBackend, Version, WriteBatch};

use super::error::MigrateError;
use super::{Mode, PlannedCollection};

/// Name of the checkpoint collection in the target.
pub const MIGRATE_COLLECTION: &str = "__migrate";
/// Version at which history-mode runs write their records.
pub(crate) const RAW_RECORD_VERSION: Version = 1;

pub(crate) const RUN_KEY: &[u8] = b"run";
const MAGIC: &[u8; 4] = b"ZMIG";
const FORMAT: u8 = 1;
const KIND_RUN: u8 = 1;
const KIND_PROGRESS: u8 = 2;

pub(crate) fn collection() -> Result<CollectionName, MigrateError> {
    CollectionName::system(MIGRATE_COLLECTION)
        .map_err(|e| MigrateError::Worker(format!("checkpoint collection name: {e}")))
}

pub(crate) fn progress_key(collection: &CollectionName) -> Vec<u8> {
    let mut k = b"col/".to_vec();
    k.extend_from_slice(collection.as_str().as_bytes());
    k
}

/// What a run is copying; written before the first batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    /// The source, as `<kind>:<canonical path>`.
    pub(crate) source: String,
    /// Snapshot, history or redb import.
    pub(crate) mode: Mode,
    /// The source version a snapshot copy reads.
    pub(crate) source_version: Option<Version>,
    /// BLAKE3 of what the source looked like when the run started (tables, types, lengths;
    /// collections and version).
    pub(crate) fingerprint: [u8; 32],
    /// The collections to copy.
    pub(crate) collections: Vec<PlannedCollection>,
    /// Every collection copied and the metadata merged.
    pub(crate) finished: bool,
}

/// Progress of one collection; written with every batch of its rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CollectionProgress {
    /// Rows copied so far.
    pub(crate) rows: u64,
    /// Key and value bytes copied so far.
    pub(crate) bytes: u64,
    /// The source position of the last copied row (resume strictly after it).
    pub(crate) position: Option<Vec<u8>>,
    /// The whole collection is copied.
    pub(crate) done: bool,
}

fn encode<T: Serialize>(kind: u8, record: &T) -> Result<Vec<u8>, MigrateError> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT);
    out.push(kind);
    postcard::to_extend(record, out).map_err(|e| MigrateError::Checkpoint {
        key: format!("kind {kind}"),
        reason: format!("cannot encode: {e}"),
    })
}

fn decode<T: DeserializeOwned>(kind: u8, key: &[u8], bytes: &[u8]) -> Result<T, MigrateError> {
    let fail = |reason: String| MigrateError::Checkpoint {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(fail("missing magic".to_owned()));
    };
    match rest {
        [FORMAT, k, payload @ ..] if *k == kind => {
            postcard::from_bytes(payload).map_err(|e| fail(format!("cannot decode: {e}")))
        }
        [FORMAT, k, ..] => Err(fail(format!("record kind {k}, expected {kind}"))),
        [format, ..] => Err(fail(format!("unknown format {format}"))),
        [] => Err(fail("truncated".to_owned())),
    }
}

impl RunRecord {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, MigrateError> {
        encode(KIND_RUN, self)
    }
}

impl CollectionProgress {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, MigrateError> {
        encode(KIND_PROGRESS, self)
    }
}

/// Every checkpoint record of the target (newest version of each key).
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    pub(crate) run: Option<RunRecord>,
    pub(crate) progress: BTreeMap<Vec<u8>, CollectionProgress>,
    /// Stored keys of superseded versions (to prune).
    pub(crate) stale: Vec<Vec<u8>>,
}

impl Checkpoint {
    /// Reads the checkpoint through the backend.
    pub(crate) async fn read(backend: &dyn StorageBackend) -> Result<Self, MigrateError> {
        let col = collection()?;
        let exists = backend
            .list_collections()
            .await
            .map_err(MigrateError::backend("list target collections"))?
            .contains(&col);
        let mut out = Self::default();
        if !exists {
            return Ok(out);
        }
        let mut current: Option<Vec<u8>> = None;
        let mut request = Some(ScanRequest::forward(KeyRange::all(), 1024));
        while let Some(req) = request.take() {
            let page = backend
                .scan(&col, &req)
                .await
                .map_err(MigrateError::backend("read the migration checkpoint"))?;
            request = req.next_page(&page);
            for (stored_key, stored) in page.entries {
                let vk = VersionedKey::from_stored(stored_key.clone()).map_err(|e| {
                    MigrateError::Checkpoint {
                        key: String::from_utf8_lossy(&stored_key).into_owned(),
                        reason: e.to_string(),
                    }
                })?;
                let user = vk.user_key().map_err(|e| MigrateError::Checkpoint {
                    key: String::from_utf8_lossy(&stored_key).into_owned(),
                    reason: e.to_string(),
                })?;
                if current.as_deref() == Some(&user[..]) {
                    out.stale.push(stored_key);
                    continue;
                }
                current = Some(user.clone());
                let fail = |reason: String| MigrateError::Checkpoint {
                    key: String::from_utf8_lossy(&user).into_owned(),
                    reason,
                };
                let bytes = match value::decode(MIGRATE_COLLECTION, vk.as_bytes(), &stored)
                    .map_err(|e| fail(e.to_string()))?
                {
                    Stored::Put(bytes) => bytes,
                    Stored::Tombstone => continue,
                };
                if user == RUN_KEY {
                    out.run = Some(decode(KIND_RUN, &user, &bytes)?);
                } else if user.starts_with(b"col/") {
                    out.progress
                        .insert(user.clone(), decode(KIND_PROGRESS, &user, &bytes)?);
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn progress_of(&self, collection: &CollectionName) -> CollectionProgress {
        self.progress
            .get(&progress_key(collection))
            .cloned()
            .unwrap_or_default()
    }
}

/// Adds a checkpoint record at `version` to `batch` (it replaces an entry of the same key and
/// version in place).
pub(crate) fn put_raw(
    batch: &mut WriteBatch,
    col: &CollectionName,
    key: &[u8],
    record: &[u8],
    version: Version,
) {
    let vk = EncodedKey::encode(key).into_versioned(version);
    let stored = value::encode(MIGRATE_COLLECTION, vk.as_bytes(), Some(record));
    batch.put(col, vk.into_bytes(), stored);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn golden_progress_record() {
        let p = CollectionProgress {
            rows: 3,
            bytes: 300,
            position: Some(b"k".to_vec()),
            done: false,
        };
        let bytes = p.encode().unwrap();
        // A change here is a change of the checkpoint format: bump FORMAT and keep reading 1.
        assert_eq!(bytes, b"ZMIG\x01\x02\x03\xac\x02\x01\x01k\x00");
        assert_eq!(
            decode::<CollectionProgress>(KIND_PROGRESS, b"col/x", &bytes).unwrap(),
            p
        );
        assert!(decode::<CollectionProgress>(KIND_RUN, b"col/x", &bytes).is_err());
        assert!(decode::<CollectionProgress>(KIND_PROGRESS, b"col/x", b"ZMIG\x02\x02").is_err());
        assert!(decode::<CollectionProgress>(KIND_PROGRESS, b"col/x", b"ZMI").is_err());
    }

    #[test]
    fn golden_run_record() {
        let r = RunRecord {
            source: "redb-file:/x".to_owned(),
            mode: Mode::RedbImport,
            source_version: None,
            fingerprint: [7; 32],
            collections: vec![],
            finished: true,
        };
        let bytes = r.encode().unwrap();
        let mut expected = b"ZMIG\x01\x01\x0credb-file:/x\x02\x00".to_vec();
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(b"\x00\x01");
        assert_eq!(bytes, expected);
        assert_eq!(decode::<RunRecord>(KIND_RUN, RUN_KEY, &bytes).unwrap(), r);
    }
}
