//! `zstore sim`: the deterministic cluster simulator (crate `zcore-sim`, cargo feature `sim`).
//!
//! - `zstore sim run --seed N` runs one seed (printing the configuration derived from it
//!   first), optionally twice to check determinism, and writes the trace and histories.
//! - `zstore sim sweep --seeds A..B [--jobs J]` runs many seeds, each twice by default, with
//!   a progress bar and a summary table.
//! - `zstore sim reproduce --seed N --trace FILE` re-runs a seed and compares its trace with
//!   the stored one, printing the first divergent line.
//!
//! Every failure prints the command that reproduces it. A simulation runs on its own thread
//! (turmoil builds its own runtimes and must not run inside zstore's).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use zcore_sim::harness::determinism::{reproduce_command, run_twice};
use zcore_sim::harness::sweep::{SweepOptions, sweep};
use zcore_sim::harness::trace::first_divergence;
use zcore_sim::harness::{Controls, RunOptions, RunReport, run_seed};

use crate::error::CliError;

/// `zstore sim …`
#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

/// A planted bug (negative control): the simulator must report violations with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Plant {
    /// The storage's sync does not sync.
    LyingSync,
    /// Raft votes are not made durable before `save_vote` returns.
    LoseVotes,
    /// The engine's conflict detection is off.
    NoConflictDetection,
}

#[derive(Clone, Debug, Args)]
struct Common {
    /// Plant a known bug (negative control); may be repeated
    #[arg(long, value_enum)]
    plant: Vec<Plant>,
}

impl Common {
    fn options(&self, keep_trace: bool) -> RunOptions {
        let mut controls = Controls::default();
        for p in &self.plant {
            match p {
                Plant::LyingSync => controls.lying_sync = true,
                Plant::LoseVotes => controls.lose_votes = true,
                Plant::NoConflictDetection => controls.no_conflict_detection = true,
            }
        }
        RunOptions {
            keep_trace,
            controls,
            config: None,
        }
    }
}

#[derive(Clone, Debug, Subcommand)]
enum SimCommand {
    /// Run one seed: print its configuration, run it (twice with --twice), check everything
    Run {
        /// The seed
        #[arg(long)]
        seed: u64,
        /// Run twice in this process and compare the traces
        #[arg(long)]
        twice: bool,
        /// Write the trace here
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Write the register/list-append history here (Jepsen EDN if the name ends in
        /// .edn, else JSON)
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// Print the trace to stdout
        #[arg(long)]
        print_trace: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Run seeds A..B (end exclusive) on J threads, each seed twice unless --once
    Sweep {
        /// Seed range `A..B`
        #[arg(long, value_name = "A..B")]
        seeds: String,
        /// Worker threads (each runs its own simulations one after another)
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Run each seed once (no determinism check)
        #[arg(long)]
        once: bool,
        /// Write the trace and histories of failing seeds into this directory
        #[arg(long, value_name = "DIR")]
        failures: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Re-run a seed and compare its trace with a stored one
    Reproduce {
        /// The seed
        #[arg(long)]
        seed: u64,
        /// The stored trace (as written by `run --trace` or a sweep's failure directory)
        #[arg(long, value_name = "FILE")]
        trace: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, CliError> {
    let bad = || {
        CliError::usage(format!(
            "--seeds {s:?}: expected A..B with A < B, e.g. 0..1000"
        ))
    };
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if a >= b {
        return Err(bad());
    }
    Ok(a..b)
}

fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text)
        .map_err(|e| CliError::runtime(format!("cannot write {}: {e}", path.display())))
}

fn write_history(report: &RunReport, path: &Path) -> Result<(), CliError> {
    let edn = path.extension().is_some_and(|e| e == "edn");
    let text = if edn {
        report.history.to_edn()
    } else {
        report.history.to_json()
    }
    .map_err(|e| CliError::runtime(format!("exporting the history: {e}")))?;
    write_file(path, &text)
}

/// Writes trace, histories and violations of a failing run into `dir`.
fn write_failure(dir: &Path, seed: u64, report: &RunReport) -> Result<PathBuf, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::runtime(format!("cannot create {}: {e}", dir.display())))?;
    let trace = dir.join(format!("seed-{seed}.trace"));
    write_file(&trace, &report.trace.to_text())?;
    write_history(report, &dir.join(format!("seed-{seed}.history.edn")))?;
    write_history(report, &dir.join(format!("seed-{seed}.history.json")))?;
    let bank = report
        .bank
        .to_json()
        .map_err(|e| CliError::runtime(format!("exporting the bank history: {e}")))?;
    write_file(&dir.join(format!("seed-{seed}.bank.json")), &bank)?;
    Ok(trace)
}

fn describe(report: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "simulated {} ms in {:.2} s wall ({:.0}x); operations ok={} fail={} info={}; trace hash {:016x}",
        report.sim_ms,
        report.wall.as_secs_f64(),
        report.sim_ms as f64 / 1000.0 / report.wall.as_secs_f64().max(1e-9),
        report.ops.ok,
        report.ops.fail,
        report.ops.info,
        report.hash()
    );
    let faults: Vec<String> = report
        .faults
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(s, "faults: {}", faults.join(" "));
    let _ = writeln!(
        s,
        "raft snapshots: built={} installed={}",
        report.snapshots.0, report.snapshots.1
    );
    if !report.buggify.is_empty() {
        let _ = writeln!(s, "buggify fired: {:?}", report.buggify);
    }
    match report.converged_ms {
        Some(ms) => {
            let _ = writeln!(s, "converged at {ms} ms");
        }
        None => {
            let _ = writeln!(s, "did not converge");
        }
    }
    for n in &report.notes {
        let _ = writeln!(s, "note: {n}");
    }
    for v in &report.violations {
        let _ = writeln!(s, "VIOLATION {}: {}", v.checker, v.message);
    }
    s
}

