//! Every example of the seed README (`../shared/seed/zcore-storage-README.md`) as written
//! there — apart from import paths and obviously missing setup lines (a temp directory instead
//! of `data.fjall` in the working directory) — run three ways: from a plain thread, inside a
//! multi-threaded runtime (`#[tokio::main]`'s default) and inside a current-thread runtime.
//! The backup example differs in one line, marked below: a restore goes into an empty store.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use zcore_storage::{
    COL_CATALOG, COL_EVENTS, COL_JOBS, COL_ORGANIZATIONS, COL_ROWS, COL_SESSIONS, COL_TEAMS,
    COL_USERS, MemoryStorage, StorageError, Store, composite_key, encode_key, next_seq,
    prefix_range,
};

fn basic_operations() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("data.fjall"))?;

    // Write transaction
    let mut write_tx = store.begin_write()?;
    write_tx.set(COL_USERS, b"user1".to_vec(), b"user_data".to_vec());
    write_tx.commit(&store)?;

    // Read transaction
    let read_tx = store.begin_read()?;
    let value = read_tx.get(&store, COL_USERS, b"user1")?;
    assert_eq!(value, Some(b"user_data".to_vec()));
    Ok(())
}

fn savepoint_usage() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("data.fjall"))?;

    // Write transaction with savepoints
    let mut write_tx = store.begin_write()?;

    // Initial changes
    write_tx.set(COL_USERS, b"user1".to_vec(), b"data1".to_vec());
    write_tx.create_savepoint("checkpoint1".to_string())?;

    // More changes
    write_tx.set(COL_USERS, b"user2".to_vec(), b"data2".to_vec());
    write_tx.set(COL_USERS, b"user3".to_vec(), b"data3".to_vec());

    // Rollback to savepoint (removes user2 and user3 changes)
    write_tx.rollback_to_savepoint("checkpoint1")?;

    // Commit only user1 change
    write_tx.commit(&store)?;

    let r = store.begin_read()?;
    assert_eq!(r.get(&store, COL_USERS, b"user1")?, Some(b"data1".to_vec()));
    assert_eq!(r.get(&store, COL_USERS, b"user2")?, None);
    assert_eq!(r.get(&store, COL_USERS, b"user3")?, None);
    Ok(())
}

fn multi_partition_transactions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("data.fjall"))?;
    let mut multi_tx = zcore_storage::MultiPartitionTransaction::new();

    // Write to multiple collections atomically
    multi_tx.set(COL_USERS, b"user123".to_vec(), b"user_data".to_vec())?;
    multi_tx.set(
        COL_SESSIONS,
        b"session456".to_vec(),
        b"session_data".to_vec(),
    )?;
    multi_tx.set(COL_ORGANIZATIONS, b"org789".to_vec(), b"org_data".to_vec())?;

    // Create savepoint for rollback
    multi_tx.create_savepoint("before_deletion".to_string())?;

    // More operations...
    multi_tx.delete(COL_SESSIONS, b"old_session".to_vec())?;

    // Read from within transaction
    let user_data = multi_tx.get(&store, COL_USERS, b"user123")?;
    assert_eq!(user_data, Some(b"user_data".to_vec()));

    // Commit all changes atomically
    multi_tx.commit(&store)?;

    let r = store.begin_read()?;
    assert_eq!(
        r.get(&store, COL_SESSIONS, b"session456")?,
        Some(b"session_data".to_vec())
    );
    assert_eq!(
        r.get(&store, COL_ORGANIZATIONS, b"org789")?,
        Some(b"org_data".to_vec())
    );
    Ok(())
}

fn sequence_generation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("data.fjall"))?;

    // Generate unique sequence numbers
    let id1 = next_seq(&store, b"users")?; // Returns 1
    let id2 = next_seq(&store, b"users")?; // Returns 2
    let id3 = next_seq(&store, b"posts")?; // Returns 1 (different sequence)
    assert_eq!((id1, id2, id3), (1, 2, 1));
    Ok(())
}

