//! Per-key register linearizability: every key's reads and writes (`Op::Read` / `Op::Write`) can
//! be ordered into a sequential register history consistent with real time.
//!
//! Each key is checked separately (P-compositionality: linearizability is local, so a history is
//! linearizable iff each key's sub-history is). A key whose written values are all distinct (the
//! workload's contract) is decided exactly in O(n log n) by the zone check of Gibbons and Korach
//! (see `check_zones`), which stays fast however many writes are left with unknown outcome; other
//! keys go to a Wing–Gong–Lowe search with memoization of (linearized set, register state), as
//! in Horn and Kroening and Porcupine, which is exponential in the worst case and bounded.
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
    /// Always use the WGL search, even for keys whose written values are unique (where the
    /// polynomial zone check decides exactly). For cross-checking the two.
    pub force_wgl: bool,
}

impl Default for LinearizabilityConfig {
    fn default() -> Self {
        LinearizabilityConfig {
            max_steps_per_key: 5_000_000,
            max_context_ops: 40,
            max_cache_bytes_per_key: 512 << 20,
            force_wgl: false,
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
        // A write whose value is unique on the key must take effect before the first read that
        // returned that value completes: its response can be moved to that completion. This
        // bounds info writes (which otherwise stay open to the end and make the search
        // exponential in the number of them that were read) without changing the verdict.
        let mut writers: BTreeMap<u64, usize> = BTreeMap::new();
        let mut first_read: BTreeMap<u64, u64> = BTreeMap::new();
        for o in ops {
            match o.op {
                RegisterOp::Write(v) => *writers.entry(v).or_default() += 1,
                RegisterOp::Read(Some(v)) => {
                    let c = o.completion_index.unwrap_or(u64::MAX);
                    let slot = first_read.entry(v).or_insert(c);
                    *slot = (*slot).min(c);
                }
                RegisterOp::Read(None) => {}
            }
        }
        // (time, is_return, op); info ops return at the end of time unless bounded as above.
        let mut raw: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, o) in ops.iter().enumerate() {
            raw.push((o.invoke_index, false, i));
            let mut ret = if o.outcome == EventKind::Ok {
                o.completion_index.unwrap_or(u64::MAX)
            } else {
                u64::MAX
            };
            if let RegisterOp::Write(v) = o.op
                && writers.get(&v) == Some(&1)
                && let Some(&c) = first_read.get(&v)
                && c > o.invoke_index
            {
                ret = ret.min(c);
            }
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

    if !config.force_wgl
        && let Some(result) = check_zones(key, ops, config)
    {
        return result;
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

/// A cluster's zone: `lo..hi` in event time (see [`check_zones`]).
#[derive(Debug, Clone, Copy)]
struct Zone {
    lo: u64,
    hi: u64,
    /// The cluster's value (`None`: the initial, never-written state).
    value: Option<u64>,
}

/// Exact, polynomial check for a key whose written values are all distinct (Gibbons and
/// Korach's "read-mapping" case, in the zone formulation of Golab, Li and Shah, PODC 2011).
///
/// Each value `v` forms a cluster: its write and the reads that returned it (the initial state
/// is a virtual write before everything). With `f` the earliest completion and `s` the latest
/// invocation in a cluster, the cluster's zone is forward `[f, s]` if `f < s`, else backward
/// `[s, f]`. The history is linearizable iff no read completes before its write is invoked, no
/// two forward zones overlap, and no backward zone lies inside a forward zone. Info writes
/// never complete (`f` comes from their reads). Returns `None` when a value is written twice.
fn check_zones(
    key: u64,
    ops: &[RegisterOpRecord],
    config: &LinearizabilityConfig,
) -> Option<KeyResult> {
    // Times: invocation = event index + 1, completion = event index + 1 (info: never), so that
    // the virtual initial write can sit at 0.
    let start = |o: &RegisterOpRecord| o.invoke_index.saturating_add(1);
    let finish = |o: &RegisterOpRecord| match (o.outcome, o.completion_index) {
        (EventKind::Ok, Some(c)) => c.saturating_add(1),
        _ => u64::MAX,
    };
    let mut writer: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, o) in ops.iter().enumerate() {
        if let RegisterOp::Write(v) = o.op
            && writer.insert(v, i).is_some()
        {
            return None;
        }
    }
    // cluster value -> (min finish, max start, member ops)
    let mut clusters: BTreeMap<Option<u64>, (u64, u64, Vec<usize>)> = BTreeMap::new();
    for (i, o) in ops.iter().enumerate() {
        let value = match o.op {
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Read(v) => v,
        };
        let c = clusters.entry(value).or_insert_with(|| {
            if value.is_none() {
                (0, 0, Vec::new())
            } else {
                (u64::MAX, 0, Vec::new())
            }
        });
        c.0 = c.0.min(finish(o));
        c.1 = c.1.max(start(o));
        c.2.push(i);
        if let RegisterOp::Read(Some(v)) = o.op {
            let w = &ops[*writer.get(&v)?];
            if finish(o) < start(w) {
                return Some(zone_violation(
                    key,
                    ops,
                    config,
                    o,
                    &[i, *writer.get(&v)?],
                    format!(
                        "key {key}: read by process {} (events {}..{:?}) returned {v} before the write of {v} \
                         (event {}) was invoked",
                        o.process, o.invoke_index, o.completion_index, w.invoke_index
                    ),
                ));
            }
        }
    }
    let mut forward: Vec<Zone> = Vec::new();
    let mut backward: Vec<Zone> = Vec::new();
    for (&value, &(f, s, _)) in &clusters {
        if f < s {
            forward.push(Zone {
                lo: f,
                hi: s,
                value,
            });
        } else {
            backward.push(Zone {
                lo: s,
                hi: f,
                value,
            });
        }
    }
    forward.sort_by_key(|z| (z.lo, z.hi));
    let members = |v: Option<u64>| clusters.get(&v).map(|c| c.2.clone()).unwrap_or_default();
    let describe = |v: Option<u64>| {
        v.map_or("the initial (never written) state".to_string(), |v| {
            format!("value {v}")
        })
    };
    for pair in forward.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.lo < a.hi {
            let mut involved = members(a.value);
            involved.extend(members(b.value));
            let Some(blocked) = involved.last().and_then(|&i| ops.get(i)) else {
                continue;
            };
            return Some(zone_violation(
                key,
                ops,
                config,
                blocked,
                &involved,
                format!(
                    "key {key}: {} was observed (events {}..{}) while {} was observed (events {}..{}): each \
                     must be the register's value across the other's window, which no order allows",
                    describe(a.value),
                    a.lo.saturating_sub(1),
                    a.hi.saturating_sub(1),
                    describe(b.value),
                    b.lo.saturating_sub(1),
                    b.hi.saturating_sub(1)
                ),
            ));
        }
    }
    for z in &backward {
        let p = forward.partition_point(|f| f.lo <= z.lo);
        if p == 0 {
            continue;
        }
        let f = forward[p - 1];
        if z.hi <= f.hi {
            let mut involved = members(f.value);
            involved.extend(members(z.value));
            let Some(blocked) = members(z.value).first().and_then(|&i| ops.get(i)) else {
                continue;
            };
            return Some(zone_violation(
                key,
                ops,
                config,
                blocked,
                &involved,
                format!(
                    "key {key}: every operation on {} (events {}..{}) falls inside the window where {} must \
                     be the value (events {}..{}): a stale or lost value",
                    describe(z.value),
                    z.lo.saturating_sub(1),
                    z.hi.saturating_sub(1),
                    describe(f.value),
                    f.lo.saturating_sub(1),
                    f.hi.saturating_sub(1)
                ),
            ));
        }
    }
    Some(KeyResult::Linearizable {
        steps: ops.len() as u64,
    })
}

fn zone_violation(
    key: u64,
    ops: &[RegisterOpRecord],
    config: &LinearizabilityConfig,
    blocked: &RegisterOpRecord,
    involved: &[usize],
    reason: String,
) -> KeyResult {
    let mut picked: BTreeMap<u64, RegisterOpRecord> = BTreeMap::new();
    for &i in involved.iter().take(config.max_context_ops.max(2)) {
        if let Some(o) = ops.get(i) {
            picked.insert(o.invoke_index, *o);
        }
    }
    for o in context(ops, blocked, &[], config.max_context_ops) {
        if picked.len() >= config.max_context_ops.max(2) {
            break;
        }
        picked.insert(o.invoke_index, o);
    }
    KeyResult::Violation {
        steps: ops.len() as u64,
        violation: Box::new(LinearizabilityViolation {
            key,
            reason,
            blocked: Some(*blocked),
            longest_prefix: Vec::new(),
            state_after_prefix: None,
            context: picked.into_values().collect(),
            key_ops: ops.len(),
        }),
    }
}
