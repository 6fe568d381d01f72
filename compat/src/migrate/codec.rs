//! redb's built-in key and value types, and the order-preserving encoding they are migrated to.
//!
//! redb stores a table's key and value types by name (`"u64"`, `"&str"`, `"(u32,Option<&str>)"`,
//! `"[u8;16]"`, …) and orders keys with the type's own `compare`, which is not byte order: a `u64`
//! is stored little-endian, an `i32` in two's complement, a tuple with length headers. zcore
//! collections are ordered by bytes. [`RedbType`] parses a stored type name and re-encodes
//! redb's bytes into the **zcore typed encoding**, whose byte order is redb's order:
//!
//! | redb type | zcore encoding |
//! |---|---|
//! | `u8` … `u128`, `NonZeroU*` | big-endian |
//! | `i8` … `i128`, `NonZeroI*` | big-endian with the sign bit flipped |
//! | `bool` | one byte, `0x00` / `0x01` |
//! | `char` | the code point, 3 bytes big-endian |
//! | `f32`, `f64` (values only) | IEEE bits big-endian; positive: sign bit flipped, negative: all bits flipped |
//! | `()` | nothing |
//! | `&str`, `String`, `&[u8]` | the bytes; when more follows (inside a tuple, array, `Option`, `Vec`, a multimap key): `0x00` → `0x00 0xFF`, then `0x00 0x01` |
//! | `[T; N]` (incl. `[u8; N]`, `&[u8; N]`) | the `N` element encodings, concatenated |
//! | `(A, B, …)` | the element encodings, concatenated; `(T,)` as `T` |
//! | `Option<T>` | `None`: `0x00`; `Some(t)`: `0x01` ‖ `t` |
//! | `Vec<T>` (values only) | per element `0x01` ‖ element, then `0x00` |
//!
//! Every encoding is self-delimiting except a trailing variable-width string at the very end,
//! so concatenation preserves redb's element-wise (lexicographic) tuple and array order, and a
//! key that is a prefix of another sorts first. Values use the same encoding as keys (one codec
//! for both; [`RedbType::decode`] turns either back into redb's own bytes for the same type, so a
//! program can keep using `redb::Value::from_bytes`).
//!
//! **Tuple formats.** redb ≥ 3.0 writes variable-width tuples with varint lengths; redb 2.x wrote
//! a `u32` length for every element but the last. The stored type name does not say which, but
//! its classification does for a top-level tuple (`Internal` = the old format, `Internal2` /
//! `Internal3` = the new one); see [`TupleFormat`]. Tuples nested inside an `Option`, array or
//! `Vec` are read in the new format, exactly as redb 4.6 itself reads them (a table written by
//! redb 2.x with such a type is ambiguous to redb too).

use std::cmp::Ordering;
use std::fmt;

/// How a variable-width tuple lays out its element lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TupleFormat {
    /// redb ≥ 3.0: a varint length for each variable-width element except the last.
    Varint,
    /// redb ≤ 2.x (and 3.x's `Legacy<…>`): a `u32` little-endian length for every element except
    /// the last.
    LegacyU32,
}

/// A redb built-in type, parsed from the name redb stores for a table's key or value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedbType {
    /// `()`.
    Unit,
    /// `bool`.
    Bool,
    /// `char`.
    Char,
    /// `u8` … `i128` and the `NonZero*` types (encoded as the primitive).
    Int {
        /// Width in bytes (1, 2, 4, 8, 16).
        bytes: usize,
        /// Two's complement.
        signed: bool,
    },
    /// `f32` / `f64` (redb allows them as values only).
    Float {
        /// Width in bytes (4 or 8).
        bytes: usize,
    },
    /// `&str` or `String` (UTF-8).
    Str,
    /// `&[u8]`.
    Bytes,
    /// `[T; N]`, including `[u8; N]` / `&[u8; N]`.
    Array(Box<RedbType>, usize),
    /// `Vec<T>` (values only).
    Vec(Box<RedbType>),
    /// `Option<T>`; `niche` for `niche::Option<T>` (redb's experimental niche layout: `None` is
    /// `T`'s niche bytes, `Some` is `T` without a tag).
    Option {
        /// `T`.
        inner: Box<RedbType>,
        /// Niche layout.
        niche: bool,
    },
    /// `(T,)` and `(A, B, …)`.
    Tuple {
        /// The element types.
        elements: Vec<RedbType>,
        /// How a variable-width tuple of two or more elements records its lengths.
        format: TupleFormat,
    },
}

