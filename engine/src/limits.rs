//! Input limits of the backend contract, and the checks that enforce them.
//!
//! Every backend runs these checks before it hands anything to its engine: bad input must become
//! a typed [`BackendError`], never an engine panic. The limits are the intersection of what every
//! supported engine accepts:
//!
//! | limit | value | why |
//! |---|---|---|
//! | key length | 1..=[`MAX_KEY_LEN`] (65,535) bytes | fjall stores key lengths as `u16`; fjall 3.1.13 writes an **empty** key to its journal and then panics on every later open, bricking the database |
//! | value length | 0..=[`MAX_VALUE_LEN`] (3 GiB) bytes | redb's per-value limit; fjall allows 4 GiB |
//! | collection name | see [`CollectionName`] | fjall keyspace names are 1..=255 bytes |
//!
//! The MVCC layer stores versioned keys, so the user-visible key limit of a transaction is smaller
//! than [`MAX_KEY_LEN`]; that layer documents its own limit.

use crate::backend::{BackendError, CollectionName, KeyPreview, KeyProblem};

/// Longest key a backend accepts, in bytes.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

/// Longest value a backend accepts, in bytes (3 GiB).
pub const MAX_VALUE_LEN: u64 = 3 * 1024 * 1024 * 1024;

/// Longest collection name, in bytes.
pub const MAX_COLLECTION_NAME_LEN: usize = 128;

/// Collection names starting with this prefix belong to zcore-storage itself (MVCC metadata,
/// sequences, the Raft log). [`CollectionName::new`] refuses them; internal code uses
/// [`CollectionName::system`].
pub const SYSTEM_COLLECTION_PREFIX: &str = "__";

/// Largest page a single scan call may ask for. Bigger requests are an error, so that one call
/// can never materialise an unbounded range in memory.
pub const MAX_SCAN_LIMIT: usize = 1 << 20;

/// Checks a key against the backend key limits.
///
/// # Errors
///
/// [`BackendError::InvalidKey`] naming the collection and the problem.
pub fn check_key(collection: &CollectionName, key: &[u8]) -> Result<(), BackendError> {
    let problem = if key.is_empty() {
        KeyProblem::Empty
    } else if key.len() > MAX_KEY_LEN {
        KeyProblem::TooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        }
    } else {
        return Ok(());
    };
    Err(BackendError::InvalidKey {
        collection: collection.clone(),
        problem,
    })
}

/// Checks a value against the backend value limit.
///
/// # Errors
///
/// [`BackendError::ValueTooLarge`] naming the collection and (a preview of) the key.
pub fn check_value(
    collection: &CollectionName,
    key: &[u8],
    value: &[u8],
) -> Result<(), BackendError> {
    let len = value.len() as u64;
    if len > MAX_VALUE_LEN {
        return Err(BackendError::ValueTooLarge {
            collection: collection.clone(),
            key: KeyPreview::of(key),
            len,
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// Checks a scan page limit.
///
/// # Errors
///
/// [`BackendError::InvalidScanLimit`] for 0 or more than [`MAX_SCAN_LIMIT`].
pub fn check_scan_limit(limit: usize) -> Result<(), BackendError> {
    if limit == 0 || limit > MAX_SCAN_LIMIT {
        return Err(BackendError::InvalidScanLimit {
            limit,
            max: MAX_SCAN_LIMIT,
        });
    }
    Ok(())
}
