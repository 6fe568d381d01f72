//! Encryption at rest: keys, keyrings, the AEAD, and what an encrypted store records.
//!
//! # Algorithm: XChaCha20-Poly1305
//!
//! Values and backup chunks are sealed with XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305` crate), 256-bit keys, a 192-bit nonce and a 128-bit tag. Why this AEAD:
//!
//! - **Nonces can be random, forever.** Every sealed value gets a fresh 192-bit nonce: 128 bits
//!   drawn from the operating system's CSPRNG (`getrandom`) once per process, followed by a
//!   64-bit per-process counter (see `random_nonce`). Within a process nonces never repeat;
//!   across processes they collide only if two processes drew the same 128-bit prefix
//!   (probability ≤ m²/2^129 for m processes). Even fully random 192-bit nonces would collide
//!   with probability below `n² / 2^193` — below 2^-96 after 2^48 writes under one key. AES-256-GCM's
//!   96-bit nonce allows only about 2^32 random nonces per key before the collision
//!   probability reaches the 2^-32 NIST bound — a busy store reaches that in hours, and
//!   a counter instead would have to survive crashes, restores and Raft replicas without
//!   ever repeating, which a storage engine that can be copied cannot promise.
//! - **Constant time in software.** ChaCha20 and Poly1305 use only additions, rotations and
//!   xors; AES is only constant time with AES-NI, and this engine must not depend on the CPU.
//! - Nonce reuse would be catastrophic for either AEAD (it leaks the xor of two plaintexts
//!   and, for Poly1305/GHASH, allows forgeries), so the argument above is the one that matters.
//!
//! # Keys and key ids
//!
//! A [`Keyring`] holds one or more 256-bit keys, each under a numeric [`KeyId`] (1 ..=
//! `u32::MAX`). The newest (highest) id seals every new value; any id in the ring opens
//! values. Keys come from a key file or an environment variable ([`Keyring::parse`] lists the
//! accepted forms), are never logged (`Debug` prints only ids) and are zeroized on drop (the
//! cipher instances zeroize their key; parsing buffers are [`zeroize::Zeroizing`]).
//!
//! # What an encrypted store records
//!
//! The system collection `__crypto` ([`CRYPTO_COLLECTION`]) holds, in the checksummed plain
//! value format: one record `key/<id>` per key id whose values may exist in the store, with
//! the key's *check value* (a BLAKE3 key derivation of the key with a fixed context, 32 bytes;
//! it identifies the key without revealing anything about it), and a record `plaintext`
//! while values written before the store was encrypted may remain. See
//! [`Engine::open`](crate::Engine::open) for what opening checks, and
//! [`Engine::rekey`](crate::Engine::rekey) for rotation.

mod rekey;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::backend::{
    BackendError, CollectionName, Durability, KeyPreview, KeyRange, ScanRequest, StorageBackend,
    WriteBatch,
};
use crate::mvcc::TxnError;
use crate::mvcc::value::{self, Stored, ValueDecodeError};

pub use rekey::{RekeyOptions, RekeyProgress, RekeyReport};

/// A key id, stored (big endian) with every sealed value.
pub type KeyId = u32;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;

/// The system collection holding an encrypted store's key records.
pub const CRYPTO_COLLECTION: &str = "__crypto";
const KEY_RECORD_PREFIX: &[u8] = b"key/";
const PLAINTEXT_RECORD: &[u8] = b"plaintext";
const CHECK_VALUE_CONTEXT: &str = "zcore-storage 2026-11 key check value v1";

/// A 256-bit key. `Debug` never shows it; its bytes are zeroized on drop.
pub struct EncryptionKey(Zeroizing<[u8; KEY_LEN]>);

impl EncryptionKey {
    /// A key from its 32 bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A new random key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::Random`] if the OS has no randomness to give.
    pub fn generate() -> Result<Self, EncryptionError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        OsRng
            .try_fill_bytes(&mut key[..])
            .map_err(|e| EncryptionError::Random(e.to_string()))?;
        Ok(Self(key))
    }

    /// The key as 64 lower-case hex digits (for writing a new key file; handle with care).
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
        for b in self.0.iter() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
        s
    }

    /// The key's check value: identifies the key, reveals nothing about it.
    #[must_use]
    pub fn check_value(&self) -> [u8; 32] {
        blake3::derive_key(CHECK_VALUE_CONTEXT, &self.0[..])
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

struct KeyEntry {
    /// Zeroizes its key on drop.
    cipher: XChaCha20Poly1305,
    check: [u8; 32],
}

/// Several keys by id; the newest seals, all open. `Debug` shows ids only.
#[derive(Default)]
pub struct Keyring {
    keys: BTreeMap<KeyId, KeyEntry>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.ids())
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|((a, ka), (b, kb))| a == b && ka.check == kb.check)
    }
}

