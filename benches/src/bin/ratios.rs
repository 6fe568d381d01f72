//! Prints the adapter/raw ratio per workload and backend from criterion's output.
//!
//! ```text
//! cargo bench -p zcore-benches --bench backend_adapter
//! cargo run -p zcore-benches --release --bin ratios [CRITERION_DIR]
//! ```
//!
//! `CRITERION_DIR` defaults to `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
//! workspace's `target/criterion`. The ratio is `raw_time / adapter_time`, i.e. the adapter's
//! throughput as a fraction of the raw engine's; the issue's goal is ≥ 0.9 everywhere.

use std::path::PathBuf;
use std::process::ExitCode;

use zcore_benches::report::{GOAL, load, render, rows};

fn criterion_dir() -> PathBuf {
    if let Some(arg) = std::env::args_os().nth(1) {
        return PathBuf::from(arg);
    }
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("criterion")
}

fn main() -> ExitCode {
    let dir = criterion_dir();
    let rows = rows(&load(&dir));
    if rows.is_empty() {
        eprintln!(
            "no raw/adapter pairs under {} — run `cargo bench -p zcore-benches` first",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    println!("criterion results in {}\n", dir.display());
    print!("{}", render(&rows));
    let misses = rows.iter().filter(|r| r.ratio() < GOAL).count();
    println!(
        "\nratio = raw median time / adapter median time (adapter throughput as a fraction of raw); \
         goal ≥ {GOAL}: {} of {} rows meet it",
        rows.len() - misses,
        rows.len()
    );
    ExitCode::SUCCESS
}
