//! Collection names.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_COLLECTION_NAME_LEN, SYSTEM_COLLECTION_PREFIX};

/// The validated name of a collection: an independent ordered key space inside one store.
///
/// Rules, checked by construction so that no backend ever sees a bad name:
/// - 1..=[`MAX_COLLECTION_NAME_LEN`] bytes;
/// - ASCII letters, digits, `_`, `-` and `.` only, and the first character is a letter, a digit
///   or `_` (so a name is also a safe file or directory name on every platform);
/// - names starting with [`SYSTEM_COLLECTION_PREFIX`] (`__`) are reserved for zcore-storage's
///   own collections and only [`CollectionName::system`] creates them.
///
/// Cloning is cheap (the name is shared).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CollectionName(Arc<str>);

/// Why a collection name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_COLLECTION_NAME_LEN`] bytes.
    TooLong {
        /// Length of the refused name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a character outside `[A-Za-z0-9_.-]`, or starts with `-` or `.`.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        offset: usize,
    },
    /// The name starts with the reserved prefix `__`.
    Reserved,
    /// A system name was requested without the reserved prefix.
    NotSystem,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the name is empty"),
            Self::TooLong { len, max } => {
                write!(f, "the name is {len} bytes long; at most {max} are allowed")
            }
            Self::InvalidChar { ch, offset } => write!(
                f,
                "character {ch:?} at byte {offset} is not allowed (use ASCII letters, digits, '_', '-', '.'; start with a letter, digit or '_')"
            ),
            Self::Reserved => write!(
                f,
                "names starting with {SYSTEM_COLLECTION_PREFIX:?} are reserved for zcore-storage"
            ),
            Self::NotSystem => write!(
                f,
                "system collection names must start with {SYSTEM_COLLECTION_PREFIX:?}"
            ),
        }
    }
}

/// A refused collection name together with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid collection name {name:?}: {problem}")]
pub struct CollectionNameError {
    /// The refused name (lossy if it was not UTF-8).
    pub name: String,
    /// What is wrong with it.
    pub problem: NameProblem,
}

fn check_shape(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > MAX_COLLECTION_NAME_LEN {
        return Err(NameProblem::TooLong {
            len: name.len(),
            max: MAX_COLLECTION_NAME_LEN,
        });
    }
    for (offset, ch) in name.char_indices() {
        let allowed =
            ch.is_ascii_alphanumeric() || ch == '_' || (offset > 0 && (ch == '-' || ch == '.'));
        if !allowed {
            return Err(NameProblem::InvalidChar { ch, offset });
        }
    }
    Ok(())
}

impl CollectionName {
    /// Validates a user collection name.
    ///
    /// # Errors
    ///
    /// [`CollectionNameError`] naming the problem; reserved (`__…`) names are refused.
    pub fn new(name: impl AsRef<str>) -> Result<Self, CollectionNameError> {
        let name = name.as_ref();
        let fail = |problem| CollectionNameError {
            name: name.to_owned(),
            problem,
        };
        check_shape(name).map_err(fail)?;
        if name.starts_with(SYSTEM_COLLECTION_PREFIX) {
            return Err(fail(NameProblem::Reserved));
        }
        Ok(Self(Arc::from(name)))
    }

    /// Validates the name of one of zcore-storage's own collections (it must start with `__`).
    ///
    /// # Errors
    ///
    /// [`CollectionNameError`] if the shape is invalid or the prefix is missing.
    pub fn system(name: impl AsRef<str>) -> Result<Self, CollectionNameError> {
        let name = name.as_ref();
        let fail = |problem| CollectionNameError {
            name: name.to_owned(),
            problem,
        };
        check_shape(name).map_err(fail)?;
        if !name.starts_with(SYSTEM_COLLECTION_PREFIX) {
            return Err(fail(NameProblem::NotSystem));
        }
        Ok(Self(Arc::from(name)))
    }

    /// Accepts a name found inside an existing store, user or system.
    ///
    /// # Errors
    ///
    /// [`CollectionNameError`] if the shape is invalid (a store written by something else).
    pub fn from_stored(name: impl AsRef<str>) -> Result<Self, CollectionNameError> {
        let name = name.as_ref();
        check_shape(name).map_err(|problem| CollectionNameError {
            name: name.to_owned(),
            problem,
        })?;
        Ok(Self(Arc::from(name)))
    }

    /// Validates raw bytes, e.g. a command-line argument that may not be UTF-8.
    ///
    /// # Errors
    ///
    /// [`CollectionNameError`]; non-UTF-8 input reports the first invalid character.
    pub fn from_bytes(name: &[u8]) -> Result<Self, CollectionNameError> {
        match std::str::from_utf8(name) {
            Ok(s) => Self::new(s),
            Err(e) => Err(CollectionNameError {
                name: String::from_utf8_lossy(name).into_owned(),
                problem: NameProblem::InvalidChar {
                    ch: char::REPLACEMENT_CHARACTER,
                    offset: e.valid_up_to(),
                },
            }),
        }
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of zcore-storage's own (`__…`) collections.
    #[must_use]
    pub fn is_system(&self) -> bool {
        self.0.starts_with(SYSTEM_COLLECTION_PREFIX)
    }
}

impl fmt::Debug for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CollectionName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CollectionName {
    type Error = CollectionNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_stored(value)
    }
}

impl From<CollectionName> for String {
    fn from(value: CollectionName) -> Self {
        value.0.as_ref().to_owned()
    }
}

impl TryFrom<&str> for CollectionName {
    type Error = CollectionNameError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_seed_style_names() {
        for name in [
            "users",
            "2fa_secrets",
            "oauth_tokens",
            "a.b-c",
            "_private",
            "x",
        ] {
            assert_eq!(
                CollectionName::new(name).map(|n| n.to_string()),
                Ok(name.to_owned())
            );
        }
    }

    #[test]
    fn refuses_bad_names_with_the_reason() {
        let problem = |n: &str| CollectionName::new(n).map_err(|e| e.problem).err();
        assert_eq!(problem(""), Some(NameProblem::Empty));
        assert_eq!(
            problem(&"a".repeat(129)),
            Some(NameProblem::TooLong { len: 129, max: 128 })
        );
        assert!(CollectionName::new("a".repeat(128)).is_ok());
        assert_eq!(
            problem("a b"),
            Some(NameProblem::InvalidChar { ch: ' ', offset: 1 })
        );
        assert_eq!(
            problem("-a"),
            Some(NameProblem::InvalidChar { ch: '-', offset: 0 })
        );
        assert_eq!(
            problem(".a"),
            Some(NameProblem::InvalidChar { ch: '.', offset: 0 })
        );
        assert_eq!(
            problem("a/b"),
            Some(NameProblem::InvalidChar { ch: '/', offset: 1 })
        );
        assert_eq!(
            problem("é"),
            Some(NameProblem::InvalidChar {
                ch: 'é', offset: 0
            })
        );
        assert_eq!(problem("__meta"), Some(NameProblem::Reserved));
    }

    #[test]
    fn system_names_need_the_prefix() {
        assert!(CollectionName::system("__meta").is_ok_and(|n| n.is_system()));
        assert_eq!(
            CollectionName::system("meta").map_err(|e| e.problem).err(),
            Some(NameProblem::NotSystem)
        );
    }

    #[test]
    fn non_utf8_bytes_are_refused() {
        let err = CollectionName::from_bytes(b"ab\xffc").err();
        assert_eq!(
            err.map(|e| e.problem),
            Some(NameProblem::InvalidChar {
                ch: char::REPLACEMENT_CHARACTER,
                offset: 2
            })
        );
    }
}