impl Eq for Keyring {}

impl Keyring {
    /// An empty keyring (add keys with [`Keyring::insert`]).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyring with one key under id 1.
    #[must_use]
    pub fn single(key: EncryptionKey) -> Self {
        let mut ring = Self::new();
        ring.keys.insert(1, KeyEntry::new(&key));
        ring
    }

    /// Adds `key` under `id`. Adding the same key again under the same id is a no-op.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::InvalidKeyId`] for id 0, [`EncryptionError::DuplicateKeyId`] when
    /// `id` already holds a different key.
    pub fn insert(&mut self, id: KeyId, key: EncryptionKey) -> Result<(), EncryptionError> {
        if id == 0 {
            return Err(EncryptionError::InvalidKeyId {
                reason: "key ids start at 1".to_owned(),
            });
        }
        let entry = KeyEntry::new(&key);
        match self.keys.get(&id) {
            Some(old) if old.check == entry.check => Ok(()),
            Some(_) => Err(EncryptionError::DuplicateKeyId { id }),
            None => {
                self.keys.insert(id, entry);
                Ok(())
            }
        }
    }

    /// Adds every key of `other` (same rules as [`Keyring::insert`]).
    ///
    /// # Errors
    ///
    /// As [`Keyring::insert`].
    pub fn merge(&mut self, other: Self) -> Result<(), EncryptionError> {
        for (id, entry) in other.keys {
            match self.keys.get(&id) {
                Some(old) if old.check == entry.check => {}
                Some(_) => return Err(EncryptionError::DuplicateKeyId { id }),
                None => {
                    self.keys.insert(id, entry);
                }
            }
        }
        Ok(())
    }

    /// Parses key material; `source` names it in errors (the material itself never appears in
    /// an error). Accepted forms:
    ///
    /// - exactly 32 bytes: one raw key, id 1;
    /// - text: one key as 64 hex digits (id 1), or one or more `<id>:<64 hex digits>` entries
    ///   separated by newlines or commas. Blank lines and lines starting with `#` are
    ///   ignored; surrounding whitespace is trimmed.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::MalformedKey`] saying what is wrong and where;
    /// [`EncryptionError::DuplicateKeyId`].
    pub fn parse(material: &[u8], source: &str) -> Result<Self, EncryptionError> {
        let malformed = |reason: String| EncryptionError::MalformedKey {
            origin: source.to_owned(),
            reason,
        };
        if material.len() == KEY_LEN {
            let mut raw = [0u8; KEY_LEN];
            raw.copy_from_slice(material);
            return Ok(Self::single(EncryptionKey::from_bytes(raw)));
        }
        let text = std::str::from_utf8(material).map_err(|_| {
            malformed(format!(
                "{} bytes that are neither a raw 32-byte key nor text (hex)",
                material.len()
            ))
        })?;
        let entries: Vec<(usize, &str)> = text
            .split(['\n', ','])
            .map(str::trim)
            .enumerate()
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if entries.is_empty() {
            return Err(malformed("no key found (empty)".to_owned()));
        }
        let mut ring = Self::new();
        let single = entries.len() == 1;
        for (index, entry) in entries {
            let at = index + 1;
            let (id, hex) = match entry.split_once(':') {
                Some((id, hex)) => {
                    let id: KeyId = id.trim().parse().map_err(|_| {
                        malformed(format!(
                            "entry {at}: the key id before ':' is not a number in 1..=4294967295"
                        ))
                    })?;
                    if id == 0 {
                        return Err(malformed(format!("entry {at}: key ids start at 1")));
                    }
                    (id, hex.trim())
                }
                None if single => (1, entry),
                None => {
                    return Err(malformed(format!(
                        "entry {at}: several keys need ids, as `<id>:<64 hex digits>`"
                    )));
                }
            };
            let key =
                parse_hex_key(hex).map_err(|reason| malformed(format!("entry {at}: {reason}")))?;
            if ring.keys.contains_key(&id) {
                return Err(EncryptionError::DuplicateKeyId { id });
            }
            ring.insert(id, key)?;
        }
        Ok(ring)
    }

