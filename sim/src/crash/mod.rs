//! Single-node crash-recovery simulation of the engine.
//!
//! One turmoil host runs [`zcore_engine::Engine`] on a simulated backend
//! ([`crate::storage`]: redb on turmoil's disk, or the memory backend with a durable image) and
//! a workload drawn from the seed: multi-collection serializable transactions (some
//! `Durability::Synced`, some `Buffered`), sequence values, explicit syncs and live reads, with
//! the engine's background GC running. The harness kills the node at seeded random steps —
//! power loss (crash: unsynced and torn writes lost) or process restart (bounce) — and brings
//! it back. Every incarnation first reads the whole engine and checks it against a model kept
//! outside the host:
//!
//! - **durability**: every acknowledged durable commit (synced, or followed by a successful
//!   sync) is present;
//! - **atomicity and order**: the state equals the state after some prefix of the commit
//!   sequence (no partial transaction, no later commit without an earlier one);
//! - **sequences** never repeat or go backwards across restarts;
//! - **read-your-writes**: live reads show exactly the acknowledged commits.
//!
//! Disk faults: turmoil's `sync_probability` and torn writes (`block_size`) for redb, the
//! memory backend's seeded early sync; on some seeds I/O errors and a full disk (then a failed
//! operation stops the incarnation, its outcome counts as unknown, and the node is restarted).
//! Everything derives from the seed; [`run_twice`] checks that two runs of one seed produce the
//! same trace (FNV-1a hash, first divergent line on mismatch).

mod model;
mod node;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

pub use model::CrashCounts;

use crate::storage::{
    DiskFaults, SimBackendKind, SimDisk, SimDiskOptions, SimRng, crash_host, restart_host,
};
use model::Model;
use node::lock;

/// Everything one crash-simulation run depends on; [`CrashConfig::from_seed`] derives it.
#[derive(Clone, Debug, PartialEq)]
pub struct CrashConfig {
    /// The run seed.
    pub seed: u64,
    /// Which backend the node runs.
    pub kind: SimBackendKind,
    /// Simulated milliseconds (turmoil ticks of 1 ms).
    pub steps: u64,
    /// Steps between kills: drawn in this range.
    pub kill_gap: (u64, u64),
    /// Outage length in steps: drawn in this range.
    pub outage: (u64, u64),
    /// Fraction of kills that are power losses (the rest are process restarts).
    pub power_loss_fraction: f64,
    /// Fraction of commits that are `Durability::Synced`.
    pub synced_fraction: f64,
    /// Largest value written (bytes).
    pub max_value_len: usize,
    /// Disk faults.
    pub faults: DiskFaults,
    /// Negative control: sync does not sync.
    pub lying_sync: bool,
}

impl CrashConfig {
    /// The configuration of `seed` on `kind`: torn writes and a positive early-sync probability
    /// always; I/O errors on one seed in four; a full disk on one seed in eight.
    #[must_use]
    pub fn from_seed(seed: u64, kind: SimBackendKind) -> Self {
        let mut rng = SimRng::derive(seed, 0xC0_4F16);
        let early_sync = [0.01, 0.03, 0.08][rng.below(3) as usize];
        let torn = [512, 4096][rng.below(2) as usize];
        let io_errors = if rng.below(4) == 0 { 0.0005 } else { 0.0 };
        let capacity = if rng.below(8) == 0 {
            Some(rng.range_inclusive(256, 1024) * 1024)
        } else {
            None
        };
        Self {
            seed,
            kind,
            steps: 2_500,
            kill_gap: (60, 400),
            outage: (1, 40),
            power_loss_fraction: 0.75,
            synced_fraction: [0.2, 0.5, 0.8][rng.below(3) as usize],
            max_value_len: [16, 200, 3000][rng.below(3) as usize],
            faults: DiskFaults {
                seed: rng.next_u64(),
                early_sync_probability: early_sync,
                io_error_probability: io_errors,
                capacity_bytes: capacity,
                torn_write_block: Some(torn),
            },
            lying_sync: false,
        }
    }

    /// Whether storage errors are expected (injected I/O errors or a full disk).
    #[must_use]
    pub fn io_faults(&self) -> bool {
        self.faults.io_error_probability > 0.0 || self.faults.capacity_bytes.is_some()
    }

