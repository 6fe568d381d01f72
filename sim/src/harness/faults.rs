//! The fault schedule: drawn from the seed's fault stream between steps, applied to the
//! `Sim`, and undone at a drawn later time. At most one network fault per link at a time
//! (turmoil does not support combining hold with partitions).
//!
//! Disk-fault episodes (`disk_eio`, `disk_full`; at most one at a time, safety phase only):
//! one node's [`DiskControl`](crate::storage::DiskControl) fails reads, writes and syncs
//! with EIO at a drawn probability, or refuses to grow the store beyond its usage plus a
//! small drawn slack (ENOSPC), for a drawn window. A storage error stops that node
//! (fail-stop, `node::fail_stop`). When the window ends (or the safety phase does) the
//! switch goes off and, if the disk injected any error during the episode, the node is
//! restarted as after a process kill (page cache kept) — an operator fixing the disk and
//! restarting the process — unless it is down anyway (crashed, waiting for its restart).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::config::SimConfig;
use super::node::{NodeObs, host_name};
use super::rng::{self, Stream};
use super::world::World;

/// Fault kinds, as counted in reports.
pub const KINDS: [&str; 11] = [
    "partition",
    "oneway",
    "isolate",
    "clog",
    "latency",
    "loss",
    "bounce",
    "crash",
    "crash_leader",
    "disk_eio",
    "disk_full",
];

/// A disk-fault episode in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DiskEpisode {
    node: u64,
    /// `disk_eio` or `disk_full`.
    kind: &'static str,
    /// The disk's injected-error count when the episode began.
    injected_at_start: u64,
}

/// An action on the `Sim`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Partition(u64, u64),
    Repair(u64, u64),
    PartitionOneway(u64, u64),
    RepairOneway(u64, u64),
    Hold(u64, u64),
    Release(u64, u64),
    Latency(u64, u64, u64),
    LatencyReset(u64, u64),
    Loss(u64, u64),
    LossReset(u64, u64),
    /// Kill the process (page cache kept) and restart it at once.
    Bounce(u64),
    /// Power loss; the restart is scheduled separately.
    Crash(u64),
    Restart(u64),
    /// Disk-fault episode: the node's disk fails I/O with this probability (per mille).
    DiskEio(u64, u64),
    /// Disk-fault episode: the node's disk is full beyond its usage plus this slack (bytes).
    DiskFull(u64, u64),
    /// The episode ends: faults off; restart the node if its disk injected an error.
    DiskEnd(u64),
    /// The link is free again for new faults.
    Free(u64, u64),
}

fn link(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

/// What the schedule did to a link (latency and loss are link settings, not states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    Partitioned,
    Oneway(u64, u64),
    Held,
}

/// Every host of the run other than node `n` (nodes, clients, the probe).
fn other_hosts(world: &World, n: u64) -> Vec<String> {
    let mut out: Vec<String> = world
        .cfg
        .node_ids()
        .filter(|o| *o != n)
        .map(host_name)
        .collect();
    out.extend((0..world.cfg.clients).map(|c| format!("c{c}")));
    out.push("probe".to_owned());
    out
}

/// The schedule and what is currently broken.
#[derive(Debug)]
pub struct Faults {
    rng: StdRng,
    next_at: u64,
    pending: Vec<(u64, Action)>,
    busy: BTreeSet<(u64, u64)>,
    links: BTreeMap<(u64, u64), LinkState>,
    down: BTreeSet<u64>,
    disk: Option<DiskEpisode>,
    /// Faults injected, by kind.
    pub counts: BTreeMap<&'static str, u64>,
}

impl Faults {
    /// The schedule of run `cfg.seed`.
    #[must_use]
    pub fn new(cfg: &SimConfig) -> Self {
        let mut rng = rng::rng(cfg.seed, Stream::Faults, 0);
        let first = 300 + rng.gen_range(0..=cfg.fault_interval_ms);
        Self {
            rng,
            next_at: first,
            pending: Vec::new(),
            busy: BTreeSet::new(),
            links: BTreeMap::new(),
            down: BTreeSet::new(),
            disk: None,
            counts: KINDS.iter().map(|k| (*k, 0)).collect(),
        }
    }

    /// Nodes currently down.
    #[must_use]
    pub fn down(&self) -> &BTreeSet<u64> {
        &self.down
    }

    fn schedule(&mut self, at: u64, action: Action) {
        self.pending.push((at, action));
    }

