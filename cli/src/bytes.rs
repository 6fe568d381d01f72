//! Turning command-line arguments into keys, values and collection names, and byte strings
//! back into text, hex or JSON.

use std::borrow::Cow;
use std::ffi::OsStr;

use serde::Serialize;
use zcore_engine::CollectionName;

use crate::error::CliError;

/// How keys and values are written on the command line and in output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteFormat {
    /// UTF-8 text.
    Text,
    /// Hex digits (`--hex`).
    Hex,
}

impl ByteFormat {
    /// `Hex` when `hex` is set.
    pub fn from_hex_flag(hex: bool) -> Self {
        if hex { Self::Hex } else { Self::Text }
    }

    /// Decodes argument `what` (e.g. `KEY`) into bytes.
    ///
    /// # Errors
    ///
    /// A usage error when the argument is not UTF-8, or not valid hex in hex mode.
    pub fn decode(self, what: &str, arg: &OsStr) -> Result<Vec<u8>, CliError> {
        let Some(text) = arg.to_str() else {
            return Err(CliError::usage(match self {
                Self::Text => format!(
                    "{what} is not valid UTF-8; pass binary keys and values as hex with --hex"
                ),
                Self::Hex => format!("{what} is not valid hex: it is not even valid UTF-8"),
            }));
        };
        match self {
            Self::Text => Ok(text.as_bytes().to_vec()),
            Self::Hex => hex::decode(text).map_err(|e| {
                CliError::usage(format!(
                    "{what} {text:?} is not valid hex ({e}); write two hex digits per byte, e.g. 00ff"
                ))
            }),
        }
    }

    /// Bytes for plain-text output: the raw bytes in text mode, hex digits in hex mode.
    pub fn render<'a>(self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match self {
            Self::Text => Cow::Borrowed(bytes),
            Self::Hex => Cow::Owned(hex::encode(bytes).into_bytes()),
        }
    }

    /// A short description of a key for messages: quoted text, or `0x…` hex.
    pub fn describe(self, bytes: &[u8]) -> String {
        match (self, std::str::from_utf8(bytes)) {
            (Self::Text, Ok(text)) => format!("{text:?}"),
            _ => format!("0x{}", hex::encode(bytes)),
        }
    }

    /// The JSON form of a byte string.
    pub fn json<'a>(self, bytes: &'a [u8]) -> EncodedBytes<'a> {
        match (self, std::str::from_utf8(bytes)) {
            (Self::Text, Ok(text)) => EncodedBytes {
                encoding: Encoding::Utf8,
                data: Cow::Borrowed(text),
            },
            _ => EncodedBytes {
                encoding: Encoding::Hex,
                data: Cow::Owned(hex::encode(bytes)),
            },
        }
    }
}

/// How [`EncodedBytes::data`] encodes the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `data` is the bytes themselves (valid UTF-8).
    Utf8,
    /// `data` is lower-case hex, two digits per byte.
    Hex,
}

/// A byte string in JSON output: `{"encoding": "utf8" | "hex", "data": "..."}`.
#[derive(Clone, Debug, Serialize)]
pub struct EncodedBytes<'a> {
    /// How `data` encodes the bytes.
    pub encoding: Encoding,
    /// The bytes.
    pub data: Cow<'a, str>,
}

/// Validates a collection name from the command line, which may not be UTF-8.
///
/// # Errors
///
/// A usage error carrying the [`zcore_engine::CollectionNameError`] message.
pub fn collection_name(arg: &OsStr) -> Result<CollectionName, CliError> {
    Ok(CollectionName::from_bytes(&os_bytes(arg))?)
}

#[cfg(unix)]
fn os_bytes(arg: &OsStr) -> Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    Cow::Borrowed(arg.as_bytes())
}

#[cfg(not(unix))]
fn os_bytes(arg: &OsStr) -> Cow<'_, [u8]> {
    match arg.to_string_lossy() {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let hex = ByteFormat::Hex;
        assert_eq!(
            hex.decode("KEY", OsStr::new("00ff")).ok(),
            Some(vec![0, 255])
        );
        assert!(hex.decode("KEY", OsStr::new("0")).is_err());
        assert!(hex.decode("KEY", OsStr::new("zz")).is_err());
        assert_eq!(hex.render(&[0, 255]).as_ref(), b"00ff");
        assert_eq!(hex.json(b"a").encoding, Encoding::Hex);
    }

    #[test]
    fn text_json_falls_back_to_hex() {
        let text = ByteFormat::Text;
        assert_eq!(text.json(b"abc").encoding, Encoding::Utf8);
        let binary = text.json(&[0xff, 0]);
        assert_eq!(
            (binary.encoding, binary.data.as_ref()),
            (Encoding::Hex, "ff00")
        );
        assert_eq!(text.describe(b"k"), "\"k\"");
        assert_eq!(text.describe(&[0xff]), "0xff");
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_collection_names_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let err = collection_name(OsStr::from_bytes(b"ab\xff")).err();
        assert!(err.is_some_and(|e| e.message.contains("invalid collection name")));
    }
}
