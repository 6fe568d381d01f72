//! Node hosts: each cluster node is a turmoil host running [`ClusterNode`] on the simulated
//! network ([`SimTransport`]) and the simulated disk, plus the workload gateway and an
//! observer that publishes what the harness checks.
//!
//! The host closure captures only the shared [`World`] and the node's index; everything else
//! is rebuilt from the simulated disk on every start (turmoil calls the closure again on
//! every bounce). What must outlive an incarnation — the node's disk, the incarnation number,
//! its observations — lives in the harness's [`NodeSlot`], outside the host.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::{EntryPayload, RaftLogReader, ServerState};
use zcore_cluster::config::{RaftSettings, TimeoutSettings};
use zcore_cluster::{ClusterNode, LogStore, MemorySnapshots, NodeConfig, SnapshotStorage};
use zcore_engine::{EngineOptions, StorageBackend};

use super::gateway::{self, GATEWAY_PORT};
use super::rng::{self, Stream};
use super::store::NodeStore;
use super::trace::fnv1a;
use super::transport::SimTransport;
use super::world::World;

/// The Raft port on every node host.
pub const RAFT_PORT: u16 = 7000;

/// The turmoil host name of node `id`.
#[must_use]
pub fn host_name(id: u64) -> String {
    format!("n{id}")
}

/// One log entry as observed: term and a hash of its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryObs {
    /// The term of the leader that created it.
    pub term: u64,
    /// The node id of that leader.
    pub leader: u64,
    /// FNV-1a of the encoded payload.
    pub payload: u64,
}

/// What a node reported at one moment of one incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeObs {
    /// Simulated time, ms.
    pub ms: u64,
    /// Node id.
    pub node: u64,
    /// Incarnation (1 = first start).
    pub incarnation: u64,
    /// Leader, follower, candidate, learner.
    pub state: ServerState,
    /// Current term.
    pub term: u64,
    /// The vote: (term, candidate, committed).
    pub vote: (u64, u64, bool),
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Last log index.
    pub last_log: Option<u64>,
    /// Last applied log id (index, term, leader node).
    pub applied: Option<(u64, u64, u64)>,
    /// Log entries from this index on were re-read (everything after the previously
    /// applied index; 0 on the first observation of an incarnation).
    pub from: u64,
    /// Those entries, up to the last log index; `None`: the observation says nothing about
    /// the log (the observer publishes nothing at all when a log read fails, see `observe`).
    pub entries: Option<BTreeMap<u64, EntryObs>>,
    /// The last log index purged into a snapshot: the log holds nothing at or below it (the
    /// higher of the metrics' and, after a log read, the log store's own record).
    pub purged: Option<u64>,
    /// The incarnation ended (killed); every other field but `node`/`incarnation` is unset.
    pub down: bool,
}

/// The live parts of a running incarnation.
#[derive(Debug)]
pub struct Live {
    /// The node.
    pub node: ClusterNode,
}

/// Per-node state the harness keeps outside the host.
#[derive(Debug)]
pub struct NodeSlot {
    /// Node id.
    pub id: u64,
    /// Incarnations started so far.
    pub incarnation: Cell<u64>,
    /// The running incarnation, if any (cleared before the host is crashed or bounced, so
    /// the harness never holds a handle into a dead incarnation).
    pub live: RefCell<Option<Live>>,
    /// The node's simulated disk and its dead flag.
    pub store: NodeStore,
    /// Observations not yet taken by the harness.
    pub observations: RefCell<Vec<NodeObs>>,
    /// The node's snapshot directory (in memory, see [`SnapshotStorage::Memory`]): kept
    /// across incarnations like a disk, so a finished snapshot survives restarts.
    pub snapshots: MemorySnapshots,
    /// Why the last start failed (a recovery failure is a violation).
    pub start_error: RefCell<Option<String>>,
    /// (applied index, state hash) computed by the node during the liveness phase.
    pub state_hash: Cell<Option<(u64, u64)>>,
    /// Whether the host is down (crashed, waiting for its restart).
    pub down: Cell<bool>,
    /// The running incarnation stopped on a storage failure (fail-stop, see [`fail_stop`]);
    /// cleared when the next incarnation starts.
    pub stopped: Cell<bool>,
    /// The running incarnation's Raft core stopped although its disk injected no error (a
    /// finding: nothing in the simulation should stop it).
    pub stop_error: RefCell<Option<String>>,
}

impl NodeSlot {
    /// A slot for node `id`.
    #[must_use]
    pub fn new(id: u64, store: NodeStore) -> Self {
        Self {
            id,
            incarnation: Cell::new(0),
            live: RefCell::new(None),
            store,
            snapshots: MemorySnapshots::new(),
            observations: RefCell::new(Vec::new()),
            start_error: RefCell::new(None),
            state_hash: Cell::new(None),
            down: Cell::new(false),
            stopped: Cell::new(false),
            stop_error: RefCell::new(None),
        }
    }
}

