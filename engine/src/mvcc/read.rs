//! Reading committed data at a version: point reads and ordered scans over versioned keys.

use std::ops::Bound;

use crate::backend::{
    CollectionName, Direction, KeyPreview, KeyRange, ScanRequest, StorageBackend,
};
use crate::crypto::ValueCodec;
use crate::mvcc::error::TxnError;
use crate::mvcc::keys::{EncodedKey, Version, VersionedKey, backend_range};
use crate::mvcc::value::Stored;

fn not_found_or(e: crate::BackendError) -> TxnError {
    match e {
        crate::BackendError::CollectionNotFound { collection } => {
            TxnError::CollectionNotFound { collection }
        }
        other => TxnError::Backend(other),
    }
}

fn corrupted(
    collection: &CollectionName,
    key: &[u8],
    version: Version,
    reason: String,
) -> TxnError {
    TxnError::Corrupted {
        collection: collection.clone(),
        key: KeyPreview::of(key),
        version,
        reason,
    }
}

/// Decodes one backend entry into (versioned key, stored value), verifying its checksum.
pub(crate) fn decode_entry(
    codec: &ValueCodec,
    collection: &CollectionName,
    key: Vec<u8>,
    stored: Vec<u8>,
) -> Result<(VersionedKey, Stored), TxnError> {
    let vk =
        VersionedKey::from_stored(key).map_err(|e| corrupted(collection, &[], 0, e.to_string()))?;
    let value = codec
        .decode_owned(collection.as_str(), vk.as_bytes(), stored)
        .map_err(|e| {
            let user = vk.user_key().unwrap_or_default();
            crate::crypto::value_error(e, collection, &user, vk.version())
        })?;
    Ok((vk, value))
}

/// The value of `key` as of `version` (the newest version ≤ `version`; `None` if absent or
/// deleted then).
pub(crate) async fn get_at(
    backend: &dyn StorageBackend,
    codec: &ValueCodec,
    collection: &CollectionName,
    key: &[u8],
    version: Version,
) -> Result<Option<Vec<u8>>, TxnError> {
    let encoded = EncodedKey::encode(key);
    // One buffer holds both bounds: `encoded ‖ !version` and `encoded ‖ !0`.
    let bound_len = encoded.as_bytes().len() + 8;
    let mut bounds = Vec::with_capacity(2 * bound_len);
    encoded.write_at(version, &mut bounds);
    encoded.write_at(0, &mut bounds);
    let (start, end) = bounds.split_at(bound_len);
    let found = backend
        .seek(collection, start, end)
        .await
        .map_err(not_found_or)?;
    let Some((stored_key, stored)) = found else {
        return Ok(None);
    };
    let (vk, value) = decode_entry(codec, collection, stored_key, stored)?;
    if vk.encoded_part() != encoded.as_bytes() || vk.version() > version {
        // The backend returned a key outside the requested range: a broken backend.
        return Err(corrupted(
            collection,
            key,
            vk.version(),
            "backend returned a key outside the requested version range".to_owned(),
        ));
    }
    Ok(match value {
        Stored::Put(v) => Some(v),
        Stored::Tombstone => None,
    })
}

/// One page of visible entries of a user-key range as of `version`.
///
/// Returns at most `limit` visible (key, value) pairs in `direction` order, and whether the
/// page was cut by the limit (there may be more).
pub(crate) async fn scan_at(
    backend: &dyn StorageBackend,
    codec: &ValueCodec,
    collection: &CollectionName,
    range: &KeyRange,
    direction: Direction,
    limit: usize,
    version: Version,
) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, bool), TxnError> {
    let mut out = Vec::new();
    if limit == 0 || range.is_empty_by_bounds() {
        return Ok((out, false));
    }
    let (start, end) = range.as_slices();
    let (bstart, bend) = backend_range(start, end);
    // Versions of one key are adjacent; read somewhat more than `limit` entries per page so a
    // few old versions per key do not cost extra round trips.
    // With one version per key (the common case after GC) `limit` entries decide `limit`
    // keys forward; reverse needs one more entry to close the last key.
    let page_size = match direction {
        Direction::Forward => limit,
        Direction::Reverse => limit + 1,
    }
    .clamp(1, 4096);
    let mut request = Some(ScanRequest {
        range: KeyRange::new(bstart, bend),
        direction,
        limit: page_size,
    });
    // Forward: the first entry of each key with version ≤ `version` decides it.
    // Reverse: versions arrive oldest first, so the last entry ≤ `version` before the key
    // changes decides it.
    let mut current: Option<Vec<u8>> = None; // encoded key being decided or skipped
    let mut candidate: Option<(Vec<u8>, Stored)> = None; // reverse: best version so far
    while let Some(req) = request.take() {
        let page = backend.scan(collection, &req).await.map_err(not_found_or)?;
        request = req.next_page(&page);
        for (stored_key, stored) in page.entries {
            let (vk, value) = decode_entry(codec, collection, stored_key, stored)?;
            let same_key = current.as_deref() == Some(vk.encoded_part());
            match direction {
                Direction::Forward => {
                    if same_key || vk.version() > version {
                        continue;
                    }
                    current = Some(vk.encoded_part().to_vec());
                    if let Stored::Put(v) = value {
                        out.push((user_key(collection, &vk)?, v));
                        if out.len() == limit {
                            return Ok((out, true));
                        }
                    }
                }
                Direction::Reverse => {
                    if !same_key {
                        if let Some((k, Stored::Put(v))) = candidate.take() {
                            out.push((k, v));
                            if out.len() == limit {
                                return Ok((out, true));
                            }
                        }
                        candidate = None;
                        current = Some(vk.encoded_part().to_vec());
                    }
                    if vk.version() <= version {
                        candidate = Some((user_key(collection, &vk)?, value));
                    }
                }
            }
        }
    }
    if let Some((k, Stored::Put(v))) = candidate.take() {
        out.push((k, v));
        if out.len() == limit {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

fn user_key(collection: &CollectionName, vk: &VersionedKey) -> Result<Vec<u8>, TxnError> {
    vk.user_key()
        .map_err(|e| corrupted(collection, &[], vk.version(), e.to_string()))
}

/// The user-level range still to scan after a page that ended at `last` (exclusive).
pub(crate) fn resume_after(range: &KeyRange, direction: Direction, last: &[u8]) -> KeyRange {
    match direction {
        Direction::Forward => KeyRange::new(Bound::Excluded(last.to_vec()), range.end.clone()),
        Direction::Reverse => KeyRange::new(range.start.clone(), Bound::Excluded(last.to_vec())),
    }
}
