//! Seed → [`SimConfig`]: everything a run does is derived from one `u64` and printed first
//! (as TigerBeetle's VOPR prints the options it derived from a seed).

use std::fmt;

use rand::Rng;

use super::rng::{self, Stream};
use crate::storage::SimBackendKind;

/// Workload mix: relative weights of the three workloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadMix {
    /// Single-key register reads and writes (linearizability).
    pub register: u32,
    /// Bank transfers in serializable transactions (total conserved).
    pub bank: u32,
    /// List-append transactions (Elle-style isolation).
    pub list_append: u32,
}

/// Weights of the fault kinds the schedule draws from (0 disables a kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultWeights {
    /// Symmetric partition of one link.
    pub partition: u32,
    /// One-way partition of one link.
    pub partition_oneway: u32,
    /// Isolate one node from every other node.
    pub isolate: u32,
    /// Swizzle-clog: hold a random subset's links one by one, release in random order.
    pub clog: u32,
    /// Latency spike on one link.
    pub latency: u32,
    /// Small message loss on one link.
    pub loss: u32,
    /// Process restart (page cache kept).
    pub bounce: u32,
    /// Power loss (unsynced writes lost), then restart after an outage.
    pub crash: u32,
    /// Power loss of the current leader.
    pub crash_leader: u32,
    /// Disk-fault episode: one node's disk fails reads, writes and syncs with EIO at a drawn
    /// probability for a window; a node stopped by it is restarted when the window ends.
    pub disk_eio: u32,
    /// Disk-fault episode: one node's disk is full (ENOSPC beyond its usage plus a small
    /// slack) for a window; a node stopped by it is restarted when the window ends.
    pub disk_full: u32,
}

/// Simulated-disk faults (turmoil's `FsConfig`), applied to every node.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskFaults {
    /// Each write may flush its file's pending data early (random early sync).
    pub sync_probability: f64,
    /// Torn writes on power loss: each pending write keeps a random prefix of whole blocks.
    pub block_size: Option<u64>,
}

/// The configuration of one run, all derived from `seed`.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The run seed.
    pub seed: u64,
    /// Voters (3 or 5).
    pub nodes: u64,
    /// Storage backend of every node.
    pub backend: SimBackendKind,
    /// Message latency bounds (ms) and the exponential curve's lambda.
    pub latency_ms: (u64, u64),
    /// turmoil's exponential latency curve.
    pub latency_curve: f64,
    /// Raft heartbeat (ms).
    pub heartbeat_ms: u64,
    /// Raft election timeout bounds (ms).
    pub election_ms: (u64, u64),
    /// Length of the safety phase (faults), ms.
    pub safety_ms: u64,
    /// Bound on the liveness phase (faults healed): the cluster must converge and serve
    /// within this, ms.
    pub liveness_ms: u64,
    /// Mean time between two fault events (ms).
    pub fault_interval_ms: u64,
    /// Fault weights.
    pub faults: FaultWeights,
    /// Disk faults.
    pub disk: DiskFaults,
    /// BUGGIFY points in product code active.
    pub buggify: bool,
    /// Concurrent workload clients.
    pub clients: u64,
    /// Workload mix.
    pub mix: WorkloadMix,
    /// Register keys.
    pub register_keys: u64,
    /// Bank accounts.
    pub accounts: u64,
    /// List-append keys.
    pub list_keys: u64,
    /// Pause between two operations of one client, ms (upper bound; drawn per op).
    pub think_ms: u64,
    /// A client gives up on an operation after this (recorded as `info`), ms.
    pub op_timeout_ms: u64,
    /// Raft builds a snapshot after this many entries since the last one
    /// (`SnapshotPolicy::LogsSinceLast`); [`SNAPSHOTS_OFF`] on seeds that never snapshot.
    pub snapshot_after_logs: u64,
    /// Log entries kept behind a snapshot (`max_in_snapshot_log_to_keep`): small, so a node
    /// that was down or cut off must catch up through a snapshot once the log is purged.
    pub logs_kept_after_snapshot: u64,
}

/// [`SimConfig::snapshot_after_logs`] of a seed that never builds a snapshot.
pub const SNAPSHOTS_OFF: u64 = u64::MAX / 2;

/// Initial balance of every bank account.
pub const INITIAL_BALANCE: u64 = 100;