    /// Reads and parses a key file (see [`Keyring::parse`]).
    ///
    /// # Errors
    ///
    /// [`EncryptionError::KeyFile`] if it cannot be read; parse errors.
    pub fn from_file(path: &Path) -> Result<Self, EncryptionError> {
        let meta = std::fs::metadata(path).map_err(|e| EncryptionError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if meta.len() > 1 << 20 {
            return Err(EncryptionError::MalformedKey {
                origin: format!("key file {}", path.display()),
                reason: format!("{} bytes; a key file is at most 1 MiB", meta.len()),
            });
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| EncryptionError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?);
        Self::parse(&bytes, &format!("key file {}", path.display()))
    }

    /// Reads and parses the environment variable `name` (hex text, see [`Keyring::parse`]).
    ///
    /// # Errors
    ///
    /// [`EncryptionError::KeyEnv`] if it is unset or not UTF-8; parse errors.
    pub fn from_env(name: &str) -> Result<Self, EncryptionError> {
        let value = Zeroizing::new(std::env::var(name).map_err(|e| EncryptionError::KeyEnv {
            name: name.to_owned(),
            reason: e.to_string(),
        })?);
        Self::parse(value.as_bytes(), &format!("environment variable {name}"))
    }

    /// Key ids, ascending.
    #[must_use]
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.keys().copied().collect()
    }

    /// The id that seals new values (the highest), if any.
    #[must_use]
    pub fn newest_id(&self) -> Option<KeyId> {
        self.keys.keys().next_back().copied()
    }

    /// Whether the ring has no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The check value of key `id`.
    #[must_use]
    pub fn check_value(&self, id: KeyId) -> Option<[u8; 32]> {
        self.keys.get(&id).map(|e| e.check)
    }

    /// The newest key's cipher.
    pub(crate) fn sealing(&self) -> Result<(KeyId, &XChaCha20Poly1305), EncryptionError> {
        self.keys
            .iter()
            .next_back()
            .map(|(id, e)| (*id, &e.cipher))
            .ok_or(EncryptionError::EmptyKeyring)
    }

    pub(crate) fn cipher(&self, id: KeyId) -> Option<&XChaCha20Poly1305> {
        self.keys.get(&id).map(|e| &e.cipher)
    }
}

impl KeyEntry {
    fn new(key: &EncryptionKey) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new((&*key.0).into()),
            check: key.check_value(),
        }
    }
}

