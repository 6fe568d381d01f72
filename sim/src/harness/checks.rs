//! Adapters from what the harness observed to the checkers in [`crate::checkers`], plus the
//! convergence condition that ends the liveness phase.
//!
//! - Raft safety ([`RaftChecker`]): after every step, each node's new observations (published
//!   by the node's observer on every metrics change, with the log entries it re-read) become
//!   [`RaftObservation`]s with the node's whole log (kept here as a mirror); a killed node
//!   gets a `Down` observation. Entries the node purged into a snapshot leave the mirror (a
//!   purged prefix is not a divergence; any other missing entry is a gap and a violation); an
//!   observation whose log read failed leaves it alone. `committed` is the applied log id
//!   (everything applied is committed; after a snapshot install, the snapshot's last log id),
//!   so commit monotonicity and state machine safety are checked on it.
//! - At the end: per-key linearizability, isolation (list-append, serializable), the bank
//!   invariant, durability (every acknowledged write in the state read after the last
//!   recovery) and convergence.

use std::collections::BTreeMap;

use openraft::ServerState;
use serde::Serialize;

use super::config::INITIAL_BALANCE;
use super::node::{EntryObs, NodeObs};
use super::world::World;
use crate::checkers::convergence::{self, NodeSummary};
use crate::checkers::durability::{self, FinalState};
use crate::checkers::isolation::{self, IsolationConfig, IsolationLevel};
use crate::checkers::linearizable::{self, LinearizabilityConfig};
use crate::checkers::raft_safety::{
    LeaderIdMode, NodeRole, RaftLogEntry, RaftLogId, RaftObservation, RaftSafetyChecker, RaftVote,
};
use crate::checkers::{Verdict, bank};
use crate::history::History;

/// A property violation found in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker (property) that found it.
    pub checker: String,
    /// What it found.
    pub message: String,
}

impl Violation {
    /// A violation of `checker`'s property.
    #[must_use]
    pub fn new(checker: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            checker: checker.into(),
            message: message.into(),
        }
    }
}

fn role(state: ServerState) -> NodeRole {
    match state {
        ServerState::Leader => NodeRole::Leader,
        ServerState::Follower => NodeRole::Follower,
        ServerState::Candidate => NodeRole::Candidate,
        ServerState::Learner => NodeRole::Learner,
        ServerState::Shutdown => NodeRole::Down,
    }
}

#[derive(Debug, Default)]
struct Mirror {
    incarnation: u64,
    log: BTreeMap<u64, EntryObs>,
    committed: Option<RaftLogId>,
}

/// Raft safety over the observations of every node, fed after every step.
#[derive(Debug)]
pub struct RaftChecker {
    checker: RaftSafetyChecker,
    mirrors: BTreeMap<u64, Mirror>,
    step: u64,
}

impl Default for RaftChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl RaftChecker {
    /// A checker for openraft 0.9's leader ids (`(term, node)`).
    #[must_use]
    pub fn new() -> Self {
        Self {
            checker: RaftSafetyChecker::new(LeaderIdMode::Advanced),
            mirrors: BTreeMap::new(),
            step: 0,
        }
    }

    fn convert(&mut self, o: NodeObs) -> RaftObservation {
        let mirror = self.mirrors.entry(o.node).or_default();
        if o.down {
            *mirror = Mirror {
                incarnation: o.incarnation,
                ..Mirror::default()
            };
            return RaftObservation {
                node: o.node,
                term: o.term,
                vote: None,
                leader: None,
                state: NodeRole::Down,
                committed: None,
                last_applied: None,
                log: Vec::new(),
            };
        }
        if mirror.incarnation != o.incarnation {
            *mirror = Mirror {
                incarnation: o.incarnation,
                ..Mirror::default()
            };
        }
        // A failed log read (injected I/O fault) says nothing about the log: keep the mirror.
        if let Some(entries) = o.entries {
            // Entries from `from` on were re-read: replace them; nothing beyond the last index.
            let _ = mirror.log.split_off(&o.from);
            if let Some(last) = o.last_log {
                let _ = mirror.log.split_off(&(last + 1));
            } else {
                mirror.log.clear();
            }
            mirror.log.extend(entries);
            // The log starts above the purged index (read from the log store after the
            // entries, so it covers any entry a purge removed before the read saw it). A
            // purged prefix is not a divergence: drop it. Anything else missing stays a gap,
            // which the checker reports.
            if let Some(p) = o.purged {
                mirror.log = mirror.log.split_off(&(p + 1));
            }
        }
        let applied = o
            .applied
            .map(|(index, term, node)| RaftLogId { term, node, index });
        if applied > mirror.committed {
            mirror.committed = applied;
        }
        RaftObservation {
            node: o.node,
            term: o.term,
            vote: Some(RaftVote {
                term: o.vote.0,
                node: (o.vote.1 != 0).then_some(o.vote.1),
                committed: o.vote.2,
            }),
            leader: o.leader,
            state: role(o.state),
            committed: mirror.committed,
            last_applied: applied,
            log: mirror
                .log
                .iter()
                .map(|(index, e)| RaftLogEntry {
                    index: *index,
                    term: e.term,
                    node: e.leader,
                    digest: e.payload,
                })
                .collect(),
        }
    }

