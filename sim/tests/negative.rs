//! Negative controls: each planted bug must be caught by the cluster simulator within a
//! bounded number of seeds. A simulator that cannot fail is worthless.
//!
//! Each test runs seeds 0, 1, 2, ... with the bug planted until one run reports a violation,
//! and asserts that this happens within the bound. It prints which seed and which checker
//! caught it. The same seeds pass without the bug (`cluster.rs`, `determinism.rs`).

#![allow(clippy::expect_used)]

use zcore_sim::harness::{Controls, RunOptions, SimConfig, run_seed};

/// Runs seeds with `controls` (configuration adjusted by `tweak`) until a violation; returns
/// (seed, checkers that fired) or `None` after `max_seeds`.
fn first_caught(
    controls: Controls,
    max_seeds: u64,
    tweak: impl Fn(&mut SimConfig),
) -> Option<(u64, Vec<String>)> {
    for seed in 0..max_seeds {
        let mut config = SimConfig::from_seed(seed);
        tweak(&mut config);
        let report = run_seed(
            seed,
            &RunOptions {
                keep_trace: false,
                controls,
                config: Some(config),
            },
        );
        println!(
            "seed {seed}: {} violations, sim {} ms, ops {:?}, faults {:?}",
            report.violations.len(),
            report.sim_ms,
            report.ops,
            report.faults
        );
        if !report.violations.is_empty() {
            for v in &report.violations {
                println!("  caught by {}: {}", v.checker, v.message);
            }
            let checkers = report
                .violations
                .iter()
                .map(|v| v.checker.clone())
                .collect();
            return Some((seed, checkers));
        }
    }
    None
}

#[test]
fn lying_sync_is_caught() {
    let controls = Controls {
        lying_sync: true,
        ..Controls::default()
    };
    let caught = first_caught(controls, 8, |_| {});
    let (seed, checkers) = caught.expect("a sync that does not sync was not caught in 8 seeds");
    println!("lying sync caught at seed {seed} by {checkers:?}");
}

#[test]
fn vote_not_persisted_is_caught() {
    let controls = Controls {
        lose_votes: true,
        ..Controls::default()
    };
    // Power losses are what lose an unsynced vote: make crashes frequent.
    let caught = first_caught(controls, 30, |c| {
        c.faults.crash = c.faults.crash.max(4);
        c.faults.isolate = c.faults.isolate.max(2);
    });
    let (seed, checkers) = caught.expect("a vote that is not persisted was not caught in 30 seeds");
    println!("vote not persisted caught at seed {seed} by {checkers:?}");
}

#[test]
fn conflict_detection_off_is_caught() {
    let controls = Controls {
        no_conflict_detection: true,
        ..Controls::default()
    };
    // Read-modify-write transactions are what conflict detection protects.
    let caught = first_caught(controls, 10, |c| {
        c.mix.bank = c.mix.bank.max(2);
        c.mix.list_append = c.mix.list_append.max(2);
    });
    let (seed, checkers) =
        caught.expect("commits without conflict detection were not caught in 10 seeds");
    println!("conflict detection off caught at seed {seed} by {checkers:?}");
}