fn parse_hex_key(hex: &str) -> Result<EncryptionKey, String> {
    let hex = hex
        .strip_prefix("0x")
        .or_else(|| hex.strip_prefix("hex:"))
        .unwrap_or(hex);
    if hex.len() != 2 * KEY_LEN {
        return Err(format!(
            "expected 64 hex digits (32 bytes), found {} characters",
            hex.chars().count()
        ));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_digit(pair[0]);
        let lo = hex_digit(pair[1]);
        match (hi, lo) {
            (Some(hi), Some(lo)) => key[i] = (hi << 4) | lo,
            _ => {
                return Err(format!(
                    "character {} or {} is not a hex digit",
                    2 * i + 1,
                    2 * i + 2
                ));
            }
        }
    }
    Ok(EncryptionKey(key))
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// 128 random bits drawn from the OS once per process: the first part of every nonce.
static NONCE_PREFIX: std::sync::OnceLock<Result<[u8; 16], String>> = std::sync::OnceLock::new();
/// The last 64 bits of every nonce: never repeats within the process.
static NONCE_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh nonce: the process's random 128-bit prefix ‖ a 64-bit counter (big endian).
///
/// Uniqueness under one key: within a process the counter never repeats (2^64 nonces); two
/// processes (two opens of the store, a restore, a replica using the same keyring) collide
/// only if they drew the same 128-bit prefix, probability ≤ m²/2^129 for m processes — and
/// even then only nonces with equal counters collide. This costs one atomic increment per
/// value instead of a `getrandom` call (about 1 µs on this machine).
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], EncryptionError> {
    let prefix = NONCE_PREFIX
        .get_or_init(|| {
            let mut p = [0u8; 16];
            OsRng
                .try_fill_bytes(&mut p)
                .map(|()| p)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(EncryptionError::Random)?;
    let n = NONCE_COUNTER.fetch_add(1, Ordering::Relaxed);
    if n == u64::MAX {
        return Err(EncryptionError::Seal {
            reason: "nonce counter exhausted (2^64 values sealed in one process)".to_owned(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..16].copy_from_slice(&prefix);
    nonce[16..].copy_from_slice(&n.to_be_bytes());
    Ok(nonce)
}

/// Encrypts `buffer[start..]` in place and appends the tag.
pub(crate) fn seal_in_place(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buffer: &mut Vec<u8>,
    start: usize,
) -> Result<(), EncryptionError> {
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut buffer[start..])
        .map_err(|_| EncryptionError::Seal {
            reason: "the AEAD refused the message (too long)".to_owned(),
        })?;
    buffer.extend_from_slice(&tag);
    Ok(())
}

/// Decrypts `sealed` (ciphertext ‖ tag) into a new buffer; `None` if authentication fails.
pub(crate) fn open_to_vec(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let split = sealed.len().checked_sub(TAG_LEN)?;
    let (ct, tag) = sealed.split_at(split);
    let mut out = Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut out, tag.into())
        .ok()?;
    Some(out)
}

/// Encryption errors: key material, store state, sealing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionError {
    /// Key material does not parse (the material itself is never shown).
    #[error("malformed encryption key in {origin}: {reason}")]
    MalformedKey {
        /// Where it came from (file path or variable name).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A key file cannot be read.
    #[error("cannot read encryption key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A key environment variable is unset or not UTF-8.
    #[error("cannot read encryption key from environment variable {name}: {reason}")]
    KeyEnv {
        /// The variable.
        name: String,
        /// Why.
        reason: String,
    },
    /// An invalid key id.
    #[error("invalid key id: {reason}")]
    InvalidKeyId {
        /// Why.
        reason: String,
    },
    /// Two different keys under one id.
    #[error("key id {id} is given twice with different keys")]
    DuplicateKeyId {
        /// The id.
        id: KeyId,
    },
    /// A keyring without keys.
    #[error("the keyring has no keys")]
    EmptyKeyring,
    /// The store is encrypted and no key was given.
    #[error(
        "the store is encrypted (key ids {key_ids:?}) but no encryption key was given; configure [encryption] key_file or key_env (ZDB_ENCRYPTION_KEY_FILE / ZDB_ENCRYPTION_KEY_ENV)"
    )]
    KeyRequired {
        /// Key ids the store uses.
        key_ids: Vec<KeyId>,
    },
    /// A key in the keyring does not match the key the store recorded under its id.
    #[error(
        "wrong encryption key: key id {key_id} does not match the key this store was encrypted with (check value differs)"
    )]
    WrongKey {
        /// The id.
        key_id: KeyId,
    },
    /// The store holds values sealed with a key id the keyring lacks.
    #[error(
        "the store holds values sealed with key id {key_id}, which the keyring lacks (keyring has {keyring:?}); add that key back, or run `zstore rekey` with both keys before removing it"
    )]
    MissingKey {
        /// The missing id.
        key_id: KeyId,
        /// Ids the keyring has.
        keyring: Vec<KeyId>,
    },
    /// A key was given for a store that is not encrypted.
    #[error(
        "the store is not encrypted but an encryption key was given; refusing to mix plaintext and encrypted values. Set [encryption] encrypt_existing = true (ZDB_ENCRYPTION_ENCRYPT_EXISTING=true) to encrypt new writes from now on, then run `zstore rekey` to seal the old values"
    )]
    NotEncrypted,
    /// An operation that needs encryption on a plain store.
    #[error("the store is not encrypted (open it with an encryption key)")]
    NotEnabled,
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// Sealing failed.
    #[error("cannot encrypt: {reason}")]
    Seal {
        /// Why.
        reason: String,
    },
}

/// Encryption of one engine: the keyring and whether plaintext values may still exist.
#[derive(Debug)]
pub(crate) struct StoreCrypto {
    pub(crate) keyring: Arc<Keyring>,
    plaintext_allowed: AtomicBool,
}

