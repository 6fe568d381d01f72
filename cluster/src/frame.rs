//! The one framed format for everything this crate persists or sends.
//!
//! ```text
//! bytes 0..4    magic "ZCRF"
//! byte  4       format version (1)
//! byte  5       kind (what the payload is; see [`Kind`])
//! bytes 6..10   payload length, u32 little endian
//! bytes 10..14  crc32c (little endian) over kind ‖ payload
//! bytes 14..    payload: postcard encoding of one of this crate's own types
//! ```
//!
//! Persisted records (votes, log entries, applied state, client sessions, snapshot files) and
//! RPC messages use it alike, so a damaged or foreign record is refused with a typed error,
//! never decoded as data. openraft's own serde shapes are never persisted: records mirror them
//! in [`crate::records`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// First bytes of every frame.
pub const MAGIC: [u8; 4] = *b"ZCRF";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Header bytes before the payload.
pub const HEADER_LEN: usize = 14;
/// The largest payload accepted (64 MiB): log entries, snapshot chunks and RPCs stay below.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// What a frame holds. The numbers are part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`crate::records::VoteRecord`].
    Vote = 1,
    /// [`crate::records::LogRecord`].
    LogEntry = 2,
    /// [`crate::records::LogIdRecord`].
    LogId = 3,
    /// [`crate::records::AppliedRecord`].
    Applied = 4,
    /// [`crate::records::ClientRecord`].
    Client = 5,
    /// [`crate::records::SnapshotMetaRecord`].
    SnapshotMeta = 6,
    /// [`crate::records::SnapshotPart`] inside a snapshot file.
    SnapshotPart = 7,
    /// The state machine's session floor (a `u64`).
    SessionFloor = 8,
    /// An RPC request.
    Request = 20,
    /// An RPC response.
    Response = 21,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Vote,
            2 => Self::LogEntry,
            3 => Self::LogId,
            4 => Self::Applied,
            5 => Self::Client,
            6 => Self::SnapshotMeta,
            7 => Self::SnapshotPart,
            8 => Self::SessionFloor,
            20 => Self::Request,
            21 => Self::Response,
            _ => return None,
        })
    }
}

/// A frame that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the header or the declared length.
    #[error("frame truncated: {len} bytes")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Not our magic.
    #[error("not a zcore-cluster frame (magic {found:02x?})")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A format version this build does not read.
    #[error("unsupported frame format version {0}")]
    UnsupportedVersion(u8),
    /// Another kind than expected (or an unknown one).
    #[error("frame kind {found} where {expected:?} was expected")]
    WrongKind {
        /// The kind byte found.
        found: u8,
        /// The kind expected.
        expected: Kind,
    },
    /// Payload longer than [`MAX_PAYLOAD`].
    #[error("frame payload of {0} bytes exceeds the limit")]
    TooLarge(u64),
    /// Checksum mismatch.
    #[error("frame checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// The payload does not decode as the expected type.
    #[error("frame payload does not decode: {0}")]
    Payload(#[from] postcard::Error),
    /// Bytes after the frame.
    #[error("{0} unexpected bytes after the frame")]
    Trailing(usize),
    /// I/O while reading or writing a frame.
    #[error("frame I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn crc(kind: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload)
}

/// Encodes `value` as one frame of `kind`.
///
/// # Errors
///
/// [`FrameError::Payload`] if serialization fails, [`FrameError::TooLarge`].
pub fn encode<T: Serialize + ?Sized>(kind: Kind, value: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    let mut out = postcard::to_extend(value, std::mem::take(&mut out))?;
    let len = out.len() - HEADER_LEN;
    let len32 = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLarge(len as u64))?;
    let checksum = crc(kind as u8, &out[HEADER_LEN..]);
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = FORMAT_VERSION;
    out[5] = kind as u8;
    out[6..10].copy_from_slice(&len32.to_le_bytes());
    out[10..14].copy_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

struct Header {
    kind: u8,
    len: u32,
    crc: u32,
}

fn parse_header(bytes: &[u8]) -> Result<Header, FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::Truncated { len: bytes.len() });
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&bytes[0..4]);
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(FrameError::UnsupportedVersion(bytes[4]));
    }
    let mut le = [0u8; 4];
    le.copy_from_slice(&bytes[6..10]);
    let len = u32::from_le_bytes(le);
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(u64::from(len)));
    }
    le.copy_from_slice(&bytes[10..14]);
    Ok(Header {
        kind: bytes[5],
        len,
        crc: u32::from_le_bytes(le),
    })
}

