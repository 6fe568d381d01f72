//! Transactional isolation: the committed transactions of a list-append or rw-register history
//! admit no dependency cycle (G0, G1c, G-single, G2-item, ...) and no direct anomaly (G1a aborted
//! read, G1b intermediate read, lost update, ...) that the configured isolation level forbids.
//!
//! This is Elle's method (infer write-write, write-read and read-write dependencies from the
//! values clients observed, then search the dependency graph for cycles), run by the `adya` crate
//! (0.1.0), a native port of Elle. Only `Op::Txn` events are considered. The same history can be
//! exported with [`History::to_edn`] and checked by Elle itself to cross-check `adya`.
//!
//! Requirements on the history (Elle's): every append or register write of one key uses a value
//! never written to that key before — so the bank workload, whose balances repeat, is checked by
//! [`super::bank`] instead; one history is either list-append or rw-register, not both.
//!
//! `adya` bounds its cycle search by wall-clock time per strongly connected component
//! ([`IsolationConfig::cycle_search_timeout`]); a search that times out reports
//! `cycle-search-timeout` and the verdict is `Unknown` unless a forbidden cycle was found anyway.
//! That is the one place where a checker's outcome could depend on machine speed; the default
//! budget is far above what simulator histories need.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CheckError, Verdict};
use crate::history::{EventKind, History, Mop, Op};

/// Isolation levels the checker can hold a history to (names as in Elle / Adya).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IsolationLevel {
    /// Serializable plus real-time order (Adya PL-SS).
    StrictSerializable,
    /// Serializable (PL-3): no G0, G1, G-single, G2.
    Serializable,
    /// Snapshot isolation (PL-SI): no G0, G1, G-single; write skew (G2-item) allowed.
    SnapshotIsolation,
    /// Repeatable read (PL-2.99).
    RepeatableRead,
    /// Read committed (PL-2): no G0, G1a, G1b, G1c.
    ReadCommitted,
}

impl IsolationLevel {
    /// The model name `adya` and Elle use.
    pub fn model_name(self) -> &'static str {
        match self {
            IsolationLevel::StrictSerializable => "strict-serializable",
            IsolationLevel::Serializable => "serializable",
            IsolationLevel::SnapshotIsolation => "snapshot-isolation",
            IsolationLevel::RepeatableRead => "repeatable-read",
            IsolationLevel::ReadCommitted => "read-committed",
        }
    }
}

/// Which Elle workload a history is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxnWorkload {
    /// `Mop::Append` / `Mop::ReadList`.
    ListAppend,
    /// `Mop::RegWrite` / `Mop::RegRead`.
    RwRegister,
}

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationConfig {
    /// The level the database promises.
    pub level: IsolationLevel,
    /// Wall-clock budget of `adya`'s cycle search per strongly connected component.
    pub cycle_search_timeout: Duration,
}

impl IsolationConfig {
    /// `level` with the default search budget (10 s per component).
    pub fn new(level: IsolationLevel) -> IsolationConfig {
        IsolationConfig {
            level,
            cycle_search_timeout: Duration::from_secs(10),
        }
    }
}

/// One anomaly found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationAnomaly {
    /// Elle's anomaly name: `G0`, `G1a`, `G1b`, `G1c`, `G-single-item`, `G2-item`,
    /// `lost-update`, `incompatible-order`, ... (with `-process` / `-realtime` variants).
    pub kind: String,
    /// History event indices of the transactions involved (their completion events).
    pub events: Vec<u64>,
    /// `adya`'s explanation (for cycles: each edge and why it exists).
    pub explanation: String,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationReport {
    /// `Invalid` if an anomaly forbidden at the level was found; `Unknown` if `adya` could not
    /// decide (search timeout, no dependency inferable, or `adya` failed).
    pub verdict: Verdict,
    /// The workload detected.
    pub workload: Option<TxnWorkload>,
    /// The level checked.
    pub level: IsolationLevel,
    /// Transactions (invocations) in the history.
    pub txns: usize,
    /// Anomaly names reported (forbidden ones, plus "unknown" markers).
    pub anomaly_types: Vec<String>,
    /// The anomalies in detail.
    pub anomalies: Vec<IsolationAnomaly>,
    /// Models the anomalies rule out (weakest first), as `adya` reports them.
    pub not: Vec<String>,
}

impl IsolationReport {
    /// The anomaly names, for assertions and summaries.
    pub fn has(&self, kind: &str) -> bool {
        self.anomaly_types.iter().any(|k| k == kind)
    }
}

