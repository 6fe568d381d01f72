//! The frame every backup file is wrapped in.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "ZCBK"
//! 4       2     format version, u16 little endian (1)
//! 6       1     kind (1 manifest, 2 chunk)
//! 7       1     flags (readers refuse bits they do not know; bit 0 = [`FLAG_SEALED`])
//! 8       4     payload length, u32 little endian
//! 12      4     crc32c, u32 little endian, over bytes 0..12 and the payload
//! 16      len   payload (postcard)
//! ```
//!
//! A file is exactly one frame: shorter is truncation, longer is appended garbage.

use std::path::Path;

use super::error::{BackupError, Check};

/// The magic bytes at the start of every backup file.
pub const MAGIC: [u8; 4] = *b"ZCBK";
/// The format version this build writes (and the only one it reads).
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 16;
/// Frame flag: the backup is encrypted. On a chunk, the payload's entry data is sealed
/// (`key id ‖ nonce ‖ XChaCha20-Poly1305 ciphertext ‖ tag`); on a manifest, the payload
/// carries the key id and key check value after the digest. Plain backups never set it, so
/// their bytes (and the golden fixtures) are unchanged.
pub const FLAG_SEALED: u8 = 0x01;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A manifest.
    Manifest = 1,
    /// A chunk of entries.
    Chunk = 2,
}

impl FrameKind {
    fn name(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Chunk => "chunk",
        }
    }
}

fn header(kind: FrameKind, len: u32, flags: u8) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[6] = kind as u8;
    h[7] = flags;
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h
}

/// Wraps `payload` in a frame. `None` if the payload is longer than `u32::MAX`.
#[must_use]
pub fn encode(kind: FrameKind, payload: &[u8]) -> Option<Vec<u8>> {
    encode_with_flags(kind, 0, payload)
}

/// [`encode`] with frame flags.
#[must_use]
pub fn encode_with_flags(kind: FrameKind, flags: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let h = header(kind, len, flags);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h), payload);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// Frames a payload already placed after [`HEADER_LEN`] reserved bytes at the start of
/// `buf`, in place. `None` if `buf` is shorter than the header or the payload longer than
/// `u32::MAX`.
pub fn fill_header(kind: FrameKind, buf: &mut [u8]) -> Option<()> {
    fill_header_with_flags(kind, 0, buf)
}

/// [`fill_header`] with frame flags.
pub fn fill_header_with_flags(kind: FrameKind, flags: u8, buf: &mut [u8]) -> Option<()> {
    let len = u32::try_from(buf.len().checked_sub(HEADER_LEN)?).ok()?;
    let h = header(kind, len, flags);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h), buf.get(HEADER_LEN..)?);
    buf.get_mut(..12)?.copy_from_slice(&h);
    buf.get_mut(12..HEADER_LEN)?
        .copy_from_slice(&crc.to_le_bytes());
    Some(())
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(bytes);
    u32::from_le_bytes(b)
}

/// Checks the frame of a whole file's bytes and returns its payload.
///
/// # Errors
///
/// [`BackupError::Invalid`] naming `path` and the failed check: size, magic, version, kind,
/// flags, CRC.
pub fn decode<'a>(path: &Path, kind: FrameKind, file: &'a [u8]) -> Result<&'a [u8], BackupError> {
    decode_with_flags(path, kind, file, 0).map(|(_, payload)| payload)
}

/// [`decode`] accepting the flag bits in `allowed`; returns the flags and the payload.
///
/// # Errors
///
/// As [`decode`]; flag bits outside `allowed` are refused.
pub fn decode_with_flags<'a>(
    path: &Path,
    kind: FrameKind,
    file: &'a [u8],
    allowed: u8,
) -> Result<(u8, &'a [u8]), BackupError> {
    let fail = |check, detail: String| BackupError::invalid(path, check, detail);
    let (Some(head), Some(crc_bytes)) = (file.get(..12), file.get(12..HEADER_LEN)) else {
        return Err(fail(
            Check::FileSize,
            format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte frame header",
                file.len()
            ),
        ));
    };
    if head[..4] != MAGIC {
        return Err(fail(
            Check::FrameMagic,
            format!("expected {MAGIC:02x?}, found {:02x?}", &head[..4]),
        ));
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    if version != FORMAT_VERSION {
        return Err(fail(
            Check::FrameVersion,
            format!("format version {version}; this build reads version {FORMAT_VERSION}"),
        ));
    }
    if head[6] != kind as u8 {
        return Err(fail(
            Check::FrameKind,
            format!(
                "expected a {} frame (kind {}), found kind {}",
                kind.name(),
                kind as u8,
                head[6]
            ),
        ));
    }
    if head[7] & !allowed != 0 {
        return Err(fail(
            Check::FrameFlags,
            format!("unknown flags {:#04x}", head[7]),
        ));
    }
    let len = le_u32(&head[8..12]) as usize;
    let payload = &file[HEADER_LEN..];
    if payload.len() != len {
        return Err(fail(
            Check::FileSize,
            format!(
                "frame header announces a {len}-byte payload, the file holds {} bytes after the header ({})",
                payload.len(),
                if payload.len() < len {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            ),
        ));
    }
    let stored = le_u32(crc_bytes);
    let computed = crc32c::crc32c_append(crc32c::crc32c(head), payload);
    if stored != computed {
        return Err(fail(
            Check::FrameCrc,
            format!("stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    Ok((head[7], payload))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn round_trip_and_every_flip_detected() {
        let path = Path::new("f");
        let framed = encode(FrameKind::Chunk, b"payload").unwrap();
        assert_eq!(&framed[..4], b"ZCBK");
        assert_eq!(decode(path, FrameKind::Chunk, &framed).unwrap(), b"payload");
        assert_eq!(
            decode(path, FrameKind::Manifest, &framed)
                .unwrap_err()
                .check(),
            Check::FrameKind
        );
        for i in 0..framed.len() {
            for bit in 0..8 {
                let mut bad = framed.clone();
                bad[i] ^= 1 << bit;
                assert!(decode(path, FrameKind::Chunk, &bad).is_err(), "{i}:{bit}");
            }
        }
        for cut in 0..framed.len() {
            assert!(decode(path, FrameKind::Chunk, &framed[..cut]).is_err());
        }
        let mut long = framed.clone();
        long.push(0);
        assert_eq!(
            decode(path, FrameKind::Chunk, &long).unwrap_err().check(),
            Check::FileSize
        );
    }
}
