//! Our own persisted mirrors of openraft's types. They are what goes into the framed format
//! ([`crate::frame`]); openraft's serde shapes are never persisted, so an openraft upgrade
//! cannot silently change what is on disk.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership,
    Vote,
};
use serde::{Deserialize, Serialize};

use crate::types::{NodeId, Request, Response, TypeConfig};

/// Mirror of `openraft::LogId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogIdRecord {
    /// Term of the leader that proposed it.
    pub term: u64,
    /// That leader's node id.
    pub node_id: NodeId,
    /// Log index.
    pub index: u64,
}

impl From<&LogId<NodeId>> for LogIdRecord {
    fn from(id: &LogId<NodeId>) -> Self {
        Self {
            term: id.leader_id.term,
            node_id: id.leader_id.node_id,
            index: id.index,
        }
    }
}

impl From<LogIdRecord> for LogId<NodeId> {
    fn from(r: LogIdRecord) -> Self {
        LogId::new(CommittedLeaderId::new(r.term, r.node_id), r.index)
    }
}

/// Mirror of `openraft::Vote`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    /// Term.
    pub term: u64,
    /// Candidate or leader voted for.
    pub node_id: NodeId,
    /// Whether a quorum granted it.
    pub committed: bool,
}

impl From<&Vote<NodeId>> for VoteRecord {
    fn from(v: &Vote<NodeId>) -> Self {
        Self {
            term: v.leader_id.term,
            node_id: v.leader_id.node_id,
            committed: v.committed,
        }
    }
}

impl From<VoteRecord> for Vote<NodeId> {
    fn from(r: VoteRecord) -> Self {
        if r.committed {
            Vote::new_committed(r.term, r.node_id)
        } else {
            Vote::new(r.term, r.node_id)
        }
    }
}

/// Mirror of `openraft::Membership`: joint configs of voter ids, and every node's address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    /// Voter sets (two while in joint consensus).
    pub configs: Vec<BTreeSet<NodeId>>,
    /// Every node (voters and learners) with its address.
    pub nodes: BTreeMap<NodeId, String>,
}

impl From<&Membership<NodeId, BasicNode>> for MembershipRecord {
    fn from(m: &Membership<NodeId, BasicNode>) -> Self {
        Self {
            configs: m.get_joint_config().clone(),
            nodes: m.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
        }
    }
}

impl From<MembershipRecord> for Membership<NodeId, BasicNode> {
    fn from(r: MembershipRecord) -> Self {
        let nodes: BTreeMap<NodeId, BasicNode> = r
            .nodes
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        Membership::new(r.configs, nodes)
    }
}

/// Mirror of `openraft::StoredMembership`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMembershipRecord {
    /// The entry that carried it.
    pub log_id: Option<LogIdRecord>,
    /// The membership.
    pub membership: MembershipRecord,
}

impl From<&StoredMembership<NodeId, BasicNode>> for StoredMembershipRecord {
    fn from(m: &StoredMembership<NodeId, BasicNode>) -> Self {
        Self {
            log_id: m.log_id().as_ref().map(LogIdRecord::from),
            membership: m.membership().into(),
        }
    }
}

impl From<StoredMembershipRecord> for StoredMembership<NodeId, BasicNode> {
    fn from(r: StoredMembershipRecord) -> Self {
        StoredMembership::new(r.log_id.map(LogId::from), r.membership.into())
    }
}

/// Payload of a persisted log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadRecord {
    /// A new leader's blank entry.
    Blank,
    /// Application data.
    Normal(Request),
    /// A membership change.
    Membership(MembershipRecord),
}

/// A persisted log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Its log id.
    pub log_id: LogIdRecord,
    /// Its payload.
    pub payload: PayloadRecord,
}

impl From<&openraft::Entry<TypeConfig>> for LogRecord {
    fn from(e: &openraft::Entry<TypeConfig>) -> Self {
        Self {
            log_id: (&e.log_id).into(),
            payload: match &e.payload {
                EntryPayload::Blank => PayloadRecord::Blank,
                EntryPayload::Normal(r) => PayloadRecord::Normal(r.clone()),
                EntryPayload::Membership(m) => PayloadRecord::Membership(m.into()),
            },
        }
    }
}

impl From<LogRecord> for openraft::Entry<TypeConfig> {
    fn from(r: LogRecord) -> Self {
        Self {
            log_id: r.log_id.into(),
            payload: match r.payload {
                PayloadRecord::Blank => EntryPayload::Blank,
                PayloadRecord::Normal(req) => EntryPayload::Normal(req),
                PayloadRecord::Membership(m) => EntryPayload::Membership(m.into()),
            },
        }
    }
}

/// The state machine's applied state, written atomically with the data of every entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRecord {
    /// The last applied log id.
    pub last_applied: Option<LogIdRecord>,
    /// The last applied membership.
    pub membership: StoredMembershipRecord,
}

/// A client session's latest request and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The session.
    pub client: u64,
    /// Its latest applied request number.
    pub serial: u64,
    /// That request's response.
    pub response: Response,
}

/// Mirror of `openraft::SnapshotMeta`, plus what the snapshot file holds besides data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMetaRecord {
    /// Last log id included.
    pub last_log_id: Option<LogIdRecord>,
    /// Membership as of that log id.
    pub membership: StoredMembershipRecord,
    /// openraft's snapshot id.
    pub snapshot_id: String,
}

impl From<&SnapshotMeta<NodeId, BasicNode>> for SnapshotMetaRecord {
    fn from(m: &SnapshotMeta<NodeId, BasicNode>) -> Self {
        Self {
            last_log_id: m.last_log_id.as_ref().map(LogIdRecord::from),
            membership: (&m.last_membership).into(),
            snapshot_id: m.snapshot_id.clone(),
        }
    }
}

impl From<SnapshotMetaRecord> for SnapshotMeta<NodeId, BasicNode> {
    fn from(r: SnapshotMetaRecord) -> Self {
        SnapshotMeta {
            last_log_id: r.last_log_id.map(LogId::from),
            last_membership: r.membership.into(),
            snapshot_id: r.snapshot_id,
        }
    }
}

/// One part of a snapshot file, in order: `Header`, then per collection `Collection` followed
/// by its `Entries`, then `Clients`, `SessionFloor`, then `End`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotPart {
    /// What the snapshot is.
    Header {
        /// Its metadata.
        meta: SnapshotMetaRecord,
    },
    /// The entries that follow belong to this user collection.
    Collection(String),
    /// Raw stored versions (backend key, backend value) of the current collection, ascending.
    Entries(Vec<(Vec<u8>, Vec<u8>)>),
    /// Client sessions.
    Clients(Vec<ClientRecord>),
    /// The session floor: sessions opened below this log index whose records are gone have
    /// expired (see `state_machine::SessionLimits`).
    SessionFloor(u64),
    /// End marker with the number of entries written, for a completeness check.
    End {
        /// Total number of data entries.
        entries: u64,
        /// Versions below this may be missing (garbage collected at the source while the
        /// snapshot was read).
        gc_floor: u64,
    },
}
