//! The stored value format of a version.
//!
//! Format 1 (plain):
//!
//! ```text
//! byte 0      header: format (high nibble, 1) | kind (low nibble: 0 put, 1 tombstone)
//! bytes 1..5  crc32c (little endian) over collection ‖ 0x00 ‖ versioned key ‖ header ‖ payload
//! bytes 5..   payload (the user value; empty for a tombstone)
//! ```
//!
//! Format 2 (sealed, [encryption at rest](crate::crypto)):
//!
//! ```text
//! byte 0       header: format (high nibble, 2) | kind (low nibble: 0 put, 1 tombstone)
//! bytes 1..5   crc32c (little endian) over collection ‖ 0x00 ‖ versioned key ‖ header ‖ bytes 5..
//! bytes 5..9   key id (big endian u32)
//! bytes 9..33  nonce (24 random bytes)
//! bytes 33..   XChaCha20-Poly1305 ciphertext of the value ‖ 16-byte tag
//!              (a tombstone seals the empty value: just the tag)
//! AAD          "zcore.value.v2" ‖ 0x00 ‖ collection ‖ 0x00 ‖ versioned key ‖ header ‖ key id
//! ```
//!
//! The checksum binds the value to the collection, user key and version it was written for, so
//! a flipped bit, a torn write, or a value moved to another key is detected on read as
//! [`ValueDecodeError`] instead of being returned as data. Readers refuse formats they do not
//! know.
//!
//! In format 2 the CRC32C stays *outside* the AEAD, over the sealed bytes: damage (a flipped
//! bit, a torn write) fails the CRC and is reported as corruption, exactly as for plain values,
//! and can be found by `verify` without the key; a value whose CRC is right but whose tag does
//! not verify was written with another key, or was altered or moved deliberately (whoever did
//! it recomputed the CRC), and is reported as a decryption failure naming the key id. The AAD
//! binds the ciphertext to its collection, versioned key (user key and version), kind and key
//! id, so a sealed value copied to another key, version or collection fails authentication
//! even though the attacker can fix the CRC.

use crate::crypto::{EncryptionError, KeyId, Keyring, NONCE_LEN};

/// Format nibble of this encoding.
pub const FORMAT_V1: u8 = 1;
const KIND_PUT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
/// Format nibble of sealed (encrypted) values.
pub const FORMAT_SEALED: u8 = 2;
/// Header + checksum bytes before the payload.
pub const VALUE_OVERHEAD: usize = 5;
/// Bytes a sealed value adds to the user value: header, checksum, key id, nonce, tag.
pub const SEALED_OVERHEAD: usize =
    VALUE_OVERHEAD + 4 + crate::crypto::NONCE_LEN + crate::crypto::TAG_LEN;
const SEALED_BODY_START: usize = VALUE_OVERHEAD + 4 + crate::crypto::NONCE_LEN;
const AAD_DOMAIN: &[u8] = b"zcore.value.v2\0";

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
    /// A sealed value read without a keyring.
    #[error("stored value is encrypted (key id {key_id}) and no encryption key was given")]
    Sealed {
        /// Its key id.
        key_id: crate::crypto::KeyId,
    },
    /// A sealed value whose key id the keyring lacks.
    #[error("stored value is encrypted with key id {key_id}, which the keyring lacks")]
    UnknownKey {
        /// Its key id.
        key_id: crate::crypto::KeyId,
    },
    /// The checksum matched but the AEAD tag did not: another key, or a deliberate change.
    #[error(
        "stored value does not authenticate with key id {key_id} (wrong key, or the value was altered or moved to another key, version or collection)"
    )]
    AuthenticationFailed {
        /// Its key id.
        key_id: crate::crypto::KeyId,
    },
    /// A plain value in a store that has been encrypted from the start (or fully rekeyed).
    #[error("stored value is plaintext in an encrypted store")]
    PlaintextInEncryptedStore,
}

/// Bytes of the stack buffer that gathers `collection ‖ 0x00 ‖ versioned key ‖ header`.
const GATHER: usize = 128;

/// An 8-byte aligned scratch buffer: `crc32c` then runs its 8-bytes-at-a-time loop from the
/// first byte instead of starting with single-byte steps.
#[repr(align(8))]
struct Gather([u8; GATHER]);

