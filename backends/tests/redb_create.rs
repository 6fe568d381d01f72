//! A new redb file is built under a staging name and renamed into place, so a process killed
//! while redb writes the first header (which leaves a file every later open refuses: "magic
//! number mismatch") leaves only a staging file that the next open replaces. A damaged file at
//! the real path is refused with an error, never a panic, and is left as it was.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use zcore_backends::{RedbBackend, RedbOptions};
use zcore_engine::{BackendError, CollectionName, Durability, StorageBackend, WriteBatch};

#[test]
fn a_new_file_leaves_no_staging_file_and_survives_a_leftover_one() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("store.redb");
    let staging = dir.path().join("nested").join("store.redb.zcore-creating");
    // What a killed creation leaves behind: a few bytes of a header under the staging name.
    std::fs::create_dir_all(staging.parent().unwrap()).unwrap();
    std::fs::write(&staging, b"redb\x1a\x0a\xa9").unwrap();

    let b = RedbBackend::open(&path, &RedbOptions::default()).expect("open creates the file");
    assert!(!staging.exists(), "the staging file is gone");
    let c = CollectionName::new("c").unwrap();
    rt.block_on(async {
        b.create_collection(&c).await.unwrap();
        let mut batch = WriteBatch::new();
        batch.put(&c, b"k".to_vec(), b"v".to_vec());
        b.write(batch, Durability::Synced).await.unwrap();
        b.close().await.unwrap();
    });
    let again = RedbBackend::open(&path, &RedbOptions::default()).expect("reopen");
    rt.block_on(async {
        assert_eq!(again.get(&c, b"k").await.unwrap(), Some(b"v".to_vec()));
        again.close().await.unwrap();
    });
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("nested"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("store.redb")]);
}

#[test]
fn a_partial_header_at_the_real_path_is_an_open_error_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let partial = b"redb\x1a\x0a\xa9\x0d".to_vec();
    std::fs::write(&path, &partial).unwrap();
    match RedbBackend::open(&path, &RedbOptions::default()) {
        Err(BackendError::Open { path: p, .. }) => assert_eq!(p, path),
        Err(other) => panic!("expected an open error naming the file, got {other}"),
        Ok(_) => panic!("a partial header must not open"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        partial,
        "the file is untouched"
    );
}
