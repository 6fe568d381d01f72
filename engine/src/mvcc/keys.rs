//! The MVCC key encoding: one module, one type per representation.
//!
//! A user key `k` written at commit version `v` is stored in the backend under
//!
//! ```text
//! escape(k) ‖ 0x00 0x01 ‖ be64(u64::MAX − v)
//! ```
//!
//! - `escape` doubles every `0x00` byte as `0x00 0xFF`, and `0x00 0x01` terminates the key, so
//!   the encoded user key is *memcomparable*: comparing encodings bytewise gives the same order
//!   as comparing user keys, and no encoded key is a prefix of another. (Raw `k ‖ v` sorts wrong
//!   when one key is a prefix of another: `a‖v` vs `aa‖v`.)
//! - The version is stored inverted, so the versions of one key sort newest first and "the newest
//!   version ≤ `r`" is the first entry at or after `escape(k) ‖ 0x00 0x01 ‖ be64(u64::MAX − r)`:
//!   one forward seek.
//!
//! Types: [`UserKey`] is what callers pass (any bytes, 1..=[`MAX_USER_KEY_LEN`]);
//! [`EncodedKey`] is the escaped, terminated form (one per user key); [`VersionedKey`] is what
//! the backend stores. Conversions between them live here and nowhere else.

use std::ops::Bound;

use crate::limits::MAX_KEY_LEN;

/// A commit version. Version 0 is "before the first commit"; commits start at 1.
pub type Version = u64;

const ESCAPE: u8 = 0xFF;
const TERMINATOR: [u8; 2] = [0x00, 0x01];
const VERSION_LEN: usize = 8;
/// Bytes the encoding adds to a user key besides escapes: terminator + version.
const OVERHEAD: usize = TERMINATOR.len() + VERSION_LEN;

/// The longest user key the MVCC layer accepts, in bytes: the longest key whose encoding fits
/// the backend key limit even if every byte is `0x00` (each of which doubles).
pub const MAX_USER_KEY_LEN: usize = (MAX_KEY_LEN - OVERHEAD) / 2;

/// A user key borrowed from the caller. Validity (non-empty, at most [`MAX_USER_KEY_LEN`]) is
/// checked by the transaction layer before encoding.
pub type UserKey<'a> = &'a [u8];

/// An escaped, terminated user key: memcomparable, and never a prefix of another `EncodedKey`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncodedKey(Vec<u8>);

/// A backend key: an [`EncodedKey`] followed by the inverted big-endian version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionedKey(Vec<u8>);

/// A stored key that does not decode (written by something else, or corrupted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored key is not a valid MVCC key: {reason}")]
pub struct KeyDecodeError {
    /// What is wrong.
    pub reason: &'static str,
}

impl EncodedKey {
    /// Escapes and terminates `key`.
    #[must_use]
    pub fn encode(key: UserKey<'_>) -> Self {
        let zeros = key.iter().filter(|&&b| b == 0).count();
        let mut out = Vec::with_capacity(key.len() + zeros + OVERHEAD);
        for &b in key {
            out.push(b);
            if b == 0 {
                out.push(ESCAPE);
            }
        }
        out.extend_from_slice(&TERMINATOR);
        Self(out)
    }

    /// The encoded bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Decodes back to the user key.
    ///
    /// # Errors
    ///
    /// [`KeyDecodeError`] if the bytes are not a valid encoding.
    pub fn decode(&self) -> Result<Vec<u8>, KeyDecodeError> {
        let (user, rest) = split_encoded(&self.0)?;
        if !rest.is_empty() {
            return Err(KeyDecodeError {
                reason: "bytes after the terminator",
            });
        }
        Ok(user)
    }

    /// This key at `version`.
    #[must_use]
    pub fn at(&self, version: Version) -> VersionedKey {
        let mut out = Vec::with_capacity(self.0.len() + VERSION_LEN);
        out.extend_from_slice(&self.0);
        out.extend_from_slice(&(u64::MAX - version).to_be_bytes());
        VersionedKey(out)
    }

    /// Appends this key at `version` to `out` (no allocation of its own).
    pub fn write_at(&self, version: Version, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
        out.extend_from_slice(&(u64::MAX - version).to_be_bytes());
    }

