//! Seeded disk faults and the small deterministic generator that draws them.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// SplitMix64: a tiny, fast, seedable generator. Every random choice in the storage and crash
/// modules comes from one of these, seeded from the run seed — never from the OS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for the sub-stream `stream` of `seed` (independent streams of one run seed).
    #[must_use]
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut mixer = Self::new(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        Self::new(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant for fault schedules.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A value in `lo..=hi`.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// `true` with probability `p` (clamped to `0..=1`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits → a uniform float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

/// Disk faults of one simulated node.
///
/// For the **memory** backend these are applied by the backend itself, drawn from a
/// [`SimRng`] seeded with [`DiskFaults::seed`]. For **redb** the same figures configure
/// turmoil's simulated filesystem ([`DiskFaults::apply_to_turmoil`]), whose choices come from
/// turmoil's world generator (the simulation seed); turmoil's file-system settings are global
/// to one `Sim`, so every host shares them.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskFaults {
    /// Seed of the memory backend's fault generator (derive it from the run seed).
    pub seed: u64,
    /// Probability that a write is made durable at once, together with everything written
    /// before it (the OS flushing its cache early). turmoil: `sync_probability`, per file write.
    pub early_sync_probability: f64,
    /// Probability that a write or sync fails with an I/O error (nothing is applied by a failed
    /// memory write; a failed sync leaves the durable image as it was). turmoil:
    /// `io_error_probability` (EIO on reads and writes).
    pub io_error_probability: f64,
    /// Disk capacity in bytes: a write that would grow the store beyond it fails with "no space"
    /// (memory: sum of key and value bytes of the volatile image; turmoil: bytes of all files).
    pub capacity_bytes: Option<u64>,
    /// Torn writes: on a crash every unsynced file write keeps a random prefix of whole blocks
    /// of this size (turmoil `block_size`; redb only). The memory backend keeps whole batches
    /// (a torn batch record would be dropped by its checksum in a real log), so it ignores this.
    pub torn_write_block: Option<u64>,
}

impl Default for DiskFaults {
    /// No faults at all.
    fn default() -> Self {
        Self {
            seed: 0,
            early_sync_probability: 0.0,
            io_error_probability: 0.0,
            capacity_bytes: None,
            torn_write_block: None,
        }
    }
}

impl DiskFaults {
    /// Configures turmoil's simulated filesystem with these faults (for redb hosts). Call on the
    /// `Builder` before `build()`.
    pub fn apply_to_turmoil(&self, builder: &mut turmoil::Builder) {
        let fs = builder.fs();
        fs.sync_probability(self.early_sync_probability.clamp(0.0, 1.0));
        fs.io_error_probability(self.io_error_probability.clamp(0.0, 1.0));
        if let Some(capacity) = self.capacity_bytes {
            fs.capacity(capacity);
        }
        if let Some(block) = self.torn_write_block.filter(|b| *b > 0) {
            fs.block_size(block);
        }
    }
}

/// Disk faults switched on and off while a simulation runs, on top of the fixed
/// [`DiskFaults`] a disk was created with: the cluster harness's disk-fault episodes (one node's
/// disk returns I/O errors, or is full, for a window of simulated time).
///
/// One per [`SimDisk`](super::SimDisk) ([`SimDisk::control`](super::SimDisk::control)),
/// shared by every backend opened on it, in every incarnation; cloning shares it. Both
/// simulated backends honour it: [`SimRedbBackend`](super::SimRedbBackend) in its file
/// layer (every `read`, `write`, `set_len` and `sync_data` redb makes), and
/// [`SimMemoryBackend`](super::SimMemoryBackend) in every read, write, sync, collection
/// create and drop. I/O errors are drawn from the disk's seeded generator, so a run stays a
/// function of its seed; with everything off nothing is drawn.
#[derive(Clone, Debug, Default)]
pub struct DiskControl(Arc<Mutex<ControlState>>);

#[derive(Debug, Default)]
struct ControlState {
    /// Probability that one I/O fails with EIO.
    io_error_probability: f64,
    /// Full disk: bytes allowed beyond the usage seen first after switching it on.
    full_slack: Option<u64>,
    /// The capacity, fixed at the first capacity check after switching the full disk on.
    full_limit: Option<u64>,
    /// Errors injected so far (EIO and ENOSPC), over the disk's life.
    injected: u64,
    /// redb's file: the file-system blocks ever written, i.e. allocated (redb extends its
    /// file with `set_len`, which allocates nothing in a sparse file, and fills the new space
    /// page by page; rewriting a block needs no new space).
    written_blocks: BTreeSet<u64>,
}

/// File-system block size of the simulated disk (allocation unit of a sparse file).
const FS_BLOCK: u64 = 4096;

/// The blocks `offset..offset + len` touches.
fn blocks(offset: u64, len: u64) -> std::ops::Range<u64> {
    if len == 0 {
        return 0..0;
    }
    offset / FS_BLOCK..(offset.saturating_add(len) - 1) / FS_BLOCK + 1
}

/// What kind of I/O a backend is about to do (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
    Sync,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Sync => "sync",
        }
    }
}

impl DiskControl {
    /// No runtime faults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, ControlState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From now on every read, write and sync fails with EIO with probability `p`
    /// (`0` switches I/O errors off).
    pub fn set_io_errors(&self, p: f64) {
        self.lock().io_error_probability = p.clamp(0.0, 1.0);
    }

