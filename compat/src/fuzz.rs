//! Fuzz harness of the redb-file import codec (`migrate::codec`): type names as redb stores
//! them in a table definition, and redb-encoded keys and values re-encoded in zcore's typed
//! order-preserving encoding and back. Shared by `compat/tests/fuzz_codec.rs` (proptest, run in
//! CI) and the cargo-fuzz target in `fuzz/`. Must not panic on any input; what encodes must
//! decode back to redb bytes that encode the same.

use crate::migrate::codec::{RedbType, TupleFormat};

/// Type names the value half of the input is interpreted as (selected by the first byte).
pub const TYPES: [&str; 14] = [
    "u64",
    "i32",
    "bool",
    "char",
    "f64",
    "&str",
    "&[u8]",
    "(u32,&str)",
    "(&str,&[u8],bool)",
    "Option<u64>",
    "Option<&str>",
    "[u16;3]",
    "Vec<&str>",
    "Option<(i8,[u8;2])>",
];

/// First byte: type (index into [`TYPES`]) and tuple format; the rest: a redb-encoded value.
/// Also the whole input as a type name.
pub fn fuzz_redb_codec(data: &[u8]) {
    if let Ok(name) = std::str::from_utf8(data) {
        for format in [TupleFormat::Varint, TupleFormat::LegacyU32] {
            if let Ok(t) = RedbType::parse(name, format) {
                let _ = t.fixed_width();
                let _ = t.decode(&[0]);
            }
        }
    }
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let format = if selector & 0x80 == 0 {
        TupleFormat::Varint
    } else {
        TupleFormat::LegacyU32
    };
    let Ok(t) = RedbType::parse(TYPES[usize::from(selector & 0x7f) % TYPES.len()], format) else {
        panic!("a built-in type name does not parse");
    };
    // Arbitrary bytes as zcore's typed encoding.
    let _ = t.decode(value);
    // Arbitrary bytes as redb's encoding: what encodes decodes back to redb bytes that encode
    // to the same thing (the bytes themselves may be canonicalized: redb ignores the padding
    // after a fixed-width `None`, the import writes it as zeros).
    if let Ok(encoded) = t.encode_to_vec(value) {
        match t.decode(&encoded).map(|back| t.encode_to_vec(&back)) {
            Ok(Ok(again)) => assert_eq!(again, encoded, "codec round trip"),
            other => panic!("an encoded value does not decode and re-encode: {other:?}"),
        }
    }
}
