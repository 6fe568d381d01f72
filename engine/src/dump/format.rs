//! The two dump encodings: writers and a streaming reader that checks everything it reads.

use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

use super::error::{DumpError, Location};
use crate::mvcc::{MAX_USER_KEY_LEN, MAX_USER_VALUE_LEN, Version};

/// The dump format version this build writes (and the only one it reads).
pub const DUMP_FORMAT_VERSION: u32 = 1;
/// Magic of every binary frame.
pub const MAGIC: [u8; 4] = *b"ZCDP";
/// Bytes before a binary frame's payload.
pub const FRAME_HEADER_LEN: usize = 16;
/// A binary rows frame is cut once its payload reaches this size (one larger row still gets a
/// frame of its own).
pub const ROWS_FRAME_TARGET: usize = 1 << 20;
/// Largest payload a binary frame may announce: one row of the largest key and value plus
/// framing. Anything above is refused before a byte of it is read.
pub const MAX_FRAME_PAYLOAD: u64 = MAX_USER_VALUE_LEN + MAX_USER_KEY_LEN as u64 + 64;
/// Longest JSON line accepted: one row of the largest key and value, hex-encoded, plus
/// syntax. Longer lines are refused as soon as the limit is passed.
pub const MAX_JSON_LINE: u64 = 2 * (MAX_USER_VALUE_LEN + MAX_USER_KEY_LEN as u64) + 4096;

const KIND_HEADER: u8 = 1;
const KIND_ROWS: u8 = 2;
const KIND_END: u8 = 3;

/// The two encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    /// JSON lines, keys and values in lower-case hex.
    Jsonl,
    /// Framed postcard records (magic `ZCDP`).
    Binary,
}

impl DumpFormat {
    /// `jsonl` or `binary`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Binary => "binary",
        }
    }
}

/// The first record of a dump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpHeader {
    /// [`DUMP_FORMAT_VERSION`].
    pub zcore_dump: u32,
    /// How keys and values are written in JSON lines (always `hex`; `binary` in the binary
    /// form, where they are raw bytes).
    pub encoding: String,
    /// The backend the dump was taken from (`fjall`, `redb`, `memory`, …).
    pub source_backend: String,
    /// The snapshot version every row was read at.
    pub version: Version,
    /// The collections dumped, in the order their rows follow (empty ones included).
    pub collections: Vec<String>,
}

/// The last record of a dump: what a complete dump holds, so truncation at a record boundary
/// is detected too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpEnd {
    /// Rows in the whole dump.
    pub rows: u64,
    /// Rows per collection, in header order.
    pub per_collection: Vec<u64>,
}

/// One row: a live key and its value at the dump's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Index of its collection in [`DumpHeader::collections`].
    pub collection: usize,
    /// User key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow<'a> {
    collection: &'a str,
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEnd {
    end: DumpEnd,
}

#[derive(Serialize, Deserialize)]
struct RowsRecord<'a> {
    collection: u32,
    #[serde(borrow)]
    rows: Vec<(&'a [u8], &'a [u8])>,
}

#[derive(Serialize)]
struct RowsRecordOut<'a> {
    collection: u32,
    rows: &'a [(Vec<u8>, Vec<u8>)],
}

// ---------------------------------------------------------------------------------------
// Writing

/// Writes a dump record by record. The caller writes the header first, then rows grouped by
/// collection in header order and ascending key order, then calls [`DumpWriter::finish`].
#[derive(Debug)]
pub struct DumpWriter<W: Write> {
    out: W,
    format: DumpFormat,
    collections: usize,
    per_collection: Vec<u64>,
    /// Binary: rows of the current frame.
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    pending_bytes: usize,
    pending_collection: usize,
    bytes_written: u64,
    line: String,
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(format!("odd-length hex string ({} digits)", bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => out.push((h << 4) | l),
            _ => return Err(format!("invalid hex digit near position {}", 2 * i)),
        }
    }
    Ok(out)
}

fn frame_header(kind: u8, len: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&(DUMP_FORMAT_VERSION as u16).to_le_bytes());
    h[6] = kind;
    h[7] = 0;
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h
}

/// Encodes one binary frame (exposed for tests and fuzzing).
///
/// # Errors
///
/// A payload longer than [`MAX_FRAME_PAYLOAD`] or `u32::MAX`.
pub fn encode_frame(kind: u8, payload: &[u8]) -> Result<Vec<u8>, DumpError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| u64::from(*l) <= MAX_FRAME_PAYLOAD)
        .ok_or_else(|| DumpError::TooLarge {
            detail: format!("a {}-byte record does not fit a frame", payload.len()),
        })?;
    let h = frame_header(kind, len);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h), payload);
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

