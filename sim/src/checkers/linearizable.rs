//! Per-key register linearizability: every key's reads and writes (`Op::Read` / `Op::Write`) can
//! be ordered into a sequential register history consistent with real time.
//!
//! The search is Wing–Gong–Lowe with memoization of (linearized set, register state), as in Horn
//! and Kroening and Porcupine, applied to each key separately (P-compositionality:
//! linearizability is local, so a history is linearizable iff each key's sub-history is).
//!
//! Outcomes and how they are treated:
//! - `Ok` ops must take effect between their invocation and completion.
//! - `Fail` ops did not happen and are dropped.
//! - `Info` (or never-completed) writes may or may not have happened: they get a response "at
//!   the end of time" (Porcupine's convention), so they may be linearized anywhere after their
//!   invocation, or after everything (which is the same as never). An `Info` write whose value no
//!   read returned is dropped up front: placing it last is always possible.
//! - `Info` reads carry no value and are dropped.
//!
//! Real-time order is the order of events in the history (event indices), so equal simulated
//! timestamps never create false concurrency or false precedence.
//!
//! The search is bounded by [`LinearizabilityConfig::max_steps_per_key`] and by the memory of
//! its memo table ([`LinearizabilityConfig::max_cache_bytes_per_key`]); a key whose search
//! runs out is reported in [`LinearizabilityReport::unknown`] and makes the verdict
//! [`Verdict::Unknown`] — never `Valid`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{CheckError, Verdict};
use crate::history::{EventKind, History, Op};

/// Search limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearizabilityConfig {
    /// Search steps (list moves, linearizations and backtracks) allowed per key before the key is
    /// reported as unknown. Memoization makes typical simulator histories take about two steps
    /// per operation.
    pub max_steps_per_key: u64,
    /// How many operations of a violating key to copy into the report (those around the
    /// operation that could not be linearized).
    pub max_context_ops: usize,
    /// Memory allowed for one key's memo table (linearized-set bitmaps), in bytes; a key that
    /// needs more is reported as unknown.
    pub max_cache_bytes_per_key: usize,
}

impl Default for LinearizabilityConfig {
    fn default() -> Self {
        LinearizabilityConfig {
            max_steps_per_key: 5_000_000,
            max_context_ops: 40,
            max_cache_bytes_per_key: 512 << 20,
        }
    }
}

/// A register operation as the checker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegisterOp {
    /// A read that returned this value (`None`: never written).
    Read(Option<u64>),
    /// A write of this value.
    Write(u64),
}

/// One register operation of a key, with where it is in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegisterOpRecord {
    /// Index of the invoke event.
    pub invoke_index: u64,
    /// Index of the completion event (`None`: never completed).
    pub completion_index: Option<u64>,
    /// `Ok` or `Info` (open ops count as `Info`).
    pub outcome: EventKind,
    /// The client process.
    pub process: u64,
    /// The operation.
    pub op: RegisterOp,
    /// Simulated invocation time (ns).
    pub invoke_nanos: u64,
    /// Simulated completion time (ns), if completed.
    pub completion_nanos: Option<u64>,
}

/// A key whose history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearizabilityViolation {
    /// The register.
    pub key: u64,
    /// What went wrong, in words.
    pub reason: String,
    /// The operation that could not be linearized after the longest prefix found.
    pub blocked: Option<RegisterOpRecord>,
    /// The longest linearized prefix found, as invoke indices, in linearization order (the last
    /// few entries are the relevant ones).
    pub longest_prefix: Vec<u64>,
    /// The register value after that prefix.
    pub state_after_prefix: Option<u64>,
    /// Operations of the key around the blocked one (overlapping it, or just linearized).
    pub context: Vec<RegisterOpRecord>,
    /// Number of this key's operations that were checked.
    pub key_ops: usize,
}

