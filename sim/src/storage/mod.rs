//! Storage backends on turmoil's simulated disk, for simulated nodes.
//!
//! Two implementations of [`zcore_engine::StorageBackend`] that run entirely inside a turmoil
//! simulation — inline on the calling task, no threads, no blocking pool, no wall clock:
//!
//! - [`SimRedbBackend`]: redb 4.6 whose file I/O goes through redb's own file-level backend
//!   trait over `turmoil::fs::shim::std::fs::File`, so turmoil's disk model applies (unsynced
//!   writes lost on crash, torn writes by block size, EIO, ENOSPC, files whose directory was not
//!   synced vanish). The directories are synced after the file is created.
//! - [`SimMemoryBackend`]: ordered maps with a *volatile* image (what the process sees) and a
//!   *durable* image (what survives power loss). Synced batches, `sync` and `close` make
//!   everything written so far durable; seeded faults ([`DiskFaults`]) add random early
//!   syncs, I/O errors and a full disk.
//!
//! Besides the fixed [`DiskFaults`] of a disk, its [`DiskControl`] switches I/O errors and a
//! full disk on and off while the simulation runs (the cluster harness's disk-fault
//! episodes); both backends honour it.
//!
//! fjall cannot run here (it starts its own threads and uses `std::fs` directly); it is covered
//! by the process-kill test `backends/tests/kill.rs`.
//!
//! # API for the harness
//!
//! ```text
//! // per node, created once by the harness (outside the host closure), survives crash/bounce:
//! let disk = SimDisk::new(SimDiskOptions { faults, ..Default::default() });
//! // for redb nodes, turmoil's fs faults are global to the Sim:
//! faults.apply_to_turmoil(&mut builder);
//!
//! sim.host("n1", {
//!     let disk = disk.clone();
//!     move || {
//!         let disk = disk.clone();
//!         async move {
//!             let dead = disk.start_incarnation();          // fresh live flag
//!             let backend = open_backend(SimBackendKind::Redb, &disk, dead).await?;
//!             let engine = Engine::open(backend, options).await?;
//!             ...
//!         }
//!     }
//! });
//!
//! crash_host(&mut sim, "n1", &disk);   // power loss: dead flag, sim.crash, memory image reset
//! sim.bounce("n1");                    // start again from what was durable
//! restart_host(&mut sim, "n1", &disk); // process restart: dead flag, sim.bounce (cache kept)
//! disk.mark_dead();                    // before dropping the Sim with a database still open
//! ```
//!
//! Rules (DESIGN.md §6, research/sim-anchors.md §7):
//! - **Mark the node dead before `sim.crash`/`sim.bounce`.** Crashing a host drops its tasks
//!   *inside* the simulation, and redb's `Drop` would commit and fsync before the crash lands.
//!   With the [`DeadFlag`] set, every I/O of that incarnation fails instead. [`crash_host`] and
//!   [`restart_host`] do it for you.
//! - **Never drop a `Sim` while a host still holds an open database** without marking its disk
//!   dead: the `Drop` then runs outside the simulation context and turmoil's fs panics.
//! - A memory node's power loss needs [`SimDisk::power_loss`] (turmoil only knows its own fs);
//!   [`crash_host`] calls it.
//! - `open_backend` must run inside a turmoil host or client while it is being polled.

mod faults;
mod memory;
mod redb;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use zcore_engine::{BackendError, StorageBackend};

pub use faults::{DiskControl, DiskFaults, SimRng};
pub use memory::{SIM_MEMORY_KIND, SimMemoryBackend};
pub use redb::{SIM_REDB_KIND, SimRedbBackend};

use faults::{RuntimeFaults, SharedRng};
use memory::MemoryImage;

/// Which simulated backend a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimBackendKind {
    /// redb on turmoil's simulated filesystem.
    Redb,
    /// The memory backend with a durable image.
    Memory,
}

impl SimBackendKind {
    /// Both kinds, in a fixed order.
    pub const ALL: [Self; 2] = [Self::Redb, Self::Memory];

    /// Lower-case name (`redb`, `memory`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Redb => "redb",
            Self::Memory => "memory",
        }
    }
}

