//! The CLI cluster end to end: three `zstore serve` child processes on loopback ports, driven
//! with `zstore cluster …` commands — init, status (leader, voters, lag), writes through one
//! node and linearizable reads from another, the leader's process killed and a new leader
//! elected with no acknowledged write lost — and bad input (unknown node ids, unreachable
//! peers, malformed configurations) failing with a clear message and a non-zero exit code
//! within a bounded time. Every wait is bounded; a guard kills the children on any failure.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_zstore");
/// Longest any single CLI command may take before the test calls it a hang.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// Longest a cluster may take to reach a state (started, leader elected, caught up).
const SETTLE_LIMIT: Duration = Duration::from_secs(40);

const ZDB_VARS: [&str; 6] = [
    "ZDB_CONFIG",
    "ZDB_BACKEND",
    "ZDB_DATA",
    "ZDB_PATH",
    "ZDB_CACHE_SIZE",
    "RUST_LOG",
];

fn command() -> Command {
    let mut c = Command::new(BIN);
    for var in ZDB_VARS {
        c.env_remove(var);
    }
    c
}

/// One finished CLI run.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    #[track_caller]
    fn fails(self, code: i32, needles: &[&str]) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}: {self:#?}"
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}: {}",
                self.stderr
            );
        }
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// Runs `zstore ARGS`, killing it (and failing the test) if it runs past [`COMMAND_LIMIT`].
fn zstore(args: &[&str]) -> Run {
    let dir = TempDir::new().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let start = Instant::now();
    let mut child = command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`zstore {}` hung for {COMMAND_LIMIT:?}; stderr: {}",
                args.join(" "),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        took: start.elapsed(),
    }
}

/// A free loopback port (the listener is closed again; the port stays free in practice).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Running `zstore serve` children, killed when dropped (also when the test panics).
struct Nodes {
    dir: TempDir,
    addrs: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Nodes {
    /// Writes `node<i>.toml` for three nodes on free loopback ports (`bootstrap` on node 1
    /// makes it initialize the cluster, as the README shows) and starts them.
    fn start(bootstrap: bool) -> Self {
        let dir = TempDir::new().unwrap();
        let addrs: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let mut nodes = Self {
            dir,
            addrs,
            children: Vec::new(),
        };
        for id in 1..=3u64 {
            let mut toml = format!(
                "node_id = {id}\nlisten = \"{}\"\ndata_dir = \"./node{id}\"\nbackend = \"fjall\"\n",
                nodes.addr(id)
            );
            if bootstrap && id == 1 {
                toml.push_str("[bootstrap]\n");
                for m in 1..=3u64 {
                    toml.push_str(&format!("{m} = \"{}\"\n", nodes.addr(m)));
                }
            }
            toml.push_str(
                "[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\n\
                 election_timeout_max_ms = 600\n\
                 [timeouts]\nconnect_ms = 500\nrpc_ms = 1000\nrequest_ms = 5000\n",
            );
            std::fs::write(nodes.config(id), toml).unwrap();
        }
        for id in 1..=3 {
            let child = nodes.spawn(id);
            nodes.children.push(Some(child));
        }
        for id in 1..=3 {
            nodes.wait_serving(id);
        }
        nodes
    }

    fn addr(&self, id: u64) -> &str {
        &self.addrs[usize::try_from(id - 1).unwrap()]
    }

    fn config(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.toml"))
    }

    fn log(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    fn spawn(&self, id: u64) -> Child {
        command()
            .arg("serve")
            .arg(self.config(id))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log(id)).unwrap())
            .spawn()
            .unwrap()
    }