/// Runs `zstore sim …` on its own thread.
///
/// # Errors
///
/// Usage errors, violations found (runtime error, exit code 1), file errors.
pub fn run(args: &SimArgs) -> Result<(), CliError> {
    let command = args.command.clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || run_command(command))
            .join()
            .unwrap_or_else(|_| Err(CliError::runtime("the simulation thread panicked")))
    })
}

fn run_command(command: SimCommand) -> Result<(), CliError> {
    match command {
        SimCommand::Run {
            seed,
            twice,
            trace,
            history,
            print_trace,
            common,
        } => {
            // Keep the trace lines: a failure writes them to the file its reproduce command names.
            let options = common.options(true);
            println!("{}", zcore_sim::harness::SimConfig::from_seed(seed));
            let (report, divergence) = if twice {
                let replay = run_twice(seed, &options);
                let d = replay.divergence();
                (replay.first, d)
            } else {
                (run_seed(seed, &options), None)
            };
            print!("{}", describe(&report));
            if print_trace {
                print!("{}", report.trace.to_text());
            }
            let trace_file = trace
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("seed-{seed}.trace")));
            if let Some(path) = &trace {
                write_file(path, &report.trace.to_text())?;
            }
            if let Some(path) = &history {
                write_history(&report, path)?;
            }
            if twice {
                match &divergence {
                    None => println!("replay: identical"),
                    Some(d) => println!("replay: DIFFERENT\n{d}"),
                }
            }
            if report.passed() && divergence.is_none() {
                return Ok(());
            }
            if trace.is_none() {
                write_file(&trace_file, &report.trace.to_text())?;
            }
            Err(CliError::runtime(format!(
                "seed {seed} failed; reproduce with: {}",
                reproduce_command(seed, &trace_file.display().to_string())
            )))
        }
        SimCommand::Sweep {
            seeds,
            jobs,
            once,
            failures,
            common,
        } => {
            let range = parse_range(&seeds)?;
            let options = SweepOptions {
                seeds: range.clone(),
                jobs: jobs.max(1),
                twice: !once,
                run: common.options(false),
            };
            let bar = ProgressBar::new(range.end - range.start);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} seeds {per_sec} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            let failed = Mutex::new(0u64);
            let summary = sweep(&options, &|r| {
                if !r.passed() {
                    let mut f = failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *f += 1;
                    bar.println(format!(
                        "seed {} FAILED: {}",
                        r.seed,
                        r.violations
                            .first()
                            .map(|v| format!("{}: {}", v.checker, v.message))
                            .or_else(|| r.divergence.clone())
                            .unwrap_or_default()
                    ));
                    bar.set_message(format!("{} failed", *f));
                }
                bar.inc(1);
            });
            bar.finish();
            println!("{}", summary.table());
            if summary.failures.is_empty() {
                return Ok(());
            }
            let dir = failures.unwrap_or_else(|| PathBuf::from("sim-failures"));
            for f in &summary.failures {
                // Re-run keeping the trace lines, for the files.
                let report = run_seed(
                    f.seed,
                    &RunOptions {
                        keep_trace: true,
                        ..options.run.clone()
                    },
                );
                let trace_path = write_failure(&dir, f.seed, &report)?;
                println!(
                    "seed {}: reproduce with: {}",
                    f.seed,
                    reproduce_command(f.seed, &trace_path.display().to_string())
                );
            }
            Err(CliError::runtime(format!(
                "{} of {} seeds failed",
                summary.failures.len(),
                summary.seeds
            )))
        }
        SimCommand::Reproduce {
            seed,
            trace,
            common,
        } => {
            let stored = std::fs::read_to_string(&trace)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", trace.display())))?;
            let stored: Vec<String> = stored.lines().map(str::to_owned).collect();
            println!("{}", zcore_sim::harness::SimConfig::from_seed(seed));
            let report = run_seed(seed, &common.options(true));
            print!("{}", describe(&report));
            match first_divergence(&stored, report.trace.lines()) {
                None => println!(
                    "trace: identical to {} ({} lines)",
                    trace.display(),
                    stored.len()
                ),
                Some((line, a, b)) => {
                    println!(
                        "trace: DIFFERENT from {} at line {line}:\n  stored: {}\n  now:    {}",
                        trace.display(),
                        a.unwrap_or("<end of trace>"),
                        b.unwrap_or("<end of trace>")
                    );
                    return Err(CliError::runtime(format!(
                        "seed {seed} no longer reproduces {}",
                        trace.display()
                    )));
                }
            }
            if report.passed() {
                Ok(())
            } else {
                Err(CliError::runtime(format!(
                    "seed {seed} reproduced its violations"
                )))
            }
        }
    }
}
