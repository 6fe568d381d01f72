//! Determinism: a seed run twice in one process must produce the same trace.

use super::run::{RunOptions, RunReport, run_seed};
use super::trace::first_divergence;

/// Both runs of a seed and whether they matched.
#[derive(Debug)]
pub struct Replay {
    /// The first run.
    pub first: RunReport,
    /// The second run.
    pub second: RunReport,
}

impl Replay {
    /// Whether the trace hashes are equal.
    #[must_use]
    pub fn identical(&self) -> bool {
        self.first.hash() == self.second.hash()
    }

    /// The first divergent line, if the runs differ and lines were kept.
    #[must_use]
    pub fn divergence(&self) -> Option<String> {
        if self.identical() {
            return None;
        }
        match first_divergence(self.first.trace.lines(), self.second.trace.lines()) {
            Some((line, a, b)) => Some(format!(
                "first divergence at trace line {line}:\n  run 1: {}\n  run 2: {}",
                a.unwrap_or("<end of trace>"),
                b.unwrap_or("<end of trace>")
            )),
            None => Some(format!(
                "trace hashes differ ({:016x} vs {:016x}) but no kept line differs (lines were not kept)",
                self.first.hash(),
                self.second.hash()
            )),
        }
    }
}

/// Runs `seed` twice in this process. If the hashes differ and lines were not kept, runs it
/// twice more keeping lines, to find the divergent line.
#[must_use]
pub fn run_twice(seed: u64, options: &RunOptions) -> Replay {
    let first = run_seed(seed, options);
    let second = run_seed(seed, options);
    let replay = Replay { first, second };
    if replay.identical() || options.keep_trace {
        return replay;
    }
    let keep = RunOptions {
        keep_trace: true,
        ..options.clone()
    };
    Replay {
        first: run_seed(seed, &keep),
        second: run_seed(seed, &keep),
    }
}

/// The command that reproduces a failing seed.
#[must_use]
pub fn reproduce_command(seed: u64, trace_file: &str) -> String {
    format!("zstore sim reproduce --seed {seed} --trace {trace_file}")
}
