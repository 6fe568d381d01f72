//! Single-node crash-recovery simulation (issue 7, item 8): the engine on both simulated
//! backends under seeded power losses and restarts, torn writes and early syncs; each seed runs
//! twice and the traces must be identical. A negative control with a lying `sync` must be
//! caught within a bounded number of seeds.
//!
//! `ZCORE_CRASH_SEEDS` (default 40, ~30 s for both backends on 2 busy cores) sets the number of seeds per backend; `ZCORE_CRASH_SEED0`
//! the first seed.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use zcore_sim::crash::{CrashConfig, CrashCounts, run, run_twice, summary};
use zcore_sim::storage::SimBackendKind;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sweep(kind: SimBackendKind) {
    let seeds = env_u64("ZCORE_CRASH_SEEDS", 40);
    let first = env_u64("ZCORE_CRASH_SEED0", 1);
    let mut total = CrashCounts::default();
    let (mut power_losses, mut restarts, mut pairs) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for seed in first..first + seeds {
        let config = CrashConfig::from_seed(seed, kind);
        match run_twice(&config) {
            Ok(report) => {
                pairs += 1;
                println!("{}", summary(&report));
                if !report.violations.is_empty() {
                    failures.push(format!(
                        "seed {seed} ({}): {:?}\n  reproduce: ZCORE_CRASH_SEED0={seed} ZCORE_CRASH_SEEDS=1 cargo test -p zcore-sim --test crash_recovery {kind}",
                        config.describe(),
                        report.violations
                    ));
                }
                power_losses += report.power_losses;
                restarts += report.restarts;
                let c = report.counts;
                total.commits_acked += c.commits_acked;
                total.synced_acked += c.synced_acked;
                total.recoveries_checked += c.recoveries_checked;
                total.durable_commits_checked += c.durable_commits_checked;
                total.buffered_commits_lost += c.buffered_commits_lost;
                total.unknown_outcomes += c.unknown_outcomes;
                total.sequence_values += c.sequence_values;
                total.live_reads_checked += c.live_reads_checked;
                total.open_io_failures += c.open_io_failures;
                total.storage_errors += c.storage_errors;
            }
            Err(e) => failures.push(format!("seed {seed}: {e}")),
        }
    }
    println!(
        "{kind}: seeds {seeds} (from {first}), identical replays {pairs}/{seeds}, power losses {power_losses}, \
         restarts {restarts}, recoveries checked {}, commits acked {} ({} synced), durable commits \
         checked {}, buffered commits lost (allowed) {}, unknown outcomes {}, sequence values {}, \
         live reads {}, open I/O failures {}, violations {}",
        total.recoveries_checked,
        total.commits_acked,
        total.synced_acked,
        total.durable_commits_checked,
        total.buffered_commits_lost,
        total.unknown_outcomes,
        total.sequence_values,
        total.live_reads_checked,
        total.open_io_failures,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The run must have exercised what it claims to check.
    assert!(
        power_losses >= seeds,
        "too few power losses: {power_losses}"
    );
    assert!(
        total.recoveries_checked >= seeds,
        "too few recoveries checked"
    );
    assert!(
        total.durable_commits_checked > 0,
        "no durable commit was ever checked"
    );
    assert!(total.synced_acked > 0 && total.commits_acked > total.synced_acked);
}

#[test]
fn redb_crash_recovery() {
    sweep(SimBackendKind::Redb);
}

#[test]
fn memory_crash_recovery() {
    sweep(SimBackendKind::Memory);
}

/// Negative control: with a `sync` that does not sync, acknowledged durable commits get lost
/// and the checker must report lost commits within a bounded number of seeds. Torn writes are
/// off here: with them redb usually cannot even reopen the file ("all roots are corrupted"),
/// which is caught too, but this control is about the lost-commit check.
fn lying_sync_is_caught(kind: SimBackendKind) {
    const MAX_SEEDS: u64 = 10;
    for seed in 1..=MAX_SEEDS {
        let mut config = CrashConfig::from_seed(seed, kind);
        config.lying_sync = true;
        // Keep the control about sync alone.
        config.faults.io_error_probability = 0.0;
        config.faults.capacity_bytes = None;
        config.faults.torn_write_block = None;
        let report = run(&config).expect("simulation runs");
        println!("lying sync: {}", summary(&report));
        let lost = report
            .violations
            .iter()
            .find(|v| v.contains("is not a prefix of the commit sequence"));
        if let Some(v) = lost {
            let v: String = v.chars().take(400).collect();
            println!("{kind}: lying sync caught at seed {seed} (of at most {MAX_SEEDS}): {v}");
            return;
        }
    }
    panic!("{kind}: a sync that does not sync lost no detected commit in {MAX_SEEDS} seeds");
}

/// The same control with torn writes on: whatever shape the damage takes (lost commits or a
/// file redb cannot reopen), the run must report a violation.
fn lying_sync_with_torn_writes_is_caught(kind: SimBackendKind) {
    const MAX_SEEDS: u64 = 10;
    for seed in 1..=MAX_SEEDS {
        let mut config = CrashConfig::from_seed(seed, kind);
        config.lying_sync = true;
        config.faults.io_error_probability = 0.0;
        config.faults.capacity_bytes = None;
        let report = run(&config).expect("simulation runs");
        if let Some(v) = report.violations.first() {
            let v: String = v.chars().take(400).collect();
            println!("{kind} (torn writes): lying sync caught at seed {seed}: {v}");
            return;
        }
    }
    panic!("{kind}: a sync that does not sync went unnoticed for {MAX_SEEDS} seeds");
}

#[test]
fn redb_lying_sync_with_torn_writes_is_caught() {
    lying_sync_with_torn_writes_is_caught(SimBackendKind::Redb);
}

#[test]
fn redb_lying_sync_is_caught() {
    lying_sync_is_caught(SimBackendKind::Redb);
}

#[test]
fn memory_lying_sync_is_caught() {
    lying_sync_is_caught(SimBackendKind::Memory);
}