/// The CRC32C of `collection ‖ 0x00 ‖ versioned_key ‖ header ‖ payload` (the value
/// checksum of both formats).
///
/// The short fields are gathered into one aligned stack buffer so the CRC is two `crc32c`
/// calls (the gathered prefix, then the payload) instead of five: each call pays its own
/// feature check and unaligned single-byte head and tail steps, which for a 5-byte collection
/// name, a 1-byte separator and a 1-byte header cost more than the bytes themselves. The
/// result is the same CRC of the same byte sequence (a long collection name or key takes
/// the field-by-field path, with the same result).
#[must_use]
pub fn checksum(collection: &str, versioned_key: &[u8], header: u8, payload: &[u8]) -> u32 {
    let name = collection.as_bytes();
    let gathered = name.len() + 1 + versioned_key.len() + 1;
    let crc = if gathered <= GATHER {
        let mut buf = Gather([0; GATHER]);
        buf.0[..name.len()].copy_from_slice(name);
        // buf.0[name.len()] is the 0x00 separator already.
        let key_at = name.len() + 1;
        buf.0[key_at..key_at + versioned_key.len()].copy_from_slice(versioned_key);
        buf.0[gathered - 1] = header;
        crc32c::crc32c(&buf.0[..gathered])
    } else {
        let mut crc = crc32c::crc32c(name);
        crc = crc32c::crc32c_append(crc, &[0]);
        crc = crc32c::crc32c_append(crc, versioned_key);
        crc32c::crc32c_append(crc, &[header])
    };
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

/// A stored value whose header and checksum are good.
#[derive(Debug)]
enum Parsed<'a> {
    Plain {
        kind: u8,
    },
    Sealed {
        header: u8,
        kind: u8,
        key_id: KeyId,
        nonce: [u8; NONCE_LEN],
        /// Ciphertext ‖ tag (read by the test-vector test).
        #[cfg_attr(not(test), allow(dead_code))]
        body: &'a [u8],
    },
}

/// Decodes and verifies a stored value.
///
/// # Errors
///
/// [`ValueDecodeError`] on truncation, an unknown header, or a checksum mismatch;
/// [`ValueDecodeError::Sealed`] for an encrypted value (use [`open_owned`]).
pub fn decode(
    collection: &str,
    versioned_key: &[u8],
    stored: &[u8],
) -> Result<Stored, ValueDecodeError> {
    match verify(collection, versioned_key, stored)? {
        Parsed::Plain { kind: KIND_PUT } => Ok(Stored::Put(stored[VALUE_OVERHEAD..].to_vec())),
        Parsed::Plain { .. } => Ok(Stored::Tombstone),
        Parsed::Sealed { key_id, .. } => Err(ValueDecodeError::Sealed { key_id }),
    }
}

/// Checks header and checksum; returns what the value is.
fn verify<'a>(
    collection: &str,
    versioned_key: &[u8],
    stored: &'a [u8],
) -> Result<Parsed<'a>, ValueDecodeError> {
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
    let format = header >> 4;
    let kind = match (format, header & 0x0F) {
        (FORMAT_V1, KIND_PUT) => KIND_PUT,
        (FORMAT_V1, KIND_TOMBSTONE) if payload.is_empty() => KIND_TOMBSTONE,
        (FORMAT_SEALED, KIND_PUT) if stored.len() >= SEALED_OVERHEAD => KIND_PUT,
        (FORMAT_SEALED, KIND_TOMBSTONE) if stored.len() == SEALED_OVERHEAD => KIND_TOMBSTONE,
        (FORMAT_SEALED, KIND_PUT | KIND_TOMBSTONE) => {
            return Err(ValueDecodeError::Truncated { len: stored.len() });
        }
        _ => return Err(ValueDecodeError::UnknownHeader { header }),
    };
    let computed = checksum(collection, versioned_key, header, payload);
    if computed != stored_crc {
        return Err(ValueDecodeError::ChecksumMismatch {
            stored: stored_crc,
            computed,
        });
    }
    if format == FORMAT_V1 {
        return Ok(Parsed::Plain { kind });
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&stored[VALUE_OVERHEAD..VALUE_OVERHEAD + 4]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&stored[VALUE_OVERHEAD + 4..SEALED_BODY_START]);
    Ok(Parsed::Sealed {
        header,
        kind,
        key_id: KeyId::from_be_bytes(id),
        nonce,
        body: &stored[SEALED_BODY_START..],
    })
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
    match verify(collection, versioned_key, &stored)? {
        Parsed::Plain { kind: KIND_PUT } => {
            stored.drain(..VALUE_OVERHEAD);
            Ok(Stored::Put(stored))
        }
        Parsed::Plain { .. } => Ok(Stored::Tombstone),
        Parsed::Sealed { key_id, .. } => Err(ValueDecodeError::Sealed { key_id }),
    }
}