/// A key whose search exceeded the budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownKey {
    /// The register.
    pub key: u64,
    /// Operations of the key that were searched.
    pub key_ops: usize,
    /// Steps spent before giving up.
    pub steps: u64,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearizabilityReport {
    /// `Valid` only if every key was decided linearizable.
    pub verdict: Verdict,
    /// Keys with at least one register operation.
    pub keys_checked: usize,
    /// Register operations searched (after dropping failed ops, info reads and unread info
    /// writes).
    pub ops_checked: usize,
    /// Total search steps over all keys.
    pub steps: u64,
    /// The largest per-key step count.
    pub max_key_steps: u64,
    /// Non-linearizable keys.
    pub violations: Vec<LinearizabilityViolation>,
    /// Keys the search gave up on.
    pub unknown: Vec<UnknownKey>,
}

/// Checks every key's register operations in `history` for linearizability.
///
/// Errors only if the history is malformed ([`History::validate`]). Transactions (`Op::Txn`) are
/// ignored here (see [`super::isolation`]).
pub fn check(
    history: &History,
    config: &LinearizabilityConfig,
) -> Result<LinearizabilityReport, CheckError> {
    history.validate()?;
    let mut per_key: BTreeMap<u64, Vec<RegisterOpRecord>> = BTreeMap::new();
    for op in history.operations() {
        let outcome = op.outcome();
        if outcome == EventKind::Fail {
            continue;
        }
        let (key, rop) = match *op.op() {
            Op::Read { key, value } => {
                if outcome != EventKind::Ok {
                    continue; // an info read tells nothing
                }
                (key, RegisterOp::Read(value))
            }
            Op::Write { key, value } => (key, RegisterOp::Write(value)),
            Op::Txn(_) => continue,
        };
        per_key.entry(key).or_default().push(RegisterOpRecord {
            invoke_index: op.invoke.index,
            completion_index: op.completion.map(|c| c.index),
            outcome,
            process: op.invoke.process,
            op: rop,
            invoke_nanos: op.invoke.time_nanos,
            completion_nanos: op.completion.map(|c| c.time_nanos),
        });
    }

    let mut report = LinearizabilityReport {
        verdict: Verdict::Valid,
        keys_checked: per_key.len(),
        ops_checked: 0,
        steps: 0,
        max_key_steps: 0,
        violations: Vec::new(),
        unknown: Vec::new(),
    };
    for (key, ops) in per_key {
        let ops = prune(ops);
        report.ops_checked += ops.len();
        match check_key(key, &ops, config) {
            KeyResult::Linearizable { steps } => {
                report.steps += steps;
                report.max_key_steps = report.max_key_steps.max(steps);
            }
            KeyResult::Violation { steps, violation } => {
                report.steps += steps;
                report.max_key_steps = report.max_key_steps.max(steps);
                report.violations.push(*violation);
            }
            KeyResult::Unknown { steps } => {
                report.steps += steps;
                report.max_key_steps = report.max_key_steps.max(steps);
                report.unknown.push(UnknownKey {
                    key,
                    key_ops: ops.len(),
                    steps,
                });
            }
        }
    }
    report.verdict = if !report.violations.is_empty() {
        Verdict::Invalid
    } else if !report.unknown.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Ok(report)
}

