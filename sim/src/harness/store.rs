//! A node's storage across incarnations: the storage module's [`SimDisk`] (turmoil's
//! simulated disk for redb, a durable image for the memory backend), kept by the harness
//! outside the host so it survives crash and bounce.

use std::sync::Arc;

use zcore_engine::StorageBackend;

use super::config::SimConfig;
use super::rng::{self, Stream};
use super::world::World;
use crate::storage::{self, DiskFaults, SimBackendKind, SimDisk, SimDiskOptions};

/// The node's durable state.
#[derive(Debug)]
pub struct NodeStore {
    disk: SimDisk,
    kind: SimBackendKind,
}

/// The disk faults of run `cfg` on node `node` (turmoil's are global to the run).
fn disk_faults(cfg: &SimConfig, node: u64) -> DiskFaults {
    DiskFaults {
        seed: rng::derive(cfg.seed, Stream::Faults, 1_000 + node),
        early_sync_probability: cfg.disk.sync_probability,
        // I/O errors and a full disk stop a Raft node for good (openraft treats storage
        // errors as fatal), which the liveness phase could not heal: not injected here.
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
        }
    }

    /// Opens the store for a new incarnation (inside the host).
    ///
    /// # Errors
    ///
    /// Recovery failures.
    pub async fn open(&self, _world: &World) -> Result<Arc<dyn StorageBackend>, String> {
        let dead = self.disk.start_incarnation();
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
