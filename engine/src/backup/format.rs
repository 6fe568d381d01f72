//! The payloads inside the frames: manifest and chunks (postcard, format 1).
//!
//! Postcard is not self-describing: fields are never reordered or removed within a format
//! version; a change is a new frame format version. The golden fixtures under
//! `backends/tests/fixtures/backup_v1/` pin these bytes.
//!
//! Manifest file payload: `SealedManifest { body: bytes, digest: [u8; 32] }` where `digest` is
//! the BLAKE3 hash of `body`, and `body` is the postcard encoding of [`Manifest`].
//!
//! Chunk file payload: `ChunkPayload { backup_id, seq, collection, compression, entries,
//! raw_len, data }`; `data` is the (optionally compressed) concatenation of `entries`
//! postcard-encoded [`Entry`] records, `raw_len` bytes uncompressed.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::mvcc::Version;

/// Name of the manifest file inside a backup directory.
pub const MANIFEST_FILE: &str = "manifest";
/// Name the manifest is written under before it is renamed into place.
pub const MANIFEST_TMP_FILE: &str = "manifest.tmp";
/// Largest manifest file this build reads (bytes).
pub const MAX_MANIFEST_FILE: u64 = 256 << 20;
/// Longest file name a manifest may name.
pub const MAX_FILE_NAME_LEN: usize = 64;

/// A 32-byte BLAKE3 digest: hex in human-readable formats (JSON), 32 raw bytes in postcard.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

/// A 16-byte backup id: hex in human-readable formats, 16 raw bytes in postcard.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BackupId(pub [u8; 16]);

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

macro_rules! hex_array {
    ($ty:ident, $n:literal) => {
        impl $ty {
            /// Lower-case hex.
            #[must_use]
            pub fn to_hex(&self) -> String {
                hex(&self.0)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(s)
                }
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    unhex::<$n>(&s)
                        .map(Self)
                        .ok_or_else(|| D::Error::custom("expected lower-case hex"))
                } else {
                    <[u8; $n]>::deserialize(d).map(Self)
                }
            }
        }
    };
}
hex_array!(Digest, 32);
hex_array!(BackupId, 16);

impl Digest {
    /// BLAKE3 of `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

/// Bytes: a postcard byte string; in human-readable formats UTF-8 text when possible, else
/// `hex:…`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteString(pub Vec<u8>);

impl fmt::Debug for ByteString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => fmt::Debug::fmt(s, f),
            Err(_) => write!(f, "hex:{}", hex(&self.0)),
        }
    }
}

impl Serialize for ByteString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            match std::str::from_utf8(&self.0) {
                Ok(text) if !text.starts_with("hex:") => s.serialize_str(text),
                _ => s.serialize_str(&format!("hex:{}", hex(&self.0))),
            }
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            match s.strip_prefix("hex:") {
                Some(h) => {
                    let mut out = Vec::with_capacity(h.len() / 2);
                    for i in (0..h.len()).step_by(2) {
                        let byte = h
                            .get(i..i + 2)
                            .and_then(|p| u8::from_str_radix(p, 16).ok())
                            .ok_or_else(|| D::Error::custom("bad hex"))?;
                        out.push(byte);
                    }
                    Ok(Self(out))
                }
                None => Ok(Self(s.into_bytes())),
            }
        } else {
            let bytes: &[u8] = Deserialize::deserialize(d)?;
            Ok(Self(bytes.to_vec()))
        }
    }
}

/// Serde helpers writing `&[u8]` as a byte string (postcard: varint length ‖ bytes).
pub(crate) mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'de [u8], D::Error> {
        <&'de [u8]>::deserialize(d)
    }
}

/// Same as [`bytes`] for `Option<&[u8]>`.
pub(crate) mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct B<'a>(&'a [u8]);
    impl Serialize for B<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    #[allow(clippy::ref_option)]
    pub(crate) fn serialize<S: Serializer>(b: &Option<&[u8]>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_some(&B(b)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<&'de [u8]>, D::Error> {
        <Option<&'de [u8]>>::deserialize(d)
    }
}

/// How a chunk's entry data is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Stored as is.
    None,
    /// zstd (a single zstd frame).
    Zstd,
}

/// What a backup holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// The state at the head version; with `history`, every version retained between the
    /// base version (the source's GC floor when the backup started) and the head.
    Full {
        /// Whether versions older than the head were copied (point-in-time restore to any
        /// version in `base..=head`).
        history: bool,
    },
    /// Every version in `(base, head]`, tombstones included, on top of a parent backup whose
    /// head is `base`.
    Incremental,
}