impl<W: Write> DumpWriter<W> {
    /// Starts a dump: writes `header`.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub fn new(mut out: W, format: DumpFormat, header: &DumpHeader) -> Result<Self, DumpError> {
        let bytes = match format {
            DumpFormat::Jsonl => {
                let mut line = serde_json::to_vec(header).map_err(DumpError::json_encode)?;
                line.push(b'\n');
                line
            }
            DumpFormat::Binary => {
                let payload = postcard::to_stdvec(header).map_err(DumpError::postcard_encode)?;
                encode_frame(KIND_HEADER, &payload)?
            }
        };
        out.write_all(&bytes)
            .map_err(|e| DumpError::io("write the dump header", e))?;
        Ok(Self {
            out,
            format,
            collections: header.collections.len(),
            per_collection: vec![0; header.collections.len()],
            pending: Vec::new(),
            pending_bytes: 0,
            pending_collection: 0,
            bytes_written: bytes.len() as u64,
            line: String::new(),
        })
    }

    /// Writes one row of collection number `collection` (its index in the header).
    ///
    /// # Errors
    ///
    /// I/O errors; an index outside the header's collections.
    pub fn row(
        &mut self,
        collection: usize,
        collection_name: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), DumpError> {
        if collection >= self.collections {
            return Err(DumpError::TooLarge {
                detail: format!("collection index {collection} outside the header"),
            });
        }
        self.per_collection[collection] += 1;
        match self.format {
            DumpFormat::Jsonl => {
                self.line.clear();
                self.line.push_str("{\"collection\":");
                // Collection names are plain ASCII by construction; serde_json escapes anyway.
                let name =
                    serde_json::to_string(collection_name).map_err(DumpError::json_encode)?;
                self.line.push_str(&name);
                self.line.push_str(",\"key\":\"");
                hex_into(&mut self.line, key);
                self.line.push_str("\",\"value\":\"");
                hex_into(&mut self.line, value);
                self.line.push_str("\"}\n");
                self.out
                    .write_all(self.line.as_bytes())
                    .map_err(|e| DumpError::io("write a dump row", e))?;
                self.bytes_written += self.line.len() as u64;
            }
            DumpFormat::Binary => {
                if self.pending_collection != collection {
                    self.flush_rows()?;
                    self.pending_collection = collection;
                }
                self.pending_bytes += key.len() + value.len() + 10;
                self.pending.push((key.to_vec(), value.to_vec()));
                if self.pending_bytes >= ROWS_FRAME_TARGET {
                    self.flush_rows()?;
                }
            }
        }
        Ok(())
    }

    fn flush_rows(&mut self) -> Result<(), DumpError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let record = RowsRecordOut {
            collection: u32::try_from(self.pending_collection).unwrap_or(u32::MAX),
            rows: &self.pending,
        };
        let payload = postcard::to_stdvec(&record).map_err(DumpError::postcard_encode)?;
        let frame = encode_frame(KIND_ROWS, &payload)?;
        self.out
            .write_all(&frame)
            .map_err(|e| DumpError::io("write dump rows", e))?;
        self.bytes_written += frame.len() as u64;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes the end record and flushes; returns the end record and the bytes written.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub fn finish(mut self) -> Result<(DumpEnd, u64, W), DumpError> {
        self.flush_rows()?;
        let end = DumpEnd {
            rows: self.per_collection.iter().sum(),
            per_collection: self.per_collection.clone(),
        };
        let bytes = match self.format {
            DumpFormat::Jsonl => {
                let mut line = serde_json::to_vec(&JsonEnd { end: end.clone() })
                    .map_err(DumpError::json_encode)?;
                line.push(b'\n');
                line
            }
            DumpFormat::Binary => {
                let payload = postcard::to_stdvec(&end).map_err(DumpError::postcard_encode)?;
                encode_frame(KIND_END, &payload)?
            }
        };
        self.out
            .write_all(&bytes)
            .and_then(|()| self.out.flush())
            .map_err(|e| DumpError::io("write the dump end record", e))?;
        self.bytes_written += bytes.len() as u64;
        Ok((end, self.bytes_written, self.out))
    }
}

// ---------------------------------------------------------------------------------------
// Reading