/// Drops info writes whose value no ok read returned: they can always be linearized last.
fn prune(ops: Vec<RegisterOpRecord>) -> Vec<RegisterOpRecord> {
    let read: BTreeSet<u64> = ops
        .iter()
        .filter_map(|o| match o.op {
            RegisterOp::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    ops.into_iter()
        .filter(|o| {
            !(o.outcome != EventKind::Ok
                && matches!(o.op, RegisterOp::Write(v) if !read.contains(&v)))
        })
        .collect()
}

enum KeyResult {
    Linearizable {
        steps: u64,
    },
    Violation {
        steps: u64,
        violation: Box<LinearizabilityViolation>,
    },
    Unknown {
        steps: u64,
    },
}

const NIL: usize = usize::MAX;

/// Call/return entries in a doubly linked list (index `head` is the sentinel).
struct Entries {
    /// For entry `e`: the operation it belongs to.
    op: Vec<usize>,
    /// For a call entry: the position of its return entry; `NIL` for return entries.
    matching: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl Entries {
    fn new(ops: &[RegisterOpRecord]) -> Entries {
        // (time, is_return, op); info ops return at the end of time.
        let mut raw: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, o) in ops.iter().enumerate() {
            raw.push((o.invoke_index, false, i));
            let ret = if o.outcome == EventKind::Ok {
                o.completion_index.unwrap_or(u64::MAX)
            } else {
                u64::MAX
            };
            raw.push((ret, true, i));
        }
        raw.sort_unstable();
        let m = raw.len();
        let mut op = Vec::with_capacity(m);
        let mut matching = vec![NIL; m];
        let mut call_pos = vec![NIL; ops.len()];
        for (pos, &(_, is_return, i)) in raw.iter().enumerate() {
            op.push(i);
            if is_return {
                if let Some(&c) = call_pos.get(i)
                    && c != NIL
                {
                    matching[c] = pos;
                }
            } else if let Some(slot) = call_pos.get_mut(i) {
                *slot = pos;
            }
        }
        let head = m;
        let mut next = vec![NIL; m + 1];
        let mut prev = vec![NIL; m + 1];
        for pos in 0..m {
            next[pos] = if pos + 1 < m { pos + 1 } else { NIL };
            prev[pos] = if pos == 0 { head } else { pos - 1 };
        }
        next[head] = if m > 0 { 0 } else { NIL };
        Entries {
            op,
            matching,
            next,
            prev,
            head,
        }
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    /// Removes a call entry and its return entry.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.matching[call]);
    }

    /// Undoes the matching `lift` (must be called in reverse order of lifts).
    fn unlift(&mut self, call: usize) {
        self.relink(self.matching[call]);
        self.relink(call);
    }
}

fn apply(op: RegisterOp, state: Option<u64>) -> Option<Option<u64>> {
    match op {
        RegisterOp::Read(v) => (v == state).then_some(state),
        RegisterOp::Write(v) => Some(Some(v)),
    }
}

fn check_key(key: u64, ops: &[RegisterOpRecord], config: &LinearizabilityConfig) -> KeyResult {
    // Cheap exact pre-check: a read of a value no write (ok or info) ever wrote.
    let written: BTreeSet<u64> = ops
        .iter()
        .filter_map(|o| match o.op {
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Read(_) => None,
        })
        .collect();
    if let Some(bad) = ops
        .iter()
        .find(|o| matches!(o.op, RegisterOp::Read(Some(v)) if !written.contains(&v)))
    {
        return KeyResult::Violation {
            steps: 0,
            violation: Box::new(LinearizabilityViolation {
                key,
                reason: format!(
                    "read by process {} (event {}) returned {:?}, a value never written to key {key}",
                    bad.process, bad.invoke_index, bad.op
                ),
                blocked: Some(*bad),
                longest_prefix: Vec::new(),
                state_after_prefix: None,
                context: context(ops, bad, &[], config.max_context_ops),
                key_ops: ops.len(),
            }),
        };
    }

    let mut entries = Entries::new(ops);
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: BTreeSet<(Vec<u64>, Option<u64>)> = BTreeSet::new();
    let mut calls: Vec<(usize, Option<u64>)> = Vec::new(); // (call entry, state before)
    let mut state: Option<u64> = None;
    let mut entry = entries.next[entries.head];
    let mut steps = 0u64;
    // Approximate memory of one memo entry: the bitmap plus the set's per-entry overhead.
    let entry_bytes = words * 8 + 64;
    let mut cache_bytes = 0usize;
    // Deepest point where the search had to backtrack: (prefix length, prefix ops, state, blocked op).
    let mut best: Option<(usize, Vec<usize>, Option<u64>, usize)> = None;

    while entries.next[entries.head] != NIL {
        steps += 1;
        if steps > config.max_steps_per_key {
            return KeyResult::Unknown { steps };
        }
        if entry == NIL {
            // Cannot happen in a well-formed list (a return entry always follows its call);
            // treat it as a dead end rather than looping.
            return KeyResult::Unknown { steps };
        }
        let i = entries.op[entry];
        if entries.matching[entry] != NIL {
            // A call entry: try to linearize its op now.
            if let Some(new_state) = apply(ops[i].op, state) {
                let mut lin = linearized.clone();
                lin[i / 64] |= 1 << (i % 64);
                if cache.insert((lin, new_state)) {
                    cache_bytes += entry_bytes;
                    if cache_bytes > config.max_cache_bytes_per_key {
                        return KeyResult::Unknown { steps };
                    }
                    calls.push((entry, state));
                    state = new_state;
                    linearized[i / 64] |= 1 << (i % 64);
                    entries.lift(entry);
                    entry = entries.next[entries.head];
                    continue;
                }
            }
            entry = entries.next[entry];
        } else {
            // A return entry of an op not yet linearized: backtrack.
            if best.as_ref().is_none_or(|b| calls.len() > b.0) {
                best = Some((
                    calls.len(),
                    calls.iter().map(|&(c, _)| entries.op[c]).collect(),
                    state,
                    i,
                ));
            }
            let Some((call, old_state)) = calls.pop() else {
                let (prefix, st, blocked) =
                    best.map(|b| (b.1, b.2, b.3))
                        .unwrap_or((Vec::new(), None, i));
                let blocked_op = ops[blocked];
                let reason = format!(
                    "key {key}: no linearization; after the longest valid prefix ({} ops) the register \
                     holds {st:?}, and {:?} by process {} (events {}..{}) cannot take effect",
                    prefix.len(),
                    blocked_op.op,
                    blocked_op.process,
                    blocked_op.invoke_index,
                    blocked_op
                        .completion_index
                        .map_or("end".to_string(), |c| c.to_string()),
                );
                let prefix_records: Vec<RegisterOpRecord> =
                    prefix.iter().map(|&p| ops[p]).collect();
                return KeyResult::Violation {
                    steps,
                    violation: Box::new(LinearizabilityViolation {
                        key,
                        reason,
                        blocked: Some(blocked_op),
                        longest_prefix: prefix_records.iter().map(|r| r.invoke_index).collect(),
                        state_after_prefix: st,
                        context: context(ops, &blocked_op, &prefix_records, config.max_context_ops),
                        key_ops: ops.len(),
                    }),
                };
            };
            state = old_state;
            let j = entries.op[call];
            linearized[j / 64] &= !(1 << (j % 64));
            entries.unlift(call);
            entry = entries.next[call];
        }
    }
    KeyResult::Linearizable { steps }
}

/// Ops overlapping `blocked` in real time, plus the tail of the prefix, in invocation order.
fn context(
    ops: &[RegisterOpRecord],
    blocked: &RegisterOpRecord,
    prefix: &[RegisterOpRecord],
    max: usize,
) -> Vec<RegisterOpRecord> {
    let b_start = blocked.invoke_index;
    let b_end = blocked.completion_index.unwrap_or(u64::MAX);
    let mut picked: BTreeMap<u64, RegisterOpRecord> = BTreeMap::new();
    for r in prefix.iter().rev().take(max / 4) {
        picked.insert(r.invoke_index, *r);
    }
    for o in ops {
        if picked.len() >= max {
            break;
        }
        let end = o.completion_index.unwrap_or(u64::MAX);
        if o.invoke_index <= b_end && end >= b_start {
            picked.insert(o.invoke_index, *o);
        }
    }
    picked.insert(blocked.invoke_index, *blocked);
    picked.into_values().collect()
}
