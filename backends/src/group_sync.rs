//! Group commit: concurrent requests for durability share one engine sync.
//!
//! Writers apply their batch without syncing, take a ticket with [`GroupSync::note_write`], then
//! wait in [`GroupSync::sync_through`]. One waiter at a time runs the engine's sync on tokio's
//! blocking pool; it covers every write whose ticket was taken before it started, so the others
//! that queued behind it return without syncing again. The fsync therefore never runs on an
//! executor worker thread and never once per writer under load.

use std::sync::atomic::{AtomicU64, Ordering};

use zcore_engine::{BackendError, BackendKind};

#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    /// Tickets handed out: writes fully applied to the engine.
    written: AtomicU64,
    /// Every write with a ticket `<=` this is durable.
    synced: AtomicU64,
    /// Held while one engine sync is in flight.
    leader: tokio::sync::Mutex<()>,
    /// Callers that asked for durability.
    requests: AtomicU64,
    /// Engine syncs actually run (≤ requests: the difference is what group commit saved).
    syncs: AtomicU64,
}

impl GroupSync {
    /// Records a write that has been applied; call after the engine accepted it.
    pub(crate) fn note_write(&self) -> u64 {
        self.written.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The ticket of the newest write applied so far.
    pub(crate) fn last_written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Waits until every write up to `ticket` is durable, running `sync` if nobody else has.
    pub(crate) async fn sync_through<F>(
        &self,
        backend: BackendKind,
        ticket: u64,
        sync: F,
    ) -> Result<(), BackendError>
    where
        F: FnOnce() -> Result<(), BackendError> + Send + 'static,
    {
        self.requests.fetch_add(1, Ordering::Relaxed);
        zcore_engine::metrics::sync_request();
        if self.synced.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let _leader = self.leader.lock().await;
        if self.synced.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        // Every write with a ticket <= target finished applying before this load, so the
        // sync below covers it.
        let target = self.written.load(Ordering::Acquire);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let (started, before) = (
            std::time::Instant::now(),
            self.synced.load(Ordering::Acquire),
        );
        run_blocking(backend, sync).await?;
        zcore_engine::metrics::fsync(started.elapsed(), target.saturating_sub(before));
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }
}

/// Runs blocking engine work on tokio's blocking pool when a runtime is present, inline
/// otherwise (a caller outside any runtime is already on a thread it may block).
pub(crate) async fn run_blocking<F, T>(backend: BackendKind, work: F) -> Result<T, BackendError>
where
    F: FnOnce() -> Result<T, BackendError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.spawn_blocking(work).await.map_err(|join| {
            BackendError::engine(backend, "run blocking engine work", None, join)
        })?,
        Err(_) => work(),
    }
}

impl GroupSync {
    /// Waits for any in-flight sync and keeps new ones from starting while the guard lives.
    pub(crate) async fn leader_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.leader.lock().await
    }
}

impl GroupSync {
    /// (durability requests, engine syncs run) so far, for stats.
    pub(crate) fn counters(&self) -> [(String, u64); 2] {
        [
            (
                "sync_requests".to_owned(),
                self.requests.load(Ordering::Relaxed),
            ),
            (
                "engine_syncs".to_owned(),
                self.syncs.load(Ordering::Relaxed),
            ),
        ]
    }
}