/// Reads a dump record by record, checking as it goes: header first, rows grouped by
/// collection in header order with strictly ascending keys, key and value sizes within the
/// engine's limits, and an end record whose counts match what was read. Memory is bounded by
/// one record (one line, or one frame of at most ~1 MiB plus one row).
#[derive(Debug)]
pub struct DumpReader<R: BufRead> {
    input: R,
    format: DumpFormat,
    header: DumpHeader,
    /// Byte offset of the next unread byte.
    offset: u64,
    /// JSON: number of the last line read (1-based).
    line_no: u64,
    line: Vec<u8>,
    /// Binary: rows of the current frame, served from the back.
    buffered: Vec<(Vec<u8>, Vec<u8>)>,
    buffered_collection: usize,
    /// Where the current frame started (binary) for error locations.
    record_start: u64,
    per_collection: Vec<u64>,
    last: Option<(usize, Vec<u8>)>,
    end: Option<DumpEnd>,
}

impl<R: BufRead> DumpReader<R> {
    /// Reads and checks the header; detects the format from the first byte (`{` JSON lines,
    /// `Z` binary).
    ///
    /// # Errors
    ///
    /// [`DumpError::Malformed`] / [`DumpError::Truncated`] with the location; I/O errors.
    pub fn open(mut input: R) -> Result<Self, DumpError> {
        let first = input
            .fill_buf()
            .map_err(|e| DumpError::io("read the dump", e))?
            .first()
            .copied();
        let format = match first {
            Some(b'{') => DumpFormat::Jsonl,
            Some(b'Z') => DumpFormat::Binary,
            Some(other) => {
                return Err(DumpError::malformed(
                    Location::start(),
                    format!(
                        "not a zcore dump: starts with byte {other:#04x} (expected '{{' for JSON lines or \"ZCDP\" for the binary form)"
                    ),
                ));
            }
            None => return Err(DumpError::truncated(Location::start(), "the dump is empty")),
        };
        let mut reader = Self {
            input,
            format,
            header: DumpHeader {
                zcore_dump: 0,
                encoding: String::new(),
                source_backend: String::new(),
                version: 0,
                collections: Vec::new(),
            },
            offset: 0,
            line_no: 0,
            line: Vec::new(),
            buffered: Vec::new(),
            buffered_collection: 0,
            record_start: 0,
            per_collection: Vec::new(),
            last: None,
            end: None,
        };
        let header: DumpHeader = match format {
            DumpFormat::Jsonl => {
                if !reader.read_line()? {
                    return Err(DumpError::truncated(reader.location(), "no header line"));
                }
                serde_json::from_slice(&reader.line).map_err(|e| {
                    DumpError::malformed(reader.location(), format!("bad header line: {e}"))
                })?
            }
            DumpFormat::Binary => {
                let Some((kind, payload)) = reader.read_frame()? else {
                    return Err(DumpError::truncated(reader.location(), "no header frame"));
                };
                if kind != KIND_HEADER {
                    return Err(DumpError::malformed(
                        reader.location(),
                        format!("first frame is of kind {kind}, expected the header (1)"),
                    ));
                }
                decode_all(&payload).map_err(|e| {
                    DumpError::malformed(reader.location(), format!("bad header: {e}"))
                })?
            }
        };
        reader.check_header(&header)?;
        reader.per_collection = vec![0; header.collections.len()];
        reader.header = header;
        Ok(reader)
    }

    fn check_header(&self, h: &DumpHeader) -> Result<(), DumpError> {
        let fail = |detail: String| Err(DumpError::malformed(self.location(), detail));
        if h.zcore_dump != DUMP_FORMAT_VERSION {
            return fail(format!(
                "dump format version {}; this build reads version {DUMP_FORMAT_VERSION}",
                h.zcore_dump
            ));
        }
        let expected = match self.format {
            DumpFormat::Jsonl => "hex",
            DumpFormat::Binary => "binary",
        };
        if h.encoding != expected {
            return fail(format!(
                "encoding {:?}; the {} form uses {expected:?}",
                h.encoding,
                self.format.name()
            ));
        }
        for (i, name) in h.collections.iter().enumerate() {
            if let Err(e) = crate::CollectionName::new(name) {
                return fail(format!("collection {name:?}: {e}"));
            }
            if h.collections[..i].contains(name) {
                return fail(format!("collection {name:?} listed twice"));
            }
        }
        if u32::try_from(h.collections.len()).is_err() {
            return fail("too many collections".to_owned());
        }
        Ok(())
    }