/// A type name that is not one of redb's built-in types.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a redb built-in type ({reason})")]
pub struct TypeParseError {
    /// The full type name.
    pub name: String,
    /// What could not be parsed.
    pub reason: String,
}

/// Bytes that are not a valid encoding of the type (redb's or zcore's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError(message.into()))
}

const ESCAPE: u8 = 0xFF;
/// Deepest type nesting accepted in a type name.
const MAX_DEPTH: usize = 32;
/// Most elements of an array type or a `Vec` value.
const MAX_ELEMENTS: usize = 1 << 20;
/// Largest fixed width a type may declare: no stored value can be larger, and decoding a
/// `None` of a fixed-width `Option` materializes that many bytes.
const MAX_FIXED_WIDTH: u64 = zcore_engine::mvcc::MAX_USER_VALUE_LEN;

/// Refuses types whose fixed width (of the whole or of any part) exceeds [`MAX_FIXED_WIDTH`]
/// or overflows `usize`, before any value of them is decoded.
fn check_widths(t: &RedbType) -> Result<(), String> {
    let too_wide = |what: &str| {
        Err(format!(
            "{what} wider than {MAX_FIXED_WIDTH} bytes (no stored value can be that large)"
        ))
    };
    match t {
        RedbType::Array(inner, n) => {
            check_widths(inner)?;
            if let Some(w) = inner.fixed_width()
                && w.checked_mul(*n)
                    .is_none_or(|total| total as u64 > MAX_FIXED_WIDTH)
            {
                return too_wide("array");
            }
        }
        RedbType::Option { inner, .. } | RedbType::Vec(inner) => check_widths(inner)?,
        RedbType::Tuple { elements, .. } => {
            for e in elements {
                check_widths(e)?;
            }
            let widths: Option<Vec<usize>> = elements.iter().map(RedbType::fixed_width).collect();
            if let Some(widths) = widths
                && widths
                    .iter()
                    .try_fold(0usize, |sum, w| sum.checked_add(*w))
                    .is_none_or(|total| total as u64 > MAX_FIXED_WIDTH)
            {
                return too_wide("tuple");
            }
        }
        _ => {}
    }
    if t.fixed_width()
        .is_some_and(|w| w as u64 > MAX_FIXED_WIDTH - 1)
    {
        return too_wide("type");
    }
    Ok(())
}
const TERMINATOR: [u8; 2] = [0x00, 0x01];

impl RedbType {
    /// Parses a redb type name. `tuples` is the format of variable-width tuples at the top level
    /// (and nested in them); tuples nested inside `Option`, arrays and `Vec` always use
    /// [`TupleFormat::Varint`], as redb 4.6 reads them.
    ///
    /// # Errors
    ///
    /// [`TypeParseError`] for user-defined or unknown types.
    pub fn parse(name: &str, tuples: TupleFormat) -> Result<Self, TypeParseError> {
        let fail = |reason: String| TypeParseError {
            name: name.to_owned(),
            reason,
        };
        let mut parser = Parser {
            text: name,
            pos: 0,
            depth: 0,
        };
        let ty = parser.parse(tuples).map_err(fail)?;
        check_widths(&ty).map_err(fail)?;
        parser.skip_ws();
        if parser.pos != name.len() {
            return Err(fail(format!(
                "unexpected {:?} at byte {}",
                &name[parser.pos..],
                parser.pos
            )));
        }
        Ok(ty)
    }

    /// The fixed width redb stores for this type (`None`: variable width), as redb computes it.
    #[must_use]
    pub fn fixed_width(&self) -> Option<usize> {
        match self {
            Self::Unit => Some(0),
            Self::Bool => Some(1),
            Self::Char => Some(3),
            Self::Int { bytes, .. } | Self::Float { bytes } => Some(*bytes),
            Self::Str | Self::Bytes | Self::Vec(_) => None,
            Self::Array(t, n) => t.fixed_width().and_then(|w| w.checked_mul(*n)),
            Self::Option { inner, niche } => {
                let w = inner.fixed_width()?;
                if *niche { Some(w) } else { w.checked_add(1) }
            }
            Self::Tuple { elements, .. } => elements
                .iter()
                .try_fold(0usize, |sum, e| sum.checked_add(e.fixed_width()?)),
        }
    }

    /// Whether redb can use this type as a key (floats and `Vec` are values only).
    #[must_use]
    pub fn is_key(&self) -> bool {
        match self {
            Self::Float { .. } | Self::Vec(_) => false,
            Self::Array(t, _) | Self::Option { inner: t, .. } => t.is_key(),
            Self::Tuple { elements, .. } => elements.iter().all(Self::is_key),
            _ => true,
        }
    }