    /// This key at `version`, reusing the allocation (the encoding reserves room for it).
    #[must_use]
    pub fn into_versioned(mut self, version: Version) -> VersionedKey {
        self.0
            .extend_from_slice(&(u64::MAX - version).to_be_bytes());
        VersionedKey(self.0)
    }

    /// The backend range holding every version of this key ≤ `read_version`, newest first.
    #[must_use]
    pub fn versions_up_to(&self, read_version: Version) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        (
            Bound::Included(self.at(read_version).0),
            Bound::Included(self.at(0).0),
        )
    }

    /// The smallest backend key of this user key (its newest possible version).
    #[must_use]
    pub fn first_versioned(&self) -> VersionedKey {
        self.at(Version::MAX)
    }

    /// The largest backend key of this user key (version 0).
    #[must_use]
    pub fn last_versioned(&self) -> VersionedKey {
        self.at(0)
    }
}

/// Checks that `bytes` is exactly one escaped, terminated key, without allocating.
fn check_encoded(bytes: &[u8]) -> Result<(), KeyDecodeError> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != 0 {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(&ESCAPE) => i += 2,
            Some(&0x01) if i + 2 == bytes.len() => return Ok(()),
            Some(&0x01) => {
                return Err(KeyDecodeError {
                    reason: "bytes between the terminator and the version",
                });
            }
            _ => {
                return Err(KeyDecodeError {
                    reason: "0x00 not followed by 0xFF or 0x01",
                });
            }
        }
    }
    Err(KeyDecodeError {
        reason: "missing terminator",
    })
}

/// Splits `bytes` into (decoded user key, bytes after the terminator).
fn split_encoded(bytes: &[u8]) -> Result<(Vec<u8>, &[u8]), KeyDecodeError> {
    let mut user = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != 0 {
            user.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(&ESCAPE) => {
                user.push(0);
                i += 2;
            }
            Some(&0x01) => return Ok((user, &bytes[i + 2..])),
            _ => {
                return Err(KeyDecodeError {
                    reason: "0x00 not followed by 0xFF or 0x01",
                });
            }
        }
    }
    Err(KeyDecodeError {
        reason: "missing terminator",
    })
}

impl VersionedKey {
    /// Wraps bytes read from the backend, checking their shape.
    ///
    /// # Errors
    ///
    /// [`KeyDecodeError`] if the bytes are not `EncodedKey ‖ version`.
    pub fn from_stored(bytes: Vec<u8>) -> Result<Self, KeyDecodeError> {
        if bytes.len() < OVERHEAD {
            return Err(KeyDecodeError {
                reason: "shorter than terminator and version",
            });
        }
        let key = Self(bytes);
        check_encoded(key.encoded_part())?;
        Ok(key)
    }

    /// The backend bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Consumes the key, yielding the backend bytes.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The encoded user key part (everything before the version).
    #[must_use]
    pub fn encoded_part(&self) -> &[u8] {
        &self.0[..self.0.len() - VERSION_LEN]
    }

    /// The encoded user key.
    #[must_use]
    pub fn encoded(&self) -> EncodedKey {
        EncodedKey(self.encoded_part().to_vec())
    }

    /// The commit version.
    #[must_use]
    pub fn version(&self) -> Version {
        let mut be = [0u8; VERSION_LEN];
        be.copy_from_slice(&self.0[self.0.len() - VERSION_LEN..]);
        u64::MAX - u64::from_be_bytes(be)
    }

    /// The user key.
    ///
    /// # Errors
    ///
    /// Never for keys built by [`EncodedKey::at`] or accepted by [`VersionedKey::from_stored`].
    pub fn user_key(&self) -> Result<Vec<u8>, KeyDecodeError> {
        split_encoded(self.encoded_part()).map(|(user, _)| user)
    }
}

/// Splits a stored key into (encoded user key, version) without allocating; `None` if it is
/// too short to be a versioned key. Does not validate the escaping.
#[must_use]
pub fn split_versioned(stored: &[u8]) -> Option<(&[u8], Version)> {
    if stored.len() < OVERHEAD {
        return None;
    }
    let (encoded, version) = stored.split_at(stored.len() - VERSION_LEN);
    let mut be = [0u8; VERSION_LEN];
    be.copy_from_slice(version);
    Some((encoded, u64::MAX - u64::from_be_bytes(be)))
}

