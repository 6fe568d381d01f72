//! The CI sweep: seeds 0..N (N = `ZCORE_SIM_SWEEP`, default 200), safety and liveness phases,
//! each seed run twice in this process on `ZCORE_SIM_JOBS` threads (default: the machine's
//! parallelism). Every run must pass every checker and both runs of a seed must produce the
//! same trace, and Raft snapshots must be built and installed on enough seeds. Prints the
//! summary table and, for any failure, the reproduce command.

use zcore_sim::harness::RunOptions;
use zcore_sim::harness::determinism::reproduce_command;
use zcore_sim::harness::sweep::{SweepOptions, sweep};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn sweep_passes_with_identical_replays() {
    let seeds = env("ZCORE_SIM_SWEEP", 200);
    let start = env("ZCORE_SIM_SWEEP_START", 0);
    let jobs = env(
        "ZCORE_SIM_JOBS",
        std::thread::available_parallelism().map_or(2, |n| n.get() as u64),
    );
    let options = SweepOptions {
        seeds: start..start + seeds,
        jobs: jobs as usize,
        twice: true,
        run: RunOptions::default(),
    };
    let summary = sweep(&options, &|r| {
        if !r.passed() {
            println!(
                "seed {} FAILED: {:?} {}",
                r.seed,
                r.violations,
                r.divergence.clone().unwrap_or_default()
            );
        }
    });
    println!("{}", summary.table());
    for f in &summary.failures {
        println!(
            "seed {}: {}",
            f.seed,
            reproduce_command(f.seed, &format!("seed-{}.trace", f.seed))
        );
    }
    assert_eq!(summary.seeds, seeds);
    assert_eq!(summary.identical, (seeds, seeds), "replays differed");
    assert_eq!(summary.violations, 0, "violations found");
    assert!(summary.ops.ok > seeds, "too few successful operations");
    let crashes = summary.faults.get("crash").copied().unwrap_or(0)
        + summary.faults.get("crash_leader").copied().unwrap_or(0);
    assert!(
        crashes > seeds / 2,
        "too few crashes were injected: {crashes}"
    );
    // Raft snapshots happen: built (and the log purged) on many seeds, and installed from a
    // leader on some, so the checkers also judged nodes brought up to date by a snapshot.
    let (built, installed) = summary.snapshot_seeds;
    assert!(
        built > seeds / 4,
        "too few seeds built a snapshot: {built} of {seeds}"
    );
    assert!(
        installed >= seeds / 20,
        "too few seeds installed a snapshot: {installed} of {seeds}"
    );
    let disk = summary.faults.get("disk_eio").copied().unwrap_or(0)
        + summary.faults.get("disk_full").copied().unwrap_or(0);
    assert!(
        disk > seeds / 4,
        "too few disk-fault episodes were injected: {disk}"
    );
}
