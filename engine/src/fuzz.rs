//! Fuzz harnesses of every decoder this crate runs on bytes read from disk, shared by the
//! proptest smoke tests (`engine/tests/fuzz_decoders.rs`, run in CI) and the cargo-fuzz targets
//! (`fuzz/`, outside the workspace). Each `fuzz_*` function must not panic on any input; where
//! the input decodes, it checks that what was decoded encodes back (a failed check panics: a
//! finding). [`mutate`] is the mutation engine the smoke tests share.

use std::path::Path;

use crate::backup::codec;
use crate::backup::format::{
    BackupKind, ChunkPayload, ChunkRef, CollectionSummary, Digest, Manifest, SealedManifest,
};
use crate::backup::frame::{self, FrameKind};
use crate::crypto::{EncryptionKey, Keyring};
use crate::dump::{DumpReader, DumpWriter};
use crate::mvcc::keys::{EncodedKey, VersionedKey, split_versioned};
use crate::mvcc::value::{self, Stored};

/// The backup frame (`ZCBK`), as a manifest and as a chunk.
pub fn fuzz_backup_frame(data: &[u8]) {
    for kind in [FrameKind::Manifest, FrameKind::Chunk] {
        if let Ok(payload) = frame::decode(Path::new("f"), kind, data) {
            let again = frame::encode(kind, payload);
            assert_eq!(again.as_deref(), Some(data), "frame round trip");
        }
    }
}

/// A backup manifest file: frame, sealed body, digest, structure checks.
pub fn fuzz_backup_manifest(data: &[u8]) {
    let path = Path::new("manifest");
    if let Ok((manifest, digest)) = crate::backup::decode_manifest(path, data) {
        let (bytes, again) = match crate::backup::encode_manifest(&manifest) {
            Ok(encoded) => encoded,
            Err(e) => panic!("a decoded manifest does not re-encode: {e}"),
        };
        // Postcard accepts some non-canonical encodings (overlong varints), so the bytes and
        // with them the digest may differ; the decoded value must not.
        let _ = (again, digest);
        match crate::backup::decode_manifest(path, &bytes) {
            Ok((back, _)) => assert_eq!(back, manifest, "manifest round trip"),
            Err(e) => panic!("a re-encoded manifest does not decode: {e}"),
        }
    }
}

