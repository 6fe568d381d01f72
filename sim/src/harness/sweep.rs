//! Sweeps: many seeds on several threads, each thread running its own simulations one after
//! another (a simulation is single-threaded and its random streams are per thread, so
//! parallel simulations never share one).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::checks::Violation;
use super::determinism::run_twice;
use super::run::{RunOptions, RunReport, run_seed};
use super::world::OpCounts;

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Seeds `start..end`.
    pub seeds: Range<u64>,
    /// Worker threads.
    pub jobs: usize,
    /// Run every seed twice and compare the traces.
    pub twice: bool,
    /// Options of every run.
    pub run: RunOptions,
}

/// One seed's result.
#[derive(Debug)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Simulated time of one run, ms.
    pub sim_ms: u64,
    /// Wall time of all runs of this seed.
    pub wall: Duration,
    /// Trace hash (first run).
    pub hash: u64,
    /// Faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Operations.
    pub ops: OpCounts,
    /// Raft snapshots (built, installed), first run.
    pub snapshots: (u64, u64),
    /// Violations (first run).
    pub violations: Vec<Violation>,
    /// `Some(false)` if the replay differed.
    pub identical: Option<bool>,
    /// The first divergent trace line, if the replay differed.
    pub divergence: Option<String>,
    /// The failing run's report (kept only for failures, for trace and history files).
    pub report: Option<Box<RunReport>>,
}

impl SeedResult {
    /// Whether the seed passed (no violation, identical replay if checked).
    #[must_use]
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.identical != Some(false)
    }
}

/// Totals of a sweep.
#[derive(Debug, Default)]
pub struct SweepSummary {
    /// Seeds run.
    pub seeds: u64,
    /// Simulated time of all first runs, ms.
    pub sim_ms: u64,
    /// Wall time of the sweep.
    pub wall: Duration,
    /// Faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Operations.
    pub ops: OpCounts,
    /// Raft snapshots (built, installed).
    pub snapshots: (u64, u64),
    /// Seeds that built at least one snapshot, and that installed at least one.
    pub snapshot_seeds: (u64, u64),
    /// Seeds with violations.
    pub violating_seeds: u64,
    /// Violations in total.
    pub violations: u64,
    /// Seeds whose replay matched / was checked.
    pub identical: (u64, u64),
    /// Failing seeds, in seed order.
    pub failures: Vec<SeedResult>,
}

/// Runs one seed as a sweep does.
#[must_use]
pub fn run_one(seed: u64, twice: bool, options: &RunOptions) -> SeedResult {
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let (report, identical, divergence) = if twice {
        let replay = run_twice(seed, options);
        let identical = replay.identical();
        let divergence = replay.divergence();
        (replay.first, Some(identical), divergence)
    } else {
        (run_seed(seed, options), None, None)
    };
    let failed = !report.violations.is_empty() || identical == Some(false);
    SeedResult {
        seed,
        sim_ms: report.sim_ms,
        #[allow(clippy::disallowed_methods)]
        wall: started.elapsed(),
        hash: report.hash(),
        faults: report.faults.clone(),
        ops: report.ops,
        snapshots: report.snapshots,
        violations: report.violations.clone(),
        identical,
        divergence,
        report: failed.then(|| Box::new(report)),
    }
}

/// Sweeps `options.seeds` on `options.jobs` threads; `progress` is called after each seed
/// (from the worker thread).
pub fn sweep(options: &SweepOptions, progress: &(dyn Fn(&SeedResult) + Sync)) -> SweepSummary {
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let next = AtomicU64::new(options.seeds.start);
    let results = Mutex::new(Vec::new());
    let jobs = options.jobs.max(1);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= options.seeds.end {
                        return;
                    }
                    let result = run_one(seed, options.twice, &options.run);
                    progress(&result);
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(result);
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|r| r.seed);
    let mut summary = SweepSummary::default();
    for r in results {
        summary.seeds += 1;
        summary.sim_ms += r.sim_ms;
        for (k, v) in &r.faults {
            *summary.faults.entry(k).or_insert(0) += v;
        }
        summary.ops.ok += r.ops.ok;
        summary.ops.fail += r.ops.fail;
        summary.ops.info += r.ops.info;
        summary.snapshots.0 += r.snapshots.0;
        summary.snapshots.1 += r.snapshots.1;
        summary.snapshot_seeds.0 += u64::from(r.snapshots.0 > 0);
        summary.snapshot_seeds.1 += u64::from(r.snapshots.1 > 0);
        summary.violations += r.violations.len() as u64;
        if !r.violations.is_empty() {
            summary.violating_seeds += 1;
        }
        if let Some(same) = r.identical {
            summary.identical.1 += 1;
            if same {
                summary.identical.0 += 1;
            }
        }
        if !r.passed() {
            summary.failures.push(r);
        }
    }
    #[allow(clippy::disallowed_methods)]
    let wall = started.elapsed();
    summary.wall = wall;
    summary
}

impl SweepSummary {
    /// Seeds per wall second.
    #[must_use]
    pub fn seeds_per_second(&self) -> f64 {
        self.seeds as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The summary table.
    #[must_use]
    pub fn table(&self) -> String {
        let mut s = String::new();
        let row = |s: &mut String, k: &str, v: String| {
            s.push_str(&format!("  {k:<22} {v}\n"));
        };
        row(&mut s, "seeds", self.seeds.to_string());
        row(
            &mut s,
            "simulated time",
            format!(
                "{:.1} s ({:.0}x wall)",
                self.sim_ms as f64 / 1000.0,
                self.sim_ms as f64 / 1000.0 / self.wall.as_secs_f64().max(1e-9)
            ),
        );
        row(
            &mut s,
            "wall time",
            format!("{:.1} s", self.wall.as_secs_f64()),
        );
        row(&mut s, "seeds/s", format!("{:.2}", self.seeds_per_second()));
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        row(&mut s, "faults", faults.join(" "));
        row(
            &mut s,
            "operations",
            format!(
                "ok={} fail={} info={}",
                self.ops.ok, self.ops.fail, self.ops.info
            ),
        );
        row(
            &mut s,
            "raft snapshots",
            format!(
                "built={} installed={} (seeds: {} built, {} installed)",
                self.snapshots.0, self.snapshots.1, self.snapshot_seeds.0, self.snapshot_seeds.1
            ),
        );
        row(
            &mut s,
            "violations",
            format!("{} in {} seeds", self.violations, self.violating_seeds),
        );
        if self.identical.1 > 0 {
            row(
                &mut s,
                "identical replays",
                format!("{}/{}", self.identical.0, self.identical.1),
            );
        }
        s
    }
}