fn range_scanning() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("data.fjall"))?;
    // Setup the seed example leaves out: some rows for two tables of two orgs.
    let mut w = store.begin_write()?;
    for (org, table, id) in [
        ("org123", "users", 1u64),
        ("org123", "users", 2),
        ("org123", "teams", 1),
        ("org9", "users", 1),
    ] {
        w.set(
            COL_ROWS,
            composite_key![org.as_bytes(), table.as_bytes(), &id.to_be_bytes()],
            format!("{org}/{table}/{id}").into_bytes(),
        );
    }
    w.commit(&store)?;

    let read_tx = store.begin_read()?;

    // Scan all rows for a specific org and table
    let org_id = "org123";
    let table_name = "users";
    let (start, end) = prefix_range(&[org_id.as_bytes(), table_name.as_bytes()]);

    let results = read_tx.scan_prefix(&store, COL_ROWS, &start)?;
    for (key, value) in &results {
        println!("Found row: {} -> {} bytes", hex::encode(key), value.len());
    }
    let values: Vec<_> = results.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        vec![b"org123/users/1".to_vec(), b"org123/users/2".to_vec()]
    );
    // The half-open form of the same range.
    assert_eq!(read_tx.scan_range(&store, COL_ROWS, &start, &end)?.len(), 2);
    Ok(())
}

fn redb_compatibility_layer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("data.fjall"))?;

    // Redb-style transaction usage
    let write_tx = store.begin_write()?;
    {
        let mut table = write_tx.open_table(&store, COL_USERS)?;
        table.insert(b"key1", b"value1")?;

        let value = table.get(b"key1")?.unwrap();
        assert_eq!(value.value(), b"value1");
    }
    write_tx.commit(&store)?;

    let read_tx = store.begin_read()?;
    let table = read_tx.open_table(&store, COL_USERS)?;
    assert_eq!(
        table.get(b"key1")?.map(|g| g.into_value()),
        Some(b"value1".to_vec())
    );
    assert_eq!(table.len()?, 1);
    Ok(())
}

fn memory_storage_and_constants() -> anyhow::Result<()> {
    // In-memory implementation for tests
    let storage = MemoryStorage::new();
    let store = Store::open_with(move || Ok(std::sync::Arc::new(storage)))?;
    let mut w = store.begin_write()?;
    for (i, col) in [
        COL_CATALOG,
        COL_ROWS,
        COL_USERS,
        COL_SESSIONS,
        COL_ORGANIZATIONS,
        COL_TEAMS,
        COL_JOBS,
        COL_EVENTS,
    ]
    .into_iter()
    .enumerate()
    {
        w.set(col, encode_key(&[b"k"]), vec![i as u8]);
    }
    w.commit(&store)?;
    assert_eq!(
        store
            .begin_read()?
            .get(&store, COL_EVENTS, &encode_key(&[b"k"]))?,
        Some(vec![7])
    );
    Ok(())
}

async fn storage_operation(store: &Store) -> Result<(), StorageError> {
    // An operation that fails: an empty key.
    let mut tx = store.begin_write()?;
    tx.set(COL_USERS, Vec::new(), b"v".to_vec());
    tx.commit(store)
}

async fn error_handling() -> anyhow::Result<()> {
    let store = Store::memory()?;
    let mut general = false;
    match storage_operation(&store).await {
        Ok(result) => println!("Success: {:?}", result),
        Err(StorageError::Serialization(msg)) => eprintln!("Serialization error: {}", msg),
        Err(StorageError::Io(err)) => eprintln!("IO error: {}", err),
        Err(StorageError::General(err)) => {
            eprintln!("General error: {}", err);
            general = true;
        }
        Err(StorageError::NotInitialized) => eprintln!("Storage not initialized"),
    }
    assert!(general, "an empty key is a general (invalid input) error");
    Ok(())
}

fn backup_and_recovery() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let backups = dir.path().join("backups");
    let store = Store::open(dir.path().join("data.fjall"))?;
    let mut w = store.begin_write()?;
    w.set(COL_USERS, b"user1".to_vec(), b"user_data".to_vec());
    w.set(COL_SESSIONS, b"s1".to_vec(), b"session".to_vec());
    w.commit(&store)?;

    // Create compressed backup
    let backup_metadata = store.create_backup(backups.join("my_backup"), true)?;
    println!("Backup created at: {}", backup_metadata.timestamp);

    // Read backup metadata without restoring
    let metadata = Store::get_backup_metadata(backups.join("my_backup"))?;
    println!(
        "Backup version: {}, Collections: {}",
        metadata.version,
        metadata.collections.len()
    );
    assert_eq!(metadata.collections.len(), 2);

    // Restore from backup — into an empty store (the seed restored over the live one; ours
    // refuses a non-empty target and changes nothing).
    assert!(
        store
            .restore_from_backup(backups.join("my_backup"))
            .is_err()
    );
    let restored = Store::open(dir.path().join("restored.fjall"))?;
    restored.restore_from_backup(backups.join("my_backup"))?;
    let r = restored.begin_read()?;
    assert_eq!(
        r.get(&restored, COL_USERS, b"user1")?,
        Some(b"user_data".to_vec())
    );
    assert_eq!(
        r.get(&restored, COL_SESSIONS, b"s1")?,
        Some(b"session".to_vec())
    );
    drop(r);
    // The restored store takes new commits above the restored versions.
    let mut w = restored.begin_write()?;
    w.set(COL_USERS, b"user2".to_vec(), b"new".to_vec());
    w.commit(&restored)?;
    assert_eq!(store.begin_read()?.get(&store, COL_USERS, b"user2")?, None);
    Ok(())
}

