//! Records the engine keeps in its system collection `__meta` (not versioned): the oracle's
//! last committed version, the GC floor, and sequence leases. Values use the checksummed value
//! format, so a damaged record is reported, never trusted.

use crate::backend::{CollectionName, KeyPreview, StorageBackend};
use crate::mvcc::error::TxnError;
use crate::mvcc::value::{self, Stored};

/// Name of the engine's metadata collection.
pub const META_COLLECTION: &str = "__meta";

/// Versions up to this value may have been handed out; the oracle resumes here after a
/// restart. Leased ahead in blocks so commits do not write it.
pub(crate) const VERSION_LIMIT: &[u8] = b"oracle.version_limit";
/// How many versions one durable lease covers.
pub(crate) const VERSION_LEASE: u64 = 1 << 16;
pub(crate) const GC_FLOOR: &[u8] = b"gc.floor";
pub(crate) const SEQ_PREFIX: &[u8] = b"seq.";

pub(crate) fn encode_u64(key: &[u8], n: u64) -> Vec<u8> {
    value::encode(META_COLLECTION, key, Some(&n.to_be_bytes()))
}

pub(crate) async fn read_u64(
    backend: &dyn StorageBackend,
    meta: &CollectionName,
    key: &[u8],
) -> Result<Option<u64>, TxnError> {
    let Some(stored) = backend.get(meta, key).await? else {
        return Ok(None);
    };
    let corrupted = |reason: String| TxnError::Corrupted {
        collection: meta.clone(),
        key: KeyPreview::of(key),
        version: 0,
        reason,
    };
    match value::decode(META_COLLECTION, key, &stored).map_err(|e| corrupted(e.to_string()))? {
        Stored::Put(bytes) => {
            let arr: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| corrupted(format!("expected 8 bytes, found {}", bytes.len())))?;
            Ok(Some(u64::from_be_bytes(arr)))
        }
        Stored::Tombstone => Err(corrupted("unexpected tombstone".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_name_is_a_valid_system_name() {
        assert!(CollectionName::system(META_COLLECTION).is_ok());
    }
}
