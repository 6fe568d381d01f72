//! Three nodes in one process over real loopback TCP: election, replication, reads on every
//! node, leader failover without losing acknowledged writes, catch-up of a restarted node
//! through a snapshot after log purge, membership changes under load, bad input, and a start
//! that makes the store durable before it reads its Raft state.
//!
//! Every wait polls with a generous deadline; nothing sleeps and then asserts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use zcore_backends::BackendName;
use zcore_cluster::config::{RaftSettings, TimeoutSettings};
use zcore_cluster::{
    ClusterError, ClusterNode, NodeConfig, NodeId, ReadConsistency, TcpTransport, Transport,
};
use zcore_engine::CollectionName;

const DEADLINE: Duration = Duration::from_secs(30);

fn config(id: NodeId, listen: &str, dir: &Path, backend: BackendName) -> NodeConfig {
    let mut c = NodeConfig::new(id, listen, dir.join(format!("node{id}")));
    c.backend = backend;
    c.raft = RaftSettings {
        heartbeat_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        snapshot_after_logs: 1_000_000,
        logs_kept_after_snapshot: 0,
    };
    c.timeouts = TimeoutSettings {
        connect_ms: 500,
        rpc_ms: 1_000,
        idle_ms: 10_000,
        request_ms: 10_000,
    };
    c
}

fn transport() -> Arc<dyn Transport> {
    Arc::new(TcpTransport)
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_cluster(dir: &Path, backend: BackendName) -> Vec<ClusterNode> {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let node = ClusterNode::start(config(id, "127.0.0.1:0", dir, backend), transport())
            .await
            .unwrap();
        nodes.push(node);
    }
    let members: BTreeMap<NodeId, String> = nodes
        .iter()
        .map(|n| (n.id(), n.addr().to_owned()))
        .collect();
    nodes[0].initialize(members).await.unwrap();
    wait_for_leader(&nodes).await;
    nodes
}

/// Waits until every node agrees on one leader among `nodes`; returns its id.
async fn wait_for_leader(nodes: &[ClusterNode]) -> NodeId {
    let ids: BTreeSet<NodeId> = nodes.iter().map(ClusterNode::id).collect();
    let mut leader = 0;
    eventually("one agreed leader", || {
        let views: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|n| n.raft().metrics().borrow().current_leader)
            .collect();
        let agreed = views[0].filter(|l| ids.contains(l) && views.iter().all(|v| *v == Some(*l)));
        if let Some(l) = agreed {
            leader = l;
        }
        async move { agreed.is_some() }
    })
    .await;
    leader
}

fn kv() -> CollectionName {
    CollectionName::new("kv").unwrap()
}

async fn put(node: &ClusterNode, key: &str, value: &str) -> Result<u64, ClusterError> {
    let mut txn = node.begin_write().await?;
    txn.put(&kv(), key.as_bytes().to_vec(), value.as_bytes().to_vec())?;
    node.commit(txn).await
}

