//! Raft safety, checked incrementally after every simulator step over observations of every
//! node: election safety, log matching, leader completeness, state machine safety, and terms,
//! votes, commits and applied indices that never go backwards.
//!
//! Feed [`RaftSafetyChecker::observe`] the nodes' [`RaftObservation`]s after each step (any
//! subset of nodes; a node not observed keeps its last state). Properties:
//!
//! - **Election safety**: at most one leader per leader id. In [`LeaderIdMode::Standard`] (Raft's
//!   rule, openraft's `single-term-leader` feature) a leader id is the term, so two leaders in one
//!   term are a violation. In [`LeaderIdMode::Advanced`] (openraft 0.9's default, which this
//!   project's cluster uses) a leader id is `(term, node)` and several leaders per term are legal;
//!   then the checker requires that a leader holds a committed vote for itself in its term.
//! - **Log matching**: two log entries with the same index and leader id have the same digest and
//!   follow the same entry (so, by induction, the same prefix). Within one log, indices are
//!   consecutive and leader ids never decrease.
//! - **Leader completeness**: an entry known committed while some node was in term `T` is in the
//!   log of every leader of a term above `T` (unless that leader purged it into a snapshot, i.e.
//!   the index is below its first log entry).
//! - **State machine safety**: no two nodes commit or apply different entries (leader ids) at one
//!   index.
//! - **Monotonicity**: a node's term and vote never go backwards, even across crashes (both are
//!   persisted). Its committed and applied log ids never go backwards within one incarnation; an
//!   observation with state `Down` ends the incarnation, so after a restart they may start over
//!   from the persisted value (re-applying entries is checked by state machine safety).
//!
//! Which fields the harness must fill: `node`, `term`, `state` always. `vote`, `leader`,
//! `committed`, `last_applied` and `log` are optional (`None` / empty when unknown; openraft's
//! metrics give `vote`, `current_leader`, `last_applied`, and the log store gives `log` and, with
//! `save_committed`, `committed`). Each property is checked only on what was filled. `log` may be
//! the retained suffix of the log (entries below it purged into a snapshot), but it must be the
//! node's actual, contiguous log: an observer that mirrors the log must drop entries the node
//! truncated or replaced by a snapshot, or stale entries will be reported as violations. The checker costs
//! O(changed log entries) per observation, plus O(newly committed entries) per leader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How openraft identifies a leader (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaderIdMode {
    /// One leader per term; log ids are `(term, index)`.
    Standard,
    /// Leader id `(term, node)`; log ids are `(term, node, index)`. openraft 0.9's default.
    Advanced,
}

/// A node's role at the time of observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    /// Crashed or stopped: ends the node's incarnation; other fields are ignored.
    Down,
}

/// A vote: the leader id voted for and whether a quorum granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RaftVote {
    pub term: u64,
    /// The candidate voted for (`None`: no candidate yet in this term).
    pub node: Option<u64>,
    /// openraft's `Vote::committed`: granted by a quorum.
    pub committed: bool,
}

/// A log id: the entry's index and the leader id that created it (`node` is the leader's node
/// id in [`LeaderIdMode::Advanced`]; ignored in `Standard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RaftLogId {
    pub term: u64,
    pub node: u64,
    pub index: u64,
}

/// One log entry as observed: its log id and a digest of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RaftLogEntry {
    pub index: u64,
    pub term: u64,
    /// The creating leader's node id (Advanced mode); anything in Standard mode.
    pub node: u64,
    /// Digest of the entry's payload (any stable hash; equal payloads, equal digests).
    pub digest: u64,
}

/// What the harness observed of one node after a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftObservation {
    pub node: u64,
    /// Current term (openraft: `current_term`).
    pub term: u64,
    pub vote: Option<RaftVote>,
    /// The leader this node believes in (informational; not checked).
    pub leader: Option<u64>,
    pub state: NodeRole,
    /// Last committed log id, if known.
    pub committed: Option<RaftLogId>,
    /// Last applied log id, if known.
    pub last_applied: Option<RaftLogId>,
    /// The retained log, ascending by index (may be empty when unknown).
    pub log: Vec<RaftLogEntry>,
}

