//! Online integrity check: every stored version and metadata record is decoded and its
//! checksum verified, streaming page by page, without trusting anything it reads.
//!
//! What [`Engine::verify`] checks:
//! - **every user collection**, every stored entry: the key is a well-formed versioned key
//!   (escaping, terminator, version), keys arrive in strictly ascending order (so the versions
//!   of one key strictly descend), the version is neither 0 nor above every version ever handed
//!   out (the oracle's lease), and the value passes its header and CRC32C check (which binds it
//!   to collection, key and version; a deletion marker must have an empty payload);
//! - **the metadata collection** (`__meta`): every record passes its checksum; the records the
//!   engine reads (version lease, GC floor, sequence leases) are 8-byte numbers, the GC floor
//!   is not above the version lease, sequence names are not empty;
//! - **the backend's own check** where it has one (redb: `check_integrity`, which also repairs
//!   what it can — a repaired store still counts as a problem), after the scan.
//!
//! It runs online: it holds a read transaction for its whole run, so garbage collection keeps
//! every version that snapshot can see, and it reports the live keys as of that snapshot.
//! Versions committed while it runs are checked too (they are stored data like any other).
//! A backend error while scanning a collection is reported as a problem at the last key read,
//! and the check goes on with the next collection.

use serde::Serialize;

use crate::backend::{BackendError, CollectionName, KeyRange, ScanRequest};
use crate::mvcc::engine::Engine;
use crate::mvcc::error::TxnError;
use crate::mvcc::keys::{Version, VersionedKey};
use crate::mvcc::meta::{GC_FLOOR, META_COLLECTION, SEQ_PREFIX, VERSION_LIMIT};
use crate::mvcc::value::{self, Stored};

/// Entries asked for per backend scan page.
const PAGE: usize = 1024;

/// One problem found by [`Engine::verify`].
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// Where.
    pub collection: String,
    /// The user key in hex when the stored key decodes, else the stored key in hex (full).
    pub key: String,
    /// Whether `key` is the stored (undecodable) key rather than the user key.
    pub key_is_stored: bool,
    /// The version, when the key decoded.
    pub version: Option<u64>,
    /// What failed.
    pub what: String,
}

/// Counts of one collection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CollectionCheck {
    /// The collection.
    pub name: String,
    /// Stored entries examined (versions, including deletion markers; records for `__meta`).
    pub entries: u64,
    /// Distinct user keys among them.
    pub keys: u64,
    /// Stored deletion markers.
    pub tombstones: u64,
    /// Keys with a value (not deleted) as of the check's snapshot.
    pub live_keys: u64,
    /// Entries that failed a check.
    pub bad: u64,
}