    /// Takes every node's new observations and checks them (one checker step per harness
    /// step).
    pub fn observe(&mut self, world: &World, violations: &mut Vec<Violation>) {
        let mut obs = Vec::new();
        for slot in &world.nodes {
            obs.append(&mut slot.observations.borrow_mut());
        }
        self.observe_step(obs, violations);
    }

    /// Checks one step's observations.
    fn observe_step(&mut self, obs: Vec<NodeObs>, violations: &mut Vec<Violation>) {
        self.step += 1;
        let batch: Vec<RaftObservation> = obs.into_iter().map(|o| self.convert(o)).collect();
        if batch.is_empty() {
            return;
        }
        if let Err(v) = self.checker.observe(self.step, &batch) {
            violations.push(Violation::new("raft-safety", v.to_string()));
        }
    }

    /// (observations, steps) checked.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        self.checker.counts()
    }
}

/// `None` once the cluster converged: every node running, exactly one leader that every node
/// follows in one term, every node applied the leader's last log index, identical state hash.
/// Otherwise why not.
#[must_use]
pub fn converged(world: &World) -> Option<String> {
    let summaries = match summaries(world) {
        Ok(s) => s,
        Err(why) => return Some(why),
    };
    let mut leader_last = None;
    for slot in &world.nodes {
        if let Some(live) = slot.live.borrow().as_ref() {
            let m = live.node.raft().metrics().borrow().clone();
            if m.state == ServerState::Leader {
                leader_last = m.last_log_index;
            }
        }
    }
    match convergence::check(&summaries) {
        Ok(report) if report.verdict == Verdict::Valid => {}
        Ok(report) => return Some(format!("{:?}", report.violations)),
        Err(e) => return Some(e.to_string()),
    }
    let applied = summaries.first().and_then(|s| s.applied).map(|a| a.index);
    if applied != leader_last {
        return Some(format!(
            "applied {applied:?}, the leader's log ends at {leader_last:?}"
        ));
    }
    for slot in &world.nodes {
        if slot.state_hash.get().map(|(v, _)| v) != applied {
            return Some(format!("n{} has not hashed index {applied:?} yet", slot.id));
        }
    }
    None
}

