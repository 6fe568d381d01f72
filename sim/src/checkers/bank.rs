//! Bank invariant: every successful read of all accounts sums to the initial total, no balance
//! is negative (unless the workload allows overdrafts), and every successful transfer conserves
//! money over the accounts it writes.
//!
//! Bank transfers are rw-register transactions (`Op::Txn` of `Mop::RegRead` / `Mop::RegWrite`)
//! over the account keys listed in [`BankConfig::accounts`]. Balances are `u64` values read as
//! two's-complement `i64`, so a balance that went below zero (and wrapped) is seen as negative.
//! A read of an account that was never written (`None`) counts as 0. Only `Ok` transactions are
//! checked: failed ones did not happen, and info ones returned nothing.
//!
//! A "full read" is an `Ok` transaction that reads every account (before writing any in the same
//! transaction). With no full read in the history the verdict is `Unknown`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CheckError, Verdict};
use crate::history::{EventKind, History, Mop, Op};

/// The bank's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankConfig {
    /// Account keys.
    pub accounts: Vec<u64>,
    /// Sum of all balances before the history started (and forever after).
    pub total: i128,
    /// Whether a negative balance is allowed.
    pub allow_negative: bool,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankViolationKind {
    /// A full read whose balances do not sum to the total.
    WrongTotal { expected: i128, observed: i128 },
    /// A read or written balance below zero.
    NegativeBalance { account: u64, balance: i64 },
    /// A transfer whose written balances do not sum to what it read of the same accounts.
    Unconserved { read_sum: i128, written_sum: i128 },
}

/// One violation, with the transaction that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankViolation {
    /// What is wrong.
    pub kind: BankViolationKind,
    /// Completion event of the transaction.
    pub event: u64,
    /// Invoke event of the transaction.
    pub invoke_event: u64,
    /// The client process.
    pub process: u64,
    /// Simulated completion time (ns).
    pub time_nanos: u64,
    /// The balances read by the transaction (account, balance as i64; `None` = never written).
    pub reads: Vec<(u64, Option<i64>)>,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankReport {
    /// `Valid` if at least one full read was seen and nothing was wrong.
    pub verdict: Verdict,
    /// Full reads checked against the total.
    pub full_reads: usize,
    /// Transfers whose conservation could be checked (they read every account they wrote).
    pub transfers_checked: usize,
    /// All violations, in history order.
    pub violations: Vec<BankViolation>,
}

/// Checks the bank invariant over `history`.
pub fn check(history: &History, config: &BankConfig) -> Result<BankReport, CheckError> {
    history.validate()?;
    if config.accounts.is_empty() {
        return Err(CheckError::Config("bank with no accounts".into()));
    }
    let accounts: std::collections::BTreeSet<u64> = config.accounts.iter().copied().collect();
    let mut report = BankReport {
        verdict: Verdict::Valid,
        full_reads: 0,
        transfers_checked: 0,
        violations: Vec::new(),
    };
    for op in history.operations() {
        let Some(done) = op.completion else { continue };
        if done.kind != EventKind::Ok {
            continue;
        }
        let Op::Txn(mops) = &done.op else { continue };
        // First read of each account before the txn writes it, and the last write of each.
        let mut reads: BTreeMap<u64, Option<i64>> = BTreeMap::new();
        let mut writes: BTreeMap<u64, i64> = BTreeMap::new();
        for m in mops {
            match *m {
                Mop::RegRead { key, value }
                    if accounts.contains(&key) && !writes.contains_key(&key) =>
                {
                    reads.entry(key).or_insert(value.map(|v| v as i64));
                }
                Mop::RegWrite { key, value } if accounts.contains(&key) => {
                    writes.insert(key, value as i64);
                }
                _ => {}
            }
        }
        let violation = |kind| BankViolation {
            kind,
            event: done.index,
            invoke_event: op.invoke.index,
            process: done.process,
            time_nanos: done.time_nanos,
            reads: reads.iter().map(|(k, v)| (*k, *v)).collect(),
        };
        if !config.allow_negative {
            for (&account, &balance) in &reads {
                if let Some(b) = balance
                    && b < 0
                {
                    report
                        .violations
                        .push(violation(BankViolationKind::NegativeBalance {
                            account,
                            balance: b,
                        }));
                }
            }
            for (&account, &b) in &writes {
                if b < 0 {
                    report
                        .violations
                        .push(violation(BankViolationKind::NegativeBalance {
                            account,
                            balance: b,
                        }));
                }
            }
        }
        if reads.len() == accounts.len() {
            report.full_reads += 1;
            let observed: i128 = reads.values().map(|v| i128::from(v.unwrap_or(0))).sum();
            if observed != config.total {
                report
                    .violations
                    .push(violation(BankViolationKind::WrongTotal {
                        expected: config.total,
                        observed,
                    }));
            }
        }
        if !writes.is_empty() && writes.keys().all(|k| reads.contains_key(k)) {
            report.transfers_checked += 1;
            let read_sum: i128 = writes
                .keys()
                .map(|k| i128::from(reads.get(k).copied().flatten().unwrap_or(0)))
                .sum();
            let written_sum: i128 = writes.values().map(|&v| i128::from(v)).sum();
            if read_sum != written_sum {
                report
                    .violations
                    .push(violation(BankViolationKind::Unconserved {
                        read_sum,
                        written_sum,
                    }));
            }
        }
    }
    report.verdict = if !report.violations.is_empty() {
        Verdict::Invalid
    } else if report.full_reads == 0 {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Ok(report)
}