/// Link from an incremental backup to its parent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParentLink {
    /// BLAKE3 digest of the parent's manifest body.
    pub digest: Digest,
    /// The parent's backup id.
    pub backup_id: BackupId,
    /// The parent's head version (this backup's base).
    pub head_version: Version,
    /// Name of the parent's directory when this backup was made (a hint: a sibling of this
    /// backup's directory; siblings are searched by digest when it does not match).
    pub dir_name: String,
}

/// Per-collection figures of one backup.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CollectionSummary {
    /// The collection.
    pub name: String,
    /// Versions stored in this backup (tombstones included).
    pub entries: u64,
    /// Deletion markers among them.
    pub tombstones: u64,
    /// Keys with a value at the head version (rows of the source at the head).
    pub live_keys: u64,
    /// Key and value bytes of the stored versions (uncompressed).
    pub bytes: u64,
    /// Digest of the live state at the head version: BLAKE3 over, per live key in key order,
    /// `u32 key length ‖ key ‖ u64 version ‖ u32 crc32c(value)` (big endian).
    pub state_digest: Digest,
    /// Number of chunks; a collection's chunks are contiguous in [`Manifest::chunks`], in
    /// collection order.
    pub chunks: u32,
}

/// A sequence's durable lease limit at backup time (the next value handed out after a
/// restore is above it, so no value is ever reused).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SequenceRecord {
    /// Sequence name.
    pub name: ByteString,
    /// Highest value that may have been handed out.
    pub limit: u64,
}

/// One chunk file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// File name inside the backup directory (a single safe name).
    pub file: String,
    /// Index of its collection in [`Manifest::collections`].
    pub collection: u32,
    /// Entries in the chunk.
    pub entries: u64,
    /// Uncompressed bytes of its entry records.
    pub raw_bytes: u64,
    /// File size in bytes.
    pub size: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
    /// BLAKE3 of the whole file (`b3sum` prints the same).
    pub blake3: Digest,
    /// Compression of its entry data.
    pub compression: Compression,
}

/// The manifest of one backup (format 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (also in the frame).
    pub format_version: u16,
    /// Identifies this backup; every chunk repeats it.
    pub backup_id: BackupId,
    /// Wall-clock creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Backend the source ran on (`fjall`, `redb`, `memory`, …).
    pub source_backend: String,
    /// Full or incremental.
    pub kind: BackupKind,
    /// Full: the oldest version the backup can restore to. Incremental: the parent's head;
    /// the backup holds the versions in `(base, head]`.
    pub base_version: Version,
    /// The version the backup is consistent at.
    pub head_version: Version,
    /// The parent of an incremental backup.
    pub parent: Option<ParentLink>,
    /// Compression asked for (each chunk records its own).
    pub compression: Compression,
    /// User collections existing at the head, ascending by name.
    pub collections: Vec<CollectionSummary>,
    /// Sequence leases, ascending by name.
    pub sequences: Vec<SequenceRecord>,
    /// Chunk files, grouped by collection in collection order.
    pub chunks: Vec<ChunkRef>,
}

/// How an encrypted backup was sealed: recorded in its manifest (see [`frame::FLAG_SEALED`](
/// super::frame::FLAG_SEALED)). The key itself is never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackupEncryption {
    /// The key id every chunk of this backup is sealed with.
    pub key_id: u32,
    /// The key's check value (BLAKE3 key derivation; identifies the key, reveals nothing).
    pub check_value: Digest,
}

/// The manifest file's payload of an encrypted backup.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SealedManifestEncrypted<'a> {
    #[serde(borrow, with = "bytes")]
    pub(crate) body: &'a [u8],
    pub(crate) digest: Digest,
    pub(crate) encryption: BackupEncryption,
}

/// The manifest file's payload.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SealedManifest<'a> {
    #[serde(borrow, with = "bytes")]
    pub(crate) body: &'a [u8],
    pub(crate) digest: Digest,
}

/// A chunk file's payload.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChunkPayload<'a> {
    pub(crate) backup_id: BackupId,
    pub(crate) seq: u32,
    #[serde(borrow)]
    pub(crate) collection: &'a str,
    pub(crate) compression: Compression,
    pub(crate) entries: u64,
    pub(crate) raw_len: u64,
    #[serde(borrow, with = "bytes")]
    pub(crate) data: &'a [u8],
}

