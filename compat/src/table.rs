//! A redb-shaped table API over a collection, so porting redb code is mechanical:
//! `let mut table = tx.open_table(&store, COL)?; table.insert(k, v)?; table.get(k)?.map(|g| g.value())`.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use zcore_engine::{
    CollectionName, Direction, KeyRange, ReadTransaction, ScanPage, ScanRequest, TxnError,
};

use crate::error::{GeneralError, StorageError};
use crate::store::{ReadTx, Store, WriteTx, collection};

const PAGE: usize = 256;

/// A value read from a table, like redb's `AccessGuard`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessGuard(Vec<u8>);

impl AccessGuard {
    /// The bytes.
    #[must_use]
    pub fn value(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    #[must_use]
    pub fn into_value(self) -> Vec<u8> {
        self.0
    }
}

fn missing_is_empty<T>(
    r: Result<T, StorageError>,
    empty: impl FnOnce() -> T,
) -> Result<T, StorageError> {
    match r {
        Err(StorageError::General(GeneralError::Txn(TxnError::CollectionNotFound { .. }))) => {
            Ok(empty())
        }
        other => other,
    }
}

/// Where a [`Range`] gets its pages.
#[derive(Debug)]
enum Source<'a> {
    Write(&'a WriteTx, CollectionName),
    Read(&'a Store, Arc<ReadTransaction>, CollectionName),
}

impl Source<'_> {
    fn fetch(&self, request: ScanRequest) -> Result<ScanPage, StorageError> {
        let result = match self {
            Source::Write(tx, c) => {
                let c = c.clone();
                tx.with_tx(move |mut tx| async move {
                    let r = tx.scan(&c, &request).await;
                    (tx, r)
                })
            }
            Source::Read(store, tx, c) => {
                let (tx, c) = (Arc::clone(tx), c.clone());
                store
                    .run(async move { tx.scan(&c, &request).await })?
                    .map_err(StorageError::from)
            }
        };
        missing_is_empty(result, ScanPage::default)
    }
}

/// An iterator over `(key, value)` guards in key order, fetched page by page; iterate from
/// either end (`.rev()`), like redb's `Range`.
#[derive(Debug)]
pub struct Range<'a> {
    source: Source<'a>,
    /// Keys not yet handed out from either end.
    remaining: KeyRange,
    front: VecDeque<(Vec<u8>, Vec<u8>)>,
    front_done: bool,
    back: VecDeque<(Vec<u8>, Vec<u8>)>,
    back_done: bool,
}

impl<'a> Range<'a> {
    fn new(source: Source<'a>, remaining: KeyRange) -> Self {
        Self {
            source,
            remaining,
            front: VecDeque::new(),
            front_done: false,
            back: VecDeque::new(),
            back_done: false,
        }
    }

    fn pull(
        &mut self,
        direction: Direction,
    ) -> Option<Result<(AccessGuard, AccessGuard), StorageError>> {
        loop {
            let (buf, done) = match direction {
                Direction::Forward => (&mut self.front, &mut self.front_done),
                Direction::Reverse => (&mut self.back, &mut self.back_done),
            };
            if let Some((k, v)) = buf.pop_front() {
                // Prefetched entries may already have been handed out from the other end.
                if !self.remaining.contains(&k) {
                    buf.clear();
                    *done = true;
                    return None;
                }
                match direction {
                    Direction::Forward => self.remaining.start = Bound::Excluded(k.clone()),
                    Direction::Reverse => self.remaining.end = Bound::Excluded(k.clone()),
                }
                return Some(Ok((AccessGuard(k), AccessGuard(v))));
            }
            if *done || self.remaining.is_empty_by_bounds() {
                return None;
            }
            let request = ScanRequest {
                range: self.remaining.clone(),
                direction,
                limit: PAGE,
            };
            match self.source.fetch(request) {
                Ok(page) => {
                    let (buf, done) = match direction {
                        Direction::Forward => (&mut self.front, &mut self.front_done),
                        Direction::Reverse => (&mut self.back, &mut self.back_done),
                    };
                    *done = page.resume.is_none();
                    buf.extend(page.entries);
                    if buf.is_empty() {
                        *done = true;
                        return None;
                    }
                }
                Err(e) => {
                    self.front_done = true;
                    self.back_done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Iterator for Range<'_> {
    type Item = Result<(AccessGuard, AccessGuard), StorageError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.pull(Direction::Forward)
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.pull(Direction::Reverse)
    }
}

fn to_key_range<K: AsRef<[u8]>>(range: &impl RangeBounds<K>) -> KeyRange {
    let map = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    KeyRange::new(map(range.start_bound()), map(range.end_bound()))
}

fn count(mut range: Range<'_>) -> Result<u64, StorageError> {
    range.try_fold(0u64, |n, item| item.map(|_| n + 1))
}

/// A collection opened for writing inside a [`WriteTx`], like redb's `Table`.
#[derive(Debug)]
pub struct Table<'t> {
    tx: &'t WriteTx,
    collection: CollectionName,
}

impl WriteTx {
    /// Opens `collection_name` as a table (created if missing), like redb's `open_table`.
    ///
    /// # Errors
    ///
    /// Invalid collection name; store errors.
    pub fn open_table(
        &self,
        store: &Store,
        collection_name: &str,
    ) -> Result<Table<'_>, StorageError> {
        let c = collection(collection_name)?;
        store.ensure_collection(&c)?;
        Ok(Table {
            tx: self,
            collection: c,
        })
    }
}

impl Table<'_> {
    /// Sets `key` to `value`; returns the previous value (a tracked read, as in redb's single
    /// writer: the transaction conflicts if another commits that key first).
    ///
    /// # Errors
    ///
    /// Invalid key or value; store errors.
    pub fn insert(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<AccessGuard>, StorageError> {
        let previous = self.get(&key)?;
        let (c, k, v) = (
            self.collection.clone(),
            key.as_ref().to_vec(),
            value.as_ref().to_vec(),
        );
        self.tx.with_tx_sync(|tx| tx.put(&c, k, v))?;
        Ok(previous)
    }

    /// The value of `key`, seeing this transaction's writes.
    ///
    /// # Errors
    ///
    /// Invalid key; store errors.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<AccessGuard>, StorageError> {
        let (c, k) = (self.collection.clone(), key.as_ref().to_vec());
        let r = self.tx.with_tx(move |mut tx| async move {
            let r = tx.get(&c, &k).await;
            (tx, r)
        });
        Ok(missing_is_empty(r, || None)?.map(AccessGuard))
    }

