//! The oracle: commit versions, what readers may see, and who still needs old versions.
//!
//! - Versions are assigned in commit order under the commit lock, after validation.
//! - A version is *resolved* once its backend batch has landed (or failed). The *published*
//!   version — what new transactions read at — is the highest `v` such that every version
//!   `≤ v` is resolved, so a reader never sees commit `v + 1` without commit `v`, and nothing
//!   is visible before its batch landed.
//! - Live snapshots register their read version; the minimum bounds garbage collection and the
//!   window of committed write sets kept for conflict checks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::conflict::WriteSet;
use super::keys::Version;

/// One committed (or in-flight) transaction's writes, kept while a live transaction might
/// need to validate against it.
#[derive(Debug)]
pub(crate) struct CommittedWrites {
    pub(crate) version: Version,
    pub(crate) writes: Arc<WriteSet>,
}

/// State guarded by the commit lock.
#[derive(Debug)]
pub(crate) struct CommitState {
    pub(crate) last_assigned: Version,
    /// Versions above this need a new durable lease before use.
    pub(crate) leased_until: Version,
    /// Ascending by version.
    pub(crate) recent: VecDeque<CommittedWrites>,
}

#[derive(Debug)]
struct Tracker {
    published: Version,
    /// Resolved versions above `published`, waiting for a gap below them to close.
    resolved: BTreeSet<Version>,
    /// Read versions of live snapshots → how many.
    active: BTreeMap<Version, usize>,
    /// Versions below this may have been garbage collected (the newest version of each key at
    /// or below it is kept).
    gc_floor: Version,
    /// Commits waiting for an earlier version to resolve before theirs is published. Empty in
    /// the common case, where versions resolve in order.
    waiters: BTreeMap<Version, Vec<oneshot::Sender<()>>>,
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Oracle {
    pub(crate) commit: Arc<tokio::sync::Mutex<CommitState>>,
    tracker: Mutex<Tracker>,
}

impl Oracle {
    pub(crate) fn new(last_committed: Version, gc_floor: Version) -> Self {
        Self {
            commit: Arc::new(tokio::sync::Mutex::new(CommitState {
                last_assigned: last_committed,
                leased_until: last_committed,
                recent: VecDeque::new(),
            })),
            tracker: Mutex::new(Tracker {
                published: last_committed,
                resolved: BTreeSet::new(),
                active: BTreeMap::new(),
                gc_floor,
                waiters: BTreeMap::new(),
            }),
        }
    }

    // No code path panics while holding the tracker lock with the state half-updated, so a
    // poisoned lock is safe to keep using.
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The version new readers see.
    pub(crate) fn published(&self) -> Version {
        self.tracker().published
    }

    /// Registers a snapshot at the latest published version.
    pub(crate) fn begin_latest(&self) -> Version {
        let mut t = self.tracker();
        let version = t.published;
        *t.active.entry(version).or_insert(0) += 1;
        version
    }

    /// Registers a snapshot at an older (or the latest) version, if it is still readable.
    pub(crate) fn begin_at(&self, version: Version) -> Result<(), (Version, Version)> {
        let mut t = self.tracker();
        if version > t.published || version < t.gc_floor {
            return Err((t.gc_floor, t.published));
        }
        *t.active.entry(version).or_insert(0) += 1;
        Ok(())
    }

    /// Unregisters a snapshot.
    pub(crate) fn end(&self, version: Version) {
        let mut t = self.tracker();
        if let Some(count) = t.active.get_mut(&version) {
            *count -= 1;
            if *count == 0 {
                t.active.remove(&version);
            }
        }
    }

    /// Marks `version` resolved and advances the published version over every closed gap.
    pub(crate) fn resolve(&self, version: Version) {
        let mut t = self.tracker();
        if version <= t.published {
            return;
        }
        t.resolved.insert(version);
        let mut published = t.published;
        while t.resolved.remove(&(published + 1)) {
            published += 1;
        }
        t.published = published;
        while let Some(entry) = t.waiters.first_entry() {
            if *entry.key() > published {
                break;
            }
            for waiter in entry.remove() {
                // A dropped waiter (cancelled commit) needs no wake-up.
                let _ = waiter.send(());
            }
        }
    }

    /// Raft mode: publishes every version up to `version` at once (the state machine applied
    /// log entries through it, in order; entries without data leave no gap to wait for), and
    /// keeps local version assignment from reusing any of them.
    pub(crate) fn publish_through(&self, version: Version) {
        {
            let mut t = self.tracker();
            if version > t.published {
                t.published = version;
            }
            let published = t.published;
            t.resolved.retain(|v| *v > published);
            while let Some(entry) = t.waiters.first_entry() {
                if *entry.key() > published {
                    break;
                }
                for waiter in entry.remove() {
                    let _ = waiter.send(());
                }
            }
        }
        if let Ok(mut state) = self.commit.try_lock() {
            state.last_assigned = state.last_assigned.max(version);
            state.leased_until = state.leased_until.max(version);
        }
    }

