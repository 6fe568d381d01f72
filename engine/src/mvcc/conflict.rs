//! Read and write sets, and the optimistic validation that compares them.
//!
//! Serializable: a transaction fails if any transaction that committed after its snapshot wrote
//! a key it read — a point read, or any key inside a range it scanned (so phantoms count).
//! Snapshot isolation: it fails if such a transaction wrote a key it also writes (first
//! committer wins). Keys are exact (no fingerprints), so the error names the key.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::backend::{CollectionName, KeyRange};

/// Keys a transaction wrote, per collection.
#[derive(Debug, Default, Clone)]
pub(crate) struct WriteSet {
    pub(crate) keys: BTreeMap<CollectionName, BTreeSet<Vec<u8>>>,
}

/// What a serializable transaction read, per collection.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReadSet {
    pub(crate) points: BTreeMap<CollectionName, BTreeSet<Vec<u8>>>,
    pub(crate) ranges: BTreeMap<CollectionName, Vec<KeyRange>>,
}

impl ReadSet {
    pub(crate) fn add_point(&mut self, collection: &CollectionName, key: &[u8]) {
        if let Some(set) = self.points.get_mut(collection) {
            if !set.contains(key) {
                set.insert(key.to_vec());
            }
        } else {
            self.points
                .entry(collection.clone())
                .or_default()
                .insert(key.to_vec());
        }
    }

    pub(crate) fn add_range(
        &mut self,
        collection: &CollectionName,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) {
        self.ranges
            .entry(collection.clone())
            .or_default()
            .push(KeyRange::new(start, end));
    }

    /// The first key of `writes` this read set observed, if any.
    pub(crate) fn first_overlap<'w>(
        &self,
        writes: &'w WriteSet,
    ) -> Option<(&'w CollectionName, &'w [u8])> {
        for (collection, written) in &writes.keys {
            if let Some(points) = self.points.get(collection) {
                // Walk the smaller set, probe the larger one.
                let hit = if points.len() <= written.len() {
                    points.iter().find_map(|k| written.get(k))
                } else {
                    written.iter().find(|k| points.contains(*k))
                };
                if let Some(key) = hit {
                    return Some((collection, key));
                }
            }
            if let Some(ranges) = self.ranges.get(collection) {
                for range in ranges {
                    // `BTreeSet::range` panics on these; they contain nothing.
                    if range.is_empty_by_bounds() {
                        continue;
                    }
                    if let Some(key) = written.range::<[u8], _>(range.as_slices()).next() {
                        return Some((collection, key));
                    }
                }
            }
        }
        None
    }
}

impl WriteSet {
    /// The first key written by both sets, if any.
    pub(crate) fn first_overlap<'w>(
        &self,
        other: &'w WriteSet,
    ) -> Option<(&'w CollectionName, &'w [u8])> {
        for (collection, theirs) in &other.keys {
            if let Some(ours) = self.keys.get(collection)
                && let Some(key) = theirs.iter().find(|k| ours.contains(*k))
            {
                return Some((collection, key));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str) -> CollectionName {
        CollectionName::new(n).unwrap_or_else(|e| panic!("{e}"))
    }

    fn writes(c: &str, keys: &[&[u8]]) -> WriteSet {
        let mut w = WriteSet::default();
        w.keys
            .insert(col(c), keys.iter().map(|k| k.to_vec()).collect());
        w
    }

    #[test]
    fn points_and_ranges_overlap() {
        let mut r = ReadSet::default();
        r.add_point(&col("a"), b"k1");
        r.add_range(
            &col("b"),
            Bound::Included(b"m".to_vec()),
            Bound::Excluded(b"p".to_vec()),
        );
        assert!(r.first_overlap(&writes("a", &[b"k2"])).is_none());
        assert_eq!(
            r.first_overlap(&writes("a", &[b"k0", b"k1"]))
                .map(|(_, k)| k.to_vec()),
            Some(b"k1".to_vec())
        );
        assert!(r.first_overlap(&writes("b", &[b"p"])).is_none());
        assert_eq!(
            r.first_overlap(&writes("b", &[b"a", b"n"]))
                .map(|(_, k)| k.to_vec()),
            Some(b"n".to_vec()),
            "an insert into a scanned range is a phantom"
        );
        assert!(
            r.first_overlap(&writes("c", &[b"k1"])).is_none(),
            "other collection"
        );
        let mut inverted = ReadSet::default();
        inverted.add_range(
            &col("b"),
            Bound::Included(b"z".to_vec()),
            Bound::Excluded(b"a".to_vec()),
        );
        assert!(inverted.first_overlap(&writes("b", &[b"m"])).is_none());
    }

    #[test]
    fn write_write_overlap() {
        let ours = writes("a", &[b"x", b"y"]);
        assert!(ours.first_overlap(&writes("a", &[b"z"])).is_none());
        assert!(ours.first_overlap(&writes("a", &[b"y"])).is_some());
        assert!(ours.first_overlap(&writes("b", &[b"y"])).is_none());
    }
}