    /// Removes `key`; returns the value it had.
    ///
    /// # Errors
    ///
    /// Invalid key; store errors.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) -> Result<Option<AccessGuard>, StorageError> {
        let previous = self.get(&key)?;
        let (c, k) = (self.collection.clone(), key.as_ref().to_vec());
        self.tx.with_tx_sync(|tx| tx.delete(&c, k))?;
        Ok(previous)
    }

    /// The entries in `range`, in key order (`.rev()` for descending).
    ///
    /// # Errors
    ///
    /// Kept for redb's signature; page errors arrive as items.
    pub fn range<K: AsRef<[u8]>>(
        &self,
        range: impl RangeBounds<K>,
    ) -> Result<Range<'_>, StorageError> {
        Ok(Range::new(
            Source::Write(self.tx, self.collection.clone()),
            to_key_range(&range),
        ))
    }

    /// Every entry, in key order.
    ///
    /// # Errors
    ///
    /// As [`Table::range`].
    pub fn iter(&self) -> Result<Range<'_>, StorageError> {
        Ok(Range::new(
            Source::Write(self.tx, self.collection.clone()),
            KeyRange::all(),
        ))
    }

    /// Number of entries (counts them: O(n)).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn len(&self) -> Result<u64, StorageError> {
        count(self.iter()?)
    }

    /// Whether the table has no entries.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.iter()?.next().transpose()?.is_none())
    }
}

/// A collection opened inside a [`ReadTx`], like redb's `ReadOnlyTable`.
#[derive(Debug)]
pub struct ReadOnlyTable<'r> {
    store: &'r Store,
    tx: Arc<ReadTransaction>,
    collection: CollectionName,
}

impl ReadTx {
    /// Opens `collection_name` for reading (an unknown collection reads as empty).
    ///
    /// # Errors
    ///
    /// Invalid collection name.
    pub fn open_table<'r>(
        &self,
        store: &'r Store,
        collection_name: &str,
    ) -> Result<ReadOnlyTable<'r>, StorageError> {
        Ok(ReadOnlyTable {
            store,
            tx: Arc::clone(&self.tx),
            collection: collection(collection_name)?,
        })
    }
}

impl ReadOnlyTable<'_> {
    /// The value of `key`.
    ///
    /// # Errors
    ///
    /// Invalid key; store errors.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<AccessGuard>, StorageError> {
        let (tx, c, k) = (
            Arc::clone(&self.tx),
            self.collection.clone(),
            key.as_ref().to_vec(),
        );
        let r = self
            .store
            .run(async move { tx.get(&c, &k).await })?
            .map_err(StorageError::from);
        Ok(missing_is_empty(r, || None)?.map(AccessGuard))
    }

    /// The entries in `range`, in key order (`.rev()` for descending).
    ///
    /// # Errors
    ///
    /// Kept for redb's signature; page errors arrive as items.
    pub fn range<K: AsRef<[u8]>>(
        &self,
        range: impl RangeBounds<K>,
    ) -> Result<Range<'_>, StorageError> {
        Ok(Range::new(
            Source::Read(self.store, Arc::clone(&self.tx), self.collection.clone()),
            to_key_range(&range),
        ))
    }

    /// Every entry, in key order.
    ///
    /// # Errors
    ///
    /// As [`ReadOnlyTable::range`].
    pub fn iter(&self) -> Result<Range<'_>, StorageError> {
        Ok(Range::new(
            Source::Read(self.store, Arc::clone(&self.tx), self.collection.clone()),
            KeyRange::all(),
        ))
    }

    /// Number of entries (counts them: O(n)).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn len(&self) -> Result<u64, StorageError> {
        count(self.iter()?)
    }

    /// Whether the table has no entries.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.iter()?.next().transpose()?.is_none())
    }
}