    /// Applies due undo actions and, if it is time, draws and applies a new fault.
    pub fn tick(&mut self, sim: &mut turmoil::Sim<'_>, world: &World, now: u64) {
        let mut due = Vec::new();
        self.pending.retain(|(at, a)| {
            if *at <= now {
                due.push(a.clone());
                false
            } else {
                true
            }
        });
        for action in due {
            self.apply(sim, world, action);
        }
        if now >= self.next_at {
            self.inject(sim, world, now);
            let mean = world.cfg.fault_interval_ms as f64;
            let u: f64 = self.rng.gen_range(0.0001..1.0);
            self.next_at = now + 1 + (-u.ln() * mean) as u64;
        }
    }

    fn free_links(&self, nodes: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for a in 1..=nodes {
            for b in (a + 1)..=nodes {
                if !self.busy.contains(&(a, b)) {
                    out.push((a, b));
                }
            }
        }
        out
    }

    fn inject(&mut self, sim: &mut turmoil::Sim<'_>, world: &World, now: u64) {
        let cfg = &world.cfg;
        let w = &cfg.faults;
        let weights = [
            w.partition,
            w.partition_oneway,
            w.isolate,
            w.clog,
            w.latency,
            w.loss,
            w.bounce,
            w.crash,
            w.crash_leader,
            w.disk_eio,
            w.disk_full,
        ];
        let total: u32 = weights.iter().sum();
        if total == 0 {
            return;
        }
        let mut draw = self.rng.gen_range(0..total);
        let mut kind = 0;
        for (i, weight) in weights.iter().enumerate() {
            if draw < *weight {
                kind = i;
                break;
            }
            draw -= weight;
        }
        let n = cfg.nodes;
        let duration = self.rng.gen_range(100..=2_500);
        let max_down = n / 2 + 1;
        let injected = match KINDS[kind] {
            "partition" | "oneway" | "latency" | "loss" => {
                let free = self.free_links(n);
                if free.is_empty() {
                    false
                } else {
                    let (a, b) = free[self.rng.gen_range(0..free.len())];
                    let (a, b) = if self.rng.gen_bool(0.5) {
                        (a, b)
                    } else {
                        (b, a)
                    };
                    self.busy.insert(link(a, b));
                    let (on, off) = match KINDS[kind] {
                        "partition" => (Action::Partition(a, b), Action::Repair(a, b)),
                        "oneway" => (Action::PartitionOneway(a, b), Action::RepairOneway(a, b)),
                        "latency" => {
                            let ms = self.rng.gen_range(50..=cfg.heartbeat_ms * 8);
                            (Action::Latency(a, b, ms), Action::LatencyReset(a, b))
                        }
                        _ => (Action::Loss(a, b), Action::LossReset(a, b)),
                    };
                    self.apply(sim, world, on);
                    self.schedule(now + duration, off);
                    self.schedule(now + duration, Action::Free(a, b));
                    true
                }
            }
            "isolate" => {
                let node = self.rng.gen_range(1..=n);
                let links: Vec<(u64, u64)> = (1..=n)
                    .filter(|o| *o != node)
                    .map(|o| link(node, o))
                    .collect();
                if links.iter().any(|l| self.busy.contains(l)) {
                    false
                } else {
                    for (a, b) in links {
                        self.busy.insert((a, b));
                        self.apply(sim, world, Action::Partition(a, b));
                        self.schedule(now + duration, Action::Repair(a, b));
                        self.schedule(now + duration, Action::Free(a, b));
                    }
                    true
                }
            }
            "clog" => {
                let mut free = self.free_links(n);
                free.shuffle(&mut self.rng);
                let count = self.rng.gen_range(1..=free.len().max(1)).min(free.len());
                let chosen: Vec<(u64, u64)> = free.into_iter().take(count).collect();
                if chosen.is_empty() {
                    false
                } else {
                    // Clog one by one, release in another random order.
                    let mut release = chosen.clone();
                    release.shuffle(&mut self.rng);
                    for (i, (a, b)) in chosen.iter().enumerate() {
                        self.busy.insert((*a, *b));
                        self.schedule(now + 20 * i as u64, Action::Hold(*a, *b));
                    }
                    for (i, (a, b)) in release.iter().enumerate() {
                        let at = now + duration + 20 * i as u64;
                        self.schedule(at, Action::Release(*a, *b));
                        self.schedule(at, Action::Free(*a, *b));
                    }
                    true
                }
            }
            "bounce" => {
                let node = self.rng.gen_range(1..=n);
                if self.down.contains(&node) {
                    false
                } else {
                    self.apply(sim, world, Action::Bounce(node));
                    true
                }
            }
            "crash" | "crash_leader" => {
                let target = if KINDS[kind] == "crash" {
                    Some(self.rng.gen_range(1..=n))
                } else {
                    leader(world)
                };
                match target {
                    Some(node)
                        if !self.down.contains(&node) && (self.down.len() as u64) < max_down =>
                    {
                        let outage = if self.rng.gen_bool(0.5) {
                            self.rng.gen_range(20..=400)
                        } else {
                            self.rng.gen_range(400..=3_000)
                        };
                        self.apply(sim, world, Action::Crash(node));
                        self.schedule(now + outage, Action::Restart(node));
                        true
                    }
                    _ => false,
                }
            }
            "disk_eio" | "disk_full" => {
                // Half the time the leader's disk: its failures are the ones clients see.
                let target = if self.rng.gen_bool(0.5) {
                    leader(world)
                } else {
                    None
                };
                let node = target.unwrap_or_else(|| self.rng.gen_range(1..=n));
                if self.disk.is_some() || self.down.contains(&node) {
                    false
                } else {
                    let on = if KINDS[kind] == "disk_eio" {
                        // Per mille: from rare errors to most I/O failing.
                        let per_mille = if self.rng.gen_bool(0.5) {
                            self.rng.gen_range(1..=50)
                        } else {
                            self.rng.gen_range(50..=500)
                        };
                        Action::DiskEio(node, per_mille)
                    } else {
                        let slack = if self.rng.gen_bool(0.5) {
                            self.rng.gen_range(0..=1_024)
                        } else {
                            self.rng.gen_range(1_024..=8_192)
                        };
                        Action::DiskFull(node, slack)
                    };
                    self.apply(sim, world, on);
                    self.schedule(now + duration, Action::DiskEnd(node));
                    true
                }
            }
            _ => false,
        };
        if injected && let Some(c) = self.counts.get_mut(KINDS[kind]) {
            *c += 1;
        }
    }