impl std::fmt::Display for SimBackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// "This incarnation of the node is dead": once set, every storage I/O of the backends opened
/// with it fails, so `Drop` code running at crash or teardown cannot write. Cloning shares the
/// flag. A new incarnation needs a new flag ([`SimDisk::start_incarnation`]).
#[derive(Clone, Debug, Default)]
pub struct DeadFlag(Arc<AtomicBool>);

impl DeadFlag {
    /// A live flag.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the incarnation dead (idempotent).
    pub fn mark_dead(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether it was marked dead.
    #[must_use]
    pub fn is_dead(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Options of a [`SimDisk`].
#[derive(Clone, Debug, PartialEq)]
pub struct SimDiskOptions {
    /// Directory on the host's simulated filesystem for the redb file (`<dir>/store.redb`).
    pub dir: PathBuf,
    /// Seeded disk faults (see [`DiskFaults`]).
    pub faults: DiskFaults,
    /// redb page cache in bytes.
    pub redb_cache_bytes: usize,
    /// **Negative control, tests only:** `sync` does not sync (redb's `sync_data` returns `Ok`
    /// without syncing; the memory backend never moves writes to its durable image). The crash
    /// checkers must catch the lost commits this causes.
    pub lying_sync: bool,
}

impl Default for SimDiskOptions {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/zcore"),
            faults: DiskFaults::default(),
            redb_cache_bytes: 4 * 1024 * 1024,
            lying_sync: false,
        }
    }
}

#[derive(Debug)]
struct DiskInner {
    options: SimDiskOptions,
    memory: Arc<Mutex<MemoryImage>>,
    rng: Arc<SharedRng>,
    control: DiskControl,
    current: Mutex<DeadFlag>,
    incarnations: AtomicU64,
    power_losses: AtomicU64,
}

/// The per-node durable state that survives crash and bounce: created by the harness outside
/// the host closure and captured by it (cloning shares it). Holds the memory backend's images,
/// the fault generator and run-time fault switch ([`DiskControl`]), the redb file's location,
/// and the current incarnation's [`DeadFlag`].
/// redb's bytes themselves live in turmoil's per-host filesystem.
#[derive(Clone, Debug)]
pub struct SimDisk {
    inner: Arc<DiskInner>,
}

impl SimDisk {
    /// A fresh, empty disk.
    #[must_use]
    pub fn new(options: SimDiskOptions) -> Self {
        let rng = Arc::new(SharedRng::new(options.faults.seed));
        Self {
            inner: Arc::new(DiskInner {
                options,
                memory: Arc::new(Mutex::new(MemoryImage::default())),
                rng,
                control: DiskControl::new(),
                current: Mutex::new(DeadFlag::new()),
                incarnations: AtomicU64::new(0),
                power_losses: AtomicU64::new(0),
            }),
        }
    }

    /// The options it was created with.
    #[must_use]
    pub fn options(&self) -> &SimDiskOptions {
        &self.inner.options
    }

    /// The disk's run-time fault switch (I/O errors, full disk), shared by every backend
    /// opened on it in every incarnation.
    #[must_use]
    pub fn control(&self) -> &DiskControl {
        &self.inner.control
    }

    /// Where the redb file lives on the host's simulated filesystem.
    #[must_use]
    pub fn redb_path(&self) -> PathBuf {
        self.inner.options.dir.join("store.redb")
    }

    /// Starts a new incarnation of the node: returns a fresh live [`DeadFlag`] and remembers it
    /// as the one [`mark_dead`](Self::mark_dead) marks. Call at the start of the host future.
    pub fn start_incarnation(&self) -> DeadFlag {
        let flag = DeadFlag::new();
        *self
            .inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = flag.clone();
        self.inner.incarnations.fetch_add(1, Ordering::Relaxed);
        flag
    }

    /// Marks the current incarnation dead: its backends fail every I/O from now on.
    pub fn mark_dead(&self) {
        self.inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .mark_dead();
    }

    /// Power loss for the memory backend: the volatile image is replaced by the durable one.
    /// (redb's file is handled by turmoil's `sim.crash`, which drops unsynced writes.)
    pub fn power_loss(&self) {
        self.mark_dead();
        self.inner
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .power_loss();
        self.inner.power_losses.fetch_add(1, Ordering::Relaxed);
    }

