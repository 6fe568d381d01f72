//! Key ranges, scan requests and scan pages.

use std::ops::Bound;

/// A range of keys with bounds of every kind (inclusive, exclusive, unbounded) at either end.
///
/// A range whose start lies after its end, or that is empty because both bounds name the same
/// key and one of them excludes it, is simply empty: scanning it returns no entries (it is not
/// an error).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRange {
    /// Lower bound.
    pub start: Bound<Vec<u8>>,
    /// Upper bound.
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    #[must_use]
    pub fn all() -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// A range from explicit bounds.
    #[must_use]
    pub fn new(start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Self {
        Self { start, end }
    }

    /// `start..end` (start inclusive, end exclusive).
    #[must_use]
    pub fn half_open(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Self {
            start: Bound::Included(start.into()),
            end: Bound::Excluded(end.into()),
        }
    }

    /// `start..=end`.
    #[must_use]
    pub fn inclusive(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Self {
            start: Bound::Included(start.into()),
            end: Bound::Included(end.into()),
        }
    }

    /// Every key that starts with `prefix` (an empty prefix is every key).
    #[must_use]
    pub fn prefix(prefix: &[u8]) -> Self {
        let start = if prefix.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(prefix.to_vec())
        };
        let end = match prefix_successor(prefix) {
            Some(succ) => Bound::Excluded(succ),
            None => Bound::Unbounded,
        };
        Self { start, end }
    }

    /// Whether `key` lies inside the range.
    #[must_use]
    pub fn contains(&self, key: &[u8]) -> bool {
        let above_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above_start && below_end
    }

    /// Whether the bounds alone make the range empty (start after end, or equal with one side
    /// excluded). Backends check this first: some engines panic on such ranges.
    #[must_use]
    pub fn is_empty_by_bounds(&self) -> bool {
        let (s, s_incl) = match &self.start {
            Bound::Included(s) => (s, true),
            Bound::Excluded(s) => (s, false),
            Bound::Unbounded => return false,
        };
        let (e, e_incl) = match &self.end {
            Bound::Included(e) => (e, true),
            Bound::Excluded(e) => (e, false),
            Bound::Unbounded => return false,
        };
        match s.cmp(e) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => !(s_incl && e_incl),
            std::cmp::Ordering::Less => false,
        }
    }

    /// The bounds as borrowed slices, for engines that take `RangeBounds<[u8]>`.
    #[must_use]
    pub fn as_slices(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (as_slice(&self.start), as_slice(&self.end))
    }
}

fn as_slice(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key greater than every key that starts with `prefix`, or `None` if there is
/// none (the prefix is empty or all `0xFF`).
#[must_use]
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut succ = prefix.to_vec();
    while let Some(last) = succ.pop() {
        if last < u8::MAX {
            succ.push(last + 1);
            return Some(succ);
        }
    }
    None
}

/// Scan order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending key order.
    #[default]
    Forward,
    /// Descending key order.
    Reverse,
}

/// One page of an ordered scan: a range, a direction and a page size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    /// The keys to visit.
    pub range: KeyRange,
    /// The order to visit them in.
    pub direction: Direction,
    /// The most entries this page may return (1..=[`crate::limits::MAX_SCAN_LIMIT`]).
    pub limit: usize,
}

impl ScanRequest {
    /// A forward scan of `range`, `limit` entries per page.
    #[must_use]
    pub fn forward(range: KeyRange, limit: usize) -> Self {
        Self {
            range,
            direction: Direction::Forward,
            limit,
        }
    }

    /// A reverse scan of `range`, `limit` entries per page.
    #[must_use]
    pub fn reverse(range: KeyRange, limit: usize) -> Self {
        Self {
            range,
            direction: Direction::Reverse,
            limit,
        }
    }

    /// The request for the page after `page`, or `None` when the scan is complete.
    #[must_use]
    pub fn next_page(&self, page: &ScanPage) -> Option<Self> {
        page.resume.as_ref().map(|range| Self {
            range: range.clone(),
            direction: self.direction,
            limit: self.limit,
        })
    }

    /// Builds the page a backend returns for this request from the entries it read: the resume
    /// range is set exactly when the page is full.
    #[must_use]
    pub fn page(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> ScanPage {
        let resume = if entries.len() >= self.limit {
            entries.last().map(|(last, _)| match self.direction {
                Direction::Forward => KeyRange {
                    start: Bound::Excluded(last.clone()),
                    end: self.range.end.clone(),
                },
                Direction::Reverse => KeyRange {
                    start: self.range.start.clone(),
                    end: Bound::Excluded(last.clone()),
                },
            })
        } else {
            None
        };
        ScanPage { entries, resume }
    }
}

/// The result of one scan call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Key/value pairs in the requested order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The rest of the range, set when the page is full: scanning it continues exactly after
    /// the last returned key. It may turn out empty. `None` means the range is exhausted.
    pub resume: Option<KeyRange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_skips_trailing_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xFF, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn prefix_range_contains_exactly_the_prefixed_keys() {
        let r = KeyRange::prefix(&[1, 0xFF]);
        assert!(r.contains(&[1, 0xFF]));
        assert!(r.contains(&[1, 0xFF, 0xFF, 0]));
        assert!(!r.contains(&[2]));
        assert!(!r.contains(&[1, 0xFE, 0xFF]));
        assert!(KeyRange::prefix(b"").contains(b""));
    }

    #[test]
    fn empty_by_bounds() {
        assert!(KeyRange::half_open(b"b".to_vec(), b"a".to_vec()).is_empty_by_bounds());
        assert!(KeyRange::half_open(b"a".to_vec(), b"a".to_vec()).is_empty_by_bounds());
        assert!(!KeyRange::inclusive(b"a".to_vec(), b"a".to_vec()).is_empty_by_bounds());
        assert!(!KeyRange::all().is_empty_by_bounds());
    }
}
