//! Reading plain redb files written by other programs: the tables, their stored types, and their
//! rows in redb's own order.
//!
//! # Reading a table whose types are only known at run time
//!
//! redb has no untyped read API (its `ReadOnlyUntypedTable` offers only `len()` and `stats()`),
//! and `open_table` checks the `TableDefinition`'s types against the stored ones. The types are
//! learned by opening every table as `&[u8]`/`&[u8]`: redb answers
//! `TableError::TableTypeMismatch { key, value }` with the stored [`TypeName`]s. The table is
//! then opened as `Dyn<0>`/`Dyn<1>`: types whose `type_name()`, `fixed_width()` and `compare()`
//! come from a per-thread *scope* ([`Scope`]) set to the stored type name (so redb's check
//! passes), its width, and the parsed [`RedbType`] (so range seeks order keys as the real type
//! does). Their values are the raw bytes. The scope lives on the one thread that opens and
//! iterates the table; redb calls these trait functions synchronously on that thread.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    MultimapTableDefinition, MultimapTableHandle, ReadableDatabase, ReadableTableMetadata,
    TableDefinition, TableError, TableHandle, TypeName,
};

use super::codec::{RedbType, TupleFormat};
use super::error::MigrateError;

/// One column (key or value) of a table: the stored type name and the type it parses to.
#[derive(Debug)]
pub(crate) struct Column {
    stored: TypeName,
    pub(crate) ty: RedbType,
    width: Option<usize>,
}

impl Column {
    /// The column for a stored type name, or why it cannot be read.
    fn new(stored: TypeName) -> Result<Self, String> {
        if stored == TypeName::new(stored.name()) {
            return Err(format!("{:?} is a user-defined type", stored.name()));
        }
        let mut ty =
            RedbType::parse(stored.name(), TupleFormat::Varint).map_err(|e| e.to_string())?;
        let variable_tuple = matches!(&ty, RedbType::Tuple { elements, .. } if elements.len() > 1)
            && ty.fixed_width().is_none();
        if variable_tuple && classification(&stored) == Some("Internal") {
            ty = RedbType::parse(stored.name(), TupleFormat::LegacyU32)
                .map_err(|e| e.to_string())?;
        }
        Ok(Self {
            width: ty.fixed_width(),
            ty,
            stored,
        })
    }
}

/// The classification redb stored with a type name (`Internal` for types written by redb
/// ≤ 4.1 and for leaf types, `Internal2` for redb 3.x variable-width tuples, `Internal3` for
/// composites written by redb ≥ 4.2). redb exposes it only through `Debug`.
fn classification(name: &TypeName) -> Option<&'static str> {
    let debug = format!("{name:?}");
    ["Internal3", "Internal2", "Internal", "UserDefined"]
        .into_iter()
        .find(|c| debug.contains(&format!("classification: {c},")))
}

thread_local! {
    static SCOPE: RefCell<[Option<Arc<Column>>; 2]> = const { RefCell::new([None, None]) };
}

/// Sets the key and value column of the `Dyn` types on this thread until dropped.
struct Scope {
    previous: [Option<Arc<Column>>; 2],
}

impl Scope {
    fn enter(key: &Arc<Column>, value: &Arc<Column>) -> Self {
        let previous = SCOPE.with(|s| {
            std::mem::replace(
                &mut *s.borrow_mut(),
                [Some(Arc::clone(key)), Some(Arc::clone(value))],
            )
        });
        Self { previous }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.previous);
        SCOPE.with(|s| *s.borrow_mut() = previous);
    }
}

fn with_column<R>(slot: usize, f: impl FnOnce(&Column) -> R) -> Option<R> {
    SCOPE.with(|s| s.borrow().get(slot).and_then(Option::as_ref).map(|c| f(c)))
}

/// A redb key/value type defined at run time by the thread's [`Scope`] (slot 0: key, slot 1:
/// value). Reads yield the raw stored bytes.
#[derive(Debug)]
pub(crate) struct Dyn<const SLOT: usize>;

impl<const SLOT: usize> redb::Value for Dyn<SLOT> {
    type SelfType<'a>
        = &'a [u8]
    where
        Self: 'a;
    type AsBytes<'a>
        = &'a [u8]
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        with_column(SLOT, |c| c.width).flatten()
    }

    fn from_bytes<'a>(data: &'a [u8]) -> &'a [u8]
    where
        Self: 'a,
    {
        data
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a &'b [u8]) -> &'a [u8]
    where
        Self: 'b,
    {
        value
    }

    fn type_name() -> TypeName {
        // Without a scope the name matches no table, so redb refuses to open anything.
        with_column(SLOT, |c| c.stored.clone())
            .unwrap_or_else(|| TypeName::new("zcore_compat::migrate::unscoped"))
    }
}

impl<const SLOT: usize> redb::Key for Dyn<SLOT> {
    fn compare(data1: &[u8], data2: &[u8]) -> Ordering {
        with_column(SLOT, |c| c.ty.compare(data1, data2)).unwrap_or_else(|| data1.cmp(data2))
    }
}

