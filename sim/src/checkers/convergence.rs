//! Convergence after the liveness phase: with faults healed, exactly one leader that every node
//! recognises, and every node at the same applied log id with the same state hash; plus, from
//! the liveness phase's history, fresh writes and reads succeeded within the time bound.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CheckError, Verdict};
use crate::checkers::raft_safety::{NodeRole, RaftLogId};
use crate::history::{EventKind, History, Mop, Op};

/// What one node reports at the end of the liveness phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub node: u64,
    pub role: NodeRole,
    pub term: u64,
    /// The leader this node recognises.
    pub leader: Option<u64>,
    /// Last applied log id.
    pub applied: Option<RaftLogId>,
    /// Hash of the node's state machine contents (any stable digest, e.g. BLAKE3 of the sorted
    /// key/value pairs).
    pub state_hash: Vec<u8>,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvergenceViolation {
    /// Not exactly one node is leader.
    LeaderCount { leaders: Vec<u64> },
    /// Some node recognises another leader (or none).
    LeaderDisagreement {
        leader: u64,
        views: Vec<(u64, Option<u64>)>,
    },
    /// Applied log ids differ.
    AppliedDiffers {
        applied: Vec<(u64, Option<RaftLogId>)>,
    },
    /// State hashes differ (hex), grouped by hash.
    StateDiffers { groups: Vec<(String, Vec<u64>)> },
    /// A node is down at the end of the liveness phase.
    NodeDown { node: u64 },
    /// The liveness phase did not see a successful write / read in time.
    NoProgress { what: String },
}

/// The result of [`check`] / [`check_progress`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvergenceReport {
    pub verdict: Verdict,
    pub nodes: usize,
    pub violations: Vec<ConvergenceViolation>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the end-of-liveness summaries of every node.
pub fn check(summaries: &[NodeSummary]) -> Result<ConvergenceReport, CheckError> {
    if summaries.is_empty() {
        return Err(CheckError::Config("no node summaries".into()));
    }
    let mut violations = Vec::new();
    for s in summaries {
        if s.role == NodeRole::Down {
            violations.push(ConvergenceViolation::NodeDown { node: s.node });
        }
    }
    let leaders: Vec<u64> = summaries
        .iter()
        .filter(|s| s.role == NodeRole::Leader)
        .map(|s| s.node)
        .collect();
    if leaders.len() != 1 {
        violations.push(ConvergenceViolation::LeaderCount {
            leaders: leaders.clone(),
        });
    } else if let Some(&leader) = leaders.first() {
        let views: Vec<(u64, Option<u64>)> = summaries.iter().map(|s| (s.node, s.leader)).collect();
        if views.iter().any(|&(_, v)| v != Some(leader)) {
            violations.push(ConvergenceViolation::LeaderDisagreement { leader, views });
        }
    }
    let applied: Vec<(u64, Option<RaftLogId>)> =
        summaries.iter().map(|s| (s.node, s.applied)).collect();
    if applied.windows(2).any(|w| w[0].1 != w[1].1) {
        violations.push(ConvergenceViolation::AppliedDiffers { applied });
    }
    let mut groups: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in summaries {
        groups.entry(hex(&s.state_hash)).or_default().push(s.node);
    }
    if groups.len() > 1 {
        violations.push(ConvergenceViolation::StateDiffers {
            groups: groups.into_iter().collect(),
        });
    }
    Ok(ConvergenceReport {
        verdict: if violations.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        },
        nodes: summaries.len(),
        violations,
    })
}

/// Checks that the liveness phase made progress: at least one write (a `Write`, or a
/// transaction with a write micro-op) and one read (a `Read`, or a transaction with a read
/// micro-op) completed `Ok` with invocation at or after `healed_at_nanos` and completion at or
/// before `deadline_nanos` (simulated time).
pub fn check_progress(
    history: &History,
    healed_at_nanos: u64,
    deadline_nanos: u64,
) -> Result<ConvergenceReport, CheckError> {
    history.validate()?;
    let (mut wrote, mut read) = (false, false);
    for op in history.operations() {
        let Some(c) = op.completion else { continue };
        if c.kind != EventKind::Ok
            || op.invoke.time_nanos < healed_at_nanos
            || c.time_nanos > deadline_nanos
        {
            continue;
        }
        match &c.op {
            Op::Write { .. } => wrote = true,
            Op::Read { .. } => read = true,
            Op::Txn(mops) => {
                wrote |= mops.iter().any(Mop::is_write);
                read |= mops.iter().any(|m| !m.is_write());
            }
        }
    }
    let mut violations = Vec::new();
    for (ok, what) in [(wrote, "write"), (read, "read")] {
        if !ok {
            violations.push(ConvergenceViolation::NoProgress {
                what: format!(
                    "no {what} completed ok between {healed_at_nanos} ns (healed) and {deadline_nanos} ns (deadline)"
                ),
            });
        }
    }
    Ok(ConvergenceReport {
        verdict: if violations.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        },
        nodes: 0,
        violations,
    })
}