    /// Whether this type or any type inside it is a variable-width tuple of two or more
    /// elements (the only types whose layout changed between redb 2 and 3).
    #[must_use]
    pub fn has_variable_tuple(&self) -> bool {
        match self {
            Self::Tuple { elements, .. } => {
                (elements.len() > 1 && self.fixed_width().is_none())
                    || elements.iter().any(Self::has_variable_tuple)
            }
            Self::Array(t, _) | Self::Vec(t) | Self::Option { inner: t, .. } => {
                t.has_variable_tuple()
            }
            _ => false,
        }
    }

    /// The niche redb declares for this type (the bytes `niche::Option<T>` uses for `None`).
    fn niche(&self) -> Option<Vec<u8>> {
        match self {
            Self::Bool | Self::Str => Some(vec![0xFF]),
            Self::Char => Some(vec![0xFF; 3]),
            Self::Tuple { elements, .. } if elements.len() == 1 => elements[0].niche(),
            _ => None,
        }
    }

    /// Re-encodes redb's bytes `data` of this type into the zcore typed encoding, appending to
    /// `out`. `last`: nothing follows in the output, so a trailing string needs no terminator
    /// (pass `true` for a whole key or value).
    ///
    /// # Errors
    ///
    /// [`CodecError`] if `data` is not a valid redb encoding of this type.
    pub fn encode(&self, data: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            Self::Unit => expect_len("()", data, 0),
            Self::Bool => {
                expect_len("bool", data, 1)?;
                if data[0] > 1 {
                    return err(format!("bool: invalid byte {:#04x}", data[0]));
                }
                out.push(data[0]);
                Ok(())
            }
            Self::Char => {
                expect_len("char", data, 3)?;
                let v = u32::from_le_bytes([data[0], data[1], data[2], 0]);
                if char::from_u32(v).is_none() {
                    return err(format!("char: {v:#x} is not a Unicode scalar value"));
                }
                out.extend_from_slice(&[data[2], data[1], data[0]]);
                Ok(())
            }
            Self::Int { bytes, signed } => {
                expect_len("integer", data, *bytes)?;
                let start = out.len();
                out.extend(data.iter().rev());
                if *signed {
                    out[start] ^= 0x80;
                }
                Ok(())
            }
            Self::Float { bytes } => {
                expect_len("float", data, *bytes)?;
                let start = out.len();
                out.extend(data.iter().rev());
                if out[start] & 0x80 != 0 {
                    for b in &mut out[start..] {
                        *b = !*b;
                    }
                } else {
                    out[start] ^= 0x80;
                }
                Ok(())
            }
            Self::Str => {
                if std::str::from_utf8(data).is_err() {
                    return err("&str: invalid UTF-8");
                }
                encode_bytes(data, last, out);
                Ok(())
            }
            Self::Bytes => {
                encode_bytes(data, last, out);
                Ok(())
            }
            Self::Array(t, n)
                if **t
                    == (Self::Int {
                        bytes: 1,
                        signed: false,
                    }) =>
            {
                // `[u8; N]`: the bytes themselves.
                expect_len("byte array", data, *n)?;
                out.extend_from_slice(data);
                Ok(())
            }
            Self::Array(t, n) => {
                let elements = split_array(t, *n, data)?;
                let count = elements.len();
                for (i, e) in elements.into_iter().enumerate() {
                    t.encode(e, last && i + 1 == count, out)?;
                }
                Ok(())
            }
            Self::Vec(t) => {
                for e in split_vec(t, data)? {
                    out.push(0x01);
                    t.encode(e, false, out)?;
                }
                out.push(0x00);
                Ok(())
            }
            Self::Option { inner, niche: true } => {
                let Some(niche) = inner.niche() else {
                    return err("niche::Option of a type without a niche");
                };
                if data == niche.as_slice() {
                    out.push(0x00);
                    Ok(())
                } else {
                    out.push(0x01);
                    inner.encode(data, last, out)
                }
            }
            Self::Option {
                inner,
                niche: false,
            } => {
                let Some((&tag, rest)) = data.split_first() else {
                    return err("Option: empty");
                };
                match tag {
                    0 => {
                        let pad = inner.fixed_width().unwrap_or(0);
                        if rest.len() != pad {
                            return err(format!(
                                "Option: None followed by {} bytes, expected {pad}",
                                rest.len()
                            ));
                        }
                        out.push(0x00);
                        Ok(())
                    }
                    1 => {
                        out.push(0x01);
                        inner.encode(rest, last, out)
                    }
                    other => err(format!("Option: invalid tag {other:#04x}")),
                }
            }
            Self::Tuple { elements, format } => {
                let parts = split_tuple(elements, *format, data)?;
                let count = parts.len();
                for (i, (t, e)) in elements.iter().zip(parts).enumerate() {
                    t.encode(e, last && i + 1 == count, out)?;
                }
                Ok(())
            }
        }
    }

    /// [`encode`](Self::encode) of a whole key or value into a new buffer.
    ///
    /// # Errors
    ///
    /// As [`encode`](Self::encode).
    pub fn encode_to_vec(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(data.len() + 2);
        self.encode(data, true, &mut out)?;
        Ok(out)
    }

    /// Turns a zcore typed encoding of this type back into redb's bytes (the inverse of
    /// [`encode_to_vec`](Self::encode_to_vec)).
    ///
    /// # Errors
    ///
    /// [`CodecError`] if `encoded` is not a complete encoding of this type.
    pub fn decode(&self, encoded: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut cursor = Cursor {
            buf: encoded,
            pos: 0,
        };
        let mut out = Vec::with_capacity(encoded.len());
        self.decode_from(&mut cursor, true, &mut out)?;
        if cursor.pos != encoded.len() {
            return err(format!(
                "{} trailing bytes after the value",
                encoded.len() - cursor.pos
            ));
        }
        Ok(out)
    }

    /// Splits a key of a collection migrated from a multimap table (`key ‖ value`, the key
    /// encoded self-delimiting) back into redb's key and value bytes.
    ///
    /// # Errors
    ///
    /// [`CodecError`] if `encoded` is not such a key.
    pub fn decode_multimap_key(
        key_type: &Self,
        value_type: &Self,
        encoded: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), CodecError> {
        let mut cursor = Cursor {
            buf: encoded,
            pos: 0,
        };
        let mut key = Vec::new();
        key_type.decode_from(&mut cursor, false, &mut key)?;
        let mut value = Vec::new();
        value_type.decode_from(&mut cursor, true, &mut value)?;
        if cursor.pos != encoded.len() {
            return err("trailing bytes after the multimap value");
        }
        Ok((key, value))
    }

    /// Decodes one value of this type from `cursor` (which must be self-delimited unless
    /// `last`), appending redb's bytes to `out`.
    fn decode_from(
        &self,
        cursor: &mut Cursor<'_>,
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            Self::Unit => Ok(()),
            Self::Bool => {
                let b = cursor.take(1)?[0];
                if b > 1 {
                    return err(format!("bool: invalid byte {b:#04x}"));
                }
                out.push(b);
                Ok(())
            }
            Self::Char => {
                let b = cursor.take(3)?;
                out.extend_from_slice(&[b[2], b[1], b[0]]);
                Ok(())
            }
            Self::Int { bytes, signed } => {
                let b = cursor.take(*bytes)?;
                out.extend(b.iter().rev());
                if *signed {
                    let top = out.len() - 1;
                    out[top] ^= 0x80;
                }
                Ok(())
            }
            Self::Float { bytes } => {
                let b = cursor.take(*bytes)?;
                let mut be = b.to_vec();
                if be[0] & 0x80 != 0 {
                    be[0] ^= 0x80;
                } else {
                    for x in &mut be {
                        *x = !*x;
                    }
                }
                out.extend(be.iter().rev());
                Ok(())
            }
            Self::Str => {
                let start = out.len();
                decode_bytes(cursor, last, out)?;
                if std::str::from_utf8(&out[start..]).is_err() {
                    return err("&str: invalid UTF-8");
                }
                Ok(())
            }
            Self::Bytes => decode_bytes(cursor, last, out),
            Self::Array(t, n) => {
                let mut parts = Vec::with_capacity((*n).min(4096));
                for i in 0..*n {
                    let mut part = Vec::new();
                    t.decode_from(cursor, last && i + 1 == *n, &mut part)?;
                    parts.push(part);
                }
                if t.fixed_width().is_some() {
                    for p in parts {
                        out.extend_from_slice(&p);
                    }
                } else {
                    let header = n
                        .checked_mul(4)
                        .ok_or_else(|| CodecError("array: too many elements".to_owned()))?;
                    let mut end = header;
                    let base = out.len();
                    out.resize(base + header, 0);
                    for (i, p) in parts.iter().enumerate() {
                        end += p.len();
                        let end32 = u32::try_from(end)
                            .or_else(|_| err("array: longer than 4 GiB"))?
                            .to_le_bytes();
                        out[base + 4 * i..base + 4 * i + 4].copy_from_slice(&end32);
                    }
                    for p in parts {
                        out.extend_from_slice(&p);
                    }
                }
                Ok(())
            }
            Self::Vec(t) => {
                let mut parts = Vec::new();
                loop {
                    match cursor.take(1)?[0] {
                        0x00 => break,
                        0x01 => {
                            let mut part = Vec::new();
                            t.decode_from(cursor, false, &mut part)?;
                            parts.push(part);
                        }
                        other => return err(format!("Vec: invalid element tag {other:#04x}")),
                    }
                }
                encode_varint(parts.len(), out)?;
                let fixed = t.fixed_width().is_some();
                for p in parts {
                    if !fixed {
                        encode_varint(p.len(), out)?;
                    }
                    out.extend_from_slice(&p);
                }
                Ok(())
            }
            Self::Option { inner, niche } => match cursor.take(1)?[0] {
                0x00 => {
                    if *niche {
                        let Some(n) = inner.niche() else {
                            return err("niche::Option of a type without a niche");
                        };
                        out.extend_from_slice(&n);
                    } else {
                        out.push(0);
                        out.resize(out.len() + inner.fixed_width().unwrap_or(0), 0);
                    }
                    Ok(())
                }
                0x01 => {
                    if !*niche {
                        out.push(1);
                    }
                    inner.decode_from(cursor, last, out)
                }
                other => err(format!("Option: invalid tag {other:#04x}")),
            },
            Self::Tuple { elements, format } => {
                let count = elements.len();
                let mut parts = Vec::with_capacity(count);
                for (i, t) in elements.iter().enumerate() {
                    let mut part = Vec::new();
                    t.decode_from(cursor, last && i + 1 == count, &mut part)?;
                    parts.push(part);
                }
                if count == 1 || self.fixed_width().is_some() {
                    for p in parts {
                        out.extend_from_slice(&p);
                    }
                    return Ok(());
                }
                for (t, p) in elements.iter().zip(&parts).take(count - 1) {
                    match format {
                        TupleFormat::Varint if t.fixed_width().is_none() => {
                            encode_varint(p.len(), out)?;
                        }
                        TupleFormat::Varint => {}
                        TupleFormat::LegacyU32 => {
                            let len = u32::try_from(p.len())
                                .or_else(|_| err("tuple element longer than 4 GiB"))?;
                            out.extend_from_slice(&len.to_le_bytes());
                        }
                    }
                }
                for p in parts {
                    out.extend_from_slice(&p);
                }
                Ok(())
            }
        }
    }

    /// Compares two redb encodings of this type in redb's order (that is, by their zcore
    /// encodings). Bytes that do not decode compare by their raw bytes, after every valid
    /// encoding.
    #[must_use]
    pub fn compare(&self, a: &[u8], b: &[u8]) -> Ordering {
        match (self.encode_to_vec(a), self.encode_to_vec(b)) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => a.cmp(b),
        }
    }
}