    /// One line describing the derived configuration (printed first, as VOPR does).
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "seed={} backend={} steps={} kill_gap={:?} outage={:?} power_loss={} synced={} \
             max_value={} early_sync={} torn_block={:?} io_errors={} capacity={:?} lying_sync={}",
            self.seed,
            self.kind,
            self.steps,
            self.kill_gap,
            self.outage,
            self.power_loss_fraction,
            self.synced_fraction,
            self.max_value_len,
            self.faults.early_sync_probability,
            self.faults.torn_write_block,
            self.faults.io_error_probability,
            self.faults.capacity_bytes,
            self.lying_sync
        )
    }
}

/// What one run did and found.
#[derive(Clone, Debug)]
pub struct CrashReport {
    /// The configuration.
    pub config: CrashConfig,
    /// Power losses injected.
    pub power_losses: u64,
    /// Process restarts injected.
    pub restarts: u64,
    /// Counters from the model.
    pub counts: CrashCounts,
    /// Property violations (empty on a passing run).
    pub violations: Vec<String>,
    /// The trace: the configuration line, then one line per event.
    pub trace: Vec<String>,
    /// FNV-1a hash of the trace lines.
    pub trace_hash: u64,
}

/// FNV-1a over the lines (each followed by `\n`).
#[must_use]
pub fn trace_hash(lines: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in lines {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Runs one simulation of `config`.
///
/// # Errors
///
/// turmoil's error if the simulation itself fails (a panic in a host stops it).
pub fn run(config: &CrashConfig) -> Result<CrashReport, String> {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(config.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_millis(config.steps * 4 + 10_000));
    config.faults.apply_to_turmoil(&mut builder);
    let mut sim = builder.build();
    let disk = SimDisk::new(SimDiskOptions {
        faults: config.faults.clone(),
        lying_sync: config.lying_sync,
        ..SimDiskOptions::default()
    });
    let model = Arc::new(Mutex::new(Model::default()));
    lock(&model).trace(config.describe());
    {
        let (config, disk, model) = (config.clone(), disk.clone(), Arc::clone(&model));
        sim.host("node", move || {
            let (config, disk, model) = (config.clone(), disk.clone(), Arc::clone(&model));
            async move {
                node::incarnation(config, disk, model).await;
                Ok(())
            }
        });
    }
    let mut rng = SimRng::derive(config.seed, 0x4B_11);
    let (mut power_losses, mut restarts) = (0u64, 0u64);
    let mut next_kill = rng.range_inclusive(config.kill_gap.0, config.kill_gap.1);
    let mut down_until: Option<u64> = None;
    let mut outcome = Ok(());
    for step in 0..config.steps {
        if let Err(e) = sim.step() {
            outcome = Err(format!("simulation stopped at step {step}: {e}"));
            break;
        }
        if down_until == Some(step) {
            sim.bounce("node");
            down_until = None;
            lock(&model).trace(format!("step {step}: bounce after power loss"));
        } else if down_until.is_none() && step >= next_kill {
            if rng.chance(config.power_loss_fraction) {
                crash_host(&mut sim, "node", &disk);
                power_losses += 1;
                let outage = rng.range_inclusive(config.outage.0, config.outage.1);
                down_until = Some(step + outage);
                lock(&model).trace(format!("step {step}: power loss, down {outage} steps"));
            } else {
                restart_host(&mut sim, "node", &disk);
                restarts += 1;
                lock(&model).trace(format!("step {step}: process restart"));
            }
            next_kill = step + rng.range_inclusive(config.kill_gap.0, config.kill_gap.1);
        }
    }
    // A final power loss and recovery, so the last stretch of commits is checked too.
    if outcome.is_ok() {
        crash_host(&mut sim, "node", &disk);
        power_losses += 1;
        sim.bounce("node");
        lock(&model).trace("final power loss".to_owned());
        let before = lock(&model).counts.recoveries_checked;
        for _ in 0..50 {
            if let Err(e) = sim.step() {
                outcome = Err(format!("simulation stopped in the final recovery: {e}"));
                break;
            }
            if lock(&model).counts.recoveries_checked > before {
                break;
            }
        }
    }
    // Nothing may touch the simulated disk once the Sim is dropped.
    disk.mark_dead();
    drop(sim);
    outcome?;
    let m = std::mem::take(&mut *lock(&model));
    let hash = trace_hash(&m.trace);
    Ok(CrashReport {
        config: config.clone(),
        power_losses,
        restarts,
        counts: m.counts,
        violations: m.violations,
        trace: m.trace,
        trace_hash: hash,
    })
}

/// Two runs of one configuration whose traces differ.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// The configuration.
    pub config: CrashConfig,
    /// Hashes of the two runs.
    pub hashes: (u64, u64),
    /// Index of the first differing line.
    pub line: usize,
    /// That line in each run (`None` past the end).
    pub lines: (Option<String>, Option<String>),
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "non-deterministic replay of {}: hashes {:016x} vs {:016x}; first divergent line {}:\n  run 1: {:?}\n  run 2: {:?}",
            self.config.describe(),
            self.hashes.0,
            self.hashes.1,
            self.line,
            self.lines.0,
            self.lines.1
        )
    }
}