    /// From now on the disk is full: writes that would grow the store more than `slack` bytes
    /// beyond its usage at the next write fail with ENOSPC (writes within the space already
    /// used, and deletes, still succeed). Usage is what the store allocated: for the memory
    /// backend the key and value bytes of its volatile image, for redb the 4 KiB blocks of
    /// its file that were ever written (a sparse file: extending it allocates nothing,
    /// writing into the extension does, rewriting a block does not).
    pub fn set_full(&self, slack: u64) {
        let mut state = self.lock();
        state.full_slack = Some(slack);
        state.full_limit = None;
    }

    /// Switches every runtime fault off (the injected count stays).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.io_error_probability = 0.0;
        state.full_slack = None;
        state.full_limit = None;
    }

    /// Whether any runtime fault is on.
    #[must_use]
    pub fn is_active(&self) -> bool {
        let state = self.lock();
        state.io_error_probability > 0.0 || state.full_slack.is_some()
    }

    /// How many errors were injected so far (EIO and ENOSPC, over the disk's life).
    #[must_use]
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Draws whether this `access` fails with EIO; counts it if so.
    pub(crate) fn io_error(&self, rng: &SharedRng, access: Access) -> Result<(), io::Error> {
        let mut state = self.lock();
        let p = state.io_error_probability;
        if p > 0.0 && rng.chance(p) {
            state.injected += 1;
            return Err(io::Error::other(format!(
                "injected I/O error (EIO) on {}",
                access.name()
            )));
        }
        Ok(())
    }

    /// Whether growing the store from `usage` to `wanted` bytes is refused by a full disk;
    /// the capacity is `usage + slack` at the first check after [`set_full`](Self::set_full).
    /// Counts a refusal.
    pub(crate) fn check_space(&self, usage: u64, wanted: u64) -> Result<(), io::Error> {
        let mut state = self.lock();
        let Some(slack) = state.full_slack else {
            return Ok(());
        };
        let limit = *state
            .full_limit
            .get_or_insert_with(|| usage.saturating_add(slack));
        if wanted > usage && wanted > limit {
            state.injected += 1;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("no space left on device (ENOSPC, injected): {wanted} > {limit} bytes"),
            ));
        }
        Ok(())
    }
}

/// What a backend needs to honour its disk's [`DiskControl`].
#[derive(Clone, Debug)]
pub(crate) struct RuntimeFaults {
    pub(crate) control: DiskControl,
    pub(crate) rng: Arc<SharedRng>,
}

impl RuntimeFaults {
    /// A switch that is never turned on.
    pub(crate) fn off() -> Self {
        Self {
            control: DiskControl::new(),
            rng: Arc::new(SharedRng::new(0)),
        }
    }

    /// EIO for this `access`, drawn if I/O errors are on.
    pub(crate) fn io_error(&self, access: Access) -> Result<(), io::Error> {
        self.control.io_error(&self.rng, access)
    }

    /// ENOSPC if the disk is full and the store would grow from `usage` to `wanted` bytes.
    pub(crate) fn check_space(&self, usage: u64, wanted: u64) -> Result<(), io::Error> {
        self.control.check_space(usage, wanted)
    }

    /// redb's file layer, before writing `len` bytes at `offset`: ENOSPC if the disk is full
    /// and the blocks the write allocates (those never written before, see
    /// [`note_write`](Self::note_write)) exceed what the capacity allows.
    pub(crate) fn check_file_write(&self, offset: u64, len: u64) -> Result<(), io::Error> {
        let (usage, wanted) = {
            let state = self.control.lock();
            if state.full_slack.is_none() {
                return Ok(());
            }
            let fresh = blocks(offset, len)
                .filter(|b| !state.written_blocks.contains(b))
                .count() as u64;
            let usage = state.written_blocks.len() as u64 * FS_BLOCK;
            (usage, usage + fresh * FS_BLOCK)
        };
        self.control.check_space(usage, wanted)
    }

    /// redb's file layer, after `len` bytes at `offset` were written.
    pub(crate) fn note_write(&self, offset: u64, len: u64) {
        let mut state = self.control.lock();
        state.written_blocks.extend(blocks(offset, len));
    }

    /// redb's file layer, after the file was cut to (or extended to) `len` bytes: blocks
    /// beyond it are free again.
    pub(crate) fn note_truncate(&self, len: u64) {
        let mut state = self.control.lock();
        let first_free = len.div_ceil(FS_BLOCK);
        let _ = state.written_blocks.split_off(&first_free);
    }
}

/// A [`SimRng`] behind a lock, shared by a disk and its backends.
#[derive(Debug)]
pub(crate) struct SharedRng(Mutex<SimRng>);

impl SharedRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(Mutex::new(SimRng::derive(seed, 0xD15C)))
    }

    pub(crate) fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .chance(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<u64> = {
            let mut r = SimRng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SimRng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = SimRng::new(8);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(SimRng::derive(7, 1), SimRng::derive(7, 2));
    }

    #[test]
    fn below_and_chance_stay_in_range() {
        let mut r = SimRng::new(1);
        let mut hits = 0;
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let v = r.range_inclusive(3, 5);
            assert!((3..=5).contains(&v));
            if r.chance(0.25) {
                hits += 1;
            }
        }
        assert!(
            (2_000..3_000).contains(&hits),
            "{hits} hits of 10000 at p=0.25"
        );
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
    }
}