impl fmt::Display for RedbType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unit => f.write_str("()"),
            Self::Bool => f.write_str("bool"),
            Self::Char => f.write_str("char"),
            Self::Int { bytes, signed } => {
                write!(f, "{}{}", if *signed { 'i' } else { 'u' }, bytes * 8)
            }
            Self::Float { bytes } => write!(f, "f{}", bytes * 8),
            Self::Str => f.write_str("&str"),
            Self::Bytes => f.write_str("&[u8]"),
            Self::Array(t, n) => write!(f, "[{t};{n}]"),
            Self::Vec(t) => write!(f, "Vec<{t}>"),
            Self::Option { inner, niche } => {
                write!(f, "{}Option<{inner}>", if *niche { "niche::" } else { "" })
            }
            Self::Tuple { elements, .. } => {
                f.write_str("(")?;
                for (i, e) in elements.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{e}")?;
                }
                if elements.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
        }
    }
}

fn expect_len(what: &str, data: &[u8], len: usize) -> Result<(), CodecError> {
    if data.len() == len {
        Ok(())
    } else {
        err(format!(
            "{what}: expected {len} bytes, found {}",
            data.len()
        ))
    }
}

fn encode_bytes(data: &[u8], last: bool, out: &mut Vec<u8>) {
    if last {
        out.extend_from_slice(data);
        return;
    }
    for &b in data {
        out.push(b);
        if b == 0 {
            out.push(ESCAPE);
        }
    }
    out.extend_from_slice(&TERMINATOR);
}