fn node_config(world: &World, id: u64) -> NodeConfig {
    let cfg = &world.cfg;
    let mut config = NodeConfig::new(id, format!("0.0.0.0:{RAFT_PORT}"), format!("/data/n{id}"));
    config.advertise = Some(format!("{}:{RAFT_PORT}", host_name(id)));
    if id == 1 {
        config.bootstrap = cfg
            .node_ids()
            .map(|n| (n.to_string(), format!("{}:{RAFT_PORT}", host_name(n))))
            .collect();
    }
    config.raft = RaftSettings {
        heartbeat_ms: cfg.heartbeat_ms,
        election_timeout_min_ms: cfg.election_ms.0,
        election_timeout_max_ms: cfg.election_ms.1,
        // Snapshots are kept in memory (`SnapshotStorage::Memory`, see `run`): tokio::fs would
        // use the blocking pool and the real disk.
        snapshot_after_logs: cfg.snapshot_after_logs,
        logs_kept_after_snapshot: cfg.logs_kept_after_snapshot,
    };
    config.timeouts = TimeoutSettings {
        connect_ms: 250,
        rpc_ms: 600,
        idle_ms: 1_500,
        request_ms: 2_000,
    };
    config
}

/// The host body of node `index` (one incarnation).
pub async fn run(world: Rc<World>, index: usize) -> turmoil::Result {
    let Some(slot) = world.nodes.get(index) else {
        return Err("no such node".into());
    };
    let id = slot.id;
    let incarnation = slot.incarnation.get() + 1;
    slot.incarnation.set(incarnation);
    slot.state_hash.set(None);
    slot.stopped.set(false);
    zcore_cluster::runtime::seed_rng(rng::derive(
        world.cfg.seed,
        Stream::Raft,
        (id << 32) | incarnation,
    ));
    let who = host_name(id);
    world.log(&who, &format!("start incarnation={incarnation}"));
    let backend: Arc<dyn StorageBackend> = match slot.store.open(&world).await {
        Ok(b) => b,
        Err(e) => return failed(&world, slot, &who, format!("opening the store: {e}")).await,
    };
    let options = EngineOptions {
        disable_conflict_detection: world.controls.no_conflict_detection,
        // No background GC task: collections happen inline, deterministic either way, but
        // fewer timers keep the trace small.
        gc_interval: None,
        ..EngineOptions::default()
    };
    let node = match ClusterNode::start_with_snapshots(
        node_config(&world, id),
        Arc::clone(&backend),
        Arc::new(SimTransport),
        options,
        SnapshotStorage::Memory(slot.snapshots.clone()),
    )
    .await
    {
        Ok(n) => n,
        Err(e) => return failed(&world, slot, &who, format!("starting the node: {e}")).await,
    };
    let log = match LogStore::open(Arc::clone(&backend)).await {
        Ok(l) => l,
        Err(e) => return failed(&world, slot, &who, format!("opening the log: {e}")).await,
    };
    drop(backend);
    *slot.live.borrow_mut() = Some(Live { node: node.clone() });
    world.log(&who, "running");
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", GATEWAY_PORT)).await?;
    tokio::task::spawn_local(gateway::serve(
        listener,
        node.clone(),
        Duration::from_millis(world.cfg.op_timeout_ms + 1_000),
    ));
    observe(&world, index, incarnation, node, log).await;
    Ok(())
}