    /// Cuts node `n` off from every host before its process dies: the segments its dropped
    /// sockets would send (FIN/RST) are then discarded without drawing from turmoil's rng.
    /// Which of them tokio drops first depends on task ids, a process-wide counter, so
    /// letting them through would make a second run of a seed in the same process differ.
    /// (A power loss sends nothing anyway; after a process kill peers time out instead.)
    fn silence(sim: &mut turmoil::Sim<'_>, world: &World, n: u64) {
        for other in other_hosts(world, n) {
            sim.partition(host_name(n), other);
        }
    }

    /// Undoes [`silence`](Self::silence), restoring the schedule's own link states.
    fn unsilence(&self, sim: &mut turmoil::Sim<'_>, world: &World, n: u64) {
        for other in other_hosts(world, n) {
            sim.repair(host_name(n), other);
        }
        for o in world.cfg.node_ids().filter(|o| *o != n) {
            match self.links.get(&link(n, o)) {
                Some(LinkState::Partitioned) => sim.partition(host_name(n), host_name(o)),
                Some(LinkState::Oneway(a, b)) => sim.partition_oneway(host_name(*a), host_name(*b)),
                Some(LinkState::Held) => sim.hold(host_name(n), host_name(o)),
                None => {}
            }
        }
    }

    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, world: &World, action: Action) {
        let h = host_name;
        match &action {
            Action::Partition(a, b) => {
                self.links.insert(link(*a, *b), LinkState::Partitioned);
                sim.partition(h(*a), h(*b));
            }
            Action::Repair(a, b) => {
                self.links.remove(&link(*a, *b));
                sim.repair(h(*a), h(*b));
            }
            Action::PartitionOneway(a, b) => {
                self.links.insert(link(*a, *b), LinkState::Oneway(*a, *b));
                sim.partition_oneway(h(*a), h(*b));
            }
            Action::RepairOneway(a, b) => {
                self.links.remove(&link(*a, *b));
                sim.repair_oneway(h(*a), h(*b));
            }
            Action::Hold(a, b) => {
                self.links.insert(link(*a, *b), LinkState::Held);
                sim.hold(h(*a), h(*b));
            }
            Action::Release(a, b) => {
                self.links.remove(&link(*a, *b));
                sim.release(h(*a), h(*b));
            }
            Action::Latency(a, b, ms) => {
                sim.set_link_max_message_latency(h(*a), h(*b), Duration::from_millis(*ms));
            }
            Action::LatencyReset(a, b) => sim.set_link_max_message_latency(
                h(*a),
                h(*b),
                Duration::from_millis(world.cfg.latency_ms.1),
            ),
            Action::Loss(a, b) => sim.set_link_fail_rate(h(*a), h(*b), 0.002),
            Action::LossReset(a, b) => sim.set_link_fail_rate(h(*a), h(*b), 0.0),
            Action::Bounce(n) => {
                kill(world, *n);
                Self::silence(sim, world, *n);
                sim.bounce(h(*n));
                self.unsilence(sim, world, *n);
            }
            Action::Crash(n) => {
                kill(world, *n);
                self.down.insert(*n);
                Self::silence(sim, world, *n);
                if let Some(slot) = world.nodes.get((*n - 1) as usize) {
                    slot.down.set(true);
                    slot.store.crash(sim, &h(*n));
                }
                self.unsilence(sim, world, *n);
            }
            Action::Restart(n) => {
                self.down.remove(n);
                if let Some(slot) = world.nodes.get((*n - 1) as usize) {
                    slot.down.set(false);
                }
                sim.bounce(h(*n));
            }
            Action::DiskEio(n, per_mille) => {
                if let Some(slot) = world.nodes.get((*n - 1) as usize) {
                    let control = slot.store.control();
                    self.disk = Some(DiskEpisode {
                        node: *n,
                        kind: "disk_eio",
                        injected_at_start: control.injected(),
                    });
                    control.set_io_errors(*per_mille as f64 / 1_000.0);
                }
            }
            Action::DiskFull(n, slack) => {
                if let Some(slot) = world.nodes.get((*n - 1) as usize) {
                    let control = slot.store.control();
                    self.disk = Some(DiskEpisode {
                        node: *n,
                        kind: "disk_full",
                        injected_at_start: control.injected(),
                    });
                    control.set_full(*slack);
                }
            }
            Action::DiskEnd(n) => {
                let episode = self.disk.take();
                let Some(slot) = world.nodes.get((*n - 1) as usize) else {
                    return;
                };
                let control = slot.store.control();
                control.clear();
                let episode = episode.filter(|e| e.node == *n);
                let injected = control.injected() - episode.map_or(0, |e| e.injected_at_start);
                world.log(
                    "sim",
                    &format!(
                        "{action:?} {} injected={injected} stopped={}",
                        episode.map_or("?", |e| e.kind),
                        slot.stopped.get()
                    ),
                );
                if injected > 0 && !self.down.contains(n) {
                    self.apply(sim, world, Action::Bounce(*n));
                }
                return;
            }
            Action::Free(a, b) => {
                self.busy.remove(&link(*a, *b));
                return;
            }
        }
        world.log("sim", &format!("{action:?}"));
    }

    /// Kills every node for the end of the run (dead flag, silenced, crashed).
    pub fn shutdown(&mut self, sim: &mut turmoil::Sim<'_>, world: &World) {
        for n in world.cfg.node_ids() {
            kill(world, n);
            if sim.is_host_running(host_name(n)) {
                Self::silence(sim, world, n);
                sim.crash(host_name(n));
            }
        }
    }

    /// Heals everything: repairs and releases every link, resets latency and loss, restarts
    /// every crashed node. Pending undo actions are dropped.
    pub fn heal_all(&mut self, sim: &mut turmoil::Sim<'_>, world: &World) {
        let pending = std::mem::take(&mut self.pending);
        for (_, action) in pending {
            match action {
                Action::Hold(..) => {}
                other => self.apply(sim, world, other),
            }
        }
        let n = world.cfg.nodes;
        for a in 1..=n {
            for b in (a + 1)..=n {
                sim.repair(host_name(a), host_name(b));
                sim.release(host_name(a), host_name(b));
            }
        }
        self.busy.clear();
        self.links.clear();
        let down: Vec<u64> = self.down.iter().copied().collect();
        for node in down {
            self.apply(sim, world, Action::Restart(node));
        }
        self.next_at = u64::MAX;
        world.log("sim", "healed all faults");
    }
}