    /// How many incarnations were started.
    #[must_use]
    pub fn incarnations(&self) -> u64 {
        self.inner.incarnations.load(Ordering::Relaxed)
    }

    /// How many power losses the disk went through.
    #[must_use]
    pub fn power_losses(&self) -> u64 {
        self.inner.power_losses.load(Ordering::Relaxed)
    }
}

/// Errors opening a simulated backend.
#[derive(Debug, thiserror::Error)]
pub enum SimStorageError {
    /// The incarnation was already marked dead.
    #[error("the simulated node is dead; start a new incarnation to open storage")]
    Dead,
    /// A file-system operation on the simulated disk failed.
    #[error("simulated disk: cannot {operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path involved.
        path: PathBuf,
        /// turmoil's error.
        #[source]
        source: std::io::Error,
    },
    /// redb could not open (or repair) its file.
    #[error("redb cannot open {} on the simulated disk: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: Box<::redb::Error>,
    },
    /// A backend call failed while opening.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl SimStorageError {
    /// Whether the error is an I/O failure of the simulated disk (injected EIO/ENOSPC or a dead
    /// node) rather than a problem with the stored data; retrying after a restart may succeed.
    #[must_use]
    pub fn is_io(&self) -> bool {
        match self {
            Self::Dead | Self::Io { .. } => true,
            Self::Open { source, .. } => matches!(
                **source,
                ::redb::Error::Io(_)
                    | ::redb::Error::PreviousIo
                    | ::redb::Error::DatabaseAlreadyOpen
            ),
            Self::Backend(_) => false,
        }
    }
}

/// Opens a `kind` backend on `disk` for the incarnation whose flag is `dead`. Runs inline; must
/// be called inside a turmoil host or client.
///
/// # Errors
///
/// [`SimStorageError`]: the node is dead, the simulated disk failed, or redb cannot open.
pub async fn open_backend(
    kind: SimBackendKind,
    disk: &SimDisk,
    dead: DeadFlag,
) -> Result<Arc<dyn StorageBackend>, SimStorageError> {
    open_backend_now(kind, disk, dead)
}

/// [`open_backend`] for synchronous callers (e.g. the conformance suite's `Harness::open`).
/// Everything it does is inline anyway.
///
/// # Errors
///
/// As [`open_backend`].
pub fn open_backend_now(
    kind: SimBackendKind,
    disk: &SimDisk,
    dead: DeadFlag,
) -> Result<Arc<dyn StorageBackend>, SimStorageError> {
    if dead.is_dead() {
        return Err(SimStorageError::Dead);
    }
    let options = &disk.inner.options;
    Ok(match kind {
        SimBackendKind::Redb => Arc::new(SimRedbBackend::open_with(
            &disk.redb_path(),
            options.redb_cache_bytes,
            options.lying_sync,
            dead,
            RuntimeFaults {
                control: disk.inner.control.clone(),
                rng: Arc::clone(&disk.inner.rng),
            },
        )?),
        SimBackendKind::Memory => Arc::new(SimMemoryBackend::new(
            Arc::clone(&disk.inner.memory),
            RuntimeFaults {
                control: disk.inner.control.clone(),
                rng: Arc::clone(&disk.inner.rng),
            },
            options.faults.clone(),
            options.lying_sync,
            dead,
        )),
    })
}

/// Power loss of `host`: marks its disk dead, crashes it (turmoil drops unsynced file writes,
/// tearing them if a block size is set) and resets the memory image to the durable one. Bring it
/// back with `sim.bounce(host)`.
pub fn crash_host(sim: &mut turmoil::Sim<'_>, host: &str, disk: &SimDisk) {
    disk.mark_dead();
    sim.crash(host);
    disk.power_loss();
}

/// Process restart of `host` (page cache kept): marks its disk dead so the old incarnation's
/// `Drop` cannot write, then bounces it.
pub fn restart_host(sim: &mut turmoil::Sim<'_>, host: &str, disk: &SimDisk) {
    disk.mark_dead();
    sim.bounce(host);
}