/// A table of a redb file as found by [`RedbFile::inventory`].
#[derive(Clone, Debug)]
pub(crate) struct RedbTable {
    /// The table's name.
    pub(crate) name: String,
    /// Whether it is a multimap table.
    pub(crate) multimap: bool,
    /// Entries (multimap: key/value pairs).
    pub(crate) rows: u64,
    /// Stored key type name.
    pub(crate) key_name: String,
    /// Stored value type name.
    pub(crate) value_name: String,
    /// The columns, or why they cannot be read.
    pub(crate) columns: Result<(Arc<Column>, Arc<Column>), String>,
}

impl RedbTable {
    pub(crate) fn kind(&self) -> &'static str {
        if self.multimap {
            "multimap table"
        } else {
            "table"
        }
    }
}

/// A plain redb file opened read-only (never repaired or modified), with one read transaction.
pub(crate) struct RedbFile {
    path: PathBuf,
    txn: redb::ReadTransaction,
    _db: redb::ReadOnlyDatabase,
}

impl std::fmt::Debug for RedbFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbFile")
            .field("path", &self.path)
            .finish()
    }
}

/// Splits a resume position inside a multimap table: `u32 LE len(key) ‖ key ‖ value`.
fn split_multimap_position(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
    let key = p.get(4..4 + len)?;
    Some((key, &p[4 + len..]))
}

impl RedbFile {
    /// Opens `path` read-only.
    ///
    /// # Errors
    ///
    /// [`MigrateError::SourceMissing`], [`MigrateError::RedbFormatTooOld`] for file format v2,
    /// other redb errors (a file that needs recovery is refused, not repaired).
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Self, MigrateError> {
        if !path.is_file() {
            return Err(MigrateError::SourceMissing {
                path: path.to_path_buf(),
            });
        }
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .open_read_only(path)
            .map_err(|e| match e {
                redb::DatabaseError::UpgradeRequired(version) => MigrateError::RedbFormatTooOld {
                    path: path.to_path_buf(),
                    version,
                },
                other => MigrateError::redb(path, "open read-only")(other),
            })?;
        let txn = db
            .begin_read()
            .map_err(MigrateError::redb(path, "begin a read transaction"))?;
        Ok(Self {
            path: path.to_path_buf(),
            txn,
            _db: db,
        })
    }

    /// Every table and multimap table, in name order, with its stored types and length.
    ///
    /// # Errors
    ///
    /// redb errors.
    pub(crate) fn inventory(&self) -> Result<Vec<RedbTable>, MigrateError> {
        let path = &self.path;
        let mut tables = Vec::new();
        let handles: Vec<String> = self
            .txn
            .list_tables()
            .map_err(MigrateError::redb(path, "list tables"))?
            .map(|h| h.name().to_owned())
            .collect();
        for name in handles {
            let def: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new(&name);
            let (key, value, rows) = match self.txn.open_table(def) {
                Ok(t) => {
                    let rows = t.len().map_err(MigrateError::redb(
                        path,
                        format!("length of table {name:?}"),
                    ))?;
                    let bytes = <&[u8] as redb::Value>::type_name();
                    (bytes.clone(), bytes, rows)
                }
                Err(TableError::TableTypeMismatch { key, value, .. }) => {
                    let handle = self
                        .txn
                        .list_tables()
                        .map_err(MigrateError::redb(path, "list tables"))?
                        .find(|h| h.name() == name);
                    let rows = match handle {
                        Some(h) => self
                            .txn
                            .open_untyped_table(h)
                            .map_err(MigrateError::redb(path, format!("open table {name:?}")))?
                            .len()
                            .map_err(MigrateError::redb(
                                path,
                                format!("length of table {name:?}"),
                            ))?,
                        None => 0,
                    };
                    (key, value, rows)
                }
                Err(e) => return Err(MigrateError::redb(path, format!("open table {name:?}"))(e)),
            };
            tables.push(table_entry(name, false, rows, key, value));
        }
        let handles: Vec<String> = self
            .txn
            .list_multimap_tables()
            .map_err(MigrateError::redb(path, "list multimap tables"))?
            .map(|h| h.name().to_owned())
            .collect();
        for name in handles {
            let def: MultimapTableDefinition<'_, &[u8], &[u8]> =
                MultimapTableDefinition::new(&name);
            let (key, value, rows) = match self.txn.open_multimap_table(def) {
                Ok(t) => {
                    let rows = t.len().map_err(MigrateError::redb(
                        path,
                        format!("length of multimap table {name:?}"),
                    ))?;
                    let bytes = <&[u8] as redb::Value>::type_name();
                    (bytes.clone(), bytes, rows)
                }
                Err(TableError::TableTypeMismatch { key, value, .. }) => {
                    let handle = self
                        .txn
                        .list_multimap_tables()
                        .map_err(MigrateError::redb(path, "list multimap tables"))?
                        .find(|h| h.name() == name);
                    let rows = match handle {
                        Some(h) => self
                            .txn
                            .open_untyped_multimap_table(h)
                            .map_err(MigrateError::redb(
                                path,
                                format!("open multimap table {name:?}"),
                            ))?
                            .len()
                            .map_err(MigrateError::redb(
                                path,
                                format!("length of multimap table {name:?}"),
                            ))?,
                        None => 0,
                    };
                    (key, value, rows)
                }
                Err(e) => {
                    return Err(MigrateError::redb(
                        path,
                        format!("open multimap table {name:?}"),
                    )(e));
                }
            };
            tables.push(table_entry(name, true, rows, key, value));
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tables)
    }