    /// Raft mode, after a snapshot was installed: the store now holds the versions of the
    /// snapshot, up to `version`, with versions below `gc_floor` possibly collected.
    pub(crate) fn reset_to(&self, version: Version, gc_floor: Version) {
        {
            let mut t = self.tracker();
            t.published = t.published.max(version);
            t.gc_floor = t.gc_floor.max(gc_floor.min(version));
        }
        self.publish_through(version);
    }

    /// Waits until `version` is published.
    pub(crate) async fn wait_published(&self, version: Version) {
        let rx = {
            let mut t = self.tracker();
            if t.published >= version {
                return;
            }
            let (tx, rx) = oneshot::channel();
            t.waiters.entry(version).or_default().push(tx);
            rx
        };
        // The sender is dropped only after sending, or with the oracle itself.
        let _ = rx.await;
    }

    /// The highest version that may have been handed out (the durable lease).
    pub(crate) async fn version_limit(&self) -> Version {
        self.commit.lock().await.leased_until
    }

    /// Oldest read version of a live snapshot, if any.
    pub(crate) fn oldest_active(&self) -> Option<Version> {
        self.tracker().active.keys().next().copied()
    }

    /// Number of live snapshots.
    pub(crate) fn active_count(&self) -> usize {
        self.tracker().active.values().sum()
    }

    /// Versions below this may be gone.
    pub(crate) fn gc_floor(&self) -> Version {
        self.tracker().gc_floor
    }

    /// Picks a GC watermark — the oldest version any live or future reader may read — and
    /// raises the floor to it so that no new time-travel reader can start below it.
    pub(crate) fn advance_gc_floor(&self, retain_versions: u64) -> Version {
        let mut t = self.tracker();
        let by_retention = t.published.saturating_sub(retain_versions);
        let by_readers = t.active.keys().next().copied().unwrap_or(t.published);
        let watermark = by_retention.min(by_readers).max(t.gc_floor);
        t.gc_floor = watermark;
        watermark
    }

    /// Drops committed write sets no live or future transaction can conflict with.
    pub(crate) fn prune(&self, state: &mut CommitState) {
        let horizon = {
            let t = self.tracker();
            t.active
                .keys()
                .next()
                .copied()
                .unwrap_or(t.published)
                .min(t.published)
        };
        while state.recent.front().is_some_and(|c| c.version <= horizon) {
            state.recent.pop_front();
        }
    }
}

/// Resolves its version when dropped, so a cancelled commit never blocks publication.
#[derive(Debug)]
pub(crate) struct VersionTicket {
    oracle: Arc<Oracle>,
    version: Version,
    resolved: bool,
}

impl VersionTicket {
    pub(crate) fn new(oracle: Arc<Oracle>, version: Version) -> Self {
        Self {
            oracle,
            version,
            resolved: false,
        }
    }

    pub(crate) fn resolve(mut self) {
        self.resolved = true;
        self.oracle.resolve(self.version);
    }
}

impl Drop for VersionTicket {
    fn drop(&mut self) {
        if !self.resolved {
            self.oracle.resolve(self.version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_waits_for_gaps() {
        let o = Oracle::new(10, 0);
        o.resolve(12);
        assert_eq!(o.published(), 10, "11 is not resolved yet");
        o.resolve(11);
        assert_eq!(o.published(), 12);
        o.resolve(12);
        assert_eq!(o.published(), 12);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_gap_below_it_closes() {
        let o = Arc::new(Oracle::new(0, 0));
        o.resolve(2);
        let waiter = {
            let o = Arc::clone(&o);
            tokio::spawn(async move { o.wait_published(2).await })
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "version 1 is still in flight");
        o.resolve(1);
        assert!(waiter.await.is_ok());
        o.wait_published(2).await;
    }

    #[test]
    fn gc_floor_respects_readers_and_retention() {
        let o = Oracle::new(100, 0);
        let r = o.begin_latest();
        assert_eq!(r, 100);
        for v in 101..=150 {
            o.resolve(v);
        }
        assert_eq!(
            o.advance_gc_floor(10),
            100,
            "the live reader at 100 holds the floor"
        );
        o.end(r);
        assert_eq!(o.advance_gc_floor(10), 140);
        assert!(o.begin_at(139).is_err(), "below the floor");
        assert!(o.begin_at(140).is_ok());
        assert!(o.begin_at(151).is_err(), "not committed");
        assert_eq!(
            o.advance_gc_floor(0),
            140,
            "a reader at 140 holds the floor"
        );
    }
}