impl SimConfig {
    /// Derives the configuration of run `seed`.
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        let mut r = rng::rng(seed, Stream::Config, 0);
        let nodes = if r.gen_bool(0.7) { 3 } else { 5 };
        let backend = if r.gen_bool(0.5) {
            SimBackendKind::Redb
        } else {
            SimBackendKind::Memory
        };
        let min_lat = r.gen_range(0..=2);
        let max_lat = min_lat + r.gen_range(2..=25);
        let heartbeat_ms = 50;
        let election_min = r.gen_range(150..=300);
        let election_max = election_min + r.gen_range(100..=300);
        let w = |r: &mut rand::rngs::StdRng, on: f64, max: u32| {
            if r.gen_bool(on) {
                r.gen_range(1..=max)
            } else {
                0
            }
        };
        let faults = FaultWeights {
            partition: w(&mut r, 0.8, 4),
            partition_oneway: w(&mut r, 0.6, 3),
            isolate: w(&mut r, 0.6, 3),
            clog: w(&mut r, 0.5, 3),
            latency: w(&mut r, 0.6, 3),
            loss: w(&mut r, 0.4, 2),
            bounce: w(&mut r, 0.7, 3),
            crash: w(&mut r, 0.8, 4),
            crash_leader: w(&mut r, 0.7, 3),
            // Drawn last (below), so that the draws above stay what they were.
            disk_eio: 0,
            disk_full: 0,
        };
        let disk = DiskFaults {
            sync_probability: if r.gen_bool(0.5) {
                r.gen_range(0.0..0.2)
            } else {
                0.0
            },
            block_size: if r.gen_bool(0.5) {
                Some([512, 4096][r.gen_range(0..2)])
            } else {
                None
            },
        };
        let mix = WorkloadMix {
            register: r.gen_range(1..=4),
            bank: r.gen_range(0..=3),
            list_append: r.gen_range(0..=3),
        };
        let mut cfg = Self {
            seed,
            nodes,
            backend,
            latency_ms: (min_lat, max_lat),
            latency_curve: r.gen_range(2.0..8.0),
            heartbeat_ms,
            election_ms: (election_min, election_max),
            safety_ms: r.gen_range(4_000..=8_000),
            liveness_ms: 20_000,
            fault_interval_ms: r.gen_range(150..=900),
            faults,
            disk,
            buggify: r.gen_bool(0.5),
            clients: r.gen_range(2..=4),
            mix,
            register_keys: r.gen_range(2..=6),
            accounts: r.gen_range(3..=5),
            list_keys: r.gen_range(3..=8),
            think_ms: r.gen_range(5..=60),
            op_timeout_ms: 3_000,
            snapshot_after_logs: 0,
            logs_kept_after_snapshot: 0,
        };
        // Drawn last, so every draw above is what it was before snapshots were on. Most
        // seeds snapshot and purge often, so lagging and restarted nodes catch up by snapshot
        // install; the rest never snapshot, so long logs are replicated entry by entry.
        if r.gen_bool(0.75) {
            cfg.snapshot_after_logs = r.gen_range(5..=40);
            cfg.logs_kept_after_snapshot = r.gen_range(0..=cfg.snapshot_after_logs / 4);
        } else {
            cfg.snapshot_after_logs = SNAPSHOTS_OFF;
            cfg.logs_kept_after_snapshot = 1_000;
        }
        // Disk-fault episodes: drawn after everything else, for the same reason.
        cfg.faults.disk_eio = w(&mut r, 0.5, 2);
        cfg.faults.disk_full = w(&mut r, 0.5, 2);
        cfg
    }

    /// Node ids `1..=nodes`.
    pub fn node_ids(&self) -> impl Iterator<Item = u64> + use<> {
        1..=self.nodes
    }
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fw = &self.faults;
        writeln!(f, "seed={}", self.seed)?;
        writeln!(
            f,
            "  cluster: nodes={} backend={} heartbeat={}ms election={}..{}ms",
            self.nodes, self.backend, self.heartbeat_ms, self.election_ms.0, self.election_ms.1
        )?;
        if self.snapshot_after_logs == SNAPSHOTS_OFF {
            writeln!(f, "  snapshots: off")?;
        } else {
            writeln!(
                f,
                "  snapshots: after={} entries, keep={} entries",
                self.snapshot_after_logs, self.logs_kept_after_snapshot
            )?;
        }
        writeln!(
            f,
            "  network: latency={}..{}ms curve={:.2}",
            self.latency_ms.0, self.latency_ms.1, self.latency_curve
        )?;
        writeln!(
            f,
            "  phases: safety={}ms liveness<={}ms",
            self.safety_ms, self.liveness_ms
        )?;
        writeln!(
            f,
            "  faults: every~{}ms partition={} oneway={} isolate={} clog={} latency={} loss={} bounce={} crash={} crash_leader={} disk_eio={} disk_full={} buggify={}",
            self.fault_interval_ms,
            fw.partition,
            fw.partition_oneway,
            fw.isolate,
            fw.clog,
            fw.latency,
            fw.loss,
            fw.bounce,
            fw.crash,
            fw.crash_leader,
            fw.disk_eio,
            fw.disk_full,
            self.buggify
        )?;
        writeln!(
            f,
            "  disk: sync_probability={:.3} torn_block={:?}",
            self.disk.sync_probability, self.disk.block_size
        )?;
        write!(
            f,
            "  workload: clients={} mix(register={} bank={} list_append={}) keys(register={} accounts={} lists={}) think<={}ms op_timeout={}ms",
            self.clients,
            self.mix.register,
            self.mix.bank,
            self.mix.list_append,
            self.register_keys,
            self.accounts,
            self.list_keys,
            self.think_ms,
            self.op_timeout_ms
        )
    }
}