/// The key id of a sealed value (`None` for a plain or undecodable one). Does not verify.
#[must_use]
pub fn sealed_key_id(stored: &[u8]) -> Option<KeyId> {
    if stored.len() < SEALED_OVERHEAD || stored[0] >> 4 != FORMAT_SEALED {
        return None;
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&stored[VALUE_OVERHEAD..VALUE_OVERHEAD + 4]);
    Some(KeyId::from_be_bytes(id))
}

/// The associated data of a sealed value.
fn aad(collection: &str, versioned_key: &[u8], header: u8, key_id: KeyId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + collection.len() + versioned_key.len() + 6);
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(collection.as_bytes());
    aad.push(0);
    aad.extend_from_slice(versioned_key);
    aad.push(header);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad
}

/// Seals a version's value (`None` = tombstone) with the keyring's newest key and a fresh
/// random nonce (format 2).
///
/// # Errors
///
/// [`EncryptionError`] for an empty keyring or a failing random number generator.
pub fn seal(
    keyring: &Keyring,
    collection: &str,
    versioned_key: &[u8],
    value: Option<&[u8]>,
) -> Result<Vec<u8>, EncryptionError> {
    let (key_id, cipher) = keyring.sealing()?;
    let nonce = crate::crypto::random_nonce()?;
    let kind = if value.is_some() {
        KIND_PUT
    } else {
        KIND_TOMBSTONE
    };
    let header = (FORMAT_SEALED << 4) | kind;
    let aad = aad(collection, versioned_key, header, key_id);
    frame_sealed(
        collection,
        versioned_key,
        header,
        key_id,
        cipher,
        &nonce,
        &aad,
        value.unwrap_or_default(),
    )
}

