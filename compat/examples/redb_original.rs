//! A small redb program: the "before" of the porting guide (docs/porting-from-redb.md).

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

const USERS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("users");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = Database::create(dir.path().join("app.redb"))?;

    let write_txn = db.begin_write()?;
    {
        let mut table = write_txn.open_table(USERS)?;
        table.insert(b"alice".as_slice(), b"admin".as_slice())?;
        table.insert(b"bob".as_slice(), b"user".as_slice())?;
        table.insert(b"carol".as_slice(), b"user".as_slice())?;
        table.remove(b"bob".as_slice())?;
    }
    write_txn.commit()?;

    let read_txn = db.begin_read()?;
    let table = read_txn.open_table(USERS)?;
    let role = table.get(b"alice".as_slice())?.map(|g| g.value().to_vec());
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