async fn get(node: &ClusterNode, key: &str, consistency: ReadConsistency) -> Option<String> {
    let txn = node.begin_read(consistency).await.unwrap();
    txn.get(&kv(), key.as_bytes())
        .await
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_replication_failover_and_catch_up_through_a_snapshot() {
    let dir = TempDir::new().unwrap();
    let mut nodes = start_cluster(dir.path(), BackendName::Redb).await;
    nodes[1].create_collection("kv").await.unwrap();

    // Writes through every node: followers forward to the leader.
    let mut acked = BTreeMap::new();
    for i in 0..30 {
        let node = &nodes[i % 3];
        let (k, v) = (format!("k{i:03}"), format!("v{i}"));
        let version = put(node, &k, &v).await.unwrap();
        assert!(version > 0);
        acked.insert(k, v);
    }
    // Readable on every node: linearizable reads need no waiting.
    for node in &nodes {
        for (k, v) in &acked {
            assert_eq!(
                get(node, k, ReadConsistency::Linearizable).await.as_deref(),
                Some(v.as_str())
            );
        }
    }
    // Versions are log indexes, identical on every replica.
    let latest: Vec<u64> = {
        let target = nodes[0].engine().latest_version();
        for node in &nodes {
            let n = node.clone();
            eventually("replicas applied the same index", move || {
                let n = n.clone();
                async move { n.engine().latest_version() >= target }
            })
            .await;
        }
        nodes.iter().map(|n| n.engine().latest_version()).collect()
    };
    assert!(latest.iter().all(|v| *v >= latest[0]));

    // Kill the leader.
    let old_leader = wait_for_leader(&nodes).await;
    let pos = nodes.iter().position(|n| n.id() == old_leader).unwrap();
    let dead = nodes.remove(pos);
    let dead_addr = dead.addr().to_owned();
    let started = tokio::time::Instant::now();
    dead.shutdown().await.unwrap();
    drop(dead);
    let new_leader = wait_for_leader(&nodes).await;
    assert_ne!(new_leader, old_leader);
    let elected_in = started.elapsed();
    assert!(elected_in < DEADLINE, "new leader after {elected_in:?}");

    // No acknowledged write lost; the cluster keeps accepting writes.
    for node in &nodes {
        for (k, v) in &acked {
            assert_eq!(
                get(node, k, ReadConsistency::Linearizable).await.as_deref(),
                Some(v.as_str()),
                "acknowledged write {k} lost on node {}",
                node.id()
            );
        }
    }
    for i in 30..60 {
        let (k, v) = (format!("k{i:03}"), format!("v{i}"));
        put(&nodes[i % 2], &k, &v).await.unwrap();
        acked.insert(k, v);
    }

    // Snapshot and purge the log on the new leader, so the old leader can only catch up
    // through the snapshot.
    let leader = nodes.iter().find(|n| n.id() == new_leader).unwrap().clone();
    leader.raft().trigger().snapshot().await.unwrap();
    let applied = leader.engine().latest_version();
    {
        let l = leader.clone();
        eventually("a snapshot on the leader", move || {
            let l = l.clone();
            async move {
                l.raft()
                    .metrics()
                    .borrow()
                    .snapshot
                    .is_some_and(|s| s.index >= applied)
            }
        })
        .await;
    }
    leader.raft().trigger().purge_log(applied).await.unwrap();
    {
        let l = leader.clone();
        eventually("the leader's log purged", move || {
            let l = l.clone();
            async move {
                l.raft()
                    .metrics()
                    .borrow()
                    .purged
                    .is_some_and(|p| p.index >= applied)
            }
        })
        .await;
    }

    // Restart the old leader on its old address and data; it catches up.
    let old = ClusterNode::start(
        config(old_leader, &dead_addr, dir.path(), BackendName::Redb),
        transport(),
    )
    .await
    .unwrap();
    let target = leader.engine().latest_version();
    {
        let o = old.clone();
        eventually("the restarted node to catch up", move || {
            let o = o.clone();
            async move { o.engine().latest_version() >= target }
        })
        .await;
    }
    for (k, v) in &acked {
        assert_eq!(
            get(&old, k, ReadConsistency::Stale).await.as_deref(),
            Some(v.as_str()),
            "{k} on the restarted node"
        );
    }
    assert!(
        old.raft()
            .metrics()
            .borrow()
            .snapshot
            .is_some_and(|s| s.index >= applied),
        "caught up through the snapshot"
    );
    // And it serves linearizable reads and writes as a follower again.
    put(&old, "after", "rejoin").await.unwrap();
    for node in nodes.iter().chain(std::iter::once(&old)) {
        assert_eq!(
            get(node, "after", ReadConsistency::Linearizable)
                .await
                .as_deref(),
            Some("rejoin")
        );
    }
    old.shutdown().await.unwrap();
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_during_failover_commit_once_or_fail() {
    let dir = TempDir::new().unwrap();
    let mut nodes = start_cluster(dir.path(), BackendName::Memory).await;
    nodes[0].create_collection("kv").await.unwrap();
    let leader = wait_for_leader(&nodes).await;
    let pos = nodes.iter().position(|n| n.id() == leader).unwrap();
    let survivors: Vec<ClusterNode> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != pos)
        .map(|(_, n)| n.clone())
        .collect();

    // Writers on the followers: each writes unique keys in a loop.
    let mut writers = Vec::new();
    for (w, node) in survivors.iter().enumerate() {
        let node = node.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            for i in 0..40 {
                let key = format!("w{w}-{i:03}");
                match put(&node, &key, "x").await {
                    Ok(_) => acked.push(key),
                    Err(ClusterError::OutcomeUnknown { .. } | ClusterError::Unavailable { .. }) => {
                        failed.push(key)
                    }
                    Err(e) => panic!("unexpected error for {key}: {e}"),
                }
            }
            (acked, failed)
        }));
    }
    // Kill the leader once some writes went through.
    {
        let n = survivors[0].clone();
        eventually("some writes", move || {
            let n = n.clone();
            async move { n.engine().latest_version() > 20 }
        })
        .await;
    }
    let dead = nodes.remove(pos);
    dead.shutdown().await.unwrap();

    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for w in writers {
        let (a, f) = w.await.unwrap();
        acked.extend(a);
        failed.extend(f);
    }
    assert!(!acked.is_empty());
    for node in &nodes {
        for k in &acked {
            assert_eq!(
                get(node, k, ReadConsistency::Linearizable).await.as_deref(),
                Some("x"),
                "acknowledged {k} lost"
            );
        }
    }
    // Never applied twice: every key has exactly one version.
    let counts = nodes[0].engine().version_counts(&kv()).await.unwrap();
    assert_eq!(
        counts.versions, counts.live_keys,
        "a retried write was applied twice"
    );
    assert!(counts.live_keys as usize >= acked.len());
    assert!(counts.live_keys as usize <= acked.len() + failed.len());
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_under_load_and_bad_input() {
    let dir = TempDir::new().unwrap();
    let nodes = start_cluster(dir.path(), BackendName::Memory).await;
    nodes[0].create_collection("kv").await.unwrap();

    // Bad input gives clear errors, no hang.
    let again: BTreeMap<NodeId, String> = BTreeMap::from([(1, nodes[0].addr().to_owned())]);
    assert!(matches!(
        nodes[0].initialize(again).await,
        Err(ClusterError::Invalid(_))
    ));
    assert!(matches!(
        nodes[1].promote(99).await,
        Err(ClusterError::Invalid(m)) if m.contains("99")
    ));
    assert!(matches!(
        nodes[2].remove(42).await,
        Err(ClusterError::Invalid(_))
    ));
    assert!(matches!(
        nodes[0].create_collection("__bad").await,
        Err(ClusterError::Rejected(_))
    ));
    {
        let mut txn = nodes[0].begin_write().await.unwrap();
        assert!(
            txn.put(
                &CollectionName::new("missing").unwrap(),
                b"k".to_vec(),
                b"v".to_vec()
            )
            .is_err()
        );
    }

    // Load in the background.
    let loader = {
        let node = nodes[1].clone();
        tokio::spawn(async move {
            let mut n = 0;
            for i in 0..60 {
                put(&node, &format!("load{i:03}"), "v").await.unwrap();
                n += 1;
            }
            n
        })
    };

    // Add node 4 as a learner, promote it, then remove it.
    let four = ClusterNode::start(
        config(4, "127.0.0.1:0", dir.path(), BackendName::Memory),
        transport(),
    )
    .await
    .unwrap();
    nodes[2].add_learner(4, four.addr()).await.unwrap();
    nodes[0].promote(4).await.unwrap();
    let status = nodes[0].status().await;
    assert!(status.voters.contains(&4), "{status:?}");
    put(&four, "from-four", "v").await.unwrap();
    nodes[1].remove(4).await.unwrap();
    {
        let n = nodes[0].clone();
        eventually("node 4 removed", move || {
            let n = n.clone();
            async move { !n.status().await.nodes.contains_key(&4) }
        })
        .await;
    }
    assert_eq!(loader.await.unwrap(), 60);
    for node in &nodes {
        assert_eq!(
            get(node, "from-four", ReadConsistency::Linearizable)
                .await
                .as_deref(),
            Some("v")
        );
        assert_eq!(
            get(node, "load059", ReadConsistency::Linearizable)
                .await
                .as_deref(),
            Some("v")
        );
    }

    // An unreachable learner: a clear error within the request timeout.
    let mut unreachable = config(5, "127.0.0.1:0", dir.path(), BackendName::Memory);
    unreachable.timeouts.request_ms = 2_000;
    let probe = ClusterNode::start(unreachable, transport()).await.unwrap();
    let probe_addr = probe.addr().to_owned();
    probe.shutdown().await.unwrap();
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(DEADLINE, nodes[0].add_learner(5, probe_addr.clone())).await;
    let Ok(Err(ClusterError::Unavailable { last, .. })) = result else {
        panic!("add-learner of an unreachable node: {result:?}");
    };
    assert!(last.contains(&probe_addr), "{last}");
    assert!(started.elapsed() < DEADLINE);
    // A live node under another id than the one given: refused as a wrong configuration.
    let err = nodes[0].add_learner(7, four.addr()).await.unwrap_err();
    assert!(
        matches!(&err, ClusterError::Invalid(m) if m.contains("not node 7")),
        "{err}"
    );

    let status = nodes[0].status().await;
    assert_eq!(status.voters, vec![1, 2, 3]);
    four.shutdown().await.unwrap();
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// A backend that records the order of its calls.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn zcore_engine::StorageBackend>,
    calls: std::sync::Mutex<Vec<&'static str>>,
}