/// Compares the traces of two runs of `config`: `Ok` when identical, else the first
/// divergent line.
///
/// # Errors
///
/// The [`Divergence`] when the hashes or the lines differ.
pub fn compare_traces(
    config: &CrashConfig,
    first: &[String],
    second: &[String],
) -> Result<(), Box<Divergence>> {
    let hashes = (trace_hash(first), trace_hash(second));
    if hashes.0 == hashes.1 && first == second {
        return Ok(());
    }
    let line = first
        .iter()
        .zip(second)
        .position(|(a, b)| a != b)
        .unwrap_or(first.len().min(second.len()));
    Err(Box::new(Divergence {
        config: config.clone(),
        hashes,
        line,
        lines: (first.get(line).cloned(), second.get(line).cloned()),
    }))
}

/// Runs `config` twice in this process and compares the traces.
///
/// # Errors
///
/// A simulation failure, or the [`Divergence`] (rendered) if the traces differ.
pub fn run_twice(config: &CrashConfig) -> Result<CrashReport, String> {
    let first = run(config)?;
    let second = run(config)?;
    compare_traces(config, &first.trace, &second.trace).map_err(|d| d.to_string())?;
    Ok(first)
}

/// A short human summary of a report.
#[must_use]
pub fn summary(r: &CrashReport) -> String {
    let c = &r.counts;
    let mut s = String::new();
    let _ = write!(
        s,
        "seed {} {}: power losses {}, restarts {}, recoveries {}, commits acked {} ({} synced), \
         durable commits checked {}, buffered lost {}, unknown {}, seq values {}, live reads {}, \
         open I/O failures {}, storage errors {}, violations {}, trace {:016x} ({} lines)",
        r.config.seed,
        r.config.kind,
        r.power_losses,
        r.restarts,
        c.recoveries_checked,
        c.commits_acked,
        c.synced_acked,
        c.durable_commits_checked,
        c.buffered_commits_lost,
        c.unknown_outcomes,
        c.sequence_values,
        c.live_reads_checked,
        c.open_io_failures,
        c.storage_errors,
        r.violations.len(),
        r.trace_hash,
        r.trace.len()
    );
    s
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn compare_traces_names_the_first_divergent_line() {
        let config = CrashConfig::from_seed(3, SimBackendKind::Memory);
        let a: Vec<String> = ["cfg", "t=1 commit #1", "t=2 commit #2"]
            .map(String::from)
            .to_vec();
        let mut b = a.clone();
        assert!(compare_traces(&config, &a, &b).is_ok());
        b[2] = "t=3 commit #2".to_owned();
        let d = compare_traces(&config, &a, &b).expect_err("traces differ");
        assert_eq!(d.line, 2);
        assert_eq!(d.lines.1.as_deref(), Some("t=3 commit #2"));
        assert_ne!(d.hashes.0, d.hashes.1);
        assert!(d.to_string().contains("first divergent line 2"));
        // A trace that is a strict prefix of the other diverges where it ends.
        let d = compare_traces(&config, &a[..2], &a).expect_err("lengths differ");
        assert_eq!((d.line, d.lines.0.clone()), (2, None));
    }

    #[test]
    fn configuration_is_a_function_of_the_seed() {
        let a = CrashConfig::from_seed(11, SimBackendKind::Redb);
        assert_eq!(a, CrashConfig::from_seed(11, SimBackendKind::Redb));
        assert!(a.faults.torn_write_block.is_some() && a.faults.early_sync_probability > 0.0);
        let differs = (12..40).any(|s| {
            let b = CrashConfig::from_seed(s, SimBackendKind::Redb);
            b.faults != a.faults || b.synced_fraction != a.synced_fraction
        });
        assert!(differs);
    }
}
