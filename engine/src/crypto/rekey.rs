//! [`Engine::rekey`]: reseal every stored version with the newest key, online.
//!
//! # What is rewritten
//!
//! Every stored version of every user collection — not only the versions visible at the
//! retention horizon — whose value is plaintext or sealed with another key id. Versions
//! below the GC floor that the collector has not removed yet are rewritten too: garbage
//! collection itself decodes values (to find deletion markers), so a version sealed with a
//! retired key would make the next sweep fail.
//!
//! A version is rewritten in place: same versioned key, same version, same value, new
//! ciphertext. No commit is made, so the version history, time-travel reads and conflict
//! tracking are untouched, and readers see either the old or the new sealing of the same
//! value (both open while the old key is still in the keyring).
//!
//! # Concurrency
//!
//! Commits never write an existing versioned key, so they cannot race with a rewrite. Each
//! page is read and rewritten while holding the engine's GC lock: a sweep cannot delete a
//! version between its read and its rewrite (which would bring back a version hidden by a
//! removed deletion marker). fjall's compaction-time GC may drop a superseded version in that
//! window; the rewrite then puts back a superseded version, which is harmless (every reader
//! sees a newer version first) and is collected again.
//!
//! When every collection was rewritten, the new values are synced, and only then are the
//! other key ids and the plaintext marker removed from the store's key records — from then
//! on the store opens with only the newest key.

use std::sync::Arc;

use serde::Serialize;

use crate::backend::{BackendError, Durability, KeyRange, ScanRequest, WriteBatch};
use crate::crypto::{EncryptionError, KeyId, retire_old_keys};
use crate::mvcc::read::decode_entry;
use crate::mvcc::value::{self, Stored};
use crate::mvcc::{Engine, TxnError};

/// A progress callback.
pub type RekeyProgressFn = dyn Fn(&RekeyProgress) + Send + Sync;

/// Options of [`Engine::rekey`].
#[derive(Clone)]
pub struct RekeyOptions {
    /// Stored versions read (and at most rewritten) per batch; each batch holds the GC lock
    /// briefly (default 1024, clamped to 1..=65,536).
    pub batch: usize,
    /// Called after every batch.
    pub progress: Option<Arc<RekeyProgressFn>>,
}

impl Default for RekeyOptions {
    fn default() -> Self {
        Self {
            batch: 1024,
            progress: None,
        }
    }
}

impl std::fmt::Debug for RekeyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RekeyOptions")
            .field("batch", &self.batch)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Where a rekey is.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RekeyProgress {
    /// The collection being rewritten.
    pub collection: String,
    /// Collections finished.
    pub collections_done: usize,
    /// Collections in all.
    pub collections_total: usize,
    /// Stored versions read so far (all collections).
    pub scanned: u64,
    /// Stored versions rewritten so far.
    pub rewritten: u64,
}

/// What a rekey did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RekeyReport {
    /// The key id everything is sealed with now.
    pub key_id: KeyId,
    /// Collections rewritten.
    pub collections: usize,
    /// Stored versions read.
    pub scanned: u64,
    /// Stored versions resealed (plaintext or another key id before).
    pub rewritten: u64,
    /// Stored versions that were already sealed with `key_id`.
    pub already_current: u64,
    /// Key ids no longer used by the store (they can be removed from the keyring now).
    pub retired_key_ids: Vec<KeyId>,
}

impl Engine {
    /// Reseals every stored version with the keyring's newest key, online, in batches; then
    /// records that the store uses only that key. See [`crate::crypto`] and the module notes
    /// of `rekey.rs` for what is rewritten and why it is safe alongside commits and GC.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::NotEnabled`] on a plain store; [`TxnError::Decrypt`],
    /// [`TxnError::UnknownKey`] or [`TxnError::Corrupted`] for a version that does not open
    /// (nothing after it is rewritten; the key records are unchanged); backend errors.
    pub async fn rekey(&self, options: RekeyOptions) -> Result<RekeyReport, TxnError> {
        let inner = &self.inner;
        let keyring = inner
            .codec
            .keyring()
            .ok_or(EncryptionError::NotEnabled)?
            .clone();
        let (newest, _) = keyring.sealing()?;
        let batch_size = options.batch.clamp(1, 1 << 16);
        let collections = self.collections();
        let mut report = RekeyReport {
            key_id: newest,
            ..RekeyReport::default()
        };
        let mut progress = RekeyProgress {
            collections_total: collections.len(),
            ..RekeyProgress::default()
        };
        for collection in collections {
            progress.collection = collection.to_string();
            let mut request = Some(ScanRequest::forward(KeyRange::all(), batch_size));
            while let Some(req) = request.take() {
                let _no_sweep = inner.gc_lock.lock().await;
                let page = match inner.backend.scan(&collection, &req).await {
                    Ok(page) => page,
                    // Dropped meanwhile: nothing left to reseal.
                    Err(BackendError::CollectionNotFound { .. }) => break,
                    Err(e) => return Err(e.into()),
                };
                request = req.next_page(&page);
                let mut batch = WriteBatch::new();
                for (key, stored) in page.entries {
                    report.scanned += 1;
                    if value::sealed_key_id(&stored) == Some(newest) {
                        report.already_current += 1;
                        continue;
                    }
                    // Opening authenticates the old sealing before anything is rewritten.
                    let (vk, value) = decode_entry(&inner.codec, &collection, key, stored)?;
                    let value = match &value {
                        Stored::Put(v) => Some(v.as_slice()),
                        Stored::Tombstone => None,
                    };
                    let resealed = inner
                        .codec
                        .encode(collection.as_str(), vk.as_bytes(), value)?;
                    batch.put(&collection, vk.into_bytes(), resealed);
                    report.rewritten += 1;
                }
                if !batch.is_empty() {
                    match inner.backend.write(batch, Durability::Buffered).await {
                        Ok(()) | Err(BackendError::CollectionNotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                progress.scanned = report.scanned;
                progress.rewritten = report.rewritten;
                if let Some(f) = &options.progress {
                    f(&progress);
                }
            }
            report.collections += 1;
            progress.collections_done = report.collections;
        }
        // The resealed values are durable before the old key ids are forgotten.
        inner.backend.sync().await?;
        report.retired_key_ids = retire_old_keys(&*inner.backend, newest).await?;
        inner.codec.set_plaintext_allowed(false);
        if let Some(f) = &options.progress {
            f(&progress);
        }
        Ok(report)
    }
}