/// Translates a range of user keys into the range of backend keys holding all their versions.
#[must_use]
pub fn backend_range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = match start {
        Bound::Included(k) => Bound::Included(EncodedKey::encode(k).first_versioned().0),
        Bound::Excluded(k) => Bound::Excluded(EncodedKey::encode(k).last_versioned().0),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match end {
        Bound::Included(k) => Bound::Included(EncodedKey::encode(k).last_versioned().0),
        Bound::Excluded(k) => Bound::Excluded(EncodedKey::encode(k).first_versioned().0),
        Bound::Unbounded => Bound::Unbounded,
    };
    (start, end)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(0xFF), any::<u8>()],
            0..6,
        )
    }

    #[test]
    fn prefix_keys_sort_like_user_keys() {
        // Raw concatenation gets this wrong: "a" at any version must sort before "aa".
        let a = EncodedKey::encode(b"a").at(u64::MAX - 1);
        let aa = EncodedKey::encode(b"aa").at(1);
        assert!(a < aa);
        let a0 = EncodedKey::encode(b"a\x00").at(5);
        assert!(EncodedKey::encode(b"a").at(0) < a0);
        assert!(a0 < EncodedKey::encode(b"a\x01").at(u64::MAX));
    }

    #[test]
    fn zero_and_ff_bytes_round_trip() {
        for k in [
            &b"\x00"[..],
            b"\x00\x00",
            b"\xff",
            b"\x00\xff\x01",
            b"\x01\x00",
            b"abc",
        ] {
            let enc = EncodedKey::encode(k);
            assert_eq!(enc.decode().unwrap(), k);
            let vk = enc.at(42);
            assert_eq!(vk.version(), 42);
            assert_eq!(vk.user_key().unwrap(), k);
            let back = VersionedKey::from_stored(vk.as_bytes().to_vec()).unwrap();
            assert_eq!(back, vk);
        }
    }

    #[test]
    fn newer_versions_sort_first() {
        let k = EncodedKey::encode(b"k");
        assert!(k.at(10) < k.at(9));
        assert!(k.first_versioned() <= k.at(1));
        assert!(k.at(1) < k.last_versioned());
    }

    #[test]
    fn max_user_key_fits_the_backend_even_all_zero() {
        let worst = vec![0u8; MAX_USER_KEY_LEN];
        assert!(EncodedKey::encode(&worst).at(7).as_bytes().len() <= MAX_KEY_LEN);
        assert_eq!(MAX_USER_KEY_LEN, 32_762);
    }

    #[test]
    fn malformed_stored_keys_are_errors() {
        assert!(VersionedKey::from_stored(vec![1, 2, 3]).is_err());
        assert!(VersionedKey::from_stored(vec![b'a', 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(VersionedKey::from_stored(vec![b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn order_is_preserved(a in key(), b in key(), va in any::<u64>(), vb in any::<u64>()) {
            let (ea, eb) = (EncodedKey::encode(&a).at(va), EncodedKey::encode(&b).at(vb));
            if a != b {
                prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            } else {
                prop_assert_eq!(vb.cmp(&va), ea.cmp(&eb));
            }
            prop_assert_eq!(ea.user_key().unwrap(), a);
            prop_assert_eq!(ea.version(), va);
        }

        #[test]
        fn backend_range_contains_exactly_the_user_range(
            k in key(), lo in key(), hi in key(), v in any::<u64>(), kinds in (0..3u8, 0..3u8)
        ) {
            fn bound(kind: u8, x: &[u8]) -> Bound<&[u8]> {
                match kind {
                    0 => Bound::Included(x),
                    1 => Bound::Excluded(x),
                    _ => Bound::Unbounded,
                }
            }
            let (s, e) = (bound(kinds.0, &lo), bound(kinds.1, &hi));
            let user = crate::KeyRange::new(s.map(<[u8]>::to_vec), e.map(<[u8]>::to_vec));
            let (bs, be) = backend_range(s, e);
            let stored = crate::KeyRange::new(bs, be);
            prop_assert_eq!(user.contains(&k), stored.contains(EncodedKey::encode(&k).at(v).as_bytes()));
        }
    }
}