/// Marks node `n`'s running incarnation dead and drops the harness's handle to it, before
/// turmoil kills it (its `Drop`s then run inside the simulation and cannot reach the disk).
pub fn kill(world: &World, n: u64) {
    if let Some(slot) = world.nodes.get((n - 1) as usize) {
        slot.store.mark_dead();
        slot.live.borrow_mut().take();
        slot.observations.borrow_mut().push(NodeObs {
            ms: world.now_ms(),
            node: n,
            incarnation: slot.incarnation.get(),
            state: openraft::ServerState::Shutdown,
            term: 0,
            vote: (0, 0, false),
            leader: None,
            last_log: None,
            applied: None,
            from: 0,
            entries: None,
            purged: None,
            down: true,
        });
    }
}

/// The node that currently leads (by its own metrics, highest term first).
#[must_use]
pub fn leader(world: &World) -> Option<u64> {
    let mut best: Option<(u64, u64)> = None;
    for slot in &world.nodes {
        if let Some(live) = slot.live.borrow().as_ref() {
            let m = live.node.raft().metrics().borrow().clone();
            if m.state == openraft::ServerState::Leader
                && best.is_none_or(|(t, _)| m.current_term > t)
            {
                best = Some((m.current_term, slot.id));
            }
        }
    }
    best.map(|(_, id)| id)
}