fn decode_bytes(cursor: &mut Cursor<'_>, last: bool, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if last {
        out.extend_from_slice(cursor.rest());
        return Ok(());
    }
    loop {
        let b = cursor.take(1)?[0];
        if b != 0 {
            out.push(b);
            continue;
        }
        match cursor.take(1)?[0] {
            ESCAPE => out.push(0),
            0x01 => return Ok(()),
            other => return err(format!("string: 0x00 followed by {other:#04x}")),
        }
    }
}

/// redb's varint length (`complex_types.rs`): < 254 one byte; 254 + u16 LE; 255 + u32 LE.
fn decode_varint(data: &[u8]) -> Result<(usize, usize), CodecError> {
    match data.first() {
        None => err("varint: truncated"),
        Some(&b) if b < 254 => Ok((usize::from(b), 1)),
        Some(254) => match data.get(1..3) {
            Some(x) => Ok((usize::from(u16::from_le_bytes([x[0], x[1]])), 3)),
            None => err("varint: truncated"),
        },
        Some(_) => match data.get(1..5) {
            Some(x) => Ok((u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize, 5)),
            None => err("varint: truncated"),
        },
    }
}

fn encode_varint(len: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if len < 254 {
        out.push(len as u8);
    } else if let Ok(x) = u16::try_from(len) {
        out.push(254);
        out.extend_from_slice(&x.to_le_bytes());
    } else if let Ok(x) = u32::try_from(len) {
        out.push(255);
        out.extend_from_slice(&x.to_le_bytes());
    } else {
        return err("length does not fit redb's varint");
    }
    Ok(())
}