/// Every node's summary for the convergence checker; `Err` if a node is not running.
///
/// # Errors
///
/// A node that is not running.
pub fn summaries(world: &World) -> Result<Vec<NodeSummary>, String> {
    let mut out = Vec::new();
    for slot in &world.nodes {
        let live = slot.live.borrow();
        let Some(live) = live.as_ref() else {
            return Err(format!("n{} is not running", slot.id));
        };
        let m = live.node.raft().metrics().borrow().clone();
        out.push(NodeSummary {
            node: slot.id,
            role: role(m.state),
            term: m.current_term,
            leader: m.current_leader,
            applied: m.last_applied.map(|l| RaftLogId {
                term: l.leader_id.term,
                node: l.leader_id.node_id,
                index: l.index,
            }),
            state_hash: slot
                .state_hash
                .get()
                .map(|(_, h)| h.to_be_bytes().to_vec())
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

fn brief<T: Serialize + std::fmt::Debug>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(3).map(|i| format!("{i:?}")).collect();
    let mut s = shown.join("; ");
    if s.len() > 1_500 {
        s.truncate(1_500);
        s.push_str("...");
    }
    if items.len() > 3 {
        s.push_str(&format!(" (and {} more)", items.len() - 3));
    }
    s
}

/// What the end-of-run checks need besides the histories.
#[derive(Debug)]
pub struct FinalInputs<'a> {
    /// Register and list-append history.
    pub history: &'a History,
    /// Bank history (rw-register transactions over the accounts).
    pub bank: &'a History,
    /// State read by the probe after the last recovery.
    pub final_state: Option<&'a FinalState>,
    /// When the faults were healed and the liveness bound, ns.
    pub healed_nanos: u64,
    /// The liveness deadline, ns.
    pub deadline_nanos: u64,
}

/// The end-of-run checks on the histories; also notes `Unknown` verdicts in `notes`.
pub fn final_checks(
    world: &World,
    inputs: &FinalInputs<'_>,
    violations: &mut Vec<Violation>,
    notes: &mut Vec<String>,
) {
    let mut push = |checker: &str, verdict: Verdict, detail: String| match verdict {
        Verdict::Valid => {}
        Verdict::Invalid => violations.push(Violation::new(checker, detail)),
        Verdict::Unknown => notes.push(format!("{checker}: unknown ({detail})")),
    };
    match linearizable::check(inputs.history, &LinearizabilityConfig::default()) {
        Ok(r) => push(
            "linearizable",
            r.verdict,
            if r.violations.is_empty() {
                format!("{} keys undecided", r.unknown.len())
            } else {
                r.violations
                    .iter()
                    .take(2)
                    .map(|v| format!("key {}: {}", v.key, v.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        ),
        Err(e) => push("linearizable", Verdict::Invalid, e.to_string()),
    }
    match isolation::check(
        inputs.history,
        &IsolationConfig::new(IsolationLevel::Serializable),
    ) {
        Ok(r) if r.txns == 0 => {}
        Ok(r) => push(
            "isolation",
            r.verdict,
            format!(
                "{:?}: {}",
                r.anomaly_types,
                r.anomalies
                    .iter()
                    .take(2)
                    .map(|a| a.explanation.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Err(e) => push("isolation", Verdict::Invalid, e.to_string()),
    }
    let bank_config = bank::BankConfig {
        accounts: (0..world.cfg.accounts).collect(),
        total: i128::from(world.cfg.accounts * INITIAL_BALANCE),
        allow_negative: false,
    };
    if !inputs.bank.is_empty() {
        match bank::check(inputs.bank, &bank_config) {
            Ok(r) => push("bank", r.verdict, brief(&r.violations)),
            Err(e) => push("bank", Verdict::Invalid, e.to_string()),
        }
    }
    match inputs.final_state {
        Some(state) => match durability::check(inputs.history, state) {
            Ok(r) => push("durability", r.verdict, brief(&r.violations)),
            Err(e) => push("durability", Verdict::Invalid, e.to_string()),
        },
        None => push(
            "durability",
            Verdict::Unknown,
            "no final state was read".to_owned(),
        ),
    }
    match convergence::check_progress(inputs.history, inputs.healed_nanos, inputs.deadline_nanos) {
        Ok(r) => push(
            "liveness-progress",
            r.verdict,
            format!("{:?}", r.violations),
        ),
        Err(e) => push("liveness-progress", Verdict::Invalid, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node 1, leader of term 1, with log entries `entries` (all of term 1) re-read from
    /// `from` up to `last`, applied up to `last`.
    fn obs(from: u64, last: u64, entries: Option<Vec<u64>>, purged: Option<u64>) -> NodeObs {
        NodeObs {
            ms: 0,
            node: 1,
            incarnation: 1,
            state: ServerState::Leader,
            term: 1,
            vote: (1, 1, true),
            leader: Some(1),
            last_log: Some(last),
            applied: Some((last, 1, 1)),
            from,
            entries: entries.map(|r| {
                r.into_iter()
                    .map(|i| {
                        (
                            i,
                            EntryObs {
                                term: 1,
                                leader: 1,
                                payload: i,
                            },
                        )
                    })
                    .collect()
            }),
            purged,
            down: false,
        }
    }

    fn run(steps: Vec<NodeObs>) -> (RaftChecker, Vec<Violation>) {
        let mut checker = RaftChecker::new();
        let mut violations = Vec::new();
        for o in steps {
            checker.observe_step(vec![o], &mut violations);
        }
        (checker, violations)
    }

    fn mirrored(checker: &RaftChecker) -> Vec<u64> {
        checker.mirrors[&1].log.keys().copied().collect()
    }

    #[test]
    fn a_purged_prefix_leaves_the_mirror_without_a_violation() {
        // 11..=25 were purged before the re-read saw them; the store's purged index says so.
        let (checker, violations) = run(vec![
            obs(0, 10, Some((1..=10).collect()), None),
            obs(11, 30, Some((26..=30).collect()), Some(25)),
        ]);
        assert_eq!(violations, []);
        assert_eq!(mirrored(&checker), (26..=30).collect::<Vec<_>>());
        // Everything purged, the log empty: nothing is left to compare, nothing is wrong.
        let (checker, violations) = run(vec![
            obs(0, 10, Some((1..=10).collect()), None),
            obs(11, 40, Some(vec![]), Some(40)),
        ]);
        assert_eq!(violations, []);
        assert_eq!(mirrored(&checker), Vec::<u64>::new());
    }

    #[test]
    fn entries_missing_above_the_purged_index_are_a_gap() {
        // Only 1..=5 were purged: 11..=25 vanished from the log without a purge.
        let (_, violations) = run(vec![
            obs(0, 10, Some((1..=10).collect()), None),
            obs(11, 30, Some((26..=30).collect()), Some(5)),
        ]);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].checker, "raft-safety");
        assert!(
            violations[0].message.contains("MalformedLog"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_failed_log_read_keeps_the_mirror() {
        let (checker, violations) = run(vec![
            obs(0, 10, Some((1..=10).collect()), None),
            obs(11, 20, None, None),
        ]);
        assert_eq!(violations, []);
        assert_eq!(mirrored(&checker), (1..=10).collect::<Vec<_>>());
    }
}
