//! A node's storage across incarnations: the storage module's [`SimDisk`] (turmoil's
//! simulated disk for redb, a durable image for the memory backend), kept by the harness
//! outside the host so it survives crash and bounce, with its run-time fault switch
//! ([`DiskControl`]) for the schedule's disk-fault episodes.

use std::cell::Cell;
use std::sync::Arc;

use zcore_engine::StorageBackend;

use super::config::SimConfig;
use super::rng::{self, Stream};
use super::world::World;
use crate::storage::{self, DiskControl, DiskFaults, SimBackendKind, SimDisk, SimDiskOptions};

/// The node's durable state.
#[derive(Debug)]
pub struct NodeStore {
    disk: SimDisk,
    kind: SimBackendKind,
    /// [`DiskControl::injected`] when the running incarnation opened its store.
    injected_at_open: Cell<u64>,
}

/// The fixed disk faults of run `cfg` on node `node` (turmoil's are global to the run).
///
/// I/O errors and a full disk are not fixed faults here: a storage error stops a Raft node
/// for good (openraft treats it as fatal), so they come in episodes instead — the schedule
/// switches them on for one node through its [`DiskControl`] and restarts the node when the
/// episode ends (`faults.rs`), as an operator would after fixing the disk.
fn disk_faults(cfg: &SimConfig, node: u64) -> DiskFaults {
    DiskFaults {
        seed: rng::derive(cfg.seed, Stream::Faults, 1_000 + node),
        early_sync_probability: cfg.disk.sync_probability,
        io_error_probability: 0.0,
        capacity_bytes: None,
        torn_write_block: cfg.disk.block_size,
    }
}

impl NodeStore {
    /// A fresh, empty store for node `node` of run `cfg`.
    #[must_use]
    pub fn new(cfg: &SimConfig, node: u64, lying_sync: bool) -> Self {
        Self {
            disk: SimDisk::new(SimDiskOptions {
                dir: format!("/data/n{node}").into(),
                faults: disk_faults(cfg, node),
                lying_sync,
                ..SimDiskOptions::default()
            }),
            kind: cfg.backend,
            injected_at_open: Cell::new(0),
        }
    }

    /// The disk's run-time fault switch (disk-fault episodes).
    #[must_use]
    pub fn control(&self) -> &DiskControl {
        self.disk.control()
    }

    /// Whether the disk injected an error (EIO, ENOSPC) since the running incarnation
    /// opened its store: a storage failure of this incarnation may be the injected fault's.
    #[must_use]
    pub fn faulted_since_open(&self) -> bool {
        self.control().injected() > self.injected_at_open.get()
    }

    /// Opens the store for a new incarnation (inside the host).
    ///
    /// # Errors
    ///
    /// Recovery failures.
    pub async fn open(&self, _world: &World) -> Result<Arc<dyn StorageBackend>, String> {
        let dead = self.disk.start_incarnation();
        self.injected_at_open.set(self.control().injected());
        storage::open_backend(self.kind, &self.disk, dead)
            .await
            .map_err(|e| e.to_string())
    }

    /// Marks the running incarnation dead: from now on its I/O fails.
    pub fn mark_dead(&self) {
        self.disk.mark_dead();
    }

    /// Power loss of node host `host`: dead flag, `sim.crash`, memory image reset.
    pub fn crash(&self, sim: &mut turmoil::Sim<'_>, host: &str) {
        storage::crash_host(sim, host, &self.disk);
    }

    /// Power losses so far.
    #[must_use]
    pub fn power_losses(&self) -> u64 {
        self.disk.power_losses()
    }
}

/// Applies the run's disk faults to turmoil's simulated filesystem (redb nodes).
pub fn configure_fs(builder: &mut turmoil::Builder, cfg: &SimConfig) {
    disk_faults(cfg, 0).apply_to_turmoil(builder);
}