fn slice(data: &[u8], start: usize, len: usize) -> Result<&[u8], CodecError> {
    start
        .checked_add(len)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| CodecError(format!("truncated: need {len} bytes at offset {start}")))
}

fn split_array<'a>(t: &RedbType, n: usize, data: &'a [u8]) -> Result<Vec<&'a [u8]>, CodecError> {
    let mut parts = Vec::with_capacity(n.min(4096));
    if let Some(w) = t.fixed_width() {
        expect_len("array", data, w.saturating_mul(n))?;
        for i in 0..n {
            parts.push(slice(data, i * w, w)?);
        }
        return Ok(parts);
    }
    let mut start = n.saturating_mul(4);
    for i in 0..n {
        let e = slice(data, 4 * i, 4)?;
        let end = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
        if end < start || end > data.len() {
            return err(format!(
                "array: element {i} ends at {end}, outside {start}..={}",
                data.len()
            ));
        }
        parts.push(&data[start..end]);
        start = end;
    }
    if start != data.len() {
        return err("array: bytes after the last element");
    }
    Ok(parts)
}

fn split_vec<'a>(t: &RedbType, data: &'a [u8]) -> Result<Vec<&'a [u8]>, CodecError> {
    let (count, mut offset) = decode_varint(data)?;
    if count > MAX_ELEMENTS {
        return err(format!(
            "Vec: {count} elements (at most {MAX_ELEMENTS} are supported)"
        ));
    }
    let mut parts = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let len = match t.fixed_width() {
            Some(w) => w,
            None => {
                let (len, used) = decode_varint(data.get(offset..).unwrap_or_default())?;
                offset += used;
                len
            }
        };
        parts.push(slice(data, offset, len)?);
        offset += len;
    }
    if offset != data.len() {
        return err("Vec: bytes after the last element");
    }
    Ok(parts)
}

