//! Durability and atomicity after recovery: every acknowledged (`Ok`) write or append is visible
//! in the state read after the last crash and recovery; nothing that failed is visible; nothing
//! appears that no client wrote; an unknown-outcome (`Info`) transaction's appends are all
//! visible or none.
//!
//! Input: the history, and the final state read after recovery ([`FinalState`], either built by
//! the harness or taken from the last successful reads of a final-read history with
//! [`FinalState::from_reads`]). Only keys present in the final state are checked.
//!
//! Lists (`Mop::Append`): every `Ok` append must be in the final list, no `Fail` append may be,
//! every element must come from some append, no element twice, and an `Info` transaction's
//! appends to checked keys must be all present or all absent (no partial transaction).
//!
//! Registers (`Op::Write`, and the last `Mop::RegWrite` of a key in a transaction): the final
//! value must have been written by an `Ok` or `Info` write (or be the key's initial value), and
//! must not have been written by an `Ok` write that completed before some acknowledged write of
//! the same key was invoked — that acknowledged write is then lost (it is ordered after the
//! final value's write in every linearization). An `Info` write may take effect at any time
//! after its invocation, so its value may legitimately be final. Writes of one key must use
//! unique values.
//!
//! The final state must be read after every operation of the history has completed (or been
//! given up as `Info`); an acknowledged write completing after the final read would be
//! reported as lost.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{CheckError, Verdict};
use crate::history::{EventKind, History, Mop, Op};

/// The state read after recovery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalState {
    /// Register keys and their final value (`None`: absent).
    pub registers: BTreeMap<u64, Option<u64>>,
    /// List keys and their final list (absent key = empty list).
    pub lists: BTreeMap<u64, Vec<u64>>,
    /// Register values present before the history started (e.g. bank opening balances); a
    /// final value equal to one of these is not "phantom".
    pub initial_registers: BTreeMap<u64, u64>,
}