/// Which property failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RaftViolationKind {
    ElectionSafety,
    LeaderWithoutOwnVote,
    LogMatching,
    MalformedLog,
    LeaderCompleteness,
    StateMachineSafety,
    TermWentBackwards,
    VoteWentBackwards,
    CommitWentBackwards,
    AppliedWentBackwards,
}

/// A safety violation, with the step and nodes involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("step {step}: {kind:?} on nodes {nodes:?}: {detail}")]
pub struct RaftViolation {
    pub step: u64,
    pub kind: RaftViolationKind,
    pub nodes: Vec<u64>,
    pub detail: String,
}

/// A leader id as compared by the configured mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct LeaderKey {
    term: u64,
    node: u64,
}

#[derive(Debug, Clone, Copy)]
struct EntryInfo {
    digest: u64,
    prev: Option<LeaderKey>,
    node: u64,
    step: u64,
}

#[derive(Debug, Clone, Copy)]
struct CommittedInfo {
    key: LeaderKey,
    digest: Option<u64>,
    /// Term of the node that reported it committed (the commit happened in a term ≤ this).
    commit_term: u64,
    node: u64,
    step: u64,
}

#[derive(Debug, Default, Clone)]
struct NodeTrack {
    incarnation: u64,
    up: bool,
    term: u64,
    vote: Option<RaftVote>,
    committed: Option<RaftLogId>,
    applied: Option<RaftLogId>,
    log: Vec<RaftLogEntry>,
    /// Entries of this node's log up to this index were already recorded as committed.
    committed_recorded: u64,
}

/// Incremental Raft safety checker (see the module docs).
#[derive(Debug)]
pub struct RaftSafetyChecker {
    mode: LeaderIdMode,
    nodes: BTreeMap<u64, NodeTrack>,
    leaders: BTreeMap<LeaderKey, (u64, u64)>,
    entries: BTreeMap<(u64, LeaderKey), EntryInfo>,
    committed: BTreeMap<u64, CommittedInfo>,
    applied: BTreeMap<u64, (LeaderKey, u64, u64)>,
    /// Per (leader id, leader node): committed indices up to which completeness was checked.
    verified: BTreeMap<(LeaderKey, u64), u64>,
    violations: Vec<RaftViolation>,
    observations: u64,
    steps: u64,
}

impl RaftSafetyChecker {
    /// A checker for a cluster whose openraft build uses `mode`.
    pub fn new(mode: LeaderIdMode) -> RaftSafetyChecker {
        RaftSafetyChecker {
            mode,
            nodes: BTreeMap::new(),
            leaders: BTreeMap::new(),
            entries: BTreeMap::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            verified: BTreeMap::new(),
            violations: Vec::new(),
            observations: 0,
            steps: 0,
        }
    }

    /// Every violation seen so far.
    pub fn violations(&self) -> &[RaftViolation] {
        &self.violations
    }

    /// Observations and steps processed.
    pub fn counts(&self) -> (u64, u64) {
        (self.observations, self.steps)
    }

    /// The highest committed index seen on any node.
    pub fn max_committed_index(&self) -> Option<u64> {
        self.committed.keys().next_back().copied()
    }

    /// Leaders seen, as (term, leader node) in leader-id order.
    pub fn leaders(&self) -> Vec<(u64, u64)> {
        self.leaders
            .values()
            .map(|&(node, _)| node)
            .zip(self.leaders.keys())
            .map(|(n, k)| (k.term, n))
            .collect()
    }

    fn key(&self, term: u64, node: u64) -> LeaderKey {
        match self.mode {
            LeaderIdMode::Standard => LeaderKey { term, node: 0 },
            LeaderIdMode::Advanced => LeaderKey { term, node },
        }
    }

