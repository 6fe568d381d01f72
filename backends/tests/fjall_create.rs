//! A new fjall store is built under a staging name and renamed into place, so a process killed
//! during creation (which leaves fjall 3.1.13 unable to open the directory) leaves only a
//! staging directory that the next open removes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use zcore_backends::{FjallBackend, FjallOptions};
use zcore_engine::{CollectionName, Durability, StorageBackend, WriteBatch};

fn options() -> FjallOptions {
    FjallOptions {
        worker_threads: Some(1),
        ..FjallOptions::default()
    }
}

#[test]
fn a_new_store_leaves_no_staging_directory_and_survives_a_leftover_one() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("store.fjall");
    let staging = dir.path().join("nested").join("store.fjall.zcore-creating");
    // What a killed creation leaves behind: a half-made directory under the staging name.
    std::fs::create_dir_all(staging.join("journals")).unwrap();
    std::fs::write(staging.join("journals").join("0"), b"half-written").unwrap();

    let b = FjallBackend::open(&path, &options()).expect("open creates the store");
    assert!(!staging.exists(), "the staging directory is gone");
    let c = CollectionName::new("c").unwrap();
    rt.block_on(async {
        b.create_collection(&c).await.unwrap();
        let mut batch = WriteBatch::new();
        batch.put(&c, b"k".to_vec(), b"v".to_vec());
        b.write(batch, Durability::Synced).await.unwrap();
        b.close().await.unwrap();
    });
    let again = FjallBackend::open(&path, &options()).expect("reopen");
    rt.block_on(async {
        assert_eq!(again.get(&c, b"k").await.unwrap(), Some(b"v".to_vec()));
        again.close().await.unwrap();
    });
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("nested"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("store.fjall")]);
}