/// A backup chunk file, opened the way `zstore backup verify` opens it: the harness writes it
/// with a manifest that records its true size and checksums and takes the identity fields
/// from the chunk's own header, so damaged data gets past the file checks to the frame,
/// payload, identity, decompression and entry decoders; then `verify_blocking` runs.
pub fn fuzz_backup_chunk(data: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    let path = Path::new("chunk");
    let Ok(payload) = frame::decode(path, FrameKind::Chunk, data) else {
        return;
    };
    let Ok((header, _)) = postcard::take_from_bytes::<ChunkPayload<'_>>(payload) else {
        return;
    };
    let file = crate::backup::format::chunk_file_name(header.seq);
    let manifest = Manifest {
        format_version: frame::FORMAT_VERSION,
        backup_id: header.backup_id,
        created_at_ms: 0,
        source_backend: "fuzz".to_owned(),
        kind: BackupKind::Full { history: true },
        base_version: 0,
        head_version: u64::MAX,
        parent: None,
        compression: header.compression,
        collections: vec![CollectionSummary {
            name: header.collection.to_owned(),
            entries: header.entries,
            tombstones: 0,
            live_keys: 0,
            bytes: header.raw_len,
            state_digest: Digest::default(),
            chunks: 1,
        }],
        sequences: Vec::new(),
        chunks: vec![ChunkRef {
            file: file.clone(),
            collection: 0,
            entries: header.entries,
            raw_bytes: header.raw_len,
            size: data.len() as u64,
            crc32c: crc32c::crc32c(data),
            blake3: Digest::of(data),
            compression: header.compression,
        }],
    };
    let Ok((manifest_bytes, _)) = crate::backup::encode_manifest(&manifest) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "zcore-fuzz-chunk-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(&file), data))
        .and_then(|()| {
            std::fs::write(
                dir.join(crate::backup::format::MANIFEST_FILE),
                &manifest_bytes,
            )
        });
    if written.is_ok() {
        let _ = crate::backup::verify_blocking(&dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A manifest body (the postcard `Manifest`) under a valid seal and frame, so the structure
/// decoder and checks run on it rather than stopping at the frame CRC or the digest.
pub fn fuzz_backup_manifest_body(data: &[u8]) {
    let sealed = SealedManifest {
        body: data,
        digest: Digest::of(data),
    };
    let Ok(payload) = postcard::to_stdvec(&sealed) else {
        return;
    };
    if let Some(file) = frame::encode(FrameKind::Manifest, &payload) {
        fuzz_backup_manifest(&file);
    }
}

/// A chunk payload (the postcard `ChunkPayload`) under a valid frame, so identity,
/// decompression and entry decoding run on it rather than stopping at the frame CRC.
pub fn fuzz_backup_chunk_payload(data: &[u8]) {
    if let Some(file) = frame::encode(FrameKind::Chunk, data) {
        fuzz_backup_chunk(&file);
    }
}

/// The entry records inside a chunk's (decompressed) data.
pub fn fuzz_backup_entries(data: &[u8]) {
    // Every successful entry consumes at least one byte, and the first error ends the stream.
    for entry in codec::Entries::new(Path::new("chunk"), data, u64::MAX) {
        if entry.is_err() {
            break;
        }
    }
}

/// A stored MVCC key (`escaped user key ‖ 0x00 0x01 ‖ !version`).
pub fn fuzz_mvcc_key(data: &[u8]) {
    let _ = split_versioned(data);
    if let Ok(key) = VersionedKey::from_stored(data.to_vec()) {
        let user = match key.user_key() {
            Ok(user) => user,
            Err(e) => panic!("an accepted key has no user key: {e}"),
        };
        // The encoding is canonical: re-encoding gives the same bytes.
        let again = EncodedKey::encode(&user).at(key.version());
        assert_eq!(again.as_bytes(), data, "key round trip");
    }
}

/// Splits fuzz input into (collection, versioned key, stored value) for the value decoder.
fn value_parts(data: &[u8]) -> Option<(String, &[u8], &[u8])> {
    let (&c, rest) = data.split_first()?;
    let c = usize::from(c % 16).min(rest.len());
    let (collection, rest) = rest.split_at(c);
    let (&k, rest) = rest.split_first()?;
    let k = usize::from(k).min(rest.len());
    let (key, stored) = rest.split_at(k);
    Some((
        String::from_utf8_lossy(collection).into_owned(),
        key,
        stored,
    ))
}

/// A stored value (plain or sealed header, checksum) under a collection and key taken from
/// the input; also a metadata record of `__meta` (same format, 8-byte payload).
pub fn fuzz_mvcc_value(data: &[u8]) {
    if let Some((collection, key, stored)) = value_parts(data) {
        decode_value(&collection, key, stored);
    }
    // The whole input as a metadata record.
    decode_value(crate::mvcc::META_COLLECTION, b"gc.floor", data);
}

/// The keyring the value harness opens sealed values with (key id 1).
#[must_use]
pub fn fuzz_keyring_fixture() -> Keyring {
    Keyring::single(EncryptionKey::from_bytes([7; crate::crypto::KEY_LEN]))
}

fn decode_value(collection: &str, key: &[u8], stored: &[u8]) {
    let _ = value::sealed_key_id(stored);
    // Sealed values (encryption at rest): authentication must fail cleanly on damage; what
    // opens re-seals (with a fresh nonce) and opens to the same.
    let keyring = fuzz_keyring_fixture();
    for allow_plaintext in [false, true] {
        if let Ok(opened) =
            value::open_owned(&keyring, allow_plaintext, collection, key, stored.to_vec())
            && value::sealed_key_id(stored).is_some()
        {
            let payload = match &opened {
                Stored::Put(v) => Some(v.as_slice()),
                Stored::Tombstone => None,
            };
            let resealed = match value::seal(&keyring, collection, key, payload) {
                Ok(bytes) => bytes,
                Err(e) => panic!("an opened value does not re-seal: {e}"),
            };
            let again = value::open_owned(&keyring, false, collection, key, resealed);
            assert_eq!(again.ok(), Some(opened), "sealed value round trip");
        }
    }
    let owned = value::decode_owned(collection, key, stored.to_vec());
    let borrowed = value::decode(collection, key, stored);
    assert_eq!(
        owned.as_ref().ok(),
        borrowed.as_ref().ok(),
        "decode and decode_owned agree"
    );
    match borrowed {
        Ok(Stored::Put(v)) => {
            assert_eq!(
                value::encode(collection, key, Some(&v)),
                stored,
                "value round trip"
            );
        }
        Ok(Stored::Tombstone) => {
            assert_eq!(
                value::encode(collection, key, None),
                stored,
                "tombstone round trip"
            );
        }
        Err(_) => {}
    }
}

/// An encryption key file or `ZDB_ENCRYPTION_KEY_ENV` value (raw 32 bytes, 64 hex digits, or
/// `<id>:<hex>` lines/items): parsed as the key loaders parse it.
pub fn fuzz_keyring(data: &[u8]) {
    if let Ok(keyring) = Keyring::parse(data, "fuzz") {
        for id in keyring.ids() {
            assert!(
                keyring.check_value(id).is_some(),
                "a listed key id has no key"
            );
        }
        let _ = keyring.newest_id();
    }
}

/// A dump file (either form): every record; a dump that reads completely is written again
/// and must read back to the same rows.
pub fn fuzz_dump(data: &[u8]) {
    let Ok(mut reader) = DumpReader::open(data) else {
        return;
    };
    let mut rows = Vec::new();
    loop {
        match reader.next_row() {
            Ok(Some(row)) => rows.push(row),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    let header = reader.header().clone();
    let rewritten = (|| {
        let mut w = DumpWriter::new(Vec::new(), reader.format(), &header)?;
        for r in &rows {
            w.row(
                r.collection,
                &header.collections[r.collection],
                &r.key,
                &r.value,
            )?;
        }
        w.finish().map(|(_, _, bytes)| bytes)
    })();
    let bytes = match rewritten {
        Ok(bytes) => bytes,
        Err(e) => panic!("a dump that reads does not write: {e}"),
    };
    let mut again = match DumpReader::open(bytes.as_slice()) {
        Ok(r) => r,
        Err(e) => panic!("a rewritten dump does not open: {e}"),
    };
    for row in &rows {
        match again.next_row() {
            Ok(Some(r)) => assert_eq!(&r, row, "dump round trip"),
            other => panic!("rewritten dump differs: {other:?}"),
        }
    }
    assert!(
        matches!(again.next_row(), Ok(None)),
        "rewritten dump has extra rows"
    );
}

/// A binary dump whose rows frame payload is `data`, between a valid header frame and a
/// valid end frame, with correct frame checksums: the postcard rows decoder runs on it.
pub fn fuzz_dump_rows_payload(data: &[u8]) {
    let header = crate::dump::DumpHeader {
        zcore_dump: crate::dump::DUMP_FORMAT_VERSION,
        encoding: "binary".to_owned(),
        source_backend: "fuzz".to_owned(),
        version: 1,
        collections: vec!["a".to_owned(), "b".to_owned()],
    };
    let (Ok(h), Ok(rows)) = (
        postcard::to_stdvec(&header),
        crate::dump::encode_frame(2, data),
    ) else {
        return;
    };
    let Ok(mut file) = crate::dump::encode_frame(1, &h) else {
        return;
    };
    file.extend_from_slice(&rows);
    fuzz_dump(&file);
}

/// Applies mutations to `seed`: each `(op, position, value)` flips a bit, truncates, sets a
/// byte, overwrites 4 bytes with a huge little-endian length, writes a maximal postcard
/// varint, duplicates or deletes a span. Positions wrap around the current length.
#[must_use]
pub fn mutate(seed: &[u8], ops: &[(u8, u32, u32)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(op, pos, value) in ops {
        let len = out.len();
        let at = if len == 0 { 0 } else { pos as usize % len };
        match op % 8 {
            0 if len > 0 => out[at] ^= 1 << (value % 8),
            1 => out.truncate(at),
            2 if len > 0 => out[at] = value as u8,
            3 if len >= 4 => {
                let at = at.min(len - 4);
                let huge =
                    [u32::MAX, u32::MAX - 1, 1 << 31, 0x7fff_ffff, value][(value % 5) as usize];
                out[at..at + 4].copy_from_slice(&huge.to_le_bytes());
            }
            4 => {
                // A maximal u64 varint, as postcard writes length prefixes.
                let varint = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
                let end = (at + varint.len()).min(len);
                out.splice(at..end, varint);
            }
            5 if len > 0 => {
                let end = (at + 1 + value as usize % 16).min(len);
                let span = out[at..end].to_vec();
                out.splice(at..at, span);
            }
            6 if len > 0 => {
                let end = (at + 1 + value as usize % 16).min(len);
                out.drain(at..end);
            }
            _ => out.insert(at.min(len), value as u8),
        }
    }
    out
}