    /// Calls `emit(key, value)` with the raw stored bytes of every entry of `table` after
    /// `after` (a key, or for a multimap table a [`multimap_position`]), in redb's order, until
    /// `emit` returns `Ok(false)`.
    ///
    /// # Errors
    ///
    /// redb errors; errors from `emit`.
    pub(crate) fn scan(
        &self,
        table: &RedbTable,
        after: Option<&[u8]>,
        mut emit: impl FnMut(&[u8], &[u8]) -> Result<bool, MigrateError>,
    ) -> Result<(), MigrateError> {
        let path = &self.path;
        let name = &table.name;
        let (key, value) = table
            .columns
            .as_ref()
            .map_err(|reason| MigrateError::UnknownTypes {
                table: name.clone(),
                kind: table.kind(),
                key_type: table.key_name.clone(),
                value_type: table.value_name.clone(),
                reason: reason.clone(),
            })?;
        let _scope = Scope::enter(key, value);
        let read_err = || MigrateError::redb(path, format!("read {} {name:?}", table.kind()));
        if !table.multimap {
            let t = self
                .txn
                .open_table(TableDefinition::<'_, Dyn<0>, Dyn<1>>::new(name))
                .map_err(MigrateError::redb(path, format!("open table {name:?}")))?;
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            for entry in t
                .range::<&[u8]>((start, Bound::Unbounded))
                .map_err(read_err())?
            {
                let (k, v) = entry.map_err(read_err())?;
                if !emit(k.value(), v.value())? {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let t = self
            .txn
            .open_multimap_table(MultimapTableDefinition::<'_, Dyn<0>, Dyn<1>>::new(name))
            .map_err(MigrateError::redb(
                path,
                format!("open multimap table {name:?}"),
            ))?;
        let mut start = Bound::Unbounded;
        if let Some(position) = after {
            let (k, last) =
                split_multimap_position(position).ok_or_else(|| MigrateError::Checkpoint {
                    key: format!("position in multimap table {name:?}"),
                    reason: "truncated".to_owned(),
                })?;
            for v in t.get(k).map_err(read_err())? {
                let v = v.map_err(read_err())?;
                if value.ty.compare(v.value(), last) == Ordering::Greater && !emit(k, v.value())? {
                    return Ok(());
                }
            }
            start = Bound::Excluded(k);
        }
        for entry in t
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(read_err())?
        {
            let (k, values) = entry.map_err(read_err())?;
            for v in values {
                let v = v.map_err(read_err())?;
                if !emit(k.value(), v.value())? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn table_entry(
    name: String,
    multimap: bool,
    rows: u64,
    key: TypeName,
    value: TypeName,
) -> RedbTable {
    let key_name = key.name().to_owned();
    let value_name = value.name().to_owned();
    let columns = Column::new(key)
        .map_err(|e| format!("key: {e}"))
        .and_then(|k| {
            if !k.ty.is_key() {
                return Err(format!("key: {} cannot be a key", k.ty));
            }
            Ok(k)
        })
        .and_then(|k| {
            let v = Column::new(value).map_err(|e| format!("value: {e}"))?;
            if multimap && !v.ty.is_key() {
                return Err(format!("value: {} cannot be a multimap value", v.ty));
            }
            Ok((Arc::new(k), Arc::new(v)))
        });
    RedbTable {
        name,
        multimap,
        rows,
        key_name,
        value_name,
        columns,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use redb::Value as _;

    #[test]
    fn classification_is_visible_through_debug() {
        assert_eq!(classification(&u64::type_name()), Some("Internal"));
        assert_eq!(
            classification(&<(&str, u32)>::type_name()),
            Some("Internal3")
        );
        assert_eq!(classification(&TypeName::new("x")), Some("UserDefined"));
    }

    #[test]
    fn columns_of_builtin_and_user_types() {
        let c = Column::new(<(&str, Option<i64>)>::type_name()).unwrap();
        assert_eq!(c.ty.to_string(), "(&str,Option<i64>)");
        assert!(matches!(
            c.ty,
            RedbType::Tuple {
                format: TupleFormat::Varint,
                ..
            }
        ));
        assert!(
            Column::new(TypeName::new("u64")).is_err(),
            "user type named u64"
        );
    }
}
