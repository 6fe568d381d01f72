//! Online integrity check: every stored version and metadata record is decoded and its
//! checksum verified, streaming, without trusting anything it reads.

use serde::Serialize;

use crate::backend::{CollectionName, KeyPreview, KeyRange, ScanRequest};
use crate::mvcc::engine::Engine;
use crate::mvcc::error::TxnError;
use crate::mvcc::keys::VersionedKey;
use crate::mvcc::meta::META_COLLECTION;
use crate::mvcc::value::{self, Stored};

/// One problem found by [`Engine::verify`].
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// Where.
    pub collection: String,
    /// The stored key (preview).
    pub key: String,
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
    /// Stored entries examined.
    pub entries: u64,
    /// Entries that failed a check.
    pub bad: u64,
}

/// The result of [`Engine::verify`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Per collection (metadata included), in name order.
    pub collections: Vec<CollectionCheck>,
    /// Every problem up to the requested maximum.
    pub problems: Vec<Problem>,
    /// All problems, including those not listed.
    pub problems_total: u64,
    /// The backend's own integrity check: `Some(true)` passed, `Some(false)` failed, `None`
    /// the backend has none.
    pub backend_check: Option<bool>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.problems_total == 0 && self.backend_check != Some(false)
    }
}

impl Engine {
    /// Checks every stored version of every collection (key structure, value checksum,
    /// versions not above the oracle's lease) and every metadata record, plus the backend's
    /// own integrity check. Reports problems instead of stopping at the first; keeps at most
    /// `max_problems` of them in the report.
    ///
    /// # Errors
    ///
    /// Backend errors that stop the scan itself (I/O); damaged data is reported, not raised.
    pub async fn verify(&self, max_problems: usize) -> Result<VerifyReport, TxnError> {
        let backend = &self.inner.backend;
        let mut report = VerifyReport {
            backend_check: backend.check_integrity().await?,
            ..VerifyReport::default()
        };
        let limit = self.inner.oracle.version_limit().await;
        let mut names: Vec<CollectionName> = backend.list_collections().await?;
        names.sort();
        for name in names {
            let is_meta = name.as_str() == META_COLLECTION;
            if name.is_system() && !is_meta {
                continue;
            }
            let mut check = CollectionCheck {
                name: name.to_string(),
                ..CollectionCheck::default()
            };
            let mut request = Some(ScanRequest::forward(KeyRange::all(), 1024));
            while let Some(req) = request.take() {
                let page = backend.scan(&name, &req).await?;
                request = req.next_page(&page);
                for (key, stored) in page.entries {
                    check.entries += 1;
                    let problem = if is_meta {
                        match value::decode(META_COLLECTION, &key, &stored) {
                            Ok(Stored::Put(v)) if v.len() == 8 => None,
                            Ok(_) => {
                                Some((None, "metadata record has an unexpected shape".to_owned()))
                            }
                            Err(e) => Some((None, e.to_string())),
                        }
                    } else {
                        check_version(&self.inner.codec, &name, &key, stored, limit)
                    };
                    if let Some((version, what)) = problem {
                        check.bad += 1;
                        report.problems_total += 1;
                        if report.problems.len() < max_problems {
                            report.problems.push(Problem {
                                collection: name.to_string(),
                                key: KeyPreview::of(&key).to_string(),
                                version,
                                what,
                            });
                        }
                    }
                }
            }
            report.collections.push(check);
        }
        Ok(report)
    }
}

fn check_version(
    codec: &crate::crypto::ValueCodec,
    collection: &CollectionName,
    key: &[u8],
    stored: Vec<u8>,
    limit: u64,
) -> Option<(Option<u64>, String)> {
    let vk = match VersionedKey::from_stored(key.to_vec()) {
        Ok(vk) => vk,
        Err(e) => return Some((None, e.to_string())),
    };
    let version = vk.version();
    if version > limit {
        return Some((
            Some(version),
            format!("version {version} is above every version ever handed out ({limit})"),
        ));
    }
    match codec.decode_owned(collection.as_str(), vk.as_bytes(), stored) {
        Ok(_) => None,
        Err(e) => Some((Some(version), e.to_string())),
    }
}
