//! The model kept outside the simulated host: every transaction the workload started, which
//! ones were acknowledged, which must be durable, and the check after each recovery.
//!
//! Property checked (durability + atomicity): after any recovery, the engine's state equals
//! the state after some prefix of the commit sequence, and that prefix contains every commit
//! acknowledged as durable (a synced commit, or any commit followed by a successful sync). A
//! transaction is therefore either wholly present or wholly absent, and never present while an
//! earlier one is missing.

use std::collections::BTreeMap;

/// `(collection, key)` → value.
pub(crate) type State = BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// One write of a transaction (`None` deletes).
pub(crate) type Write = (String, Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Started, no answer yet (the node may crash now).
    InFlight,
    /// Commit returned `Ok`.
    Acked,
    /// Commit returned an error: it may or may not have been applied.
    Unknown,
}

#[derive(Debug, Clone)]
pub(crate) struct Commit {
    pub(crate) id: u64,
    pub(crate) writes: Vec<Write>,
    pub(crate) outcome: Outcome,
}

fn apply(state: &mut State, writes: &[Write]) {
    for (collection, key, value) in writes {
        let slot = (collection.clone(), key.clone());
        match value {
            Some(v) => {
                state.insert(slot, v.clone());
            }
            None => {
                state.remove(&slot);
            }
        }
    }
}

/// A value for messages: its first 16 bytes.
fn short(v: &[u8]) -> String {
    let head = String::from_utf8_lossy(&v[..v.len().min(16)]).into_owned();
    if v.len() > 16 {
        format!("{head}… ({} bytes)", v.len())
    } else {
        head
    }
}

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashCounts {
    /// Commits acknowledged (`Ok`).
    pub commits_acked: u64,
    /// Of those, acknowledged with `Durability::Synced`.
    pub synced_acked: u64,
    /// Recoveries checked (engine opened and its state compared with the model).
    pub recoveries_checked: u64,
    /// Commits that had to be present at a checked recovery (acknowledged durable).
    pub durable_commits_checked: u64,
    /// Acknowledged buffered commits a recovery legitimately lost (allowed by the contract).
    pub buffered_commits_lost: u64,
    /// Commits left with an unknown outcome by a storage error.
    pub unknown_outcomes: u64,
    /// Sequence values handed out (and checked for strict growth across restarts).
    pub sequence_values: u64,
    /// Reads that compared the live engine with the model.
    pub live_reads_checked: u64,
    /// Opens that failed with an (injected) I/O error and were retried after a restart.
    pub open_io_failures: u64,
    /// Workload operations that failed with a storage error (the incarnation then stops).
    pub storage_errors: u64,
}

/// The model of one node's committed history.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// State as of the last checked recovery.
    base: State,
    /// Commits since then, in order.
    commits: Vec<Commit>,
    /// The first `durable` commits must survive any crash.
    durable: usize,
    next_id: u64,
    /// Largest sequence value handed out so far.
    pub(crate) seq_max: u64,
    pub(crate) counts: CrashCounts,
    pub(crate) violations: Vec<String>,
    pub(crate) trace: Vec<String>,
    /// Consecutive failed opens (I/O errors).
    pub(crate) failed_opens: u32,
}

impl Model {
    pub(crate) fn trace(&mut self, line: String) {
        self.trace.push(line);
    }

    pub(crate) fn violation(&mut self, line: String) {
        self.trace.push(format!("VIOLATION {line}"));
        self.violations.push(line);
    }

    /// The state the live engine must show now: every commit started so far applied
    /// (the workload is sequential; an in-flight commit is not visible yet, an unknown one may
    /// be, so callers check only when none is pending).
    pub(crate) fn current(&self) -> State {
        let mut state = self.base.clone();
        for c in &self.commits {
            apply(&mut state, &c.writes);
        }
        state
    }

    /// Whether every commit has an answer (so `current` is exactly what the engine shows).
    pub(crate) fn settled(&self) -> bool {
        self.commits.iter().all(|c| c.outcome == Outcome::Acked)
    }

    pub(crate) fn begin(&mut self, writes: Vec<Write>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.commits.push(Commit {
            id,
            writes,
            outcome: Outcome::InFlight,
        });
        id
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.commits.iter().rposition(|c| c.id == id)
    }

    pub(crate) fn acked(&mut self, id: u64, synced: bool) {
        if let Some(i) = self.position(id) {
            self.commits[i].outcome = Outcome::Acked;
            self.counts.commits_acked += 1;
            if synced {
                self.counts.synced_acked += 1;
                self.durable = self.durable.max(i + 1);
            }
        }
    }

    pub(crate) fn unknown(&mut self, id: u64) {
        if let Some(i) = self.position(id) {
            self.commits[i].outcome = Outcome::Unknown;
            self.counts.unknown_outcomes += 1;
        }
    }

    /// A sync returned `Ok`: every commit acknowledged before it is durable.
    pub(crate) fn synced(&mut self) {
        let acked = self
            .commits
            .iter()
            .rposition(|c| c.outcome == Outcome::Acked)
            .map_or(0, |i| i + 1);
        self.durable = self.durable.max(acked);
    }

    /// Checks a recovered state against the model and re-bases the model on it.
    /// Returns how many commits since the last recovery the recovered state contains.
    pub(crate) fn recover(&mut self, recovered: &State, label: &str) -> Option<usize> {
        self.counts.recoveries_checked += 1;
        self.counts.durable_commits_checked += self.durable as u64;
        let mut state = self.base.clone();
        let mut matched = None;
        for k in 0..=self.commits.len() {
            if k > 0 {
                apply(&mut state, &self.commits[k - 1].writes);
            }
            if k >= self.durable && state == *recovered {
                matched = Some(k);
                break;
            }
        }
        match matched {
            Some(k) => {
                let lost_acked = self.commits[k..]
                    .iter()
                    .filter(|c| c.outcome == Outcome::Acked)
                    .count();
                self.counts.buffered_commits_lost += lost_acked as u64;
                self.trace(format!(
                    "{label}: recovered prefix {k}/{} (durable {}, lost buffered {lost_acked})",
                    self.commits.len(),
                    self.durable
                ));
                self.base = recovered.clone();
                self.commits.clear();
                self.durable = 0;
                Some(k)
            }
            None => {
                let durable_state = {
                    let mut s = self.base.clone();
                    for c in &self.commits[..self.durable] {
                        apply(&mut s, &c.writes);
                    }
                    s
                };
                let missing: Vec<String> = durable_state
                    .iter()
                    .filter(|(slot, v)| recovered.get(*slot) != Some(*v))
                    .take(4)
                    .map(|((c, k), v)| {
                        let found = recovered.get(&(c.clone(), k.clone()));
                        format!(
                            "{c}/{} = {} (recovered {})",
                            String::from_utf8_lossy(k),
                            short(v),
                            found.map_or_else(|| "nothing".to_owned(), |x| short(x))
                        )
                    })
                    .collect();
                self.violation(format!(
                    "{label}: recovered state is not a prefix of the commit sequence containing \
                     all {} durable commits (of {} since the last recovery); first differences \
                     from the durable prefix: {missing:?}",
                    self.durable,
                    self.commits.len()
                ));
                // Continue from what is there, so later checks stay meaningful.
                self.base = recovered.clone();
                self.commits.clear();
                self.durable = 0;
                None
            }
        }
    }
}
