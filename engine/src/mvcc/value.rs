//! The stored value format of a version.
//!
//! ```text
//! byte 0      header: format (high nibble, 1) | kind (low nibble: 0 put, 1 tombstone)
//! bytes 1..5  crc32c (little endian) over collection ‖ 0x00 ‖ versioned key ‖ header ‖ payload
//! bytes 5..   payload (the user value; empty for a tombstone)
//! ```
//!
//! The checksum binds the value to the collection, user key and version it was written for, so
//! a flipped bit, a torn write, or a value moved to another key is detected on read as
//! [`ValueDecodeError`] instead of being returned as data. Later formats (encryption) take new
//! values of the format nibble; readers refuse formats they do not know.

/// Format nibble of this encoding.
pub const FORMAT_V1: u8 = 1;
const KIND_PUT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
/// Header + checksum bytes before the payload.
pub const VALUE_OVERHEAD: usize = 5;

/// A decoded version: a value or a deletion marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The key had this value at this version.
    Put(Vec<u8>),
    /// The key was deleted at this version.
    Tombstone,
}

/// A stored value that failed to decode or verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueDecodeError {
    /// Shorter than the fixed header.
    #[error("stored value is truncated ({len} bytes)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// Unknown format or kind.
    #[error("stored value has unknown header byte {header:#04x}")]
    UnknownHeader {
        /// The header byte.
        header: u8,
    },
    /// The checksum does not match.
    #[error("stored value checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        /// Checksum in the record.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
}

fn checksum(collection: &str, versioned_key: &[u8], header: u8, payload: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(collection.as_bytes());
    crc = crc32c::crc32c_append(crc, &[0]);
    crc = crc32c::crc32c_append(crc, versioned_key);
    crc = crc32c::crc32c_append(crc, &[header]);
    crc32c::crc32c_append(crc, payload)
}

/// Encodes a version's value (`None` = tombstone) for `collection` / `versioned_key`.
#[must_use]
pub fn encode(collection: &str, versioned_key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let (kind, payload) = match value {
        Some(v) => (KIND_PUT, v),
        None => (KIND_TOMBSTONE, &[][..]),
    };
    let header = (FORMAT_V1 << 4) | kind;
    let crc = checksum(collection, versioned_key, header, payload);
    let mut out = Vec::with_capacity(VALUE_OVERHEAD + payload.len());
    out.push(header);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes and verifies a stored value.
///
/// # Errors
///
/// [`ValueDecodeError`] on truncation, an unknown header, or a checksum mismatch.
pub fn decode(
    collection: &str,
    versioned_key: &[u8],
    stored: &[u8],
) -> Result<Stored, ValueDecodeError> {
    let kind = verify(collection, versioned_key, stored)?;
    Ok(if kind == KIND_PUT {
        Stored::Put(stored[VALUE_OVERHEAD..].to_vec())
    } else {
        Stored::Tombstone
    })
}

/// Checks header and checksum; returns the kind.
fn verify(collection: &str, versioned_key: &[u8], stored: &[u8]) -> Result<u8, ValueDecodeError> {
    let Some((&header, rest)) = stored.split_first() else {
        return Err(ValueDecodeError::Truncated { len: 0 });
    };
    if rest.len() < VALUE_OVERHEAD - 1 {
        return Err(ValueDecodeError::Truncated { len: stored.len() });
    }
    let (crc_bytes, payload) = rest.split_at(VALUE_OVERHEAD - 1);
    let mut le = [0u8; 4];
    le.copy_from_slice(crc_bytes);
    let stored_crc = u32::from_le_bytes(le);
    let kind = match (header >> 4, header & 0x0F) {
        (FORMAT_V1, KIND_PUT) => KIND_PUT,
        (FORMAT_V1, KIND_TOMBSTONE) if payload.is_empty() => KIND_TOMBSTONE,
        _ => return Err(ValueDecodeError::UnknownHeader { header }),
    };
    let computed = checksum(collection, versioned_key, header, payload);
    if computed != stored_crc {
        return Err(ValueDecodeError::ChecksumMismatch {
            stored: stored_crc,
            computed,
        });
    }
    Ok(kind)
}

/// [`decode`], reusing `stored`'s allocation for the returned value.
///
/// # Errors
///
/// As [`decode`].
pub fn decode_owned(
    collection: &str,
    versioned_key: &[u8],
    mut stored: Vec<u8>,
) -> Result<Stored, ValueDecodeError> {
    let kind = verify(collection, versioned_key, &stored)?;
    Ok(if kind == KIND_PUT {
        stored.drain(..VALUE_OVERHEAD);
        Stored::Put(stored)
    } else {
        Stored::Tombstone
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_golden_bytes() {
        let enc = encode(
            "users",
            b"k\x00\x01\xff\xff\xff\xff\xff\xff\xff\xfe",
            Some(b"v"),
        );
        // Golden: format 1 put, then crc32c, then the payload. A change here is a format change.
        assert_eq!(enc[0], 0x10);
        assert_eq!(&enc[5..], b"v");
        assert_eq!(
            decode("users", b"k\x00\x01\xff\xff\xff\xff\xff\xff\xff\xfe", &enc),
            Ok(Stored::Put(b"v".to_vec()))
        );
        let tomb = encode("users", b"key", None);
        assert_eq!(tomb.len(), VALUE_OVERHEAD);
        assert_eq!(decode("users", b"key", &tomb), Ok(Stored::Tombstone));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let enc = encode("c", b"key", Some(b"some value"));
        for byte in 0..enc.len() {
            for bit in 0..8 {
                let mut bad = enc.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode("c", b"key", &bad).is_err(),
                    "flip {byte}:{bit} undetected"
                );
            }
        }
    }

    #[test]
    fn value_bound_to_its_key_and_collection() {
        let enc = encode("c", b"key1", Some(b"v"));
        assert!(decode("c", b"key2", &enc).is_err());
        assert!(decode("d", b"key1", &enc).is_err());
        assert!(decode("c", b"key1", &enc[..3]).is_err());
        assert!(decode("c", b"key1", &[]).is_err());
        assert_eq!(
            decode_owned("c", b"key1", enc),
            Ok(Stored::Put(b"v".to_vec()))
        );
    }
}
