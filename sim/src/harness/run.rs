//! One run of one seed: build the `Sim`, register hosts and clients, step through the safety
//! phase injecting faults, heal, step through the liveness phase until the cluster converged
//! and the probe succeeded, shut every host down, check the histories.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::checks::{self, FinalInputs, RaftChecker, Violation};
use super::config::SimConfig;
use super::faults::Faults;
use super::node::{self, NodeSlot, host_name};
use super::rng::{self, Stream};
use super::store::NodeStore;
use super::trace::Trace;
use super::workload;
use super::world::{Controls, OpCounts, World};
use crate::history::{History, SharedRecorder};

/// How to run a seed.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep every trace line (for diffs and trace files); otherwise only the hash.
    pub keep_trace: bool,
    /// Planted bugs.
    pub controls: Controls,
    /// Replace the derived configuration (tests pin a node count or backend with it).
    pub config: Option<SimConfig>,
}

/// What one run did and found.
#[derive(Debug)]
pub struct RunReport {
    /// The configuration derived from the seed (or given).
    pub config: SimConfig,
    /// Simulated time at the end, ms.
    pub sim_ms: u64,
    /// Wall-clock time of the run (reporting only; never part of the trace).
    pub wall: Duration,
    /// The trace.
    pub trace: Trace,
    /// The register / list-append history.
    pub history: History,
    /// The bank history.
    pub bank: History,
    /// Checks that could not decide (budget exhausted, nothing to check).
    pub notes: Vec<String>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Operations by outcome.
    pub ops: OpCounts,
    /// Everything the checkers found.
    pub violations: Vec<Violation>,
    /// When the liveness phase converged (ms), if it did.
    pub converged_ms: Option<u64>,
    /// BUGGIFY points fired, by site.
    pub buggify: Vec<(&'static str, u64)>,
    /// Raft snapshots (built, installed from a leader) on all nodes.
    pub snapshots: (u64, u64),
}

impl RunReport {
    /// The trace hash.
    #[must_use]
    pub fn hash(&self) -> u64 {
        self.trace.hash()
    }

    /// Whether nothing was found.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The fixed epoch of every simulation (turmoil's default is the wall clock).
fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Runs seed `seed`.
#[must_use]
pub fn run_seed(seed: u64, options: &RunOptions) -> RunReport {
    // Wall time is measured for the report only.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let cfg = options
        .config
        .clone()
        .unwrap_or_else(|| SimConfig::from_seed(seed));
    sim_faults_setup(&cfg, options.controls);
    let world = Rc::new(World {
        nodes: cfg
            .node_ids()
            .map(|id| NodeSlot::new(id, NodeStore::new(&cfg, id, options.controls.lying_sync)))
            .collect(),
        cfg: cfg.clone(),
        controls: options.controls,
        trace: RefCell::new(Trace::new(options.keep_trace)),
        now: Cell::new(0),
        recorder: SharedRecorder::new(),
        bank: SharedRecorder::new(),
        final_state: RefCell::new(None),
        healed_ms: Cell::new(None),
        ready: Cell::new(false),
        stop: Cell::new(false),
        clients_done: Cell::new(0),
        liveness: Cell::new(false),
        probe_done: Cell::new(None),
        ops: Cell::new(OpCounts::default()),
    });
    for line in cfg.to_string().lines() {
        world.log("cfg", line.trim());
    }
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(rng::derive(seed, Stream::Turmoil, 0))
        .epoch(epoch())
        .simulation_duration(Duration::from_millis(
            cfg.safety_ms + cfg.liveness_ms + 10_000,
        ))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(cfg.latency_ms.0))
        .max_message_latency(Duration::from_millis(cfg.latency_ms.1))
        .tcp_capacity(4096)
        .enable_random_order();
    super::store::configure_fs(&mut builder, &cfg);
    let mut sim = builder.build();
    sim.set_message_latency_curve(cfg.latency_curve);
    // Registration order is part of the seed: nodes, then clients, then the probe.
    for index in 0..world.nodes.len() {
        let w = Rc::clone(&world);
        sim.host(host_name(index as u64 + 1), move || {
            node::run(Rc::clone(&w), index)
        });
    }
    for index in 0..cfg.clients {
        sim.client(
            format!("c{index}"),
            workload::client(Rc::clone(&world), index),
        );
    }
    sim.client("probe", workload::probe(Rc::clone(&world), cfg.clients));

