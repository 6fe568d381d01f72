//! A node's view of the cluster, for `zstore cluster status` and monitoring.

use std::collections::BTreeMap;

use openraft::{RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

use crate::types::{Node, NodeId};

/// Replication progress of one follower or learner, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    /// The highest log index known to be replicated to it.
    pub matched: Option<u64>,
    /// How many entries it is behind the leader's last log index.
    pub lag: u64,
}

/// A node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// This node's last log index.
    pub last_log_index: Option<u64>,
    /// The last committed index this node persisted (may trail the leader's by a heartbeat).
    pub committed_index: Option<u64>,
    /// The last index applied to the engine (= the latest readable version).
    pub applied_index: Option<u64>,
    /// The last index included in this node's snapshot.
    pub snapshot_index: Option<u64>,
    /// The voters.
    pub voters: Vec<NodeId>,
    /// The learners.
    pub learners: Vec<NodeId>,
    /// Every node's address.
    pub nodes: BTreeMap<NodeId, String>,
    /// On the leader: progress per follower and learner.
    pub replication: BTreeMap<NodeId, Replication>,
}

impl ClusterStatus {
    pub(crate) fn from_metrics(m: &RaftMetrics<NodeId, Node>, committed: Option<u64>) -> Self {
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let last = m.last_log_index.unwrap_or(0);
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != m.id)
                    .map(|(id, matched)| {
                        let matched = matched.as_ref().map(|l| l.index);
                        let lag = last.saturating_sub(matched.unwrap_or(0));
                        (*id, Replication { matched, lag })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            id: m.id,
            role: role.to_owned(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: committed,
            applied_index: m.last_applied.as_ref().map(|l| l.index),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            replication,
        }
    }
}