    /// Waits for the "serving on" line (written once the node is started and bootstrapped).
    fn wait_serving(&mut self, id: u64) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let log = std::fs::read_to_string(self.log(id)).unwrap_or_default();
            if log.contains("serving on") {
                return;
            }
            let slot = usize::try_from(id - 1).unwrap();
            if let Some(child) = self.children[slot].as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!("node {id} exited ({status}) while starting: {log}");
            }
            assert!(Instant::now() < deadline, "node {id} did not start: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self, id: u64) {
        let slot = usize::try_from(id - 1).unwrap();
        let mut child = self.children[slot].take().expect("node already killed");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `zstore cluster --addr <node id> ARGS`.
    fn cluster(&self, id: u64, args: &[&str]) -> Run {
        let mut all = vec![
            "--json",
            "cluster",
            "--addr",
            self.addr(id),
            "--timeout",
            "10",
        ];
        all.extend_from_slice(args);
        zstore(&all)
    }

    fn status(&self, id: u64) -> Value {
        self.cluster(id, &["status"]).ok().json()
    }

    /// Polls `node`'s status until `done` holds for it; returns that status.
    fn wait_status(&self, node: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let run = self.cluster(node, &["status"]);
            if run.code == Some(0) {
                let status = run.json();
                if done(&status) {
                    return status;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {node}: {what} not reached within {SETTLE_LIMIT:?}: {status}"
                );
            } else {
                assert!(Instant::now() < deadline, "node {node}: {run:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn leader_of(status: &Value) -> Option<u64> {
    status["leader"].as_u64()
}

fn voters(status: &Value) -> Vec<u64> {
    status["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// `replication[follower].lag` on a leader's status.
fn lag(status: &Value, follower: u64) -> Option<u64> {
    status["replication"][follower.to_string()]["lag"].as_u64()
}

fn get(nodes: &Nodes, id: u64, key: &str) -> Run {
    nodes.cluster(id, &["get", "kv", key])
}

#[test]
fn three_serve_processes_init_replicate_fail_over_and_refuse_bad_input() {
    let mut nodes = Nodes::start(false);

    // Before init: no leader; bad member lists are usage errors.
    let status = nodes.status(2);
    assert_eq!(leader_of(&status), None, "{status}");
    nodes
        .cluster(1, &["init", "1=", "2=x"])
        .fails(2, &["no address"]);
    nodes
        .cluster(1, &["init", "0=127.0.0.1:1"])
        .fails(2, &["not a node id"]);
    let members: Vec<String> = (1..=3)
        .map(|id| format!("{id}={}", nodes.addr(id)))
        .collect();
    let mut init = vec!["init"];
    init.extend(members.iter().map(String::as_str));
    nodes.cluster(1, &init).ok();
    // A second init is refused: the cluster exists.
    nodes.cluster(2, &init).fails(2, &["already initialized"]);

    // Every node agrees on the leader and the three voters.
    let status = nodes.wait_status(3, "a leader and 3 voters", |s| {
        leader_of(s).is_some() && voters(s) == [1, 2, 3]
    });
    let leader = leader_of(&status).unwrap();
    for id in 1..=3 {
        nodes.wait_status(id, "the same leader", |s| leader_of(s) == Some(leader));
    }
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();

    // Writes through a follower (forwarded to the leader), reads from the other nodes.
    nodes
        .cluster(followers[0], &["create-collection", "kv"])
        .ok();
    let put = nodes.cluster(followers[0], &["put", "kv", "k1", "v1"]).ok();
    let v1 = put.json()["version"].as_u64().unwrap();
    for id in [leader, followers[1]] {
        let run = get(&nodes, id, "k1").ok();
        assert_eq!(run.json()["value"], "v1", "node {id}: {run:#?}");
        assert!(run.json()["version"].as_u64().unwrap() >= v1);
    }
    nodes.cluster(leader, &["put", "kv", "gone", "x"]).ok();
    nodes.cluster(followers[1], &["delete", "kv", "gone"]).ok();
    get(&nodes, followers[0], "gone").fails(3, &["gone"]);
    // The leader reports both followers caught up (lag 0).
    let status = nodes.wait_status(leader, "followers caught up", |s| {
        followers.iter().all(|f| lag(s, *f) == Some(0))
    });
    assert_eq!(status["role"], "leader", "{status}");
    let stale = nodes
        .cluster(followers[1], &["get", "--stale", "kv", "k1"])
        .ok();
    assert_eq!(stale.json()["value"], "v1");

    // Bad input on a running cluster: unknown node ids, an invalid collection name, an
    // unreachable node address.
    nodes
        .cluster(followers[0], &["promote", "42"])
        .fails(2, &["42", "not a learner"]);
    nodes
        .cluster(followers[1], &["remove", "42"])
        .fails(2, &["42", "not a member"]);
    nodes
        .cluster(leader, &["put", "__system", "k", "v"])
        .fails(2, &["__system"]);
    nodes
        .cluster(leader, &["get", "nope", "k"])
        .fails(3, &["nope"]);
    let closed = format!("127.0.0.1:{}", free_port());
    let run = zstore(&["cluster", "--addr", &closed, "--timeout", "3", "status"]);
    let run = run.fails(1, &["cannot connect", &closed]);
    assert!(run.took < COMMAND_LIMIT);

    // Kill the leader's process: a new leader among the others, nothing acknowledged lost,
    // writes go on and are readable on the other survivor.
    nodes.kill(leader);
    let status = nodes.wait_status(followers[0], "a new leader", |s| {
        leader_of(s).is_some_and(|l| l != leader)
    });
    let new_leader = leader_of(&status).unwrap();
    assert!(followers.contains(&new_leader));
    let other = if new_leader == followers[0] {
        followers[1]
    } else {
        followers[0]
    };
    nodes.cluster(other, &["put", "kv", "k2", "v2"]).ok();
    for key in ["k1", "k2"] {
        let run = get(&nodes, other, key).ok();
        assert_eq!(run.json()["value"], key.replace('k', "v"), "{run:#?}");
    }
    // The new leader sees the dead node behind.
    let status = nodes.wait_status(new_leader, "the killed node lagging", |s| {
        lag(s, leader).is_some_and(|l| l > 0)
    });
    assert_eq!(voters(&status), [1, 2, 3]);

    // An unreachable learner, and a live node under another id than the one given: refused
    // before the membership changes, within a bounded time.
    let unreachable = format!("127.0.0.1:{}", free_port());
    let run = nodes.cluster(other, &["add-learner", "9", &unreachable]);
    let run = run.fails(1, &["cannot add node 9", &unreachable]);
    assert!(run.took < COMMAND_LIMIT);
    nodes
        .cluster(other, &["add-learner", "7", nodes.addr(other)])
        .fails(2, &[&format!("is node {other}, not node 7")]);
    let status = nodes.status(new_leader);
    assert_eq!(
        status["nodes"].as_object().unwrap().len(),
        3,
        "membership changed: {status}"
    );
    nodes
        .cluster(other, &["remove", "9"])
        .fails(2, &["not a member"]);
}

#[test]
fn the_readme_three_node_cluster_and_bad_configurations() {
    // The README's setup: three `zstore serve` commands, node 1 bootstraps.
    let nodes = Nodes::start(true);
    let status = nodes.wait_status(2, "a leader and 3 voters", |s| {
        leader_of(s).is_some() && voters(s) == [1, 2, 3]
    });
    assert!(status["nodes"].as_object().unwrap().len() == 3, "{status}");
    nodes.cluster(3, &["create-collection", "kv"]).ok();
    nodes.cluster(3, &["put", "kv", "a", "1"]).ok();
    assert_eq!(get(&nodes, 2, "a").ok().json()["value"], "1");

    // Malformed and wrong configurations: exit code 2, a message naming the problem, no
    // hang.
    let dir = nodes.dir.path();
    let bad = |name: &str, text: &str, needles: &[&str]| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        zstore(&["serve", path.to_str().unwrap()]).fails(2, needles);
    };
    bad(
        "garbage.toml",
        "node_id = \"one\"\n",
        &["invalid node configuration"],
    );
    bad(
        "unknown.toml",
        "node_id = 5\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\ncolour = 1\n",
        &["unknown field", "colour"],
    );
    bad(
        "zero.toml",
        "node_id = 0\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\n",
        &["node_id must not be 0"],
    );
    bad(
        "notself.toml",
        "node_id = 5\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\n[bootstrap]\n1 = \"127.0.0.1:1\"\n",
        &["does not list this node"],
    );
    bad(
        "timing.toml",
        "node_id = 5\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\n[raft]\nheartbeat_ms = 500\n",
        &["election_timeout_min_ms"],
    );
    let missing = dir.join("missing.toml");
    zstore(&["serve", missing.to_str().unwrap()]).fails(2, &["cannot read"]);
    // A port already in use (node 1's): a clear runtime error.
    let taken = format!(
        "node_id = 5\nlisten = \"{}\"\ndata_dir = \"d5\"\n",
        nodes.addr(1)
    );
    let path = dir.join("taken.toml");
    std::fs::write(&path, taken).unwrap();
    zstore(&["serve", path.to_str().unwrap()]).fails(1, &["binding", nodes.addr(1)]);
}