    let mut violations = Vec::new();
    let mut raft = RaftChecker::new();
    let mut notes = Vec::new();
    let mut convergence_summary = None;
    let mut faults = Faults::new(&cfg);
    let mut converged_ms = None;
    let safety_end = cfg.safety_ms;
    let liveness_end = cfg.safety_ms + cfg.liveness_ms;
    let mut phase_liveness = false;
    let mut step_error = None;
    let mut panicked = false;
    install_panic_capture();
    loop {
        let now = sim.elapsed().as_millis() as u64;
        world.now.set(now);
        if !phase_liveness {
            if now >= safety_end {
                phase_liveness = true;
                faults.heal_all(&mut sim, &world);
                sim.set_fail_rate(0.0);
                world.liveness.set(true);
                world.stop.set(true);
                world.healed_ms.set(Some(now));
                world.log("sim", "liveness phase");
            } else {
                faults.tick(&mut sim, &world, now);
            }
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| sim.step())) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                step_error = Some(e.to_string());
                break;
            }
            Err(payload) => {
                // A task panicked (tokio_unstable: the host's runtime shuts down and
                // `step` panics). An assertion inside openraft or our code is a finding.
                step_error = Some(format!("panic: {}", panic_message(&*payload)));
                panicked = true;
                break;
            }
        }
        raft.observe(&world, &mut violations);
        if !violations.is_empty() {
            break;
        }
        if phase_liveness {
            if converged_ms.is_none()
                && world.probe_done.get().is_some()
                && checks::converged(&world).is_none()
            {
                converged_ms = Some(now);
                convergence_summary = checks::summaries(&world).ok();
                world.log("sim", "converged");
            }
            if converged_ms.is_some() {
                break;
            }
            if now >= liveness_end {
                let why = checks::converged(&world)
                    .unwrap_or_else(|| "the liveness probe did not finish".to_owned());
                violations.push(Violation::new(
                    "liveness",
                    format!("not converged {} ms after healing: {why}", cfg.liveness_ms),
                ));
                break;
            }
        }
    }
    if let Some(e) = step_error {
        violations.push(Violation::new("simulation", e));
    }
    for slot in &world.nodes {
        if let Some(e) = slot.start_error.borrow().as_ref() {
            violations.push(Violation::new(
                "recovery",
                format!("node {} failed to start: {e}", slot.id),
            ));
        }
        if let Some(e) = slot.stop_error.borrow().as_ref() {
            violations.push(Violation::new(
                "fail-stop",
                format!("node {}: {e}", slot.id),
            ));
        }
    }
    let sim_ms = sim.elapsed().as_millis() as u64;
    world.now.set(sim_ms);
    // Never drop a Sim with a live database in it: mark every node dead, drop the handles,
    // crash every host (its drops run inside the simulation), then drop the Sim.
    if panicked {
        // The Sim may be half torn down: mark every disk dead so no Drop can write, then
        // crash and drop it, containing any further panic.
        for slot in &world.nodes {
            slot.store.mark_dead();
            slot.live.borrow_mut().take();
        }
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
            faults.shutdown(&mut sim, &world);
            drop(sim);
        }));
    } else {
        faults.shutdown(&mut sim, &world);
        drop(sim);
    }
    let history = world.recorder.finish(Duration::from_millis(sim_ms));
    let bank = world.bank.finish(Duration::from_millis(sim_ms));
    if violations.is_empty() {
        let final_state = world.final_state.borrow().clone();
        let healed = world.healed_ms.get().unwrap_or(safety_end);
        checks::final_checks(
            &world,
            &FinalInputs {
                history: &history,
                bank: &bank,
                final_state: final_state.as_ref(),
                healed_nanos: healed * 1_000_000,
                deadline_nanos: (healed + cfg.liveness_ms) * 1_000_000,
            },
            &mut violations,
            &mut notes,
        );
    }
    let _ = convergence_summary;
    let snapshots = world.nodes.iter().fold((0, 0), |(b, i), slot| {
        (b + slot.snapshots.built(), i + slot.snapshots.installed())
    });
    world.log(
        "sim",
        &format!("snapshots built={} installed={}", snapshots.0, snapshots.1),
    );
    for n in &notes {
        world.log("chk", n);
    }
    for v in &violations {
        world.log("chk", &format!("VIOLATION {}: {}", v.checker, v.message));
    }
    let buggify = sim_faults_teardown();
    let trace = world.trace.borrow().clone();
    #[allow(clippy::disallowed_methods)]
    let wall = started.elapsed();
    RunReport {
        config: cfg,
        sim_ms,
        wall,
        trace,
        history,
        bank,
        notes,
        faults: faults.counts.clone(),
        ops: world.ops.get(),
        violations,
        converged_ms,
        buggify,
        snapshots,
    }
}

fn sim_faults_setup(cfg: &SimConfig, controls: Controls) {
    use zcore_cluster::runtime::sim_faults;
    sim_faults::reset();
    sim_faults::set_lose_votes(controls.lose_votes);
    if cfg.buggify {
        sim_faults::enable_buggify(rng::derive(cfg.seed, Stream::Buggify, 0));
    }
    zcore_cluster::runtime::seed_rng(rng::derive(cfg.seed, Stream::Raft, 0));
}

fn sim_faults_teardown() -> Vec<(&'static str, u64)> {
    use zcore_cluster::runtime::sim_faults;
    let fired = sim_faults::fired();
    sim_faults::reset();
    zcore_cluster::runtime::use_os_entropy();
    fired
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that remembers each thread's last panic message
/// before calling the previous hook, so a panic inside a simulated task (re-raised by tokio
/// as a generic "a spawned task panicked") is reported with its own message.
fn install_panic_capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_owned(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default(),
            };
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| {
                let mut p = p.borrow_mut();
                // Keep the first (root cause) message of a run.
                if p.is_none() {
                    *p = Some(format!("{message}{location}"));
                }
            });
            previous(info);
        }));
    });
    LAST_PANIC.with(|p| p.borrow_mut().take());
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let outer = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    match LAST_PANIC.with(|p| p.borrow_mut().take()) {
        Some(root) if root != outer => format!("{root} ({outer})"),
        Some(root) => root,
        None => outer,
    }
}