impl Recording {
    fn note(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait::async_trait]
impl zcore_engine::StorageBackend for Recording {
    fn kind(&self) -> zcore_engine::BackendKind {
        self.inner.kind()
    }
    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }
    async fn create_collection(
        &self,
        name: &CollectionName,
    ) -> Result<bool, zcore_engine::BackendError> {
        self.note("create_collection");
        self.inner.create_collection(name).await
    }
    async fn open_collection(
        &self,
        name: &CollectionName,
    ) -> Result<(), zcore_engine::BackendError> {
        self.note("open_collection");
        self.inner.open_collection(name).await
    }
    async fn list_collections(&self) -> Result<Vec<CollectionName>, zcore_engine::BackendError> {
        self.note("list_collections");
        self.inner.list_collections().await
    }
    async fn drop_collection(
        &self,
        name: &CollectionName,
    ) -> Result<bool, zcore_engine::BackendError> {
        self.note("drop_collection");
        self.inner.drop_collection(name).await
    }
    async fn get(
        &self,
        name: &CollectionName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, zcore_engine::BackendError> {
        self.note("get");
        self.inner.get(name, key).await
    }
    async fn seek(
        &self,
        name: &CollectionName,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, zcore_engine::BackendError> {
        self.note("seek");
        self.inner.seek(name, start, end).await
    }
    async fn scan(
        &self,
        name: &CollectionName,
        request: &zcore_engine::ScanRequest,
    ) -> Result<zcore_engine::ScanPage, zcore_engine::BackendError> {
        self.note("scan");
        self.inner.scan(name, request).await
    }
    async fn write(
        &self,
        batch: zcore_engine::WriteBatch,
        durability: zcore_engine::Durability,
    ) -> Result<(), zcore_engine::BackendError> {
        self.note("write");
        self.inner.write(batch, durability).await
    }
    async fn sync(&self) -> Result<(), zcore_engine::BackendError> {
        self.note("sync");
        self.inner.sync().await
    }
    async fn stats(&self) -> Result<zcore_engine::BackendStats, zcore_engine::BackendError> {
        self.inner.stats().await
    }
    async fn close(&self) -> Result<(), zcore_engine::BackendError> {
        self.inner.close().await
    }
}

/// A restarted process may read back writes whose sync failed before it was stopped (they
/// are still in the page cache) and a power loss may take them back later: a node acting on
/// such a vote or log entry breaks Raft. So a start first makes the store durable.
#[tokio::test]
async fn a_start_syncs_the_store_before_it_reads_anything() {
    let dir = TempDir::new().unwrap();
    let backend = Arc::new(Recording {
        inner: Arc::new(zcore_backends::MemoryBackend::new()),
        calls: std::sync::Mutex::new(Vec::new()),
    });
    let node = ClusterNode::start_on(
        config(1, "127.0.0.1:0", dir.path(), BackendName::Memory),
        backend.clone(),
        transport(),
    )
    .await
    .unwrap();
    let calls = backend.calls.lock().unwrap().clone();
    assert_eq!(calls.first(), Some(&"sync"), "{calls:?}");
    node.shutdown().await.unwrap();
}