/// Builds a format-2 value from its parts (the nonce and AAD are the caller's: tests feed
/// published vectors through here).
#[allow(clippy::too_many_arguments)]
fn frame_sealed(
    collection: &str,
    versioned_key: &[u8],
    header: u8,
    key_id: KeyId,
    cipher: &chacha20poly1305::XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptionError> {
    let mut out = Vec::with_capacity(SEALED_OVERHEAD + plaintext.len());
    out.push(header);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    crate::crypto::seal_in_place(cipher, nonce, aad, &mut out, SEALED_BODY_START)?;
    let crc = checksum(collection, versioned_key, header, &out[VALUE_OVERHEAD..]);
    out[1..VALUE_OVERHEAD].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes, verifies and decrypts a stored value of an encrypted store. Plain (format 1)
/// values are accepted only with `allow_plaintext` (a store encrypted after it held data,
/// until a rekey sealed everything).
///
/// # Errors
///
/// As [`decode`], plus [`ValueDecodeError::UnknownKey`],
/// [`ValueDecodeError::AuthenticationFailed`] and
/// [`ValueDecodeError::PlaintextInEncryptedStore`].
pub fn open_owned(
    keyring: &Keyring,
    allow_plaintext: bool,
    collection: &str,
    versioned_key: &[u8],
    stored: Vec<u8>,
) -> Result<Stored, ValueDecodeError> {
    let (header, kind, key_id, nonce) = match verify(collection, versioned_key, &stored)? {
        Parsed::Plain { .. } if !allow_plaintext => {
            return Err(ValueDecodeError::PlaintextInEncryptedStore);
        }
        Parsed::Plain { .. } => return decode_owned(collection, versioned_key, stored),
        Parsed::Sealed {
            header,
            kind,
            key_id,
            nonce,
            ..
        } => (header, kind, key_id, nonce),
    };
    let cipher = keyring
        .cipher(key_id)
        .ok_or(ValueDecodeError::UnknownKey { key_id })?;
    let aad = aad(collection, versioned_key, header, key_id);
    let plaintext = open_in_place(cipher, &nonce, &aad, stored, key_id)?;
    if kind == KIND_TOMBSTONE {
        return Ok(Stored::Tombstone);
    }
    Ok(Stored::Put(plaintext))
}

/// Decrypts the body of a verified sealed value in its own buffer.
fn open_in_place(
    cipher: &chacha20poly1305::XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    mut stored: Vec<u8>,
    key_id: KeyId,
) -> Result<Vec<u8>, ValueDecodeError> {
    use chacha20poly1305::aead::AeadInPlace as _;
    let failed = ValueDecodeError::AuthenticationFailed { key_id };
    let tag_at = stored
        .len()
        .checked_sub(crate::crypto::TAG_LEN)
        .filter(|&t| t >= SEALED_BODY_START)
        .ok_or(ValueDecodeError::Truncated { len: stored.len() })?;
    let mut tag = [0u8; crate::crypto::TAG_LEN];
    tag.copy_from_slice(&stored[tag_at..]);
    stored.truncate(tag_at);
    stored.drain(..SEALED_BODY_START);
    cipher
        .decrypt_in_place_detached(
            chacha20poly1305::XNonce::from_slice(nonce),
            aad,
            &mut stored,
            (&tag).into(),
        )
        .map_err(|_| failed)?;
    Ok(stored)
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

    /// The checksum as the format defines it, one field at a time.
    fn reference_checksum(collection: &str, vk: &[u8], header: u8, payload: &[u8]) -> u32 {
        let mut crc = crc32c::crc32c(collection.as_bytes());
        crc = crc32c::crc32c_append(crc, &[0]);
        crc = crc32c::crc32c_append(crc, vk);
        crc = crc32c::crc32c_append(crc, &[header]);
        crc32c::crc32c_append(crc, payload)
    }

    #[test]
    fn gathered_checksum_equals_the_field_by_field_definition() {
        // Both sides of the stack-buffer limit, empty fields, every alignment of the payload.
        let bytes: Vec<u8> = (0..400u32).map(|i| (i * 37 + 11) as u8).collect();
        let names = [
            "",
            "c",
            "bench",
            &"n".repeat(60),
            &"m".repeat(126),
            &"l".repeat(200),
        ];
        for name in names {
            for vk_len in [0, 1, 7, 8, 25, 64, 65, 66, 126, 127, 128, 300] {
                for (header, payload_len) in [(0x10, 0), (0x11, 0), (0x20, 1), (0x10, 100)] {
                    for at in [0, 1, 5] {
                        let vk = &bytes[..vk_len];
                        let payload = &bytes[at..at + payload_len];
                        assert_eq!(
                            checksum(name, vk, header, payload),
                            reference_checksum(name, vk, header, payload),
                            "name {} vk {vk_len} header {header:#x} payload {payload_len}@{at}",
                            name.len()
                        );
                    }
                }
            }
        }
        // Golden: CRC32C of "users" 00 "k" 00 01 ff..fe 10 "v", computed independently (bitwise
        // CRC32C in Python); a change here is a format change.
        let vk = b"k\x00\x01\xff\xff\xff\xff\xff\xff\xff\xfe";
        let golden = encode("users", vk, Some(b"v"));
        assert_eq!(golden[1..5], 0x4b18_e4e1_u32.to_le_bytes());
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

    mod sealed {
        #![allow(clippy::unwrap_used, clippy::expect_used)]
        use super::super::*;
        use crate::crypto::{EncryptionKey, Keyring};

        fn unhex(s: &str) -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }

        // draft-irtf-cfrg-xchacha-03, Appendix A.3.1 (AEAD_XChaCha20_Poly1305).
        const V_KEY: &str = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
        const V_NONCE: &str = "404142434445464748494a4b4c4d4e4f5051525354555657";
        const V_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
        const V_PLAINTEXT: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could \
            offer you only one tip for the future, sunscreen would be it.";
        const V_CIPHERTEXT: &str = "
            bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
            731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
            2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
            21f9664c97637da9768812f615c68b13b52e";
        const V_TAG: &str = "c0875924c1c7987947deafd8780acf49";

        fn vector_ring(id: KeyId) -> Keyring {
            let mut ring = Keyring::new();
            let key: [u8; 32] = unhex(V_KEY).try_into().unwrap();
            ring.insert(id, EncryptionKey::from_bytes(key)).unwrap();
            ring
        }

        #[test]
        fn published_xchacha_vector_through_our_framing() {
            let ring = vector_ring(7);
            let nonce: [u8; NONCE_LEN] = unhex(V_NONCE).try_into().unwrap();
            let header = (FORMAT_SEALED << 4) | KIND_PUT;
            let framed = frame_sealed(
                "vectors",
                b"vk",
                header,
                7,
                ring.cipher(7).unwrap(),
                &nonce,
                &unhex(V_AAD),
                V_PLAINTEXT,
            )
            .unwrap();
            // Our frame around the published bytes.
            assert_eq!(framed[0], 0x20);
            assert_eq!(framed[5..9], [0, 0, 0, 7]);
            assert_eq!(framed[9..33], nonce);
            let tag_at = framed.len() - 16;
            assert_eq!(framed[33..tag_at], unhex(V_CIPHERTEXT)[..]);
            assert_eq!(framed[tag_at..], unhex(V_TAG)[..]);
            assert_eq!(framed.len(), SEALED_OVERHEAD + V_PLAINTEXT.len());

            // The reverse: a frame built by hand around the published ciphertext and tag opens
            // to the published plaintext.
            let mut by_hand = vec![header, 0, 0, 0, 0, 0, 0, 0, 7];
            by_hand.extend_from_slice(&nonce);
            by_hand.extend_from_slice(&unhex(V_CIPHERTEXT));
            by_hand.extend_from_slice(&unhex(V_TAG));
            let crc = checksum("vectors", b"vk", header, &by_hand[VALUE_OVERHEAD..]);
            by_hand[1..5].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(by_hand, framed);
            let Parsed::Sealed {
                key_id,
                nonce: parsed_nonce,
                body,
                ..
            } = verify("vectors", b"vk", &by_hand).unwrap()
            else {
                panic!("a sealed value");
            };
            assert_eq!((key_id, parsed_nonce), (7, nonce));
            assert_eq!(body.len(), V_PLAINTEXT.len() + 16);
            let cipher = ring.cipher(7).unwrap();
            let opened = open_in_place(cipher, &nonce, &unhex(V_AAD), by_hand.clone(), 7).unwrap();
            assert_eq!(opened, V_PLAINTEXT);
            // One flipped bit of the published tag (or ciphertext) must not open.
            for at in [33, tag_at, by_hand.len() - 1] {
                let mut bad = by_hand.clone();
                bad[at] ^= 0x01;
                assert_eq!(
                    open_in_place(cipher, &nonce, &unhex(V_AAD), bad, 7),
                    Err(ValueDecodeError::AuthenticationFailed { key_id: 7 })
                );
            }
            // And another AAD must not open it either.
            assert!(open_in_place(cipher, &nonce, b"other aad", by_hand, 7).is_err());
        }

        fn ring(ids: &[(KeyId, u8)]) -> Keyring {
            let mut ring = Keyring::new();
            for &(id, b) in ids {
                ring.insert(id, EncryptionKey::from_bytes([b; 32])).unwrap();
            }
            ring
        }

        #[test]
        fn seal_open_round_trip_and_errors() {
            let r12 = ring(&[(1, 1), (2, 2)]);
            let vk = b"key\x00\x01\xff\xff\xff\xff\xff\xff\xff\xfe";
            let put = seal(&r12, "c", vk, Some(b"secret value")).unwrap();
            assert_eq!(sealed_key_id(&put), Some(2), "the newest key seals");
            assert_eq!(put.len(), SEALED_OVERHEAD + 12);
            assert!(
                !put.windows(6).any(|w| w == b"secret"),
                "plaintext must not appear"
            );
            assert_eq!(
                open_owned(&r12, false, "c", vk, put.clone()),
                Ok(Stored::Put(b"secret value".to_vec()))
            );
            let tomb = seal(&r12, "c", vk, None).unwrap();
            assert_eq!(tomb.len(), SEALED_OVERHEAD);
            assert_eq!(
                open_owned(&r12, false, "c", vk, tomb),
                Ok(Stored::Tombstone)
            );
            // Two seals of the same value differ (random nonces).
            assert_ne!(put, seal(&r12, "c", vk, Some(b"secret value")).unwrap());
            // No keyring: a clear "sealed" error, never ciphertext as data.
            assert_eq!(
                decode("c", vk, &put),
                Err(ValueDecodeError::Sealed { key_id: 2 })
            );
            assert_eq!(
                decode_owned("c", vk, put.clone()),
                Err(ValueDecodeError::Sealed { key_id: 2 })
            );
            // Missing key id; wrong key under the right id.
            assert_eq!(
                open_owned(&ring(&[(1, 1)]), false, "c", vk, put.clone()),
                Err(ValueDecodeError::UnknownKey { key_id: 2 })
            );
            assert_eq!(
                open_owned(&ring(&[(2, 9)]), false, "c", vk, put.clone()),
                Err(ValueDecodeError::AuthenticationFailed { key_id: 2 })
            );
            // Old values stay readable with the old id in the ring.
            let old = seal(&ring(&[(1, 1)]), "c", vk, Some(b"old")).unwrap();
            assert_eq!(
                open_owned(&r12, false, "c", vk, old),
                Ok(Stored::Put(b"old".to_vec()))
            );
            // Plaintext only where allowed.
            let plain = encode("c", vk, Some(b"p"));
            assert_eq!(
                open_owned(&r12, false, "c", vk, plain.clone()),
                Err(ValueDecodeError::PlaintextInEncryptedStore)
            );
            assert_eq!(
                open_owned(&r12, true, "c", vk, plain),
                Ok(Stored::Put(b"p".to_vec()))
            );
        }

        #[test]
        fn moved_value_fails_authentication_even_with_a_fixed_checksum() {
            let r = ring(&[(3, 3)]);
            let vk1 = b"a\x00\x01\xff\xff\xff\xff\xff\xff\xff\xf0";
            let vk2 = b"b\x00\x01\xff\xff\xff\xff\xff\xff\xff\xf0";
            let vk1_other_version = b"a\x00\x01\xff\xff\xff\xff\xff\xff\xff\xef";
            let sealed = seal(&r, "c", vk1, Some(b"v")).unwrap();
            for (coll, vk) in [
                ("c", &vk2[..]),
                ("c", &vk1_other_version[..]),
                ("d", &vk1[..]),
            ] {
                // Copied as is: the checksum catches it (corruption).
                assert!(matches!(
                    open_owned(&r, false, coll, vk, sealed.clone()),
                    Err(ValueDecodeError::ChecksumMismatch { .. })
                ));
                // Copied by someone who also fixed the checksum: the AEAD catches it.
                let mut forged = sealed.clone();
                let crc = checksum(coll, vk, forged[0], &forged[VALUE_OVERHEAD..]);
                forged[1..5].copy_from_slice(&crc.to_le_bytes());
                assert_eq!(
                    open_owned(&r, false, coll, vk, forged),
                    Err(ValueDecodeError::AuthenticationFailed { key_id: 3 })
                );
            }
            // Turning a put into a tombstone (header) with a fixed checksum fails too.
            let mut forged = sealed.clone();
            forged[0] = (FORMAT_SEALED << 4) | KIND_TOMBSTONE;
            forged.truncate(SEALED_OVERHEAD);
            let crc = checksum("c", vk1, forged[0], &forged[VALUE_OVERHEAD..]);
            forged[1..5].copy_from_slice(&crc.to_le_bytes());
            assert!(open_owned(&r, false, "c", vk1, forged).is_err());
        }

        #[test]
        fn every_bit_flip_of_a_sealed_value_is_an_error_and_corruption_is_classified() {
            let r = ring(&[(1, 5)]);
            let sealed = seal(&r, "c", b"key", Some(b"some value")).unwrap();
            for byte in 0..sealed.len() {
                for bit in 0..8 {
                    let mut bad = sealed.clone();
                    bad[byte] ^= 1 << bit;
                    let got = open_owned(&r, false, "c", b"key", bad);
                    assert!(
                        matches!(
                            got,
                            Err(ValueDecodeError::ChecksumMismatch { .. }
                                | ValueDecodeError::UnknownHeader { .. }
                                | ValueDecodeError::Truncated { .. })
                        ),
                        "flip {byte}:{bit} gave {got:?}"
                    );
                }
            }
            for cut in 0..sealed.len() {
                assert!(open_owned(&r, false, "c", b"key", sealed[..cut].to_vec()).is_err());
            }
        }
    }
}