fn check_payload<T: DeserializeOwned>(
    header: &Header,
    expected: Kind,
    payload: &[u8],
) -> Result<T, FrameError> {
    if Kind::from_u8(header.kind) != Some(expected) {
        return Err(FrameError::WrongKind {
            found: header.kind,
            expected,
        });
    }
    let computed = crc(header.kind, payload);
    if computed != header.crc {
        return Err(FrameError::Checksum {
            stored: header.crc,
            computed,
        });
    }
    Ok(postcard::from_bytes(payload)?)
}

/// Decodes exactly one frame of `kind` from `bytes`.
///
/// # Errors
///
/// Any [`FrameError`].
pub fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, FrameError> {
    let header = parse_header(bytes)?;
    let end = HEADER_LEN + header.len as usize;
    if bytes.len() < end {
        return Err(FrameError::Truncated { len: bytes.len() });
    }
    if bytes.len() > end {
        return Err(FrameError::Trailing(bytes.len() - end));
    }
    check_payload(&header, kind, &bytes[HEADER_LEN..end])
}

/// Writes one frame to `w` (does not flush).
///
/// # Errors
///
/// Encoding or I/O errors.
pub async fn write_frame<W, T>(w: &mut W, kind: Kind, value: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize + ?Sized,
{
    let bytes = encode(kind, value)?;
    w.write_all(&bytes).await?;
    Ok(())
}

/// Reads one frame of `kind` from `r`. `Ok(None)` on a clean end of stream before the header.
///
/// # Errors
///
/// Any [`FrameError`]; a stream that ends inside a frame is [`FrameError::Truncated`].
pub async fn read_frame<R, T>(r: &mut R, kind: Kind) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated { len: got })
            };
        }
        got += n;
    }
    let header = parse_header(&head)?;
    // Grow with the bytes that actually arrive: the length field alone (≤ MAX_PAYLOAD) never
    // decides an allocation.
    let mut payload = Vec::with_capacity((header.len as usize).min(64 << 10));
    let got = (&mut *r)
        .take(u64::from(header.len))
        .read_to_end(&mut payload)
        .await?;
    if got < header.len as usize {
        return Err(FrameError::Truncated {
            len: HEADER_LEN + got,
        });
    }
    check_payload(&header, kind, &payload).map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn golden_bytes_and_round_trip() {
        let bytes = encode(Kind::LogId, &(7u64, 3u64, 42u64)).unwrap();
        // Golden: a change here is a format change (bump FORMAT_VERSION, keep reading v1).
        assert_eq!(
            bytes,
            [
                b'Z', b'C', b'R', b'F', 1, 3, 3, 0, 0, 0, 0xe8, 0xa8, 0x0d, 0x21, 7, 3, 42
            ]
        );
        let back: (u64, u64, u64) = decode(Kind::LogId, &bytes).unwrap();
        assert_eq!(back, (7, 3, 42));
    }

    #[test]
    fn damage_is_detected() {
        let bytes = encode(Kind::Vote, &(1u64, 2u64, true)).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    decode::<(u64, u64, bool)>(Kind::Vote, &bad).is_err(),
                    "flip {i}:{bit} undetected"
                );
            }
        }
        assert!(matches!(
            decode::<(u64, u64, bool)>(Kind::LogId, &bytes),
            Err(FrameError::WrongKind { .. })
        ));
        assert!(decode::<(u64, u64, bool)>(Kind::Vote, &bytes[..bytes.len() - 1]).is_err());
    }

    #[tokio::test]
    async fn stream_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Request, &"hello")
            .await
            .unwrap();
        write_frame(&mut buf, Kind::Request, &"world")
            .await
            .unwrap();
        let mut r = buf.as_slice();
        let a: Option<String> = read_frame(&mut r, Kind::Request).await.unwrap();
        let b: Option<String> = read_frame(&mut r, Kind::Request).await.unwrap();
        let c: Option<String> = read_frame(&mut r, Kind::Request).await.unwrap();
        assert_eq!(
            (a.as_deref(), b.as_deref(), c),
            (Some("hello"), Some("world"), None)
        );
    }
}