/// How an engine encodes and decodes stored values: plain, or sealed with a keyring.
#[derive(Clone, Debug, Default)]
pub(crate) struct ValueCodec(Option<Arc<StoreCrypto>>);

impl ValueCodec {
    /// The plain codec.
    pub(crate) fn plain() -> Self {
        Self(None)
    }

    /// A sealing codec for a store whose key records are written separately (restore).
    pub(crate) fn unregistered(options: &EncryptionOptions) -> Self {
        Self(Some(Arc::new(StoreCrypto {
            keyring: Arc::clone(&options.keyring),
            plaintext_allowed: AtomicBool::new(false),
        })))
    }

    /// The keyring, if the store is encrypted.
    pub(crate) fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.0.as_ref().map(|c| &c.keyring)
    }

    pub(crate) fn set_plaintext_allowed(&self, allowed: bool) {
        if let Some(c) = &self.0 {
            c.plaintext_allowed.store(allowed, Ordering::Release);
        }
    }

    /// Encodes a version's value: sealed with the newest key when encrypted.
    pub(crate) fn encode(
        &self,
        collection: &str,
        versioned_key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Vec<u8>, EncryptionError> {
        match &self.0 {
            None => Ok(value::encode(collection, versioned_key, value)),
            Some(c) => value::seal(&c.keyring, collection, versioned_key, value),
        }
    }

    /// Decodes, verifies and (when sealed) decrypts a stored value.
    pub(crate) fn decode_owned(
        &self,
        collection: &str,
        versioned_key: &[u8],
        stored: Vec<u8>,
    ) -> Result<Stored, ValueDecodeError> {
        match &self.0 {
            None => value::decode_owned(collection, versioned_key, stored),
            Some(c) => value::open_owned(
                &c.keyring,
                c.plaintext_allowed.load(Ordering::Acquire),
                collection,
                versioned_key,
                stored,
            ),
        }
    }
}

/// The transaction-layer error for a value that failed to decode at (collection, key,
/// version): decryption failures keep their key id, the rest are corruption.
pub(crate) fn value_error(
    e: ValueDecodeError,
    collection: &CollectionName,
    key: &[u8],
    version: u64,
) -> TxnError {
    let key = KeyPreview::of(key);
    let collection = collection.clone();
    match e {
        ValueDecodeError::AuthenticationFailed { key_id } => TxnError::Decrypt {
            collection,
            key,
            version,
            key_id,
        },
        ValueDecodeError::UnknownKey { key_id } | ValueDecodeError::Sealed { key_id } => {
            TxnError::UnknownKey {
                collection,
                key,
                version,
                key_id,
            }
        }
        other => TxnError::Corrupted {
            collection,
            key,
            version,
            reason: other.to_string(),
        },
    }
}

/// Options of an encrypted engine ([`EngineOptions::encryption`](crate::EngineOptions)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionOptions {
    /// The keys; the newest seals new values.
    pub keyring: Arc<Keyring>,
    /// Also accept a store that already holds plaintext values: new writes are sealed from
    /// now on, old values stay readable until [`Engine::rekey`](crate::Engine::rekey) seals
    /// them. Without it, opening a non-empty plain store with a key is refused. A new, empty
    /// store is always encrypted when a key is given.
    pub encrypt_existing: bool,
}

impl EncryptionOptions {
    /// Options for `keyring`, refusing existing plain stores.
    #[must_use]
    pub fn new(keyring: Keyring) -> Self {
        Self {
            keyring: Arc::new(keyring),
            encrypt_existing: false,
        }
    }
}

fn crypto_collection() -> Result<CollectionName, TxnError> {
    Ok(CollectionName::system(CRYPTO_COLLECTION).map_err(BackendError::from)?)
}

