//! Smoke fuzzing of the redb-file import codec (`zcore_compat::fuzz::fuzz_redb_codec`, shared
//! with the cargo-fuzz target in `fuzz/`): arbitrary bytes, mutations of valid redb encodings,
//! and type names read from a redb file's table definitions. Capped allocator (1 GiB): an
//! allocation sized by a declared width or count aborts the run. `ZCORE_FUZZ_CASES` (2,000).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use zcore_compat::fuzz;
use zcore_compat::migrate::codec::{RedbType, TupleFormat};

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 1 << 30);

fn config() -> Config {
    Config {
        cases: std::env::var("ZCORE_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

/// Valid redb encodings, each prefixed with the selector of its type in `fuzz::TYPES`.
fn seeds() -> Vec<Vec<u8>> {
    let with = |i: u8, bytes: &[u8]| [&[i][..], bytes].concat();
    vec![
        with(0, &42u64.to_le_bytes()),
        with(1, &(-7i32).to_le_bytes()),
        with(2, &[1]),
        with(5, b"hello"),
        with(6, &[0, 1, 2, 0xff]),
        with(7, &[7, 0, 0, 0, b'a', b'b']),
        with(9, &[1, 5, 0, 0, 0, 0, 0, 0, 0]),
        with(10, &[1, b'x']),
        with(11, &[1, 0, 2, 0, 3, 0]),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn codec_arbitrary(data in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz::fuzz_redb_codec(&data);
    }

    #[test]
    fn codec_mutated(seed in any::<usize>(), ops in prop::collection::vec(any::<(u8, u32, u32)>(), 1..6)) {
        let seeds = seeds();
        fuzz::fuzz_redb_codec(&zcore_engine::fuzz::mutate(&seeds[seed % seeds.len()], &ops));
    }

    #[test]
    fn type_names(name in "[a-z0-9&;<>(),\\[\\] ]{0,40}") {
        fuzz::fuzz_redb_codec(name.as_bytes());
    }
}

#[test]
fn seeds_encode() {
    for s in seeds() {
        let t = RedbType::parse(fuzz::TYPES[usize::from(s[0])], TupleFormat::Varint).unwrap();
        t.encode_to_vec(&s[1..])
            .unwrap_or_else(|e| panic!("{}: {e}", fuzz::TYPES[usize::from(s[0])]));
        fuzz::fuzz_redb_codec(&s);
    }
}

/// A type whose declared fixed width is enormous (nested arrays) is refused when its name is
/// parsed: decoding a `None` of it would otherwise materialize the declared width (found by
/// this test: an 8 TiB allocation from `Option<[[u64;1048576];1048576]>`).
#[test]
fn enormous_declared_widths_are_refused() {
    for name in [
        "Option<[[u64;1048576];1048576]>",
        "[[[u8;1048576];1048576];1048576]",
        "[[[[u8;1048576];1048576];1048576];1048576]",
        "Vec<([[u8;1048576];4096],u8)>",
        "(&str,[[u16;1048576];2048])",
    ] {
        let parsed = RedbType::parse(name, TupleFormat::Varint);
        assert!(parsed.is_err(), "{name} parsed");
    }
    // Wide but possible types still parse.
    RedbType::parse("[[u8;1048576];16]", TupleFormat::Varint).unwrap();
}
