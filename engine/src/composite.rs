//! Composite keys with the seed's semantics: length-prefixed components, so a key built from
//! components sorts by its first component, then its second, and so on, and every key built
//! from a list of leading components shares one byte prefix ([`prefix_range`]).
//!
//! Encoding: for each component, its length as a big-endian `u32`, then its bytes.

use crate::backend::prefix_successor;

/// Encodes components into one key.
#[must_use]
pub fn encode_key(components: &[&[u8]]) -> Vec<u8> {
    let len = components.iter().map(|c| 4 + c.len()).sum();
    let mut key = Vec::with_capacity(len);
    for c in components {
        // Components longer than u32::MAX cannot occur: keys are limited far below that.
        let n = u32::try_from(c.len()).unwrap_or(u32::MAX);
        key.extend_from_slice(&n.to_be_bytes());
        key.extend_from_slice(c);
    }
    key
}

/// Splits a key made by [`encode_key`] back into its components; `None` if it is not one.
#[must_use]
pub fn decode_key(mut key: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut parts = Vec::new();
    while !key.is_empty() {
        let (len, rest) = key.split_at_checked(4)?;
        let n = u32::from_be_bytes(len.try_into().ok()?) as usize;
        let (part, rest) = rest.split_at_checked(n)?;
        parts.push(part.to_vec());
        key = rest;
    }
    Some(parts)
}

/// The half-open range `[start, end)` of every key whose leading components are `prefix`.
/// `end` is empty when there is no upper bound (never for a non-empty prefix).
#[must_use]
pub fn prefix_range(prefix: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
    let start = encode_key(prefix);
    let end = prefix_successor(&start).unwrap_or_default();
    (start, end)
}

/// Builds a composite key from expressions that are `AsRef<[u8]>`:
/// `composite_key![org_id.as_bytes(), table.as_bytes(), &row_id.to_be_bytes()]`.
#[macro_export]
macro_rules! composite_key {
    ($($part:expr),* $(,)?) => {
        $crate::composite::encode_key(&[$(::core::convert::AsRef::<[u8]>::as_ref(&$part)),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_round_trip_and_sort_componentwise() {
        let a = composite_key![b"org1", "users", 7u64.to_be_bytes()];
        assert_eq!(
            decode_key(&a),
            Some(vec![
                b"org1".to_vec(),
                b"users".to_vec(),
                7u64.to_be_bytes().to_vec()
            ])
        );
        // "ab"+"c" and "a"+"bc" concatenate alike but are different composite keys.
        assert_ne!(composite_key![b"ab", b"c"], composite_key![b"a", b"bc"]);
        assert!(composite_key![b"a", b"zzz"] < composite_key![b"b", b"a"]);
        assert!(decode_key(&[0, 0, 0, 5, 1]).is_none());
    }

    #[test]
    fn prefix_range_holds_exactly_the_keys_with_those_leading_components() {
        let (start, end) = prefix_range(&[b"org1", b"users"]);
        let inside = composite_key![b"org1", b"users", 1u64.to_be_bytes()];
        let other_table = composite_key![b"org1", b"usersx", 1u64.to_be_bytes()];
        let other_org = composite_key![b"org2", b"users"];
        assert!(start <= inside && inside < end);
        assert!(!(start <= other_table && other_table < end));
        assert!(!(start <= other_org && other_org < end));
    }
}
