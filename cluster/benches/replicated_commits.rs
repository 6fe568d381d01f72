//! Commit throughput: a 3-node cluster on loopback TCP against one node committing durably,
//! both on fjall, same process, same run, same concurrency. Prints commits/s and the ratio.
//!
//! `cargo bench -p zcore-cluster --bench replicated_commits` (env: `CLIENTS`, default 32;
//! `COMMITS`, default 4000 in total per side and round; `ROUNDS`, default 3).
//!
//! What bounds the ratio: a single node commits after one synced write (group commit shares
//! it among concurrent committers). A replicated commit needs the leader's synced log append,
//! then a follower's synced append after a network round trip (openraft 0.9 appends on the
//! leader before it replicates), then the apply. The leader batches concurrent commits into
//! one log entry (see `zcore_cluster::node`), so both sides amortize syncs over the same
//! number of concurrent clients; with equal concurrency the 3-node latency is at least about
//! twice the single node's, which puts the ratio near or below 0.5 on a disk where syncs
//! dominate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use zcore_backends::{BackendName, FjallBackend, FjallOptions};
use zcore_cluster::config::RaftSettings;
use zcore_cluster::{ClusterNode, NodeConfig, NodeId, ReadConsistency, TcpTransport};
use zcore_engine::{CollectionName, Engine, EngineOptions, WriteOptions};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn single_node(dir: &std::path::Path, clients: usize, commits: usize) -> f64 {
    let backend =
        Arc::new(FjallBackend::open(dir.join("single"), &FjallOptions::default()).unwrap());
    let engine = Engine::open(backend, EngineOptions::default())
        .await
        .unwrap();
    let kv = CollectionName::new("kv").unwrap();
    engine.create_collection(&kv).await.unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let engine = engine.clone();
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..commits / clients {
                let mut txn = engine.begin_write_with(WriteOptions::default());
                txn.put(&kv, format!("c{c}-{i}").into_bytes(), vec![7u8; 100])
                    .unwrap();
                txn.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (commits / clients * clients) as f64 / start.elapsed().as_secs_f64();
    engine.close().await.unwrap();
    rate
}

async fn three_nodes(dir: &std::path::Path, clients: usize, commits: usize) -> f64 {
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let mut c = NodeConfig::new(id, "127.0.0.1:0", dir.join(format!("node{id}")));
        c.backend = BackendName::Fjall;
        c.raft = RaftSettings {
            heartbeat_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            ..RaftSettings::default()
        };
        nodes.push(ClusterNode::start(c, Arc::new(TcpTransport)).await.unwrap());
    }
    let members: BTreeMap<NodeId, String> = nodes
        .iter()
        .map(|n| (n.id(), n.addr().to_owned()))
        .collect();
    nodes[0].initialize(members).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[0].raft().metrics().borrow().current_leader.is_none() {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader_id = nodes[0].raft().metrics().borrow().current_leader.unwrap();
    let leader = nodes.iter().find(|n| n.id() == leader_id).unwrap().clone();
    leader.create_collection("kv").await.unwrap();
    let kv = CollectionName::new("kv").unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let node = leader.clone();
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..commits / clients {
                let mut txn = node
                    .begin_write_from(WriteOptions::default(), ReadConsistency::Stale)
                    .await
                    .unwrap();
                txn.put(&kv, format!("c{c}-{i}").into_bytes(), vec![7u8; 100])
                    .unwrap();
                node.commit(txn).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (commits / clients * clients) as f64 / start.elapsed().as_secs_f64();
    for n in nodes {
        n.shutdown().await.unwrap();
    }
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less args; keep that fast.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let clients = env("CLIENTS", 32).max(1);
    let commits = env("COMMITS", 4000).max(clients);
    let rounds = env("ROUNDS", 3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Alternating rounds, so that load from elsewhere on the machine (disk, CPU) hits both
    // sides alike; the ratio is of the medians.
    let (mut singles, mut clusters) = (Vec::new(), Vec::new());
    println!("clients={clients} commits={commits} rounds={rounds} (100-byte values, fjall)");
    for round in 0..rounds {
        let dir = TempDir::new().unwrap();
        let single = rt.block_on(single_node(dir.path(), clients, commits));
        let cluster = rt.block_on(three_nodes(dir.path(), clients, commits));
        println!(
            "round {round}: single node {single:>8.0}/s, 3 nodes {cluster:>8.0}/s, ratio {:.2}",
            cluster / single
        );
        singles.push(single);
        clusters.push(cluster);
    }
    let (single, cluster) = (median(singles), median(clusters));
    println!("single node, synced commits : {single:>10.0} commits/s (median)");
    println!("3 nodes, loopback TCP       : {cluster:>10.0} commits/s (median)");
    println!("ratio 3-node / single       : {:>10.2}", cluster / single);
}
