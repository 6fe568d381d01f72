//! Smoke fuzzing of every decoder of `zcore-engine` that reads bytes from disk: the backup
//! frame, manifest, chunk and entry records, MVCC keys and values (metadata records share the
//! value format; sealed values are opened with a keyring), encryption key files, and dump
//! files. Each target runs on arbitrary bytes and on mutations of valid encodings (bit flips,
//! truncations, length fields set huge, varints maxed, spans duplicated or deleted); valid
//! encodings must round-trip. The harness functions are `zcore_engine::fuzz::fuzz_*`, the
//! same ones the cargo-fuzz targets in `fuzz/` call.
//!
//! The test binary runs under a capped global allocator (1 GiB): a decoder that allocates what
//! a length field announces, instead of what the input holds, aborts the run.
//!
//! Cases per target: `ZCORE_FUZZ_CASES` (default 2,000).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use zcore_engine::backup::frame::{self, FrameKind};
use zcore_engine::dump::{DumpFormat, DumpHeader, DumpReader, DumpWriter};
use zcore_engine::fuzz;
use zcore_engine::mvcc::keys::EncodedKey;
use zcore_engine::mvcc::value;

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 1 << 30);

fn cases() -> u32 {
    std::env::var("ZCORE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

macro_rules! fixture {
    ($dir:literal, $file:literal) => {
        include_bytes!(concat!(
            "../../backends/tests/fixtures/backup_v1/",
            $dir,
            "/",
            $file
        ))
        .as_slice()
    };
}

const MANIFESTS: [&[u8]; 3] = [
    fixture!("full", "manifest"),
    fixture!("full_zstd", "manifest"),
    fixture!("incr", "manifest"),
];

const CHUNKS: [&[u8]; 6] = [
    fixture!("full", "chunk-00000000.zbk"),
    fixture!("full", "chunk-00000001.zbk"),
    fixture!("full_zstd", "chunk-00000000.zbk"),
    fixture!("full_zstd", "chunk-00000001.zbk"),
    fixture!("incr", "chunk-00000000.zbk"),
    fixture!("incr", "chunk-00000001.zbk"),
];

/// The entry data of the uncompressed fixture chunks (the tail of their payload).
fn entry_seeds() -> Vec<Vec<u8>> {
    let (manifest, _) =
        zcore_engine::backup::decode_manifest(std::path::Path::new("m"), MANIFESTS[0]).unwrap();
    manifest
        .chunks
        .iter()
        .zip(&CHUNKS[..2])
        .map(|(c, file)| {
            let payload = frame::decode(std::path::Path::new("c"), FrameKind::Chunk, file).unwrap();
            payload[payload.len() - c.raw_bytes as usize..].to_vec()
        })
        .collect()
}

/// The postcard `Manifest` bodies of the fixtures (inside the sealed payload: a varint
/// length, the body, a 32-byte digest).
fn manifest_bodies() -> Vec<Vec<u8>> {
    MANIFESTS
        .iter()
        .map(|m| {
            let payload = &m[16..];
            let (len, rest) = postcard::take_from_bytes::<u32>(payload)
                .map(|(l, _)| (l as usize, payload))
                .unwrap();
            let body_start = rest.len() - 32 - len;
            rest[body_start..body_start + len].to_vec()
        })
        .collect()
}

/// Postcard rows records `{collection: u32, rows: [(key, value)]}` as the dump writes them.
fn rows_payloads() -> Vec<Vec<u8>> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = vec![(vec![1], vec![2, 3]), (b"key".to_vec(), vec![])];
    vec![
        postcard::to_stdvec(&(0u32, &rows)).unwrap(),
        postcard::to_stdvec(&(1u32, &rows[..1])).unwrap(),
    ]
}

fn key_seed(key: &[u8], version: u64) -> Vec<u8> {
    EncodedKey::encode(key).at(version).as_bytes().to_vec()
}

/// Input layout of `fuzz_mvcc_value`: collection length, collection, key length, key, value.
fn value_seed(collection: &str, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![collection.len() as u8];
    out.extend_from_slice(collection.as_bytes());
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(&value::encode(collection, key, value));
    out
}

/// A sealed value under the harness keyring, in the `fuzz_mvcc_value` input layout.
fn sealed_seed(collection: &str, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![collection.len() as u8];
    out.extend_from_slice(collection.as_bytes());
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(
        &value::seal(&fuzz::fuzz_keyring_fixture(), collection, key, value).unwrap(),
    );
    out
}

fn dump_seed(format: DumpFormat, rows: &[(usize, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let header = DumpHeader {
        zcore_dump: 1,
        encoding: match format {
            DumpFormat::Jsonl => "hex".to_owned(),
            DumpFormat::Binary => "binary".to_owned(),
        },
        source_backend: "memory".to_owned(),
        version: 9,
        collections: vec!["a".to_owned(), "b".to_owned()],
    };
    let names = ["a", "b"];
    let mut w = DumpWriter::new(Vec::new(), format, &header).unwrap();
    for (c, k, v) in rows {
        w.row(*c, names[*c], k, v).unwrap();
    }
    w.finish().unwrap().2
}

fn sample_rows() -> Vec<(usize, Vec<u8>, Vec<u8>)> {
    vec![
        (0, vec![0, 0xff], vec![]),
        (0, b"k1".to_vec(), b"v1".to_vec()),
        (1, vec![7; 20], vec![0x0a; 40]),
    ]
}

fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut frames: Vec<Vec<u8>> = MANIFESTS
        .iter()
        .chain(&CHUNKS)
        .map(|b| b.to_vec())
        .collect();
    frames.push(frame::encode(FrameKind::Chunk, b"").unwrap());
    vec![
        ("backup_frame", frames),
        (
            "backup_manifest",
            MANIFESTS.iter().map(|b| b.to_vec()).collect(),
        ),
        ("backup_chunk", CHUNKS.iter().map(|b| b.to_vec()).collect()),
        ("backup_entries", entry_seeds()),
        ("backup_manifest_body", manifest_bodies()),
        (
            "backup_chunk_payload",
            CHUNKS.iter().map(|c| c[16..].to_vec()).collect(),
        ),
        ("dump_rows_payload", rows_payloads()),
        (
            "mvcc_key",
            vec![
                key_seed(b"user:1", 7),
                key_seed(&[0, 0xff, 0], u64::MAX),
                key_seed(&[0xff; 30], 0),
            ],
        ),
        (
            "mvcc_value",
            vec![
                value_seed("users", &key_seed(b"k", 3), Some(b"value")),
                value_seed("c", &key_seed(b"k", 4), None),
                value_seed("__meta", b"gc.floor", Some(&42u64.to_be_bytes())),
                sealed_seed("users", &key_seed(b"k", 5), Some(b"secret")),
                sealed_seed("c", &key_seed(b"k", 6), None),
            ],
        ),
        (
            "keyring",
            vec![
                [7u8; 32].to_vec(),
                "07".repeat(32).into_bytes(),
                format!("# keys\n1:{}\n2:{}\n", "07".repeat(32), "ab".repeat(32)).into_bytes(),
                format!("1:{},3:{}", "00".repeat(32), "ff".repeat(32)).into_bytes(),
            ],
        ),
        (
            "dump",
            vec![
                dump_seed(DumpFormat::Jsonl, &sample_rows()),
                dump_seed(DumpFormat::Binary, &sample_rows()),
                dump_seed(DumpFormat::Binary, &[]),
            ],
        ),
    ]
}

fn target(name: &str) -> fn(&[u8]) {
    match name {
        "backup_frame" => fuzz::fuzz_backup_frame,
        "backup_manifest" => fuzz::fuzz_backup_manifest,
        "backup_chunk" => fuzz::fuzz_backup_chunk,
        "backup_entries" => fuzz::fuzz_backup_entries,
        "backup_manifest_body" => fuzz::fuzz_backup_manifest_body,
        "backup_chunk_payload" => fuzz::fuzz_backup_chunk_payload,
        "dump_rows_payload" => fuzz::fuzz_dump_rows_payload,
        "mvcc_key" => fuzz::fuzz_mvcc_key,
        "mvcc_value" => fuzz::fuzz_mvcc_value,
        "dump" => fuzz::fuzz_dump,
        "keyring" => fuzz::fuzz_keyring,
        other => panic!("no target {other}"),
    }
}

fn seeds_of(name: &str) -> Vec<Vec<u8>> {
    seeds()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s)
        .unwrap()
}

/// Mutation programs: which seed, then up to 6 (op, position, value) mutations.
fn mutations() -> impl Strategy<Value = (usize, Vec<(u8, u32, u32)>)> {
    (
        any::<usize>(),
        prop::collection::vec(any::<(u8, u32, u32)>(), 1..6),
    )
}

macro_rules! fuzz_target {
    ($arbitrary:ident, $mutated:ident, $name:literal) => {
        proptest! {
            #![proptest_config(config())]
            #[test]
            fn $arbitrary(data in prop::collection::vec(any::<u8>(), 0..600)) {
                target($name)(&data);
            }

            #[test]
            fn $mutated((seed, ops) in mutations()) {
                let seeds = seeds_of($name);
                let input = fuzz::mutate(&seeds[seed % seeds.len()], &ops);
                target($name)(&input);
            }
        }
    };
}

fuzz_target!(backup_frame_arbitrary, backup_frame_mutated, "backup_frame");
fuzz_target!(
    backup_manifest_arbitrary,
    backup_manifest_mutated,
    "backup_manifest"
);
fuzz_target!(backup_chunk_arbitrary, backup_chunk_mutated, "backup_chunk");
fuzz_target!(
    backup_entries_arbitrary,
    backup_entries_mutated,
    "backup_entries"
);
fuzz_target!(
    backup_manifest_body_arbitrary,
    backup_manifest_body_mutated,
    "backup_manifest_body"
);
fuzz_target!(
    backup_chunk_payload_arbitrary,
    backup_chunk_payload_mutated,
    "backup_chunk_payload"
);
fuzz_target!(
    dump_rows_payload_arbitrary,
    dump_rows_payload_mutated,
    "dump_rows_payload"
);
fuzz_target!(mvcc_key_arbitrary, mvcc_key_mutated, "mvcc_key");
fuzz_target!(mvcc_value_arbitrary, mvcc_value_mutated, "mvcc_value");
fuzz_target!(dump_arbitrary, dump_mutated, "dump");
fuzz_target!(keyring_arbitrary, keyring_mutated, "keyring");

/// The seeds are valid: every target accepts them unchanged (so the mutations start from
/// real encodings, and the round-trip checks inside the harness run).
#[test]
fn seeds_are_valid_encodings() {
    use std::path::Path;
    for m in MANIFESTS {
        zcore_engine::backup::decode_manifest(Path::new("m"), m).unwrap();
    }
    for c in CHUNKS {
        frame::decode(Path::new("c"), FrameKind::Chunk, c).unwrap();
    }
    assert_eq!(entry_seeds().len(), 2);
    let keyring = fuzz::fuzz_keyring_fixture();
    for seed in &seeds_of("keyring") {
        zcore_engine::crypto::Keyring::parse(seed, "seed").unwrap();
    }
    let sealed = value::seal(&keyring, "c", b"k", Some(b"v")).unwrap();
    assert_eq!(
        value::open_owned(&keyring, false, "c", b"k", sealed).unwrap(),
        value::Stored::Put(b"v".to_vec())
    );
    for (name, seeds) in seeds() {
        for s in seeds {
            target(name)(&s);
        }
    }
    for format in [DumpFormat::Jsonl, DumpFormat::Binary] {
        let bytes = dump_seed(format, &sample_rows());
        let mut r = DumpReader::open(bytes.as_slice()).unwrap();
        let mut n = 0;
        while r.next_row().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }
}

proptest! {
    #![proptest_config(config())]

    /// Valid encodings round-trip (the harness asserts it for what decodes).
    #[test]
    fn valid_encodings_round_trip(
        key in prop::collection::vec(any::<u8>(), 1..40),
        version in any::<u64>(),
        payload in prop::option::of(prop::collection::vec(any::<u8>(), 0..100)),
        rows in prop::collection::btree_map(
            (0usize..2, prop::collection::vec(any::<u8>(), 1..12)),
            prop::collection::vec(any::<u8>(), 0..30),
            0..20,
        ),
    ) {
        let stored_key = key_seed(&key, version);
        let vk = zcore_engine::mvcc::keys::VersionedKey::from_stored(stored_key.clone()).unwrap();
        prop_assert_eq!(vk.user_key().unwrap(), key.clone());
        prop_assert_eq!(vk.version(), version);
        fuzz::fuzz_mvcc_key(&stored_key);
        let stored = value::encode("c", &stored_key, payload.as_deref());
        let decoded = value::decode("c", &stored_key, &stored).unwrap();
        prop_assert_eq!(decoded, match &payload {
            Some(v) => value::Stored::Put(v.clone()),
            None => value::Stored::Tombstone,
        });
        fuzz::fuzz_mvcc_value(&value_seed("c", &stored_key, payload.as_deref()));
        let framed = frame::encode(FrameKind::Chunk, &stored).unwrap();
        prop_assert_eq!(frame::decode(std::path::Path::new("f"), FrameKind::Chunk, &framed).unwrap(), stored.as_slice());
        let rows: Vec<(usize, Vec<u8>, Vec<u8>)> =
            rows.into_iter().map(|((c, k), v)| (c, k, v)).collect();
        for format in [DumpFormat::Jsonl, DumpFormat::Binary] {
            let bytes = dump_seed(format, &rows);
            let mut r = DumpReader::open(bytes.as_slice()).unwrap();
            for (c, k, v) in &rows {
                let row = r.next_row().unwrap().unwrap();
                prop_assert_eq!((&row.collection, &row.key, &row.value), (c, k, v));
            }
            prop_assert!(r.next_row().unwrap().is_none());
            fuzz::fuzz_dump(&bytes);
        }
    }
}

/// A length field set to the maximum is refused before anything that size is allocated (the
/// capped allocator would abort this test otherwise).
#[test]
fn huge_length_fields_allocate_nothing_of_their_size() {
    // Backup frame announcing 4 GiB.
    let mut f = frame::encode(FrameKind::Chunk, b"x").unwrap();
    f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    fuzz::fuzz_backup_frame(&f);
    // Dump rows frame announcing 2 GiB (under the format's limit, so the reader goes on to
    // read it): it must grow with the bytes present, not reserve what the header says.
    let mut d = dump_seed(DumpFormat::Binary, &sample_rows());
    let header_len = 16 + u32::from_le_bytes(d[8..12].try_into().unwrap()) as usize;
    d[header_len + 8..header_len + 12].copy_from_slice(&(1u32 << 31).to_le_bytes());
    let err = DumpReader::open(d.as_slice())
        .and_then(|mut r| r.next_row())
        .unwrap_err();
    assert!(err.to_string().contains("frame payload cut"), "{err}");
    fuzz::fuzz_dump(&d);
}