/// A start that failed: a recovery failure (a violation), unless the disk injected an error
/// during it (a disk-fault episode), which is a fail-stop like any other storage failure.
async fn failed(world: &World, slot: &NodeSlot, who: &str, message: String) -> turmoil::Result {
    world.log(who, &format!("start failed: {message}"));
    if slot.store.faulted_since_open() {
        fail_stop(world, slot, who);
    } else {
        *slot.start_error.borrow_mut() = Some(message);
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// Fail-stop of the running incarnation after a storage failure: openraft stops its core on
/// any storage error, and a store that cannot be opened stops the start. The incarnation is
/// ended as a crash ends one ([`faults::kill`](super::faults::kill): its disk is marked dead,
/// so nothing of it reaches the disk or answers from it any more; the harness drops its
/// handle; the Raft checker sees the incarnation end), but the host keeps its page cache. If
/// the disk injected an error since the store was opened, the schedule restarts the node
/// when the disk-fault episode ends; otherwise the stop is a finding.
fn fail_stop(world: &World, slot: &NodeSlot, who: &str) {
    if slot.stopped.replace(true) {
        return;
    }
    if slot.store.faulted_since_open() {
        world.log(who, "fail-stop (injected disk fault)");
    } else {
        world.log(who, "fail-stop without an injected disk fault");
        *slot.stop_error.borrow_mut() = Some(format!(
            "incarnation {} stopped on a storage failure, but its disk injected no error",
            slot.incarnation.get()
        ));
    }
    super::faults::kill(world, slot.id);
}

/// Publishes an observation on every metrics change; in the liveness phase also the state
/// hash at every applied index.
async fn observe(
    world: &World,
    index: usize,
    incarnation: u64,
    node: ClusterNode,
    mut log: LogStore,
) {
    let Some(slot) = world.nodes.get(index) else {
        return;
    };
    let who = host_name(slot.id);
    let mut metrics = node.raft().metrics();
    let mut applied_seen: Option<u64> = None;
    let mut last_line = String::new();
    loop {
        let m = metrics.borrow_and_update().clone();
        // A storage error stops openraft's core: its last metrics are not persisted state
        // (openraft flushes in-memory metrics on the way out), so they are not observed; the
        // incarnation ends here.
        if let Err(e) = &m.running_state {
            world.log(&who, &format!("raft stopped: {e}"));
            fail_stop(world, slot, &who);
            std::future::pending::<()>().await;
        }
        // openraft publishes placeholder metrics (term 0, empty log) until its core has
        // loaded the persisted state; a restarted node's placeholder is not an observation.
        if incarnation > 1
            && m.current_term == 0
            && m.last_log_index.is_none()
            && m.last_applied.is_none()
        {
            if metrics.changed().await.is_err() {
                return;
            }
            continue;
        }
        let last_log = m.last_log_index;
        let applied = m
            .last_applied
            .map(|l| (l.index, l.leader_id.term, l.leader_id.node_id));
        let from = applied_seen.map_or(0, |a| a + 1);
        let mut entries = BTreeMap::new();
        let mut purged = m.purged.map(|p| p.index);
        if let Some(last) = last_log
            && last >= from
        {
            // The store's purged index read after the entries covers every purge that removed
            // one of them meanwhile (it is written with a purge's first deletion), so the
            // checker can tell a purged prefix from a gap. The metrics may lag behind it.
            let read = match log.try_get_log_entries(from..=last).await {
                Ok(read) => log
                    .purged_index()
                    .await
                    .map(|p| (read, p))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let read = match read {
                Ok((read, p)) => {
                    purged = purged.max(p);
                    read
                }
                Err(e) => {
                    // The disk failed the read (a disk-fault episode): observe nothing now,
                    // neither a log with a hole nor a new state (a new term, leadership)
                    // beside a log that lacks its entries; the next change re-reads from
                    // `from`.
                    world.log(&who, &format!("observer: reading the log failed: {e}"));
                    if metrics.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            for e in read {
                let payload = match &e.payload {
                    EntryPayload::Blank => 0,
                    other => postcard::to_allocvec(other)
                        .map(|b| fnv1a(0xcbf2_9ce4_8422_2325, &b))
                        .unwrap_or(1),
                };
                entries.insert(
                    e.log_id.index,
                    EntryObs {
                        term: e.log_id.leader_id.term,
                        leader: e.log_id.leader_id.node_id,
                        payload,
                    },
                );
            }
        }
        applied_seen = applied.map(|a| a.0).or(applied_seen);
        let obs = NodeObs {
            ms: world.now_ms(),
            node: slot.id,
            incarnation,
            state: m.state,
            term: m.current_term,
            vote: (
                m.vote.leader_id().term,
                m.vote.leader_id().voted_for().unwrap_or(0),
                m.vote.is_committed(),
            ),
            leader: m.current_leader,
            last_log,
            applied,
            from,
            entries: Some(entries),
            purged,
            down: false,
        };
        let line = format!(
            "{:?} term={} leader={:?} last_log={:?} applied={:?}",
            obs.state,
            obs.term,
            obs.leader,
            obs.last_log,
            obs.applied.map(|a| a.0)
        );
        if line != last_line {
            world.log(&who, &line);
            last_line = line;
        }
        slot.observations.borrow_mut().push(obs);
        if world.liveness.get() {
            let index_now = applied.map_or(0, |a| a.0);
            if slot.state_hash.get().map(|(i, _)| i) != Some(index_now)
                && let Some(hashed) = state_hash(&node).await
            {
                slot.state_hash.set(Some(hashed));
            }
        }
        // In the liveness phase also wake periodically so the hash is computed even when
        // the metrics are quiet.
        tokio::select! {
            biased;
            changed = metrics.changed() => if changed.is_err() { return; },
            () = tokio::time::sleep(Duration::from_millis(50)), if world.liveness.get() => {}
        }
    }
}

/// (version, FNV-1a over every user collection's entries) at this node's latest version.
async fn state_hash(node: &ClusterNode) -> Option<(u64, u64)> {
    let engine = node.engine();
    let txn = engine.begin_read();
    let mut hash = fnv1a(0xcbf2_9ce4_8422_2325, &txn.version().to_be_bytes());
    for collection in engine.collections() {
        hash = fnv1a(hash, collection.as_str().as_bytes());
        let entries = txn.scan_prefix(&collection, b"").await.ok()?;
        for (k, v) in entries {
            hash = fnv1a(hash, &k);
            hash = fnv1a(hash, &v);
        }
    }
    Some((txn.version(), hash))
}