fn key_record(id: KeyId) -> Vec<u8> {
    let mut k = KEY_RECORD_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// What `__crypto` says.
#[derive(Debug, Default)]
struct StoreKeys {
    keys: BTreeMap<KeyId, [u8; 32]>,
    plaintext: bool,
}

async fn read_store_keys(
    backend: &dyn StorageBackend,
    coll: &CollectionName,
) -> Result<StoreKeys, TxnError> {
    let mut out = StoreKeys::default();
    let mut request = Some(ScanRequest::forward(KeyRange::all(), 1024));
    while let Some(req) = request.take() {
        let page = backend.scan(coll, &req).await?;
        request = req.next_page(&page);
        for (key, stored) in page.entries {
            let corrupted = |reason: String| TxnError::Corrupted {
                collection: coll.clone(),
                key: KeyPreview::of(&key),
                version: 0,
                reason,
            };
            let payload = match value::decode(CRYPTO_COLLECTION, &key, &stored) {
                Ok(Stored::Put(p)) => p,
                Ok(Stored::Tombstone) => return Err(corrupted("unexpected tombstone".to_owned())),
                Err(e) => return Err(corrupted(e.to_string())),
            };
            if key == PLAINTEXT_RECORD {
                out.plaintext = true;
            } else if let Some(id) = key.strip_prefix(KEY_RECORD_PREFIX) {
                let id = <[u8; 4]>::try_from(id)
                    .map_err(|_| corrupted("bad key record id".to_owned()))?;
                let check = <[u8; 32]>::try_from(payload.as_slice())
                    .map_err(|_| corrupted("bad key check value length".to_owned()))?;
                out.keys.insert(KeyId::from_be_bytes(id), check);
            } else {
                return Err(corrupted("unknown encryption record".to_owned()));
            }
        }
    }
    Ok(out)
}

/// Checks the store's encryption state against `options` before anything is written, and
/// registers the sealing key. `fresh`: the store has no data yet.
pub(crate) async fn open_store(
    backend: &dyn StorageBackend,
    options: Option<&EncryptionOptions>,
    fresh: bool,
) -> Result<ValueCodec, TxnError> {
    let coll = crypto_collection()?;
    let exists = backend.list_collections().await?.contains(&coll);
    let store = if exists {
        read_store_keys(backend, &coll).await?
    } else {
        StoreKeys::default()
    };
    let encrypted = !store.keys.is_empty();
    let Some(options) = options else {
        if encrypted {
            return Err(EncryptionError::KeyRequired {
                key_ids: store.keys.keys().copied().collect(),
            }
            .into());
        }
        return Ok(ValueCodec::plain());
    };
    let ring = &options.keyring;
    let (newest, _) = ring.sealing()?;
    for (&id, check) in &store.keys {
        match ring.check_value(id) {
            None => {
                return Err(EncryptionError::MissingKey {
                    key_id: id,
                    keyring: ring.ids(),
                }
                .into());
            }
            Some(c) if c != *check => return Err(EncryptionError::WrongKey { key_id: id }.into()),
            Some(_) => {}
        }
    }
    let mut plaintext = store.plaintext;
    if !encrypted {
        if !fresh && !options.encrypt_existing {
            return Err(EncryptionError::NotEncrypted.into());
        }
        plaintext = !fresh;
    }
    if !store.keys.contains_key(&newest) || plaintext != store.plaintext {
        // Record the sealing key (and, for a plain store being encrypted, that plaintext
        // may remain) durably before the first value is sealed with it.
        backend.create_collection(&coll).await?;
        let mut batch = WriteBatch::new();
        let record = key_record(newest);
        let check = ring.check_value(newest).unwrap_or_default();
        batch.put(
            &coll,
            record.clone(),
            value::encode(CRYPTO_COLLECTION, &record, Some(&check)),
        );
        if plaintext {
            batch.put(
                &coll,
                PLAINTEXT_RECORD.to_vec(),
                value::encode(CRYPTO_COLLECTION, PLAINTEXT_RECORD, Some(&[])),
            );
        }
        backend.write(batch, Durability::Synced).await?;
    }
    Ok(ValueCodec(Some(Arc::new(StoreCrypto {
        keyring: Arc::clone(ring),
        plaintext_allowed: AtomicBool::new(plaintext),
    }))))
}

/// After every stored value was sealed with `newest`: forget the other key ids and the
/// plaintext marker.
pub(crate) async fn retire_old_keys(
    backend: &dyn StorageBackend,
    newest: KeyId,
) -> Result<Vec<KeyId>, TxnError> {
    let coll = crypto_collection()?;
    let store = read_store_keys(backend, &coll).await?;
    let mut batch = WriteBatch::new();
    let mut retired = Vec::new();
    for &id in store.keys.keys() {
        if id != newest {
            batch.delete(&coll, key_record(id));
            retired.push(id);
        }
    }
    if store.plaintext {
        batch.delete(&coll, PLAINTEXT_RECORD.to_vec());
    }
    if !batch.is_empty() {
        backend.write(batch, Durability::Synced).await?;
    }
    Ok(retired)
}

/// Key ids the store's metadata lists (values sealed with them may exist).
///
/// # Errors
///
/// Backend errors; [`TxnError::Corrupted`] for a damaged record.
pub async fn store_key_ids(backend: &dyn StorageBackend) -> Result<Vec<KeyId>, TxnError> {
    let coll = crypto_collection()?;
    if !backend.list_collections().await?.contains(&coll) {
        return Ok(Vec::new());
    }
    Ok(read_store_keys(backend, &coll)
        .await?
        .keys
        .into_keys()
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const HEX1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_forms_parse() {
        let raw = Keyring::parse(&[7u8; 32], "t").unwrap();
        assert_eq!(raw.ids(), [1]);
        let hex = Keyring::parse(format!("{HEX1}\n").as_bytes(), "t").unwrap();
        assert_eq!(hex.ids(), [1]);
        let many = Keyring::parse(
            format!("# ring\n1:{HEX1}\n\n7:{}\n", "ab".repeat(32)).as_bytes(),
            "t",
        )
        .unwrap();
        assert_eq!(many.ids(), [1, 7]);
        assert_eq!(many.newest_id(), Some(7));
        let env =
            Keyring::parse(format!("1:{HEX1},2:0x{}", "CD".repeat(32)).as_bytes(), "t").unwrap();
        assert_eq!(env.ids(), [1, 2]);
        assert_eq!(hex.check_value(1), many.check_value(1));
        assert_ne!(many.check_value(1), many.check_value(7));
    }

    #[test]
    fn malformed_keys_are_clear_and_never_echo_the_material() {
        let secretish = "f".repeat(63);
        for (bad, needle) in [
            (secretish.as_str(), "found 63 characters"),
            ("", "no key found"),
            ("zz", "found 2 characters"),
        ] {
            let e = Keyring::parse(bad.as_bytes(), "key file /k").unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.contains("key file /k"), "{msg}");
            assert!(bad.is_empty() || !msg.contains(bad), "{msg}");
        }
        let e = Keyring::parse(format!("{HEX1}\n{HEX1}").as_bytes(), "t").unwrap_err();
        assert!(e.to_string().contains("need ids"), "{e}");
        let e = Keyring::parse(format!("0:{HEX1}").as_bytes(), "t").unwrap_err();
        assert!(e.to_string().contains("start at 1"), "{e}");
        let e = Keyring::parse(format!("x:{HEX1}").as_bytes(), "t").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        let mut bad_digit = HEX1.to_owned();
        bad_digit.replace_range(10..11, "g");
        let e = Keyring::parse(bad_digit.as_bytes(), "t").unwrap_err();
        assert!(e.to_string().contains("not a hex digit"), "{e}");
        assert!(!e.to_string().contains(&bad_digit), "{e}");
        let e = Keyring::parse(&[0xFFu8; 31], "t").unwrap_err();
        assert!(e.to_string().contains("neither a raw 32-byte key"), "{e}");
        let e =
            Keyring::parse(format!("1:{HEX1}\n1:{}", "ab".repeat(32)).as_bytes(), "t").unwrap_err();
        assert_eq!(e, EncryptionError::DuplicateKeyId { id: 1 });
    }

    #[test]
    fn nonces_share_the_process_prefix_and_never_repeat() {
        let mut seen = std::collections::BTreeSet::new();
        let first = random_nonce().unwrap();
        for _ in 0..10_000 {
            let n = random_nonce().unwrap();
            assert_eq!(n[..16], first[..16], "one random prefix per process");
            assert!(seen.insert(n), "a nonce repeated");
        }
        assert_ne!(first[..16], [0u8; 16], "the prefix is random, not zero");
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = EncryptionKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("ab") && !shown.contains("AB") && !shown.contains("171"));
        let ring = Keyring::single(key);
        let shown = format!("{ring:?}");
        assert!(shown.contains("key_ids: [1]"), "{shown}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("abab"),
            "{shown}"
        );
    }
}