    fn vote_cmp(&self, a: &RaftVote, b: &RaftVote) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        let by_id = match self.mode {
            LeaderIdMode::Advanced => (a.term, a.node).cmp(&(b.term, b.node)),
            LeaderIdMode::Standard => match a.term.cmp(&b.term) {
                Ordering::Equal if a.node == b.node => Ordering::Equal,
                Ordering::Equal => match (a.node, b.node) {
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    _ => {
                        return (a.committed != b.committed).then(|| a.committed.cmp(&b.committed));
                    }
                },
                o => o,
            },
        };
        Some(if by_id == Ordering::Equal {
            a.committed.cmp(&b.committed)
        } else {
            by_id
        })
    }

    /// Checks one step's observations. Returns the first violation found in this step (all are
    /// kept in [`RaftSafetyChecker::violations`]); the checker stays usable afterwards.
    pub fn observe(
        &mut self,
        step: u64,
        observations: &[RaftObservation],
    ) -> Result<(), RaftViolation> {
        self.steps += 1;
        let before = self.violations.len();
        for o in observations {
            self.observations += 1;
            self.observe_one(step, o);
        }
        match self.violations.get(before) {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    fn violation(&mut self, step: u64, kind: RaftViolationKind, nodes: Vec<u64>, detail: String) {
        self.violations.push(RaftViolation {
            step,
            kind,
            nodes,
            detail,
        });
    }

    fn observe_one(&mut self, step: u64, o: &RaftObservation) {
        let n = o.node;
        let mut track = self.nodes.remove(&n).unwrap_or_default();
        if o.state == NodeRole::Down {
            track.up = false;
            track.committed = None;
            track.applied = None;
            self.nodes.insert(n, track);
            return;
        }
        if !track.up {
            track.up = true;
            track.incarnation += 1;
        }

        // Monotonic term and vote (persisted: across incarnations too).
        if o.term < track.term {
            self.violation(
                step,
                RaftViolationKind::TermWentBackwards,
                vec![n],
                format!(
                    "node {n} term {} after {} (incarnation {})",
                    o.term, track.term, track.incarnation
                ),
            );
        }
        track.term = track.term.max(o.term);
        if let (Some(old), Some(new)) = (track.vote, o.vote) {
            match self.vote_cmp(&new, &old) {
                Some(std::cmp::Ordering::Less) | None => self.violation(
                    step,
                    RaftViolationKind::VoteWentBackwards,
                    vec![n],
                    format!(
                        "node {n} vote {new:?} after {old:?} (incarnation {}): a vote must only grow; a \
                         different candidate in the same term means it voted twice",
                        track.incarnation
                    ),
                ),
                _ => {}
            }
        }
        if o.vote.is_some() {
            track.vote = o.vote;
        }

        // Monotonic committed / applied within the incarnation.
        if let (Some(old), Some(new)) = (track.committed, o.committed)
            && new.index < old.index
        {
            self.violation(
                step,
                RaftViolationKind::CommitWentBackwards,
                vec![n],
                format!(
                    "node {n} committed {new:?} after {old:?} in incarnation {}",
                    track.incarnation
                ),
            );
        }
        if o.committed.is_some() {
            track.committed = o.committed;
        }
        if let (Some(old), Some(new)) = (track.applied, o.last_applied)
            && new.index < old.index
        {
            self.violation(
                step,
                RaftViolationKind::AppliedWentBackwards,
                vec![n],
                format!(
                    "node {n} applied {new:?} after {old:?} in incarnation {}",
                    track.incarnation
                ),
            );
        }
        if o.last_applied.is_some() {
            track.applied = o.last_applied;
        }

        // Log well-formedness and log matching, on the part that changed since last time.
        let first_changed = first_difference(&o.log, &track.log);
        let start = first_changed.saturating_sub(1);
        for j in start..o.log.len() {
            let e = o.log[j];
            let key = self.key(e.term, e.node);
            let prev = if j > 0 {
                let p = o.log[j - 1];
                let pk = self.key(p.term, p.node);
                if p.index.checked_add(1) != Some(e.index) || pk > key {
                    self.violation(
                        step,
                        RaftViolationKind::MalformedLog,
                        vec![n],
                        format!(
                            "node {n} log has {p:?} followed by {e:?}: a gap or a leader id going back (the \
                             observation must be the node's actual contiguous log)"
                        ),
                    );
                }
                (p.index.checked_add(1) == Some(e.index)).then_some(pk)
            } else {
                None
            };
            if j < first_changed {
                continue; // only needed as `prev`
            }
            match self.entries.get_mut(&(e.index, key)) {
                None => {
                    self.entries.insert(
                        (e.index, key),
                        EntryInfo {
                            digest: e.digest,
                            prev,
                            node: n,
                            step,
                        },
                    );
                }
                Some(info) => {
                    let info = *info;
                    if info.digest != e.digest {
                        self.violation(
                            step,
                            RaftViolationKind::LogMatching,
                            vec![info.node, n],
                            format!(
                                "index {} term {} (leader node {}): digest {:#x} on node {} (step {}) but {:#x} on \
                                 node {n}",
                                e.index, e.term, key.node, info.digest, info.node, info.step, e.digest
                            ),
                        );
                    } else if let (Some(a), Some(b)) = (info.prev, prev)
                        && a != b
                    {
                        self.violation(
                            step,
                            RaftViolationKind::LogMatching,
                            vec![info.node, n],
                            format!(
                                "entry index {} term {} follows an entry of leader id {a:?} on node {} but {b:?} on \
                                 node {n}: same entry, different prefix",
                                e.index, e.term, info.node
                            ),
                        );
                    } else if info.prev.is_none()
                        && prev.is_some()
                        && let Some(slot) = self.entries.get_mut(&(e.index, key))
                    {
                        slot.prev = prev;
                    }
                }
            }
        }
        track.log.truncate(first_changed);
        track
            .log
            .extend_from_slice(o.log.get(first_changed..).unwrap_or(&[]));

        // Committed entries: record, and check they agree across nodes.
        if let Some(c) = o.committed {
            let c_key = self.key(c.term, c.node);
            let mut newly: Vec<(u64, LeaderKey, Option<u64>)> = vec![(c.index, c_key, None)];
            // Only entries not recorded before, or that changed since the last observation.
            let changed_from = o.log.get(first_changed).map_or(u64::MAX, |e| e.index);
            let from = track.committed_recorded.saturating_add(1).min(changed_from);
            let start = o.log.partition_point(|e| e.index < from);
            for e in o.log[start..].iter().take_while(|e| e.index <= c.index) {
                newly.push((e.index, self.key(e.term, e.node), Some(e.digest)));
            }
            track.committed_recorded = track.committed_recorded.max(c.index);
            for (index, key, digest) in newly {
                match self.committed.get_mut(&index) {
                    None => {
                        self.committed.insert(
                            index,
                            CommittedInfo {
                                key,
                                digest,
                                commit_term: o.term,
                                node: n,
                                step,
                            },
                        );
                    }
                    Some(info) => {
                        let info_copy = *info;
                        if info_copy.key != key
                            || matches!((info_copy.digest, digest), (Some(a), Some(b)) if a != b)
                        {
                            self.violation(
                                step,
                                RaftViolationKind::StateMachineSafety,
                                vec![info_copy.node, n],
                                format!(
                                    "index {index} committed as {:?} digest {:?} on node {} (step {}) but as {key:?} \
                                     digest {digest:?} on node {n}",
                                    info_copy.key, info_copy.digest, info_copy.node, info_copy.step
                                ),
                            );
                        } else if info_copy.digest.is_none()
                            && digest.is_some()
                            && let Some(slot) = self.committed.get_mut(&index)
                        {
                            slot.digest = digest;
                        }
                    }
                }
            }
        }

        // Applied entries: one entry per index cluster-wide, consistent with the committed one.
        if let Some(a) = o.last_applied {
            let key = self.key(a.term, a.node);
            match self.applied.get(&a.index) {
                None => {
                    self.applied.insert(a.index, (key, n, step));
                }
                Some(&(k0, n0, s0)) if k0 != key => self.violation(
                    step,
                    RaftViolationKind::StateMachineSafety,
                    vec![n0, n],
                    format!(
                        "index {} applied as leader id {k0:?} on node {n0} (step {s0}) but as {key:?} on node {n}",
                        a.index
                    ),
                ),
                Some(_) => {}
            }
            if let Some(info) = self.committed.get(&a.index).copied()
                && info.key != key
            {
                self.violation(
                    step,
                    RaftViolationKind::StateMachineSafety,
                    vec![info.node, n],
                    format!(
                        "node {n} applied {a:?} at index {} but {:?} was committed there (node {}, step {})",
                        a.index, info.key, info.node, info.step
                    ),
                );
            }
        }

        // Election safety.
        if o.state == NodeRole::Leader {
            let lk = self.key(o.term, n);
            match self.leaders.get(&lk) {
                Some(&(other, s0)) if other != n => self.violation(
                    step,
                    RaftViolationKind::ElectionSafety,
                    vec![other, n],
                    format!(
                        "two leaders in term {}: node {other} (step {s0}) and node {n}",
                        o.term
                    ),
                ),
                Some(_) => {}
                None => {
                    self.leaders.insert(lk, (n, step));
                }
            }
            if self.mode == LeaderIdMode::Advanced
                && let Some(v) = o.vote
                && (v.term != o.term || v.node != Some(n) || !v.committed)
            {
                self.violation(
                    step,
                    RaftViolationKind::LeaderWithoutOwnVote,
                    vec![n],
                    format!("node {n} is leader in term {} with vote {v:?}", o.term),
                );
            }
            self.check_completeness(step, n, o);
        }
        self.nodes.insert(n, track);
    }

    /// Every entry committed in a term below the leader's must be in its log.
    fn check_completeness(&mut self, step: u64, n: u64, o: &RaftObservation) {
        if o.log.is_empty() {
            return; // log not observed
        }
        let lk = (self.key(o.term, n), n);
        let from = self.verified.get(&lk).map_or(0, |v| v + 1);
        let first = o.log.first().map_or(0, |e| e.index);
        let mut found: Vec<(u64, CommittedInfo, Option<RaftLogEntry>)> = Vec::new();
        let mut upto = None;
        for (&index, info) in self.committed.range(from..) {
            upto = Some(index);
            if info.commit_term >= o.term || index < first {
                continue;
            }
            let entry = o
                .log
                .binary_search_by_key(&index, |e| e.index)
                .ok()
                .and_then(|p| o.log.get(p))
                .copied();
            let ok = entry.is_some_and(|e| {
                self.key(e.term, e.node) == info.key && info.digest.is_none_or(|d| d == e.digest)
            });
            if !ok {
                found.push((index, *info, entry));
            }
        }
        if let Some(u) = upto {
            self.verified.insert(lk, u);
        }
        for (index, info, entry) in found {
            self.violation(
                step,
                RaftViolationKind::LeaderCompleteness,
                vec![info.node, n],
                format!(
                    "index {index} was committed as {:?} (seen on node {} in term {}, step {}) but leader {n} of term \
                     {} has {entry:?} there",
                    info.key, info.node, info.commit_term, info.step, o.term
                ),
            );
        }
    }
}

/// Length of the common prefix of two logs. The common case (the new log extends the old one)
/// is settled with one slice comparison.
fn first_difference(new: &[RaftLogEntry], old: &[RaftLogEntry]) -> usize {
    if new.len() >= old.len() && new.get(..old.len()) == Some(old) {
        return old.len();
    }
    new.iter().zip(old).take_while(|(a, b)| a == b).count()
}