fn all_sync_examples() -> anyhow::Result<()> {
    backup_and_recovery()?;
    basic_operations()?;
    savepoint_usage()?;
    multi_partition_transactions()?;
    sequence_generation()?;
    range_scanning()?;
    redb_compatibility_layer()?;
    memory_storage_and_constants()?;
    Ok(())
}

#[test]
fn examples_from_a_plain_thread() -> anyhow::Result<()> {
    all_sync_examples()?;
    tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(error_handling())
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_inside_a_multi_thread_runtime() -> anyhow::Result<()> {
    all_sync_examples()?;
    error_handling().await
}

#[tokio::test(flavor = "current_thread")]
async fn examples_inside_a_current_thread_runtime() -> anyhow::Result<()> {
    all_sync_examples()?;
    error_handling().await
}

#[test]
fn a_store_dropped_inside_a_runtime_closes_cleanly_and_reopens() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("data.fjall");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Store::open(&path)?;
        let mut w = store.begin_write()?;
        w.set(COL_USERS, b"k".to_vec(), b"v".to_vec());
        w.commit(&store)?;
        drop(store);
        // The directory lock was released by the drop above.
        let store = Store::open(&path)?;
        assert_eq!(
            store.begin_read()?.get(&store, COL_USERS, b"k")?,
            Some(b"v".to_vec())
        );
        Ok::<(), StorageError>(())
    })?;
    Ok(())
}

#[test]
fn conflicts_are_reported_and_retryable() -> anyhow::Result<()> {
    let store = Store::memory()?;
    let a = store.begin_write()?;
    let b = store.begin_write()?;
    assert_eq!(a.get(&store, COL_USERS, b"n")?, None);
    assert_eq!(b.get(&store, COL_USERS, b"n")?, None);
    a.try_set(COL_USERS, b"n".to_vec(), b"a".to_vec())?;
    b.try_set(COL_USERS, b"n".to_vec(), b"b".to_vec())?;
    a.commit(&store)?;
    let err = b.commit(&store).expect_err("second writer conflicts");
    assert!(err.is_conflict(), "{err}");
    Ok(())
}

#[test]
fn redb_style_range_iterates_both_ways() -> anyhow::Result<()> {
    let store = Store::memory()?;
    let w = store.begin_write()?;
    {
        let mut t = w.open_table(&store, COL_USERS)?;
        for i in 0u16..600 {
            t.insert(i.to_be_bytes(), [i as u8])?;
        }
        assert!(t.remove(5u16.to_be_bytes())?.is_some());
        let fwd: Vec<u16> = t
            .range(10u16.to_be_bytes()..20u16.to_be_bytes())?
            .map(|r| u16::from_be_bytes(r.unwrap().0.value().try_into().unwrap()))
            .collect();
        assert_eq!(fwd, (10..20).collect::<Vec<_>>());
        let n = t.iter()?.count();
        assert_eq!(n, 599);
        // Both ends of one iterator meet without repeating or skipping (pages of 256).
        let mut it = t.iter()?;
        let (mut front, mut back) = (Vec::new(), Vec::new());
        loop {
            match it.next() {
                Some(r) => front.push(r?.0.into_value()),
                None => break,
            }
            match it.next_back() {
                Some(r) => back.push(r?.0.into_value()),
                None => break,
            }
        }
        back.reverse();
        front.extend(back);
        assert_eq!(front.len(), 599);
        assert!(front.windows(2).all(|w| w[0] < w[1]));
    }
    w.commit(&store)?;
    let r = store.begin_read()?;
    let t = r.open_table(&store, COL_USERS)?;
    assert_eq!(t.len()?, 599);
    let last = t.iter()?.next_back().unwrap()?.0.into_value();
    assert_eq!(last, 599u16.to_be_bytes());
    assert!(!t.is_empty()?);
    assert!(r.open_table(&store, COL_TEAMS)?.is_empty()?);
    Ok(())
}
