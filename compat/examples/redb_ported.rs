//! The same program on zcore-storage: the "after" of the porting guide
//! (docs/porting-from-redb.md). Every change is marked `// ported:`.

use zcore_compat::Store;

const USERS: &str = "users"; // ported: a collection name instead of a TableDefinition

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("app.fjall"))?; // ported: Store::open (fjall by default)

    let write_txn = store.begin_write()?;
    {
        let mut table = write_txn.open_table(&store, USERS)?; // ported: pass &store
        table.insert(b"alice", b"admin")?;
        table.insert(b"bob", b"user")?;
        table.insert(b"carol", b"user")?;
        table.remove(b"bob")?;
    }
    write_txn.commit(&store)?; // ported: commit(&store)

    let read_txn = store.begin_read()?;
    let table = read_txn.open_table(&store, USERS)?; // ported: pass &store
    let role = table.get(b"alice")?.map(|g| g.value().to_vec());
    assert_eq!(role.as_deref(), Some(&b"admin"[..]));
    for entry in table.range(b"a".as_slice()..b"z".as_slice())?.rev() {
        let (name, role) = entry?;
        println!(
            "{} = {}",
            String::from_utf8_lossy(name.value()),
            String::from_utf8_lossy(role.value())
        );
    }
    assert_eq!(table.len()?, 2);
    Ok(())
}