    /// The header.
    #[must_use]
    pub fn header(&self) -> &DumpHeader {
        &self.header
    }

    /// The encoding detected.
    #[must_use]
    pub fn format(&self) -> DumpFormat {
        self.format
    }

    /// Bytes consumed so far.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the reader is, for errors.
    #[must_use]
    pub fn location(&self) -> Location {
        match self.format {
            DumpFormat::Jsonl => Location {
                line: Some(self.line_no),
                offset: self.offset,
            },
            DumpFormat::Binary => Location {
                line: None,
                offset: self.record_start,
            },
        }
    }

    /// Reads one line into `self.line` (without the newline). `false` at a clean end.
    fn read_line(&mut self) -> Result<bool, DumpError> {
        self.line.clear();
        let start = self.offset;
        let n = (&mut self.input)
            .take(MAX_JSON_LINE + 1)
            .read_until(b'\n', &mut self.line)
            .map_err(|e| DumpError::io("read the dump", e))?;
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        self.offset += n as u64;
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
        } else if n as u64 > MAX_JSON_LINE {
            return Err(DumpError::malformed(
                Location {
                    line: Some(self.line_no),
                    offset: start,
                },
                format!("line longer than {MAX_JSON_LINE} bytes"),
            ));
        } else {
            return Err(DumpError::truncated(
                Location {
                    line: Some(self.line_no),
                    offset: start,
                },
                "the last line has no newline (file cut short?)",
            ));
        }
        Ok(true)
    }

    /// Reads one frame; `None` at a clean end before any header byte.
    fn read_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, DumpError> {
        self.record_start = self.offset;
        let mut head = [0u8; FRAME_HEADER_LEN];
        let mut got = 0;
        while got < FRAME_HEADER_LEN {
            let n = self
                .input
                .read(&mut head[got..])
                .map_err(|e| DumpError::io("read the dump", e))?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(DumpError::truncated(
                    self.location(),
                    format!("frame header cut after {got} of {FRAME_HEADER_LEN} bytes"),
                ));
            }
            got += n;
        }
        self.offset += FRAME_HEADER_LEN as u64;
        if head[..4] != MAGIC {
            return Err(DumpError::malformed(
                self.location(),
                format!("bad frame magic {:02x?} (expected \"ZCDP\")", &head[..4]),
            ));
        }
        let version = u16::from_le_bytes([head[4], head[5]]);
        if u32::from(version) != DUMP_FORMAT_VERSION {
            return Err(DumpError::malformed(
                self.location(),
                format!("frame format version {version}; this build reads {DUMP_FORMAT_VERSION}"),
            ));
        }
        let kind = head[6];
        if !(KIND_HEADER..=KIND_END).contains(&kind) {
            return Err(DumpError::malformed(
                self.location(),
                format!("unknown frame kind {kind}"),
            ));
        }
        if head[7] != 0 {
            return Err(DumpError::malformed(
                self.location(),
                format!("unknown frame flags {:#04x}", head[7]),
            ));
        }
        let len = u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]]));
        if len > MAX_FRAME_PAYLOAD {
            return Err(DumpError::malformed(
                self.location(),
                format!(
                    "frame announces {len} payload bytes, more than the {MAX_FRAME_PAYLOAD} allowed"
                ),
            ));
        }
        let stored = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        // Grow with the bytes actually present: a huge length field costs nothing until the
        // data is really there.
        let mut payload = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 16));
        let n = (&mut self.input)
            .take(len)
            .read_to_end(&mut payload)
            .map_err(|e| DumpError::io("read the dump", e))?;
        self.offset += n as u64;
        if (n as u64) < len {
            return Err(DumpError::truncated(
                self.location(),
                format!("frame payload cut after {n} of {len} bytes"),
            ));
        }
        let computed = crc32c::crc32c_append(crc32c::crc32c(&head[..12]), &payload);
        if computed != stored {
            return Err(DumpError::malformed(
                self.location(),
                format!(
                    "frame checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
                ),
            ));
        }
        Ok(Some((kind, payload)))
    }

    /// The next row, or `None` after a complete, consistent end record.
    ///
    /// # Errors
    ///
    /// [`DumpError::Malformed`] / [`DumpError::Truncated`] with the location; I/O errors.
    pub fn next_row(&mut self) -> Result<Option<Row>, DumpError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let row = match self.format {
            DumpFormat::Jsonl => self.next_json()?,
            DumpFormat::Binary => self.next_binary()?,
        };
        let Some(row) = row else {
            return Ok(None);
        };
        self.check_row(&row)?;
        Ok(Some(row))
    }

    fn next_json(&mut self) -> Result<Option<Row>, DumpError> {
        if !self.read_line()? {
            return Err(DumpError::truncated(
                self.location(),
                "the dump ends without its end record (file cut short?)",
            ));
        }
        if let Ok(row) = serde_json::from_slice::<JsonRow<'_>>(&self.line) {
            let Some(collection) = self
                .header
                .collections
                .iter()
                .position(|c| c == row.collection)
            else {
                return Err(DumpError::malformed(
                    self.location(),
                    format!(
                        "row of collection {:?}, which the header does not list",
                        row.collection
                    ),
                ));
            };
            let key = unhex(row.key)
                .map_err(|e| DumpError::malformed(self.location(), format!("key: {e}")))?;
            let value = unhex(row.value)
                .map_err(|e| DumpError::malformed(self.location(), format!("value: {e}")))?;
            return Ok(Some(Row {
                collection,
                key,
                value,
            }));
        }
        match serde_json::from_slice::<JsonEnd>(&self.line) {
            Ok(end) => {
                self.finish_end(end.end)?;
                Ok(None)
            }
            Err(_) => {
                // Report why it is not a row (the common case).
                let detail = match serde_json::from_slice::<JsonRow<'_>>(&self.line) {
                    Err(e) => format!("not a row or end record: {e}"),
                    Ok(_) => "not a row or end record".to_owned(),
                };
                Err(DumpError::malformed(self.location(), detail))
            }
        }
    }

    fn next_binary(&mut self) -> Result<Option<Row>, DumpError> {
        loop {
            if let Some((key, value)) = self.buffered.pop() {
                return Ok(Some(Row {
                    collection: self.buffered_collection,
                    key,
                    value,
                }));
            }
            let Some((kind, payload)) = self.read_frame()? else {
                return Err(DumpError::truncated(
                    self.location(),
                    "the dump ends without its end record (file cut short?)",
                ));
            };
            match kind {
                KIND_ROWS => {
                    let record: RowsRecord<'_> = decode_all(&payload).map_err(|e| {
                        DumpError::malformed(self.location(), format!("bad rows frame: {e}"))
                    })?;
                    let collection = record.collection as usize;
                    if collection >= self.header.collections.len() {
                        return Err(DumpError::malformed(
                            self.location(),
                            format!(
                                "rows of collection number {collection}, the header lists {}",
                                self.header.collections.len()
                            ),
                        ));
                    }
                    if record.rows.is_empty() {
                        return Err(DumpError::malformed(self.location(), "empty rows frame"));
                    }
                    self.buffered_collection = collection;
                    self.buffered = record
                        .rows
                        .into_iter()
                        .rev()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .collect();
                }
                KIND_END => {
                    let end: DumpEnd = decode_all(&payload).map_err(|e| {
                        DumpError::malformed(self.location(), format!("bad end frame: {e}"))
                    })?;
                    self.finish_end(end)?;
                    return Ok(None);
                }
                other => {
                    return Err(DumpError::malformed(
                        self.location(),
                        format!("unexpected frame kind {other} after the header"),
                    ));
                }
            }
        }
    }

    fn check_row(&mut self, row: &Row) -> Result<(), DumpError> {
        let name = &self.header.collections[row.collection];
        if row.key.is_empty() || row.key.len() > MAX_USER_KEY_LEN {
            return Err(DumpError::malformed(
                self.location(),
                format!(
                    "collection {name:?}: key of {} bytes (allowed 1..={MAX_USER_KEY_LEN})",
                    row.key.len()
                ),
            ));
        }
        if row.value.len() as u64 > MAX_USER_VALUE_LEN {
            return Err(DumpError::malformed(
                self.location(),
                format!(
                    "collection {name:?}: value of {} bytes (max {MAX_USER_VALUE_LEN})",
                    row.value.len()
                ),
            ));
        }
        if let Some((c, k)) = &self.last {
            let ordered = row.collection > *c || (row.collection == *c && row.key > *k);
            if !ordered {
                return Err(DumpError::malformed(
                    self.location(),
                    if row.collection == *c {
                        format!(
                            "collection {name:?}: keys not strictly ascending (duplicate or out of order)"
                        )
                    } else {
                        format!("collection {name:?} appears again after a later collection")
                    },
                ));
            }
        }
        self.per_collection[row.collection] += 1;
        match &mut self.last {
            Some((c, k)) => {
                *c = row.collection;
                k.clear();
                k.extend_from_slice(&row.key);
            }
            None => self.last = Some((row.collection, row.key.clone())),
        }
        Ok(())
    }

    fn finish_end(&mut self, end: DumpEnd) -> Result<(), DumpError> {
        if !self.buffered.is_empty() {
            return Err(DumpError::malformed(
                self.location(),
                "rows left before the end record",
            ));
        }
        let read: u64 = self.per_collection.iter().sum();
        if end.rows != read || end.per_collection != self.per_collection {
            return Err(DumpError::malformed(
                self.location(),
                format!(
                    "end record counts {} rows {:?}, the dump holds {read} {:?}",
                    end.rows, end.per_collection, self.per_collection
                ),
            ));
        }
        // Nothing may follow the end record.
        let more = self
            .input
            .fill_buf()
            .map_err(|e| DumpError::io("read the dump", e))?;
        if !more.is_empty() {
            return Err(DumpError::malformed(
                Location {
                    line: self.location().line.map(|l| l + 1),
                    offset: self.offset,
                },
                "data after the end record",
            ));
        }
        self.end = Some(end);
        Ok(())
    }

    /// The end record, once [`DumpReader::next_row`] returned `None`.
    #[must_use]
    pub fn end(&self) -> Option<&DumpEnd> {
        self.end.as_ref()
    }
}