/// One stored version: a user key, its commit version, and its value (`None`: deleted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry<'a> {
    #[serde(borrow, with = "bytes")]
    pub(crate) key: &'a [u8],
    pub(crate) version: Version,
    #[serde(borrow, with = "opt_bytes")]
    pub(crate) value: Option<&'a [u8]>,
}

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends the postcard encoding of an [`Entry`] to `out` (exactly what
/// `postcard::to_io(&entry, out)` writes — a unit test holds them equal — without serde's
/// per-byte writer calls).
pub(crate) fn encode_entry(out: &mut Vec<u8>, key: &[u8], version: Version, value: Option<&[u8]>) {
    push_varint(out, key.len() as u64);
    out.extend_from_slice(key);
    push_varint(out, version);
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            push_varint(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }
}

/// Incremental digest of a live state (see [`CollectionSummary::state_digest`]). Input is
/// gathered in a buffer and hashed in large blocks (one BLAKE3 call per entry would cost more
/// than the rest of the work on the entry).
#[derive(Debug, Default)]
pub(crate) struct StateHasher {
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
    pub(crate) live_keys: u64,
}

const STATE_BUFFER: usize = 64 << 10;

impl StateHasher {
    pub(crate) fn add(&mut self, key: &[u8], version: Version, value: &[u8]) {
        let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        self.buffer.extend_from_slice(&len.to_be_bytes());
        self.buffer.extend_from_slice(key);
        self.buffer.extend_from_slice(&version.to_be_bytes());
        self.buffer
            .extend_from_slice(&crc32c::crc32c(value).to_be_bytes());
        self.live_keys += 1;
        if self.buffer.len() >= STATE_BUFFER {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
    }

    pub(crate) fn finish(&self) -> Digest {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.buffer);
        Digest(*hasher.finalize().as_bytes())
    }
}

/// Whether `name` is a file name a manifest may use: one component of ASCII
/// `[A-Za-z0-9._-]`, starting with a letter or digit (so never `.`, `..` or hidden), at most
/// [`MAX_FILE_NAME_LEN`] bytes, and not the manifest's own names.
#[must_use]
pub fn is_safe_file_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_FILE_NAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && name != MANIFEST_FILE
        && name != MANIFEST_TMP_FILE
}

/// Whether `name` may be used as a sibling directory name hint: one component, printable
/// ASCII without separators, not `.` or `..`, at most 255 bytes.
#[must_use]
pub fn is_safe_dir_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 255
        && name != "."
        && name != ".."
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'/' && b != b'\\' && b != b':')
}

/// The chunk file name of chunk `seq`.
#[must_use]
pub fn chunk_file_name(seq: u32) -> String {
    format!("chunk-{seq:08}.zbk")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn file_names() {
        for ok in ["chunk-00000001.zbk", "a", "A_b-c.d"] {
            assert!(is_safe_file_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            "a\\b",
            ".hidden",
            "-x",
            "manifest",
            "manifest.tmp",
            "c:x",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!is_safe_file_name(bad), "{bad}");
        }
        assert!(is_safe_dir_name("full-2024"));
        assert!(!is_safe_dir_name(".."));
        assert!(!is_safe_dir_name("a/b"));
    }

    #[test]
    fn entries_are_postcard_byte_strings() {
        let e = Entry {
            key: b"k",
            version: 300,
            value: Some(b"vv"),
        };
        let bytes = postcard::to_stdvec(&e).unwrap();
        // varint(1) 'k' varint(300) Some varint(2) "vv"
        assert_eq!(bytes, [1, b'k', 0xAC, 0x02, 1, 2, b'v', b'v']);
        let back: Entry<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, e);
        for (key, version, value) in [
            (&b"k"[..], 0u64, None),
            (&[0u8; 200][..], u64::MAX, Some(&[7u8; 300][..])),
            (&b"abc"[..], 127, Some(&b""[..])),
            (&b"x"[..], 128, Some(&[1u8; 16_384][..])),
        ] {
            let mut ours = Vec::new();
            encode_entry(&mut ours, key, version, value);
            let theirs = postcard::to_stdvec(&Entry {
                key,
                version,
                value,
            })
            .unwrap();
            assert_eq!(ours, theirs);
        }
    }
}