impl FinalState {
    /// The last `Ok` read of each key in `reads` (a history of reads done after recovery):
    /// `Op::Read` and `Mop::RegRead` give registers, `Mop::ReadList` lists.
    pub fn from_reads(reads: &History) -> FinalState {
        let mut out = FinalState::default();
        for e in &reads.events {
            if e.kind != EventKind::Ok {
                continue;
            }
            match &e.op {
                Op::Read { key, value } => {
                    out.registers.insert(*key, *value);
                }
                Op::Write { .. } => {}
                Op::Txn(mops) => {
                    for m in mops {
                        match m {
                            Mop::RegRead { key, value } => {
                                out.registers.insert(*key, *value);
                            }
                            Mop::ReadList { key, value } => {
                                out.lists.insert(*key, value.clone().unwrap_or_default());
                            }
                            Mop::Append { .. } | Mop::RegWrite { .. } => {}
                        }
                    }
                }
            }
        }
        out
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DurabilityViolationKind {
    /// An acknowledged write or append is not in the final state.
    LostWrite {
        /// For registers: the final value, and the invoke event of the write that produced it
        /// (`None` if absent or initial).
        final_value: Option<u64>,
        overwritten_by_earlier: Option<u64>,
    },
    /// A write or append whose operation failed is visible.
    FailedWriteVisible,
    /// A value no client wrote is visible.
    Phantom,
    /// A value that a transaction overwrote itself (not its last write) is the final value.
    IntermediateValue,
    /// An element appears more than once in a final list.
    Duplicated { count: usize },
    /// An unknown-outcome transaction's appends are only partly visible.
    PartialTransaction {
        present: Vec<(u64, u64)>,
        missing: Vec<(u64, u64)>,
    },
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurabilityViolation {
    /// What is wrong.
    pub kind: DurabilityViolationKind,
    /// The key.
    pub key: u64,
    /// The value written / appended / seen.
    pub value: Option<u64>,
    /// Invoke event of the operation involved (`None` for phantoms).
    pub invoke_event: Option<u64>,
    /// Completion event of the operation involved, if any.
    pub completion_event: Option<u64>,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurabilityReport {
    /// `Valid` if something was checked and nothing was wrong; `Unknown` if no acknowledged
    /// write touched a key of the final state.
    pub verdict: Verdict,
    /// Acknowledged writes/appends whose key was in the final state.
    pub acked_writes_checked: usize,
    /// Acknowledged writes/appends whose key the final state does not cover.
    pub acked_writes_unchecked: usize,
    /// Violations, by key.
    pub violations: Vec<DurabilityViolation>,
}

#[derive(Debug, Clone, Copy)]
struct Write {
    value: u64,
    outcome: EventKind,
    invoke: u64,
    /// Completion index; `u64::MAX` if never completed.
    completion: u64,
    /// The txn wrote this key again later (so this value is intermediate).
    intermediate: bool,
}

type KeyValue = (u64, u64);
/// An info transaction's appends: (invoke event, completion event, [(key, value)]).
type InfoTxn = (u64, Option<u64>, Vec<KeyValue>);

/// Checks `final_state` against the writes of `history`.
pub fn check(history: &History, final_state: &FinalState) -> Result<DurabilityReport, CheckError> {
    history.validate()?;
    let mut reg_writes: BTreeMap<u64, Vec<Write>> = BTreeMap::new();
    let mut appends: BTreeMap<u64, Vec<Write>> = BTreeMap::new();
    // Info txns with appends: (invoke, [(key, value)]).
    let mut info_txns: Vec<InfoTxn> = Vec::new();
    for op in history.operations() {
        let outcome = op.outcome();
        let invoke = op.invoke.index;
        let completion = op.completion.map_or(u64::MAX, |c| c.index);
        let mk = |value, intermediate| Write {
            value,
            outcome,
            invoke,
            completion,
            intermediate,
        };
        match &op.invoke.op {
            Op::Write { key, value } => reg_writes.entry(*key).or_default().push(mk(*value, false)),
            Op::Read { .. } => {}
            Op::Txn(mops) => {
                let mut txn_appends = Vec::new();
                for (i, m) in mops.iter().enumerate() {
                    match *m {
                        Mop::RegWrite { key, value } => {
                            let later = mops[i + 1..]
                                .iter()
                                .any(|n| matches!(n, Mop::RegWrite { key: k, .. } if *k == key));
                            reg_writes.entry(key).or_default().push(mk(value, later));
                        }
                        Mop::Append { key, value } => {
                            appends.entry(key).or_default().push(mk(value, false));
                            txn_appends.push((key, value));
                        }
                        Mop::RegRead { .. } | Mop::ReadList { .. } => {}
                    }
                }
                if outcome == EventKind::Info && txn_appends.len() > 1 {
                    info_txns.push((invoke, op.completion.map(|c| c.index), txn_appends));
                }
            }
        }
    }

    let mut report = DurabilityReport {
        verdict: Verdict::Valid,
        acked_writes_checked: 0,
        acked_writes_unchecked: 0,
        violations: Vec::new(),
    };
    let v = |kind, key, value, w: Option<&Write>| DurabilityViolation {
        kind,
        key,
        value,
        invoke_event: w.map(|w| w.invoke),
        completion_event: w.and_then(|w| (w.completion != u64::MAX).then_some(w.completion)),
    };

    // Lists.
    for (&key, writes) in &appends {
        let acked = writes.iter().filter(|w| w.outcome == EventKind::Ok).count();
        let Some(list) = final_state.lists.get(&key) else {
            report.acked_writes_unchecked += acked;
            continue;
        };
        report.acked_writes_checked += acked;
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for &x in list {
            *counts.entry(x).or_default() += 1;
        }
        for w in writes {
            let present = counts.contains_key(&w.value);
            match w.outcome {
                EventKind::Ok if !present => report.violations.push(v(
                    DurabilityViolationKind::LostWrite {
                        final_value: None,
                        overwritten_by_earlier: None,
                    },
                    key,
                    Some(w.value),
                    Some(w),
                )),
                EventKind::Fail if present => report.violations.push(v(
                    DurabilityViolationKind::FailedWriteVisible,
                    key,
                    Some(w.value),
                    Some(w),
                )),
                _ => {}
            }
        }
        let known: BTreeSet<u64> = writes.iter().map(|w| w.value).collect();
        for (&x, &count) in &counts {
            if !known.contains(&x) {
                report
                    .violations
                    .push(v(DurabilityViolationKind::Phantom, key, Some(x), None));
            }
            if count > 1 {
                report.violations.push(v(
                    DurabilityViolationKind::Duplicated { count },
                    key,
                    Some(x),
                    None,
                ));
            }
        }
    }
    for (key, list) in &final_state.lists {
        if !appends.contains_key(key) {
            for &x in list {
                report
                    .violations
                    .push(v(DurabilityViolationKind::Phantom, *key, Some(x), None));
            }
        }
    }
    for (invoke, completion, txn_appends) in &info_txns {
        let checked: Vec<(u64, u64)> = txn_appends
            .iter()
            .copied()
            .filter(|(k, _)| final_state.lists.contains_key(k))
            .collect();
        let (present, missing): (Vec<KeyValue>, Vec<KeyValue>) = checked
            .into_iter()
            .partition(|(k, x)| final_state.lists.get(k).is_some_and(|l| l.contains(x)));
        if !present.is_empty() && !missing.is_empty() {
            report.violations.push(DurabilityViolation {
                kind: DurabilityViolationKind::PartialTransaction {
                    present: present.clone(),
                    missing,
                },
                key: present[0].0,
                value: Some(present[0].1),
                invoke_event: Some(*invoke),
                completion_event: *completion,
            });
        }
    }

    // Registers.
    for (&key, writes) in &reg_writes {
        let acked: Vec<&Write> = writes
            .iter()
            .filter(|w| w.outcome == EventKind::Ok && !w.intermediate)
            .collect();
        let Some(&final_value) = final_state.registers.get(&key) else {
            report.acked_writes_unchecked += acked.len();
            continue;
        };
        report.acked_writes_checked += acked.len();
        let writer = final_value.and_then(|f| writes.iter().find(|w| w.value == f));
        let initial = final_value.is_some()
            && final_state.initial_registers.get(&key).copied() == final_value;
        match (final_value, writer) {
            (Some(f), Some(w)) if w.outcome == EventKind::Fail => {
                report.violations.push(v(
                    DurabilityViolationKind::FailedWriteVisible,
                    key,
                    Some(f),
                    Some(w),
                ));
            }
            (Some(f), Some(w)) if w.intermediate => {
                report.violations.push(v(
                    DurabilityViolationKind::IntermediateValue,
                    key,
                    Some(f),
                    Some(w),
                ));
            }
            (Some(f), None) if !initial => {
                report
                    .violations
                    .push(v(DurabilityViolationKind::Phantom, key, Some(f), None));
            }
            _ => {}
        }
        // An acked write is lost if the final value's write completed before it was invoked,
        // or if the final value is the initial one / absent.
        for w in acked {
            if Some(w.value) == final_value {
                continue;
            }
            let lost = match writer {
                // Only an `Ok` write is known to have taken effect by its completion; an `Info`
                // write may take effect at any time after its invocation.
                Some(fw) if fw.outcome == EventKind::Ok && !fw.intermediate => {
                    fw.completion < w.invoke
                }
                Some(_) => false, // info (may be last), or failed/intermediate (reported above)
                None => true,
            };
            if lost {
                report.violations.push(v(
                    DurabilityViolationKind::LostWrite {
                        final_value,
                        overwritten_by_earlier: writer.map(|fw| fw.invoke),
                    },
                    key,
                    Some(w.value),
                    Some(w),
                ));
            }
        }
    }

    report.verdict = if !report.violations.is_empty() {
        Verdict::Invalid
    } else if report.acked_writes_checked == 0 {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Ok(report)
}