fn decode_all<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| e.to_string())?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(format!("{} trailing bytes after the record", rest.len()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn sample(format: DumpFormat) -> Vec<u8> {
        let header = DumpHeader {
            zcore_dump: DUMP_FORMAT_VERSION,
            encoding: match format {
                DumpFormat::Jsonl => "hex".to_owned(),
                DumpFormat::Binary => "binary".to_owned(),
            },
            source_backend: "memory".to_owned(),
            version: 7,
            collections: vec!["a".to_owned(), "b".to_owned(), "empty".to_owned()],
        };
        let mut w = DumpWriter::new(Vec::new(), format, &header).unwrap();
        w.row(0, "a", b"k1", b"").unwrap();
        w.row(0, "a", b"k2", &[0, 0xff, b'\n']).unwrap();
        w.row(1, "b", &[0], b"v").unwrap();
        w.finish().unwrap().2
    }

    fn read_all(bytes: &[u8]) -> Result<(DumpHeader, Vec<Row>), DumpError> {
        let mut r = DumpReader::open(bytes)?;
        let mut rows = Vec::new();
        while let Some(row) = r.next_row()? {
            rows.push(row);
        }
        Ok((r.header().clone(), rows))
    }

    #[test]
    fn both_formats_round_trip_and_refuse_every_truncation() {
        for format in [DumpFormat::Jsonl, DumpFormat::Binary] {
            let bytes = sample(format);
            let (header, rows) = read_all(&bytes).unwrap();
            assert_eq!(header.collections.len(), 3);
            assert_eq!(rows.len(), 3);
            assert_eq!(rows[1].value, vec![0, 0xff, b'\n']);
            for cut in 0..bytes.len() {
                assert!(read_all(&bytes[..cut]).is_err(), "{format:?} cut at {cut}");
            }
            let mut long = bytes.clone();
            long.push(b'\n');
            assert!(read_all(&long).is_err());
        }
    }

    #[test]
    fn json_errors_name_the_line() {
        let text = String::from_utf8(sample(DumpFormat::Jsonl)).unwrap();
        let bad = text.replacen("\"key\":\"6b32\"", "\"key\":\"6b3\"", 1);
        let err = read_all(bad.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(err.to_string().contains("odd-length"), "{err}");
        // Out of order: swap two rows.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(1, 2);
        let swapped = lines.join("\n") + "\n";
        let err = read_all(swapped.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("ascending"), "{err}");
    }

    #[test]
    fn json_row_format_is_documented_shape() {
        let text = String::from_utf8(sample(DumpFormat::Jsonl)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"zcore_dump":1,"encoding":"hex","source_backend":"memory","version":7,"collections":["a","b","empty"]}"#
        );
        assert_eq!(
            lines[2],
            r#"{"collection":"a","key":"6b32","value":"00ff0a"}"#
        );
        assert_eq!(lines[4], r#"{"end":{"rows":3,"per_collection":[2,1,0]}}"#);
    }
}