fn split_tuple<'a>(
    elements: &[RedbType],
    format: TupleFormat,
    data: &'a [u8],
) -> Result<Vec<&'a [u8]>, CodecError> {
    let count = elements.len();
    if count == 1 {
        return Ok(vec![data]);
    }
    let widths: Vec<Option<usize>> = elements.iter().map(RedbType::fixed_width).collect();
    let mut lens = Vec::with_capacity(count);
    let mut offset = 0;
    if widths.iter().all(Option::is_some) {
        lens.extend(widths.iter().map(|w| w.unwrap_or(0)));
    } else {
        for w in &widths[..count - 1] {
            match (format, w) {
                (TupleFormat::Varint, Some(w)) => lens.push(*w),
                (TupleFormat::Varint, None) => {
                    let (len, used) = decode_varint(data.get(offset..).unwrap_or_default())?;
                    offset += used;
                    lens.push(len);
                }
                (TupleFormat::LegacyU32, _) => {
                    let e = slice(data, offset, 4)?;
                    offset += 4;
                    lens.push(u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize);
                }
            }
        }
        let head: usize = lens.iter().sum();
        let last = data
            .len()
            .checked_sub(offset + head)
            .ok_or_else(|| CodecError("tuple: element lengths exceed the data".to_owned()))?;
        lens.push(last);
    }
    let mut parts = Vec::with_capacity(count);
    for (len, w) in lens.iter().zip(&widths) {
        if let Some(w) = w
            && w != len
        {
            return err(format!("tuple: fixed element of width {w} has {len} bytes"));
        }
        parts.push(slice(data, offset, *len)?);
        offset += len;
    }
    if offset != data.len() {
        return err("tuple: bytes after the last element");
    }
    Ok(parts)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let s = slice(self.buf, self.pos, n)?;
        self.pos += n;
        Ok(s)
    }

    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected {token:?} at byte {}", self.pos))
        }
    }

    fn parse(&mut self, tuples: TupleFormat) -> Result<RedbType, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let ty = self.parse_inner(tuples);
        self.depth -= 1;
        ty
    }

    fn parse_inner(&mut self, tuples: TupleFormat) -> Result<RedbType, String> {
        self.skip_ws();
        if self.eat("niche::Option<") {
            let inner = self.parse(TupleFormat::Varint)?;
            self.expect(">")?;
            if inner.niche().is_none() {
                return Err(format!("niche::Option<{inner}>: {inner} has no niche"));
            }
            return Ok(RedbType::Option {
                inner: Box::new(inner),
                niche: true,
            });
        }
        if self.eat("Option<") {
            let inner = self.parse(TupleFormat::Varint)?;
            self.expect(">")?;
            return Ok(RedbType::Option {
                inner: Box::new(inner),
                niche: false,
            });
        }
        if self.eat("Vec<") {
            let inner = self.parse(TupleFormat::Varint)?;
            self.expect(">")?;
            return Ok(RedbType::Vec(Box::new(inner)));
        }
        if self.eat("&[u8]") {
            return Ok(RedbType::Bytes);
        }
        if self.eat("&str") {
            return Ok(RedbType::Str);
        }
        if self.eat("[") {
            let inner = self.parse(TupleFormat::Varint)?;
            self.expect(";")?;
            self.skip_ws();
            let digits = self.text[self.pos..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let n: usize = self.text[self.pos..self.pos + digits]
                .parse()
                .map_err(|_| format!("expected an array length at byte {}", self.pos))?;
            self.pos += digits;
            self.expect("]")?;
            if n > MAX_ELEMENTS {
                return Err(format!(
                    "array of {n} elements (at most {MAX_ELEMENTS} are supported)"
                ));
            }
            return Ok(RedbType::Array(Box::new(inner), n));
        }
        if self.eat("(") {
            if self.eat(")") {
                return Ok(RedbType::Unit);
            }
            let mut elements = vec![self.parse(tuples)?];
            let mut trailing_comma = false;
            loop {
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
                if self.eat(")") {
                    trailing_comma = true;
                    break;
                }
                elements.push(self.parse(tuples)?);
            }
            if elements.len() == 1 && !trailing_comma {
                return Err("a parenthesised type is not a tuple without a trailing comma".into());
            }
            return Ok(RedbType::Tuple {
                elements,
                format: tuples,
            });
        }
        let ident_len = self.text[self.pos..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let ident = &self.text[self.pos..self.pos + ident_len];
        let ty = match ident {
            "bool" => RedbType::Bool,
            "char" => RedbType::Char,
            "String" => RedbType::Str,
            "f32" => RedbType::Float { bytes: 4 },
            "f64" => RedbType::Float { bytes: 8 },
            _ => {
                let (signed, bits) = if let Some(b) = ident.strip_prefix("NonZeroU") {
                    (false, b)
                } else if let Some(b) = ident.strip_prefix("NonZeroI") {
                    (true, b)
                } else if let Some(b) = ident.strip_prefix('u') {
                    (false, b)
                } else if let Some(b) = ident.strip_prefix('i') {
                    (true, b)
                } else {
                    return Err(format!("unknown type {ident:?}"));
                };
                match bits {
                    "8" | "16" | "32" | "64" | "128" => RedbType::Int {
                        bytes: bits.parse::<usize>().map_err(|e| e.to_string())? / 8,
                        signed,
                    },
                    _ => return Err(format!("unknown type {ident:?}")),
                }
            }
        };
        self.pos += ident_len;
        Ok(ty)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ty(name: &str) -> RedbType {
        RedbType::parse(name, TupleFormat::Varint).unwrap()
    }

    #[test]
    fn parses_and_prints_redb_names() {
        for name in [
            "u64",
            "i128",
            "bool",
            "char",
            "&str",
            "&[u8]",
            "()",
            "[u8;16]",
            "Option<u32>",
            "(u64,&str)",
            "(u8,)",
            "(u8,Option<&str>,bool)",
            "[(u16,&str);3]",
            "Vec<Option<i8>>",
            "niche::Option<&str>",
            "f64",
        ] {
            assert_eq!(ty(name).to_string(), name);
        }
        assert_eq!(ty("String"), RedbType::Str);
        assert_eq!(
            ty("NonZeroI32"),
            RedbType::Int {
                bytes: 4,
                signed: true
            }
        );
        for bad in [
            "MyType",
            "u7",
            "Option<u8",
            "(u8)",
            "u64 x",
            "[u8;]",
            "niche::Option<u8>",
        ] {
            assert!(RedbType::parse(bad, TupleFormat::Varint).is_err(), "{bad}");
        }
    }

    #[test]
    fn fixed_widths_follow_redb() {
        assert_eq!(ty("Option<u64>").fixed_width(), Some(9));
        assert_eq!(ty("(u32,i8,bool)").fixed_width(), Some(6));
        assert_eq!(ty("[char;4]").fixed_width(), Some(12));
        assert_eq!(ty("(u32,&str)").fixed_width(), None);
        assert_eq!(ty("niche::Option<char>").fixed_width(), Some(3));
        assert_eq!(ty("()").fixed_width(), Some(0));
    }

    #[test]
    fn integers_sort_by_value() {
        let t = ty("i16");
        let mut values: Vec<i16> = vec![-300, -1, 0, 1, 255, 256, i16::MIN, i16::MAX];
        let mut enc: Vec<Vec<u8>> = values
            .iter()
            .map(|v| t.encode_to_vec(&v.to_le_bytes()).unwrap())
            .collect();
        values.sort_unstable();
        enc.sort();
        let back: Vec<i16> = enc
            .iter()
            .map(|e| {
                let b = t.decode(e).unwrap();
                i16::from_le_bytes([b[0], b[1]])
            })
            .collect();
        assert_eq!(back, values);
    }

    #[test]
    fn strings_inside_tuples_are_self_delimiting() {
        let t = ty("(&str,u8)");
        // redb's varint layout: len("a\0") = 2, then bytes, then the u8.
        let a = t.encode_to_vec(b"\x02a\x00\x07").unwrap();
        assert_eq!(a, b"a\x00\xff\x00\x01\x07");
        assert_eq!(t.decode(&a).unwrap(), b"\x02a\x00\x07");
        let shorter = t.encode_to_vec(b"\x01a\xff").unwrap();
        assert!(shorter < a, "\"a\" sorts before \"a\\0\" whatever follows");
    }

    #[test]
    fn legacy_tuples_use_u32_lengths() {
        let t = RedbType::parse("(&str,&str)", TupleFormat::LegacyU32).unwrap();
        let redb2 = b"\x03\x00\x00\x00abcde";
        let enc = t.encode_to_vec(redb2).unwrap();
        assert_eq!(enc, b"abc\x00\x01de");
        assert_eq!(t.decode(&enc).unwrap(), redb2);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for (name, data) in [
            ("u64", &b"\x01"[..]),
            ("bool", b"\x02"),
            ("char", b"\xff\xff\xff"),
            ("Option<u8>", b"\x05\x00"),
            ("(&str,u8)", b"\xff\x00"),
            ("[&str;2]", b"\xff\xff\xff\xff"),
            ("Vec<u8>", b"\x05\x01"),
            ("&str", b"\xc3"),
        ] {
            assert!(ty(name).encode_to_vec(data).is_err(), "{name}");
        }
        assert!(ty("(&str,u8)").decode(b"ab").is_err());
    }

    #[test]
    fn hostile_type_names_are_refused() {
        let deep = format!("{}u8{}", "Option<".repeat(100), ">".repeat(100));
        assert!(RedbType::parse(&deep, TupleFormat::Varint).is_err());
        assert!(RedbType::parse("[();99999999999]", TupleFormat::Varint).is_err());
        assert!(RedbType::parse("[u8;18446744073709551616]", TupleFormat::Varint).is_err());
        // A Vec<()> claiming 2^32 - 1 elements.
        assert!(
            ty("Vec<()>")
                .encode_to_vec(b"\xff\xff\xff\xff\xff")
                .is_err()
        );
    }
}