/// The result of [`Engine::verify`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// The snapshot the check held (its live-key counts are as of this version).
    pub snapshot_version: Version,
    /// Per collection (metadata last), in name order.
    pub collections: Vec<CollectionCheck>,
    /// Sequence lease records found in the metadata.
    pub sequences: u64,
    /// System collections not in the engine's format that were skipped (`__raft_log`, …).
    pub skipped_collections: Vec<String>,
    /// Every problem up to the requested maximum.
    pub problems: Vec<Problem>,
    /// All problems, including those not listed.
    pub problems_total: u64,
    /// The backend's own integrity check: `Some(true)` passed, `Some(false)` failed (or had to
    /// repair), `None` the backend has none.
    pub backend_check: Option<bool>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.problems_total == 0 && self.backend_check != Some(false)
    }

    /// Stored entries examined, over all collections.
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.collections.iter().map(|c| c.entries).sum()
    }

    fn problem(&mut self, max: usize, problem: Problem) {
        self.problems_total += 1;
        if self.problems.len() < max {
            self.problems.push(problem);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Engine {
    /// Checks every stored version of every collection, every metadata record, and runs the
    /// backend's own integrity check (see the [module docs](self) for the list). Reports
    /// problems instead of stopping at the first; keeps at most `max_problems` of them in the
    /// report (all are counted).
    ///
    /// # Errors
    ///
    /// Only errors that stop the check itself (the backend is closed, the collection list
    /// cannot be read); damaged data and failed scans are reported as problems.
    pub async fn verify(&self, max_problems: usize) -> Result<VerifyReport, TxnError> {
        let backend = &self.inner.backend;
        let snapshot = self.begin_read();
        let mut report = VerifyReport {
            snapshot_version: snapshot.version(),
            ..VerifyReport::default()
        };
        let mut names: Vec<CollectionName> = backend.list_collections().await?;
        names.sort();
        let mut meta = None;
        for name in names {
            if name.as_str() == META_COLLECTION {
                meta = Some(name);
            } else if name.is_system() {
                report.skipped_collections.push(name.to_string());
            } else {
                let check = self
                    .verify_collection(&name, snapshot.version(), max_problems, &mut report)
                    .await?;
                report.collections.push(check);
            }
        }
        match meta {
            Some(meta) => {
                let check = self.verify_meta(&meta, max_problems, &mut report).await?;
                report.collections.push(check);
            }
            None => report.problem(
                max_problems,
                Problem {
                    collection: META_COLLECTION.to_owned(),
                    key: String::new(),
                    key_is_stored: true,
                    version: None,
                    what: "the metadata collection is missing".to_owned(),
                },
            ),
        }
        // The backend's own check last, so the located problems of the scan come first (and
        // redb's check, which may repair, runs after the scan saw the data as it was).
        match backend.check_integrity().await {
            Ok(check) => report.backend_check = check,
            Err(e @ BackendError::Closed { .. }) => return Err(e.into()),
            Err(e) => {
                report.backend_check = Some(false);
                report.problem(
                    max_problems,
                    Problem {
                        collection: String::new(),
                        key: String::new(),
                        key_is_stored: true,
                        version: None,
                        what: format!("the backend's integrity check failed: {e}"),
                    },
                );
            }
        }
        drop(snapshot);
        Ok(report)
    }

    async fn verify_collection(
        &self,
        name: &CollectionName,
        snapshot: Version,
        max: usize,
        report: &mut VerifyReport,
    ) -> Result<CollectionCheck, TxnError> {
        let backend = &self.inner.backend;
        let mut limit = self.inner.oracle.version_limit().await;
        let mut check = CollectionCheck {
            name: name.to_string(),
            ..CollectionCheck::default()
        };
        let mut previous: Option<Vec<u8>> = None;
        // The encoded key being walked, and whether its visible version was decided.
        let mut current: Option<Vec<u8>> = None;
        let mut decided = false;
        let mut request = Some(ScanRequest::forward(KeyRange::all(), PAGE));
        while let Some(req) = request.take() {
            let page = match backend.scan(name, &req).await {
                Ok(page) => page,
                Err(e @ BackendError::Closed { .. }) => return Err(e.into()),
                Err(e) => {
                    check.bad += 1;
                    report.problem(
                        max,
                        Problem {
                            collection: name.to_string(),
                            key: previous.as_deref().map(hex).unwrap_or_default(),
                            key_is_stored: true,
                            version: None,
                            what: format!(
                                "reading the collection failed after this key (the rest of \
                                 the collection is not checked): {e}"
                            ),
                        },
                    );
                    break;
                }
            };
            request = req.next_page(&page);
            for (key, stored) in page.entries {
                check.entries += 1;
                let mut problems: Vec<(Option<Version>, String)> = Vec::new();
                if previous.as_deref().is_some_and(|p| p >= key.as_slice()) {
                    problems.push((
                        None,
                        "stored keys are out of order (not strictly ascending)".to_owned(),
                    ));
                }
                previous = Some(key.clone());
                match VersionedKey::from_stored(key.clone()) {
                    Err(e) => problems.push((None, format!("malformed versioned key: {e}"))),
                    Ok(vk) => {
                        let version = vk.version();
                        if current.as_deref() != Some(vk.encoded_part()) {
                            current = Some(vk.encoded_part().to_vec());
                            decided = false;
                            check.keys += 1;
                        }
                        if version == 0 {
                            problems.push((Some(0), "version 0 is never assigned".to_owned()));
                        } else if version > limit {
                            // A commit running concurrently may have leased further.
                            limit = self.inner.oracle.version_limit().await;
                            if version > limit {
                                problems.push((
                                    Some(version),
                                    format!(
                                        "version {version} is above every version ever handed \
                                         out ({limit})"
                                    ),
                                ));
                            }
                        }
                        match self
                            .inner
                            .codec
                            .decode_owned(name.as_str(), vk.as_bytes(), stored)
                        {
                            Ok(value) => {
                                let tombstone = matches!(value, Stored::Tombstone);
                                if tombstone {
                                    check.tombstones += 1;
                                }
                                if !decided && version <= snapshot {
                                    decided = true;
                                    if !tombstone {
                                        check.live_keys += 1;
                                    }
                                }
                            }
                            Err(e) => problems.push((Some(version), e.to_string())),
                        }
                        if !problems.is_empty() {
                            let user = vk.user_key().ok();
                            for (version, what) in problems.drain(..) {
                                report.problem(
                                    max,
                                    Problem {
                                        collection: name.to_string(),
                                        key: user.as_deref().map_or_else(|| hex(&key), hex),
                                        key_is_stored: user.is_none(),
                                        version,
                                        what,
                                    },
                                );
                            }
                            check.bad += 1;
                        }
                        continue;
                    }
                }
                check.bad += 1;
                for (version, what) in problems {
                    report.problem(
                        max,
                        Problem {
                            collection: name.to_string(),
                            key: hex(&key),
                            key_is_stored: true,
                            version,
                            what,
                        },
                    );
                }
            }
        }
        Ok(check)
    }

    async fn verify_meta(
        &self,
        name: &CollectionName,
        max: usize,
        report: &mut VerifyReport,
    ) -> Result<CollectionCheck, TxnError> {
        let backend = &self.inner.backend;
        let mut check = CollectionCheck {
            name: name.to_string(),
            ..CollectionCheck::default()
        };
        let (mut limit, mut floor) = (None, None);
        let mut request = Some(ScanRequest::forward(KeyRange::all(), PAGE));
        while let Some(req) = request.take() {
            let page = match backend.scan(name, &req).await {
                Ok(page) => page,
                Err(e @ BackendError::Closed { .. }) => return Err(e.into()),
                Err(e) => {
                    check.bad += 1;
                    report.problem(
                        max,
                        Problem {
                            collection: name.to_string(),
                            key: String::new(),
                            key_is_stored: true,
                            version: None,
                            what: format!("reading the metadata failed: {e}"),
                        },
                    );
                    break;
                }
            };
            request = req.next_page(&page);
            for (key, stored) in page.entries {
                check.entries += 1;
                check.keys += 1;
                let numeric =
                    key == VERSION_LIMIT || key == GC_FLOOR || key.starts_with(SEQ_PREFIX);
                let what = match value::decode(META_COLLECTION, &key, &stored) {
                    Err(e) => Some(e.to_string()),
                    Ok(Stored::Tombstone) if numeric => {
                        Some("metadata record is a deletion marker".to_owned())
                    }
                    Ok(Stored::Put(v)) if numeric && v.len() != 8 => Some(format!(
                        "metadata record holds {} bytes, expected an 8-byte number",
                        v.len()
                    )),
                    Ok(Stored::Put(v)) if numeric => {
                        let mut be = [0u8; 8];
                        be.copy_from_slice(&v);
                        let n = u64::from_be_bytes(be);
                        if key == VERSION_LIMIT {
                            limit = Some(n);
                        } else if key == GC_FLOOR {
                            floor = Some(n);
                        } else {
                            report.sequences += 1;
                        }
                        (key.len() == SEQ_PREFIX.len() && key.starts_with(SEQ_PREFIX))
                            .then(|| "sequence record without a name".to_owned())
                    }
                    // Records of other features (restore markers, key rings …): their
                    // checksum is all this check knows about them.
                    Ok(_) => None,
                };
                if let Some(what) = what {
                    check.bad += 1;
                    report.problem(
                        max,
                        Problem {
                            collection: name.to_string(),
                            key: hex(&key),
                            key_is_stored: true,
                            version: None,
                            what,
                        },
                    );
                }
            }
        }
        if let (Some(limit), Some(floor)) = (limit, floor)
            && floor > limit
        {
            check.bad += 1;
            report.problem(
                max,
                Problem {
                    collection: name.to_string(),
                    key: hex(GC_FLOOR),
                    key_is_stored: true,
                    version: None,
                    what: format!("the GC floor {floor} is above the version lease {limit}"),
                },
            );
        }
        Ok(check)
    }
}