/// Checks the transactions of `history` against `config.level`.
pub fn check(history: &History, config: &IsolationConfig) -> Result<IsolationReport, CheckError> {
    history.validate()?;
    let workload = detect_workload(history)?;
    let txns = history
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Invoke && matches!(e.op, Op::Txn(_)))
        .count();
    let Some(workload) = workload else {
        return Ok(IsolationReport {
            verdict: Verdict::Unknown,
            workload: None,
            level: config.level,
            txns,
            anomaly_types: vec!["no-transactions".into()],
            anomalies: Vec::new(),
            not: Vec::new(),
        });
    };
    check_unique_writes(history)?;
    let h = to_adya(history)?;
    let opts = adya::Opts {
        models: vec![config.level.model_name().to_string()],
        timeout: config.cycle_search_timeout,
        ..adya::Opts::default()
    };
    let adya_workload = match workload {
        TxnWorkload::ListAppend => adya::Workload::ListAppend,
        TxnWorkload::RwRegister => adya::Workload::RwRegister,
    };
    // adya is young; if it panics on some input, report Unknown with the message rather than
    // taking the simulator down. (Its debug assertions are on in debug builds.)
    let report = match catch_unwind(AssertUnwindSafe(|| adya::check(&h, adya_workload, &opts))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            return Ok(IsolationReport {
                verdict: Verdict::Unknown,
                workload: Some(workload),
                level: config.level,
                txns,
                anomaly_types: vec!["checker-panicked".into()],
                anomalies: vec![IsolationAnomaly {
                    kind: "checker-panicked".into(),
                    events: Vec::new(),
                    explanation: format!("adya panicked: {msg}"),
                }],
                not: Vec::new(),
            });
        }
    };
    let verdict = match report.valid {
        adya::Valid::True => Verdict::Valid,
        adya::Valid::False => Verdict::Invalid,
        adya::Valid::Unknown => Verdict::Unknown,
    };
    let anomalies = report
        .anomalies
        .iter()
        .flat_map(|(kind, list)| {
            list.iter().map(move |a| IsolationAnomaly {
                kind: kind.clone(),
                events: a.ops.clone(),
                explanation: a.explanation.clone(),
            })
        })
        .collect();
    Ok(IsolationReport {
        verdict,
        workload: Some(workload),
        level: config.level,
        txns,
        anomaly_types: report.anomaly_types,
        anomalies,
        not: report.not,
    })
}

/// The workload of the history's transactions (`None` if there are none).
pub fn detect_workload(history: &History) -> Result<Option<TxnWorkload>, CheckError> {
    let mut found: Option<TxnWorkload> = None;
    for e in &history.events {
        let Op::Txn(mops) = &e.op else { continue };
        for m in mops {
            let w = match m {
                Mop::Append { .. } | Mop::ReadList { .. } => TxnWorkload::ListAppend,
                Mop::RegRead { .. } | Mop::RegWrite { .. } => TxnWorkload::RwRegister,
            };
            match found {
                None => found = Some(w),
                Some(f) if f != w => return Err(CheckError::MixedWorkload { index: e.index }),
                Some(_) => {}
            }
        }
    }
    Ok(found)
}

/// Rejects a value written twice to one key (Elle's inference needs unique values).
fn check_unique_writes(history: &History) -> Result<(), CheckError> {
    let mut seen: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for e in &history.events {
        if e.kind != EventKind::Invoke {
            continue;
        }
        let Op::Txn(mops) = &e.op else { continue };
        for m in mops {
            if let Mop::Append { key, value } | Mop::RegWrite { key, value } = *m {
                if let Some(&first) = seen.get(&(key, value)) {
                    return Err(CheckError::DuplicateWrite {
                        key,
                        value,
                        first,
                        second: e.index,
                    });
                }
                seen.insert((key, value), e.index);
            }
        }
    }
    Ok(())
}

/// Builds `adya`'s history from the transaction events (same shape Elle reads from EDN/JSON).
pub fn to_adya(history: &History) -> Result<adya::History, CheckError> {
    use adya::history::{Interner, Mop as AMop, Op as AOp, OpType, ReadValue, Scalar};
    let mut interner = Interner::default();
    let mut ops = Vec::new();
    for e in &history.events {
        let Op::Txn(mops) = &e.op else { continue };
        let int = |what: &'static str, v: u64| {
            i64::try_from(v).map_err(|_| {
                CheckError::History(crate::history::HistoryError::ValueOutOfRange {
                    index: e.index,
                    what,
                    value: v,
                })
            })
        };
        let mut value = Vec::with_capacity(mops.len());
        for m in mops {
            value.push(match m {
                Mop::Append { key, value } => AMop::Append {
                    key: interner.intern(Scalar::Int(int("key", *key)?)),
                    value: interner.intern(Scalar::Int(int("value", *value)?)),
                },
                Mop::RegWrite { key, value } => AMop::Write {
                    key: interner.intern(Scalar::Int(int("key", *key)?)),
                    value: interner.intern(Scalar::Int(int("value", *value)?)),
                },
                Mop::RegRead { key, value } => {
                    let key = interner.intern(Scalar::Int(int("key", *key)?));
                    let value = match value {
                        None => ReadValue::Nil,
                        Some(v) => {
                            ReadValue::Scalar(interner.intern(Scalar::Int(int("value", *v)?)))
                        }
                    };
                    AMop::Read { key, value }
                }
                Mop::ReadList { key, value } => {
                    let key = interner.intern(Scalar::Int(int("key", *key)?));
                    let value = match value {
                        None => ReadValue::Nil,
                        Some(xs) => {
                            let mut l = Vec::with_capacity(xs.len());
                            for x in xs {
                                l.push(interner.intern(Scalar::Int(int("value", *x)?)));
                            }
                            ReadValue::List(l)
                        }
                    };
                    AMop::Read { key, value }
                }
            });
        }
        let kind = match e.kind {
            EventKind::Invoke => OpType::Invoke,
            EventKind::Ok => OpType::Ok,
            EventKind::Fail => OpType::Fail,
            EventKind::Info => OpType::Info,
        };
        ops.push(AOp {
            index: e.index,
            kind,
            process: Some(int("process", e.process)?),
            value,
            time: Some(int("time", e.time_nanos)?),
        });
    }
    Ok(adya::History::from_ops(ops, interner))
}
